//! Load plans against Debian's `modprobe --show-depends` on the 6.12 tree, with a modprobe.d
//! configuration that uses every command: options for modules and for aliases (a wildcard alias's
//! options are those of its pattern, not of the name it matched), wildcard aliases,
//! softdep chains and loops, softdeps through aliases, install commands with wildcards and one
//! hidden by softdeps, blacklist in both modes, extra options.
//!
//! The configuration is split over two directories, with one basename in both (the higher
//! directory's wins) and continuation lines. Each name goes through `modaliasd load --dry-run
//! --show-depends` and `modprobe --show-depends` (with `-d`, `-S`, `-C`, `-C`): the distinct output
//! lines in order (modprobe prints a module again when a softdep repeats it; paths lose the
//! --root prefix) and the exit codes must agree. Both Debian trees.

#[path = "support/corpus.rs"]
mod corpus;
mod support;

use modaliasd::index::ModuleTree;
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
alias wild-nic-* e1000e
options wild-nic-* from_pattern=1
options wild-nic-one from_key=1
softdep snd-hda-intel pre: snd-hda-codec-realtek post: snd_hda_codec_hdmi
softdep snd-hda-intel pre: ignored-second-line
softdep loop-a pre: dummy
softdep dummy pre: bonding post: dummy
softdep bonding pre: my-nic
softdep ext4 pre: crypto-crc32c
options snd-hda-intel \
    power_save=1 \
    probe_mask=1
install fuse /bin/true $CMDLINE_OPTS
install snd-pcm* /sbin/modprobe --ignore-install snd_pcm $CMDLINE_OPTS
install snd-hda-intel /bin/false
install igb /bin/echo igb
remove igb /bin/true
blacklist pcspkr
blacklist floppy
blacklist i-915
";

/// Lower-precedence directory: one file shadowed by the higher directory, one read.
const LOW_SHADOWED: &str = "options e1000e shadowed=1\nblacklist e1000e\n";
const LOW_READ: &str = "alias low-alias igb\noptions igb from_low=1\n";

/// `min_found`: how many of the names must at least give a plan, so that a broken fixture
/// cannot pass by offering nothing to compare.
fn compare_tree(series: &str, min_found: usize) {
    let kernel = kernel_tree(series);
    let tree = ModuleTree::load(&kernel.module_dir()).unwrap();
    let tmp = TempDir::new("load");
    let high = tmp.path().join("high");
    let low = tmp.path().join("low");
    std::fs::create_dir_all(&high).unwrap();
    std::fs::create_dir_all(&low).unwrap();
    std::fs::write(high.join("50-test.conf"), CONFIG).unwrap();
    std::fs::write(high.join("60-same.conf"), "options e1000e from_high=1\n").unwrap();
    std::fs::write(low.join("60-same.conf"), LOW_SHADOWED).unwrap();
    std::fs::write(low.join("70-low.conf"), LOW_READ).unwrap();

    let mut names: Vec<String> = [
        "e1000e",
        "snd-hda-intel",
        "snd_hda_intel",
        "my-nic",
        "net-pair",
        "wild-nic-one",
        "low-alias",
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
        "a[b",
    ]
    .map(str::to_owned)
    .to_vec();
    names.extend(
        tree.modules
            .iter()
            .step_by(60)
            .map(|m| m.name.replace('_', "-")),
    );
    let mut rng = Rng(0x10AD);
    names.extend(
        tree.aliases.iter().step_by(200).map(|a| {
            String::from_utf8_lossy(&corpus::concretize(&a.pattern, &mut rng)).into_owned()
        }),
    );
    names.extend(tree.builtin.iter().step_by(15).cloned());

    let mut found = 0;
    for (i, name) in names.iter().enumerate() {
        // Alternate the blacklist mode and sometimes add options, so every path is covered.
        let b = i % 3 == 1;
        let opts = if i % 5 == 2 { "extra=1 more=2" } else { "" };
        let (theirs, ours) = support::show_depends_both(&kernel, &[&high, &low], name, b, opts);
        assert_eq!(
            ours.status.code(),
            theirs.status.code(),
            "{series} {name} (-b {b}): exit status; ours said {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        assert_eq!(
            support::distinct_lines(&ours.stdout, &kernel),
            support::distinct_lines(&theirs.stdout, &kernel),
            "{series} {name} (-b {b}, options {opts:?})"
        );
        found += usize::from(!theirs.stdout.is_empty());
    }
    assert!(
        found >= min_found,
        "{series}: only {found} names printed anything"
    );
}

#[test]
fn debian_6_12_load_show_depends_matches_modprobe() {
    compare_tree("6.12", 100);
}

#[test]
fn debian_6_1_load_show_depends_matches_modprobe() {
    compare_tree("6.1", 100);
}

#[test]
fn debian_arm64_6_12_load_show_depends_matches_modprobe() {
    compare_tree("arm64-6.12", 100);
}

#[test]
fn debian_i386_6_1_load_show_depends_matches_modprobe() {
    compare_tree("i386-6.1", 100);
}

#[test]
fn debian_cloud_6_12_load_show_depends_matches_modprobe() {
    compare_tree("cloud-6.12", 30);
}
