//! "Does the key hold one of these short strings?", asked of nearly every PCI key.
//!
//! The PCI class patterns (`pci:v*d*sv*sd*bc0Csc03i30*`) are searched only when a key holds a
//! string each of them needs (`c03i`, `7i02`, ... in Debian's 6.12 tree; see `needed_strings` in
//! the parent module). Almost no key does, so what costs is saying no. aho-corasick's Teddy
//! took about 415 instructions to say it for a 40-byte key, a sixth of the whole PCI lookup:
//! its searcher is built for long haystacks (a dispatch, a rolling-hash fallback for short
//! ones, per-call setup). [`Fingerprints`] is the same idea cut to this use, about 170.
//!
//! A cheaper filter was tried first and failed on the data: two "rare" bytes of each string
//! (not hexadecimal digits) compared at their offsets, sixteen positions at once. The strings
//! are pieces of class fields (`c03i` of `sc03i30`), and every PCI key has such fields, so
//! their letters (`s`, `c`, `i`) stand at the right distances in every key and nearly every
//! key had positions to confirm; the digits that tell the strings apart are the commonest
//! bytes there. A PCI lookup took 317 ns with it against 245 with Teddy.
//!
//! Sets the fingerprints do not suit (a string under three bytes, more than 64 strings, a CPU
//! without SSSE3, another architecture) go to [`ContainsSet`].

use super::automaton::{ContainsSet, same_bytes};

/// A set of strings, asked only whether one of them occurs in a key.
#[derive(Debug)]
pub(crate) struct NeedleSet {
    strings: Vec<Vec<u8>>,
    search: Search,
}

impl Clone for NeedleSet {
    fn clone(&self) -> Self {
        NeedleSet::new(self.strings.clone())
    }
}

#[derive(Debug)]
enum Search {
    Fingerprints(Fingerprints),
    Other(ContainsSet),
}

/// Teddy's buckets: one bit of a byte each.
const BUCKETS: usize = 8;
/// More strings than this share buckets so widely that most positions would need confirming.
const MAX_STRINGS: usize = 64;

/// A block search over `$lanes` start positions at a time, written once for SSSE3 and once
/// for AVX2 (the same steps with the other width's intrinsics).
#[cfg(target_arch = "x86_64")]
macro_rules! blocks {
    (
        $(#[$doc:meta])* $name:ident, $feature:literal, $lanes:literal, $vec:ident,
        $loadu:ident, $load:ident, $set1:ident, $and:ident, $srli:ident,
        $shuffle:ident, $cmpeq:ident, $zero:ident, $movemask:ident, $storeu:ident
    ) => {
        $(#[$doc])*
        #[target_feature(enable = $feature)]
        unsafe fn $name<const W: usize>(&self, strings: &[Vec<u8>], key: &[u8]) -> bool {
            use std::arch::x86_64::*;
            let last = key.len() - $lanes - (W - 1);
            let nibble = $set1(15);
            let mut at = 0;
            loop {
                let start = at.min(last);
                let mut left = $set1(-1);
                for k in 0..W {
                    let [low, high] = &self.tables[k];
                    // SAFETY: `start + k + $lanes <= last + W - 1 + $lanes == key.len()`; a
                    // `Row` is 32 bytes aligned to 32.
                    let (v, low, high): ($vec, $vec, $vec) = unsafe {
                        (
                            $loadu(key.as_ptr().add(start + k).cast()),
                            $load(low.0.as_ptr().cast()),
                            $load(high.0.as_ptr().cast()),
                        )
                    };
                    let by_low = $shuffle(low, $and(v, nibble));
                    let by_high = $shuffle(high, $and($srli(v, 4), nibble));
                    left = $and(left, $and(by_low, by_high));
                }
                let none = $movemask($cmpeq(left, $zero())) as u32;
                let all = u32::MAX >> (32 - $lanes);
                if none != all {
                    let mut buckets = [0u8; $lanes];
                    // SAFETY: one vector's bytes into an array of as many.
                    unsafe { $storeu(buckets.as_mut_ptr().cast(), left) };
                    if self.confirm_block(strings, key, start, &buckets, !none & all) {
                        return true;
                    }
                }
                if start == last {
                    return false;
                }
                at += $lanes;
            }
        }
    };
}

/// A nibble table, twice over (one copy per 128-bit lane of an AVX2 shuffle), aligned so
/// that a shuffle can take it straight from memory.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Row([u8; 32]);

/// Teddy, cut down to what a modalias needs: keys of tens of bytes, a handful of short
/// strings. Each string goes into one of eight buckets. For each of the first `width` bytes of
/// a string, two 16-entry tables (by the byte's low and high nibble) say which buckets have a
/// string with such a byte there. Thirty-two (AVX2) or sixteen (SSSE3) start positions are
/// tested at once: a shuffle per nibble looks up each position's bytes, and the buckets left
/// after and-ing them all are the only ones whose strings can start there. Those are then
/// compared byte for byte.
#[derive(Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Fingerprints {
    /// Per byte offset below `width`: the buckets by low nibble, then by high nibble.
    tables: [[Row; 2]; 4],
    /// Per bucket, its strings (indexes).
    members: [Vec<u16>; BUCKETS],
    width: usize,
    avx2: bool,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Fingerprints {
    fn build(strings: &[Vec<u8>]) -> Option<Fingerprints> {
        #[cfg(target_arch = "x86_64")]
        let (ssse3, avx2) = (
            std::arch::is_x86_feature_detected!("ssse3"),
            std::arch::is_x86_feature_detected!("avx2"),
        );
        #[cfg(not(target_arch = "x86_64"))]
        let (ssse3, avx2) = (false, false);
        let shortest = strings.iter().map(Vec::len).min()?;
        // One or two bytes at a position say too little; fingerprints of four find almost
        // only real occurrences.
        let width = shortest.min(4);
        if !ssse3 || width < 3 || strings.len() > MAX_STRINGS {
            return None;
        }
        // Neighbours in sorted order share leading bytes, so a bucket of them accepts few
        // other byte combinations.
        let mut order: Vec<usize> = (0..strings.len()).collect();
        order.sort_by_key(|&i| &strings[i]);
        let mut tables = [[Row::default(); 2]; 4];
        let mut members: [Vec<u16>; BUCKETS] = Default::default();
        for (rank, &i) in order.iter().enumerate() {
            let bucket = rank * BUCKETS / strings.len();
            members[bucket].push(i as u16);
            for (k, &b) in strings[i][..width].iter().enumerate() {
                for lane in [0, 16] {
                    tables[k][0].0[lane + usize::from(b & 15)] |= 1 << bucket;
                    tables[k][1].0[lane + usize::from(b >> 4)] |= 1 << bucket;
                }
            }
        }
        Some(Fingerprints {
            tables,
            members,
            width,
            avx2,
        })
    }

    /// Whether one of the strings in `buckets` (a bit set) starts at `at`.
    #[inline]
    fn confirm(&self, strings: &[Vec<u8>], key: &[u8], buckets: u8, at: usize) -> bool {
        (0..BUCKETS)
            .filter(|&b| buckets & (1 << b) != 0)
            .flat_map(|b| &self.members[b])
            .any(|&i| {
                let s = &strings[i as usize];
                key.len() - at >= s.len() && same_bytes(&key[at..at + s.len()], s)
            })
    }

    /// Every start position's buckets in `left`, one byte each: confirms the nonzero ones.
    #[inline]
    fn confirm_block(
        &self,
        strings: &[Vec<u8>],
        key: &[u8],
        start: usize,
        buckets: &[u8],
        mut left: u32,
    ) -> bool {
        while left != 0 {
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            if self.confirm(strings, key, buckets[i], start + i) {
                return true;
            }
        }
        false
    }

    fn occurs_in(&self, strings: &[Vec<u8>], key: &[u8]) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let reach = self.width - 1;
            // SAFETY: `build` made sure the CPU has SSSE3, and AVX2 when `avx2` is set.
            unsafe {
                match self.width {
                    4 if self.avx2 && key.len() >= 32 + reach => {
                        return self.blocks_avx2::<4>(strings, key);
                    }
                    3 if self.avx2 && key.len() >= 32 + reach => {
                        return self.blocks_avx2::<3>(strings, key);
                    }
                    4 if key.len() >= 16 + reach => return self.blocks_ssse3::<4>(strings, key),
                    3 if key.len() >= 16 + reach => return self.blocks_ssse3::<3>(strings, key),
                    _ => {}
                }
            }
        }
        // Too short for a block of start positions: rare, and short.
        strings
            .iter()
            .any(|s| s.len() <= key.len() && key.windows(s.len()).any(|w| same_bytes(w, s)))
    }

    #[cfg(target_arch = "x86_64")]
    blocks!(
        /// Sixteen start positions at a time. A block starting at `at` reads `key[at + k..]`
        /// sixteen bytes long for each fingerprinted offset `k < W`, so the last block starts
        /// at `len - 16 - (W - 1)` and overlaps the one before.
        blocks_ssse3, "ssse3", 16, __m128i,
        _mm_loadu_si128, _mm_load_si128, _mm_set1_epi8, _mm_and_si128, _mm_srli_epi16,
        _mm_shuffle_epi8, _mm_cmpeq_epi8, _mm_setzero_si128, _mm_movemask_epi8, _mm_storeu_si128
    );
    #[cfg(target_arch = "x86_64")]
    blocks!(
        /// The same thirty-two start positions at a time, for keys of at least `32 + W - 1`
        /// bytes.
        blocks_avx2, "avx2", 32, __m256i,
        _mm256_loadu_si256, _mm256_load_si256, _mm256_set1_epi8, _mm256_and_si256,
        _mm256_srli_epi16, _mm256_shuffle_epi8, _mm256_cmpeq_epi8, _mm256_setzero_si256,
        _mm256_movemask_epi8, _mm256_storeu_si256
    );
}

impl NeedleSet {
    pub(crate) fn new(strings: Vec<Vec<u8>>) -> NeedleSet {
        let search = match Fingerprints::build(&strings) {
            Some(f) => Search::Fingerprints(f),
            None => Search::Other(ContainsSet::without_values(strings.clone())),
        };
        NeedleSet { strings, search }
    }

    pub(crate) fn strings(&self) -> &[Vec<u8>] {
        &self.strings
    }

    /// Whether any of the strings occurs in `key`.
    pub(crate) fn occurs_in(&self, key: &[u8]) -> bool {
        match &self.search {
            Search::Fingerprints(f) => f.occurs_in(&self.strings, key),
            Search::Other(set) => set.occurs_in(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

    /// Against a plain substring search, on keys of every length around the block size with
    /// the strings (and near misses of them) planted at every position.
    #[test]
    fn agrees_with_a_plain_search() {
        let sets: [&[&[u8]]; 6] = [
            &[b"c03i", b"7i02", b"3i20", b"Csc0", b"06bc", b"6sd0"],
            &[b"ab", b"ba"],
            &[b"xyz", b"0000x1", b"q"],
            &[b"00", b"0A"],
            &[b"long needle of nineteen"],
            // More strings than buckets, of three bytes and more: buckets are shared.
            &[
                b"06bc", b"2i10", b"39bc", b"3i10", b"3i20", b"3i40", b"6i01", b"6sd0", b"7i01",
                b"7i02", b"8i02", b"Csc0", b"c01i", b"c03i", b"c05i", b"c07i", b"sv0", b"d0000",
            ],
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let alphabet = b"0123456789ABCDEFabcdiqsvx:_";
        for strings in sets {
            let strings: Vec<Vec<u8>> = strings.iter().map(|s| s.to_vec()).collect();
            let set = NeedleSet::new(strings.clone());
            for len in 0..80 {
                for _ in 0..200 {
                    let mut key: Vec<u8> = (0..len)
                        .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                        .collect();
                    if len > 0 && rng.next() % 2 == 0 {
                        let s = &strings[(rng.next() % strings.len() as u64) as usize];
                        let at = (rng.next() % len as u64) as usize;
                        let n = s.len().min(len - at);
                        key[at..at + n].copy_from_slice(&s[..n]);
                        if rng.next() % 3 == 0 {
                            key[at + (rng.next() % n as u64) as usize] = b'_';
                        }
                    }
                    let want = strings
                        .iter()
                        .any(|s| key.windows(s.len()).any(|w| w == &s[..]));
                    assert_eq!(
                        set.occurs_in(&key),
                        want,
                        "{:?}",
                        String::from_utf8_lossy(&key)
                    );
                }
            }
        }
    }

    #[test]
    fn short_strings_go_elsewhere() {
        let set = NeedleSet::new(vec![b"d".to_vec(), b"defg".to_vec()]);
        assert!(matches!(set.search, Search::Other(_)));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("ssse3") {
            let set = NeedleSet::new(vec![b"c03i".to_vec(), b"7i02".to_vec()]);
            assert!(matches!(set.search, Search::Fingerprints(_)));
        }
    }
}
