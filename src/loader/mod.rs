//! Carrying out load plans: inserting modules, running install commands, in parallel where
//! that is safe, each module once.
//!
//! One module ([`Loader::insert`]): a module the kernel reports live, coming or built in is left
//! alone. A plain `.ko` goes to `finit_module`; a compressed one too, with
//! `MODULE_INIT_COMPRESSED_FILE`, when the kernel's own decompressor
//! (`/sys/module/compression`) is the one it needs; otherwise it is decompressed here and given
//! to `init_module`. EEXIST means another loader won the race and ENODEV that the driver found
//! no device: neither is a failure for hotplug.
//!
//! Many modules ([`Loader::load_plans`]): the steps of all plans become one graph whose edges are
//! each step's [`Step::waits_for`]. A bounded pool of threads takes steps whose predecessors are
//! done. A module that was requested before, or is being inserted right now by another caller,
//! is not inserted again: the second caller waits for the first and shares its result. An
//! insertion that takes longer than [`Loader::slow`] is logged, and a worker is added so that a
//! hung `finit_module` (a driver probe that never returns) cannot hold up unrelated modules.

pub mod compression;
pub mod fake;
pub mod kernel;

use crate::modprobe::plan::{Action, Step};
use compression::Compression;
use kernel::{Errno, Kernel, MODULE_INIT_COMPRESSED_FILE, ModuleState};
use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What loading a module came to, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Inserted,
    /// Live already, coming, or inserted by someone else first (EEXIST).
    AlreadyLoaded,
    Builtin,
    /// The driver found no device it supports (ENODEV): normal on hotplug.
    NoDevice,
    /// Its `install` command ran and succeeded.
    InstallCommand,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub module: String,
    pub errno: Option<Errno>,
    pub message: String,
    /// For an insertion the kernel refused: what the diagnosis needs.
    pub refused: Option<Box<Refused>>,
}

/// The insertion the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The module file.
    pub path: PathBuf,
    /// The options it was given.
    pub options: String,
    /// What the kernel logged while it was tried (it may include other modules' messages
    /// when several load at once), when its log could be read.
    pub kernel_log: Option<Vec<String>>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not insert '{}': {}", self.module, self.message)
    }
}

type Outcome = Result<Loaded, LoadError>;

enum Slot {
    InFlight,
    Done(Outcome),
}

/// Loads modules from one module directory through one kernel.
pub struct Loader<K: Kernel> {
    pub kernel: K,
    /// `ROOT/lib/modules/KVER`.
    module_dir: PathBuf,
    /// Worker threads for [`Loader::load_plans`].
    pub threads: usize,
    /// Insertions slower than this are logged, and trigger an extra worker.
    pub slow: Duration,
    slots: Mutex<HashMap<String, Slot>>,
    changed: Condvar,
}

impl<K: Kernel> Loader<K> {
    pub fn new(kernel: K, module_dir: PathBuf) -> Loader<K> {
        Loader {
            kernel,
            module_dir,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            slow: Duration::from_secs(5),
            slots: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
        }
    }

    fn error(step: &Step, errno: Option<Errno>, message: impl Into<String>) -> LoadError {
        LoadError {
            module: step.module.clone(),
            errno,
            message: message.into(),
            refused: None,
        }
    }

    /// Loads one step, unless this loader already did or is doing it: then the result of that
    /// attempt is returned (after waiting for it).
    pub fn load(&self, step: &Step) -> Outcome {
        {
            let mut slots = self.slots.lock().unwrap();
            loop {
                match slots.get(&step.module) {
                    Some(Slot::Done(result)) => return result.clone(),
                    Some(Slot::InFlight) => slots = self.changed.wait(slots).unwrap(),
                    None => break,
                }
            }
            slots.insert(step.module.clone(), Slot::InFlight);
        }
        let started = Instant::now();
        let result = self.insert(step);
        if started.elapsed() >= self.slow {
            tracing::warn!(
                "loading {} took {:.1} s",
                step.module,
                started.elapsed().as_secs_f64()
            );
        }
        self.slots
            .lock()
            .unwrap()
            .insert(step.module.clone(), Slot::Done(result.clone()));
        self.changed.notify_all();
        result
    }

    /// Carries out one step, whatever was done before.
    pub fn insert(&self, step: &Step) -> Outcome {
        match &step.action {
            Action::Builtin => Ok(Loaded::Builtin),
            Action::Missing => Err(Self::error(
                step,
                Some(Errno(libc::ENOENT)),
                "Module not found",
            )),
            Action::Install { command } => self.run_install(step, command),
            Action::Insert { path } => {
                match self.kernel.module_state(&step.module) {
                    ModuleState::Live | ModuleState::Coming => return Ok(Loaded::AlreadyLoaded),
                    ModuleState::Builtin => return Ok(Loaded::Builtin),
                    ModuleState::Absent | ModuleState::Going => {}
                }
                let options = CString::new(step.options.as_bytes())
                    .map_err(|_| Self::error(step, None, "options contain a NUL byte"))?;
                let file_path = self.module_dir.join(path);
                let mut file = std::fs::File::open(&file_path).map_err(|e| {
                    Self::error(
                        step,
                        e.raw_os_error().map(Errno),
                        format!("{}: {e}", file_path.display()),
                    )
                })?;
                let mut head = [0u8; 6];
                let n = read_head(&mut file, &mut head);
                let compression = Compression::detect(&head[..n]);
                let taint_before = self.kernel.tainted();
                let mut log = self.kernel.log_cursor();
                let started = Instant::now();
                let result = if compression == Compression::None {
                    // Kernels before 3.8 have only init_module.
                    match self.kernel.finit_module(&step.module, &file, &options, 0) {
                        Err(Errno(libc::ENOSYS)) => {
                            self.user_space(step, compression, &file_path, &options)
                        }
                        r => r,
                    }
                } else if self.kernel.decompressor() == Some(compression) {
                    match self.kernel.finit_module(
                        &step.module,
                        &file,
                        &options,
                        MODULE_INIT_COMPRESSED_FILE,
                    ) {
                        Err(Errno(libc::ENOSYS)) => {
                            self.user_space(step, compression, &file_path, &options)
                        }
                        r => r,
                    }
                } else {
                    self.user_space(step, compression, &file_path, &options)
                };
                match result {
                    Ok(()) => {
                        tracing::debug!(
                            "inserted {} in {:.1} ms {}",
                            step.module,
                            started.elapsed().as_secs_f64() * 1e3,
                            step.options
                        );
                        self.report_taint(&step.module, taint_before);
                        Ok(Loaded::Inserted)
                    }
                    Err(Errno(libc::EEXIST)) => Ok(Loaded::AlreadyLoaded),
                    Err(Errno(libc::ENODEV)) => Ok(Loaded::NoDevice),
                    Err(e) => Err(LoadError {
                        refused: Some(Box::new(Refused {
                            path: file_path.clone(),
                            options: step.options.clone(),
                            kernel_log: log.as_mut().map(kernel::read_kernel_log),
                        })),
                        ..Self::error(step, Some(e), e.to_string())
                    }),
                }
            }
        }
    }

    /// Logs the taint flags that appeared while `module` was inserted, and which of them the
    /// module itself caused (its own `/sys/module/NAME/taint`).
    fn report_taint(&self, module: &str, before: Option<u64>) {
        let (Some(before), Some(after)) = (before, self.kernel.tainted()) else {
            return;
        };
        let new = after & !before;
        if new == 0 {
            return;
        }
        let own = self.kernel.module_taint(module).unwrap_or_default();
        for (letter, meaning) in crate::diagnostics::taint::decode(new) {
            if own.contains(letter) {
                tracing::warn!("{module} tainted the kernel: {letter} ({meaning})");
            } else {
                tracing::warn!(
                    "the kernel became tainted while {module} was inserted: {letter} ({meaning})"
                );
            }
        }
    }

    fn user_space(
        &self,
        step: &Step,
        compression: Compression,
        path: &std::path::Path,
        options: &CString,
    ) -> Result<(), Errno> {
        let data = std::fs::read(path).map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        match compression::decompress(compression, &data) {
            Ok(image) => self.kernel.init_module(&step.module, &image, options),
            Err(e) => {
                tracing::error!("{}: {e}", path.display());
                Err(Errno(libc::ENOEXEC))
            }
        }
    }

    /// `install` commands run under `/bin/sh -c` with `MODPROBE_MODULE` set and
    /// `$CMDLINE_OPTS` replaced, as text, by the module's options.
    fn run_install(&self, step: &Step, command: &str) -> Outcome {
        let command = command.replace("$CMDLINE_OPTS", &step.options);
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", &command])
            .env("MODPROBE_MODULE", &step.module)
            .status()
            .map_err(|e| Self::error(step, None, format!("cannot run install command: {e}")))?;
        if status.success() {
            Ok(Loaded::InstallCommand)
        } else {
            Err(Self::error(
                step,
                None,
                format!("install command '{command}' failed ({status})"),
            ))
        }
    }

    /// Loads every step of `plans` (each module once), in parallel where the steps allow.
    /// Returns each module's outcome, in the order modules first appear in the plans.
    pub fn load_plans(&self, plans: &[Vec<Step>]) -> Vec<(String, Outcome)> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut steps: Vec<&Step> = Vec::new();
        for step in plans.iter().flatten() {
            index.entry(&step.module).or_insert_with(|| {
                steps.push(step);
                steps.len() - 1
            });
        }
        let mut waits: Vec<Vec<usize>> = steps
            .iter()
            .map(|s| {
                s.waits_for
                    .iter()
                    .filter_map(|w| index.get(w.as_str()).copied())
                    .collect()
            })
            .collect();
        for w in &mut waits {
            w.sort_unstable();
            w.dedup();
        }
        // Who waits for whom, and how many waits each step still has: picking a ready step is
        // then constant time, not a scan of every step.
        let mut dependents = vec![Vec::new(); steps.len()];
        for (i, w) in waits.iter().enumerate() {
            for &d in w {
                dependents[d].push(i);
            }
        }
        let pending: Vec<usize> = waits.iter().map(Vec::len).collect();
        let ready = (0..steps.len()).filter(|&i| pending[i] == 0).collect();
        let graph = Graph {
            state: Mutex::new(GraphState {
                results: vec![None; steps.len()],
                taken: vec![false; steps.len()],
                untaken: steps.len(),
                pending,
                ready,
                running: Vec::new(),
                workers: 0,
                idle: 0,
            }),
            changed: Condvar::new(),
        };
        std::thread::scope(|scope| {
            let spawn = |scope| {
                graph.state.lock().unwrap().workers += 1;
                std::thread::Builder::new()
                    .spawn_scoped(scope, || self.work(&graph, &steps, &waits, &dependents))
                    .expect("spawn loader thread");
            };
            for _ in 0..self.threads.max(1).min(steps.len().max(1)) {
                spawn(scope);
            }
            // Watch for insertions that hang: add a worker while work is waiting and every
            // worker is busy with something slow, up to four times the pool.
            loop {
                let state = graph.state.lock().unwrap();
                if state.results.iter().all(Option::is_some) {
                    break;
                }
                let (state, _) = graph.changed.wait_timeout(state, self.slow / 2).unwrap();
                let stuck = state
                    .running
                    .iter()
                    .filter(|(_, since)| since.elapsed() >= self.slow)
                    .count();
                let waiting = state.untaken;
                let can_grow = state.workers < self.threads.max(1) * 4;
                let all_busy = state.idle == 0;
                drop(state);
                if stuck > 0 && waiting > 0 && all_busy && can_grow {
                    spawn(scope);
                }
            }
        });
        let results = graph.state.into_inner().unwrap().results;
        steps
            .iter()
            .zip(results)
            .map(|(s, r)| (s.module.clone(), r.expect("every step has a result")))
            .collect()
    }

    fn work(
        &self,
        graph: &Graph,
        steps: &[&Step],
        waits: &[Vec<usize>],
        dependents: &[Vec<usize>],
    ) {
        loop {
            let mut state = graph.state.lock().unwrap();
            let next = loop {
                if state.untaken == 0 {
                    return;
                }
                if let Some(i) = state.ready.pop_front() {
                    break i;
                }
                if state.running.is_empty() {
                    // Nothing ready and nothing running: the remaining steps wait on each
                    // other (a softdep loop). Break it where the fewest waits are unmet.
                    break (0..steps.len())
                        .filter(|&i| !state.taken[i])
                        .min_by_key(|&i| state.pending[i])
                        .unwrap();
                }
                state.idle += 1;
                state = graph.changed.wait(state).unwrap();
                state.idle -= 1;
            };
            state.taken[next] = true;
            state.untaken -= 1;
            // As libkmod, a hard dependency that did not load stops the modules that need it;
            // one whose driver found no device too (inserting the dependent would only fail
            // with its symbols unknown), and then that is not a failure either.
            let blocked = waits[next].iter().find_map(|&w| match &state.results[w] {
                _ if !(steps[w].required && steps[next].required) => None,
                Some(Err(e)) => Some(Err(e.module.clone())),
                Some(Ok(Loaded::NoDevice)) => Some(Ok(steps[w].module.clone())),
                _ => None,
            });
            state.running.push((next, Instant::now()));
            drop(state);
            let step = steps[next];
            let result = match blocked {
                Some(Err(dep)) => Err(LoadError {
                    module: step.module.clone(),
                    errno: None,
                    message: format!("dependency {dep} failed to load"),
                    refused: None,
                }),
                Some(Ok(dep)) => {
                    tracing::debug!("not inserting {}: {dep} found no device", step.module);
                    Ok(Loaded::NoDevice)
                }
                None => self.load(step),
            };
            let mut state = graph.state.lock().unwrap();
            state.running.retain(|(i, _)| *i != next);
            state.results[next] = Some(result);
            for &d in &dependents[next] {
                state.pending[d] -= 1;
                if state.pending[d] == 0 && !state.taken[d] {
                    state.ready.push_back(d);
                }
            }
            drop(state);
            graph.changed.notify_all();
        }
    }
}

struct GraphState {
    results: Vec<Option<Outcome>>,
    taken: Vec<bool>,
    untaken: usize,
    /// Waits not yet finished, per step.
    pending: Vec<usize>,
    ready: std::collections::VecDeque<usize>,
    running: Vec<(usize, Instant)>,
    workers: usize,
    idle: usize,
}

struct Graph {
    state: Mutex<GraphState>,
    changed: Condvar,
}

fn read_head(file: &mut std::fs::File, head: &mut [u8]) -> usize {
    use std::io::{Read, Seek};
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let _ = file.seek(std::io::SeekFrom::Start(0));
    n
}
