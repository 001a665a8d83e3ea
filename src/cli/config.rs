//! `modaliasd config`: the effective modprobe.d configuration with the origin of each entry.

use super::{
    CONFIG_OPTIONS_HELP, EXIT_INVALID_INPUT, EXIT_OK, TREE_OPTIONS_HELP, only_common_options,
};
use crate::modprobe::Config;
use std::ffi::OsString;
use std::io::Write;

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
{TREE_OPTIONS_HELP}{CONFIG_OPTIONS_HELP}  -h, --help      this help
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let Some(common) = only_common_options(args, help)? else {
        return Ok(EXIT_OK);
    };
    let sources = common.config.clone().sources(&common.tree);
    let config = Config::load(&sources);
    for w in &config.warnings {
        tracing::warn!("{w}");
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
