//! Random alias tables written as kmod binary indexes, resolved by libkmod and by modaliasd.
//!
//! Real trees never exercise backslashes, odd brackets, or several modules sharing a priority;
//! these tables do, with every fnmatch construct in the patterns, priorities drawn from a small
//! range (so ties between modules are common) and built-in aliases that all share priority 0.
//! The keys include the patterns themselves, which sends them through libkmod's literal walk.

#[path = "support/corpus.rs"]
mod corpus;
mod support;

use modaliasd::index::ModuleTree;
use modaliasd::index::kmod_bin::RadixTree;
use modaliasd::names::normalize_alias;
use modaliasd::resolve::Resolver;
use support::libkmod::{Libkmod, distinct};
use support::{Rng, TempDir};

const PATTERN_BYTES: &[u8] = b"ab0_:*?[]!^-\\";

fn random_pattern(rng: &mut Rng) -> Option<Vec<u8>> {
    let mut p = b"x:".to_vec();
    for _ in 0..rng.below(7) {
        p.push(PATTERN_BYTES[rng.below(PATTERN_BYTES.len())]);
    }
    // depmod normalises every alias and drops the ones with unbalanced brackets.
    let mut normalized = Vec::new();
    normalize_alias(&p, &mut normalized).ok()?;
    Some(normalized)
}

fn write_tree(dir: &std::path::Path, rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut patterns = Vec::new();
    let mut aliases = RadixTree::new();
    for _ in 0..150 {
        let Some(p) = random_pattern(rng) else {
            continue;
        };
        let module = format!("m{}", rng.below(40));
        aliases.insert(&p, rng.below(6) as u32, module);
        patterns.push(p);
    }
    let mut builtin_aliases = RadixTree::new();
    for _ in 0..40 {
        let Some(p) = random_pattern(rng) else {
            continue;
        };
        builtin_aliases.insert(&p, 0, format!("b{}", rng.below(10)));
        patterns.push(p);
    }
    let mut dep = RadixTree::new();
    for i in 0..40 {
        dep.insert(format!("m{i}").as_bytes(), i, format!("kernel/m{i}.ko:"));
    }
    let mut builtin = RadixTree::new();
    for i in 0..5 {
        builtin.insert(format!("b{i}").as_bytes(), 0, String::new());
    }
    let empty: RadixTree<String> = RadixTree::new();
    for (name, tree) in [
        ("modules.dep.bin", &dep),
        ("modules.alias.bin", &aliases),
        ("modules.builtin.alias.bin", &builtin_aliases),
        ("modules.builtin.bin", &builtin),
        ("modules.symbols.bin", &empty),
    ] {
        std::fs::write(dir.join(name), tree.to_bytes()).unwrap();
    }
    patterns
}

#[test]
fn random_tables_resolve_as_libkmod_does() {
    let mut rng = Rng(0x5EED_0FC0_FFEE);
    let mut compared = 0;
    let mut matched = 0;
    for round in 0..60 {
        let tmp = TempDir::new("synthetic");
        let patterns = write_tree(tmp.path(), &mut rng);
        let tree = ModuleTree::load(tmp.path()).unwrap();
        let resolver = Resolver::build(&tree);
        let kmod = Libkmod::new(tmp.path());
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for p in &patterns {
            let c = corpus::concretize(p, &mut rng);
            keys.push(corpus::mutate(&c, &mut rng));
            keys.push(c);
            keys.push(p.clone());
        }
        keys.extend(["b1", "b3", "m7", "x:", "x:a", "x:0b"].map(|k| k.as_bytes().to_vec()));
        for key in keys {
            let expected = kmod.lookup(&key).map(distinct).map_err(|_| ());
            let got = resolver
                .resolve(&key)
                .map(|r| r.names(&resolver).map(str::to_owned).collect::<Vec<_>>())
                .map_err(|_| ());
            assert_eq!(
                got,
                expected,
                "round {round}, key {:?}: modaliasd vs libkmod",
                key.escape_ascii().to_string()
            );
            compared += 1;
            matched += usize::from(matches!(&expected, Ok(v) if v.len() > 1));
        }
    }
    // Ties only show with several modules per answer; make sure there were plenty.
    assert!(matched > 1000, "only {matched} answers had several modules");
    eprintln!("{compared} keys compared, {matched} with several modules");
}
