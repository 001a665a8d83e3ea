//! `modaliasd config`: the effective modprobe.d configuration with the origin of each entry.

use super::{EXIT_INVALID_INPUT, EXIT_OK, TREE_OPTIONS_HELP, TreeOptions};
use crate::modprobe::{Config, ConfigSources};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

fn help() -> String {
    format!(
        "\
Usage: modaliasd config [OPTIONS]

Prints the effective modprobe.d configuration as 'modprobe -c' does (blacklist, install, remove,
alias, options, softdep, weakdep), each line followed by '  # FILE:LINE' or
'  # kernel command line'. Bad lines are reported on standard error (exit status 1).

Files come from ROOT/etc/modprobe.d, ROOT/run/modprobe.d, ROOT/usr/local/lib/modprobe.d,
ROOT/usr/lib/modprobe.d and ROOT/lib/modprobe.d (a basename hides the same basename further down;
all files are parsed in basename order), plus the module directory's modules.softdep.

Options:
{TREE_OPTIONS_HELP}  -C, --config PATH  read this file or directory instead of the five (repeatable,
                  like modprobe -C)
  --cmdline FILE  kernel command line to read (default ROOT/proc/cmdline); 'none' reads none.
                  Unlike kmod, modprobe.blacklist= entries have dashes normalised too.
  -h, --help      this help
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut tree_options = TreeOptions::default();
    let mut paths = Vec::new();
    let mut cmdline: Option<OsString> = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Long(name) if TreeOptions::takes(name) => {
                let name = name.to_owned();
                tree_options.set(&name, &mut parser)?;
            }
            lexopt::Arg::Short('C') | lexopt::Arg::Long("config") => {
                paths.push(PathBuf::from(super::value(&mut parser)?))
            }
            lexopt::Arg::Long("cmdline") => cmdline = Some(super::value(&mut parser)?),
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(EXIT_OK);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let root = tree_options
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/"));
    let sources = ConfigSources {
        module_dir: tree_options.module_dir().ok(),
        cmdline: match cmdline {
            Some(c) if c == "none" => None,
            Some(c) => Some(PathBuf::from(c)),
            None => Some(root.join("proc/cmdline")),
        },
        root,
        paths,
    };
    let config = Config::load(&sources);
    for w in &config.warnings {
        eprintln!("modaliasd: {w}");
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match config.dump(&mut out).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(format!("writing output: {e}")),
    }
    Ok(if config.warnings.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVALID_INPUT
    })
}
