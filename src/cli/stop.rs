//! `modaliasd stop`: end a daemon by its pid file, for init scripts that have nothing but a
//! shell (an initramfs without `rm` or `sleep`, say).

use super::{EXIT_INVALID_INPUT, EXIT_OK, record::number};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const HELP: &str = "\
Usage: modaliasd stop --pidfile FILE [--timeout SECONDS]

Sends SIGTERM to the 'modaliasd run' whose process id FILE holds ('run --pidfile FILE' writes
it), waits until that process has ended (it finishes the loads under way first), and removes
FILE. Nothing to stop (no FILE, or its process is gone, or is not modaliasd) is success.

Exit status: 0 stopped or nothing to stop; 1 still running after --timeout (default 30);
2 usage error or FILE unreadable.
";

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut pidfile = None;
    let mut timeout = Duration::from_secs(30);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Long("pidfile") => {
                pidfile = Some(PathBuf::from(super::value(&mut parser)?))
            }
            lexopt::Arg::Long("timeout") => timeout = Duration::from_secs(number(&mut parser)?),
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{HELP}");
                return Ok(EXIT_OK);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let pidfile = pidfile.ok_or("stop: --pidfile FILE is required")?;
    let text = match std::fs::read_to_string(&pidfile) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(EXIT_OK),
        Err(e) => return Err(format!("{}: {e}", pidfile.display())),
    };
    let pid: libc::pid_t = text
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 1)
        .ok_or_else(|| format!("{}: not a process id: {:?}", pidfile.display(), text.trim()))?;
    // A stale file may name a process that is no longer ours: signal only a modaliasd.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() != "modaliasd" {
        let _ = std::fs::remove_file(&pidfile);
        return Ok(EXIT_OK);
    }
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let started = Instant::now();
    // SAFETY: signal 0 only asks whether the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid) {
        if started.elapsed() >= timeout {
            tracing::error!(
                "stop: modaliasd (pid {pid}) still running {} s after SIGTERM",
                timeout.as_secs()
            );
            return Ok(EXIT_INVALID_INPUT);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&pidfile);
    Ok(EXIT_OK)
}

/// Whether a process has exited and waits only for its parent to collect it (a shell that
/// started the daemon in the background collects it only when it waits).
fn is_zombie(pid: libc::pid_t) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name's closing parenthesis.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        == Some("Z")
}
