//! `modaliasd load`: modprobe's decisions for names and MODALIAS strings.

use super::{CONFIG_OPTIONS_HELP, CommonOptions, EXIT_INVALID_INPUT, EXIT_OK, TREE_OPTIONS_HELP};
use crate::index::ModuleTree;
use crate::loader::Loader;
use crate::loader::kernel::LinuxKernel;
use crate::modprobe::Config;
use crate::modprobe::plan::{BlacklistMode, Outcome, Planner};
use std::ffi::OsString;
use std::io::Write;

fn help() -> String {
    format!(
        "\
Usage: modaliasd load [OPTIONS] NAME|MODALIAS...

Decides what modprobe decides for each NAME or MODALIAS: the modules.dep closure, softdeps,
install commands, options from modprobe.d and the kernel command line, built-in modules and the
blacklist. With --dry-run --show-depends it prints what 'modprobe --show-depends' prints
('insmod PATH OPTIONS', 'install COMMAND OPTIONS', 'builtin NAME'), each line once, with paths as
on the target system (without the --root prefix).

Without --dry-run the modules are inserted (as root): finit_module, with the kernel's own
decompressor where it has the right one, else decompressed here; independent modules in
parallel, dependencies first, each module once. EEXIST and ENODEV are not failures.

Options:
{TREE_OPTIONS_HELP}{CONFIG_OPTIONS_HELP}  -b, --use-blacklist  apply the blacklist to the names given too, not only to
                  modules reached through an alias (what udev and the daemon do)
  -o, --options \"A=1 B=2\"  extra options for the modules the names resolve to
  --dry-run       decide, do not load
  --show-depends  print the plan (implies --dry-run)
  -h, --help      this help

Exit status: 0 success, 1 a name resolves to nothing (\"Module X not found\", as modprobe)
or a module failed to load, 2 usage error or fatal error.
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut common = CommonOptions::default();
    let mut mode = BlacklistMode::AliasOnly;
    let mut extra = String::new();
    let mut dry_run = false;
    let mut names = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            a if CommonOptions::takes(&a) => {
                let key = CommonOptions::key(&a);
                common.set(&key, &mut parser)?;
            }
            lexopt::Arg::Short('b') | lexopt::Arg::Long("use-blacklist") => {
                mode = BlacklistMode::Always
            }
            lexopt::Arg::Short('o') | lexopt::Arg::Long("options") => {
                extra = super::string(&mut parser)?
            }
            lexopt::Arg::Long("dry-run") | lexopt::Arg::Long("show-depends") => dry_run = true,
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(EXIT_OK);
            }
            lexopt::Arg::Value(v) => names.push(super::utf8(v)?),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if names.is_empty() {
        return Err("load: no NAME or MODALIAS given (see 'modaliasd load --help')".into());
    }
    let dir = common.tree.module_dir()?;
    let kver = dir
        .file_name()
        .map(|k| k.to_string_lossy().into_owned())
        .unwrap_or_default();
    let resolver = common.tree.resolver()?;
    let tree = ModuleTree::load_modules(&dir).map_err(|e| e.to_string())?;
    let config = Config::load(&common.config.clone().sources(&common.tree));
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let planner = Planner::new(&tree, &resolver, &config);
    let target_dir = format!("/lib/modules/{kver}");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = std::collections::HashSet::new();
    let mut status = EXIT_OK;
    let mut plans = Vec::new();
    for name in &names {
        match planner.plan(name, mode, &extra) {
            Outcome::NotFound => {
                tracing::error!("Module {name} not found in directory {}", dir.display());
                status = EXIT_INVALID_INPUT;
            }
            Outcome::Steps(steps) if dry_run => {
                for step in steps {
                    if let Some(line) = step.show_depends_line(&target_dir) {
                        if printed.insert(line.clone()) {
                            writeln!(out, "{line}").map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            Outcome::Steps(steps) => plans.push(steps),
        }
    }
    if !plans.is_empty() {
        let root = common.tree.root.clone().unwrap_or_else(|| "/".into());
        let loader = Loader::new(LinuxKernel::new(&root), dir.clone());
        let required: std::collections::HashSet<&str> = plans
            .iter()
            .flatten()
            .filter(|s| s.required)
            .map(|s| s.module.as_str())
            .collect();
        for (module, result) in loader.load_plans(&plans) {
            if let Err(e) = result {
                super::report_load_error(&root, &dir, &e);
                if required.contains(module.as_str()) {
                    status = EXIT_INVALID_INPUT;
                }
            }
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(status)
}
