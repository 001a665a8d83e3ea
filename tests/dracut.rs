//! The dracut module inside Debian's real dracut: the image it builds holds the binary, the
//! hooks and an index that the daemon finds fresh, and booted under qemu dracut's /init starts
//! the daemon in its pre-udev hook, which loads the drivers of the devices present before udevd
//! runs. Both kinds of dracut image: the shell /init, and systemd as /init (dracut's `systemd`
//! modules, as Debian and Fedora build them when systemd is installed), where the hook runs
//! inside `dracut-pre-udev.service` and the daemon must outlive that oneshot service. Both
//! boot on to a root disk whose drivers the daemon loads, and our cleanup hook stops it. A third
//! image uses no hook at all but our systemd units, which systemd as /init runs (the only test
//! where systemd itself starts them).
//!
//! dracut reads its modules from /usr/lib/dracut, the kernel's from /lib/modules/KVER, and puts
//! the host's udevd in every image (its base module requires udev-rules). None of these is
//! installed here: in a private mount namespace (`unshare -m`, needs root as CI has), the
//! unpacked dracut-core and systemd (tests/fixtures/unpack-debs.sh), the unpacked udev of the
//! VM test (tests/fixtures/udev.sh), our module and this build's binary are laid over /usr, and the
//! fixture kernel's modules are mounted where dracut looks for them.

mod support;

#[path = "vm/machine.rs"]
mod machine;

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use support::{KernelTree, TempDir, copy_file, kernel_tree};

/// Copies the tree under `from` into `to`, as `cp -a` does.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {}", from.display());
}

#[test]
fn dracut_with_the_module_builds_an_image_that_boots_with_the_daemon() {
    build_and_boot("base rootfs-block modaliasd");
}

#[test]
fn a_dracut_image_with_systemd_as_init_runs_the_daemon_too() {
    let log = build_and_boot("systemd systemd-initrd dracut-systemd base rootfs-block modaliasd");
    assert!(
        log.contains("Including module: dracut-systemd"),
        "not a systemd image: {log}"
    );
}

/// Builds an image with dracut's `modules` and ours, checks it, boots it on to the mounted root
/// and the cleanup hooks, and returns dracut's log.
fn build_and_boot(modules: &str) -> String {
    let tree = kernel_tree("6.12");
    let kver = &tree.kver;
    let tmp = TempDir::new("dracut");
    // The test's own probes. A pre-udev hook after ours: what the daemon loaded before udevd
    // started. A pre-trigger hook, which runs after udevd has started (under systemd, in
    // another service, once dracut-pre-udev.service has ended): whether the daemon is still
    // there. A cleanup hook after ours, once the root file system (an ext4 disk whose drivers
    // the daemon loads) is mounted: whether our hook stopped the daemon; then power off. Shell
    // builtins only: the image has bash and little else. Under systemd a service's output goes
    // to the journal, so the probes write to the console themselves.
    let probe = tmp.path().join("probe.sh");
    std::fs::write(
        &probe,
        format!(
            "{{\n{}}} > /dev/console 2>&1\n",
            machine::probe_coldplugged()
        ),
    )
    .unwrap();
    let later = tmp.path().join("later.sh");
    std::fs::write(
        &later,
        r#"{
kill -0 "$(cat /run/modaliasd/initramfs.pid)" && echo 'VMTEST param daemon_later running'
} > /dev/console 2>&1
"#,
    )
    .unwrap();
    let cleanup = tmp.path().join("cleanup.sh");
    std::fs::write(
        &cleanup,
        format!(
            "{{\n{}echo 'VMTEST end'\n}} > /dev/console 2>&1\necho o > /proc/sysrq-trigger\n",
            machine::probe_stopped("/sysroot")
        ),
    )
    .unwrap();
    // A packager's configuration: our module, and drivers the way users add them, through
    // add_drivers, which dracut installs only after every module's install().
    let (image, log) = build_image(
        &tmp,
        &tree,
        modules,
        "add_dracutmodules+=\" modaliasd \"\nadd_drivers+=\" e1000 ahci usb-storage sd_mod ext4 \"\n",
        &[
            (probe, "/usr/lib/dracut/hooks/pre-udev/99-probe.sh"),
            (later, "/usr/lib/dracut/hooks/pre-trigger/99-probe.sh"),
            (cleanup, "/usr/lib/dracut/hooks/cleanup/99-probe.sh"),
        ],
    );
    assert!(
        log.contains("Including module: modaliasd"),
        "dracut left our module out: {log}"
    );
    assert!(!log.contains("modaliasd:"), "the module complained: {log}");

    let root = tmp.path().join("image");
    support::unpack_initrd(&image, &root);

    for hook in [
        "pre-udev/10-modaliasd-coldplug.sh",
        "cleanup/90-modaliasd-stop.sh",
    ] {
        assert!(
            root.join("usr/lib/dracut/hooks").join(hook).exists(),
            "no hook {hook} in the image"
        );
    }

    // The binary, and the daemon's view at boot: the saved index, fresh, answering for the
    // drivers that dracut added after our module had run.
    support::assert_image_has_the_daemon(&root, kver);

    // Booted: dracut's /init sources our pre-udev hook and the daemon coldplugs before udevd
    // starts; the root disk appears behind the drivers it loads, /init mounts it, and our
    // cleanup hook stops the daemon before the switch. Should /init fail, it powers off rather
    // than wait in a shell.
    let mut vm = machine::Image::from_initrd(&tree, &image);
    vm.add_root_disk();
    let r = vm.boot_with(
        "dracut",
        false,
        1,
        "root=/dev/sda rootfstype=ext4 rd.shell=0 rd.emergency=poweroff",
    );
    r.assert_daemon_coldplugged();
    // The daemon outlived the pre-udev hook (under systemd, its service).
    r.assert_params(&[("daemon_later", "running")]);
    r.assert_stopped_on_the_root();
    log
}

/// Runs Debian's dracut with `modules` (and `conf` as its configuration) in a private mount
/// namespace, with `includes` (file, path in the image) added, and returns the image and
/// dracut's log. Laid over /usr: this build as /usr/sbin/modaliasd, our dracut module, Debian's
/// udevd where dracut looks for it, Debian's dracut and systemd, and an empty directory to mount
/// the fixture kernel's modules on.
fn build_image(
    tmp: &TempDir,
    tree: &KernelTree,
    modules: &str,
    conf: &str,
    includes: &[(PathBuf, &str)],
) -> (PathBuf, String) {
    let kver = &tree.kver;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dracut = support::unpacked_debs("dracut", "usr/bin/dracut");
    // dracut's systemd modules install systemd from /usr: Debian's, unpacked like dracut.
    let systemd = support::unpacked_debs("systemd", "usr/lib/systemd/systemd");
    let udev = machine::udev_root();

    let over = tmp.path().join("over/usr");
    copy_file(
        Path::new(env!("CARGO_BIN_EXE_modaliasd")),
        &over.join("sbin/modaliasd"),
    );
    copy_tree(
        &manifest.join("packaging/dracut/99modaliasd"),
        &over.join("lib/dracut/modules.d/99modaliasd"),
    );
    copy_file(&udev.join("bin/udevadm"), &over.join("bin/udevadm"));
    std::fs::create_dir_all(over.join("lib/systemd")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/udevadm", over.join("lib/systemd/systemd-udevd")).unwrap();
    copy_tree(&udev.join("lib/udev"), &over.join("lib/udev"));
    // udevd's units too, for the images with systemd as /init: without them no udevd runs
    // there, and systemd never sees the root disk's device.
    copy_tree(
        &udev.join("lib/systemd/system"),
        &over.join("lib/systemd/system"),
    );
    std::fs::create_dir_all(over.join("lib/modules").join(kver)).unwrap();

    let conf_file = tmp.path().join("dracut.conf");
    std::fs::write(&conf_file, conf).unwrap();
    let confdir = tmp.path().join("dracut.conf.d");
    std::fs::create_dir_all(&confdir).unwrap();
    let image = tmp.path().join("initrd.img");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let includes: String = includes
        .iter()
        .map(|(from, to)| format!(" --include {} {to}", from.display()))
        .collect();
    let script = format!(
        "set -e
{overlay}
mount --bind {module_dir} /usr/lib/modules/{kver}
dracut --conf {conf} --confdir {confdir} --tmpdir {work} --no-hostonly \
    --modules '{modules}' --no-compress --no-early-microcode{includes} \
    --force {image} {kver}",
        overlay = support::overlay_usr(&[&over, &dracut.join("usr"), &systemd.join("usr")]),
        module_dir = tree.module_dir().display(),
        conf = conf_file.display(),
        confdir = confdir.display(),
        work = work.display(),
        image = image.display(),
    );
    let log = support::in_private_mounts("dracut", &script);
    (image, log)
}

/// Our systemd units under a real systemd, as /init of an initramfs with udevd masked (the
/// setup for a system without udev): systemd creates the uevent socket from modaliasd.socket
/// and starts the daemon on it; units ordered after modaliasd-settle.service start only once
/// coldplug is complete, so the probe finds the drivers loaded;
/// a restart gets the same socket again, which systemd kept open; `systemctl reload` reaches
/// the daemon; and a uevent that arrives
/// while the daemon is stopped waits in that socket, starts the daemon, and is read by it.
#[test]
fn systemd_runs_the_units_on_the_socket_it_holds() {
    let tree = kernel_tree("6.12");
    let tmp = TempDir::new("dracut-units");
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd");
    let etc = tmp.path().join("etc");
    let system = etc.join("systemd/system");
    for unit in [
        "modaliasd.service",
        "modaliasd.socket",
        "modaliasd-settle.service",
    ] {
        copy_file(&units.join(unit), &system.join(unit));
    }
    // Enabled as `systemctl enable` would, from the units' [Install] sections.
    let link = |target: &str, at: PathBuf| {
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, at).unwrap();
    };
    link(
        "../modaliasd.service",
        system.join("sysinit.target.wants/modaliasd.service"),
    );
    link(
        "../modaliasd.socket",
        system.join("sockets.target.wants/modaliasd.socket"),
    );
    for masked in [
        "systemd-udevd.service",
        "systemd-udevd-kernel.socket",
        "systemd-udevd-control.socket",
        "systemd-udev-trigger.service",
    ] {
        link("/dev/null", system.join(masked));
    }
    // The daemon's log on the console too, for the test to read.
    std::fs::create_dir_all(system.join("modaliasd.service.d")).unwrap();
    std::fs::write(
        system.join("modaliasd.service.d/console.conf"),
        "[Service]\nStandardError=journal+console\n",
    )
    .unwrap();
    // Wants, not Requires: with Requires the probe's own restart of the daemon would restart
    // the probe too.
    std::fs::write(
        system.join("vmtest-probe.service"),
        "[Unit]\nDefaultDependencies=no\nWants=modaliasd-settle.service\n\
         After=modaliasd-settle.service\n\
         [Service]\nType=oneshot\nExecStart=/bin/bash /vmtest-probe.sh\n",
    )
    .unwrap();
    link(
        "../vmtest-probe.service",
        system.join("sysinit.target.wants/vmtest-probe.service"),
    );
    let probe = tmp.path().join("vmtest-probe.sh");
    std::fs::write(
        &probe,
        format!("{{\n{}", machine::PROBE_MODULES)
            + r#"echo "VMTEST param socket $(systemctl is-active modaliasd.socket)"
echo "VMTEST param service $(systemctl is-active modaliasd.service)"
before=$(systemctl show -P MainPID modaliasd.service)
systemctl restart modaliasd.service
after=$(systemctl show -P MainPID modaliasd.service)
[ "$before" != "$after" ] && echo 'VMTEST param restarted yes'
echo "VMTEST param service_after $(systemctl is-active modaliasd.service)"
systemctl reload modaliasd.service && echo 'VMTEST param reload ok'
# Stopped, with the socket left to systemd: a uevent now waits in it, and starts the daemon.
systemctl stop modaliasd.service
echo add > /sys/devices/virtual/mem/null/uevent
for _ in 1 2 3 4 5 6 7 8 9 10; do
    systemctl -q is-active modaliasd.service && break
    sleep 0.5
done
echo "VMTEST param activated $(systemctl is-active modaliasd.service)"
systemctl stop modaliasd.service
echo 'VMTEST end'
} > /dev/console 2>&1
echo o > /proc/sysrq-trigger
"#,
    )
    .unwrap();

    let (image, log) = build_image(
        &tmp,
        &tree,
        "systemd systemd-initrd dracut-systemd base rootfs-block",
        "add_drivers+=\" e1000 ahci \"\ninstall_items+=\" /usr/sbin/modaliasd \"\n",
        &[(etc, "/etc"), (probe, "/vmtest-probe.sh")],
    );
    assert!(
        log.contains("Including module: dracut-systemd"),
        "not a systemd image: {log}"
    );

    let r = machine::Image::from_initrd(&tree, &image).boot_with(
        "dracut-units",
        false,
        1,
        "root=/dev/disk/by-label/none rd.shell=0 rd.emergency=poweroff",
    );
    // Loaded by the time modaliasd.service was ready.
    r.assert_loaded(&["e1000", "ahci", "libahci", "libata"]);
    r.assert_params(&[
        ("socket", "active"),
        ("service", "active"),
        ("restarted", "yes"),
        ("service_after", "active"),
        ("reload", "ok"),
    ]);
    let passed = r
        .console
        .matches("using the uevent socket passed by the service manager")
        .count();
    assert_eq!(passed, 3, "every start on systemd's socket:\n{}", r.console);
    assert!(
        r.console
            .contains("reloaded configuration, rules and index"),
        "ExecReload did not reach the daemon:\n{}",
        r.console
    );
    // A uevent started the daemon, and that instance read it: its summary counts at least
    // one message.
    r.assert_params(&[("activated", "active")]);
    let last_summary = r
        .console
        .lines()
        .rfind(|l| l.contains(" messages, ") && l.contains("events handled"))
        .unwrap_or_else(|| panic!("no summary:\n{}", r.console));
    let messages: u64 = last_summary
        .split("modaliasd: ")
        .last()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary: {last_summary}"));
    assert!(messages >= 1, "the queued uevent was lost: {last_summary}");
}
