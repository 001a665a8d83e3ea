//! `modaliasd explain`: every decision between a device (or a name) and the modules loaded for
//! it, with the file and line behind each.

use super::{
    CONFIG_OPTIONS_HELP, CommonOptions, EXIT_INVALID_INPUT, EXIT_OK, Setup, TREE_OPTIONS_HELP, json,
};
use crate::loader::kernel::{Kernel, LinuxKernel, ModuleState as KernelState};
use crate::matcher::Scratch;
use crate::matcher::libc_fnmatch;
use crate::modprobe::config::Origin;
use crate::modprobe::plan::{BlacklistMode, Outcome, Planner};
use crate::resolve::{Resolution, Source, Table};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

fn help() -> String {
    format!(
        "\
Usage: modaliasd explain [OPTIONS] MODALIAS|NAME|/sys/DEVPATH...

Shows how each input becomes loaded modules: for a device directory its MODALIAS and bound
driver; the lookup step that answered (modprobe.d alias, module name, modules.alias pattern,
built-in) and every pattern that matched, with its file and line; each module's state (loaded,
built in, not loaded) and file; every configuration line that applies to it (alias, options,
blacklist, install, remove, softdep; FILE:LINE or the kernel command line); and the resulting
plan in 'modprobe --show-depends' form. A MODALIAS or device is planned as the daemon plans it
(blacklist always applies, as for udev); a name as modprobe plans it.

Options:
{TREE_OPTIONS_HELP}{CONFIG_OPTIONS_HELP}  --json          one JSON object per input instead
  -h, --help      this help

Exit status: 0 when every input resolved to a module, 1 otherwise.
"
    )
}

/// A pattern (or configured alias) that matched the key.
struct Matched {
    pattern: String,
    module: String,
    /// The file, or `FILE:LINE` for a modprobe.d alias.
    file: String,
    /// Line in `file`; 0 when `file` says it or it is unknown.
    line: u32,
    builtin: bool,
}

/// A module the key names, and where it stands.
struct ModuleState {
    name: String,
    state: &'static str,
    file: Option<String>,
}

/// One configuration line that applies.
struct Applies {
    kind: &'static str,
    text: String,
    origin: String,
}

struct Explained {
    input: String,
    devpath: Option<String>,
    driver: Option<String>,
    key: String,
    normalized: String,
    source: Source,
    matches: Vec<Matched>,
    modules: Vec<ModuleState>,
    config: Vec<Applies>,
    blacklisted: Vec<String>,
    /// The blacklist applies only to modules reached through an alias (modprobe NAME).
    alias_only: bool,
    plan: Vec<String>,
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut common = CommonOptions::default();
    let mut as_json = false;
    let mut inputs: Vec<String> = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            a if CommonOptions::takes(&a) => {
                let key = CommonOptions::key(&a);
                common.set(&key, &mut parser)?;
            }
            lexopt::Arg::Long("json") => as_json = true,
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(EXIT_OK);
            }
            lexopt::Arg::Value(v) => inputs.push(super::utf8(v)?),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if inputs.is_empty() {
        return Err(
            "explain: no MODALIAS, NAME or /sys path given (see 'modaliasd explain --help')".into(),
        );
    }
    let setup = Setup::load(&common.tree, common.config.clone())?;
    let planner = Planner::new(&setup.tree, &setup.resolver, &setup.config);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut status = EXIT_OK;
    for input in &inputs {
        let e = match explain(&setup, &planner, input) {
            Ok(e) => e,
            Err(message) => {
                tracing::error!("{input}: {message}");
                status = EXIT_INVALID_INPUT;
                continue;
            }
        };
        if e.modules.is_empty() {
            status = EXIT_INVALID_INPUT;
        }
        let written = if as_json {
            write_json(&mut out, &e)
        } else {
            write_text(&mut out, &e)
        };
        match written {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(err) => return Err(format!("writing output: {err}")),
        }
    }
    let _ = out.flush();
    Ok(status)
}

/// A device directory's MODALIAS and bound driver: `input` is a path under /sys (read below
/// the root) holding a `modalias` file.
fn device(root: &Path, input: &str) -> Option<(String, String, Option<String>)> {
    let rel = input.strip_prefix('/')?;
    if !rel.starts_with("sys/") {
        return None;
    }
    let dir = root.join(rel);
    let modalias = std::fs::read_to_string(dir.join("modalias")).ok()?;
    let driver = std::fs::read_link(dir.join("driver"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
    Some((input.to_owned(), modalias.trim_end().to_owned(), driver))
}

fn origin(o: &Origin) -> String {
    o.to_string()
}

fn explain(setup: &Setup, planner: &Planner, input: &str) -> Result<Explained, String> {
    let (devpath, key, driver) = match device(&setup.root, input) {
        Some((path, modalias, driver)) => (Some(path), modalias, driver),
        None if input.starts_with("/sys/") => {
            return Err(format!(
                "no modalias file in {}",
                setup.root.join(&input[1..]).display()
            ));
        }
        None => (None, input.to_owned(), None),
    };
    let mut res = Resolution::default();
    setup
        .resolver
        .resolve_into(
            key.as_bytes(),
            &setup.config,
            &mut Scratch::default(),
            &mut res,
        )
        .map_err(|e| e.to_string())?;
    let normalized = String::from_utf8_lossy(res.normalized()).into_owned();
    let module_dir = setup.dir.display().to_string();
    let mut matches = Vec::new();
    for &rank in &res.entries {
        let entry = setup.resolver.entry(rank);
        let (file, builtin) = match entry.table {
            Table::Alias => (setup.resolver.aliases_file(), false),
            Table::BuiltinAlias => ("modules.builtin.modinfo", true),
        };
        matches.push(Matched {
            pattern: String::from_utf8_lossy(entry.pattern).into_owned(),
            module: entry.module.to_owned(),
            file: format!("{module_dir}/{file}"),
            line: entry.line,
            builtin,
        });
    }
    for a in &setup.config.aliases {
        if libc_fnmatch(a.pattern.as_bytes(), normalized.as_bytes()) {
            matches.push(Matched {
                pattern: a.pattern.clone(),
                module: a.module.clone(),
                file: origin(&a.origin),
                line: 0,
                builtin: false,
            });
        }
    }
    let found = planner.lookup_paths(&key);
    let names: Vec<String> = found.iter().map(|(n, _)| n.clone()).collect();
    let kernel = LinuxKernel::new(&setup.root);
    let modules = found
        .into_iter()
        .map(|(name, path)| {
            let state = match kernel.module_state(&name) {
                KernelState::Live | KernelState::Coming | KernelState::Going => "loaded",
                KernelState::Builtin => "built in",
                KernelState::Absent if res.builtin() || path.is_none() => "built in",
                KernelState::Absent => "not loaded",
            };
            let file = path.map(|p| setup.dir.join(p).display().to_string());
            ModuleState { name, state, file }
        })
        .collect::<Vec<_>>();
    let applies_to = |m: &str| names.iter().any(|n| n == m) || m == normalized;
    let mut config = Vec::new();
    let c = &setup.config;
    for l in &c.options {
        if applies_to(&crate::names::normalize_modname(&l.module)) {
            config.push(Applies {
                kind: "options",
                text: format!("options {} {}", l.module, l.options),
                origin: origin(&l.origin),
            });
        }
    }
    let mut blacklisted = Vec::new();
    for l in &c.blacklist {
        if names.contains(&l.module) {
            blacklisted.push(l.module.clone());
            config.push(Applies {
                kind: "blacklist",
                text: format!("blacklist {}", l.module),
                origin: origin(&l.origin),
            });
        }
    }
    for (kind, lines) in [("install", &c.installs), ("remove", &c.removes)] {
        for l in lines {
            if names
                .iter()
                .any(|n| libc_fnmatch(l.module.as_bytes(), n.as_bytes()))
            {
                config.push(Applies {
                    kind,
                    text: format!("{kind} {} {}", l.module, l.command),
                    origin: origin(&l.origin),
                });
            }
        }
    }
    for l in &c.softdeps {
        if names.contains(&l.module) {
            config.push(Applies {
                kind: "softdep",
                text: {
                    let mut text = format!("softdep {}", l.module);
                    for (label, deps) in [("pre:", &l.pre), ("post:", &l.post)] {
                        if !deps.is_empty() {
                            text.push_str(&format!(" {label} {}", deps.join(" ")));
                        }
                    }
                    text
                },
                origin: origin(&l.origin),
            });
        }
    }
    // Devices are handled as the daemon handles them; names as modprobe does.
    let mode = if devpath.is_some() || key.contains(':') {
        BlacklistMode::Always
    } else {
        BlacklistMode::AliasOnly
    };
    let target = setup.target_dir();
    let plan = match planner.plan(&key, mode, "") {
        Outcome::Steps(steps) => crate::modprobe::plan::show_depends_lines(&steps, &target),
        Outcome::NotFound => Vec::new(),
    };
    Ok(Explained {
        input: input.to_owned(),
        devpath,
        driver,
        key,
        normalized,
        source: res.source(),
        matches,
        modules,
        config,
        blacklisted,
        alias_only: mode == BlacklistMode::AliasOnly,
        plan,
    })
}

fn source_text(source: Source) -> &'static str {
    match source {
        Source::Nothing => "nothing matched",
        Source::ConfigAlias => "an alias in the modprobe configuration",
        Source::ModuleName => "a module name (modules.dep)",
        Source::Symbol => "a symbol (modules.symbols)",
        Source::ConfigCommand => "an install or remove command in the modprobe configuration",
        Source::Alias => "modules.alias patterns",
        Source::BuiltinName => "a built-in module (modules.builtin)",
        Source::BuiltinAlias => "a built-in module's alias (modules.builtin.modinfo)",
    }
}

fn write_text(out: &mut impl Write, e: &Explained) -> std::io::Result<()> {
    writeln!(out, "{}", e.input)?;
    if let Some(path) = &e.devpath {
        writeln!(out, "  device {path}: MODALIAS {}", e.key)?;
        match &e.driver {
            Some(d) => writeln!(out, "  bound to driver {d}")?,
            None => writeln!(out, "  no driver bound")?,
        }
    }
    writeln!(
        out,
        "  lookup {}: answered by {}",
        e.normalized,
        source_text(e.source)
    )?;
    for m in &e.matches {
        let at = if m.line > 0 {
            format!("{}:{}", m.file, m.line)
        } else {
            m.file.clone()
        };
        let b = if m.builtin { " (built in)" } else { "" };
        writeln!(out, "  matched {} -> {}{b}  # {at}", m.pattern, m.module)?;
    }
    for m in &e.modules {
        match &m.file {
            Some(f) => writeln!(out, "  module {}: {}, {f}", m.name, m.state)?,
            None => writeln!(out, "  module {}: {}", m.name, m.state)?,
        }
    }
    for a in &e.config {
        writeln!(out, "  {}  # {}", a.text, a.origin)?;
    }
    if !e.blacklisted.is_empty() {
        let note = if e.alias_only && e.source == Source::ModuleName {
            " (the blacklist stops only aliases: loading it by name still loads it)"
        } else {
            ""
        };
        writeln!(out, "  blacklisted: {}{note}", e.blacklisted.join(" "))?;
    }
    if e.plan.is_empty() {
        writeln!(out, "  plan: nothing to load")?;
    }
    for line in &e.plan {
        writeln!(out, "  plan: {line}")?;
    }
    Ok(())
}

fn write_json(out: &mut impl Write, e: &Explained) -> std::io::Result<()> {
    let opt = |out: &mut dyn Write, v: &Option<String>| -> std::io::Result<()> {
        match v {
            Some(s) => {
                let mut buf = Vec::new();
                json::string(&mut buf, s.as_bytes())?;
                out.write_all(&buf)
            }
            None => out.write_all(b"null"),
        }
    };
    out.write_all(b"{\"input\":")?;
    json::string(out, e.input.as_bytes())?;
    out.write_all(b",\"device\":")?;
    opt(out, &e.devpath)?;
    out.write_all(b",\"driver\":")?;
    opt(out, &e.driver)?;
    out.write_all(b",\"key\":")?;
    json::string(out, e.key.as_bytes())?;
    out.write_all(b",\"normalized\":")?;
    json::string(out, e.normalized.as_bytes())?;
    write!(out, ",\"source\":\"{}\",\"matches\":[", e.source.as_str())?;
    for (i, m) in e.matches.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(b"{\"pattern\":")?;
        json::string(out, m.pattern.as_bytes())?;
        out.write_all(b",\"module\":")?;
        json::string(out, m.module.as_bytes())?;
        out.write_all(b",\"file\":")?;
        json::string(out, m.file.as_bytes())?;
        write!(out, ",\"line\":{},\"builtin\":{}}}", m.line, m.builtin)?;
    }
    out.write_all(b"],\"modules\":[")?;
    for (i, m) in e.modules.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(b"{\"name\":")?;
        json::string(out, m.name.as_bytes())?;
        write!(out, ",\"state\":\"{}\",\"file\":", m.state)?;
        opt(out, &m.file)?;
        out.write_all(b"}")?;
    }
    out.write_all(b"],\"config\":[")?;
    for (i, a) in e.config.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(out, "{{\"kind\":\"{}\",\"line\":", a.kind)?;
        json::string(out, a.text.as_bytes())?;
        out.write_all(b",\"origin\":")?;
        json::string(out, a.origin.as_bytes())?;
        out.write_all(b"}")?;
    }
    out.write_all(b"],\"blacklisted\":[")?;
    for (i, b) in e.blacklisted.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        json::string(out, b.as_bytes())?;
    }
    out.write_all(b"],\"plan\":[")?;
    for (i, l) in e.plan.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        json::string(out, l.as_bytes())?;
    }
    out.write_all(b"]}\n")
}
