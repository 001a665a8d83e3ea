//! `modaliasd coldplug --scan`: drivers for the devices present now.

use super::{
    CONFIG_OPTIONS_HELP, CommonOptions, EXIT_INVALID_INPUT, EXIT_OK, Setup, TREE_OPTIONS_HELP,
    record::number,
};
use crate::daemon::{DryRun, Processor, Work, bus_scan_delay, mark_settled, spawn_program, sysfs};
use crate::loader::Loader;
use crate::loader::kernel::LinuxKernel;
use crate::modprobe::plan::Planner;
use crate::uevent::Event;
use crate::uevent::netlink::{DEFAULT_RECEIVE_BUFFER, GROUP_KERNEL, Listener, Received};
use std::ffi::OsString;
use std::time::{Duration, Instant};

/// A random version-4 UUID (from the kernel's random source), to recognise our own events.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    // SAFETY: getrandom fills the buffer it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 16 {
        // Never reached on Linux >= 3.17; a time-based value still tells our events apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = (t ^ (std::process::id() as u128) << 64).to_le_bytes();
    }
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn help() -> String {
    format!(
        "\
Usage: modaliasd coldplug [--scan] [OPTIONS]

Loads the drivers for every device present now, then exits 0 when all is settled.

By default it listens, then writes 'add UUID' to every ROOT/sys/devices/**/uevent in udev's
trigger order (module, block, net, tty and input devices first; parents before children), and
handles the events the kernel sends back; SYNTH_UUID tells when its own have all come back.
With --scan it reads every ROOT/sys/devices/**/modalias instead, triggering nothing (fastest).
Either way all devices are planned at once and the modules loaded in parallel. Devices that
appear because a driver was loaded (USB devices behind a new host controller, disks behind a
storage driver) are then handled from their uevents until no event has come for the quiet
period, at most until --timeout. Once usb-storage is loaded the quiet period grows by its
delay_use (one second by default: it scans a USB disk only then). Devices slower than that are
missed; where that matters (an initramfs looking for its root), use the daemon instead
('modaliasd run --coldplug', then 'modaliasd settle'), which keeps serving hotplug.

Options:
{TREE_OPTIONS_HELP}{CONFIG_OPTIONS_HELP}  --scan          read sysfs instead of triggering events
  --dry-run       print what would be done, load nothing (no quiet period)
  --quiet-ms MS   quiet period after loading (default 500)
  --timeout SECONDS  give up waiting for new devices after this long (default 30)
  -h, --help      this help
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut common = CommonOptions::default();
    let mut dry_run = false;
    let mut scan = false;
    let mut quiet = Duration::from_millis(500);
    let mut timeout = Duration::from_secs(30);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            a if CommonOptions::takes(&a) => {
                let key = CommonOptions::key(&a);
                common.set(&key, &mut parser)?;
            }
            lexopt::Arg::Long("scan") => scan = true,
            lexopt::Arg::Long("dry-run") => dry_run = true,
            lexopt::Arg::Long("quiet-ms") => quiet = Duration::from_millis(number(&mut parser)?),
            lexopt::Arg::Long("timeout") => timeout = Duration::from_secs(number(&mut parser)?),
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(EXIT_OK);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let started = Instant::now();
    // Listen first: events coming back, and devices that appear while drivers load, must not
    // be missed. A dry run by scan needs no socket.
    let mut listener = if dry_run && scan {
        None
    } else {
        Some(
            Listener::open(GROUP_KERNEL, DEFAULT_RECEIVE_BUFFER)
                .map_err(|e| format!("netlink socket: {e}"))?,
        )
    };
    let setup = Setup::load(&common.tree, common.config.clone())?;
    let planner = Planner::new(&setup.tree, &setup.resolver, &setup.config);
    let mut processor = Processor::new(&planner, &setup.rules);
    let mut all = Work::default();
    let mut add = |work: Work| {
        all.plans.extend(work.plans);
        all.programs.extend(work.programs);
    };
    if scan {
        let mut messages = sysfs::scan(&setup.root);
        sysfs::controllers_first(&mut messages);
        for message in messages {
            if let Ok(event) = Event::parse(&message) {
                add(processor.handle(&event));
            }
        }
    } else {
        let listener = listener.as_mut().expect("trigger mode listens");
        let uuid = random_uuid();
        let request = format!("add {uuid}");
        let mut triggered = 0usize;
        for file in sysfs::uevent_files(&setup.root) {
            if std::fs::write(&file, &request).is_ok() {
                triggered += 1;
            }
        }
        // Handle events until all of ours are back (or the timeout).
        let mut returned = 0usize;
        while returned < triggered && started.elapsed() < timeout {
            let left = timeout.saturating_sub(started.elapsed());
            if !listener.wait(Some(left)).map_err(|e| e.to_string())? {
                break;
            }
            match listener.recv().map_err(|e| e.to_string())? {
                Received::Event(event, _) => {
                    if event.get(b"SYNTH_UUID") == Some(uuid.as_bytes()) {
                        returned += 1;
                    }
                    add(processor.handle(&event));
                }
                Received::Overflow => {
                    // Our own events were lost: read what they would have said.
                    tracing::warn!("receive buffer overflowed: reading sysfs instead");
                    for message in sysfs::scan(&setup.root) {
                        if let Ok(event) = Event::parse(&message) {
                            add(processor.handle(&event));
                        }
                    }
                    break;
                }
                Received::Rejected(_) => {}
            }
        }
        if returned < triggered {
            tracing::warn!(
                "{returned} of {triggered} triggered events came back before the timeout"
            );
        }
    }
    if dry_run {
        let stdout = std::io::stdout();
        let mut printer = DryRun::new(std::io::BufWriter::new(stdout.lock()), setup.target_dir());
        printer.print(&all).map_err(|e| e.to_string())?;
        printer.flush().map_err(|e| e.to_string())?;
        return Ok(EXIT_OK);
    }
    let loader = Loader::new(LinuxKernel::new(&setup.root), setup.dir.clone());
    let mut failures = 0;
    let load = |work: &Work, failures: &mut u32| {
        for program in &work.programs {
            spawn_program(program);
        }
        for (_, r) in loader.load_plans(&work.plans) {
            if let Err(e) = r {
                super::report_load_error(&setup.root, &setup.dir, &e);
                *failures += 1;
            }
        }
    };
    load(&all, &mut failures);
    // New devices behind freshly loaded drivers: handle their events until things are quiet.
    if let Some(listener) = listener.as_mut() {
        while started.elapsed() < timeout {
            let quiet = quiet + bus_scan_delay(&setup.root);
            let left = timeout.saturating_sub(started.elapsed()).min(quiet);
            if !listener.wait(Some(left)).map_err(|e| e.to_string())? {
                break;
            }
            if let Received::Event(event, _) = listener.recv().map_err(|e| e.to_string())? {
                let work = processor.handle(&event);
                load(&work, &mut failures);
            }
        }
    }
    mark_settled(&setup.root, true);
    Ok(if failures > 0 {
        EXIT_INVALID_INPUT
    } else {
        EXIT_OK
    })
}
