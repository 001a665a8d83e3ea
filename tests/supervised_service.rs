//! The runit and s6 service directories under Debian's own supervisors (`runsv`, `sv`;
//! `s6-supervise`, `s6-svstat`, `s6-svc`, unpacked by tests/fixtures/unpack-debs.sh): each
//! starts the daemon from its `run` script, the daemon completes its coldplug (`settle`
//! returns), the supervisor reports it up, its SIGHUP (`sv hup`, `s6-svc -h`) makes the daemon
//! reload, and stopping it through the supervisor ends it with exit status 0.
//!
//! In a private mount and network namespace (`unshare -m -n`, needs root) with a fresh /run;
//! /usr/sbin/modaliasd there is this build behind a wrapper that gives `run` and `settle` a
//! root of their own (the 6.12 fixture's modules, no devices) and `run` `--dry-run`.

mod support;

use std::path::Path;
use support::TempDir;

/// Runs `script` with the supervisors and the wrapped binary laid over /usr; its output.
fn supervised(tmp: &Path, script: &str) -> String {
    let supervisors = support::unpacked_debs("supervisors", "usr/bin/runsv");
    let over = tmp.join("over/usr/sbin");
    std::fs::create_dir_all(&over).unwrap();
    let real = tmp.join("modaliasd");
    support::copy_file(Path::new(env!("CARGO_BIN_EXE_modaliasd")), &real);
    // The daemon's root: the fixture's module directory, and no sys/, so that its coldplug
    // finds no device (this machine's /sys is not for it to load drivers for).
    let tree = support::kernel_tree("6.12");
    let root = tmp.join("root");
    std::fs::create_dir_all(root.join("lib/modules")).unwrap();
    std::os::unix::fs::symlink(tree.module_dir(), root.join("lib/modules").join(&tree.kver))
        .unwrap();
    let wrapper = over.join("modaliasd");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh
case \"$1\" in
run) shift; exec {real} run --root {root} --kver {kver} --dry-run \"$@\" ;;
settle) shift; exec {real} settle --root {root} \"$@\" ;;
esac
exec {real} \"$@\"
",
            real = real.display(),
            root = root.display(),
            kver = tree.kver,
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sh = format!(
        "set -e
mount -t tmpfs tmpfs /run
{overlay}
export LD_LIBRARY_PATH={supervisors}/usr/lib/x86_64-linux-gnu
cd {tmp}
{script}",
        overlay = support::overlay_usr(&[&tmp.join("over/usr"), &supervisors.join("usr")]),
        supervisors = supervisors.display(),
        tmp = tmp.display(),
    );
    let out = support::run_in_private_mounts(
        "supervisors",
        &format!("exec unshare -n sh -s <<'EOS'\n{sh}\nEOS\n"),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the service directory `name` of packaging/ at `to`.
fn service_dir(name: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(name)
        .join("modaliasd");
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        support::copy_file(&e.path(), &to.join(e.file_name()));
    }
}

#[test]
fn runit_runs_and_stops_the_daemon() {
    let tmp = TempDir::new("runit");
    service_dir("runit", &tmp.path().join("sv"));
    let said = supervised(
        tmp.path(),
        "runsv sv >runsv.log 2>&1 &
i=0; until sv status ./sv 2>/dev/null | grep -q '^run:'; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
modaliasd settle --timeout 30 && echo settled
echo \"before: $(sv status ./sv)\"
sv hup ./sv >/dev/null || true
i=0; until grep -q 'reloaded configuration' runsv.log; do i=$((i+1)); [ $i -lt 50 ] || break; sleep 0.1; done
grep -q 'reloaded configuration' runsv.log && echo reloaded
sv down ./sv >/dev/null || true
i=0; until sv status ./sv | grep -q '^down:'; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
echo \"after: $(sv status ./sv)\"
sv exit ./sv >/dev/null || true
wait",
    );
    assert!(said.contains("settled"), "{said}");
    assert!(said.contains("before: run: ./sv: (pid "), "{said}");
    assert!(
        said.contains("reloaded"),
        "sv hup did not reach the daemon: {said}"
    );
    assert!(said.contains("after: down: ./sv: "), "{said}");
}

#[test]
fn s6_runs_and_stops_the_daemon() {
    let tmp = TempDir::new("s6");
    service_dir("s6", &tmp.path().join("svc"));
    let said = supervised(
        tmp.path(),
        "s6-supervise svc >s6.log 2>&1 &
i=0; until s6-svstat svc 2>/dev/null | grep -q '^up'; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
modaliasd settle --timeout 30 && echo settled
echo \"before: $(s6-svstat svc)\"
s6-svc -h svc || true
i=0; until grep -q 'reloaded configuration' s6.log; do i=$((i+1)); [ $i -lt 50 ] || break; sleep 0.1; done
grep -q 'reloaded configuration' s6.log && echo reloaded
s6-svc -wd -d svc || true
echo \"after: $(s6-svstat svc)\"
s6-svc -x svc || true
wait",
    );
    assert!(said.contains("settled"), "{said}");
    assert!(said.contains("before: up (pid "), "{said}");
    assert!(
        said.contains("reloaded"),
        "s6-svc -h did not reach the daemon: {said}"
    );
    assert!(said.contains("after: down (exitcode 0)"), "{said}");
}
