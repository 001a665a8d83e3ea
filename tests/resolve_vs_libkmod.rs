//! `Resolver` against Debian's libkmod on real Debian kernel trees: every answer identical.

#[path = "support/corpus.rs"]
mod corpus;
mod support;

use modaliasd::index::ModuleTree;
use modaliasd::resolve::Resolver;
use support::libkmod::{Libkmod, distinct};
use support::{KernelTree, kernel_tree};

fn ours(resolver: &Resolver, key: &[u8]) -> Result<Vec<String>, ()> {
    resolver
        .resolve(key)
        .map(|r| r.names(resolver).map(str::to_owned).collect())
        .map_err(|_| ())
}

/// `min_keys`: the corpus must be at least that large (20,000 for the full trees), so that a
/// broken fixture cannot pass by offering nothing to compare.
fn differential(tree: &KernelTree, seed: u64, min_keys: usize) {
    let dir = tree.module_dir();
    let module_tree = ModuleTree::load(&dir).unwrap();
    assert!(
        module_tree.warnings.is_empty(),
        "{:?}",
        module_tree.warnings
    );
    let resolver = Resolver::build(&module_tree);
    let kmod = Libkmod::new(&dir);
    let keys = corpus::differential(&module_tree, seed);
    assert!(
        keys.len() >= min_keys,
        "corpus has only {} strings",
        keys.len()
    );
    let mut differences = Vec::new();
    let mut matched = 0;
    for key in &keys {
        let expected = kmod.lookup(key).map(distinct).map_err(|_| ());
        let got = ours(&resolver, key);
        matched += usize::from(matches!(&expected, Ok(v) if !v.is_empty()));
        if got != expected {
            differences.push(format!(
                "{}: libkmod {expected:?}, modaliasd {got:?}",
                key.escape_ascii()
            ));
        }
    }
    // A corpus where almost nothing matches would prove little.
    assert!(
        matched > keys.len() / 3,
        "only {matched} of {} strings matched",
        keys.len()
    );
    assert!(
        differences.is_empty(),
        "{} of {} strings differ ({} kernel {}), first ones:\n{}",
        differences.len(),
        keys.len(),
        tree.root.display(),
        tree.kver,
        differences[..differences.len().min(25)].join("\n")
    );
    eprintln!(
        "{}: {} strings, {matched} with modules, identical to libkmod",
        tree.kver,
        keys.len()
    );
}

#[test]
fn debian_6_12_identical_to_libkmod() {
    differential(&kernel_tree("6.12"), 0x6_12, 20_000);
}

#[test]
fn debian_6_1_identical_to_libkmod() {
    differential(&kernel_tree("6.1"), 0x6_01, 20_000);
}

/// Another architecture's corpus: mostly device-tree (`of:`) patterns, other buses.
#[test]
fn debian_arm64_6_12_identical_to_libkmod() {
    differential(&kernel_tree("arm64-6.12"), 0xa64_612, 20_000);
}

/// The cloud configuration: a tenth of the aliases, and much built in that others load.
#[test]
fn debian_cloud_6_12_identical_to_libkmod() {
    differential(&kernel_tree("cloud-6.12"), 0x0c10_d612, 5_000);
}

/// A 32-bit architecture's corpus (686-pae).
#[test]
fn debian_i386_6_1_identical_to_libkmod() {
    differential(&kernel_tree("i386-6.1"), 0x386_601, 20_000);
}

/// mkinitcpio keeps only kmod's binary indexes; the saved index must answer like a fresh compile.
#[test]
fn binary_indexes_and_the_saved_index_answer_like_the_text_files() {
    let kernel = kernel_tree("6.12");
    let dir = kernel.module_dir();
    let text_tree = ModuleTree::load(&dir).unwrap();
    let text = Resolver::build(&text_tree);

    let bin_only = support::TempDir::new("bin-only");
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".bin") {
            std::fs::copy(e.path(), bin_only.path().join(e.file_name())).unwrap();
        }
    }
    let bin_tree = ModuleTree::load(bin_only.path()).unwrap();
    assert_eq!(bin_tree.aliases_file, "modules.alias.bin");
    assert_eq!(bin_tree.modules.len(), text_tree.modules.len());
    let bin = Resolver::build(&bin_tree);

    let path = std::path::Path::new("saved");
    let bytes = modaliasd::resolve::saved::to_bytes(&text, &text_tree.sources);
    let (saved, stamps) = modaliasd::resolve::saved::from_bytes(path, &bytes).unwrap();
    assert_eq!(stamps, text_tree.sources);
    // Every truncation of the file is refused, none panics.
    for cut in (0..bytes.len()).step_by(bytes.len() / 97 + 1) {
        assert!(modaliasd::resolve::saved::from_bytes(path, &bytes[..cut]).is_err());
    }

    // Mapped from a file, as resolve and the daemon load it.
    let file = bin_only.path().join("mapped.index");
    std::fs::write(&file, &bytes).unwrap();
    let (mapped, _) = modaliasd::resolve::saved::from_file(&file).unwrap();
    let keys = corpus::differential(&text_tree, 0xB1);
    for key in keys.iter().step_by(3) {
        assert_eq!(
            ours(&mapped, key),
            ours(&text, key),
            "mapped: {}",
            key.escape_ascii()
        );
    }
    // A damaged byte anywhere either makes the load fail or leaves a resolver that still
    // answers without crashing (most bytes are pattern text or module names).
    let mut rng = support::Rng(0xBAD_B17E);
    for _ in 0..300 {
        let mut damaged = bytes.clone();
        let at = rng.below(damaged.len());
        damaged[at] ^= 1 << rng.below(8);
        if let Ok((r, _)) = modaliasd::resolve::saved::from_bytes(path, &damaged) {
            for key in keys.iter().step_by(997) {
                let _ = r.resolve(key);
            }
        }
    }
    for key in keys.iter().step_by(2) {
        let want = ours(&text, key);
        assert_eq!(ours(&bin, key), want, "bin-only: {}", key.escape_ascii());
        assert_eq!(ours(&saved, key), want, "saved: {}", key.escape_ascii());
        if let (Ok(a), Ok(b)) = (text.resolve(key), saved.resolve(key)) {
            assert_eq!(
                a.entries,
                b.entries,
                "saved entries: {}",
                key.escape_ascii()
            );
        }
    }
}
