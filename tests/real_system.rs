//! Real systems: Debian 12 and 13 root file systems made with mmdebstrap from Debian's archive
//! (tests/system), our package installed with `dpkg -i` and the initramfs rebuilt as an
//! administrator would, booted under qemu with systemd as init and the VM test's kind of
//! device set; what the booted system says comes back over the serial console
//! (tests/system/probe). Each image boots three times, one boot at a time:
//!
//! 1. as it comes (udevd alone loads the drivers);
//! 2. with modaliasd installed: no failed unit, every device unit of boot 1, the same modules,
//!    udev's own loading handed off (udev, logging at debug level, inserted nothing, in the
//!    initramfs or after) and modaliasd's log naming each module it inserted once;
//! 3. after `apt-get purge modaliasd` and `update-initramfs -u`: boot 1 again (same modules, no
//!    failed unit, not a word of modaliasd in the journal or on the console), and no file left
//!    that the image did not have before the installation.
//!
//! And an OpenRC system with no udev at all, where modaliasd is the only loader. Root, qemu and
//! about 15 minutes; the images are cached in ~/.cache/modaliasd/system.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use support::TempDir;

/// One boot at a time: two software-emulated machines on this machine's cores would slow
/// each other past the boot's own timeouts.
static MACHINE: Mutex<()> = Mutex::new(());

/// The kernel command line of every boot: udev logs each module it inserts (so that a boot can
/// show it inserted none), and the kernel log is large enough to keep the initramfs's lines.
const APPEND: &str = "udev.log_level=debug log_buf_len=8M";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/system")
        .join(name)
}

fn run(what: &str, command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {said}");
    said
}

/// The package, built once for all the tests of this binary.
fn package() -> &'static Path {
    static DEB: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    &DEB.get_or_init(|| {
        let tmp = TempDir::new("system-deb");
        let deb = support::build_package(tmp.path());
        (tmp, deb)
    })
    .1
}

/// A fresh copy of the image NAME in `dir`, with the report that its boots write.
fn unpack(name: &str, dir: &Path) {
    run(
        &format!("unpack {name}"),
        Command::new(script("unpack.sh")).arg(name).arg(dir),
    );
    run(
        "install the probe",
        Command::new(script("install-probe.sh")).arg(dir),
    );
}

/// `sh -c SCRIPT` inside the root file system at `dir`.
fn chroot(dir: &Path, sh: &str) -> String {
    run(
        &format!("in {}: {sh}", dir.display()),
        Command::new(script("chroot.sh"))
            .arg(dir)
            .args(["sh", "-c", sh]),
    )
}

/// What a booted system reported, and everything its console printed.
struct Boot {
    report: String,
    console: String,
}

impl Boot {
    fn value(&self, key: &str) -> &str {
        let prefix = format!("{key}: ");
        self.report
            .lines()
            .take_while(|l| !l.starts_with("== "))
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {key} in the report:\n{}", self.report))
    }

    fn section(&self, name: &str) -> Vec<&str> {
        let header = format!("== {name} ==");
        self.report
            .lines()
            .skip_while(|l| *l != header)
            .skip(1)
            .take_while(|l| !(l.starts_with("== ") && l.ends_with(" ==")))
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn set(&self, name: &str) -> BTreeSet<String> {
        self.section(name).iter().map(|l| l.to_string()).collect()
    }

    /// The active device units, each name with the numbers that depend on probe order (SCSI
    /// hosts and targets, `H:C:T:L` addresses) left out, and how many of each: the USB disk
    /// is `host6` in one boot and `host7` in the next.
    fn device_units(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for unit in self.section("device-units") {
            let normal: Vec<String> = unit
                .split('-')
                .map(|part| {
                    let numbered = part.starts_with("host")
                        || part.starts_with("target")
                        || (part.split(':').count() == 4
                            && part
                                .split(':')
                                .all(|n| n.bytes().all(|b| b.is_ascii_digit())));
                    if numbered {
                        part.replace(|c: char| c.is_ascii_digit(), "")
                    } else {
                        part.to_owned()
                    }
                })
                .collect();
            *out.entry(normal.join("-")).or_insert(0) += 1;
        }
        out
    }
}

/// Boots the root file system at `dir` and returns what it said.
fn boot(dir: &Path, work: &Path, extra: &[&str]) -> Boot {
    let _one = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    let log = run(
        "boot",
        Command::new(script("boot.sh"))
            .args(["--append", APPEND, "--work"])
            .arg(work)
            .args(extra)
            .arg(dir),
    );
    let log = log
        .lines()
        .rev()
        .find(|l| l.starts_with('/'))
        .unwrap()
        .to_owned();
    // Kept for a look after the test: target/tmp/real-system/.
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-system");
    std::fs::create_dir_all(&keep).unwrap();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let kept = keep.join(format!(
        "{}-{}-{}.log",
        name(dir.parent().unwrap()),
        name(dir),
        name(work)
    ));
    std::fs::copy(&log, &kept).unwrap();
    eprintln!("serial log: {}", kept.display());
    let console = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).replace('\r', "");
    // What the system printed, not the report it wrote at the end.
    let console = console.split("==REPORT-BEGIN==").next().unwrap().to_owned();
    let report = run(
        "read the report",
        Command::new(script("report.sh")).arg(&log),
    );
    Boot { report, console }
}

/// Every path under `dir` but the package manager's own records and logs, which installing
/// and purging a package always changes.
fn files(dir: &Path) -> BTreeSet<String> {
    const CHURN: &[&str] = &[
        "var/lib/dpkg/",
        "var/lib/apt/",
        "var/cache/",
        "var/log/",
        "tmp/",
    ];
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if CHURN.iter().any(|c| (rel.clone() + "/").starts_with(c)) {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            }
            out.insert(rel);
        }
    }
    out
}

fn assert_healthy(boot: &Boot, what: &str) {
    assert_eq!(
        boot.value("failed-units"),
        "0",
        "{what}: {:?}",
        boot.section("failed-units")
    );
    assert_eq!(boot.value("serial-getty-ttyS0"), "active", "{what}");
    assert!(
        matches!(boot.value("system-state"), "running"),
        "{what}: {}",
        boot.value("system-state")
    );
}

fn assert_same(a: &BTreeSet<String>, b: &BTreeSet<String>, what: &str) {
    let only_a: Vec<_> = a.difference(b).collect();
    let only_b: Vec<_> = b.difference(a).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "{what}: only before {only_a:?}, only after {only_b:?}"
    );
}

/// The errors and warnings among the daemon's log lines. A slow insertion is the emulated
/// machine's, not a fault ("loading kvm took 8.5 s"), and is left out.
fn complaints(log: Vec<&str>) -> Vec<&str> {
    log.into_iter()
        .filter(|l| l.contains("error") || (l.contains("warning") && !l.contains(" took ")))
        .collect()
}

/// The modules udev's kmod builtin says it inserted: lines of systemd-udevd and its workers
/// (`(udev-worker)` since systemd 253), not those of systemd itself (autofs4, say).
fn udev_inserts(boot: &Boot) -> Vec<&str> {
    boot.section("journal-inserted")
        .into_iter()
        .filter(|l| l.contains("udev"))
        .collect()
}

/// The modules modaliasd's log says it inserted, in order.
fn inserted_by_modaliasd(boot: &Boot) -> Vec<String> {
    boot.section("journal-modaliasd")
        .iter()
        .filter_map(|l| {
            l.split_once("debug: inserted ")?
                .1
                .split_whitespace()
                .next()
        })
        .map(str::to_owned)
        .collect()
}

fn lsinitramfs(dir: &Path) -> BTreeSet<String> {
    chroot(dir, "lsinitramfs /boot/initrd.img-*")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn a_system_with_modaliasd_boots_like_udevd_alone_and_purges_clean(name: &str) {
    let deb = package();
    let tmp = TempDir::new(name);
    let (stock, system) = (tmp.path().join("stock"), tmp.path().join("system"));

    unpack(name, &stock);
    let udevd = boot(&stock, &tmp.path().join("boot-udevd"), &[]);
    assert_healthy(&udevd, "udevd alone");
    // The check of udev's inserts below could not fail if udev logged none.
    assert!(
        !udev_inserts(&udevd).is_empty(),
        "udev logs no 'Inserted module' at debug level:\n{}",
        udevd.report
    );

    unpack(name, &system);
    let before = files(&system);
    std::fs::copy(deb, system.join("tmp/modaliasd.deb")).unwrap();
    let installed = chroot(
        &system,
        "dpkg -i /tmp/modaliasd.deb && rm /tmp/modaliasd.deb && update-initramfs -u",
    );
    // As installed: both units enabled for the boot, the index compiled, the initramfs holds
    // the daemon.
    for link in [
        "etc/systemd/system/sysinit.target.wants/modaliasd.service",
        "etc/systemd/system/sockets.target.wants/modaliasd.socket",
    ] {
        assert!(system.join(link).is_symlink(), "{link}: {installed}");
    }
    assert!(
        !system
            .join("etc/systemd/system/sysinit.target.wants/modaliasd-settle.service")
            .exists()
    );
    let initramfs = lsinitramfs(&system);
    for file in [
        "usr/sbin/modaliasd",
        "scripts/init-top/modaliasd",
        "scripts/init-bottom/modaliasd",
    ] {
        assert!(initramfs.contains(file), "{file} not in the initramfs");
    }
    assert!(initramfs.iter().any(|f| f.ends_with("/modaliasd.index")));
    // The test's only change to the shipped setup: the daemon logs each insertion.
    let dropin = system.join("etc/systemd/system/modaliasd.service.d/verbose.conf");
    std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    std::fs::write(
        &dropin,
        "[Service]\nExecStart=\nExecStart=/usr/sbin/modaliasd -v run --coldplug\n",
    )
    .unwrap();

    let with = boot(&system, &tmp.path().join("boot-modaliasd"), &[]);
    assert_healthy(&with, "with modaliasd");
    assert_same(
        &udevd.set("modules"),
        &with.set("modules"),
        "loaded modules",
    );
    let with_units = with.device_units();
    let missing: Vec<_> = udevd
        .device_units()
        .into_iter()
        .filter(|(unit, n)| with_units.get(unit).copied().unwrap_or(0) < *n)
        .collect();
    assert!(
        missing.is_empty(),
        "device units missing with modaliasd: {missing:?}"
    );
    assert_eq!(
        udev_inserts(&with),
        Vec::<&str>::new(),
        "udev inserted modules while modaliasd ran"
    );
    assert!(
        with.section("udev-handoff").last() == Some(&"exit 0"),
        "{:?}",
        with.section("udev-handoff")
    );
    let inserted = inserted_by_modaliasd(&with);
    assert!(
        !inserted.is_empty(),
        "{:?}",
        with.section("journal-modaliasd")
    );
    let mut seen = BTreeSet::new();
    for module in &inserted {
        assert!(seen.insert(module), "{module} inserted twice: {inserted:?}");
        assert!(with.set("modules").contains(module));
    }
    let complaints = complaints(with.section("journal-modaliasd"));
    assert!(complaints.is_empty(), "{complaints:#?}");

    dropin_gone(&dropin);
    chroot(
        &system,
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q modaliasd && update-initramfs -u",
    );
    let after = files(&system);
    assert_same(
        &before,
        &after,
        "files before the installation and after the purge",
    );
    assert_same(
        &lsinitramfs(&stock),
        &lsinitramfs(&system),
        "initramfs contents",
    );

    let purged = boot(&system, &tmp.path().join("boot-purged"), &[]);
    assert_healthy(&purged, "after the purge");
    assert_same(
        &udevd.set("modules"),
        &purged.set("modules"),
        "modules after the purge",
    );
    assert_eq!(
        udevd.device_units(),
        purged.device_units(),
        "device units after the purge"
    );
    assert_eq!(purged.section("journal-modaliasd"), Vec::<&str>::new());
    assert!(
        !purged.console.contains("modaliasd"),
        "the console mentions modaliasd after the purge"
    );
}

/// The verbose drop-in is the test's, not the package's: removed before the purge so that the
/// purge's own leftovers are what the file comparison sees.
fn dropin_gone(dropin: &Path) {
    std::fs::remove_file(dropin).unwrap();
    std::fs::remove_dir(dropin.parent().unwrap()).unwrap();
}

#[test]
fn debian12_with_modaliasd_boots_like_udevd_alone_and_purges_clean() {
    a_system_with_modaliasd_boots_like_udevd_alone_and_purges_clean("debian12-systemd");
}

#[test]
fn debian13_with_modaliasd_boots_like_udevd_alone_and_purges_clean() {
    a_system_with_modaliasd_boots_like_udevd_alone_and_purges_clean("debian13-systemd");
}

/// OpenRC as init and no udev at all (Debian's openrc and sysvinit-core, devtmpfs): modaliasd,
/// installed from the package and enabled as packaging/README.md says, is the only loader.
/// The image has no initramfs tool of its own (Debian's all need udev), so it boots with the
/// initramfs of Debian 13's systemd image with the package installed, whose udev has its
/// loading handed off to modaliasd there too. Every module udevd inserted in its boot of the
/// same kernel and devices (its own debug log says which) is loaded, with its dependencies,
/// and none that udevd's boot did not load; modules systemd loads itself (autofs4, its
/// modprobe@ units) are the difference, listed.
#[test]
fn openrc_without_udev_loads_what_udevd_loads_for_the_devices() {
    let deb = package();
    let tmp = TempDir::new("debian13-openrc");
    let (boot_dir, system, stock) = (
        tmp.path().join("boot"),
        tmp.path().join("system"),
        tmp.path().join("stock"),
    );
    unpack("debian13-systemd", &stock);
    let udevd = boot(&stock, &tmp.path().join("boot-udevd"), &[]);
    assert_healthy(&udevd, "udevd alone");

    unpack("debian13-systemd", &boot_dir);
    std::fs::copy(deb, boot_dir.join("tmp/modaliasd.deb")).unwrap();
    chroot(
        &boot_dir,
        "dpkg -i /tmp/modaliasd.deb && update-initramfs -u",
    );

    unpack("debian13-openrc", &system);
    std::fs::copy(deb, system.join("tmp/modaliasd.deb")).unwrap();
    chroot(
        &system,
        "dpkg -i /tmp/modaliasd.deb && rm /tmp/modaliasd.deb \
         && cp /usr/share/modaliasd/openrc/modaliasd /etc/init.d/modaliasd \
         && rc-update add modaliasd sysinit",
    );
    assert!(!system.join("usr/bin/udevadm").exists() && !system.join("bin/udevadm").exists());
    let openrc = boot(
        &system,
        &tmp.path().join("boot-openrc"),
        &["--boot-from", boot_dir.to_str().unwrap()],
    );
    assert_eq!(openrc.value("crashed-services"), "0", "{}", openrc.report);
    assert_eq!(openrc.section("dmesg-err"), Vec::<&str>::new());
    let log = complaints(openrc.section("modaliasd-log"));
    assert!(log.is_empty(), "{log:#?}");
    let rc = openrc.section("rc-status-all").join("\n");
    assert!(
        rc.lines()
            .any(|l| l.trim_start().starts_with("modaliasd") && l.contains("started")),
        "{rc}"
    );

    // What udevd loaded for devices: the modules its own log says it inserted (udev logs the
    // one it asked for, libkmod inserts its dependencies too: kmod's own answer,
    // `modprobe --show-depends` on the image's module tree, gives them).
    let kver = udevd.value("kernel").to_owned();
    let mut for_devices = BTreeSet::new();
    for line in udev_inserts(&udevd) {
        let Some(name) = line
            .split("Inserted module '")
            .nth(1)
            .and_then(|r| r.split('\'').next())
        else {
            continue;
        };
        let out = Command::new("modprobe")
            .args(["-q", "--show-depends", "-d"])
            .arg(&stock)
            .args(["-S", &kver, name])
            .output()
            .unwrap();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(path) = l.strip_prefix("insmod ") {
                let file = path.split_whitespace().next().unwrap_or("");
                let module = Path::new(file)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .split('.')
                    .next()
                    .unwrap()
                    .replace('-', "_");
                for_devices.insert(module);
            }
        }
    }
    let udevd_modules = udevd.set("modules");
    let expected: BTreeSet<String> = for_devices.intersection(&udevd_modules).cloned().collect();
    assert!(expected.len() > 30, "{expected:?}");
    let loaded = openrc.set("modules");
    let missing: Vec<_> = expected.difference(&loaded).collect();
    let extra: Vec<_> = loaded.difference(&udevd_modules).collect();
    let systemds_own: Vec<_> = udevd_modules.difference(&loaded).collect();
    eprintln!("loaded by udevd's boot only (systemd's own loads): {systemds_own:?}");
    assert!(missing.is_empty(), "device modules not loaded: {missing:?}");
    assert!(
        extra.is_empty(),
        "modules udevd's boot did not load: {extra:?}"
    );
}
