//! Parsing one fnmatch(3) pattern into tokens the automaton can compile.
//!
//! glibc's `fnmatch` (flags 0, C locale, single-byte path) is the reference. Most of its syntax maps
//! onto four tokens: a literal byte, `?`, `*` and a bracket expression that is a plain set of bytes.
//! A few corners do not: an unterminated `[` is a literal `[` *unless* one of the would-be members
//! already matched (then the pattern fails), `[:alpha:]`, `[=a=]` and `[.a.]` depend on the locale
//! tables, and a trailing backslash never matches. Rather than re-deriving those rules, a pattern
//! that uses any of them is reported as [`Parsed::Irregular`] and evaluated by libc's own `fnmatch`
//! at lookup time. No real `modules.alias` contains such a pattern, so that path costs nothing in
//! practice, and it stays exact by construction.

/// A set of bytes, one bit each.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
#[repr(C)]
pub struct ByteSet(pub [u64; 4]);

impl ByteSet {
    pub fn insert(&mut self, b: u8) {
        self.0[(b >> 6) as usize] |= 1 << (b & 63);
    }

    pub fn insert_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.insert(b);
        }
    }

    #[inline]
    pub fn contains(&self, b: u8) -> bool {
        self.0[(b >> 6) as usize] & (1 << (b & 63)) != 0
    }

    pub fn negate(&mut self) {
        for w in &mut self.0 {
            *w = !*w;
        }
    }
}

/// One element of a compiled pattern.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Token {
    Literal(u8),
    /// `?`: exactly one byte.
    Any,
    /// `*`: any run of bytes, `/` and leading dots included (flags 0).
    Star,
    /// `[...]`, already resolved to the bytes it accepts.
    Class(ByteSet),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Tokens(Vec<Token>),
    /// Syntax whose meaning only libc's `fnmatch` defines exactly; see the module docs.
    Irregular,
}

/// Parses `pattern` into tokens. Runs of `*` and `?` are canonicalised to all the `?` first and one
/// `*` last, which accepts the same strings (glibc itself folds `*?` into "consume one, then star").
pub fn parse(pattern: &[u8]) -> Parsed {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while i < pattern.len() {
        let c = pattern[i];
        match c {
            0 => return Parsed::Irregular,
            b'*' | b'?' => {
                let mut star = false;
                while i < pattern.len() && matches!(pattern[i], b'*' | b'?') {
                    if pattern[i] == b'*' {
                        star = true;
                    } else {
                        tokens.push(Token::Any);
                    }
                    i += 1;
                }
                if star {
                    tokens.push(Token::Star);
                }
                continue;
            }
            b'\\' => {
                // A trailing backslash makes glibc's fnmatch fail on every string.
                match pattern.get(i + 1) {
                    None | Some(0) => return Parsed::Irregular,
                    Some(&e) => tokens.push(Token::Literal(e)),
                }
                i += 2;
                continue;
            }
            b'[' => match parse_bracket(&pattern[i + 1..]) {
                Some((set, used)) => {
                    tokens.push(Token::Class(set));
                    i += 1 + used;
                    continue;
                }
                None => return Parsed::Irregular,
            },
            _ => tokens.push(Token::Literal(c)),
        }
        i += 1;
    }
    Parsed::Tokens(tokens)
}

/// Parses the bracket expression that follows a `[`; returns the set and the bytes consumed
/// (through the closing `]`), or `None` for anything irregular.
///
/// Accepted: an optional `!` or `^` (glibc negates with `^` too unless POSIXLY_CORRECT is set; we
/// always do), then members that are plain bytes, `\x` escapes or ranges `a-z` (byte order, which is
/// the collation order of the C locale), a `]` allowed as the first member. A `[` anywhere inside
/// is irregular, because `[:`, `[=` and `[.` open locale-dependent constructs and glibc's scan for
/// the closing bracket after an early match treats them differently from its main loop.
fn parse_bracket(p: &[u8]) -> Option<(ByteSet, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut set = ByteSet::default();
    let mut first = true;
    loop {
        let mut c = *p.get(i)?;
        match c {
            0 | b'[' => return None,
            b']' if !first => {
                i += 1;
                break;
            }
            b'\\' => {
                c = *p.get(i + 1)?;
                if c == 0 {
                    return None;
                }
                i += 2;
            }
            _ => i += 1,
        }
        first = false;
        // glibc: a member followed by `-` and then anything but `]` or the end is a range.
        if p.get(i) == Some(&b'-') && !matches!(p.get(i + 1), None | Some(b']') | Some(0)) {
            let mut end = p[i + 1];
            let mut used = 2;
            if end == b'[' {
                return None;
            }
            if end == b'\\' {
                end = *p.get(i + 2)?;
                if end == 0 {
                    return None;
                }
                used = 3;
            }
            i += used;
            if c <= end {
                set.insert_range(c, end);
            }
        } else {
            set.insert(c);
        }
    }
    if negate {
        set.negate();
    }
    Some((set, i))
}

/// Position of the first `*`, `?` or `[`: where libkmod's trie walk stops comparing bytes and
/// starts calling fnmatch.
pub fn literal_prefix_len(pattern: &[u8]) -> usize {
    pattern
        .iter()
        .position(|c| matches!(c, b'*' | b'?' | b'['))
        .unwrap_or(pattern.len())
}

/// One fnmatch pattern compiled for repeated use without allocating: regular patterns match
/// on their tokens, the rest through libc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Glob {
    Tokens(Vec<Token>),
    Irregular(Vec<u8>),
}

impl Glob {
    pub fn new(pattern: &[u8]) -> Glob {
        match parse(pattern) {
            Parsed::Tokens(t) => Glob::Tokens(t),
            Parsed::Irregular => Glob::Irregular(pattern.to_vec()),
        }
    }

    pub fn matches(&self, s: &[u8]) -> bool {
        match self {
            Glob::Tokens(t) => match_tokens(t, s),
            Glob::Irregular(p) => libc_fnmatch(p, s),
        }
    }
}

/// Greedy matching with backtracking to the last `*` only: a later star can always absorb what
/// an earlier one would have, so remembering one star is enough (linear in practice).
fn match_tokens(t: &[Token], s: &[u8]) -> bool {
    let (mut ti, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if let Some(tok) = t.get(ti) {
            let step = match *tok {
                Token::Star => {
                    star = Some((ti, si));
                    ti += 1;
                    continue;
                }
                Token::Any => true,
                Token::Literal(b) => b == s[si],
                Token::Class(set) => set.contains(s[si]),
            };
            if step {
                ti += 1;
                si += 1;
                continue;
            }
        }
        match star {
            Some((st, ss)) => {
                ti = st + 1;
                si = ss + 1;
                star = Some((st, ss + 1));
            }
            None => return false,
        }
    }
    t[ti..].iter().all(|tok| *tok == Token::Star)
}

/// `fnmatch(pattern, string, 0) == 0` for one-off matches (modprobe.d names): a pattern
/// without `*`, `?`, `[` or `\` matches exactly itself, so those skip the C call and its copies.
pub fn fnmatch(pattern: &[u8], string: &[u8]) -> bool {
    if !pattern
        .iter()
        .any(|c| matches!(c, b'*' | b'?' | b'[' | b'\\'))
    {
        return pattern == string && !string.contains(&0);
    }
    libc_fnmatch(pattern, string)
}

/// libc's `fnmatch(pattern, string, 0) == 0`. Strings with a NUL byte cannot be passed to C and
/// never match (a kernel MODALIAS cannot contain one).
pub fn libc_fnmatch(pattern: &[u8], string: &[u8]) -> bool {
    let (Ok(p), Ok(s)) = (
        std::ffi::CString::new(pattern),
        std::ffi::CString::new(string),
    ) else {
        return false;
    };
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    unsafe { libc::fnmatch(p.as_ptr(), s.as_ptr(), 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(pattern: &str) -> ByteSet {
        match parse(pattern.as_bytes()) {
            Parsed::Tokens(t) => match t[..] {
                [Token::Class(s)] => s,
                _ => panic!("{pattern}: {t:?}"),
            },
            Parsed::Irregular => panic!("{pattern}: irregular"),
        }
    }

    #[test]
    fn star_question_runs_are_canonical() {
        assert_eq!(
            parse(b"a*?*b"),
            Parsed::Tokens(vec![
                Token::Literal(b'a'),
                Token::Any,
                Token::Star,
                Token::Literal(b'b')
            ])
        );
    }

    #[test]
    fn brackets() {
        let s = class_of("[]a-c-]");
        for b in [b']', b'a', b'b', b'c', b'-'] {
            assert!(s.contains(b), "{}", b as char);
        }
        assert!(!s.contains(b'd'));
        let s = class_of("[!0-9]");
        assert!(!s.contains(b'5') && s.contains(b'x') && s.contains(0xff));
        assert_eq!(class_of("[z-a]"), ByteSet::default());
        assert!(class_of("[\\]]").contains(b']'));
    }

    #[test]
    fn irregular_syntax_is_left_to_libc() {
        for p in ["a\\", "[abc", "[[:alpha:]]", "[a-[]", "x[", "[!]"] {
            assert_eq!(parse(p.as_bytes()), Parsed::Irregular, "{p}");
        }
    }
}
