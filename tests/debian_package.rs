//! `packaging/build-deb.sh`: the package holds what packaging/ says, installed where Debian
//! expects it, the binary inside is the static build of this version, and lintian finds
//! nothing to object to.

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
    let o = Command::new(manifest.join("packaging/build-deb.sh"))
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deb = std::path::PathBuf::from(String::from_utf8(o.stdout).unwrap().trim());
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
            "usr/share/modaliasd/initramfs-tools/hooks/modaliasd",
            "packaging/initramfs-tools/hooks/modaliasd",
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
    let hook = tree.join("etc/kernel/postinst.d/modaliasd");
    let sh = Command::new("sh").arg("-n").arg(&hook).status().unwrap();
    assert!(sh.success());

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
