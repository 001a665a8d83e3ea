//! `modaliasd modinfo`: what kmod's `modinfo` prints, line for line.

use super::{
    CONFIG_OPTIONS_HELP, CommonOptions, EXIT_INVALID_INPUT, EXIT_OK, Setup, TREE_OPTIONS_HELP,
    json, string,
};
use crate::modinfo::{ModuleInfo, Shown, render};
use crate::modprobe::plan::Planner;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

fn help() -> String {
    format!(
        "\
Usage: modaliasd modinfo [OPTIONS] NAME|ALIAS|FILE...

Prints what kmod's modinfo prints, in its order: filename, the strings of the module's .modinfo
section as they come (license, description, author, alias, depends, retpoline, intree, name,
vermagic, ...), the appended signature (sig_id, signer, sig_key, sig_hashalgo, signature), then
each parameter with its type. Plain, .xz, .zst and .gz modules.

A FILE is an existing file whose name ends in .ko (optionally compressed); anything else is
looked up as modprobe would (module name, configured alias, modules.alias, built in), each
module found is shown. Built-in modules come from modules.builtin.modinfo.

Options:
{TREE_OPTIONS_HELP}{CONFIG_OPTIONS_HELP}  -F, --field FIELD  print only FIELD's values, one per line (as modinfo -F)
  -a, -d, -l, -p, -n  kmod's shorthands: -F author, description, license, parm, filename
                  (also --author, --description, --license, --parameters, --filename)
  -0, --null      end each line with NUL instead of newline (and print key=value)
  --json          print a JSON array: per module its name, filename, fields (in order) and
                  parameters (name, description, type)
  -h, --help      this help

Exit status: 0 when every argument was shown, 1 when one was not found or not readable.
"
    )
}

/// kmod's `is_module_filename`: an existing regular file with a module's extension.
fn is_module_filename(arg: &Path) -> bool {
    let name = arg.to_string_lossy();
    let module_ext = [".ko", ".ko.gz", ".ko.xz", ".ko.zst"]
        .iter()
        .any(|e| name.ends_with(e));
    module_ext && std::fs::metadata(arg).is_ok_and(|m| m.is_file())
}

struct Found {
    name: String,
    filename: Option<PathBuf>,
    info: Result<Option<ModuleInfo>, String>,
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut common = CommonOptions::default();
    let mut field: Option<String> = None;
    let mut separator = b'\n';
    let mut as_json = false;
    let mut targets: Vec<OsString> = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            a if CommonOptions::takes(&a) => {
                let key = CommonOptions::key(&a);
                common.set(&key, &mut parser)?;
            }
            lexopt::Arg::Short('F') | lexopt::Arg::Long("field") => {
                field = Some(string(&mut parser)?)
            }
            // kmod's shorthands for -F.
            lexopt::Arg::Short('a') | lexopt::Arg::Long("author") => field = Some("author".into()),
            lexopt::Arg::Short('d') | lexopt::Arg::Long("description") => {
                field = Some("description".into())
            }
            lexopt::Arg::Short('l') | lexopt::Arg::Long("license") => {
                field = Some("license".into())
            }
            lexopt::Arg::Short('p') | lexopt::Arg::Long("parameters") => {
                field = Some("parm".into())
            }
            lexopt::Arg::Short('n') | lexopt::Arg::Long("filename") => {
                field = Some("filename".into())
            }
            lexopt::Arg::Short('0') | lexopt::Arg::Long("null") => separator = 0,
            lexopt::Arg::Long("json") => as_json = true,
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(EXIT_OK);
            }
            lexopt::Arg::Value(v) => targets.push(v),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if targets.is_empty() {
        return Err(
            "modinfo: no NAME, ALIAS or FILE given (see 'modaliasd modinfo --help')".into(),
        );
    }
    if as_json && (field.is_some() || separator == 0) {
        return Err("--json cannot be combined with --field or --null".into());
    }
    // The module directory is read only when a name has to be looked up.
    let mut setup: Option<Setup> = None;
    let mut status = EXIT_OK;
    let mut found: Vec<Found> = Vec::new();
    for target in &targets {
        let path = Path::new(target);
        if is_module_filename(path) {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            let name = crate::names::modname_from_path(&absolute.to_string_lossy());
            found.push(Found {
                name,
                info: ModuleInfo::from_file(&absolute).map(Some),
                filename: Some(absolute),
            });
            continue;
        }
        if setup.is_none() {
            setup = Some(Setup::load(&common.tree, common.config.clone())?);
        }
        let s = setup.as_ref().unwrap();
        let dir = std::path::absolute(&s.dir).unwrap_or_else(|_| s.dir.clone());
        let planner = Planner::new(&s.tree, &s.resolver, &s.config);
        let key = target.to_string_lossy();
        let modules = planner.lookup_paths(&key);
        if modules.is_empty() {
            tracing::error!("module {key} not found");
            status = EXIT_INVALID_INPUT;
        }
        for (name, rel) in modules {
            match rel {
                Some(rel) => {
                    let file = dir.join(rel);
                    found.push(Found {
                        name,
                        info: ModuleInfo::from_file(&file).map(Some),
                        filename: Some(file),
                    });
                }
                None => found.push(Found {
                    info: Ok(ModuleInfo::builtin(&dir, &name)),
                    name,
                    filename: None,
                }),
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = if as_json {
        write_json(&mut out, &found)
    } else {
        found.iter().try_for_each(|f| {
            let filename = f
                .filename
                .as_ref()
                .map(|p| p.as_os_str().as_encoded_bytes());
            match &f.info {
                Ok(info) => render(
                    &mut out,
                    &Shown {
                        filename,
                        name: &f.name,
                        info: info.as_ref(),
                    },
                    field.as_deref(),
                    separator,
                ),
                Err(_) => Ok(()),
            }
        })
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(format!("writing output: {e}")),
    }
    for f in &found {
        if let Err(e) = &f.info {
            tracing::error!("could not read {}: {e}", f.name);
            status = EXIT_INVALID_INPUT;
        }
    }
    Ok(status)
}

fn write_json(out: &mut impl Write, found: &[Found]) -> std::io::Result<()> {
    out.write_all(b"[")?;
    let mut first = true;
    for f in found {
        let Ok(info) = &f.info else { continue };
        if !std::mem::take(&mut first) {
            out.write_all(b",")?;
        }
        out.write_all(b"\n{\"name\":")?;
        json::string(out, f.name.as_bytes())?;
        out.write_all(b",\"filename\":")?;
        match &f.filename {
            Some(p) => json::string(out, p.as_os_str().as_encoded_bytes())?,
            None => out.write_all(b"null")?,
        }
        write!(out, ",\"builtin\":{}", f.filename.is_none())?;
        out.write_all(b",\"fields\":[")?;
        let empty = ModuleInfo::default();
        let info = info.as_ref().unwrap_or(&empty);
        for (i, field) in info.all_fields().iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(b"{\"key\":")?;
            json::string(out, &field.key)?;
            out.write_all(b",\"value\":")?;
            match &field.value {
                Some(v) => json::string(out, v)?,
                None => out.write_all(b"null")?,
            }
            out.write_all(b"}")?;
        }
        out.write_all(b"],\"parameters\":[")?;
        for (i, p) in info.params().iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(b"{\"name\":")?;
            json::string(out, &p.name)?;
            for (key, value) in [("description", &p.description), ("type", &p.kind)] {
                write!(out, ",\"{key}\":")?;
                match value {
                    Some(v) => json::string(out, v)?,
                    None => out.write_all(b"null")?,
                }
            }
            out.write_all(b"}")?;
        }
        out.write_all(b"]}")?;
    }
    out.write_all(b"\n]\n")
}
