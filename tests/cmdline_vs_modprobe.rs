//! The kernel command line, against Debian's modprobe with /proc/cmdline replaced inside a
//! private mount namespace (`unshare -m`, needs root as CI has).
//!
//! One deliberate difference is checked as such: kmod keeps dashes in `modprobe.blacklist=`
//! entries (so `snd-pcsp` blocks nothing), we normalise them.

mod support;

use modaliasd::index::ModuleTree;
use modaliasd::modprobe::config::underscores;
use modaliasd::modprobe::plan::{BlacklistMode, Outcome, Planner, show_depends_lines};
use modaliasd::modprobe::{Config, ConfigSources};
use modaliasd::resolve::Resolver;
use std::process::Command;
use support::{TempDir, kernel_tree};

const CMDLINE: &str = "BOOT_IMAGE=/vmlinuz root=UUID=1234 ro quiet snd-hda-intel.model=test \
    e1000e.debug=3 e1000e.copybreak=0 x.p=\"a b c\" m.flag foo=bar.baz a.b.c g.h=i.j \
    --addr 0.0.0.0:2024 k.l-m n-o.p \
    modprobe.blacklist=pcspkr,snd-pcsp,floppy -- init.x=1 z.q=\"unterminated c.d=2\n";

const NAMES: &[&str] = &["snd-hda-intel", "e1000e", "platform:pcspkr", "pcspkr", "x"];

#[test]
fn kernel_command_line_matches_modprobe() {
    let kernel = kernel_tree("6.12");
    let tmp = TempDir::new("cmdline");
    let cmdline = tmp.path().join("cmdline");
    std::fs::write(&cmdline, CMDLINE).unwrap();
    let modprobe = format!(
        "modprobe -d '{}' -S '{}' -C /dev/null",
        kernel.root.display(),
        kernel.kver
    );
    let mut script = format!(
        "mount --bind '{}' /proc/cmdline && {modprobe} -c",
        cmdline.display()
    );
    for name in NAMES {
        script.push_str(&format!(
            "; echo '@@ {name}'; {modprobe} --show-depends '{name}'"
        ));
    }
    // The last modprobe may well fail; the script's status must be unshare's and mount's.
    script.push_str("; true");
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("run unshare (util-linux)");
    assert!(
        out.status.success(),
        "unshare -m needs root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!(" {}/lib/modules/", kernel.root.display());
    let mut sections = text.split("@@ ");
    let dump = sections.next().unwrap();

    let dir = kernel.module_dir();
    let config = Config::load(&ConfigSources {
        root: "/".into(),
        paths: vec!["/dev/null".into()],
        module_dir: Some(dir.clone()),
        cmdline: Some(cmdline.clone()),
    });
    // Options: identical, in order.
    let theirs: Vec<&str> = dump.lines().filter(|l| l.starts_with("options ")).collect();
    let ours: Vec<String> = config
        .options
        .iter()
        .map(|o| format!("options {} {}", o.module, o.options))
        .collect();
    assert_eq!(ours, theirs);
    // Blacklist: kmod's entries with their dashes normalised, and at least one had a dash.
    let theirs: Vec<&str> = dump
        .lines()
        .filter_map(|l| l.strip_prefix("blacklist "))
        .collect();
    assert!(theirs.iter().any(|b| b.contains('-')));
    let theirs: Vec<String> = theirs.iter().map(|b| underscores(b)).collect();
    let ours: Vec<String> = config.blacklist.iter().map(|b| b.module.clone()).collect();
    assert_eq!(ours, theirs);

    // Plans use those options and that blacklist.
    let tree = ModuleTree::load(&dir).unwrap();
    let resolver = Resolver::build(&tree);
    let planner = Planner::new(&tree, &resolver, &config);
    let target = format!("/lib/modules/{}", kernel.kver);
    for section in sections {
        let (name, output) = section.split_once('\n').unwrap();
        let mut seen = std::collections::HashSet::new();
        let want: Vec<String> = output
            .lines()
            .map(|l| l.replacen(&prefix, " /lib/modules/", 1))
            .filter(|l| seen.insert(l.clone()))
            .collect();
        let got: Vec<String> = match planner.plan(name, BlacklistMode::AliasOnly, "") {
            Outcome::NotFound => Vec::new(),
            Outcome::Steps(steps) => show_depends_lines(&steps, &target),
        };
        assert_eq!(got, want, "{name}");
    }
}
