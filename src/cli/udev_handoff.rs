//! `modaliasd udev-handoff`: turn udev's own module loading off while modaliasd loads, and on
//! again after.

use super::{EXIT_FAILURE, EXIT_INVALID_INPUT, EXIT_OK};
use crate::udev_handoff::{self, Finding, Report};
use std::ffi::OsString;
use std::path::PathBuf;

const HELP: &str = "\
Usage: modaliasd udev-handoff on|off|status [--root DIR]

Where systemd-udevd runs, it keeps doing everything it does but load modules, which modaliasd
does instead. 'on' writes, for every udev rules file that loads modules (the kmod load builtin
or a modprobe run: 80-drivers.rules, Debian's 80-debian-compat.rules, ...), a copy without
those loads to ROOT/run/udev/rules.d, where it hides the file of the same name in
/usr/lib/udev/rules.d, then has a running udevd reread its rules. 'off' removes those copies
(and only those: each starts with a marker line) and has udevd reread its rules, so udev loads
modules again. modaliasd.service runs 'on' when it starts and 'off' when it stops or fails;
/run is emptied at every boot, so nothing of this outlives a disabled or removed modaliasd.

A rules file in /etc/udev/rules.d (or someone else's in /run/udev/rules.d) that loads modules
cannot be hidden this way: it is reported, and udev keeps loading for it (harmless: a module
is inserted once).

'status' prints which rules files load modules and whether each is handed off.

Exit status: 0 done (status: udev loads no module through its rules); 1 some rules file that
loads modules is not handed off (on, status); 2 usage error or a file could not be written.
";

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut root = PathBuf::from("/");
    let mut action = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Long("root") => root = super::value(&mut parser)?.into(),
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{HELP}");
                return Ok(EXIT_OK);
            }
            lexopt::Arg::Value(v) if action.is_none() => action = Some(super::utf8(v)?),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let report = match action.as_deref() {
        Some("on") => udev_handoff::take(&root),
        Some("off") => udev_handoff::give_back(&root),
        Some("status") => udev_handoff::status(&root),
        Some(other) => {
            return Err(format!(
                "udev-handoff: unknown action '{other}' (on, off or status)"
            ));
        }
        None => return Err("udev-handoff: on, off or status?".into()),
    }
    .map_err(|e| format!("udev-handoff: {e}"))?;
    describe(&report, action.as_deref() == Some("status"));
    if report.changed {
        match udev_handoff::reload_udevd(&root) {
            Ok(true) => tracing::info!("udev-handoff: udevd rereads its rules"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!("udev-handoff: {e}");
                return Ok(EXIT_FAILURE);
            }
        }
    }
    Ok(match action.as_deref() {
        Some("off") => EXIT_OK,
        _ if report.handed_off() => EXIT_OK,
        _ => EXIT_INVALID_INPUT,
    })
}

fn describe(report: &Report, print: bool) {
    for finding in &report.findings {
        match finding {
            Finding::Overridden {
                source,
                loads,
                written,
            } => {
                let line = format!(
                    "{}: {loads} module loads handed off ({})",
                    source.display(),
                    written.display()
                );
                if print {
                    println!("{line}");
                } else {
                    tracing::info!("udev-handoff: {line}");
                }
            }
            Finding::Kept { path, loads } => {
                let line = format!(
                    "{}: {loads} module loads stay with udev (a file in /etc or someone else's in \
                     /run cannot be hidden)",
                    path.display()
                );
                if print {
                    println!("{line}");
                } else {
                    tracing::warn!("udev-handoff: {line}");
                }
            }
        }
    }
    for path in &report.removed {
        tracing::info!("udev-handoff: removed {}", path.display());
    }
    if print && report.findings.is_empty() {
        println!("no udev rules file loads modules");
    }
}
