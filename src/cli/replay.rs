//! `modaliasd replay FILE`: a recording through the daemon's pipeline.

use super::{
    CONFIG_OPTIONS_HELP, CommonOptions, EXIT_INVALID_INPUT, EXIT_OK, Setup, TREE_OPTIONS_HELP,
};
use crate::daemon::{DryRun, Processor, spawn_program};
use crate::loader::Loader;
use crate::loader::kernel::LinuxKernel;
use crate::modprobe::plan::Planner;
use crate::uevent::{Event, record};
use std::ffi::OsString;
use std::io::BufRead;
use std::time::{Duration, Instant};

fn help() -> String {
    format!(
        "\
Usage: modaliasd replay [OPTIONS] FILE

Feeds the events of a recording (from 'modaliasd record'; - reads standard input) through the
daemon's pipeline: rules, resolution, plans, loading. With --dry-run nothing is loaded and the
would-be actions are printed as 'modprobe --show-depends' prints them, each line once.

Options:
{TREE_OPTIONS_HELP}{CONFIG_OPTIONS_HELP}  --dry-run       print what would be done, load nothing
  --speed N       replay N times faster than recorded (default 1: real time)
  --as-fast-as-possible  ignore the recorded times
  -h, --help      this help

Rules come from ROOT/etc/modaliasd/rules.d, ROOT/run/modaliasd/rules.d and
ROOT/usr/lib/modaliasd/rules.d, or the built-in copies of rules.d/ when those hold none.
Broken lines of the recording are reported with their numbers and skipped (exit status 1).
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut common = CommonOptions::default();
    let mut dry_run = false;
    let mut speed = Some(1.0f64);
    let mut file = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            a if CommonOptions::takes(&a) => {
                let key = CommonOptions::key(&a);
                common.set(&key, &mut parser)?;
            }
            lexopt::Arg::Long("dry-run") => dry_run = true,
            lexopt::Arg::Long("speed") => {
                let s = super::string(&mut parser)?;
                let n: f64 = s
                    .parse()
                    .map_err(|_| format!("--speed {s}: not a number"))?;
                if !(n > 0.0 && n.is_finite()) {
                    return Err(format!("--speed {s}: must be positive"));
                }
                speed = Some(n);
            }
            lexopt::Arg::Long("as-fast-as-possible") => speed = None,
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(EXIT_OK);
            }
            lexopt::Arg::Value(v) if file.is_none() => file = Some(v),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let file = file.ok_or("replay: no FILE given (see 'modaliasd replay --help')")?;
    let input: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f =
            std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.to_string_lossy()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let setup = Setup::load(&common.tree, common.config.clone())?;
    let planner = Planner::new(&setup.tree, &setup.resolver, &setup.config);
    let mut processor = Processor::new(&planner, &setup.rules);
    let stdout = std::io::stdout();
    let mut printer = DryRun::new(std::io::BufWriter::new(stdout.lock()), setup.target_dir());
    let loader = (!dry_run).then(|| Loader::new(LinuxKernel::new(&setup.root), setup.dir.clone()));
    let started = Instant::now();
    let mut first_time = None;
    let mut bad_lines = 0;
    let mut failures = 0;
    for item in record::read(input) {
        let recorded = match item {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{}: {e}", file.to_string_lossy());
                bad_lines += 1;
                continue;
            }
        };
        if let Some(speed) = speed {
            let t0 = *first_time.get_or_insert(recorded.time);
            let due = Duration::from_secs_f64(((recorded.time - t0) / speed).max(0.0));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let event = Event::parse(&recorded.message).expect("record::read checked it");
        let work = processor.handle(&event);
        match &loader {
            None => printer.print(&work).map_err(|e| e.to_string())?,
            Some(loader) => {
                for program in &work.programs {
                    spawn_program(program);
                }
                for (_, result) in loader.load_plans(&work.plans) {
                    if let Err(e) = result {
                        tracing::error!("{e}");
                        failures += 1;
                    }
                }
            }
        }
    }
    printer.flush().map_err(|e| e.to_string())?;
    Ok(if bad_lines > 0 || failures > 0 {
        EXIT_INVALID_INPUT
    } else {
        EXIT_OK
    })
}
