//! `modaliasd doctor`: lints the modprobe.d configuration and the kernel command line, or
//! checks whether named modules would load into the running kernel.

use super::{
    CONFIG_OPTIONS_HELP, CommonOptions, EXIT_INVALID_INPUT, EXIT_OK, TREE_OPTIONS_HELP,
    common_options_and_values,
};
use crate::diagnostics::failure::{Context, check_options, preflight};
use crate::diagnostics::{Finding, Severity, lint_config};
use crate::index::ModuleTree;
use crate::loader::kernel::{Kernel, LinuxKernel, ModuleState};
use crate::modinfo::ModuleInfo;
use crate::modprobe::Config;
use crate::modprobe::plan::{Action, BlacklistMode, Outcome, Planner};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

fn help() -> String {
    format!(
        "\
Usage: modaliasd doctor [OPTIONS] [NAME...]

Without NAME, checks the modprobe configuration for lines kmod accepts and then silently
ignores or that do not do what they say: options, blacklist, softdep or install for names that
are neither a module, a built-in nor an alias; options naming a parameter the module does not
declare, or with a value its type cannot hold (the load then fails with EINVAL or ERANGE); a
second softdep line for a module (kmod uses the first); an install command that is ignored
because the module has a softdep; configuration files others can write (and, on the live
system, files not owned by root); modprobe.blacklist= entries with dashes, which kmod does not
normalise. One line per finding on standard output: FILE:LINE: SEVERITY: MESSAGE (fix: ...).

With NAMEs (modules or aliases), checks each module their plan would insert against the running
kernel without loading anything: version magic, modversions CRCs, the signature against
enforcement and keyrings, the options against the declared parameters. The same diagnosis is
logged whenever 'load', 'run' or 'coldplug' sees an insertion fail.

Exit status 1 when there is a warning or a problem.

Options:
{TREE_OPTIONS_HELP}{CONFIG_OPTIONS_HELP}  -h, --help      this help
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let Some((common, values)) = common_options_and_values(args, help)? else {
        return Ok(EXIT_OK);
    };
    let names = values
        .into_iter()
        .map(super::utf8)
        .collect::<Result<Vec<String>, String>>()?;
    if !names.is_empty() {
        return check_modules(&common, &names);
    }
    let dir = common.tree.module_dir()?;
    let resolver = common.tree.resolver()?;
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
    let mut findings = lint_config(&config, &resolver, cmdline.as_deref(), live);
    let tree = ModuleTree::load_modules(&dir).map_err(|e| e.to_string())?;
    findings.extend(lint_option_values(&config, &tree, &dir));
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

/// Options lines checked against the parameters their module declares.
fn lint_option_values(config: &Config, tree: &ModuleTree, dir: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    for line in &config.options {
        let name = crate::names::normalize_modname(&line.module);
        let info = match tree.modules.iter().find(|m| m.name == name) {
            Some(m) => ModuleInfo::from_file(&dir.join(&m.path)).ok(),
            None if tree.builtin.contains(&name) => ModuleInfo::builtin(dir, &name),
            None => None, // an alias, or no such module: lint_config speaks of those
        };
        let Some(info) = info else { continue };
        for d in check_options(&info, &name, &line.options) {
            findings.push(Finding {
                origin: line.origin.clone(),
                severity: Severity::Warning,
                message: format!("{name}: {}", d.cause),
                fix: d.fix.unwrap_or_default(),
            });
        }
    }
    findings
}

/// `doctor NAME...`: what would stop each module of the names' plans from loading.
fn check_modules(common: &CommonOptions, names: &[String]) -> Result<i32, String> {
    let setup = super::Setup::load(&common.tree, common.config.clone())?;
    let planner = Planner::new(&setup.tree, &setup.resolver, &setup.config);
    let ctx = Context::new(&setup.root, &setup.dir);
    let kernel = LinuxKernel::new(&setup.root);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut status = EXIT_OK;
    let mut seen = std::collections::HashSet::new();
    for name in names {
        let steps = match planner.plan(name, BlacklistMode::AliasOnly, "") {
            Outcome::NotFound => {
                tracing::error!("module {name} not found in {}", setup.dir.display());
                status = EXIT_INVALID_INPUT;
                continue;
            }
            Outcome::Steps(steps) if steps.is_empty() => {
                writeln!(out, "{name}: every module it names is blacklisted")
                    .map_err(|e| e.to_string())?;
                continue;
            }
            Outcome::Steps(steps) => steps,
        };
        for step in steps {
            if !seen.insert(step.module.clone()) {
                continue;
            }
            let line = match &step.action {
                Action::Builtin => format!("{}: built in", step.module),
                Action::Missing => {
                    status = EXIT_INVALID_INPUT;
                    format!("{}: not in modules.dep (run depmod?)", step.module)
                }
                Action::Install { command } => {
                    format!("{}: install command '{command}' runs instead", step.module)
                }
                Action::Insert { path } => {
                    let file = setup.dir.join(path);
                    let found = preflight(&ctx, &step.module, &file, &step.options);
                    let loaded = match kernel.module_state(&step.module) {
                        ModuleState::Live | ModuleState::Coming | ModuleState::Going => " (loaded)",
                        ModuleState::Builtin | ModuleState::Absent => "",
                    };
                    if found.is_empty() {
                        format!(
                            "{}{loaded}: no problem found (vermagic, modversions, signature, options)",
                            step.module
                        )
                    } else {
                        status = EXIT_INVALID_INPUT;
                        found
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join("\n")
                    }
                }
            };
            writeln!(out, "{line}").map_err(|e| e.to_string())?;
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(status)
}
