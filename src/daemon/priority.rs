//! The loading pool's scheduling priority during coldplug.
//!
//! The kernel does a module's work (decompressing, relocating, the driver's probe) in the thread
//! that calls `finit_module`, at that thread's priority. At coldplug the pool inserts dozens of
//! modules at once, while coldplug only ends with its longest chain: a USB controller's driver,
//! the bus enumeration in the kernel's own worker threads, usb-storage, its delayed scan,
//! `sd_mod`. Those steps come from controllers and from events; every other scanned device has
//! nothing behind it. So the threads working on such devices run niced: the chain, and the
//! kernel workers that enumerate the buses, get the CPUs first, and the rest fills the time in
//! between. After coldplug every piece of work is an event, and nothing is niced.

/// How much work that nothing waits behind is niced. Against its unniced peers it gets about a
/// tenth of a contended CPU (the kernel's weights for nice 0 and 10: 1024 and 110).
pub const BACKGROUND_NICE: i32 = 10;

/// The calling thread's nice value (Linux keeps one per thread).
fn nice() -> i32 {
    // SAFETY: getpriority has no memory arguments; `who` 0 is the calling thread. It cannot
    // fail for the calling thread, so -1 is a value, not an error.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

fn set_nice(nice: i32) -> bool {
    // SAFETY: as above.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 }
}

fn background_nice(base: i32) -> i32 {
    (base + BACKGROUND_NICE).min(19)
}

/// Whether a thread may nice itself and come back: coming back needs CAP_SYS_NICE (or
/// RLIMIT_NICE), which a service manager may have taken away. Tried in a short-lived thread,
/// so a failure strands no thread that later has urgent work.
pub fn can_come_back() -> bool {
    std::thread::spawn(|| {
        let base = nice();
        set_nice(background_nice(base)) && set_nice(base)
    })
    .join()
    .unwrap_or(false)
}

/// A pool thread's priority, changed only when the kind of work it takes changes.
#[derive(Debug)]
pub struct ThreadPriority {
    enabled: bool,
    /// The thread's nice value when it started, which urgent work runs at.
    base: i32,
    background: bool,
}

impl ThreadPriority {
    /// With `enabled` false (see [`can_come_back`]) every thread keeps its priority.
    pub fn new(enabled: bool) -> ThreadPriority {
        ThreadPriority {
            enabled,
            base: nice(),
            background: false,
        }
    }

    /// Runs the calling thread niced or not. Threads it starts inherit the value, which is how
    /// the loader's own workers for a batch get it.
    pub fn set(&mut self, background: bool) {
        if self.enabled && background != self.background {
            let nice = if background {
                background_nice(self.base)
            } else {
                self.base
            };
            if set_nice(nice) {
                self.background = background;
            } else {
                tracing::debug!("could not set the loading thread's nice value to {nice}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value applies to the calling thread only, and to threads it starts afterwards.
    #[test]
    fn background_work_is_niced_in_its_own_thread_and_the_threads_it_starts() {
        let before = nice();
        let (own, inherited) = std::thread::spawn(|| {
            let mut p = ThreadPriority::new(true);
            p.set(true);
            let inherited = std::thread::spawn(nice).join().unwrap();
            (nice(), inherited)
        })
        .join()
        .unwrap();
        // Raising one's own nice value needs no privilege (up to 19).
        let expected = (before + BACKGROUND_NICE).min(19);
        assert_eq!((own, inherited), (expected, expected));
        assert_eq!(nice(), before, "another thread's value changed this one");
    }

    #[test]
    fn disabled_changes_nothing() {
        let before = nice();
        let after = std::thread::spawn(|| {
            let mut p = ThreadPriority::new(false);
            p.set(true);
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(after, before);
    }
}
