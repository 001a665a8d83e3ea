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

fn differential(tree: &KernelTree, seed: u64) {
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
        keys.len() >= 20_000,
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
    differential(&kernel_tree("6.12"), 0x6_12);
}

#[test]
fn debian_6_1_identical_to_libkmod() {
    differential(&kernel_tree("6.1"), 0x6_01);
}
