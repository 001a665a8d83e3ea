//! The systemd units as systemd itself reads them: `systemd-analyze verify` of Debian's systemd
//! finds nothing to say about them. It parses every directive (an unknown key, a bad value, an
//! ordering cycle are reported) and checks that ExecStart's program exists and is executable,
//! so this build's binary is laid over /usr/sbin/modaliasd with the unpacked systemd
//! (tests/fixtures/unpack-debs.sh) in a private mount namespace (`unshare -m`, needs root).

mod support;

use std::path::Path;
use support::{TempDir, copy_file};

/// `systemd-analyze verify` of the unit files in `units`: everything it printed.
fn verify(units: &Path, names: &[&str]) -> String {
    let systemd = support::unpacked_debs("systemd", "usr/bin/systemd-analyze");
    let over = TempDir::new("systemd-units");
    copy_file(
        Path::new(env!("CARGO_BIN_EXE_modaliasd")),
        &over.path().join("usr/sbin/modaliasd"),
    );
    let files: Vec<String> = names
        .iter()
        .map(|n| units.join(n).display().to_string())
        .collect();
    // The man page is not installed here; that check is the Debian package test's.
    support::in_private_mounts(
        "systemd-analyze",
        &format!(
            "set -e
{overlay}
systemd-analyze verify --man=no {files}",
            overlay = support::overlay_usr(&[&over.path().join("usr"), &systemd.join("usr")]),
            files = files.join(" "),
        ),
    )
}

#[test]
fn systemd_finds_nothing_to_say_about_the_units() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd");
    let said = verify(&units, &["modaliasd.service", "modaliasd.socket"]);
    assert_eq!(said, "", "systemd-analyze verify");
}

#[test]
fn a_misspelt_directive_would_be_reported() {
    // The check above must be able to fail: the same socket unit with one key misspelt.
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd");
    let tmp = TempDir::new("systemd-units");
    let socket = std::fs::read_to_string(units.join("modaliasd.socket")).unwrap();
    assert!(socket.contains("ReceiveBuffer="));
    std::fs::write(
        tmp.path().join("modaliasd.socket"),
        socket.replace("ReceiveBuffer=", "ReceiveBufer="),
    )
    .unwrap();
    copy_file(
        &units.join("modaliasd.service"),
        &tmp.path().join("modaliasd.service"),
    );
    let said = verify(tmp.path(), &["modaliasd.service", "modaliasd.socket"]);
    assert!(said.contains("Unknown key 'ReceiveBufer'"), "{said}");
}
