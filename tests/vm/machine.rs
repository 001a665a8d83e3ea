//! The VM test's machine: one initramfs with everything (tests/vm/build-initramfs.sh), booted
//! under qemu's software emulation with a fixed device set, and what its /init reports
//! (tests/vm/init) read back from the serial console. Shared by the test and benches/boot.rs,
//! which do not use all of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{KernelTree, TempDir};

/// The modprobe.d every boot gets: one blacklisted driver of a present device, one option.
pub const MODPROBE_CONF: &str = "\
blacklist virtio_rng
options e1000 copybreak=77
";
/// Read back from /sys/module after boot: the option above and one from the command line.
pub const CMDLINE_OPTION: &str = "usbhid.mousepoll=4";

/// The PCI NIC added through the qemu monitor after coldplug, and its driver.
pub const HOTPLUG_DEVICE: &str = "e1000e";
pub const HOTPLUG_DRIVER: &str = "e1000e";

/// What a boot with hotplug adds through the qemu monitor (`device_add` arguments), and the
/// sysfs path (a shell glob) whose appearance means the device got its drivers.
#[derive(Clone, Debug)]
pub struct Hotplug {
    pub device: String,
    pub ready_when: String,
}

impl Default for Hotplug {
    fn default() -> Hotplug {
        Hotplug {
            device: HOTPLUG_DEVICE.into(),
            ready_when: format!("/sys/bus/pci/drivers/{HOTPLUG_DRIVER}/0000:*"),
        }
    }
}

pub struct Image {
    pub dir: TempDir,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub stick: PathBuf,
    /// qemu's device arguments; [`standard_devices`] unless a test chose others.
    pub devices: Vec<String>,
    /// What a boot with hotplug adds; the standard set's NIC unless a test chose another.
    pub hotplug: Hotplug,
}

/// The device set of the VM test and the boot benchmark: NICs, sound, USB with a tablet and a
/// disk (backed by `stick`) behind it, SATA, virtio.
pub fn standard_devices(stick: &Path) -> Vec<String> {
    [
        "-device",
        "e1000",
        "-device",
        "virtio-net-pci",
        "-device",
        "virtio-rng-pci",
        "-audiodev",
        "none,id=snd0",
        "-device",
        "intel-hda",
        "-device",
        "hda-duplex,audiodev=snd0",
        "-device",
        "qemu-xhci,id=xhci",
        "-device",
        "usb-tablet,bus=xhci.0",
        "-drive",
        &drive(stick, "stick"),
        "-device",
        "usb-storage,bus=xhci.0,drive=stick",
        "-device",
        "ich9-ahci,id=ahci",
    ]
    .map(String::from)
    .to_vec()
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The static binary (as shipped for initramfs use) built into `dir`.
fn static_binary(dir: &Path) -> PathBuf {
    let out = dir.join("modaliasd");
    let build = Command::new(manifest().join("packaging/build-static.sh"))
        .arg(&out)
        .output()
        .expect("packaging/build-static.sh");
    assert!(
        build.status.success(),
        "static build: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    out
}

/// A `-drive` argument with id `id` on a snapshot of `file`.
fn drive(file: &Path, id: &str) -> String {
    format!(
        "if=none,id={id},format=raw,snapshot=on,file={}",
        file.display()
    )
}

/// Debian's udev, unpacked by tests/fixtures/udev.sh next to the kernel trees.
pub fn udev_root() -> PathBuf {
    let dir = crate::support::fixture_cache()
        .parent()
        .unwrap()
        .join("udev");
    assert!(
        dir.join("bin/udevadm").exists(),
        "{} is missing: run tests/fixtures/udev.sh (tests/deps.sh does)",
        dir.display()
    );
    dir
}

/// Shell for a probe in a generator's image, builtins only (a dracut image has bash and little
/// else): the loaded modules as the `VMTEST modules` line.
pub const PROBE_MODULES: &str = r#"m=
while read -r name _; do m="$m $name"; done < /proc/modules
echo
echo "VMTEST modules$m"
"#;

/// A probe once the initramfs daemon has coldplugged: [`PROBE_MODULES`], whether `settle`
/// would return and the daemon runs (see [`Report::assert_daemon_coldplugged`]), and the
/// daemon's pid kept for [`probe_stopped`], since the stop script removes the pid file.
pub fn probe_coldplugged() -> String {
    format!(
        r#"{PROBE_MODULES}[ -e /run/modaliasd/coldplug-done ] && echo 'VMTEST param settled yes'
kill -0 "$(cat /run/modaliasd/initramfs.pid)" && echo 'VMTEST param daemon running'
cp /run/modaliasd/initramfs.pid /run/vmtest-daemon.pid
"#
    )
}

/// A probe after the image's stop script, before the switch to the root mounted at
/// `root_mount` (see [`Report::assert_stopped_on_the_root`]).
pub fn probe_stopped(root_mount: &str) -> String {
    format!(
        r#"while read -r _ at _; do
    [ "$at" = {root_mount} ] && echo 'VMTEST param root mounted'
done < /proc/mounts
pid=$(cat /run/vmtest-daemon.pid)
state=gone
[ -e /proc/$pid/status ] && while read -r key value _; do
    [ "$key" = State: ] && state=$value
done < /proc/$pid/status
# Exited: gone, or a zombie (Z) that whatever adopted it has not reaped yet.
case $state in gone|Z) echo 'VMTEST param stopped yes' ;; esac
[ -e /run/modaliasd/initramfs.pid ] || echo 'VMTEST param pidfile removed'
"#
    )
}

impl Report {
    /// Every one of `modules` was in /proc/modules at the probe.
    pub fn assert_loaded(&self, modules: &[&str]) {
        assert!(self.ended, "the probe did not run:\n{}", self.console);
        for module in modules {
            assert!(
                self.modules.iter().any(|m| m == module),
                "{module} not loaded: {:?}\n{}",
                self.modules,
                self.console
            );
        }
    }

    /// The probe reported each `VMTEST param NAME VALUE` of `expected`.
    pub fn assert_params(&self, expected: &[(&str, &str)]) {
        for (param, value) in expected {
            assert_eq!(
                self.params.get(*param).map(String::as_str),
                Some(*value),
                "{param}:\n{}",
                self.console
            );
        }
    }

    /// What a generator's image must show at its probe: the daemon loaded the drivers of the
    /// devices whose modules the image holds (e1000 and ahci; no USB host driver, so no USB
    /// disk), `settle` returned, and the daemon is still running for the boot's later stages.
    pub fn assert_daemon_coldplugged(&self) {
        self.assert_loaded(&["e1000", "ahci", "libahci", "libata"]);
        self.assert_params(&[("settled", "yes"), ("daemon", "running")]);
    }

    /// What [`probe_stopped`] must show after a boot with [`Image::add_root_disk`]: the root
    /// disk's driver was loaded (by the daemon: the images do not list it for their /init),
    /// the root was mounted, and the stop script ended the daemon and removed its pid file.
    pub fn assert_stopped_on_the_root(&self) {
        self.assert_loaded(&["sd_mod"]);
        self.assert_params(&[
            ("root", "mounted"),
            ("stopped", "yes"),
            ("pidfile", "removed"),
        ]);
    }
}

impl Image {
    pub fn build(tree: &KernelTree) -> Image {
        Image::build_with(tree, MODPROBE_CONF, None)
    }

    /// An image with `conf` as its modprobe.d and `overlay` laid over the module directory.
    pub fn build_with(tree: &KernelTree, conf_text: &str, overlay: Option<&Path>) -> Image {
        let dir = TempDir::new("vm");
        let binary = static_binary(dir.path());
        let conf = dir.path().join("modprobe.d");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("vmtest.conf"), conf_text).unwrap();
        let initrd = dir.path().join("initrd.cpio");
        let build = Command::new(manifest().join("tests/vm/build-initramfs.sh"))
            .arg(&initrd)
            .arg(&tree.root)
            .arg(&binary)
            .arg(udev_root())
            .arg(&conf)
            .args(overlay)
            .output()
            .expect("tests/vm/build-initramfs.sh");
        assert!(
            build.status.success(),
            "initramfs: {}",
            String::from_utf8_lossy(&build.stderr)
        );
        Image::assemble(dir, tree, initrd)
    }

    /// An initramfs built elsewhere (by a real generator), booted on the same machine.
    pub fn from_initrd(tree: &KernelTree, initrd: &Path) -> Image {
        Image::assemble(TempDir::new("vm"), tree, initrd.to_owned())
    }

    /// An ext4 file system as a disk on the standard set's SATA controller (`/dev/sda` when no
    /// other disk's driver is in the image), for boots that mount a root. It holds only what
    /// makes the initramfs accept it as a root (dracut wants proc, sys and dev there).
    pub fn add_root_disk(&mut self) {
        let tree = self.dir.path().join("root-tree");
        for d in ["proc", "sys", "dev", "sbin"] {
            std::fs::create_dir_all(tree.join(d)).unwrap();
        }
        let disk = self.dir.path().join("root.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let mkfs = Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(&tree)
            .arg(&disk)
            .status()
            .expect("mke2fs (e2fsprogs)");
        assert!(mkfs.success());
        self.devices.extend([
            "-drive".to_string(),
            format!(
                "if=none,id=root,format=raw,snapshot=on,file={}",
                disk.display()
            ),
            "-device".to_string(),
            "ide-hd,drive=root,bus=ahci.0".to_string(),
        ]);
    }

    /// A `-drive` argument with id `id` on the stick's backing file (a snapshot each, so one
    /// file serves every disk of a device set).
    pub fn drive(&self, id: &str) -> String {
        drive(&self.stick, id)
    }

    /// The kernel of `tree`, `initrd`, and the USB stick's backing file in `dir`.
    fn assemble(dir: TempDir, tree: &KernelTree, initrd: PathBuf) -> Image {
        let kernel = tree.root.join(format!("boot/vmlinuz-{}", tree.kver));
        assert!(kernel.exists(), "{} is missing", kernel.display());
        let stick = dir.path().join("stick.img");
        std::fs::File::create(&stick)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        Image {
            devices: standard_devices(&stick),
            hotplug: Hotplug::default(),
            dir,
            kernel,
            initrd,
            stick,
        }
    }

    /// Boots with `vmtest=MODE` on `cpus` virtual CPUs and returns what /init reported. With
    /// `hotplug`, the NIC is added once /init says it is ready for it.
    pub fn boot(&self, mode: &str, hotplug: bool, cpus: u32) -> Report {
        self.boot_with(mode, hotplug, cpus, "")
    }

    /// [`Image::boot`] with more kernel command line (`vmmodules=...` for `vmtest=oracle`).
    pub fn boot_with(&self, mode: &str, hotplug: bool, cpus: u32, extra: &str) -> Report {
        let monitor = self
            .dir
            .path()
            .join(format!("monitor-{mode}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&monitor);
        let append = format!(
            "console=ttyS0 loglevel=1 panic=-1 {CMDLINE_OPTION} vmtest={mode} vmhotplug={} \
             vmhotplugready={} {extra}",
            hotplug as u8, self.hotplug.ready_when
        );
        let mut child = Command::new("qemu-system-x86_64")
            .args([
                "-M",
                "pc",
                "-accel",
                "tcg",
                "-m",
                "1024",
                "-smp",
                &cpus.to_string(),
            ])
            .args(["-display", "none", "-no-reboot", "-serial", "stdio"])
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", monitor.display()))
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &append])
            .args(&self.devices)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-x86_64 (package qemu-system-x86)");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let errors = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        // A watchdog: a boot that hangs must fail the test, not hold it forever.
        let pid = child.id();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = {
            let done = done.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if started.elapsed() > BOOT_LIMIT {
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                false
            })
        };
        let mut console = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if hotplug && line.trim_end() == "VMTEST hotplug-ready" {
                add_device(&monitor, &self.hotplug.device);
            }
            console.push_str(&line);
            console.push('\n');
        }
        let status = child.wait().unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let killed = watchdog.join().unwrap();
        let stderr = errors.join().unwrap();
        let mut report = Report::parse(&console);
        report.qemu = format!(
            "{status}{}: {stderr}",
            if killed { " (killed)" } else { "" }
        );
        report
    }
}

/// Longest a boot may take, hotplug included (they take 30 to 60 seconds under emulation).
const BOOT_LIMIT: Duration = Duration::from_secs(300);

fn add_device(monitor: &Path, driver: &str) {
    let mut stream = UnixStream::connect(monitor).expect("qemu monitor");
    stream
        .write_all(format!("device_add {driver},id=hotplugged\n").as_bytes())
        .unwrap();
    // Wait for the monitor's answer (its next prompt) so the command is not cut off.
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(7).filter(|w| w == b"(qemu) ").count() >= 2 {
            break;
        }
    }
}

/// What /init printed.
#[derive(Debug, Default)]
pub struct Report {
    pub mode: String,
    /// Uptime when the loader started and when it said coldplug was complete.
    pub started: f64,
    pub done: f64,
    /// Uptime of the last change to /proc/modules seen before it stayed the same for 5 s.
    pub last_change: f64,
    pub modules_at_done: Vec<String>,
    pub modules: Vec<String>,
    pub params: BTreeMap<String, String>,
    /// Virtio devices: modalias and bound driver ("-" for none).
    pub virtio: Vec<(String, String)>,
    /// The hotplugged device's driver was bound: after how many seconds.
    pub hotplug_seconds: Option<f64>,
    pub modules_after_hotplug: Vec<String>,
    /// With vmrequest=1: the modules after a kernel module request served by modaliasd
    /// linked as modprobe.
    pub modules_after_request: Vec<String>,
    /// modaliasd's log and the kernel's module-related messages.
    pub log: Vec<String>,
    pub kmsg: Vec<String>,
    /// `modaliasd load NAME` in the failure boot: exit status and output, by NAME.
    pub loads: BTreeMap<String, (i32, Vec<String>)>,
    pub errors: Vec<String>,
    /// Exit status of `modaliasd run` after SIGTERM (run mode only).
    pub daemon_exit: Option<i32>,
    pub ended: bool,
    pub console: String,
    pub qemu: String,
}

fn words(rest: &str) -> Vec<String> {
    rest.split_whitespace().map(str::to_owned).collect()
}

impl Report {
    pub fn parse(console: &str) -> Report {
        let mut r = Report {
            console: console.to_owned(),
            ..Report::default()
        };
        for line in console.lines() {
            let Some(fact) = line.trim_end_matches('\r').strip_prefix("VMTEST ") else {
                continue;
            };
            let (key, rest) = fact.split_once(' ').unwrap_or((fact, ""));
            let num = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
            match key {
                "mode" => r.mode = rest.to_owned(),
                "coldplug-done" => {
                    let w = words(rest);
                    r.started = num(&w[0]);
                    r.done = num(&w[1]);
                }
                "last-change" => r.last_change = num(rest),
                "modules-at-done" => r.modules_at_done = words(rest),
                "modules" => r.modules = words(rest),
                "param" => {
                    let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                    r.params.insert(name.to_owned(), value.to_owned());
                }
                "virtio" => {
                    let w = words(rest);
                    r.virtio.push((w[0].clone(), w[1].clone()));
                }
                "hotplug-bound" => {
                    let w = words(rest);
                    r.hotplug_seconds = Some(num(&w[2]) - num(&w[1]));
                }
                "modules-after-hotplug" => r.modules_after_hotplug = words(rest),
                "modules-after-request" => r.modules_after_request = words(rest),
                "log" => r.log.push(rest.to_owned()),
                "load-exit" => {
                    let w = words(rest);
                    let code = w.get(1).and_then(|c| c.parse().ok()).unwrap_or(-1);
                    r.loads.entry(w[0].clone()).or_default().0 = code;
                }
                "load-log" => {
                    let (module, line) = rest.split_once(' ').unwrap_or((rest, ""));
                    r.loads
                        .entry(module.to_owned())
                        .or_default()
                        .1
                        .push(line.to_owned());
                }
                "kmsg" => r.kmsg.push(rest.to_owned()),
                "error" => r.errors.push(rest.to_owned()),
                "daemon-exit" => r.daemon_exit = rest.trim().parse().ok(),
                "end" => r.ended = true,
                _ => {}
            }
        }
        r
    }

    /// Seconds from starting the loader to its "coldplug complete".
    pub fn coldplug_seconds(&self) -> f64 {
        self.done - self.started
    }

    /// How often modaliasd's log says it inserted each module.
    pub fn insertions(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for line in &self.log {
            if let Some(rest) = line.split("inserted ").nth(1) {
                let name = rest.split_whitespace().next().unwrap_or("").to_owned();
                *counts.entry(name).or_insert(0) += 1;
            }
        }
        counts
    }
}
