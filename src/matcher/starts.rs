//! Which keys can reach any pattern of an automaton, answered before walking it.
//!
//! A key that the literal table does not hold still walks the general automaton, and for most
//! buses the walk dies a few nodes in: of the 268 `platform:` patterns in Debian's 6.12 tree
//! only `platform:hmem*`, `platform:hmem_platform*` and `platform:e820_pmem*` have a wildcard,
//! so `platform:gpio_exaX` reads `p`, `latform:`, fails to find `g` among the labels, and
//! returns. Those few nodes were a third of such a lookup: the search's setup, two node
//! decodes, and branches that go one way or the other from key to key.
//!
//! Every pattern starts with a literal run (its *start*) before its first wildcard, and a key
//! can only match a pattern that it begins with. A MODALIAS has its bus before the first `:`,
//! so the filter keeps, for every start that reaches a `:`, the start cut one byte after that
//! colon (`platform:h`, `platform:e`, `usb:v`, `of:N`, and `foo:` when `*` follows the colon).
//! A key's first colon is where such a start has it, so a key needs only its own cut, one or
//! two of them, looked up in a bit table. Starts without a colon (`acpi*:`, `dmi*:`,
//! `char-major-99-*`) keep only their first byte: every key beginning with it is walked.
//!
//! The filter is derived from the automaton's own top levels when it is built or loaded, so it
//! describes exactly the patterns the walk would meet. It can say "walk" for a key that then
//! finds nothing (a bit shared by two cuts), never "skip" for a key that a pattern matches.

/// Cuts are at most this long: a 16-byte word. A start with no colon in its first 15 bytes is
/// kept by its first byte.
const CUT_MAX: usize = 16;
/// Bits in the table of cuts: a few dozen cuts per tree, so few false "walk" answers.
const CUT_BITS: usize = 4096;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StartFilter {
    /// Some pattern starts with a wildcard: every key is walked.
    always: bool,
    /// First bytes of starts without a colon (or too long to cut).
    first_bytes: [u64; 4],
    /// Cuts, by [`cut_bit`].
    cuts: Box<[u64; CUT_BITS / 64]>,
    /// Bit `c` is set when some cut ends right at its colon, at `c` (`foo:*`): only keys with
    /// their colon there need a second look-up.
    colon_cuts: u16,
}

impl Default for StartFilter {
    fn default() -> Self {
        StartFilter {
            always: false,
            first_bytes: [0; 4],
            cuts: Box::new([0; CUT_BITS / 64]),
            colon_cuts: 0,
        }
    }
}

/// `CUT_MASKS[len]` keeps a number's low `len` bytes: a load, where a variable shift of a
/// 128-bit number is a dozen instructions.
const CUT_MASKS: [u128; CUT_MAX + 1] = {
    let mut masks = [0; CUT_MAX + 1];
    let mut len = 1;
    while len <= CUT_MAX {
        masks[len] = u128::MAX >> (128 - 8 * len);
        len += 1;
    }
    masks
};

/// The first `len` bytes of `head` (0 to 16) as one number, the rest zero.
#[inline]
fn cut(head: u128, len: usize) -> u128 {
    head & CUT_MASKS[len]
}

#[inline]
fn cut_bit(cut: u128, len: usize) -> usize {
    let x = (cut as u64) ^ ((cut >> 64) as u64).rotate_left(29) ^ len as u64;
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize
}

/// The first 16 bytes of `key` as a little-endian number, zero after its end.
#[inline]
fn head(key: &[u8]) -> u128 {
    match key.get(..CUT_MAX) {
        Some(h) => u128::from_le_bytes(h.try_into().unwrap()),
        None => {
            let mut bytes = [0u8; CUT_MAX];
            bytes[..key.len()].copy_from_slice(key);
            u128::from_le_bytes(bytes)
        }
    }
}

/// The position of the first `:` in `head`'s 16 bytes, if any.
#[cfg(target_arch = "x86_64")]
#[inline]
fn first_colon(head: u128) -> Option<usize> {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86-64; these are register operations only.
    let mask = unsafe {
        let v = _mm_set_epi64x((head >> 64) as i64, head as i64);
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b':' as i8)))
    };
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

#[cfg(not(target_arch = "x86_64"))]
use first_colon_in_words as first_colon;

/// [`first_colon`] on any target: a zero byte of `head ^ ':'` found with the word trick, which
/// marks the lowest zero exactly (its false marks can only stand above a true one).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn first_colon_in_words(head: u128) -> Option<usize> {
    const ONES: u128 = u128::MAX / 255;
    let x = head ^ (ONES * u128::from(b':'));
    let zeros = x.wrapping_sub(ONES) & !x & (ONES << 7);
    (zeros != 0).then(|| zeros.trailing_zeros() as usize / 8)
}

impl StartFilter {
    /// Notes that a pattern's start runs at least to the end of `path`; says whether that is
    /// all the filter needs from this path (its cut, or its first byte, is kept).
    pub(crate) fn note_prefix(&mut self, path: &[u8]) -> bool {
        match path.iter().position(|&b| b == b':') {
            Some(colon) if path.len() == colon + 2 => {
                self.keep_cut(path);
                true
            }
            _ if path.len() >= CUT_MAX => {
                self.keep_first_byte(path);
                true
            }
            _ => false,
        }
    }

    /// Notes a start that ends at the end of `path`: a wildcard follows, or a pattern ends.
    pub(crate) fn note_start(&mut self, path: &[u8]) {
        if path.contains(&b':') {
            self.keep_cut(path);
        } else {
            self.keep_first_byte(path);
        }
    }

    fn keep_cut(&mut self, path: &[u8]) {
        let bit = cut_bit(head(path), path.len());
        self.cuts[bit / 64] |= 1 << (bit % 64);
        if path.last() == Some(&b':') {
            self.colon_cuts |= 1 << (path.len() - 1);
        }
    }

    #[inline(always)]
    fn has_cut(&self, head: u128, len: usize) -> bool {
        let bit = cut_bit(cut(head, len), len);
        self.cuts[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn keep_first_byte(&mut self, path: &[u8]) {
        match path.first() {
            Some(&b) => self.first_bytes[b as usize / 64] |= 1 << (b % 64),
            None => self.always = true,
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.cuts)
    }

    /// Whether some pattern may match `key`; false only when none can.
    #[inline]
    pub(crate) fn may_match(&self, key: &[u8]) -> bool {
        let Some(&first) = key.first() else {
            return self.always;
        };
        if self.always || self.first_bytes[first as usize / 64] & (1 << (first % 64)) != 0 {
            return true;
        }
        let head = head(key);
        // A cut ends one or two bytes after the key's first colon, which must stand where the
        // cut has its own. Cuts end within 16 bytes, so a colon at 15 or later has none.
        let Some(colon) = first_colon(head).filter(|&c| c + 1 < CUT_MAX) else {
            return false;
        };
        key.len() > colon + 1 && self.has_cut(head, colon + 2)
            || self.colon_cuts & (1 << colon) != 0 && self.has_cut(head, colon + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_colon_is_the_lowest() {
        for text in [
            &b"platform:gpio"[..],
            b"a:b:c",
            b":",
            b"no colon here",
            b"0123456789abcde:",
            b"0123456789abcdef:",
            b"\x3b:\x3a",
        ] {
            let want = text.iter().take(16).position(|&b| b == b':');
            assert_eq!(first_colon(head(text)), want, "{text:?}");
            assert_eq!(first_colon_in_words(head(text)), want, "{text:?}");
        }
    }

    #[test]
    fn cuts_of_a_head_are_its_prefixes() {
        let key = b"platform:gpio_exar";
        for len in 1..=16 {
            assert_eq!(cut(head(key), len), head(&key[..len]), "{len}");
        }
    }
}
