//! `modaliasd doctor`: lints the modprobe.d configuration and the kernel command line.

use super::{
    CONFIG_OPTIONS_HELP, EXIT_INVALID_INPUT, EXIT_OK, TREE_OPTIONS_HELP, only_common_options,
};
use crate::diagnostics::{Severity, lint_config};
use crate::modprobe::Config;
use std::ffi::OsString;
use std::io::Write;

fn help() -> String {
    format!(
        "\
Usage: modaliasd doctor [OPTIONS]

Checks the modprobe configuration for lines kmod accepts and then silently ignores or that do
not do what they say: options, blacklist, softdep or install for names that are neither a
module, a built-in nor an alias; a second softdep line for a module (kmod uses the first); an
install command that is ignored because the module has a softdep; configuration files others
can write (and, on the live system, files not owned by root); modprobe.blacklist= entries with
dashes, which kmod does not normalise. One line per finding on standard output:
FILE:LINE: SEVERITY: MESSAGE (fix: ...). Exit status 1 when there is a warning.

Options:
{TREE_OPTIONS_HELP}{CONFIG_OPTIONS_HELP}  -h, --help      this help
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let Some(common) = only_common_options(args, help)? else {
        return Ok(EXIT_OK);
    };
    let dir = common.tree.module_dir()?;
    let (resolver, _, _) = crate::resolve::saved::load_or_build(&dir, &common.tree.cache_policy())
        .map_err(|e| e.to_string())?;
    let sources = common.config.clone().sources(&common.tree);
    let cmdline = sources
        .cmdline
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .map(|d| {
            String::from_utf8_lossy(&d)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        });
    let live = sources.root == std::path::Path::new("/");
    let config = Config::load(&sources);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let findings = lint_config(&config, &resolver, cmdline.as_deref(), live);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for f in &findings {
        match writeln!(out, "{f}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(format!("writing output: {e}")),
        }
    }
    let _ = out.flush();
    let warned =
        !config.warnings.is_empty() || findings.iter().any(|f| f.severity == Severity::Warning);
    Ok(if warned { EXIT_INVALID_INPUT } else { EXIT_OK })
}
