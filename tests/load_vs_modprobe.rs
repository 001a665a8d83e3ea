//! Load plans against Debian's `modprobe --show-depends` on the 6.12 tree, with a modprobe.d
//! configuration that uses every command: options for modules and for aliases, wildcard aliases,
//! softdep chains and loops, softdeps through aliases, install commands with wildcards and one
//! hidden by softdeps, blacklist in both modes, extra options.
//!
//! For every name: the distinct output lines in order (modprobe prints a module again when a
//! softdep repeats it; paths lose the --root prefix) and whether the name was found (exit 1).

#[path = "support/corpus.rs"]
mod corpus;
mod support;

use modaliasd::index::ModuleTree;
use modaliasd::modprobe::plan::{BlacklistMode, Outcome, Planner};
use modaliasd::modprobe::{Config, ConfigSources};
use modaliasd::resolve::Resolver;
use std::process::Command;
use support::{Rng, TempDir, kernel_tree};

const CONFIG: &str = "\
options e1000e InterruptThrottleRate=3000,3000 debug=2
options  snd-hda-intel\t model=auto
options snd_hda_intel enable_msi=1
alias my-nic e1000e
options my-nic copybreak=1
alias net-pair e1000e
alias net-pair igb
alias pci:v00008086d*sv*sd*bc02* e1000e
softdep snd-hda-intel pre: snd-hda-codec-realtek post: snd_hda_codec_hdmi
softdep snd-hda-intel pre: ignored-second-line
softdep loop-a pre: dummy
softdep dummy pre: bonding post: dummy
softdep bonding pre: my-nic
softdep ext4 pre: crypto-crc32c
install fuse /bin/true $CMDLINE_OPTS
install snd-pcm* /sbin/modprobe --ignore-install snd_pcm $CMDLINE_OPTS
install snd-hda-intel /bin/false
install igb /bin/echo igb
remove igb /bin/true
blacklist pcspkr
blacklist floppy
blacklist i-915
";

fn modprobe(
    kernel: &support::KernelTree,
    cfg: &std::path::Path,
    name: &str,
    b: bool,
    opts: &str,
) -> (Vec<String>, bool) {
    let mut cmd = Command::new("modprobe");
    cmd.arg("-d")
        .arg(&kernel.root)
        .args(["-S", &kernel.kver, "-C"])
        .arg(cfg);
    if b {
        cmd.arg("-b");
    }
    cmd.args(["--show-depends", name]);
    if !opts.is_empty() {
        cmd.args(opts.split(' '));
    }
    let out = cmd.output().expect("run modprobe (Debian package kmod)");
    let prefix = kernel.root.to_string_lossy().into_owned();
    let mut seen = std::collections::HashSet::new();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.replacen(&format!(" {prefix}/lib/modules/"), " /lib/modules/", 1))
        .filter(|l| seen.insert(l.clone()))
        .collect();
    (lines, out.status.code() == Some(0))
}

#[test]
fn plans_match_modprobe_show_depends() {
    let kernel = kernel_tree("6.12");
    let dir = kernel.module_dir();
    let tmp = TempDir::new("load");
    let cfg = tmp.path().join("test.conf");
    std::fs::write(&cfg, CONFIG).unwrap();
    let tree = ModuleTree::load(&dir).unwrap();
    let resolver = Resolver::build(&tree);
    let config = Config::load(&ConfigSources {
        root: "/".into(),
        paths: vec![cfg.clone()],
        module_dir: Some(dir.clone()),
        cmdline: Some("/proc/cmdline".into()),
    });
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let planner = Planner::new(&tree, &resolver, &config);
    let target = format!("/lib/modules/{}", kernel.kver);

    let mut names: Vec<String> = [
        "e1000e",
        "snd-hda-intel",
        "snd_hda_intel",
        "my-nic",
        "net-pair",
        "fuse",
        "igb",
        "loop-a",
        "dummy",
        "bonding",
        "ext4",
        "pcspkr",
        "platform:pcspkr",
        "floppy",
        "i915",
        "nosuch",
        "symbol:drm_need_swiotlb",
        "fs-fuse",
        "crypto-crc32c",
        "snd-pcm",
        "snd-pcm-oss",
        "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
        "hid:b0003g0001v0000046Dp0000C52B",
    ]
    .map(str::to_owned)
    .to_vec();
    names.extend(
        tree.modules
            .iter()
            .step_by(40)
            .map(|m| m.name.replace('_', "-")),
    );
    let mut rng = Rng(0x10AD);
    names.extend(
        tree.aliases.iter().step_by(150).map(|a| {
            String::from_utf8_lossy(&corpus::concretize(&a.pattern, &mut rng)).into_owned()
        }),
    );
    names.extend(tree.builtin.iter().step_by(10).cloned());

    let mut compared = 0;
    for (i, name) in names.iter().enumerate() {
        // Alternate the blacklist mode and sometimes add options, so both paths are covered.
        let b = i % 3 == 1;
        let opts = if i % 5 == 2 { "extra=1 more=2" } else { "" };
        let (want, found) = modprobe(&kernel, &cfg, name, b, opts);
        let mode = if b {
            BlacklistMode::Always
        } else {
            BlacklistMode::AliasOnly
        };
        let (got, got_found) = match planner.plan(name, mode, opts) {
            Outcome::NotFound => (Vec::new(), false),
            Outcome::Steps(steps) => {
                let mut seen = std::collections::HashSet::new();
                let lines: Vec<String> = steps
                    .iter()
                    .filter_map(|s| s.show_depends_line(&target))
                    .filter(|l| seen.insert(l.clone()))
                    .collect();
                (lines, true)
            }
        };
        assert_eq!(got_found, found, "{name} (-b {b}): found");
        assert_eq!(got, want, "{name} (-b {b}, options {opts:?})");
        compared += 1;
    }
    assert!(compared > 150, "only {compared} names compared");
}
