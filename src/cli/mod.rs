//! The `modaliasd` command line: one file per subcommand.
//!
//! Exit codes, for every subcommand: 0 success, 1 some inputs were invalid (each reported on
//! stderr), 2 usage error or a failure that stopped the command (unreadable module directory...).

mod coldplug;
mod compile;
mod config;
mod doctor;
mod explain;
pub mod json;
mod load;
mod modinfo;
mod record;
mod replay;
mod resolve;
mod run;
mod settle;
mod stop;
mod udev_handoff;

use crate::index::{module_dir, running_kernel_release};
use crate::resolve::saved::CachePolicy;
use std::ffi::OsString;
use std::path::PathBuf;

pub const EXIT_OK: i32 = 0;
pub const EXIT_INVALID_INPUT: i32 = 1;
pub const EXIT_FAILURE: i32 = 2;

const HELP: &str = "\
modaliasd: kernel hotplug events in, loaded drivers out.

Usage: modaliasd [-v|-q] [--log-format text|json] COMMAND [OPTIONS]

Commands:
  resolve   print the modules that MODALIAS strings or module names resolve to
  compile   compile modules.alias into the saved index (run after depmod)
  config    print the effective modprobe.d configuration with each entry's file:line
  doctor    lint modprobe.d and the command line; with NAMEs, why those would not load
  explain   every decision from a device, MODALIAS or name to the modules it loads
  load      load modules (or print their plan) with modprobe semantics
  modinfo   print a module's information as kmod's modinfo does
  run       the daemon: load drivers for kernel uevents as devices appear
  coldplug  load drivers for the devices present now, then exit
  record    write the kernel's uevents to a file (or - for standard output)
  replay    feed a recording through the daemon's pipeline (--dry-run: print what it would do)
  settle    wait until coldplug is complete
  stop      stop a daemon started with --pidfile, and wait until it has ended
  udev-handoff  on|off|status: turn udev's own module loading off while modaliasd runs

Diagnostics (stderr, accepted before or after the command):
  -v, --verbose   also per-event decisions; -vv everything
  -q, --quiet     errors only; -qq nothing at all
  --log-format F  'text' (default; journald priorities when stderr is the journal) or 'json'

Run 'modaliasd COMMAND --help' for the options of a command.
Exit status: 0 success, 1 some inputs were invalid, 2 usage error or fatal error.

Run as 'modprobe' (a link of that name), modaliasd is 'modaliasd load': the kernel's
module request helper (/proc/sys/kernel/modprobe) runs 'modprobe -q -- NAME'. See
'modaliasd load --help'.
";

/// The arguments of `modprobe ARGS` as `modaliasd load` takes them: what the kernel's
/// request_module helper passes (`-q -- NAME`) and the modprobe options that mean what a
/// `load` option means. kmod's `-q` prints nothing at all, not even errors, hence `-qq`.
/// Options with no `load` equivalent (`-r`, say) are left for `load` to refuse.
pub fn modprobe_args(args: Vec<OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["load".into()];
    let mut args = args.into_iter();
    for arg in args.by_ref() {
        match arg.to_str() {
            Some("--") => {
                out.push(arg);
                break;
            }
            Some("-q" | "--quiet") => out.push("-qq".into()),
            Some("-V" | "--version") => return vec!["--version".into()],
            // Several names are always taken.
            Some("-a" | "--all") => {}
            Some("-n" | "--dry-run") => out.push("--dry-run".into()),
            Some("-D") => out.push("--show-depends".into()),
            Some("-S" | "--set-version") => out.push("--kver".into()),
            Some("-d" | "--dirname") => out.push("--root".into()),
            Some(s) if s.starts_with("--set-version=") => {
                out.push(format!("--kver={}", &s["--set-version=".len()..]).into())
            }
            Some(s) if s.starts_with("--dirname=") => {
                out.push(format!("--root={}", &s["--dirname=".len()..]).into())
            }
            _ => out.push(arg),
        }
    }
    out.extend(args);
    out
}

pub fn main(args: Vec<OsString>) -> i32 {
    let (log_options, args) = match crate::logging::take_options(args) {
        Ok(taken) => taken,
        Err(message) => {
            eprintln!("modaliasd: {message}");
            return EXIT_FAILURE;
        }
    };
    crate::logging::init(log_options);
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        eprint!("{HELP}");
        return EXIT_FAILURE;
    };
    let rest: Vec<OsString> = args.collect();
    let result = match command.to_str() {
        Some("resolve") => resolve::run(rest),
        Some("compile") => compile::run(rest),
        Some("config") => config::run(rest),
        Some("doctor") => doctor::run(rest),
        Some("explain") => explain::run(rest),
        Some("load") => load::run(rest),
        Some("modinfo") => modinfo::run(rest),
        Some("run") => run::run(rest),
        Some("coldplug") => coldplug::run(rest),
        Some("record") => record::run(rest),
        Some("replay") => replay::run(rest),
        Some("settle") => settle::run(rest),
        Some("stop") => stop::run(rest),
        Some("udev-handoff") => udev_handoff::run(rest),
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            Ok(EXIT_OK)
        }
        Some("-V" | "--version") => {
            println!("modaliasd {}", env!("CARGO_PKG_VERSION"));
            Ok(EXIT_OK)
        }
        _ => Err(format!(
            "unknown command '{}' (see 'modaliasd --help')",
            command.to_string_lossy()
        )),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            tracing::error!("{message}");
            EXIT_FAILURE
        }
    }
}

/// `--root`, `--kver` and the index options shared by the commands that read a module directory.
#[derive(Debug, Default, Clone)]
pub(crate) struct TreeOptions {
    pub root: Option<PathBuf>,
    pub kver: Option<String>,
    pub index: Option<PathBuf>,
    pub no_index: bool,
}

pub(crate) const TREE_OPTIONS_HELP: &str =
    "  --root DIR      system root holding lib/modules/KVER (default /)
  --kver VER      kernel release (default: the running kernel's, as uname -r)
  --index FILE    saved index to use instead of lib/modules/KVER/modaliasd.index
  --no-index      compile from the module directory; neither read nor write an index
";

impl TreeOptions {
    /// Whether `--name` is one of ours.
    pub fn takes(name: &str) -> bool {
        matches!(name, "root" | "kver" | "index" | "no-index")
    }

    /// Sets `--name` (one that [`TreeOptions::takes`]), reading its value from `parser`.
    pub fn set(&mut self, name: &str, parser: &mut lexopt::Parser) -> Result<(), String> {
        match name {
            "root" => self.root = Some(value(parser)?.into()),
            "kver" => self.kver = Some(string(parser)?),
            "index" => self.index = Some(value(parser)?.into()),
            _ => self.no_index = true,
        }
        Ok(())
    }

    pub fn module_dir(&self) -> Result<PathBuf, String> {
        let kver = match &self.kver {
            Some(k) => k.clone(),
            None => running_kernel_release().map_err(|e| e.to_string())?,
        };
        if kver.is_empty() || kver.contains('/') || kver == ".." {
            return Err(format!("--kver {kver:?} is not a kernel release"));
        }
        let root = self.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        Ok(module_dir(&root, &kver))
    }

    pub fn cache_policy(&self) -> CachePolicy {
        match (&self.index, self.no_index) {
            (_, true) => CachePolicy::Off,
            (Some(f), false) => CachePolicy::File(f.clone()),
            (None, false) => CachePolicy::Default,
        }
    }

    /// The resolver for the module directory, from the saved index when it is fresh; warnings
    /// about the module directory are logged, and so (at debug level) is where the resolver
    /// came from: compiling at every start is the slow path an initramfs must not take.
    pub(crate) fn resolver(&self) -> Result<crate::resolve::Resolver, String> {
        use crate::resolve::saved::{Origin, load_or_build};
        let dir = self.module_dir()?;
        let (resolver, warnings, origin) =
            load_or_build(&dir, &self.cache_policy()).map_err(|e| e.to_string())?;
        report_warnings(&warnings, 20);
        match origin {
            Origin::Saved => tracing::debug!("resolver: saved index"),
            Origin::Compiled { saved } => tracing::debug!(
                "resolver: compiled from {} (index {})",
                dir.display(),
                if saved { "saved" } else { "not saved" }
            ),
        }
        Ok(resolver)
    }
}

/// `-C/--config` and `--cmdline`, shared by the commands that read modprobe.d.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConfigOptions {
    pub paths: Vec<PathBuf>,
    pub cmdline: Option<OsString>,
}

pub(crate) const CONFIG_OPTIONS_HELP: &str =
    "  -C, --config PATH  read this file or directory instead of the modprobe.d directories
                  (repeatable, like modprobe -C)
  --cmdline FILE  kernel command line to read (default ROOT/proc/cmdline); 'none' reads none.
                  Unlike kmod, modprobe.blacklist= entries have dashes normalised too.
";

impl ConfigOptions {
    pub fn sources(self, tree: &TreeOptions) -> crate::modprobe::ConfigSources {
        let root = tree.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        crate::modprobe::ConfigSources {
            module_dir: tree.module_dir().ok(),
            cmdline: match self.cmdline {
                Some(c) if c == "none" => None,
                Some(c) => Some(PathBuf::from(c)),
                None => Some(root.join("proc/cmdline")),
            },
            root,
            paths: self.paths,
        }
    }
}

/// The module-directory and modprobe.d options every planning command takes.
#[derive(Debug, Default, Clone)]
pub(crate) struct CommonOptions {
    pub tree: TreeOptions,
    pub config: ConfigOptions,
}

impl CommonOptions {
    /// Whether `arg` is one of ours. (A separate step from [`CommonOptions::set`] because the
    /// argument borrows the parser that `set` needs.)
    pub fn takes(arg: &lexopt::Arg) -> bool {
        match arg {
            lexopt::Arg::Long(name) => {
                TreeOptions::takes(name) || matches!(*name, "config" | "cmdline")
            }
            lexopt::Arg::Short('C') => true,
            _ => false,
        }
    }

    /// The option's name, owned, for [`CommonOptions::set`].
    pub fn key(arg: &lexopt::Arg) -> String {
        match arg {
            lexopt::Arg::Long(name) => (*name).to_owned(),
            _ => "config".to_owned(),
        }
    }

    pub fn set(&mut self, key: &str, parser: &mut lexopt::Parser) -> Result<(), String> {
        match key {
            "config" => self.config.paths.push(PathBuf::from(value(parser)?)),
            "cmdline" => self.config.cmdline = Some(value(parser)?),
            tree => self.tree.set(tree, parser)?,
        }
        Ok(())
    }
}

/// Parses the arguments of a command that takes the [`CommonOptions`], `--help` and positional
/// values (names, files). `None`: help was printed.
pub(crate) fn common_options_and_values(
    args: Vec<OsString>,
    help: fn() -> String,
) -> Result<Option<(CommonOptions, Vec<OsString>)>, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut common = CommonOptions::default();
    let mut values = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            a if CommonOptions::takes(&a) => {
                let key = CommonOptions::key(&a);
                common.set(&key, &mut parser)?;
            }
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(None);
            }
            lexopt::Arg::Value(v) => values.push(v),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some((common, values)))
}

/// Parses the arguments of a command that takes only the [`CommonOptions`] and `--help`.
/// `None`: help was printed.
pub(crate) fn only_common_options(
    args: Vec<OsString>,
    help: fn() -> String,
) -> Result<Option<CommonOptions>, String> {
    match common_options_and_values(args, help)? {
        None => Ok(None),
        Some((common, values)) => match values.into_iter().next() {
            Some(v) => Err(lexopt::Arg::Value(v).unexpected().to_string()),
            None => Ok(Some(common)),
        },
    }
}

/// Everything the event-handling commands need, loaded once.
pub(crate) struct Setup {
    pub root: PathBuf,
    pub dir: PathBuf,
    pub kver: String,
    pub tree: crate::index::ModuleTree,
    pub resolver: crate::resolve::Resolver,
    pub config: crate::modprobe::Config,
    pub rules: crate::rules::Rules,
}

impl Setup {
    pub fn load(tree: &TreeOptions, config: ConfigOptions) -> Result<Setup, String> {
        let root = tree.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        let dir = tree.module_dir()?;
        let kver = dir
            .file_name()
            .map(|k| k.to_string_lossy().into_owned())
            .unwrap_or_default();
        let resolver = tree.resolver()?;
        let module_tree =
            crate::index::ModuleTree::load_modules(&dir).map_err(|e| e.to_string())?;
        let config = crate::modprobe::Config::load(&config.sources(tree));
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let rules = crate::rules::Rules::load(&root);
        for e in &rules.errors {
            tracing::warn!("{e}");
        }
        Ok(Setup {
            root,
            dir,
            kver,
            tree: module_tree,
            resolver,
            config,
            rules,
        })
    }

    /// The module directory as it is on the target system, for printed plans.
    pub fn target_dir(&self) -> String {
        format!("/lib/modules/{}", self.kver)
    }
}

pub(crate) fn value(parser: &mut lexopt::Parser) -> Result<OsString, String> {
    parser.value().map_err(|e| e.to_string())
}

pub(crate) fn string(parser: &mut lexopt::Parser) -> Result<String, String> {
    utf8(value(parser)?)
}

/// An argument as a `String`, or an error naming it.
pub(crate) fn utf8(arg: OsString) -> Result<String, String> {
    arg.into_string()
        .map_err(|v| format!("{} is not valid UTF-8", v.to_string_lossy()))
}

/// Prints the module directory's warnings, at most `limit` of them.
pub(crate) fn report_warnings(warnings: &[crate::index::Warning], limit: usize) {
    for w in warnings.iter().take(limit) {
        tracing::warn!("{w}");
    }
    if warnings.len() > limit {
        tracing::warn!(
            "{} more problems in the module directory not shown",
            warnings.len() - limit
        );
    }
}

/// Logs a failed load and, when the kernel refused an insertion, why (the diagnosis reads the
/// module file and the running kernel's state below `root`).
pub(crate) fn report_load_error(
    root: &std::path::Path,
    module_dir: &std::path::Path,
    e: &crate::loader::LoadError,
) {
    tracing::error!("{e}");
    let (Some(errno), Some(refused)) = (e.errno, e.refused.as_deref()) else {
        return;
    };
    let mut ctx = crate::diagnostics::failure::Context::new(root, module_dir);
    ctx.logged = refused.kernel_log.clone();
    let d = crate::diagnostics::failure::diagnose(
        &ctx,
        &e.module,
        Some(&refused.path),
        &refused.options,
        errno,
    );
    for line in d.to_string().lines() {
        tracing::error!("{line}");
    }
}
