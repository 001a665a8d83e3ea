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
    let out = support::run_in_private_mounts("modprobe", &script);
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

/// One random kernel command line token: module parameters in every shape the parser must
/// decide on (quotes, dots, dashes, empty parts, `modprobe.blacklist=` lists), and plain words.
fn random_token(rng: &mut support::Rng) -> String {
    let pick = |rng: &mut support::Rng, from: &[&str]| from[rng.below(from.len())].to_string();
    let module = pick(
        rng,
        &[
            "e1000e",
            "snd-hda-intel",
            "snd_hda_intel",
            "a",
            "x-y",
            "m",
            "",
            "b[c-d]e-f",
            "g[h",
            "i]j",
        ],
    );
    let param = pick(rng, &["p", "debug", "p-q", "p_q", "", "a.b"]);
    let value = pick(
        rng,
        &[
            "1",
            "",
            "x.y",
            "0.0.0.0:80",
            "\"a b\"",
            "\"q\"",
            "a=b",
            "\"",
            "-1,2",
        ],
    );
    match rng.below(12) {
        0..=4 => format!("{module}.{param}={value}"),
        5 => format!("{module}.{param}"),
        6 => format!("\"{module}.{param}={value}\""),
        7 => {
            let list: Vec<String> = (0..rng.below(4))
                .map(|_| pick(rng, &["pcspkr", "floppy", "snd_pcsp", "", "e1000e"]))
                .collect();
            format!("modprobe.blacklist={}", list.join(","))
        }
        8 => pick(
            rng,
            &["--", "quiet", "ro", "root=UUID=1.2", "=x.y", "a=b.c", "."],
        ),
        9 => format!("{module}={value}"),
        10 => format!("{module}.{param}={value}\"x"),
        _ => format!(".{param}={value}"),
    }
}

/// Random command lines through kmod and through us: the same options in the same order and
/// the same blacklist (dashes normalised on kmod's side, the one deliberate difference).
#[test]
fn random_command_lines_match_modprobe() {
    let tmp = TempDir::new("cmdline-random");
    let mut rng = support::Rng(0x0C3D_11E5);
    let count: usize = std::env::var("MODALIASD_CMDLINE_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    // One namespace for all of them: each line in its own file, bound over /proc/cmdline in turn.
    let mut script = String::from("set -e\n");
    let mut lines = Vec::new();
    for i in 0..count {
        let mut line: Vec<String> = (0..1 + rng.below(8))
            .map(|_| random_token(&mut rng))
            .collect();
        if rng.chance(4) {
            line.insert(0, "BOOT_IMAGE=/vmlinuz".into());
        }
        let sep = ["  ", "\t", " \n "][rng.below(3)];
        let sep = if rng.chance(3) { sep } else { " " };
        let mut text = line.join(sep);
        // Now and then past libkmod's 4,095 bytes, or with a second line.
        if rng.chance(30) {
            text = format!("{} {text}", "x".repeat(4090 - rng.below(20)));
        }
        if rng.chance(30) {
            text.push_str("\nsecond.line=1");
        }
        text.push('\n');
        let file = tmp.path().join(format!("cmdline-{i}"));
        std::fs::write(&file, &text).unwrap();
        script.push_str(&format!(
            "mount --bind '{f}' /proc/cmdline; echo '@@ {i}'; modprobe -c -C /dev/null; umount /proc/cmdline\n",
            f = file.display()
        ));
        lines.push((file, text));
    }
    let out = support::run_in_private_mounts("modprobe", &script);
    let text = String::from_utf8_lossy(&out.stdout);
    let dumps: Vec<&str> = text.split("@@ ").skip(1).collect();
    assert_eq!(dumps.len(), count);
    let mut with_options = 0;
    for (dump, (file, line)) in dumps.iter().zip(&lines) {
        let config = Config::load(&ConfigSources {
            root: "/".into(),
            paths: vec!["/dev/null".into()],
            module_dir: None,
            cmdline: Some(file.clone()),
        });
        // A quoted value may hold a newline, which `modprobe -c` prints as it is: ours are
        // printed the same way and both read back line by line.
        let printed = |text: &str, prefix: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix(prefix))
                .map(str::to_owned)
                .collect()
        };
        let ours: String = config
            .options
            .iter()
            .map(|o| format!("options {} {}\n", o.module, o.options))
            .collect();
        let ours = printed(&ours, "options ");
        assert_eq!(ours, printed(dump, "options "), "options from {line:?}");
        with_options += usize::from(!ours.is_empty());
        let ours: String = config
            .blacklist
            .iter()
            .map(|b| format!("blacklist {}\n", b.module))
            .collect();
        let theirs: Vec<String> = printed(dump, "blacklist ")
            .iter()
            .map(|b| underscores(b))
            .collect();
        assert_eq!(
            printed(&ours, "blacklist "),
            theirs,
            "blacklist from {line:?}"
        );
    }
    assert!(
        with_options > count / 3,
        "only {with_options} lines gave options"
    );
}
