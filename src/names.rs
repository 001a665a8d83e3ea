//! Module-name and alias normalisation, exactly as libkmod does it.

/// The normalised alias could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasError {
    /// A `[` without its `]`, or a `]` outside brackets (libkmod's `alias_normalize` refuses both).
    UnmatchedBracket,
}

impl std::fmt::Display for AliasError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unmatched bracket")
    }
}

/// libkmod's `alias_normalize`: `-` becomes `_` outside `[...]`; bracket contents are copied
/// unchanged; an unbalanced bracket is an error. Applied to lookup keys and, by depmod, to every
/// pattern it writes into `modules.alias.bin`.
///
/// One deliberate difference: libkmod copies into a `PATH_MAX` buffer and silently cuts longer
/// strings at 4,095 bytes; we keep the whole string so the answer is fnmatch's on the real input.
#[inline(always)]
pub fn normalize_alias(alias: &[u8], out: &mut Vec<u8>) -> Result<KeyShape, AliasError> {
    // Longer keys (`cpu:` feature lists run to hundreds of bytes) are faster with memchr's
    // wider scans, which stop at the first `:`.
    #[cfg(target_arch = "x86_64")]
    if alias.len() <= 64 {
        if let Some(shape) = sse2::normalize_without_brackets(alias, out) {
            return Ok(shape);
        }
    }
    normalize_alias_bytewise(alias, out)
}

/// What a lookup needs to know about a normalised key besides its bytes, found while
/// normalising so that the key is scanned once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyShape {
    /// It has a `:` (every MODALIAS does; no module name does).
    pub colon: bool,
    /// It has a `*`, `?` or `[`: a key that is itself a pattern.
    pub wildcard: bool,
    /// The literal table's hash of the normalised key, when the vector pass made it from its
    /// registers (keys of 8 to 64 bytes without brackets). Hashing the output instead read it
    /// back right after the overlapping vector stores that wrote it: a load that spans two
    /// stores cannot be forwarded from them and waits until they reach the cache, which cost a
    /// `platform:` lookup about 6 ns of its 23 (profiling harness, alternately).
    pub hash: Option<u64>,
}

/// [`normalize_alias`] on any target, with memchr: the reference for the vector version.
fn normalize_alias_bytewise(alias: &[u8], out: &mut Vec<u8>) -> Result<KeyShape, AliasError> {
    out.clear();
    out.reserve(alias.len());
    let mut i = 0;
    // Copy the plain runs wholesale; only `-`, `[` and `]` need a decision.
    while let Some(off) = memchr::memchr3(b'-', b'[', b']', &alias[i..]) {
        out.extend_from_slice(&alias[i..i + off]);
        i += off;
        match alias[i] {
            b'-' => {
                out.push(b'_');
                i += 1;
            }
            b']' => return Err(AliasError::UnmatchedBracket),
            _ => {
                let close =
                    memchr::memchr(b']', &alias[i..]).ok_or(AliasError::UnmatchedBracket)?;
                out.extend_from_slice(&alias[i..=i + close]);
                i += close + 1;
            }
        }
    }
    out.extend_from_slice(&alias[i..]);
    Ok(KeyShape {
        colon: memchr::memchr(b':', out).is_some(),
        wildcard: memchr::memchr3(b'*', b'?', b'[', out).is_some(),
        hash: None,
    })
}

/// The common case, a key without brackets, sixteen bytes at a time: copy, turn every `-` into
/// `_`, and note `:` and `*`/`?` on the way. SSE2 is part of x86-64, so no detection is needed.
/// Lookups of 20- to 60-byte keys spent more time in the four memchr calls this replaces
/// (normalise, then look for `:` and for wildcards, twice) than in the hash probe they serve.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::KeyShape;
    use crate::matcher::literal::{hash_before, hash_finish, hash_last};
    use std::arch::x86_64::*;

    /// None when the key has a `[` or `]` (those need the bracket rules of the byte-wise path)
    /// or is over 64 bytes long.
    ///
    /// Every byte of `out` is written by a vector store straight into its spare capacity:
    /// zero-filling it first, or copying a short key through a padded buffer, were calls into
    /// libc's memset and memcpy that cost more than the scan itself on a 20-byte key. The
    /// literal table's hash is made from the same vectors (see [`KeyShape::hash`]).
    ///
    /// Always inlined: once the shape carried the hash, the compiler called this instead and
    /// returned the shape through the stack, where the resolver read it back with one 16-byte
    /// load over narrower stores, the same stall as above (7 ns a `platform:` lookup).
    #[inline(always)]
    pub(super) fn normalize_without_brackets(alias: &[u8], out: &mut Vec<u8>) -> Option<KeyShape> {
        let n = alias.len();
        if n > 64 {
            return None;
        }
        out.clear();
        out.reserve(n);
        let (src, dst) = (alias.as_ptr(), out.as_mut_ptr());
        let (mut colon, mut wildcard) = (0, 0);
        // The chunk `v` made normal, with its flags noted; None if it has a bracket.
        let mut scan = |v| {
            let (to, c, w, brackets) = chunk(v);
            (colon, wildcard) = (colon | c, wildcard | w);
            (!brackets).then_some(to)
        };
        let mut hash = None;
        // SAFETY: every load reads 16 or 8 bytes inside `alias` and every store writes the
        // same range of `out`'s capacity, which is at least `n`; the last chunk overlaps the
        // one before it, so the overlap is written twice with the same bytes and the flags
        // only accumulate. `set_len` comes after every byte below `n` is written.
        unsafe {
            let words = |v: __m128i| (low_word(v), low_word(_mm_unpackhi_epi64(v, v)));
            if n >= 16 {
                // The first and the last 16 bytes, then any between (keys over 32 bytes),
                // hashed in the order `hash` reads them.
                let first = scan(_mm_loadu_si128(src.cast()))?;
                let last = scan(_mm_loadu_si128(src.add(n - 16).cast()))?;
                _mm_storeu_si128(dst.cast(), first);
                let (lo, hi) = words(last);
                let mut h = hash_last(lo, hi);
                if n > 16 {
                    let (lo, hi) = words(first);
                    h = hash_before(h, lo, hi);
                }
                let mut at = 16;
                while at + 16 < n {
                    let middle = scan(_mm_loadu_si128(src.add(at).cast()))?;
                    _mm_storeu_si128(dst.add(at).cast(), middle);
                    let (lo, hi) = words(middle);
                    h = hash_before(h, lo, hi);
                    at += 16;
                }
                _mm_storeu_si128(dst.add(n - 16).cast(), last);
                hash = Some(hash_finish(h, n));
            } else if n >= 8 {
                // The upper half of each load is zero, which is none of the bytes looked for.
                let first = scan(_mm_loadl_epi64(src.cast()))?;
                let last = scan(_mm_loadl_epi64(src.add(n - 8).cast()))?;
                _mm_storel_epi64(dst.cast(), first);
                _mm_storel_epi64(dst.add(n - 8).cast(), last);
                hash = Some(hash_finish(hash_last(low_word(first), low_word(last)), n));
            } else {
                for i in 0..n {
                    let b = *src.add(i);
                    match b {
                        b'[' | b']' => return None,
                        b':' => colon = 1,
                        b'*' | b'?' => wildcard = 1,
                        _ => {}
                    }
                    *dst.add(i) = if b == b'-' { b'_' } else { b };
                }
            }
            out.set_len(n);
        }
        Some(KeyShape {
            colon: colon != 0,
            wildcard: wildcard != 0,
            hash,
        })
    }

    /// The low eight bytes of `v` as a little-endian word.
    #[inline]
    fn low_word(v: __m128i) -> u64 {
        // SAFETY: SSE2 is always present on x86-64; a register move.
        unsafe { _mm_cvtsi128_si64(v) as u64 }
    }

    /// `v` with every `-` made `_`, masks of `:` and of `*`/`?` in `v`, and whether it has a
    /// bracket.
    #[inline]
    fn chunk(v: __m128i) -> (__m128i, i32, i32, bool) {
        // SAFETY: SSE2 is always present on x86-64; these are register operations only.
        unsafe {
            let eq = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
            let brackets = _mm_movemask_epi8(_mm_or_si128(eq(b'['), eq(b']')));
            let colon = _mm_movemask_epi8(eq(b':'));
            let wildcard = _mm_movemask_epi8(_mm_or_si128(eq(b'*'), eq(b'?')));
            let dash = _mm_and_si128(eq(b'-'), _mm_set1_epi8((b'-' ^ b'_') as i8));
            (_mm_xor_si128(v, dash), colon, wildcard, brackets != 0)
        }
    }
}

/// libkmod's `modname_normalize`: `-` becomes `_` and the name ends at the first `.`.
pub fn normalize_modname(name: &str) -> String {
    name.split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| if c == '-' { '_' } else { c })
        .collect()
}

/// The module name of a path in `modules.dep`, `modules.builtin` or `modules.order`.
pub fn modname_from_path(path: &str) -> String {
    let name: Vec<u8> = modname_bytes(path.as_bytes()).collect();
    // Cut at ASCII bytes and with one ASCII byte replaced by another: still UTF-8.
    String::from_utf8(name).expect("a module name cut from UTF-8 at ASCII bytes")
}

/// [`modname_from_path`] byte by byte, without allocating: the file name up to its first `.`,
/// dashes as underscores.
pub fn modname_bytes(path: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let file = &path[memchr::memrchr(b'/', path).map_or(0, |i| i + 1)..];
    let name = &file[..memchr::memchr(b'.', file).unwrap_or(file.len())];
    name.iter().map(|&b| if b == b'-' { b'_' } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_normalisation() {
        let mut out = Vec::new();
        normalize_alias(b"of:N*T*Cfsl,imx6q-pcie[a-z]-x", &mut out).unwrap();
        assert_eq!(out, b"of:N*T*Cfsl,imx6q_pcie[a-z]_x");
        assert!(normalize_alias(b"a[b", &mut out).is_err());
        assert!(normalize_alias(b"a]b", &mut out).is_err());
        // libkmod stops a bracket at its first `]`, so a leading `]` member leaves one over.
        assert!(normalize_alias(b"[]ab]", &mut out).is_err());
    }

    /// The vector path against the byte-wise one, on keys of every length around the chunk
    /// size with the bytes that matter at every position.
    #[test]
    fn both_paths_agree() {
        let alphabet = b"ab-_:*?[]x";
        let mut rng = crate::test_rng::XorShift(0x2545_F491_4F6C_DD1D);
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        for len in 0..70 {
            for _ in 0..300 {
                let key: Vec<u8> = (0..len)
                    .map(|_| {
                        // Mostly plain bytes, so that bracket-free keys are common.
                        let r = (rng.next() % 40) as usize;
                        if r < alphabet.len() {
                            alphabet[r]
                        } else {
                            b'q'
                        }
                    })
                    .collect();
                let a = normalize_alias(&key, &mut fast);
                let b = normalize_alias_bytewise(&key, &mut slow);
                let without_hash =
                    |r: Result<KeyShape, AliasError>| r.map(|s| KeyShape { hash: None, ..s });
                assert_eq!(without_hash(a), without_hash(b), "{key:?}");
                if let Ok(shape) = a {
                    assert_eq!(fast, slow, "{key:?}");
                    if let Some(h) = shape.hash {
                        assert_eq!(h, crate::matcher::literal::hash(&fast), "{key:?}");
                    }
                    let vector_pass = cfg!(target_arch = "x86_64")
                        && (8..=64).contains(&len)
                        && !key.contains(&b'[')
                        && !key.contains(&b']');
                    assert_eq!(shape.hash.is_some(), vector_pass, "{key:?}");
                }
            }
        }
    }

    #[test]
    fn module_names() {
        assert_eq!(
            modname_from_path("kernel/drivers/net/e1000e/e1000e.ko.xz"),
            "e1000e"
        );
        assert_eq!(
            modname_from_path("kernel/sound/snd-hda-intel.ko"),
            "snd_hda_intel"
        );
    }
}
