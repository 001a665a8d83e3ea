//! The Debian package (`debian/`, built with `dpkg-buildpackage`): it holds what packaging/
//! says, installed where Debian expects it, the binary inside is the static build of this
//! version, lintian finds nothing to object to, debhelper's scripts enable the units and
//! trigger update-initramfs, and the package's own scripts compile the index (private mount
//! namespace, `unshare -m`, needs root). Installing, purging and booting it on real Debian
//! systems is tests/real_system.rs.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use support::TempDir;

fn field(deb: &Path, name: &str) -> String {
    let o = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(name)
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_package_installs_the_binary_units_rules_hooks_and_man_page() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = TempDir::new("deb");
    let deb = support::build_package(tmp.path());
    assert_eq!(field(&deb, "Package"), "modaliasd");
    assert_eq!(field(&deb, "Version"), env!("CARGO_PKG_VERSION"));

    let tree = tmp.path().join("tree");
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(x.success());
    let version = Command::new(tree.join("usr/sbin/modaliasd"))
        .env_clear()
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap(),
        format!("modaliasd {}\n", env!("CARGO_PKG_VERSION"))
    );
    for (installed, source) in [
        (
            "lib/systemd/system/modaliasd.service",
            "packaging/systemd/modaliasd.service",
        ),
        (
            "lib/systemd/system/modaliasd.socket",
            "packaging/systemd/modaliasd.socket",
        ),
        (
            "usr/lib/modaliasd/rules.d/80-drivers.rules",
            "rules.d/80-drivers.rules",
        ),
        (
            "usr/lib/dracut/modules.d/99modaliasd/module-setup.sh",
            "packaging/dracut/99modaliasd/module-setup.sh",
        ),
        (
            "lib/systemd/system/modaliasd-settle.service",
            "packaging/systemd/modaliasd-settle.service",
        ),
        (
            "usr/share/initramfs-tools/hooks/zz-modaliasd",
            "packaging/initramfs-tools/hooks/modaliasd",
        ),
        (
            "usr/share/initramfs-tools/scripts/init-top/modaliasd",
            "packaging/initramfs-tools/scripts/init-top/modaliasd",
        ),
        (
            "usr/share/initramfs-tools/scripts/init-bottom/modaliasd",
            "packaging/initramfs-tools/scripts/init-bottom/modaliasd",
        ),
    ] {
        assert_eq!(
            std::fs::read(tree.join(installed)).unwrap(),
            std::fs::read(manifest.join(source)).unwrap(),
            "{installed}"
        );
    }
    let mut page = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(tree.join("usr/share/man/man8/modaliasd.8.gz")).unwrap(),
    )
    .read_to_string(&mut page)
    .unwrap();
    assert_eq!(
        page,
        std::fs::read_to_string(manifest.join("packaging/modaliasd.8")).unwrap()
    );
    for hook in ["postinst", "postrm"] {
        let hook = tree.join(format!("etc/kernel/{hook}.d/modaliasd"));
        let sh = Command::new("sh").arg("-n").arg(&hook).status().unwrap();
        assert!(sh.success());
    }
    let control = tmp.path().join("control");
    let e = Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&control)
        .status()
        .unwrap();
    assert!(e.success());
    // debhelper's part: the socket and the service enabled and started, the settle unit
    // only installed; update-initramfs triggered; the switch for the initramfs a conffile.
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    for unit in ["modaliasd.service", "modaliasd.socket"] {
        assert!(
            postinst.contains(&format!("deb-systemd-helper enable '{unit}'")),
            "{postinst}"
        );
    }
    // Enabled again only where the administrator had enabled it (the no-enable form).
    assert!(postinst.contains("deb-systemd-helper debian-installed 'modaliasd-settle.service'"));
    assert!(!postinst.contains("'modaliasd-settle.service' >/dev/null || true\n\tfi\nfi\nif"));
    assert!(
        postinst.contains("deb-systemd-invoke $_dh_action 'modaliasd.service' 'modaliasd.socket'")
    );
    let triggers = std::fs::read_to_string(control.join("triggers")).unwrap();
    assert!(
        triggers
            .lines()
            .any(|l| l == "activate-noawait update-initramfs")
    );
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(
        conffiles
            .lines()
            .any(|l| l == "/etc/modaliasd/initramfs.conf")
    );
    maintainer_scripts_compile_the_index(&control, &tree, tmp.path());

    // Debian's own package checker has nothing to object to: no error and no warning (the
    // package's lintian overrides say why each overridden tag does not apply).
    let lintian = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .expect("lintian (Debian package lintian; tests/deps.sh installs it)");
    let said = String::from_utf8_lossy(&lintian.stdout);
    let objections: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(objections.is_empty(), "lintian: {objections:#?}");
    assert!(
        lintian.status.success(),
        "lintian failed: {}",
        String::from_utf8_lossy(&lintian.stderr)
    );
}

/// The kernel hook (as a kernel package's postinst calls it: release, image path) and the
/// package's postinst compile the index where the installed binary then uses it. Run in a
/// private mount namespace with the package's /usr laid over this one and a module directory
/// of the 6.12 fixture's index files (links; the directory itself writable) at
/// /usr/lib/modules.
fn maintainer_scripts_compile_the_index(control: &Path, tree: &Path, tmp: &Path) {
    let kernel = support::kernel_tree("6.12");
    let kver = &kernel.kver;
    let modules = tmp.join("modules");
    let dir = modules.join(kver);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(kernel.module_dir()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name.to_string_lossy().starts_with("modules.") {
            std::os::unix::fs::symlink(e.path(), dir.join(&name)).unwrap();
        }
    }
    std::fs::create_dir_all(tree.join("usr/lib/modules")).unwrap();
    let said = support::in_private_mounts(
        "maintainer scripts",
        &format!(
            "set -e
{overlay}
mount --bind {modules} /usr/lib/modules
# debhelper's part of postinst enables units: on empty directories, not this machine's.
for d in /etc/systemd /var/lib/systemd /run/systemd; do
    mkdir -p $d && mount -t tmpfs none $d
done
index=/usr/lib/modules/{kver}/modaliasd.index
{tree}/etc/kernel/postinst.d/modaliasd {kver} /boot/vmlinuz-{kver}
[ -s $index ] && echo 'hook: index'
/usr/sbin/modaliasd -v resolve --kver {kver} e1000 2>&1
{tree}/etc/kernel/postinst.d/modaliasd 0.0.0-none /boot/vmlinuz-0.0.0-none && echo 'hook: no modules, no error'
rm $index
sh {control}/postinst configure
[ -s $index ] && echo 'postinst: index'
",
            overlay = support::overlay_usr(&[&tree.join("usr")]),
            modules = modules.display(),
            tree = tree.display(),
            control = control.display(),
        ),
    );
    for line in [
        "hook: index",
        "resolver: saved index",
        "e1000\te1000",
        "hook: no modules, no error",
        "postinst: index",
    ] {
        assert!(said.contains(line), "no '{line}' in:\n{said}");
    }
}
