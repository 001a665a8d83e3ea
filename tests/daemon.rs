//! The daemon's pipeline: replay of a real recorded coldplug against modprobe, and the netlink
//! daemon on real kernel events injected inside a private network namespace,
//! including a user-space impostor and a storm that overflows the receive buffer.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::{TempDir, kernel_tree};

fn modaliasd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_modaliasd"))
}

fn example_recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/coldplug.rec")
}

/// Distinct lines in order, module paths without the root prefix.
fn distinct(text: &[u8], prefix: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| l.replacen(prefix, " /lib/modules/", 1))
        .filter(|l| seen.insert(l.clone()))
        .collect()
}

#[test]
fn replaying_a_recorded_coldplug_plans_what_modprobe_would() {
    let kernel = kernel_tree("6.12");
    let out = modaliasd()
        .args([
            "replay",
            "-v",
            "--dry-run",
            "--as-fast-as-possible",
            "--cmdline",
            "none",
            "-C",
            "/dev/null",
            "--root",
        ])
        .arg(&kernel.root)
        .args(["--kver", &kernel.kver])
        .arg(example_recording())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What udev's rule does: modprobe -b for every add event's MODALIAS, each line once.
    let text = std::fs::read_to_string(example_recording()).unwrap();
    let prefix = format!(" {}/lib/modules/", kernel.root.display());
    let mut expected_raw = Vec::new();
    let mut modaliases = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split(' ').collect();
        if !fields[1].starts_with("add@") {
            continue;
        }
        if let Some(m) = fields.iter().find_map(|f| f.strip_prefix("MODALIAS=")) {
            modaliases.push(m.to_owned());
            let o = Command::new("modprobe")
                .arg("-d")
                .arg(&kernel.root)
                .args([
                    "-S",
                    &kernel.kver,
                    "-C",
                    "/dev/null",
                    "-b",
                    "--show-depends",
                    m,
                ])
                .output()
                .unwrap();
            expected_raw.extend_from_slice(&o.stdout);
        }
    }
    assert!(
        modaliases.len() >= 20,
        "the recording has {} modaliases",
        modaliases.len()
    );
    let expected = distinct(&expected_raw, &prefix);
    assert!(expected.len() >= 10);
    assert_eq!(distinct(&out.stdout, &prefix), expected);

    // `-v` names each distinct modalias's decision once; every module it names is in the plan.
    let err = String::from_utf8_lossy(&out.stderr);
    let plan = String::from_utf8_lossy(&out.stdout);
    // (Escaped bytes are spelled differently in recordings and in logs; those are left out.)
    let distinct_modaliases: HashSet<&String> =
        modaliases.iter().filter(|m| !m.contains('\\')).collect();
    for m in distinct_modaliases {
        let head = format!("modaliasd: debug: {m}: ");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with(&head)).collect();
        assert_eq!(lines.len(), 1, "{m}: {lines:?}");
        let decision = &lines[0][head.len()..];
        if decision != "no module" && decision != "nothing to load" {
            for module in decision.split(' ') {
                let found = plan.split_whitespace().any(|word| {
                    let name = word.rsplit('/').next().unwrap_or("");
                    let stem = name.split(".ko").next().unwrap_or("");
                    stem.replace('-', "_") == module
                });
                assert!(found, "{m}: {module} not in the plan:\n{plan}");
            }
        }
    }
}

#[test]
fn broken_recording_lines_are_reported_and_the_rest_replayed() {
    let kernel = kernel_tree("6.12");
    let tmp = TempDir::new("replay");
    let rec = tmp.path().join("broken.rec");
    let mut f = std::fs::File::create(&rec).unwrap();
    writeln!(f, "# modaliasd recording 1").unwrap();
    writeln!(f, "1.0 add@/devices/a ACTION=add MODALIAS=pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00").unwrap();
    writeln!(f, "garbage").unwrap();
    writeln!(f, "2.0 bogus@/devices/b MODALIAS=x").unwrap();
    writeln!(f, "3.0 add@/devices/c ACTION=add MODALIAS=\\xzz").unwrap();
    writeln!(
        f,
        "4.0 add@/devices/d ACTION=add MODALIAS=hid:b0003g0001v0000046Dp0000C52B"
    )
    .unwrap();
    drop(f);
    let out = modaliasd()
        .args([
            "replay",
            "--dry-run",
            "--speed",
            "1000",
            "--cmdline",
            "none",
            "-C",
            "/dev/null",
            "--root",
        ])
        .arg(&kernel.root)
        .args(["--kver", &kernel.kver])
        .arg(&rec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for n in [3, 4, 5] {
        assert!(
            err.contains(&format!("line {n}:")),
            "line {n} not reported: {err}"
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("e1000e.ko.xz") && text.contains("hid-logitech-dj.ko.xz"),
        "{text}"
    );
}

/// Sends a kernel-format message for the kernel to deliver to group 1 of this network
/// namespace (a netlink header of type >= 16 with NLM_F_REQUEST, to port 0).
fn inject(sock: libc::c_int, payload: &[u8]) {
    let mut msg = Vec::with_capacity(16 + payload.len());
    msg.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&20u16.to_ne_bytes());
    msg.extend_from_slice(&1u16.to_ne_bytes());
    msg.extend_from_slice(&[0u8; 8]);
    msg.extend_from_slice(payload);
    send(sock, &msg, 0);
}

fn send(sock: libc::c_int, msg: &[u8], groups: u32) {
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = groups;
    let n = unsafe {
        libc::sendto(
            sock,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    assert_eq!(
        n,
        msg.len() as isize,
        "sendto: {}",
        std::io::Error::last_os_error()
    );
}

fn uevent_socket() -> libc::c_int {
    let s = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 15) };
    assert!(s >= 0);
    s
}

fn event(devpath: &str, modalias: &str) -> Vec<u8> {
    format!("add@{devpath}\0ACTION=add\0DEVPATH={devpath}\0SUBSYSTEM=pci\0MODALIAS={modalias}\0")
        .into_bytes()
}

/// Runs the test named `name` again in a new network namespace, where the part guarded by
/// `in_namespace()` does the work.
fn in_new_netns(name: &str) {
    let out = Command::new("unshare")
        .arg("-n")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env("MODALIASD_IN_NETNS", "1")
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inside unshare -n (needs root):\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The inner run must really have run this one test, not matched nothing and passed.
    assert!(
        stdout.contains("1 passed"),
        "the test did not run inside: {stdout}"
    );
}

fn in_namespace() -> bool {
    std::env::var_os("MODALIASD_IN_NETNS").is_some()
}

/// Starts `run --dry-run` and returns once it says it is listening.
fn start_daemon(root: &Path, kver: &str, extra: &[&str]) -> std::process::Child {
    start_daemon_with(
        root,
        kver,
        &["--idle-exit", "2", "-C", "/dev/null"],
        extra,
        &[],
    )
}

fn start_daemon_with(
    root: &Path,
    kver: &str,
    options: &[&str],
    extra: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> std::process::Child {
    let mut child = modaliasd()
        .args(["run", "--dry-run", "--cmdline", "none"])
        .args(options)
        .arg("--root")
        .arg(root)
        .args(["--kver", kver])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reader = std::io::BufReader::new(stderr);
    let mut line = String::new();
    loop {
        line.clear();
        use std::io::BufRead;
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "daemon exited before listening"
        );
        if line.contains("listening") {
            break;
        }
    }
    // Keep draining stderr so the daemon never blocks on it; hand it back through a thread.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        use std::io::Read;
        let _ = reader.read_to_string(&mut rest);
        let _ = tx.send(rest);
    });
    STDERR.with(|s| *s.borrow_mut() = Some(rx));
    child
}

thread_local! {
    static STDERR: std::cell::RefCell<Option<std::sync::mpsc::Receiver<String>>> = const { std::cell::RefCell::new(None) };
}

fn daemon_stderr() -> String {
    STDERR.with(|s| s.borrow_mut().take().unwrap().recv().unwrap_or_default())
}

#[test]
fn kernel_events_are_handled_and_impostors_refused() {
    if !in_namespace() {
        return in_new_netns("kernel_events_are_handled_and_impostors_refused");
    }
    let kernel = kernel_tree("6.12");
    let child = start_daemon(&kernel.root, &kernel.kver, &[]);
    let sock = uevent_socket();
    inject(
        sock,
        &event(
            "/devices/pci0000:00/0000:00:19.0",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
        ),
    );
    inject(
        sock,
        &event(
            "/devices/pci0000:00/0000:00:19.1",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
        ),
    );
    inject(sock, &b"remove@/devices/x\0ACTION=remove\0DEVPATH=/devices/x\0MODALIAS=pci:v000010ECd00008168sv0sd0bc02sc00i00\0"[..]);
    inject(
        sock,
        &event(
            "/devices/usb1/1-1/1-1:1.2/0003:046D:C52B.0003",
            "hid:b0003g0001v0000046Dp0000C52B",
        ),
    );
    // A root process multicasting to group 1 itself: the daemon must not believe it.
    send(
        sock,
        &event(
            "/devices/evil",
            "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00",
        ),
        1,
    );
    let out = child.wait_with_output().unwrap();
    let err = daemon_stderr();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/e1000e.ko.xz"), "{text}");
    assert!(
        text.contains("/hid-logitech-dj.ko.xz") && text.contains("/hid-generic.ko.xz"),
        "{text}"
    );
    assert!(
        !text.contains("r8169"),
        "remove events load nothing: {text}"
    );
    assert!(
        !text.contains("usb-storage") && !text.contains("uas"),
        "impostor obeyed: {text}"
    );
    assert_eq!(text.matches("/e1000e.ko.xz").count(), 1, "each module once");
    assert!(err.contains("1 refused"), "{err}");
}

#[test]
fn an_overflowing_storm_is_recovered_by_rescanning_sysfs() {
    if !in_namespace() {
        return in_new_netns("an_overflowing_storm_is_recovered_by_rescanning_sysfs");
    }
    // A fake root: the real 6.12 module directory and a sysfs with 40 devices.
    let kernel = kernel_tree("6.12");
    let root = TempDir::new("storm");
    let modules = root.path().join("lib/modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::os::unix::fs::symlink(kernel.module_dir(), modules.join(&kernel.kver)).unwrap();
    let tree = modaliasd::index::ModuleTree::load(&kernel.module_dir()).unwrap();
    let mut expected_modules = std::collections::BTreeSet::new();
    for (i, alias) in tree
        .aliases
        .iter()
        .filter(|a| a.pattern.starts_with(b"pci:v0000") && !a.pattern.contains(&b'['))
        .step_by(97)
        .take(40)
        .enumerate()
    {
        let dev = root
            .path()
            .join(format!("sys/devices/pci0000:00/0000:00:{i:02x}.0"));
        std::fs::create_dir_all(&dev).unwrap();
        let concrete: Vec<u8> = alias
            .pattern
            .iter()
            .map(|&c| if c == b'*' { b'0' } else { c })
            .collect();
        std::fs::write(dev.join("modalias"), [&concrete[..], b"\n"].concat()).unwrap();
        expected_modules.insert(alias.module.clone());
    }
    let child = start_daemon(root.path(), &kernel.kver, &["--receive-buffer", "4096"]);
    let sock = uevent_socket();
    // Stopped, the daemon cannot keep up however fast the machine: the overflow is certain.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGSTOP) };
    for i in 0..100_000 {
        inject(
            sock,
            &event(&format!("/devices/storm/{i}"), "storm:nothing"),
        );
    }
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
    // Lost events show as a SEQNUM gap before the next event that arrives: send a few late
    // ones, spaced so that at least one finds room in the queue.
    for i in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        inject(sock, &event(&format!("/devices/late/{i}"), "storm:nothing"));
    }
    let out = child.wait_with_output().unwrap();
    let err = daemon_stderr();
    assert!(err.contains("overflowed"), "no overflow happened: {err}");
    let lost: u64 = err
        .lines()
        .filter_map(|l| {
            l.split("warning: ")
                .nth(1)?
                .split(" events lost in")
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        lost > 0 && lost <= 100_000,
        "lost events not counted: {err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let printed: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter_map(|p| p.rsplit('/').next())
        .map(modaliasd::names::modname_from_path)
        .collect();
    let missing: Vec<&String> = expected_modules
        .iter()
        .filter(|m| !printed.contains(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "modules of present devices missing after the storm: {missing:?}"
    );
}

#[test]
fn readiness_reload_and_stop_follow_the_signals() {
    if !in_namespace() {
        return in_new_netns("readiness_reload_and_stop_follow_the_signals");
    }
    let kernel = kernel_tree("6.12");
    let root = root_with_modules(&kernel, "signals");
    let conf = root.path().join("modprobe.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("t.conf"), "").unwrap();
    let notify_path = root.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let next_notice = || {
        let mut buf = [0u8; 256];
        let n = notify
            .recv(&mut buf)
            .expect("a notification from the daemon");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let conf_arg = conf.to_str().unwrap().to_owned();
    let mut child = start_daemon_with(
        root.path(),
        &kernel.kver,
        &["-C", &conf_arg],
        &[],
        &[("NOTIFY_SOCKET", notify_path.as_os_str())],
    );
    assert_eq!(next_notice(), "READY=1");
    assert!(root.path().join("run/modaliasd/coldplug-done").exists());
    let settle = modaliasd()
        .args(["settle", "--timeout", "1", "--root"])
        .arg(root.path())
        .status()
        .unwrap();
    assert!(settle.success());

    let sock = uevent_socket();
    inject(
        sock,
        &event(
            "/devices/pci0000:00/0000:00:19.0",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
        ),
    );
    // Blacklist igb, then reload.
    std::fs::write(conf.join("t.conf"), "blacklist igb\n").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    assert_eq!(next_notice(), "RELOADING=1");
    assert_eq!(next_notice(), "READY=1");
    inject(
        sock,
        &event(
            "/devices/pci0000:00/0000:00:1a.0",
            "pci:v00008086d000010D6sv00008086sd0000A03Cbc02sc00i00",
        ),
    );
    inject(
        sock,
        &event(
            "/devices/usb1/1-1/1-1:1.2/0003:046D:C52B.0003",
            "hid:b0003g0001v0000046Dp0000C52B",
        ),
    );
    // Give the daemon a moment to take the events, then stop it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let err = daemon_stderr();
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0: {err}");
    assert!(err.contains("reloaded"), "{err}");
    assert!(out.contains("/e1000e.ko.xz"), "{out}");
    assert!(
        out.contains("/hid-logitech-dj.ko.xz"),
        "events after the reload are handled: {out}"
    );
    assert!(
        !out.contains("/igb.ko.xz"),
        "the blacklist read on SIGHUP applies: {out}"
    );
}

#[test]
fn triggered_coldplug_plans_what_the_sysfs_scan_plans() {
    // Real devices of this machine: ROOT/sys is /sys, the module tree is Debian's 6.12.
    let kernel = kernel_tree("6.12");
    let root = root_with_modules(&kernel, "trigger");
    std::os::unix::fs::symlink("/sys", root.path().join("sys")).unwrap();
    let coldplug = |mode: &[&str]| {
        let out = modaliasd()
            .args([
                "coldplug",
                "--dry-run",
                "--timeout",
                "20",
                "--cmdline",
                "none",
                "-C",
                "/dev/null",
                "--root",
            ])
            .arg(root.path())
            .args(["--kver", &kernel.kver])
            .args(mode)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        (lines, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (scanned, _) = coldplug(&["--scan"]);
    let (triggered, err) = coldplug(&[]);
    assert!(!scanned.is_empty(), "this machine's devices load nothing?");
    assert!(
        !err.contains("came back"),
        "not all triggered events came back: {err}"
    );
    assert_eq!(triggered, scanned);
}

#[test]
fn handled_events_are_rebroadcast_on_group_4() {
    if !in_namespace() {
        return in_new_netns("handled_events_are_rebroadcast_on_group_4");
    }
    let kernel = kernel_tree("6.12");
    // A group-4 listener, as libudev-zero opens.
    let listener = bound_uevent_socket(4);
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    unsafe {
        libc::setsockopt(
            listener,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let child = start_daemon(&kernel.root, &kernel.kver, &["--rebroadcast"]);
    let sock = uevent_socket();
    let sent = event(
        "/devices/pci0000:00/0000:00:19.0",
        "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
    );
    inject(sock, &sent);
    let mut buf = [0u8; 8192];
    let n = unsafe { libc::recv(listener, buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert!(
        n > 0,
        "nothing on group 4: {}",
        std::io::Error::last_os_error()
    );
    let got = &buf[..n as usize];
    // The kernel's message, SEQNUM included, passed on unchanged.
    assert!(got.starts_with(&sent), "{}", got.escape_ascii());
    assert!(
        got[sent.len()..].starts_with(b"SEQNUM="),
        "{}",
        got.escape_ascii()
    );
    let out = child.wait_with_output().unwrap();
    let _ = daemon_stderr();
    assert!(String::from_utf8_lossy(&out.stdout).contains("/e1000e.ko.xz"));
}

/// Waits up to `seconds` for the libudev monitor to have an event.
fn next_udev_event(monitor: &udev::MonitorSocket, seconds: i32) -> Option<udev::Event> {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: monitor.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ready = unsafe { libc::poll(&mut poll, 1, seconds * 1000) };
    if ready <= 0 {
        return None;
    }
    monitor.iter().next()
}

/// libudev itself (through the `udev` crate) is the judge of the group-2 format: its kernel-side
/// socket filter compares our subsystem hash, and its parser must accept the header and
/// properties. Group 2 is used only while ROOT/run/udev/control exists.
#[test]
fn handled_events_reach_libudev_monitors_on_group_2() {
    if !in_namespace() {
        return in_new_netns("handled_events_reach_libudev_monitors_on_group_2");
    }
    let kernel = kernel_tree("6.12");
    let root = root_with_modules(&kernel, "libudev");
    let pci = udev::MonitorBuilder::new()
        .and_then(|m| m.match_subsystem("pci"))
        .and_then(|m| m.listen())
        .expect("libudev monitor");
    let usb = udev::MonitorBuilder::new()
        .and_then(|m| m.match_subsystem("usb"))
        .and_then(|m| m.listen())
        .expect("libudev monitor");
    let child = start_daemon(root.path(), &kernel.kver, &["--rebroadcast"]);
    let sock = uevent_socket();
    let modalias = "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00";

    // No udevd control socket: libudev's group stays quiet.
    inject(sock, &event("/devices/pci0000:00/0000:00:19.0", modalias));
    assert!(
        next_udev_event(&pci, 1).is_none(),
        "group 2 used without ROOT/run/udev/control"
    );

    std::fs::create_dir_all(root.path().join("run/udev")).unwrap();
    std::fs::write(root.path().join("run/udev/control"), b"").unwrap();
    let devpath = "/devices/pci0000:00/0000:00:1f.0";
    inject(sock, &event(devpath, modalias));
    let got = next_udev_event(&pci, 5).expect("libudev saw nothing on group 2");
    assert_eq!(got.event_type(), udev::EventType::Add);
    assert_eq!(got.devpath(), devpath);
    assert_eq!(got.subsystem().unwrap(), "pci");
    assert_eq!(got.property_value("MODALIAS").unwrap(), modalias);
    assert!(got.sequence_number() > 0);
    assert!(got.property_value("USEC_INITIALIZED").is_some());
    assert!(
        next_udev_event(&usb, 1).is_none(),
        "a usb-only monitor received a pci event: the subsystem hash is wrong"
    );
    let out = child.wait_with_output().unwrap();
    let _ = daemon_stderr();
    assert!(String::from_utf8_lossy(&out.stdout).contains("/e1000e.ko.xz"));
}

/// A uevent socket bound to multicast `group` (1: the kernel's, as a systemd socket unit with
/// `ListenNetlink=kobject-uevent 1` binds it; 4: libudev-zero's).
fn bound_uevent_socket(group: u32) -> libc::c_int {
    let sock = uevent_socket();
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = 1 << (group - 1);
    let bound = unsafe {
        libc::bind(
            sock,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    assert_eq!(bound, 0, "{}", std::io::Error::last_os_error());
    sock
}

/// `run` as systemd starts it with a socket unit: `passed` becomes descriptor 3 and
/// LISTEN_PID is the daemon's own pid (set by the shell that then execs it).
fn run_activated(passed: libc::c_int, root: &Path, kver: &str) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("sh");
    command
        .args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_modaliasd"))
        .args(["run", "--dry-run", "--cmdline", "none", "-C", "/dev/null"])
        .args(["--idle-exit", "1", "--root"])
        .arg(root)
        .args(["--kver", kver]);
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(passed, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().unwrap()
}

/// Events that arrive before the daemon starts wait in the passed socket and are handled: the
/// point of socket activation.
#[test]
fn a_passed_socket_keeps_the_events_that_came_before_the_daemon() {
    if !in_namespace() {
        return in_new_netns("a_passed_socket_keeps_the_events_that_came_before_the_daemon");
    }
    let kernel = kernel_tree("6.12");
    let passed = bound_uevent_socket(1);
    inject(
        uevent_socket(),
        &event(
            "/devices/pci0000:00/0000:00:19.0",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
        ),
    );
    let out = run_activated(passed, &kernel.root, &kernel.kver);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("passed by the service manager"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/e1000e.ko.xz"),
        "the queued event was lost: {err}"
    );

    // A socket unit with the wrong kind of socket is an error that says what to fix.
    let wrong = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) };
    let out = run_activated(wrong, &kernel.root, &kernel.kver);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ListenNetlink=kobject-uevent 1"), "{err}");
}

/// A private root whose lib/modules/KVER is the real tree, for tests that write into the root.
fn root_with_modules(kernel: &support::KernelTree, name: &str) -> TempDir {
    let root = TempDir::new(name);
    std::fs::create_dir_all(root.path().join("lib/modules")).unwrap();
    std::os::unix::fs::symlink(
        kernel.module_dir(),
        root.path().join("lib/modules").join(&kernel.kver),
    )
    .unwrap();
    root
}

/// `run --pidfile` and `stop`, as the initramfs scripts use them with nothing but a shell:
/// stop ends the daemon, waits for it, and the pid file and coldplug marker are gone after.
#[test]
fn stop_ends_the_daemon_named_by_its_pid_file() {
    if !in_namespace() {
        return in_new_netns("stop_ends_the_daemon_named_by_its_pid_file");
    }
    let kernel = kernel_tree("6.12");
    let root = root_with_modules(&kernel, "pidfile");
    let pidfile = root.path().join("run/modaliasd/initramfs.pid");
    let pidfile_arg = pidfile.to_str().unwrap().to_owned();
    let mut child = start_daemon_with(
        root.path(),
        &kernel.kver,
        &["-C", "/dev/null", "--pidfile", &pidfile_arg],
        &[],
        &[],
    );
    let written = std::fs::read_to_string(&pidfile).expect("the pid file, once listening");
    assert_eq!(written.trim(), child.id().to_string());
    assert!(root.path().join("run/modaliasd/coldplug-done").exists());
    let stop = modaliasd()
        .args(["stop", "--timeout", "10", "--pidfile"])
        .arg(&pidfile)
        .status()
        .unwrap();
    assert!(stop.success());
    // stop returned: the daemon has ended (a zombie until collected here).
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!pidfile.exists());
    assert!(!root.path().join("run/modaliasd/coldplug-done").exists());
    // Nothing to stop is success too.
    let again = modaliasd()
        .args(["stop", "--pidfile"])
        .arg(&pidfile)
        .status()
        .unwrap();
    assert!(again.success());
}
