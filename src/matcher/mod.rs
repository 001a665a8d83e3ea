//! fnmatch(3) patterns, many at once.
//!
//! [`PatternSet`] compiles a table of patterns (a `modules.alias`, say) so that one lookup reports
//! every pattern that matches a string, with exactly the answers of glibc's
//! `fnmatch(pattern, string, 0)`. Patterns without a wildcard go into a hash table
//! ([`LiteralTable`]), the other regular patterns into one [`Automaton`]; the rare pattern that
//! uses locale-dependent or malformed syntax is kept aside and handed to libc (see [`pattern`]).
//!
//! ```
//! use modaliasd::matcher::{PatternSet, Scratch};
//! let set = PatternSet::build([(&b"usb:v046Dp*"[..], 7), (&b"usb:v*p*d*"[..], 9)]);
//! let mut found = Vec::new();
//! set.find(b"usb:v046DpC52Bd1211", &mut Scratch::default(), &mut found);
//! found.sort();
//! found.dedup();
//! assert_eq!(found, [7, 9]);
//! ```

pub mod automaton;
pub mod literal;
mod needles;
pub mod pattern;
pub mod pci;
mod starts;

pub use automaton::{Automaton, Scratch};
pub use literal::LiteralTable;
pub(crate) use needles::NeedleSet;
pub use pattern::{Glob, fnmatch, libc_fnmatch};
pub use pci::PciIndex;

/// A compiled table of patterns, each carrying a caller-chosen `u32` value.
#[derive(Clone, Debug, Default)]
pub struct PatternSet {
    /// Patterns that match exactly one string.
    pub(crate) literals: LiteralTable,
    /// Every other regular pattern except those `pci` holds.
    pub(crate) automaton: Automaton,
    /// Patterns in the kernel's PCI layout, for keys in that layout ...
    pub(crate) pci: PciIndex,
    /// ... and the same patterns for every other key that starts like them: those naming a
    /// vendor here, ...
    pub(crate) pci_automaton: Automaton,
    /// ... and those with a wildcard for the vendor (`pci:v*d*sv*sd*bc0Csc03i30*`, the class
    /// patterns) or for every device of one (`pci:v00008086d*sv*sd*bc01sc01i*`) here, searched
    /// only when the key holds one of `pci_wide_needs`.
    pub(crate) pci_wide: Automaton,
    /// For each of `pci_wide`'s patterns, a string every key it matches contains (four bytes
    /// of a literal run after its first star, see [`needed_strings`]); None when some pattern
    /// has none. Every PCI key that is not in the kernel's layout used to walk the class
    /// patterns' `*d*sv*sd*` stars, about a third of its lookup, though almost none holds a
    /// class tail such as `bc0Csc03i30`; a third of them (Intel's) also walked their vendor's
    /// `d*sv*sd*` stars, which cost as much as the rest of their lookup.
    pub(crate) pci_wide_needs: Option<NeedleSet>,
    /// No pattern outside those three and `literals` can match a key that starts with `pci:v`, so
    /// such a key need not walk `automaton` at all.
    pub(crate) pci_only: bool,
    /// Patterns outside the compiled subset: (pattern, length of its literal prefix, value).
    /// The prefix is compared byte for byte, the rest handed to libc's `fnmatch`.
    pub(crate) irregular: Vec<(Vec<u8>, u32, u32)>,
}

/// How a pattern's bytes before its first wildcard are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// Exactly fnmatch(3): a backslash escapes the next byte everywhere.
    Fnmatch,
    /// libkmod's reading: its trie walk compares everything before the first `*`, `?` or `[`
    /// byte for byte (a backslash there is an ordinary byte) and calls fnmatch on the rest. The
    /// two agree on every pattern without a backslash before its first wildcard, which is every
    /// pattern the kernel generates.
    Libkmod,
}

/// The only string a pattern matches when all its tokens are literal.
fn literal_string(tokens: &[pattern::Token]) -> Option<Vec<u8>> {
    tokens
        .iter()
        .map(|t| match *t {
            pattern::Token::Literal(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// A pattern's longest run of literal tokens after its first star (the class tail
/// `bc0Csc03i30` of `pci:v*d*sv*sd*bc0Csc03i30*`): fnmatch matches it with as many consecutive
/// bytes, so every key the pattern matches contains it. Empty when there is none.
fn run_after_first_star(tokens: &[pattern::Token]) -> &[pattern::Token] {
    let after = match tokens.iter().position(|t| *t == pattern::Token::Star) {
        Some(star) => &tokens[star + 1..],
        None => &[],
    };
    after
        .split(|t| !matches!(t, pattern::Token::Literal(_)))
        .max_by_key(|run| run.len())
        .unwrap_or(&[])
}

/// For each pattern, a string that every key it matches contains: four bytes of
/// [`run_after_first_star`] (any part of it will do). Of the run's four-byte windows the one
/// with the most distinct bytes is taken: a window like `d000` is in every PCI key and would
/// let every key through, and strings of one length are searched together in one pass (see
/// [`needles`]). None when some pattern has no such run.
fn needed_strings(patterns: &[(Vec<pattern::Token>, u32)]) -> Option<NeedleSet> {
    let mut strings: Vec<Vec<u8>> = patterns
        .iter()
        .map(|(tokens, _)| {
            Some(run_after_first_star(tokens))
                .filter(|run| !run.is_empty())
                .map(|run| {
                    let run = literal_string(run).expect("a run of literals");
                    let distinct = |w: &&[u8]| {
                        w.iter()
                            .enumerate()
                            .filter(|(i, b)| !w[..*i].contains(b))
                            .count()
                    };
                    match run.windows(4).max_by_key(distinct) {
                        Some(best) => best.to_vec(),
                        None => run,
                    }
                })
        })
        .collect::<Option<_>>()?;
    if strings.is_empty() {
        return None;
    }
    strings.sort();
    strings.dedup();
    Some(NeedleSet::new(strings))
}

/// Whether a pattern could match some string that starts with `prefix`: its literal tokens
/// before the first wildcard agree with `prefix` as far as both go.
fn may_start_like(tokens: &[pattern::Token], prefix: &[u8]) -> bool {
    tokens
        .iter()
        .zip(prefix)
        .map_while(|(t, &b)| match *t {
            pattern::Token::Literal(l) => Some(l == b),
            _ => None,
        })
        .all(|same| same)
}

impl PatternSet {
    pub fn build<'a>(patterns: impl IntoIterator<Item = (&'a [u8], u32)>) -> PatternSet {
        PatternSet::build_with(Syntax::Fnmatch, patterns)
    }

    pub fn build_with<'a>(
        syntax: Syntax,
        patterns: impl IntoIterator<Item = (&'a [u8], u32)>,
    ) -> PatternSet {
        let mut regular = Vec::new();
        let mut literals = Vec::new();
        let mut irregular = Vec::new();
        let (mut pci_fields, mut pci_regular) = (Vec::new(), Vec::new());
        let mut pci_wide = Vec::new();
        let mut pci_only = true;
        for (p, value) in patterns {
            let layout_fields = pci::FieldPattern::parse(p, value);
            let literal = match syntax {
                Syntax::Fnmatch => 0,
                Syntax::Libkmod => pattern::literal_prefix_len(p),
            };
            match pattern::parse(&p[literal..]) {
                pattern::Parsed::Tokens(rest) => {
                    let mut t: Vec<_> = p[..literal]
                        .iter()
                        .map(|&b| pattern::Token::Literal(b))
                        .collect();
                    t.extend(rest);
                    if let Some(fields) = layout_fields {
                        // The PCI layout has no backslash, so both syntaxes read it alike.
                        pci_fields.push(fields);
                        let any_vendor =
                            !matches!(t.get(pci::PREFIX.len()), Some(pattern::Token::Literal(_)));
                        // A pattern for every device of a vendor (`pci:v00008086d*...`) with a
                        // string of four bytes to need: among the vendor's patterns its star
                        // would be expanded for every key of that vendor; behind the needed
                        // strings, for almost none.
                        let every_device = fields.mask[0] == u32::MAX
                            && fields.mask[1] == 0
                            && run_after_first_star(&t).len() >= 4;
                        if any_vendor || every_device {
                            pci_wide.push((t, value));
                        } else {
                            pci_regular.push((t, value));
                        }
                    } else if let Some(s) = literal_string(&t) {
                        literals.push((s, value));
                    } else {
                        pci_only &= !may_start_like(&t, pci::PREFIX);
                        regular.push((t, value));
                    }
                }
                pattern::Parsed::Irregular => {
                    pci_only = false;
                    irregular.push((p.to_vec(), literal as u32, value));
                }
            }
        }
        let mut set = PatternSet {
            literals: LiteralTable::default(),
            automaton: Automaton::build(&regular),
            pci: PciIndex::build(pci_fields),
            pci_automaton: Automaton::build(&pci_regular),
            pci_wide_needs: needed_strings(&pci_wide),
            pci_wide: Automaton::build(&pci_wide),
            pci_only,
            irregular,
        };
        set.derive();
        // A key equal to a plain pattern is answered by the table alone, so its entry holds
        // every pattern that matches that string, not only the plain ones.
        let mut complete: Vec<(&[u8], u32)> = literals.iter().map(|(s, v)| (&s[..], *v)).collect();
        let mut seen = std::collections::HashSet::new();
        let (mut scratch, mut others) = (Scratch::default(), Vec::new());
        // The table is still empty: `find` asks only the automata.
        debug_assert!(set.literals.is_empty());
        for (s, _) in &literals {
            if seen.insert(&s[..]) {
                others.clear();
                set.find(s, &mut scratch, &mut others);
                others.sort_unstable();
                others.dedup();
                complete.extend(others.iter().map(|&v| (&s[..], v)));
            }
        }
        set.literals = LiteralTable::build(complete);
        set
    }

    /// Computes the tables derived from the compiled automata: each one's first-byte table, the
    /// PCI automaton's jumps (told their depths here, made on its first search) and the general
    /// automaton's start filter (the PCI automata have none: every key they see starts `pci:v`,
    /// which would pass it). One place for a built set
    /// and a loaded one (whose node offsets are only trusted after validation). For a built set
    /// the first-byte tables, already made by `Automaton::build`, are made again: three
    /// 256-entry tables, microseconds.
    pub(crate) fn derive(&mut self) {
        for a in [
            &mut self.automaton,
            &mut self.pci_automaton,
            &mut self.pci_wide,
        ] {
            a.derive();
        }
        self.pci_automaton.derive_jumps(&pci::JUMP_DEPTHS);
        self.automaton.derive_starts();
    }

    /// Appends the value of every matching pattern to `out` (unordered, possibly repeated).
    #[inline(always)]
    pub fn find(&self, key: &[u8], scratch: &mut Scratch, out: &mut Vec<u32>) {
        self.find_hashed(key, None, scratch, out);
    }

    /// [`PatternSet::find`] for a key whose literal-table hash the caller may have already
    /// (normalising computes it).
    ///
    /// Inlined into the resolver with the literal probe and the start filter, so that a key
    /// answered by those (most `platform:`, `i2c:`, `spi:` keys, hit or miss) makes no call.
    #[inline(always)]
    pub fn find_hashed(
        &self,
        key: &[u8],
        key_hash: Option<u64>,
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) {
        if self.literals.find(key, key_hash, out) {
            return;
        }
        if key.starts_with(pci::PREFIX) {
            self.find_pci(key, scratch, out);
            if self.pci_only {
                return;
            }
        }
        if self.automaton.may_match(key) {
            self.automaton.search(key, scratch, out);
        }
        if !self.irregular.is_empty() {
            self.find_irregular(key, out);
        }
    }

    /// [`PatternSet::find`] for a `pci:v` key the literal table does not hold.
    #[inline(never)]
    fn find_pci(&self, key: &[u8], scratch: &mut Scratch, out: &mut Vec<u32>) {
        if !self.pci.find(key, out) {
            self.pci_automaton.search(key, scratch, out);
            if self
                .pci_wide_needs
                .as_ref()
                .is_none_or(|needs| needs.occurs_in(key))
            {
                self.pci_wide.search(key, scratch, out);
            }
        }
    }

    #[inline(never)]
    fn find_irregular(&self, key: &[u8], out: &mut Vec<u32>) {
        for (p, literal, value) in &self.irregular {
            let (prefix, rest) = p.split_at(*literal as usize);
            if key.starts_with(prefix) && libc_fnmatch(rest, &key[prefix.len()..]) {
                out.push(*value);
            }
        }
    }

    pub fn automaton(&self) -> &Automaton {
        &self.automaton
    }

    pub fn pci(&self) -> &PciIndex {
        &self.pci
    }

    pub fn irregular_count(&self) -> usize {
        self.irregular.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PCI patterns with a wildcard for the vendor, or for every device of one, are searched
    /// only for keys that hold the string each needs, and answer as fnmatch does either way.
    #[test]
    fn wide_pci_patterns_behind_their_needed_strings() {
        let patterns: [(&[u8], u32); 6] = [
            (b"pci:v*d*sv*sd*bc0Csc03i30*", 1),
            (b"pci:v*d00008139sv000013D1sd0000AB06bc*sc*i*", 2),
            (b"pci:v00008086d*sv*sd*bc*sc*i*", 3),
            (b"pci:v*d*sv*sd*bc01sc01i*", 4),
            (b"pci:v00008086d*sv*sd*bc04sc03i00*", 5),
            (b"pci:v00008086d00001234sv*sd*bc*sc*i*", 6),
        ];
        let set = PatternSet::build(patterns);
        let needs = set
            .pci_wide_needs
            .as_ref()
            .expect("every pattern has a run");
        assert!(needs.strings().iter().all(|s| s.len() == 4), "{needs:?}");
        // Pattern 3 has no run to need, and 6 names its device: they stay with the vendor's.
        let mut wide = Vec::new();
        let key = b"pci:v00008086dsvsdbc04sc03i00";
        set.pci_wide.search(key, &mut Scratch::default(), &mut wide);
        assert_eq!(wide, [5]);
        let keys: [&[u8]; 9] = [
            b"pci:v00001033d00000194svsdbc0Csc03i30",
            b"pci:vXd00008139sv000013D1sd0000AB06bcQsci",
            b"pci:v00008086dsvsdbc0Csc03i3",
            b"pci:v00008086d1sv2sd3bc01sc01i",
            b"pci:v00008086d00001234sv2sd3bc04sc03i00",
            b"pci:v00008086d00001234svsdbc04sc03i0",
            b"pci:v00008086dsvsdbc04sc03i00",
            b"pci:vdsvsdbc01sc01",
            b"pci:v",
        ];
        for key in keys {
            let mut found = Vec::new();
            set.find(key, &mut Scratch::default(), &mut found);
            found.sort();
            found.dedup();
            let want: Vec<u32> = patterns
                .iter()
                .filter(|(p, _)| libc_fnmatch(p, key))
                .map(|&(_, v)| v)
                .collect();
            assert_eq!(found, want, "{}", String::from_utf8_lossy(key));
        }
        // A pattern with no literal after its first star could match any key that starts like
        // it: no needed strings.
        let tokens = |p: &[u8]| match pattern::parse(p) {
            pattern::Parsed::Tokens(t) => (t, 0),
            pattern::Parsed::Irregular => unreachable!(),
        };
        let open = [tokens(b"pci:v*d*"), tokens(b"pci:v*?")];
        assert!(needed_strings(&open).is_none());
        let short = needed_strings(&[tokens(b"pci:v*d*"), tokens(b"pci:v*ab?cdefg")]);
        assert_eq!(short.unwrap().strings(), [&b"d"[..], b"defg"]);
    }

    /// A key equal to a plain pattern is answered from the literal table alone, so that entry
    /// must carry every other kind of pattern the string matches too.
    #[test]
    fn a_plain_key_also_gets_the_patterns_with_wildcards() {
        let set = PatternSet::build([
            (&b"platform:hmem"[..], 1),
            (&b"platform:hm*"[..], 2),
            (&b"platform:h?em"[..], 3),
            (&b"platform:[gh]mem"[..], 4),
            (&b"platform:hmemx"[..], 5),
            (&b"platform:[[:alpha:]]mem"[..], 6),
            (&b"pci:v*d*sv*sd*bc*sc*i*"[..], 7),
            (&b"pci:v00008086d*sv*sd*bc*sc*i*"[..], 8),
            (&b"pci:v00008086d00001234sv*sd*bc*sc*i*"[..], 9),
            (
                &b"pci:v00008086d00001234sv00000000sd00000000bc00sc00i00"[..],
                10,
            ),
        ]);
        let find = |key: &[u8]| {
            let mut out = Vec::new();
            set.find(key, &mut Scratch::default(), &mut out);
            out.sort();
            out.dedup();
            out
        };
        assert_eq!(find(b"platform:hmem"), [1, 2, 3, 4, 6]);
        assert_eq!(find(b"platform:hmemx"), [2, 5]);
        assert_eq!(find(b"platform:gmem"), [4, 6]);
        assert_eq!(
            find(b"pci:v00008086d00001234sv00000000sd00000000bc00sc00i00"),
            [7, 8, 9, 10]
        );
    }
}
