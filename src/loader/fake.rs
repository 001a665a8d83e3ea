//! A fake kernel for tests and benchmarks: it records every insertion (module, options, flags,
//! whether user space decompressed it, when it started and ended, how many ran at once) and can
//! be told to be slow or to fail for given modules.

use super::compression::Compression;
use super::kernel::{Errno, Kernel, ModuleState};
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insertion {
    pub module: String,
    /// The file given to `finit_module` (read back from `/proc/self/fd`); `None` for an image
    /// given to `init_module`.
    pub path: Option<std::path::PathBuf>,
    pub options: String,
    pub flags: u32,
    /// Came through `init_module` with an image decompressed in user space.
    pub user_decompressed: bool,
    /// The image (or file) started with the ELF magic.
    pub elf: bool,
    pub started: Instant,
    pub finished: Instant,
}

#[derive(Default)]
struct State {
    log: Vec<Insertion>,
    live: HashSet<String>,
    running: usize,
    max_running: usize,
}

/// See the module docs. Modules inserted successfully become `Live`.
#[derive(Default)]
pub struct FakeKernel {
    state: Mutex<State>,
    delay: Duration,
    delays: HashMap<String, Duration>,
    errors: HashMap<String, Errno>,
    builtin: HashSet<String>,
    decompressor: Option<Compression>,
}

impl FakeKernel {
    pub fn new() -> FakeKernel {
        FakeKernel::default()
    }

    /// Every insertion takes this long.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Inserting `module` takes this long (overrides [`FakeKernel::with_delay`]).
    pub fn with_module_delay(mut self, module: &str, delay: Duration) -> Self {
        self.delays.insert(module.to_owned(), delay);
        self
    }

    /// Inserting `module` fails with this errno.
    pub fn with_error(mut self, module: &str, errno: Errno) -> Self {
        self.errors.insert(module.to_owned(), errno);
        self
    }

    /// `/sys/module/NAME` exists without `initstate`.
    pub fn with_builtin(mut self, module: &str) -> Self {
        self.builtin.insert(module.to_owned());
        self
    }

    /// What `/sys/module/compression` says.
    pub fn with_decompressor(mut self, compression: Compression) -> Self {
        self.decompressor = Some(compression);
        self
    }

    pub fn log(&self) -> Vec<Insertion> {
        self.state.lock().unwrap().log.clone()
    }

    /// The most insertions that were running at one time.
    pub fn max_concurrency(&self) -> usize {
        self.state.lock().unwrap().max_running
    }

    /// Marks a module as already loaded.
    pub fn set_live(&self, module: &str) {
        self.state.lock().unwrap().live.insert(module.to_owned());
    }

    fn insert(
        &self,
        module: &str,
        path: Option<std::path::PathBuf>,
        options: &CStr,
        flags: u32,
        user: bool,
        elf: bool,
    ) -> Result<(), Errno> {
        let started = Instant::now();
        {
            let mut s = self.state.lock().unwrap();
            s.running += 1;
            s.max_running = s.max_running.max(s.running);
        }
        let delay = self.delays.get(module).copied().unwrap_or(self.delay);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let result = match self.errors.get(module) {
            Some(e) => Err(*e),
            None => Ok(()),
        };
        let mut s = self.state.lock().unwrap();
        s.running -= 1;
        let result = match result {
            Ok(()) if !s.live.insert(module.to_owned()) => Err(Errno(libc::EEXIST)),
            r => r,
        };
        s.log.push(Insertion {
            module: module.to_owned(),
            path,
            options: options.to_string_lossy().into_owned(),
            flags,
            user_decompressed: user,
            elf,
            started,
            finished: Instant::now(),
        });
        result
    }
}

impl Kernel for FakeKernel {
    fn finit_module(
        &self,
        module: &str,
        file: &std::fs::File,
        options: &CStr,
        flags: u32,
    ) -> Result<(), Errno> {
        use std::io::Read;
        let mut head = [0u8; 4];
        let elf = (&*file).read_exact(&mut head).is_ok() && &head == b"\x7fELF";
        use std::os::fd::AsRawFd;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok();
        self.insert(module, path, options, flags, false, elf)
    }

    fn init_module(&self, module: &str, image: &[u8], options: &CStr) -> Result<(), Errno> {
        self.insert(
            module,
            None,
            options,
            0,
            true,
            image.starts_with(b"\x7fELF"),
        )
    }

    fn module_state(&self, name: &str) -> ModuleState {
        if self.builtin.contains(name) {
            ModuleState::Builtin
        } else if self.state.lock().unwrap().live.contains(name) {
            ModuleState::Live
        } else {
            ModuleState::Absent
        }
    }

    fn decompressor(&self) -> Option<Compression> {
        self.decompressor
    }
}
