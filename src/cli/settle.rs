//! `modaliasd settle`: wait until coldplug is complete.

use super::{EXIT_INVALID_INPUT, EXIT_OK, record::number};
use crate::daemon::settled_marker;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const HELP: &str = "\
Usage: modaliasd settle [--root DIR] [--timeout SECONDS]

Waits until 'modaliasd run --coldplug' (or 'modaliasd coldplug') has loaded the drivers for the
devices present at boot: until ROOT/run/modaliasd/coldplug-done exists. Exit status 0 when it
does, 1 on timeout (default 120 seconds).
";

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut root = PathBuf::from("/");
    let mut timeout = Duration::from_secs(120);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Long("root") => root = super::value(&mut parser)?.into(),
            lexopt::Arg::Long("timeout") => timeout = Duration::from_secs(number(&mut parser)?),
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{HELP}");
                return Ok(EXIT_OK);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let marker = settled_marker(&root);
    let started = Instant::now();
    while !marker.exists() {
        if started.elapsed() >= timeout {
            tracing::error!(
                "settle: coldplug not complete after {} s",
                timeout.as_secs()
            );
            return Ok(EXIT_INVALID_INPUT);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(EXIT_OK)
}
