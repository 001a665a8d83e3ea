//! The OpenRC service as OpenRC itself reads it: Debian's `openrc-run` (unpacked by
//! tests/fixtures/unpack-debs.sh and laid over /usr in a private mount namespace, with a fresh
//! /run, `unshare -m`, needs root) sources the script and reports its dependencies and
//! commands. Nothing is started: that would load drivers on this machine.

mod support;

use std::path::Path;

/// `openrc-run SCRIPT COMMAND` for each command: everything printed, per command.
fn openrc_run(script: &Path, commands: &[&str]) -> Vec<String> {
    let openrc = support::unpacked_debs("openrc", "usr/sbin/openrc-run");
    let mut sh = format!(
        "set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/openrc
{}
",
        support::overlay_usr(&[&openrc.join("usr")])
    );
    for command in commands {
        // insserv's configuration is not there; openrc-run says so and goes on.
        sh.push_str(&format!(
            "echo '@@ {command}'; openrc-run {} {command} 2>&1 | grep -v insserv.conf || true\n",
            script.display()
        ));
    }
    let out = support::run_in_private_mounts("openrc-run", &sh);
    String::from_utf8_lossy(&out.stdout)
        .split("@@ ")
        .skip(1)
        .map(|s| s.split_once('\n').map_or("", |(_, rest)| rest).to_string())
        .collect()
}

#[test]
fn openrc_reads_the_service_as_written() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/openrc/modaliasd");
    let said = openrc_run(&script, &["depend", "describe"]);
    let depend: Vec<&str> = said[0].lines().collect();
    for line in ["provide dev", "need sysfs dev-mount", "before checkfs fsck"] {
        assert!(depend.contains(&line), "no '{line}' in: {depend:?}");
    }
    let keywords = depend
        .iter()
        .find(|l| l.starts_with("keyword "))
        .unwrap_or_else(|| panic!("no keywords: {depend:?}"));
    assert!(keywords.contains("-lxc") && keywords.contains("-docker"));
    assert!(
        said[1].contains("modaliasd: load drivers for kernel devices")
            && said[1].contains("reload: re-read modprobe.d"),
        "{}",
        said[1]
    );
}

#[test]
fn a_broken_depend_would_be_reported() {
    // The check above must be able to fail: one keyword misspelt.
    let tmp = support::TempDir::new("openrc");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/openrc/modaliasd");
    let broken = tmp.path().join("modaliasd");
    let text = std::fs::read_to_string(script).unwrap();
    assert!(text.contains("provide dev"));
    std::fs::write(&broken, text.replace("provide dev", "provid dev")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let said = openrc_run(&broken, &["depend"]);
    assert!(!said[0].lines().any(|l| l == "provide dev"), "{}", said[0]);
    assert!(said[0].contains("provid: not found"), "{}", said[0]);
}
