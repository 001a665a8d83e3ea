//! `modaliasd doctor` on a configuration full of lines that do nothing, each finding checked
//! against what Debian's modprobe really does with that line.

mod support;

use std::process::Command;
use support::{TempDir, kernel_tree};

const CONF: &str = "\
options e1000e debug=1
options no_such_module x=1
blacklist pcspkr
softdep hid pre: usbhid
softdep hid post: e1000e
install hid /bin/true
options fs-fuse a=1
install fake* /bin/false
blacklist snd_pcsp
softdep e1000e crc32_generic
";

#[test]
fn findings_name_the_line_and_match_what_modprobe_does() {
    let kernel = kernel_tree("6.12");
    let tmp = TempDir::new("doctor");
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let file = conf.join("a.conf");
    std::fs::write(&file, CONF).unwrap();
    let cmdline = tmp.path().join("cmdline");
    std::fs::write(&cmdline, "ro quiet modprobe.blacklist=floppy,snd-pcsp\n").unwrap();
    let doctor = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_modaliasd"))
            .args(["doctor", "--no-index", "--root"])
            .arg(&kernel.root)
            .args(["--kver", &kernel.kver, "-C"])
            .arg(&conf)
            .arg("--cmdline")
            .arg(&cmdline)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = doctor(&[]);
    assert_eq!(out.status.code(), Some(1), "warnings give exit status 1");
    let text = String::from_utf8(out.stdout).unwrap();
    let at = |line: u32| format!("{}:{line}: ", file.display());
    let lines: Vec<&str> = text.lines().collect();
    let expect = [
        (at(2), "warning: options for 'no_such_module'"),
        (at(5), "warning: second softdep line for 'hid'"),
        (at(6), "warning: install command for 'hid' is ignored"),
        (
            at(10),
            "warning: softdep for 'e1000e' names no 'pre:' or 'post:'",
        ),
        (
            "kernel command line: ".to_owned(),
            "note: modprobe.blacklist=snd-pcsp",
        ),
    ];
    for (origin, what) in &expect {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(origin.as_str()) && l[origin.len()..].starts_with(what)),
            "missing {origin}{what}:\n{text}"
        );
    }
    assert_eq!(lines.len(), expect.len(), "unexpected findings:\n{text}");

    // What modprobe does with those lines: the second softdep and the install command are
    // ignored, and the unknown name resolves to nothing.
    let modprobe = |args: &[&str]| {
        Command::new("modprobe")
            .arg("-d")
            .arg(&kernel.root)
            .args(["-S", &kernel.kver, "-C"])
            .arg(&conf)
            .args(args)
            .output()
            .unwrap()
    };
    let plan = String::from_utf8(modprobe(&["--show-depends", "hid"]).stdout).unwrap();
    assert!(plan.contains("/usbhid.ko"), "{plan}");
    assert!(
        !plan.contains("/e1000e.ko"),
        "second softdep was used:\n{plan}"
    );
    assert!(!plan.contains("/bin/true"), "install was used:\n{plan}");
    assert!(!modprobe(&["-R", "no_such_module"]).status.success());

    // A file others can write is a finding of its own.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let text = String::from_utf8(doctor(&[]).stdout).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "{}: warning: writable by everyone",
            file.display()
        ))),
        "{text}"
    );
}
