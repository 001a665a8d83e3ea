//! `modaliasd compile`: write the saved index for a module directory.

use super::{EXIT_OK, TREE_OPTIONS_HELP, TreeOptions, report_warnings};
use crate::index::ModuleTree;
use crate::resolve::Resolver;
use crate::resolve::saved::{FILE_NAME, save};
use std::ffi::OsString;

fn help() -> String {
    format!(
        "\
Usage: modaliasd compile [OPTIONS]

Compiles modules.alias (and the other lookup tables of lib/modules/KVER) into the saved index
that 'resolve' and the daemon load in about a millisecond. Run it after depmod; a stale index is
also noticed and rebuilt automatically wherever the directory is writable.

Options:
{TREE_OPTIONS_HELP}  -o, --output FILE  where to write (default lib/modules/KVER/{FILE_NAME})
  -h, --help      this help
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut tree_options = TreeOptions::default();
    let mut output = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Long(name) if TreeOptions::takes(name) => {
                let name = name.to_owned();
                tree_options.set(&name, &mut parser)?;
            }
            lexopt::Arg::Short('o') | lexopt::Arg::Long("output") => {
                output = Some(std::path::PathBuf::from(super::value(&mut parser)?))
            }
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(EXIT_OK);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let dir = tree_options.module_dir()?;
    let tree = ModuleTree::load(&dir).map_err(|e| e.to_string())?;
    report_warnings(&tree.warnings, 20);
    let resolver = Resolver::build(&tree);
    let file = output.unwrap_or_else(|| dir.join(FILE_NAME));
    save(&file, &resolver, &tree.sources).map_err(|e| e.to_string())?;
    tracing::info!(
        "compiled {} aliases into {}",
        resolver.alias_count(),
        file.display()
    );
    Ok(EXIT_OK)
}
