//! Every shell script the repository ships or runs (packaging hooks and services, the test
//! fixtures, the VM's /init, CI) passes Debian's shellcheck down to its notes, read in the
//! dialect its first line names. The hooks run in shells we cannot try by hand (busybox ash in
//! an initramfs, klibc's sh in initramfs-tools, mkinitcpio's ash), where an unquoted
//! expansion or a bashism fails only on the machine that boots.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The dialect shellcheck should read a script in, from its `#!` line; None if not a shell script.
fn dialect(first_line: &str) -> Option<&'static str> {
    let interpreter = first_line.strip_prefix("#!")?;
    // `#!/usr/bin/env bash`, `#!/bin/busybox sh`: the shell is the last word.
    let shell = interpreter.split_whitespace().last()?.rsplit('/').next()?;
    match shell {
        "bash" => Some("bash"),
        // openrc-run reads its service files as POSIX sh; mkinitcpio's runtime hooks run in
        // busybox ash, closest to dash among shellcheck's dialects.
        "sh" | "openrc-run" => Some("sh"),
        "ash" | "dash" => Some("dash"),
        _ => None,
    }
}

fn shell_scripts(dir: &Path, out: &mut Vec<(PathBuf, &'static str)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            shell_scripts(&path, out);
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Some(d) = text.lines().next().and_then(dialect) {
            out.push((path, d));
        }
    }
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scripts = Vec::new();
    for dir in ["packaging", "debian", "tests", "benches", ".ci"] {
        shell_scripts(&root.join(dir), &mut scripts);
    }
    scripts.sort();
    // A floor, so that a broken walk cannot pass by finding nothing.
    for expected in [
        "packaging/dracut/99modaliasd/module-setup.sh",
        "packaging/initramfs-tools/scripts/init-top/modaliasd",
        "packaging/mkinitcpio/hooks/modaliasd",
        "packaging/openrc/modaliasd",
        "debian/modaliasd.postrm",
        "debian/kernel-postrm",
        "tests/vm/init",
        ".ci/run",
    ] {
        assert!(
            scripts.iter().any(|(p, _)| p.ends_with(expected)),
            "{expected} not found among {scripts:?}"
        );
    }
    let mut failed = Vec::new();
    for (path, dialect) in &scripts {
        let o = Command::new("shellcheck")
            .args(["--severity=info", "--format=gcc", "--shell", dialect])
            // SC2154: variables set by whoever sources or starts the script (dracut and
            // initramfs-tools for their hooks, the kernel command line for the VM's /init).
            // SC1091: files those programs provide and the script sources.
            .args(["--exclude=SC2154,SC1091"])
            .arg(path)
            .output()
            .expect("shellcheck (Debian package shellcheck; tests/deps.sh installs it)");
        if !o.status.success() {
            failed.push(format!(
                "{} ({dialect}):\n{}{}",
                path.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn dialects_come_from_the_first_line() {
    assert_eq!(dialect("#!/bin/sh"), Some("sh"));
    assert_eq!(dialect("#!/usr/bin/env bash"), Some("bash"));
    assert_eq!(dialect("#!/bin/busybox sh"), Some("sh"));
    assert_eq!(dialect("#!/usr/bin/ash"), Some("dash"));
    assert_eq!(dialect("#!/sbin/openrc-run"), Some("sh"));
    assert_eq!(dialect("#!/usr/bin/python3"), None);
    assert_eq!(dialect("# not a script"), None);
}
