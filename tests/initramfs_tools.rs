//! The initramfs-tools hook inside Debian's real mkinitramfs: the image it builds holds the
//! binary, the boot scripts and an index that the daemon finds fresh, and booted under qemu its
//! /init starts the daemon, which loads the drivers of the devices present, the root disk's
//! among them; /init mounts the root file system and the init-bottom script stops the daemon.
//!
//! mkinitramfs reads /usr/share/initramfs-tools, /lib/modules/KVER and /boot/config-KVER and
//! runs the hook, which runs /usr/sbin/modaliasd. None of these is installed here: in a private
//! mount namespace (`unshare -m`, needs root as CI has), the unpacked initramfs-tools and klibc
//! (tests/fixtures/unpack-debs.sh) and this build's binary are laid over /usr, and the
//! fixture kernel's modules and config are mounted where mkinitramfs looks for them.

mod support;

#[path = "vm/machine.rs"]
mod machine;

use std::path::Path;
use support::{TempDir, kernel_tree};

#[test]
fn mkinitramfs_with_the_hook_builds_an_image_that_boots_with_the_daemon() {
    let tree = kernel_tree("6.12");
    let kver = &tree.kver;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let packaging = manifest.join("packaging/initramfs-tools");
    let tmp = TempDir::new("mkinitramfs");

    // What is laid over /usr: this build as /usr/sbin/modaliasd, and an empty directory to
    // mount the fixture's modules on.
    let over = tmp.path().join("over/usr");
    support::copy_file(
        Path::new(env!("CARGO_BIN_EXE_modaliasd")),
        &over.join("sbin/modaliasd"),
    );
    std::fs::create_dir_all(over.join("lib/modules").join(kver)).unwrap();

    // The configuration directory (-d): a few modules, our hook and boot scripts.
    let conf = tmp.path().join("conf");
    for (from, to) in [
        ("hooks/modaliasd", "hooks/zz-modaliasd"),
        ("scripts/init-top/modaliasd", "scripts/init-top/modaliasd"),
        (
            "scripts/init-bottom/modaliasd",
            "scripts/init-bottom/modaliasd",
        ),
    ] {
        support::copy_file(&packaging.join(from), &conf.join(to));
    }
    std::fs::create_dir_all(conf.join("conf.d")).unwrap();
    std::fs::write(
        conf.join("initramfs.conf"),
        "MODULES=list\nBUSYBOX=y\nCOMPRESS=gzip\n",
    )
    .unwrap();
    // The modules go in through a hook of the test's own, not through the `modules` list,
    // which initramfs-tools' /init would load by itself: only the daemon loads them. It runs
    // before ours, installed as zz-modaliasd as its header says (hooks run in name order); a
    // module added after ours makes the index stale, which tests/initramfs_index.rs covers.
    std::fs::write(conf.join("modules"), "").unwrap();
    std::fs::write(
        conf.join("hooks/00-test-modules"),
        r#"#!/bin/sh
case "$1" in prereqs) echo; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
manual_add_modules e1000 ahci usb-storage sd_mod ext4
"#,
    )
    .unwrap();
    // The test's own probes. After init-top: what the daemon loaded. Then /init mounts the
    // root file system, an ext4 disk behind the SATA controller whose drivers (ahci, sd_mod)
    // only the daemon loads, and runs init-bottom: after our script, whether the daemon was
    // stopped, then power off.
    let probe = conf.join("scripts/init-premount/zz-probe");
    std::fs::create_dir_all(probe.parent().unwrap()).unwrap();
    std::fs::write(
        &probe,
        "#!/bin/sh\ncase \"$1\" in prereqs) echo; exit 0 ;; esac\n".to_string()
            + &machine::probe_coldplugged(),
    )
    .unwrap();
    let bottom = conf.join("scripts/init-bottom/zz-probe");
    std::fs::create_dir_all(bottom.parent().unwrap()).unwrap();
    std::fs::write(
        &bottom,
        "#!/bin/sh\nPREREQ=\"modaliasd\"\ncase \"$1\" in prereqs) echo \"$PREREQ\"; exit 0 ;; esac\necho\n"
            .to_string()
            + &machine::probe_stopped("/root")
            + "echo 'VMTEST end'\npoweroff -f\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for script in [probe, bottom, conf.join("hooks/00-test-modules")] {
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let image = tmp.path().join("initrd.img");
    let script = format!(
        "set -e
{overlay}
mount --bind {modules} /usr/lib/modules/{kver}
mount --bind {boot} /boot
mkinitramfs -d {conf} -o {image} {kver}",
        overlay = support::overlay_usr(&[
            &over,
            &support::unpacked_debs("initramfs-tools", "usr/sbin/mkinitramfs").join("usr"),
        ]),
        modules = tree.module_dir().display(),
        boot = tree.root.join("boot").display(),
        conf = conf.display(),
        image = image.display(),
    );
    let log = support::in_private_mounts("mkinitramfs", &script);
    assert!(!log.contains("modaliasd"), "the hook complained: {log}");

    let root = tmp.path().join("image");
    support::unpack_initrd(&image, &root);

    for stage in ["init-top", "init-bottom"] {
        let order = std::fs::read_to_string(root.join("scripts").join(stage).join("ORDER"))
            .unwrap_or_default();
        assert!(
            order.contains(&format!("/scripts/{stage}/modaliasd")),
            "{stage} does not run modaliasd: {order}"
        );
    }
    let dir = root.join("usr/lib/modules").join(kver);
    let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap();
    assert!(
        dep.contains("e1000.ko:") && !dep.contains(".ko.xz"),
        "mkinitramfs did not decompress the modules as expected: {dep}"
    );

    // The binary, and the daemon's view at boot: the saved index, fresh, answering for the
    // copied modules.
    support::assert_image_has_the_daemon(&root, kver);

    // Booted: initramfs-tools' /init runs the init-top script, the daemon loads the drivers of
    // the devices whose modules the image holds (no USB host driver, so no USB disk), settle
    // returns, and the daemon is still running when init-premount comes. The root disk's
    // drivers are among them, so /init finds /dev/sda, mounts it and runs init-bottom, where
    // our script stops the daemon before the switch to the real root.
    let mut image = machine::Image::from_initrd(&tree, &image);
    image.add_root_disk();
    let r = image.boot_with("mkinitramfs", false, 1, "root=/dev/sda rootfstype=ext4");
    r.assert_daemon_coldplugged();
    r.assert_stopped_on_the_root();
}
