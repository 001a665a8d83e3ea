//! `modaliasd record FILE`: the kernel's uevents, as they come, in the recording format.

use super::EXIT_OK;
use crate::uevent::netlink::{DEFAULT_RECEIVE_BUFFER, GROUP_KERNEL, Listener, Received};
use crate::uevent::record;
use std::ffi::OsString;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HELP: &str = "\
Usage: modaliasd record [OPTIONS] FILE

Writes every uevent the kernel sends (netlink group 1; others' messages are refused) to FILE
(- for standard output), one per line with its receive time, every key kept (format in
'modaliasd replay --help'). Each line is flushed as it is written; stop with Ctrl-C.

Options:
  --count N             stop after N events
  --idle-exit SECONDS   stop after SECONDS without an event
  --receive-buffer BYTES  socket receive buffer (default 128 MiB)
  -h, --help            this help
";

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut file = None;
    let mut count = None;
    let mut idle = None;
    let mut buffer = DEFAULT_RECEIVE_BUFFER;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Long("count") => count = Some(number(&mut parser)?),
            lexopt::Arg::Long("idle-exit") => {
                idle = Some(Duration::from_secs_f64(number(&mut parser)? as f64))
            }
            lexopt::Arg::Long("receive-buffer") => buffer = number(&mut parser)? as usize,
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{HELP}");
                return Ok(EXIT_OK);
            }
            lexopt::Arg::Value(v) if file.is_none() => file = Some(v),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let file = file.ok_or("record: no FILE given (see 'modaliasd record --help')")?;
    let mut out: Box<dyn Write> = if file == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            std::fs::File::create(&file).map_err(|e| format!("{}: {e}", file.to_string_lossy()))?,
        )
    };
    let mut listener =
        Listener::open(GROUP_KERNEL, buffer).map_err(|e| format!("netlink socket: {e}"))?;
    record::write_header(&mut out).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let mut recorded = 0u64;
    while count.is_none_or(|c| recorded < c) {
        if !listener.wait(idle).map_err(|e| e.to_string())? {
            break;
        }
        match listener.recv().map_err(|e| e.to_string())? {
            Received::Event(_, message) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                out.write_all(&record::format_line(now, message))
                    .and_then(|()| out.flush())
                    .map_err(|e| e.to_string())?;
                recorded += 1;
            }
            Received::Overflow => tracing::error!("receive buffer overflowed: events lost"),
            Received::Rejected(why) => tracing::warn!("message refused: {why}"),
        }
    }
    Ok(EXIT_OK)
}

pub(crate) fn number(parser: &mut lexopt::Parser) -> Result<u64, String> {
    let s = super::string(parser)?;
    s.parse().map_err(|_| format!("{s}: not a whole number"))
}
