//! A damaged saved index must be refused or still answer without a crash: the bundled example
//! tree's index (Debian 6.12's 27,460 aliases) with bytes changed and cut at random places
//! (1,000 times; `MODALIASD_DAMAGE_ROUNDS` sets another count), loaded and, where it loads,
//! used for lookups of every kind.

#[path = "support/corpus.rs"]
mod corpus;
mod support;

use modaliasd::index::ModuleTree;
use modaliasd::resolve::{Resolver, saved};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use support::Rng;

/// Keys that walk every part of the index: PCI keys in the kernel's layout and in others,
/// USB, a plain `platform:` string, keys that are patterns themselves, module and built-in
/// names, `symbol:` keys, and misses.
const KEYS: &[&str] = &[
    "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
    "pci:v00008086d000010D3sv8086sdA01Fbc02sc00i00",
    "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00",
    "pci:v0000XXXXd*",
    "usb:v046DpC52Bd1211dc00dsc00dp00ic03isc01ip01in00",
    "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00",
    "platform:serial8250",
    "platform:hmem_platform",
    "acpi*:PNP0A08:*",
    "of:NgpioT(null)Cgpio-keys",
    "cpu:type:x86,ven0000fam0006mod003A:feature:,0000,0001,0002,00E5",
    "hid:b0003g0001v0000046Dp0000C52B",
    "e1000e",
    "ext4",
    "symbol:e1000_write_phy_reg",
    "nothing:at:all",
];

/// Resolves every key and explains every entry found, as `resolve --json` does.
fn lookups(r: &Resolver, keys: &[Vec<u8>]) -> usize {
    let mut found = 0;
    for key in keys {
        let Ok(res) = r.resolve(key) else { continue };
        found += res.names(r).count();
        for &rank in &res.entries {
            found += r.entry(rank).pattern.len();
        }
    }
    found
}

/// [`KEYS`], and one key made from every 40th pattern of the table (every `*` filled at random),
/// and for a PCI pattern also a key it matches in the kernel's layout, so that damage
/// anywhere in the tables has a fair chance of being walked.
fn keys(tree: &ModuleTree) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x4E15);
    let mut keys: Vec<Vec<u8>> = KEYS.iter().map(|k| k.as_bytes().to_vec()).collect();
    for alias in tree.aliases.iter().step_by(40) {
        keys.push(corpus::concretize(&alias.pattern, &mut rng));
        if let Some(layout) = corpus::pci_kernel_layout(&alias.pattern, &mut rng) {
            keys.push(layout);
        }
    }
    keys
}

#[test]
fn damaged_indexes_are_refused_or_answer_without_crashing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/root/lib/modules");
    let kver = std::fs::read_dir(&root)
        .unwrap()
        .next()
        .expect("the example tree has a module directory")
        .unwrap()
        .file_name();
    let dir = root.join(kver);
    let tree = ModuleTree::load(&dir).unwrap();
    let resolver = Resolver::build(&tree);
    let good = saved::to_bytes(&resolver, &tree.sources);
    let keys = keys(&tree);
    let path = dir.join(saved::FILE_NAME);

    // The undamaged bytes load and answer as the compiled resolver does.
    let (again, _) = saved::from_bytes(&path, &good).unwrap();
    assert_eq!(lookups(&again, &keys), lookups(&resolver, &keys));
    assert!(
        lookups(&resolver, &keys) > 1000,
        "the keys reach real answers"
    );

    let mut rng = Rng(0xDA_3A6E);
    let (mut refused, mut loaded) = (0, 0);
    let rounds: usize =
        std::env::var("MODALIASD_DAMAGE_ROUNDS").map_or(1000, |s| s.parse().unwrap());
    for round in 0..rounds {
        let mut data = good.clone();
        let what = match round % 3 {
            0 => {
                let at = rng.below(data.len());
                data.truncate(at);
                format!("cut at {at}")
            }
            _ => {
                let mut changed = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    // A random byte, or four 0xFF bytes: a count, offset or id made huge.
                    let (at, len) = (rng.below(data.len()), data.len());
                    match rng.below(2) {
                        0 => data[at] = rng.below(256) as u8,
                        _ => data[at..(at + 4).min(len)].fill(0xFF),
                    }
                    changed.push(at);
                }
                format!("bytes changed at {changed:?}")
            }
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            saved::from_bytes(&path, &data).map(|(r, _)| lookups(&r, &keys))
        }));
        match outcome {
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
            Err(_) => panic!("a damaged index crashed the reader or a lookup: {what}"),
        }
    }
    // Both outcomes must have been exercised for the test to mean anything.
    eprintln!("{refused} refused, {loaded} loaded");
    assert!(
        refused > 100 && loaded > 50,
        "{refused} refused, {loaded} loaded"
    );
}
