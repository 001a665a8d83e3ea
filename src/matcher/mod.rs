//! fnmatch(3) patterns, many at once.
//!
//! [`PatternSet`] compiles a table of patterns (a `modules.alias`, say) so that one lookup reports
//! every pattern that matches a string, with exactly the answers of glibc's
//! `fnmatch(pattern, string, 0)`. Regular patterns go into one [`Automaton`]; the rare pattern that
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
pub mod pattern;

pub use automaton::{Automaton, Scratch};
pub use pattern::{Glob, fnmatch, libc_fnmatch};

/// A compiled table of patterns, each carrying a caller-chosen `u32` value.
#[derive(Clone, Debug, Default)]
pub struct PatternSet {
    pub(crate) automaton: Automaton,
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

impl PatternSet {
    pub fn build<'a>(patterns: impl IntoIterator<Item = (&'a [u8], u32)>) -> PatternSet {
        PatternSet::build_with(Syntax::Fnmatch, patterns)
    }

    pub fn build_with<'a>(
        syntax: Syntax,
        patterns: impl IntoIterator<Item = (&'a [u8], u32)>,
    ) -> PatternSet {
        let mut regular = Vec::new();
        let mut irregular = Vec::new();
        for (p, value) in patterns {
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
                    regular.push((t, value));
                }
                pattern::Parsed::Irregular => irregular.push((p.to_vec(), literal as u32, value)),
            }
        }
        PatternSet {
            automaton: Automaton::build(&regular),
            irregular,
        }
    }

    /// Appends the value of every matching pattern to `out` (unordered, possibly repeated).
    pub fn find(&self, key: &[u8], scratch: &mut Scratch, out: &mut Vec<u32>) {
        self.automaton.search(key, scratch, out);
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

    pub fn irregular_count(&self) -> usize {
        self.irregular.len()
    }
}
