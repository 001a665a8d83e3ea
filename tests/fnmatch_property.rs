//! The compiled matcher against libc's `fnmatch(3)` on random patterns and strings.
//!
//! The alphabet is small and full of syntax (`[`, `]`, `!`, `^`, `-`, `\`, `*`, `?`, a non-ASCII
//! byte) so that bracket corners, escapes and unterminated classes come up constantly. Every
//! disagreement is reported with the pattern and string that show it.

#[path = "support/corpus.rs"]
mod corpus;
mod support;

use corpus::PCI_LAYOUT;
use modaliasd::matcher::{PatternSet, Scratch, libc_fnmatch};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, so a failure reproduces from its seed.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick(&mut self, from: &[u8]) -> u8 {
        from[self.below(from.len())]
    }
}

const PATTERN_BYTES: &[u8] = b"abc-][[!^*?\\.:/\xe9z0";
const STRING_BYTES: &[u8] = b"abc-][!^*?\\.:/\xe9z0";

fn random_pattern(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(9);
    (0..len).map(|_| rng.pick(PATTERN_BYTES)).collect()
}

fn random_string(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(8);
    (0..len).map(|_| rng.pick(STRING_BYTES)).collect()
}

fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// A set compiled from `patterns`, each valued by its index.
fn compile(patterns: &[Vec<u8>]) -> PatternSet {
    PatternSet::build(patterns.iter().enumerate().map(|(i, p)| (&p[..], i as u32)))
}

/// The indices of the patterns that match `s`: as the compiled set reports them (each once,
/// sorted), and as libc's fnmatch says.
fn both_answers(
    set: &PatternSet,
    patterns: &[Vec<u8>],
    s: &[u8],
    scratch: &mut Scratch,
) -> (Vec<u32>, Vec<u32>) {
    let mut found = Vec::new();
    set.find(s, scratch, &mut found);
    found.sort_unstable();
    found.dedup();
    let expected = (0..patterns.len() as u32)
        .filter(|&i| libc_fnmatch(&patterns[i as usize], s))
        .collect();
    (found, expected)
}

#[test]
fn single_patterns_agree_with_libc() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let mut compiled = 0;
    for _ in 0..20_000 {
        let p = random_pattern(&mut rng);
        let set = PatternSet::build([(&p[..], 0)]);
        compiled += usize::from(set.irregular_count() == 0);
        for _ in 0..20 {
            let s = random_string(&mut rng);
            out.clear();
            set.find(&s, &mut scratch, &mut out);
            let libc = libc_fnmatch(&p, &s);
            assert_eq!(
                !out.is_empty(),
                libc,
                "pattern {:?} string {:?}: libc says {libc}",
                show(&p),
                show(&s)
            );
        }
    }
    // The test is only worth something if most patterns went through the automaton.
    assert!(compiled > 12_000, "only {compiled} patterns compiled");
}

#[test]
fn pattern_sets_report_exactly_the_matching_patterns() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut scratch = Scratch::default();
    for _ in 0..300 {
        let patterns: Vec<Vec<u8>> = (0..60)
            .map(|_| {
                let mut p = b"x:".to_vec();
                p.extend(random_pattern(&mut rng));
                p
            })
            .collect();
        let set = compile(&patterns);
        for _ in 0..100 {
            let mut s = b"x:".to_vec();
            s.extend(random_string(&mut rng));
            let (out, expected) = both_answers(&set, &patterns, &s, &mut scratch);
            assert_eq!(out, expected, "string {:?}", show(&s));
        }
    }
}

/// Sets of `x:*LITERAL*` patterns, the shape compiled into substring searchers (Aho-Corasick,
/// Teddy for equal lengths, memmem for a few), on long keys with many near-misses.
#[test]
fn contains_patterns_agree_with_libc() {
    let mut rng = Rng(0xC0_FFEE_D00D);
    let mut scratch = Scratch::default();
    for round in 0..400 {
        let same_length = round % 2 == 0;
        let count = 1 + rng.below(30);
        let patterns: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                let len = if same_length { 3 } else { 1 + rng.below(4) };
                let mut p = b"x:*".to_vec();
                p.extend((0..len).map(|_| rng.pick(b"01a,")));
                p.push(b'*');
                p
            })
            .collect();
        let set = compile(&patterns);
        for _ in 0..50 {
            let mut s = b"x:".to_vec();
            s.extend((0..rng.below(200)).map(|_| rng.pick(b"01a,")));
            let (out, expected) = both_answers(&set, &patterns, &s, &mut scratch);
            assert_eq!(out, expected, "string {:?}", show(&s));
        }
    }
}

/// The one-off `fnmatch` (with its shortcut for patterns without special bytes) is libc's.
#[test]
fn one_off_fnmatch_is_libc_fnmatch() {
    let mut rng = Rng(0xF00D);
    for _ in 0..50_000 {
        let p = random_pattern(&mut rng);
        let s = if rng.below(3) == 0 {
            p.clone()
        } else {
            random_string(&mut rng)
        };
        assert_eq!(
            modaliasd::matcher::fnmatch(&p, &s),
            libc_fnmatch(&p, &s),
            "{:?} {:?}",
            show(&p),
            show(&s)
        );
    }
}

/// The compiled single pattern (`Glob`, used by the rules) is libc's fnmatch too.
#[test]
fn glob_is_libc_fnmatch() {
    let mut rng = Rng(0x6_10B);
    for _ in 0..20_000 {
        let p = random_pattern(&mut rng);
        let glob = modaliasd::matcher::Glob::new(&p);
        for _ in 0..10 {
            let s = random_string(&mut rng);
            assert_eq!(
                glob.matches(&s),
                libc_fnmatch(&p, &s),
                "{:?} {:?}",
                show(&p),
                show(&s)
            );
        }
    }
}

/// Sets of PCI patterns, most in depmod's field layout (answered by field comparison for keys
/// in the kernel's layout) and some not (a `?`, a lower-case digit, a missing separator, `pc*`,
/// `*`), on keys in the kernel's layout and one byte away from it.
#[test]
fn pci_patterns_agree_with_libc() {
    let mut rng = Rng(0x9C1_F1E1D);
    let mut scratch = Scratch::default();
    // Few digit values, so that fields often agree.
    const DIGITS: &[u8] = b"08F";
    for _ in 0..300 {
        let count = 1 + rng.below(40);
        let patterns: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                let mut p = b"pci:".to_vec();
                for &(sep, width) in &PCI_LAYOUT {
                    p.extend_from_slice(sep.as_bytes());
                    let digits = match rng.below(4) {
                        0 => 0,
                        1 => width,
                        _ => rng.below(width + 1),
                    };
                    p.extend((0..digits).map(|_| rng.pick(DIGITS)));
                    if digits < width || rng.below(3) == 0 {
                        p.push(b'*');
                    }
                }
                match rng.below(12) {
                    0 => {
                        let at = 5 + rng.below(p.len() - 5);
                        p[at] = rng.pick(b"?f*d");
                    }
                    1 => p = b"pc*".to_vec(),
                    2 => p = b"*".to_vec(),
                    3 => {
                        let at = 5 + rng.below(p.len() - 5);
                        p.remove(at);
                    }
                    _ => {}
                }
                p
            })
            .collect();
        let set = compile(&patterns);
        for _ in 0..40 {
            let mut s = b"pci:".to_vec();
            for &(sep, width) in &PCI_LAYOUT {
                s.extend_from_slice(sep.as_bytes());
                s.extend((0..width).map(|_| rng.pick(DIGITS)));
            }
            match rng.below(4) {
                0 => {
                    let at = rng.below(s.len());
                    s[at] = rng.pick(b"08Ffd:sv*");
                }
                1 => {
                    s.remove(rng.below(s.len()));
                }
                2 => s.insert(rng.below(s.len()), rng.pick(b"08Fsd")),
                _ => {}
            }
            let (out, expected) = both_answers(&set, &patterns, &s, &mut scratch);
            assert_eq!(
                out,
                expected,
                "string {:?} in {:?}",
                show(&s),
                patterns.iter().map(|p| show(p)).collect::<Vec<_>>()
            );
        }
    }
}

/// Contains-sets whose strings all share a prefix (found through that prefix), the prefix
/// overlapping itself in the key.
#[test]
fn contains_strings_with_a_shared_prefix_agree_with_libc() {
    let mut rng = Rng(0x5EED_0A0A);
    let mut scratch = Scratch::default();
    for _ in 0..400 {
        let count = 2 + rng.below(12);
        let patterns: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                let mut p = b"x:*aa".to_vec();
                p.extend((0..rng.below(4)).map(|_| rng.pick(b"ab,")));
                p.push(b'*');
                p
            })
            .collect();
        let set = compile(&patterns);
        for _ in 0..50 {
            let mut s = b"x:".to_vec();
            s.extend((0..rng.below(60)).map(|_| rng.pick(b"aab,")));
            let (out, expected) = both_answers(&set, &patterns, &s, &mut scratch);
            assert_eq!(out, expected, "string {:?}", show(&s));
        }
    }
}
