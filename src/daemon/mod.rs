//! From events to work: rules decide what an event asks for, the planner turns it into load
//! plans, and either the loader carries them out or, in a dry run, they are printed.
//!
//! The same [`Processor`] serves the netlink daemon (`run`), `coldplug` and `replay`, so a
//! recording replayed with `--dry-run` shows exactly what the daemon would have done.
//!
//! De-duplication: a MODALIAS string seen before is not planned again (devices of one kind
//! often come in dozens: CPUs, USB interfaces, memory blocks). Modules shared by several plans
//! are inserted once by the loader, which also makes later requests for a module wait for an
//! insertion still under way; the dry-run printer prints each line once.

pub mod activation;
pub mod priority;
pub mod queue;
pub mod signals;
pub mod sysfs;

use crate::modprobe::plan::{BlacklistMode, Outcome, Planner, Step};
use crate::rules::{Request, Rules};
use crate::uevent::Event;
use std::collections::HashSet;

/// The longest chain of insertions in `work`, weighed by module file size (`size` of a path
/// in the module directory): a module can only start once those it waits for are in, and
/// decompressing, relocating and linking a module cost roughly in proportion to its size
/// (`kvm` is 1.3 MB behind `irqbypass`; the sound stack is nine modules deep).
pub fn longest_chain(work: &Work, size: &mut impl FnMut(&str) -> u64) -> u64 {
    let mut longest = 0;
    for plan in &work.plans {
        let mut done: Vec<(&str, u64)> = Vec::new();
        for step in plan {
            let own = match &step.action {
                crate::modprobe::plan::Action::Insert { path } => size(path),
                _ => 0,
            };
            let before = step
                .waits_for
                .iter()
                .filter_map(|w| done.iter().find(|(n, _)| n == w).map(|(_, t)| *t))
                .max()
                .unwrap_or(0);
            done.push((&step.module, before + own));
            longest = longest.max(before + own);
        }
    }
    longest
}

/// Orders the work of a sysfs scan for the pool: controllers that bring more devices first
/// (`first` is true for those, see [`sysfs::controllers_first`]), then the longest chains of
/// insertions ([`longest_chain`]), so that the last module of coldplug is not one whose chain
/// started late. Ties keep the scan order.
pub fn coldplug_order(works: &mut [(bool, Work)], module_dir: &std::path::Path) {
    // Many devices share modules: each file's size is read once (a missing file weighs
    // nothing), and each chain weighed once. The sort is stable.
    let mut sizes: std::collections::HashMap<String, u64> = Default::default();
    let mut size = |path: &str| {
        *sizes
            .entry(path.to_owned())
            .or_insert_with(|| std::fs::metadata(module_dir.join(path)).map_or(0, |m| m.len()))
    };
    works.sort_by_cached_key(|(first, work)| {
        (!*first, std::cmp::Reverse(longest_chain(work, &mut size)))
    });
}

/// A program a rule asked to run, with the event's variables as its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub command: String,
    pub env: Vec<(String, String)>,
}

/// What one event leads to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Work {
    pub plans: Vec<Vec<Step>>,
    pub programs: Vec<Program>,
    /// Names and modaliases that resolved to nothing (normal for most devices).
    pub unresolved: Vec<String>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty() && self.programs.is_empty()
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub modaliases: u64,
    pub duplicate_modaliases: u64,
}

pub struct Processor<'p> {
    planner: &'p Planner<'p>,
    rules: &'p Rules,
    seen: HashSet<Vec<u8>>,
    pub stats: Stats,
}

impl<'p> Processor<'p> {
    pub fn new(planner: &'p Planner<'p>, rules: &'p Rules) -> Processor<'p> {
        Processor {
            planner,
            rules,
            seen: HashSet::new(),
            stats: Stats::default(),
        }
    }

    /// The work `event` asks for. The blacklist always applies, as it does for udev.
    pub fn handle(&mut self, event: &Event) -> Work {
        self.stats.events += 1;
        let mut work = Work::default();
        for request in self.rules.apply(event) {
            match request {
                Request::Load(names) if names.is_empty() => {
                    let Some(modalias) = event.modalias() else {
                        continue;
                    };
                    self.stats.modaliases += 1;
                    if !self.seen.insert(modalias.to_vec()) {
                        self.stats.duplicate_modaliases += 1;
                        continue;
                    }
                    self.plan(&String::from_utf8_lossy(modalias), &mut work);
                }
                Request::Load(names) => {
                    for name in names {
                        self.plan(&name, &mut work);
                    }
                }
                Request::Run(command) => work.programs.push(Program {
                    command,
                    env: event
                        .vars()
                        .map(|(k, v)| {
                            (
                                String::from_utf8_lossy(k).into_owned(),
                                String::from_utf8_lossy(v).into_owned(),
                            )
                        })
                        .collect(),
                }),
            }
        }
        work
    }

    fn plan(&self, key: &str, work: &mut Work) {
        match self.planner.plan(key, BlacklistMode::Always, "") {
            Outcome::Steps(steps) if !steps.is_empty() => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let modules: Vec<&str> = steps.iter().map(|s| s.module.as_str()).collect();
                    tracing::debug!("{}: {}", key.escape_debug(), modules.join(" "));
                }
                work.plans.push(steps)
            }
            Outcome::Steps(_) => tracing::debug!("{}: nothing to load", key.escape_debug()),
            Outcome::NotFound => {
                tracing::debug!("{}: no module", key.escape_debug());
                work.unresolved.push(key.to_owned())
            }
        }
    }
}

/// Prints work as `modprobe --show-depends` would, each line once, and programs as
/// `run COMMAND`.
pub struct DryRun<W: std::io::Write> {
    out: W,
    printed: HashSet<String>,
    module_dir: String,
}

impl<W: std::io::Write> DryRun<W> {
    /// `module_dir` is the module directory on the target system (`/lib/modules/KVER`).
    pub fn new(out: W, module_dir: String) -> DryRun<W> {
        DryRun {
            out,
            printed: HashSet::new(),
            module_dir,
        }
    }

    pub fn print(&mut self, work: &Work) -> std::io::Result<()> {
        for step in work.plans.iter().flatten() {
            if let Some(line) = step.show_depends_line(&self.module_dir) {
                if self.printed.insert(line.clone()) {
                    writeln!(self.out, "{line}")?;
                }
            }
        }
        for program in &work.programs {
            writeln!(self.out, "run {}", program.command)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Runs a rule's program under `/bin/sh -c` with the event in its environment, without waiting
/// for it (a thread reaps it and logs a failure).
pub fn spawn_program(program: &Program) {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", &program.command]);
    for (k, v) in &program.env {
        cmd.env(k, v);
    }
    match cmd.spawn() {
        Ok(mut child) => {
            let command = program.command.clone();
            std::thread::spawn(move || match child.wait() {
                Ok(status) if !status.success() => {
                    tracing::warn!("'{command}' failed ({status})")
                }
                Err(e) => tracing::warn!("'{command}': {e}"),
                _ => {}
            });
        }
        Err(e) => tracing::error!("cannot run '{}': {e}", program.command),
    }
}

/// Tells systemd (`Type=notify`) how things stand, if it is listening (`$NOTIFY_SOCKET`, a path
/// or an abstract name starting with `@`).
pub fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::warn!("sd_notify({state}): {e}");
    }
}

/// The marker `modaliasd settle` waits for: coldplug is complete.
pub fn settled_marker(root: &std::path::Path) -> std::path::PathBuf {
    root.join("run/modaliasd/coldplug-done")
}

/// How much longer than its quiet period coldplug must wait because a loaded driver scans its
/// bus only after a delay: usb-storage waits `delay_use` (seconds, or `NNNms` on newer kernels;
/// one second by default) before it scans a USB disk, so the disk's SCSI device, and `sd_mod`
/// with it, come that long after the last event. Zero when usb-storage is not loaded.
pub fn bus_scan_delay(root: &std::path::Path) -> std::time::Duration {
    use std::time::Duration;
    let path = root.join("sys/module/usb_storage/parameters/delay_use");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    let text = text.trim();
    match text.strip_suffix("ms") {
        Some(ms) => ms.trim().parse().map(Duration::from_millis),
        None => text.parse().map(Duration::from_secs),
    }
    .unwrap_or_default()
}

/// Whether coldplug is complete: no load under way, no event for `quiet`, and no USB disk
/// still due. usb-storage scans a disk `delay` ([`bus_scan_delay`]) after it binds it, so the
/// disk's events come at least that long after the bind: with the latest bind seen
/// (`since_storage_bind`), coldplug waits until `delay + quiet` after it. The kernel announces
/// binds since 4.14; without one seen (an older kernel, or usb-storage bound before the daemon
/// started) it waits `quiet + delay` after the last event instead, which is never sooner.
pub fn coldplug_settled(
    busy: bool,
    since_event: std::time::Duration,
    since_storage_bind: Option<std::time::Duration>,
    quiet: std::time::Duration,
    delay: std::time::Duration,
) -> bool {
    let disks_scanned = match since_storage_bind {
        Some(bind) => bind >= delay + quiet,
        None => since_event >= quiet + delay,
    };
    !busy && since_event >= quiet && disks_scanned
}

/// Whether an event says usb-storage took a device (whose disk it scans only after a delay).
pub fn is_storage_bind(event: &crate::uevent::Event) -> bool {
    event.get(b"ACTION") == Some(&b"bind"[..]) && event.get(b"DRIVER") == Some(&b"usb-storage"[..])
}

/// Marks coldplug complete (or, with `done == false`, not yet: removes a stale marker).
pub fn mark_settled(root: &std::path::Path, done: bool) {
    let marker = settled_marker(root);
    let result = if done {
        std::fs::create_dir_all(marker.parent().unwrap())
            .and_then(|()| std::fs::write(&marker, b""))
    } else {
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    };
    if let Err(e) = result {
        tracing::warn!("{}: {e}", marker.display());
    }
}

#[cfg(test)]
mod tests {
    use super::{Work, coldplug_order, longest_chain};
    use crate::modprobe::plan::{Action, Step};
    use std::time::Duration;

    fn step(module: &str, waits_for: &[&str]) -> Step {
        Step {
            module: module.to_owned(),
            action: Action::Insert {
                path: format!("{module}.ko"),
            },
            options: String::new(),
            required: true,
            waits_for: waits_for.iter().map(|w| w.to_string()).collect(),
        }
    }

    fn work(plan: Vec<Step>) -> Work {
        Work {
            plans: vec![plan],
            ..Default::default()
        }
    }

    #[test]
    fn coldplug_waits_for_the_usb_disk_from_its_bind_or_else_from_the_last_event() {
        use super::coldplug_settled;
        let ms = Duration::from_millis;
        let (quiet, delay) = (ms(500), ms(1000));
        // Nothing of usb-storage: the quiet period after the last event, once nothing loads.
        assert!(coldplug_settled(
            false,
            ms(500),
            None,
            quiet,
            Duration::ZERO
        ));
        assert!(!coldplug_settled(
            true,
            ms(900),
            None,
            quiet,
            Duration::ZERO
        ));
        assert!(!coldplug_settled(
            false,
            ms(499),
            None,
            quiet,
            Duration::ZERO
        ));
        // usb-storage in, no bind seen: quiet + delay after the last event.
        assert!(!coldplug_settled(false, ms(1400), None, quiet, delay));
        assert!(coldplug_settled(false, ms(1500), None, quiet, delay));
        // A bind seen: delay + quiet after the bind, and quiet after the last event.
        assert!(!coldplug_settled(
            false,
            ms(600),
            Some(ms(1400)),
            quiet,
            delay
        ));
        assert!(coldplug_settled(
            false,
            ms(600),
            Some(ms(1500)),
            quiet,
            delay
        ));
        assert!(!coldplug_settled(
            false,
            ms(400),
            Some(ms(3000)),
            quiet,
            delay
        ));
    }

    #[test]
    fn controllers_then_the_longest_chains_of_insertions() {
        let dir = std::env::temp_dir().join(format!("modaliasd-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, size) in [("a", 100), ("b", 300), ("c", 250), ("big", 500), ("hc", 10)] {
            std::fs::write(dir.join(format!("{name}.ko")), vec![0u8; size]).unwrap();
        }
        // a and c both wait for nothing; b waits for a: the chain a -> b weighs 400, not 650.
        let wide = work(vec![step("a", &[]), step("c", &[]), step("b", &["a"])]);
        let mut size = |path: &str| std::fs::metadata(dir.join(path)).map_or(0, |m| m.len());
        assert_eq!(longest_chain(&wide, &mut size), 400);
        let mut works = vec![
            (false, work(vec![step("missing", &[])])),
            (false, work(vec![step("c", &[])])),
            (false, wide),
            (true, work(vec![step("hc", &[])])),
            (false, work(vec![step("big", &[])])),
            (false, work(vec![step("gone", &[])])),
        ];
        coldplug_order(&mut works, &dir);
        let first: Vec<&str> = works
            .iter()
            .map(|(_, w)| w.plans[0][0].module.as_str())
            .collect();
        // Ties (two missing files) keep the scan order.
        assert_eq!(first, ["hc", "big", "a", "c", "missing", "gone"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn usb_storage_delay_in_seconds_or_milliseconds() {
        let root = std::env::temp_dir().join(format!("modaliasd-delay-{}", std::process::id()));
        let param = root.join("sys/module/usb_storage/parameters");
        assert_eq!(super::bus_scan_delay(&root), Duration::ZERO);
        std::fs::create_dir_all(&param).unwrap();
        std::fs::write(param.join("delay_use"), "1\n").unwrap();
        assert_eq!(super::bus_scan_delay(&root), Duration::from_secs(1));
        std::fs::write(param.join("delay_use"), "1500ms\n").unwrap();
        assert_eq!(super::bus_scan_delay(&root), Duration::from_millis(1500));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
