//! The OpenRC service as OpenRC itself reads and runs it: Debian's `openrc-run` (unpacked by
//! tests/fixtures/unpack-debs.sh and laid over /usr in a private mount namespace, with a fresh
//! /run, `unshare -m`, needs root) sources the script and reports its dependencies and
//! commands; and it starts, reloads and stops the daemon through Debian's start-stop-daemon,
//! in a private network namespace too, with an empty /sys (no device to coldplug) and
//! `--dry-run` from /etc/conf.d, so that nothing is loaded on this machine.

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
    for line in [
        "provide dev",
        "use sysfs dev-mount mountkernfs mountdevsubfs",
        "before checkfs fsck checkfs.sh checkroot.sh",
    ] {
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

/// `openrc-run --nodeps SCRIPT start`, `status`, `reload`, `stop`, with the state directories
/// OpenRC's boot would have made. The daemon is this build at /usr/sbin/modaliasd (where the
/// script and start-stop-daemon look for it), on the 6.12 fixture's modules; conf.d adds
/// `--kver` and `--dry-run` through MODALIASD_OPTS, as an administrator would add options.
#[test]
fn openrc_starts_reloads_and_stops_the_daemon() {
    let openrc = support::unpacked_debs("openrc", "usr/sbin/openrc-run");
    let tree = support::kernel_tree("6.12");
    let tmp = support::TempDir::new("openrc-start");
    let over = tmp.path().join("over/usr");
    support::copy_file(
        Path::new(env!("CARGO_BIN_EXE_modaliasd")),
        &over.join("sbin/modaliasd"),
    );
    std::fs::create_dir_all(over.join("lib/modules").join(&tree.kver)).unwrap();
    let etc = tmp.path().join("etc");
    support::copy_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/openrc/modaliasd"),
        &etc.join("init.d/modaliasd"),
    );
    let log = tmp.path().join("daemon.log");
    std::fs::create_dir_all(etc.join("conf.d")).unwrap();
    // The daemon's log, for the test to read, where conf.d puts it (run --log-file).
    std::fs::write(
        etc.join("conf.d/modaliasd"),
        format!(
            "MODALIASD_OPTS=\"--kver {} --dry-run\"\nMODALIASD_LOG={}\n",
            tree.kver,
            log.display()
        ),
    )
    .unwrap();
    let script = etc.join("init.d/modaliasd");
    let sh = format!(
        "set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /sys
for d in started starting stopping inactive exclusive scheduled wasinactive failed \\
    hotplugged daemons options tmp; do
    mkdir -p /run/openrc/$d
done
echo default > /run/openrc/softlevel
{overlay}
mount --bind {modules} /usr/lib/modules/{kver}
export LD_LIBRARY_PATH={openrc}/usr/lib/x86_64-linux-gnu
set +e
run() {{ echo \"@@ $1\"; openrc-run {script} --nodeps \"$1\" 2>&1 | grep -v insserv.conf; }}
run start
pid=$(cat /run/modaliasd.pid)
echo \"exe $(readlink /proc/$pid/exe)\"
echo \"args $(tr '\\0' ' ' < /proc/$pid/cmdline)\"
run status
run reload
sleep 1
run stop
# Exited: gone, or a zombie until whatever adopted it reaps it (here not OpenRC's init).
if [ ! -e /proc/$pid ] || grep -q '^State:.*zombie' /proc/$pid/status; then
    echo 'after stop: exited'
else
    echo 'after stop: running'
fi
run status
",
        overlay = support::overlay_usr(&[&over, &openrc.join("usr")]),
        modules = tree.module_dir().display(),
        kver = tree.kver,
        openrc = openrc.display(),
        script = script.display(),
    );
    let out = support::run_in_private_mounts(
        "openrc-run",
        &format!("exec unshare -n sh -s <<'EOS'\n{sh}\nEOS\n"),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let daemon = std::fs::read_to_string(&log).unwrap_or_default();
    let context = format!("{said}\ndaemon's log:\n{daemon}");
    let step = |name: &str| -> String {
        said.split(&format!("@@ {name}\n"))
            .nth(1)
            .map(|rest| rest.split("@@ ").next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no {name}: {context}"))
    };
    assert!(
        step("start").contains("Starting modaliasd ... [ ok ]"),
        "{context}"
    );
    assert!(said.contains("exe /usr/sbin/modaliasd\n"), "{context}");
    assert!(
        said.contains(&format!(
            "args /usr/sbin/modaliasd run --coldplug --log-file {} --kver {} --dry-run",
            log.display(),
            tree.kver
        )),
        "{context}"
    );
    assert!(step("status").contains("status: started"), "{context}");
    assert!(step("reload").contains("[ ok ]"), "{context}");
    assert!(
        daemon.contains("reloaded configuration, rules and index"),
        "{context}"
    );
    assert!(
        step("stop").contains("Stopping modaliasd ... [ ok ]"),
        "{context}"
    );
    // retry= makes stop wait for the daemon, which exits once its loads are done.
    assert!(said.contains("after stop: exited"), "{context}");
    let last_status = said.rsplit("@@ status\n").next().unwrap_or("");
    assert!(last_status.contains("status: stopped"), "{context}");
}
