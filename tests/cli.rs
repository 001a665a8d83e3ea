//! The `modaliasd` binary on a small module tree whose every answer can be read off its files
//! (`tests/fixtures/roots/small`): output format, streaming, errors, exit codes, the saved index.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::TempDir;

const KVER: &str = "1.0-test";

/// A private copy of the fixture root, so that writing the saved index touches nothing shared.
fn small_root() -> TempDir {
    let tmp = TempDir::new("cli");
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roots/small/lib/modules");
    let to = tmp.path().join("lib/modules").join(KVER);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(from.join(KVER)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    tmp
}

fn modaliasd(root: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .args(["resolve", "--root"])
        .arg(root)
        .args(["--kver", KVER])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn each_source_of_the_lookup_answers() {
    let root = small_root();
    let o = modaliasd(
        root.path(),
        &[
            "hid:b0003g0001v0000046Dp0000C52B",
            "e1000e",
            "usb-storage",
            "symbol:hid_input_report",
            "fs-fuse",
            "fuse",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
            "nothing:here",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // hid_generic comes first although its alias line is later: libkmod orders by modules.dep.
    assert_eq!(
        stdout(&o),
        "hid:b0003g0001v0000046Dp0000C52B\thid_generic hid_logitech_dj\n\
         e1000e\te1000e\n\
         usb-storage\tusb_storage\n\
         symbol:hid_input_report\thid\n\
         fs-fuse\tfuse\n\
         fuse\tfuse\n\
         pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00\te1000e\n\
         nothing:here\t\n"
    );
}

#[test]
fn bad_lines_in_the_module_directory_are_warnings_with_file_and_line() {
    let root = small_root();
    let o = modaliasd(root.path(), &["--no-index", "e1000e"], None);
    assert_eq!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("modules.alias:7: expected 'alias PATTERN MODULE'"),
        "{err}"
    );
    assert!(
        err.contains("modules.alias:8: unmatched bracket in pattern"),
        "{err}"
    );
}

#[test]
fn stdin_streams_and_one_bad_line_does_not_stop_the_rest() {
    let root = small_root();
    let input = b"e1000e\nusb:v[\nfuse\nwith\0nul\nfs-fuse";
    let o = modaliasd(root.path(), &[], Some(input));
    assert_eq!(
        o.status.code(),
        Some(1),
        "invalid lines must make the exit status 1"
    );
    let out = o.stdout.clone();
    assert_eq!(
        out,
        b"e1000e\te1000e\nusb:v[\t\nfuse\tfuse\nwith\0nul\t\nfs-fuse\tfuse\n".to_vec()
    );
    let err = stderr(&o);
    assert!(err.contains("stdin:2: usb:v[: unmatched bracket"), "{err}");
    assert!(err.contains("stdin:4:") && err.contains("NUL"), "{err}");
}

#[test]
fn json_names_the_pattern_and_line_of_each_match() {
    let root = small_root();
    let o = modaliasd(
        root.path(),
        &[
            "--json",
            "hid:b0003g0001v0000046Dp0000C52B",
            "fs-fuse",
            "a]",
        ],
        None,
    );
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"input":"hid:b0003g0001v0000046Dp0000C52B","normalized":"hid:b0003g0001v0000046Dp0000C52B","source":"alias","builtin":false,"modules":["hid_generic","hid_logitech_dj"],"matches":[{"module":"hid_generic","pattern":"hid:b*g*v*p*","file":"modules.alias","line":4},{"module":"hid_logitech_dj","pattern":"hid:b0003g*v0000046Dp0000C52B","file":"modules.alias","line":3}]}"#
    );
    assert_eq!(
        lines[1],
        r#"{"input":"fs-fuse","normalized":"fs_fuse","source":"builtin-alias","builtin":true,"modules":["fuse"],"matches":[{"module":"fuse","pattern":"fs_fuse","file":"modules.builtin.modinfo","line":1}]}"#
    );
    assert_eq!(lines[2], r#"{"input":"a]","error":"unmatched bracket"}"#);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn the_saved_index_is_used_and_rebuilt_when_modules_alias_changes() {
    let root = small_root();
    let dir = root.path().join("lib/modules").join(KVER);
    let index = dir.join("modaliasd.index");
    assert!(!index.exists());
    let o = modaliasd(
        root.path(),
        &["usb:v1234p5678d0100dc00dsc00dp00ic08isc06ip50in00"],
        None,
    );
    assert_eq!(
        stdout(&o),
        "usb:v1234p5678d0100dc00dsc00dp00ic08isc06ip50in00\tusb_storage\n"
    );
    assert!(index.exists(), "resolve writes the index where it can");
    let first = std::fs::read(&index).unwrap();

    // depmod rewrites modules.alias: the index is stale and must not answer.
    let mut alias = std::fs::read_to_string(dir.join("modules.alias")).unwrap();
    alias.push_str("alias acme:* e1000e\n");
    std::fs::write(dir.join("modules.alias"), alias).unwrap();
    let o = modaliasd(root.path(), &["acme:x"], None);
    assert_eq!(stdout(&o), "acme:x\te1000e\n");
    assert_ne!(
        std::fs::read(&index).unwrap(),
        first,
        "the index was rebuilt"
    );

    // An archive that keeps whole seconds (cpio, as in every initramfs) or a reproducible
    // build that gives every file one time changes the times, not the contents: the index
    // stays in use. The same size with other contents is stale.
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&index).unwrap().ino();
    let whole_second = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for name in [
        "modules.dep",
        "modules.alias",
        "modules.symbols",
        "modules.builtin",
    ] {
        if let Ok(f) = std::fs::File::options().write(true).open(dir.join(name)) {
            f.set_modified(whole_second).unwrap();
        }
    }
    let o = modaliasd(root.path(), &["-v", "acme:x"], None);
    assert_eq!(stdout(&o), "acme:x\te1000e\n");
    assert!(
        stderr(&o).contains("resolver: saved index"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::metadata(&index).unwrap().ino(),
        inode,
        "recompiled"
    );
    let alias = std::fs::read_to_string(dir.join("modules.alias")).unwrap();
    std::fs::write(dir.join("modules.alias"), alias.replace("acme:*", "acme:?")).unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(dir.join("modules.alias"))
        .unwrap();
    f.set_modified(whole_second).unwrap();
    let o = modaliasd(root.path(), &["-v", "acme:x", "acme:xy"], None);
    assert_eq!(stdout(&o), "acme:x\te1000e\nacme:xy\t\n");
    assert!(stderr(&o).contains("resolver: compiled"), "{}", stderr(&o));

    // A damaged index is ignored, never trusted.
    std::fs::write(&index, b"modaliasd-index\0garbage").unwrap();
    let o = modaliasd(root.path(), &["acme:x"], None);
    assert_eq!(stdout(&o), "acme:x\te1000e\n");
}

#[test]
fn fatal_errors_and_usage_errors_exit_2() {
    let root = small_root();
    let o = Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .args(["resolve", "--root"])
        .arg(root.path())
        .args(["--kver", "9.9-missing", "x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("9.9-missing/modules.dep: missing"),
        "{}",
        stderr(&o)
    );
    for args in [&["frobnicate"][..], &["resolve", "--bogus"], &[]] {
        let o = Command::new(env!("CARGO_BIN_EXE_modaliasd"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .args(["resolve", "--help"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Usage: modaliasd resolve"));
}

#[test]
fn load_show_depends_prints_target_paths_once_and_exits_like_modprobe() {
    let root = small_root();
    let conf = root.path().join("test.conf");
    std::fs::write(
        &conf,
        "options hid-generic a=1\nblacklist hid_logitech_dj\n",
    )
    .unwrap();
    let load = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_modaliasd"))
            .args(["load", "--root"])
            .arg(root.path())
            .args(["--kver", KVER, "--cmdline", "none", "-C"])
            .arg(&conf)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = load(&["--show-depends", "hid:b0003g0001v0000046Dp0000C52B", "fuse"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // hid comes once although both matches depend on it; the blacklisted match is skipped
    // because it was reached through an alias.
    assert_eq!(
        stdout(&o),
        "insmod /lib/modules/1.0-test/kernel/drivers/hid/hid.ko.xz \n\
         insmod /lib/modules/1.0-test/kernel/drivers/hid/hid-generic.ko.xz a=1 \n\
         builtin fuse\n"
    );
    let o = load(&["--show-depends", "hid-logitech-dj"]);
    assert!(
        stdout(&o).contains("hid-logitech-dj.ko.xz"),
        "named directly: no blacklist"
    );
    let o = load(&["--show-depends", "-b", "hid-logitech-dj"]);
    assert_eq!(stdout(&o), "", "-b applies the blacklist to names too");
    let o = load(&["--show-depends", "no-such-module"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Module no-such-module not found"));
    // Loading for real: the fixture root has index files but no module files, so this fails
    // before any system call, naming the file.
    let o = load(&["e1000e"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("could not insert 'e1000e'") && stderr(&o).contains("e1000e.ko.xz"),
        "{}",
        stderr(&o)
    );
}

/// Linked as `modprobe`, the binary is `load`, with the arguments the kernel's module request
/// helper passes (`-q -- NAME`) and modprobe's spellings of load's options.
#[test]
fn linked_as_modprobe_it_loads_as_the_kernel_asks() {
    let root = small_root();
    let link = root.path().join("modprobe");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_modaliasd"), &link).unwrap();
    let run = |program: &Path, args: &[&str]| Command::new(program).args(args).output().unwrap();
    let root_arg = root.path().to_str().unwrap();
    let names = ["hid:b0003g0001v0000046Dp0000C52B", "fuse"];
    let as_load = run(
        Path::new(env!("CARGO_BIN_EXE_modaliasd")),
        &[
            &[
                "load",
                "--root",
                root_arg,
                "--kver",
                KVER,
                "--cmdline",
                "none",
            ][..],
            &["--show-depends"],
            &names,
        ]
        .concat(),
    );
    assert_eq!(as_load.status.code(), Some(0), "{}", stderr(&as_load));
    assert!(stdout(&as_load).contains("hid-generic.ko.xz"));
    // modprobe's -d, -S, -D and -a; the names after --.
    let common = ["-d", root_arg, "-S", KVER, "--cmdline", "none"];
    let as_modprobe = run(&link, &[&common[..], &["-a", "-D", "--"], &names].concat());
    assert_eq!(
        as_modprobe.status.code(),
        Some(0),
        "{}",
        stderr(&as_modprobe)
    );
    assert_eq!(stdout(&as_modprobe), stdout(&as_load));
    // kmod's -q prints nothing, not even errors; the exit status still says what happened.
    let missing = run(
        &link,
        &[&common[..], &["-q", "--", "no-such-module"]].concat(),
    );
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing), "");
    let loud = run(&link, &[&common[..], &["--", "no-such-module"]].concat());
    assert_eq!(loud.status.code(), Some(1));
    assert!(stderr(&loud).contains("Module no-such-module not found"));
    // The kernel's own call, for real: the fixture has no module files, so the insertion
    // fails, silently, with status 1.
    let kernel = run(&link, &[&common[..], &["-q", "--", "e1000e"]].concat());
    assert_eq!(kernel.status.code(), Some(1));
    assert_eq!(stderr(&kernel), "");
    let version = run(&link, &["-V"]);
    assert!(stdout(&version).starts_with("modaliasd "));
    // Removal is not what modaliasd does: a usage error, not a silent success.
    let remove = run(&link, &[&common[..], &["-r", "e1000e"]].concat());
    assert_eq!(remove.status.code(), Some(2));
}

/// `-q` keeps errors and drops warnings; `-v` is accepted after the command too.
#[test]
fn quiet_keeps_errors_and_drops_warnings() {
    let root = small_root();
    let loud = modaliasd(root.path(), &["--no-index"], Some(b"usb:v[\n"));
    assert!(
        stderr(&loud).contains("modules.alias:7:"),
        "{}",
        stderr(&loud)
    );
    let quiet = modaliasd(root.path(), &["--no-index", "-q"], Some(b"usb:v[\n"));
    let err = stderr(&quiet);
    assert!(!err.contains("modules.alias:7:"), "{err}");
    assert!(err.contains("stdin:1: usb:v[: unmatched bracket"), "{err}");
    assert_eq!(quiet.status.code(), Some(1));
    assert_eq!(stdout(&quiet), stdout(&loud));
}

/// `--log-format json`: every stderr line is one JSON object with a level and the message.
#[test]
fn json_log_lines_are_objects_with_level_and_message() {
    let root = small_root();
    let o = modaliasd(
        root.path(),
        &["--no-index", "--log-format", "json"],
        Some(b"usb:v[\n"),
    );
    let err = stderr(&o);
    let objects: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let warning = objects
        .iter()
        .find(|o| o["message"].as_str().unwrap().contains("modules.alias:7:"))
        .expect("the module directory's warning");
    assert_eq!(warning["level"], "WARN");
    let error = objects
        .iter()
        .find(|o| o["message"].as_str().unwrap().contains("stdin:1:"))
        .expect("the bad input line");
    assert_eq!(error["level"], "ERROR");
    assert!(
        modaliasd(root.path(), &["--log-format=xml"], None)
            .status
            .code()
            == Some(2)
    );
}

/// Under systemd, stderr is the journal's stream and `$JOURNAL_STREAM` names it: each line then
/// starts with its syslog priority. A file stands in for the socket; only the identity matters.
#[test]
fn journal_priority_prefixes_only_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let root = small_root();
    let log = root.path().join("stderr.log");
    let run = |journal_stream: &str| -> String {
        let file = std::fs::File::create(&log).unwrap();
        let status = Command::new(env!("CARGO_BIN_EXE_modaliasd"))
            .args(["resolve", "--no-index", "--root"])
            .arg(root.path())
            .args(["--kver", KVER, "usb:v["])
            .env("JOURNAL_STREAM", journal_stream)
            .stdout(Stdio::null())
            .stderr(file)
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(1));
        std::fs::read_to_string(&log).unwrap()
    };
    // Created (and truncated again) by `run`: the inode stays the same.
    std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let journal = run(&format!("{}:{}", meta.dev(), meta.ino()));
    assert!(
        journal
            .lines()
            .any(|l| l.starts_with("<4>modaliasd: warning: ")),
        "{journal}"
    );
    assert!(
        journal
            .lines()
            .any(|l| l.starts_with("<3>modaliasd: argument:1: usb:v[")),
        "{journal}"
    );
    let elsewhere = run(&format!("{}:{}", meta.dev(), meta.ino() + 1));
    assert!(
        elsewhere.lines().all(|l| l.starts_with("modaliasd: ")),
        "{elsewhere}"
    );
}

/// Every command answers `--help` on stdout with exit 0, options indented under "Options:".
#[test]
fn every_command_has_help() {
    for command in [
        "resolve",
        "compile",
        "config",
        "doctor",
        "explain",
        "load",
        "modinfo",
        "run",
        "coldplug",
        "record",
        "replay",
        "settle",
        "stop",
        "udev-handoff",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_modaliasd"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{command}");
        let text = stdout(&o);
        assert!(text.starts_with("Usage: modaliasd "), "{command}: {text}");
        assert!(
            text.lines().all(|l| !l.starts_with('-')),
            "{command}: an option line lost its indent:\n{text}"
        );
    }
}

/// The man page documents every command `modaliasd --help` lists.
#[test]
fn the_man_page_lists_every_command() {
    let o = Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&o);
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(commands.len() >= 9, "{commands:?}");
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/modaliasd.8"),
    )
    .unwrap();
    for command in commands {
        assert!(
            page.contains(&format!("\n.B {command}\n")),
            "packaging/modaliasd.8 does not document '{command}'"
        );
    }
}

/// `udev-handoff` on the rules of Debian's own udev package: `on` hides both files that load
/// modules (80-drivers.rules, 80-debian-compat.rules) behind copies in run/udev/rules.d that
/// keep every other rule, `status` then says udev loads nothing, and `off` leaves the
/// directory as it was.
#[test]
fn udev_handoff_takes_and_gives_back_debians_module_loading() {
    let udev = support::unpacked_debs("udev", "lib/udev/rules.d/80-drivers.rules");
    let root = support::TempDir::new("handoff");
    let rules = root.path().join("lib/udev/rules.d");
    std::fs::create_dir_all(&rules).unwrap();
    for e in std::fs::read_dir(udev.join("lib/udev/rules.d")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), rules.join(e.file_name())).unwrap();
    }
    std::fs::create_dir_all(root.path().join("run/udev/rules.d")).unwrap();
    let handoff = |action: &str| {
        Command::new(env!("CARGO_BIN_EXE_modaliasd"))
            .args(["udev-handoff", action, "--root"])
            .arg(root.path())
            .output()
            .unwrap()
    };
    let status = handoff("status");
    assert_eq!(status.status.code(), Some(1), "{}", stdout(&status));
    assert!(handoff("on").status.success());
    let written = root.path().join("run/udev/rules.d");
    let mut names: Vec<String> = std::fs::read_dir(&written)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["80-debian-compat.rules", "80-drivers.rules"]);
    for name in &names {
        let original = std::fs::read_to_string(rules.join(name)).unwrap();
        let copy = std::fs::read_to_string(written.join(name)).unwrap();
        for line in original.lines() {
            if line.contains("kmod load") {
                assert!(
                    copy.contains(&format!("# (loads a module) {line}")),
                    "{name}: {line}"
                );
            } else {
                assert!(copy.lines().any(|l| l == line), "{name} lost: {line}");
            }
        }
    }
    let status = handoff("status");
    assert_eq!(status.status.code(), Some(0));
    assert!(stdout(&status).contains("80-drivers.rules: 7 module loads handed off"));
    assert!(handoff("off").status.success());
    assert_eq!(std::fs::read_dir(&written).unwrap().count(), 0);
}
