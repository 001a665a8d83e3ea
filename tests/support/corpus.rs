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

/// The kernel's layout of a PCI MODALIAS (`pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X`).
pub const PCI_LAYOUT: [(&str, usize); 7] = [
    ("v", 8),
    ("d", 8),
    ("sv", 8),
    ("sd", 8),
    ("bc", 2),
    ("sc", 2),
    ("i", 2),
];

/// For a PCI pattern of depmod's form, a string the pattern matches in the layout the kernel
/// writes (every field its full width of upper-case digits, the pattern's digits first), so
/// that lookups see real-looking PCI keys and not only `concretize`'s random fill. None for
/// any other pattern.
pub fn pci_kernel_layout(pattern: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let mut rest = std::str::from_utf8(pattern).ok()?.strip_prefix("pci:")?;
    let mut out = String::from("pci:");
    for (i, (sep, width)) in PCI_LAYOUT.iter().enumerate() {
        rest = rest.strip_prefix(sep)?;
        let end = match PCI_LAYOUT.get(i + 1) {
            Some((next, _)) => rest.find(next)?,
            None => rest.len(),
        };
        let field = rest[..end].trim_end_matches('*');
        if field.len() > *width || !field.bytes().all(|b| b"0123456789ABCDEF".contains(&b)) {
            return None;
        }
        out.push_str(sep);
        out.push_str(field);
        out.extend((field.len()..*width).map(|_| b"0123456789ABCDEF"[rng.below(16)] as char));
        rest = &rest[end..];
    }
    Some(out.into_bytes())
}

/// One digit of a PCI key in the kernel's layout changed to another digit: still that layout,
/// usually matching something else or nothing.
pub fn pci_near_miss(key: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = key.to_vec();
    let digits: Vec<usize> = (4..v.len())
        .filter(|&i| v[i].is_ascii_digit() || (b'A'..=b'F').contains(&v[i]))
        .collect();
    if !digits.is_empty() {
        let i = digits[rng.below(digits.len())];
        v[i] = b"0123456789ABCDEF"[rng.below(16)];
    }
    v
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

/// The differential corpus for `tree`: every alias concretised and mutated, PCI aliases also in
/// the kernel's layout with and without one digit changed, patterns themselves as keys, module
/// and built-in names (with dashes too), symbols, built-in aliases, random `cpu:` feature lists
/// and the machine's own sysfs strings.
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
        if let Some(k) = pci_kernel_layout(&a.pattern, &mut rng) {
            out.push(pci_near_miss(&k, &mut rng));
            out.push(k);
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
