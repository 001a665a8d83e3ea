//! Lookup strings for differential tests and benchmarks, made from a module tree's own tables.
#![allow(dead_code)]

use crate::support::Rng;
use modaliasd::index::ModuleTree;
use modaliasd::matcher::pattern::{Parsed, Token, parse};

const FILL: &[u8] = b"0123456789ABCDEF0123456789ABCDEFabcdefxyz:,_-.";

fn fill_byte(rng: &mut Rng) -> u8 {
    FILL[rng.below(FILL.len())]
}

/// A string the pattern matches: `*` becomes 0 to 9 bytes, `?` one byte, a class one of its
/// printable members. Patterns outside the compiled subset are returned as they are.
pub fn concretize(pattern: &[u8], rng: &mut Rng) -> Vec<u8> {
    let Parsed::Tokens(tokens) = parse(pattern) else {
        return pattern.to_vec();
    };
    let mut out = Vec::with_capacity(pattern.len() + 16);
    for t in tokens {
        match t {
            Token::Literal(b) => out.push(b),
            Token::Any => out.push(fill_byte(rng)),
            Token::Star => {
                let n = if rng.chance(4) { 0 } else { 1 + rng.below(9) };
                out.extend((0..n).map(|_| fill_byte(rng)));
            }
            Token::Class(set) => {
                let members: Vec<u8> = (0x21u8..0x7f).filter(|&b| set.contains(b)).collect();
                out.push(if members.is_empty() {
                    b'x'
                } else {
                    members[rng.below(members.len())]
                });
            }
        }
    }
    out
}

/// A small random change: most of these no longer match the pattern they came from, some match
/// another one.
pub fn mutate(s: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = s.to_vec();
    if v.is_empty() {
        v.push(fill_byte(rng));
        return v;
    }
    let i = rng.below(v.len());
    match rng.below(9) {
        0 => v[i] = fill_byte(rng),
        1 => {
            v.remove(i);
        }
        2 => v.truncate(i),
        3 => v.insert(i, fill_byte(rng)),
        4 => v[i] = v[i].to_ascii_lowercase(),
        5 => {
            for b in &mut v {
                if *b == b'_' {
                    *b = b'-';
                }
            }
        }
        6 => v.extend((0..1 + rng.below(6)).map(|_| fill_byte(rng))),
        7 => v[i] = 0xC3, // a byte outside ASCII
        _ => {
            let tail = v[i..].to_vec();
            v.extend_from_slice(&tail);
        }
    }
    v
}

/// An x86 `cpu:` MODALIAS with a random vendor, family and model and a sorted feature list up to
/// `last`, consecutive features at most `max_gap` apart (a real one lists 150 to 300).
pub fn cpu_modalias(rng: &mut Rng, last: usize, max_gap: usize) -> Vec<u8> {
    let mut s = format!(
        "cpu:type:x86,ven{:04X}fam{:04X}mod{:04X}:feature:",
        rng.below(3),
        rng.below(0x20),
        rng.below(0x100)
    );
    let mut f = 0;
    while f < last {
        f += 1 + rng.below(max_gap);
        s.push_str(&format!(",{f:04X}"));
    }
    s.into_bytes()
}

/// The real MODALIAS strings of the machine running the tests.
pub fn sysfs_modaliases() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/sys/devices")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(e.path());
            } else if e.file_name() == "modalias" {
                if let Ok(mut s) = std::fs::read(e.path()) {
                    while s.last() == Some(&b'\n') {
                        s.pop();
                    }
                    if !s.is_empty() {
                        out.push(s);
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The differential corpus for `tree`: every alias concretised and mutated, patterns themselves
/// as keys, module and built-in names (with dashes too), symbols, built-in aliases, random
/// `cpu:` feature lists and the machine's own sysfs strings.
pub fn differential(tree: &ModuleTree, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for a in &tree.aliases {
        let c = concretize(&a.pattern, &mut rng);
        out.push(mutate(&c, &mut rng));
        out.push(c);
        if rng.chance(20) {
            out.push(a.pattern.clone());
        }
    }
    for m in &tree.modules {
        out.push(m.name.as_bytes().to_vec());
        if rng.chance(4) {
            out.push(m.name.replace('_', "-").into_bytes());
        }
    }
    for n in &tree.builtin {
        out.push(n.as_bytes().to_vec());
    }
    for a in &tree.builtin_aliases {
        let c = concretize(&a.pattern, &mut rng);
        out.push(mutate(&c, &mut rng));
        out.push(c);
    }
    for s in tree.symbols.iter().step_by(7) {
        out.push(s.pattern.clone());
    }
    for _ in 0..300 {
        out.push(cpu_modalias(&mut rng, 0x300, 6));
    }
    out.extend(sysfs_modaliases());
    out
}
