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
    let said = verify(
        &units,
        &[
            "modaliasd.service",
            "modaliasd.socket",
            "modaliasd-settle.service",
        ],
    );
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

/// Beside udevd, not instead of it: no unit conflicts with udevd or its sockets (the handoff of
/// module loading is the rules override, see src/udev_handoff.rs), and the service hands off
/// before it starts and back whenever it stops.
#[test]
fn the_units_leave_udevd_alone_and_hand_module_loading_back_on_stop() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd");
    for unit in [
        "modaliasd.service",
        "modaliasd.socket",
        "modaliasd-settle.service",
    ] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        for line in text.lines().filter(|l| l.starts_with("Conflicts=")) {
            assert!(!line.contains("udev"), "{unit}: {line}");
        }
    }
    let service = std::fs::read_to_string(units.join("modaliasd.service")).unwrap();
    assert!(service.contains("\nExecStartPre=-/usr/sbin/modaliasd udev-handoff on\n"));
    assert!(service.contains("\nExecStopPost=/usr/sbin/modaliasd udev-handoff off\n"));
    assert!(service.contains("\nBefore=sysinit.target systemd-udev-trigger.service"));
}
