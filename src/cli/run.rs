//! `modaliasd run`: the daemon.

use super::{
    CONFIG_OPTIONS_HELP, CommonOptions, EXIT_OK, Setup, TREE_OPTIONS_HELP, record::number,
};
use crate::daemon::activation;
use crate::daemon::priority::{self, ThreadPriority};
use crate::daemon::queue::{CloseOnDrop, Origin, WorkQueue};
use crate::daemon::signals::{self, Signal, Signals};
use crate::daemon::{
    DryRun, Processor, Work, bus_scan_delay, coldplug_order, coldplug_settled, is_storage_bind,
    mark_settled, sd_notify, spawn_program, sysfs,
};
use crate::loader::Loader;
use crate::loader::kernel::LinuxKernel;
use crate::modprobe::plan::Planner;
use crate::uevent::netlink::{
    DEFAULT_RECEIVE_BUFFER, GROUP_KERNEL, GROUP_REBROADCAST, Listener, Rebroadcaster, Received,
};
use crate::uevent::{Event, libudev};
use std::ffi::OsString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often the daemon looks whether coldplug has settled while it waits for that.
const COLDPLUG_POLL: Duration = Duration::from_millis(20);

/// Coldplug under way in `run --coldplug`: when it began and when the last event came.
struct ColdplugWait {
    started: Instant,
    last_event: Instant,
    /// The latest usb-storage bind (see `coldplug_settled`).
    storage_bind: Option<Instant>,
}

fn help() -> String {
    format!(
        "\
Usage: modaliasd run [OPTIONS]

Listens for the kernel's uevents (netlink group 1; messages from anyone but the kernel are
refused and counted) and loads the drivers the rules ask for: on 'add' events with a MODALIAS,
and udev's fixed special cases (see rules.d/80-drivers.rules). Events are handled in order; the
loading runs in a pool of threads, so a hung driver probe never stops the listener. When the
receive buffer overflows, sysfs is rescanned so that no device is missed.

Socket activation: when the service manager passes a NETLINK_KOBJECT_UEVENT socket bound to
group 1 ($LISTEN_FDS/$LISTEN_PID, systemd's ListenNetlink=kobject-uevent 1), it is used instead
of a new one, so events queued while modaliasd was not running are handled, not lost.

Signals: SIGTERM or SIGINT stop listening, let loads under way finish, and exit 0. SIGHUP rereads
the configuration, rules and index; if they cannot be loaded the current ones stay, and the log
says why.

Coldplug is complete when the drivers for the devices present at start are loaded and then no
event has come for the quiet period while no load was under way (devices behind a freshly
loaded driver, such as USB devices behind a host controller, come as events in that time),
and every USB disk usb-storage took has had its delay_use (it scans the disk only then) and a
quiet period after the bind (on kernels that announce no binds: delay_use more after the last
event while usb-storage is loaded), or at the latest after --coldplug-timeout. Then, and not
before, ROOT/run/modaliasd/coldplug-done is written for 'modaliasd settle' (and the opt-in
modaliasd-settle.service). READY=1 goes to systemd (Type=notify) sooner: once the daemon
listens and the drivers for the devices present are queued, so that it never holds the boot;
without --coldplug the marker is written then too. Devices found during coldplug are loaded before what is left of the start's scan,
and the scan's devices other than storage and USB controllers are loaded niced (+10): the
controllers, the devices that appear behind them and the kernel's bus enumeration come first.

Options:
{TREE_OPTIONS_HELP}{CONFIG_OPTIONS_HELP}  --dry-run       print what would be done ('modprobe --show-depends' form), load nothing
  --coldplug      first load the drivers for the devices present now (sysfs scan)
  --quiet-ms MS   coldplug's quiet period (default 500)
  --coldplug-timeout SECONDS  report coldplug complete after this long regardless (default 30)
  --rebroadcast   after handling each event, send it on netlink group 4 in kernel format (for
                  libudev-zero and other group-4 listeners) and, while ROOT/run/udev/control
                  exists (libudev monitors subscribe only then), on group 2 in libudev's format
  --receive-buffer BYTES  socket receive buffer (default 128 MiB; a passed socket keeps its own)
  --idle-exit SECONDS     exit after SECONDS without an event (for tests and one-shot use)
  --pidfile FILE  write the process id to FILE once listening, and remove it on exit (see
                  'modaliasd stop')
  --log-file FILE append the log to FILE instead of standard error (for service managers
                  that keep no log, such as OpenRC with Debian's start-stop-daemon)
  -h, --help      this help
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut common = CommonOptions::default();
    let mut dry_run = false;
    let mut coldplug = false;
    let mut rebroadcast = false;
    let mut buffer_option = None;
    let mut idle = None;
    let mut quiet = Duration::from_millis(500);
    let mut coldplug_timeout = Duration::from_secs(30);
    let mut pidfile = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            a if CommonOptions::takes(&a) => {
                let key = CommonOptions::key(&a);
                common.set(&key, &mut parser)?;
            }
            lexopt::Arg::Long("dry-run") => dry_run = true,
            lexopt::Arg::Long("coldplug") => coldplug = true,
            lexopt::Arg::Long("rebroadcast") => rebroadcast = true,
            lexopt::Arg::Long("quiet-ms") => quiet = Duration::from_millis(number(&mut parser)?),
            lexopt::Arg::Long("coldplug-timeout") => {
                coldplug_timeout = Duration::from_secs(number(&mut parser)?)
            }
            lexopt::Arg::Long("receive-buffer") => {
                buffer_option = Some(number(&mut parser)? as usize)
            }
            lexopt::Arg::Long("idle-exit") => {
                idle = Some(Duration::from_secs_f64(number(&mut parser)? as f64))
            }
            lexopt::Arg::Long("log-file") => {
                let path = std::path::PathBuf::from(super::value(&mut parser)?);
                log_to(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            lexopt::Arg::Long("pidfile") => {
                pidfile = Some(std::path::PathBuf::from(super::value(&mut parser)?))
            }
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(EXIT_OK);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    // Signals first (before any thread exists), then the socket: no event may be missed
    // while setting up.
    let signals = Signals::new().map_err(|e| format!("signals: {e}"))?;
    // SAFETY: no other thread exists yet.
    let mut listener = match unsafe { activation::take_listener() }.map_err(|e| e.to_string())? {
        Some(passed) => {
            // The service manager sized it (ReceiveBuffer=); an explicit option still wins.
            if let Some(bytes) = buffer_option {
                passed.set_receive_buffer(bytes);
            }
            tracing::info!("using the uevent socket passed by the service manager");
            passed
        }
        None => Listener::open(
            GROUP_KERNEL,
            buffer_option.unwrap_or(DEFAULT_RECEIVE_BUFFER),
        )
        .map_err(|e| format!("netlink socket: {e}"))?,
    };
    let rebroadcaster = if rebroadcast {
        Some(Rebroadcaster::open().map_err(|e| format!("rebroadcast socket: {e}"))?)
    } else {
        None
    };
    let started = Instant::now();
    let mut setup = Setup::load(&common.tree, common.config.clone())?;
    let _pidfile = match &pidfile {
        Some(path) => Some(PidFile::write(path).map_err(|e| format!("{}: {e}", path.display()))?),
        None => None,
    };
    tracing::debug!(
        "setup (index, modules, configuration, rules) in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    mark_settled(&setup.root, false);
    release_free_memory();
    let stdout = std::io::stdout();
    let mut printer = DryRun::new(std::io::BufWriter::new(stdout.lock()), setup.target_dir());
    let loader = Loader::new(LinuxKernel::new(&setup.root), setup.dir.clone());
    // A reload keeps the root and module directory: the pool's diagnoses may use these.
    let (root, module_dir) = (setup.root.clone(), setup.dir.clone());
    let queue = WorkQueue::default();
    let mut handled = 0u64;
    // Batches of work sent to the pool and not finished yet: coldplug is not complete while
    // any is.
    let in_pool = AtomicUsize::new(0);
    let may_nice = !dry_run && priority::can_come_back();
    if !dry_run && !may_nice {
        tracing::debug!("all loads run at one priority (the nice value cannot come back)");
    }
    let result = std::thread::scope(|scope| -> Result<(), String> {
        // Loading pool: a few threads, each carrying out one event's plans at a time (the
        // loader itself parallelises inside a batch and inserts each module once), events
        // before scanned devices (see `WorkQueue`). On stop the queue closes and they finish
        // what is queued before the scope ends.
        if !dry_run {
            for _ in 0..4 {
                scope.spawn(|| {
                    let mut priority = ThreadPriority::new(may_nice);
                    while let Some((work, origin)) = queue.pop() {
                        if !work.programs.is_empty() {
                            // Programs keep the priority they start with.
                            priority.set(false);
                            for program in &work.programs {
                                spawn_program(program);
                            }
                        }
                        priority.set(origin.is_background());
                        for (_, r) in loader.load_plans(&work.plans) {
                            if let Err(e) = r {
                                super::report_load_error(&root, &module_dir, &e);
                            }
                        }
                        in_pool.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        }
        let _close = CloseOnDrop(&queue);
        let mut deliver = |work: Work, origin: Origin| -> Result<(), String> {
            if work.is_empty() {
                return Ok(());
            }
            if dry_run {
                printer.print(&work).map_err(|e| e.to_string())?;
                printer.flush().map_err(|e| e.to_string())
            } else {
                in_pool.fetch_add(1, Ordering::SeqCst);
                queue.push(work, origin);
                Ok(())
            }
        };
        let mut first = true;
        let mut coldplug_wait: Option<ColdplugWait> = None;
        'reload: loop {
            let planner = Planner::new(&setup.tree, &setup.resolver, &setup.config);
            let mut processor = Processor::new(&planner, &setup.rules);
            let root = setup.root.clone();
            let udev_control = root.join("run/udev/control");
            let mut last_seqnum: Option<u64> = None;
            // After an overflow: the SEQNUM gaps seen until the socket is drained. The kernel
            // numbers every uevent, so the gaps count what was dropped (plus any events meant
            // for other network namespaces, hence "at most").
            let mut lost: Option<u64> = None;
            let rescan = |processor: &mut Processor,
                          deliver: &mut dyn FnMut(Work, Origin) -> Result<(), String>|
             -> Result<(), String> {
                let scanning = Instant::now();
                let messages = sysfs::scan(&root);
                let scanned = scanning.elapsed();
                let mut works: Vec<(bool, Work)> = messages
                    .iter()
                    .filter_map(|message| {
                        let event = Event::parse(message).ok()?;
                        Some((sysfs::opens_a_bus(message), processor.handle(&event)))
                    })
                    .collect();
                let planned = scanning.elapsed();
                coldplug_order(&mut works, &module_dir);
                tracing::debug!(
                    "scanned {} devices in {:.1} ms, planned in {:.1} ms, ordered in {:.1} ms",
                    messages.len(),
                    scanned.as_secs_f64() * 1e3,
                    (planned - scanned).as_secs_f64() * 1e3,
                    (scanning.elapsed() - planned).as_secs_f64() * 1e3
                );
                for (controller, work) in works {
                    let origin = if controller {
                        Origin::ScannedController
                    } else {
                        Origin::Scanned
                    };
                    deliver(work, origin)?;
                }
                Ok(())
            };
            if first {
                if coldplug {
                    rescan(&mut processor, &mut deliver)?;
                    let now = Instant::now();
                    coldplug_wait = Some(ColdplugWait {
                        started: now,
                        last_event: now,
                        storage_bind: None,
                    });
                } else {
                    mark_settled(&setup.root, true);
                }
                sd_notify("READY=1");
                tracing::info!("listening");
                first = false;
            }
            let next = loop {
                if let Some(wait) = &coldplug_wait {
                    let timed_out = wait.started.elapsed() >= coldplug_timeout;
                    let quiet_now = coldplug_settled(
                        in_pool.load(Ordering::SeqCst) != 0,
                        wait.last_event.elapsed(),
                        wait.storage_bind.map(|t| t.elapsed()),
                        quiet,
                        bus_scan_delay(&setup.root),
                    );
                    if timed_out || quiet_now {
                        if timed_out {
                            tracing::warn!(
                                "coldplug still busy after {} s: reporting it complete",
                                coldplug_timeout.as_secs()
                            );
                        }
                        tracing::info!(
                            "coldplug complete after {:.3} s",
                            wait.started.elapsed().as_secs_f64()
                        );
                        mark_settled(&setup.root, true);
                        coldplug_wait = None;
                    }
                }
                if let Some(n) = lost.filter(|n| *n > 0) {
                    // Reported once the socket is drained. A gap shows only when an event
                    // after it arrives, so with none yet (the storm's tail was dropped) the
                    // count waits for the next event.
                    let pending = signals::poll(&[listener.raw_fd()], Some(Duration::ZERO))
                        .map_err(|e| e.to_string())?;
                    if !pending[0] {
                        tracing::warn!("{n} events lost in the overflow (SEQNUM gaps, at most)");
                        lost = None;
                    }
                }
                // While coldplug settles, wake up often enough to notice the end of the quiet
                // period and of the pool's work.
                let timeout = match coldplug_wait {
                    Some(_) => Some(COLDPLUG_POLL),
                    None => idle,
                };
                let ready = signals::poll(&[listener.raw_fd(), signals.raw_fd()], timeout)
                    .map_err(|e| e.to_string())?;
                if !ready.iter().any(|r| *r) {
                    if coldplug_wait.is_some() {
                        continue;
                    }
                    break None; // idle for --idle-exit
                }
                if ready[1] {
                    match signals.read() {
                        Some(Signal::Stop) => break None,
                        Some(Signal::Reload) => {
                            sd_notify("RELOADING=1");
                            match Setup::load(&common.tree, common.config.clone()) {
                                Ok(new) => {
                                    tracing::info!("reloaded configuration, rules and index");
                                    break Some(new);
                                }
                                Err(e) => {
                                    tracing::error!(
                                        "reload failed, keeping the current setup: {e}"
                                    );
                                    sd_notify("READY=1");
                                }
                            }
                        }
                        None => {}
                    }
                    continue;
                }
                match listener.recv().map_err(|e| e.to_string())? {
                    Received::Event(event, raw) => {
                        if let Some(wait) = coldplug_wait.as_mut() {
                            wait.last_event = Instant::now();
                            if is_storage_bind(&event) {
                                wait.storage_bind = Some(wait.last_event);
                            }
                        }
                        let seqnum = event
                            .get(b"SEQNUM")
                            .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u64>().ok());
                        if let (Some(lost), Some(before), Some(now)) =
                            (lost.as_mut(), last_seqnum, seqnum)
                        {
                            *lost += now.saturating_sub(before + 1);
                        }
                        last_seqnum = seqnum.or(last_seqnum);
                        let work = processor.handle(&event);
                        deliver(work, Origin::Event)?;
                        if let Some(r) = &rebroadcaster {
                            pass_on(r, &event, raw, &udev_control);
                        }
                    }
                    Received::Overflow => {
                        tracing::warn!("receive buffer overflowed, events lost: rescanning sysfs");
                        lost.get_or_insert(0);
                        rescan(&mut processor, &mut deliver)?;
                    }
                    Received::Rejected(_) => {}
                }
            };
            handled += processor.stats.events;
            match next {
                Some(new) => {
                    drop(processor);
                    drop(planner);
                    setup = new;
                    release_free_memory();
                    sd_notify("READY=1");
                }
                None => break 'reload,
            }
        }
        sd_notify("STOPPING=1");
        Ok(())
    });
    // The marker means a running daemon's coldplug is complete: not true once it has ended
    // (an initramfs hands /run on to the real root).
    mark_settled(&root, false);
    result?;
    let s = listener.stats;
    tracing::info!(
        "{} messages, {handled} events handled, {} refused (not from the kernel), {} malformed, {} overflows",
        s.received,
        s.not_from_kernel,
        s.malformed,
        s.overflows
    );
    Ok(EXIT_OK)
}

/// Gives back to the system the heap that loading freed (file contents, parse buffers): an idle
/// daemon should hold only what it uses.
fn release_free_memory() {
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sends a handled event on to group 4 as the kernel wrote it and, while `udev_control` exists
/// (checked per event: udevd's control socket may come and go), to group 2 in libudev's format.
fn pass_on(r: &Rebroadcaster, event: &Event, raw: &[u8], udev_control: &std::path::Path) {
    if let Err(e) = r.send(GROUP_REBROADCAST, raw) {
        tracing::warn!("rebroadcast: {e}");
    }
    if !udev_control.exists() {
        return;
    }
    let Some(message) = libudev::encode(event, monotonic_usec()) else {
        tracing::debug!("not passed on to libudev (no SUBSYSTEM or SEQNUM): {event:?}");
        return;
    };
    if let Err(e) = r.send(libudev::GROUP_LIBUDEV, &message) {
        tracing::warn!("rebroadcast to libudev: {e}");
    }
}

/// CLOCK_MONOTONIC in microseconds: udevd's `USEC_INITIALIZED` clock.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// The daemon's pid file: written once it listens, removed when it ends.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: &std::path::Path) -> std::io::Result<PidFile> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
        }
        // A stale file from a daemon that was killed is replaced; a symlink is not followed.
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(PidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends standard error, and so the log, to the end of `path` (created 0640, never through a
/// symlink).
fn log_to(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    // SAFETY: both descriptors are valid; dup2 replaces fd 2 atomically.
    if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
