//! Patterns without a wildcard, answered by one hash probe on the whole key.
//!
//! About one alias pattern in eight is a plain string (`platform:gpio_exar`, `i2c:tmp102`,
//! `spi:...`). In the automaton each costs a walk of its whole length through nodes that branch
//! widely (265 `platform:` names fan out under one node), while the question they ask is only
//! "is the key exactly this string". Taking them out of the automaton answers that with one
//! hash of the key, and leaves the automaton only the patterns that need it: for a `platform:`
//! key it now dies a few nodes in.
//!
//! A key found here is not searched further: [`super::PatternSet`] stores with each string the
//! values of every pattern that matches it, wildcards included (`platform:hmem` is matched by
//! `platform:hmem*` too), computed once when compiling.

use super::automaton::{Stored, same_bytes};

/// A slot's last word when nothing is stored there. No stored slot has it: it would name a
/// value list at the far end of a 2^31-entry array.
const EMPTY_MARK: u32 = u32::MAX;
const EMPTY: [u32; 4] = [0, 0, 0, EMPTY_MARK];
/// In a slot's last word: the rest is where the value list starts in `values`, not a value.
const LIST: u32 = 1 << 31;

/// A set of byte strings, each with the values of the patterns that are exactly that string.
///
/// The arrays are saved in the index file and used in place from its mapping, like the
/// automaton, so a daemon keeps resident only the pages its lookups touch.
#[derive(Clone, Debug)]
pub struct LiteralTable {
    /// Open addressing with linear probing, a power of two long and at most half full. A slot
    /// is `[hash, start, len, value]`: the string's hash (its upper half), where its bytes are
    /// in `bytes`, and its value, or, with [`LIST`] set, where `values` holds the count and
    /// then the values. Nearly every string has one value, so a hit reads the slot and the
    /// string and nothing else; a separate record per string was one more dependent load.
    pub(crate) slots: Stored<[u32; 4]>,
    pub(crate) bytes: Stored<u8>,
    pub(crate) values: Stored<u32>,
    /// Which (length, first byte) pairs some string has, by [`filter_bit`]: most keys of a bus
    /// without plain patterns (every PCI key, most USB keys) are turned away here without
    /// hashing 50 bytes or touching the table. Derived, not saved.
    filter: [u64; 64],
}

impl Default for LiteralTable {
    fn default() -> Self {
        LiteralTable {
            slots: Stored::default(),
            bytes: Stored::default(),
            values: Stored::default(),
            filter: [0; 64],
        }
    }
}

/// The word and bit of `filter` for a string; the empty string has its own.
#[inline]
fn filter_bit(s: &[u8]) -> (usize, u64) {
    let first = s.first().map_or(0, |&b| b & 63);
    (s.len().min(63), 1 << first)
}

impl LiteralTable {
    /// Groups `(string, value)` pairs by string, keeping the values of one string in input order.
    pub fn build<'a>(items: impl IntoIterator<Item = (&'a [u8], u32)>) -> LiteralTable {
        let mut items: Vec<(&[u8], u32, usize)> = items
            .into_iter()
            .enumerate()
            .map(|(i, (s, v))| (s, v, i))
            .collect();
        items.sort_by(|a, b| a.0.cmp(b.0).then(a.2.cmp(&b.2)));
        let groups: Vec<_> = items.chunk_by(|a, b| a.0 == b.0).collect();
        let (mut bytes, mut values) = (Vec::new(), Vec::new());
        let len = (groups.len() * 2).next_power_of_two().max(16);
        let mut slots = vec![EMPTY; len];
        // Distinct strings, so no probe sequence ever meets its own string.
        for group in &groups {
            let s = group[0].0;
            let value = match group {
                [(_, v, _)] if v & LIST == 0 => *v,
                _ => {
                    let at = values.len() as u32 | LIST;
                    values.push(group.len() as u32);
                    values.extend(group.iter().map(|g| g.1));
                    at
                }
            };
            let h = hash(s);
            let mut at = h as usize & (len - 1);
            while slots[at] != EMPTY {
                at = (at + 1) & (len - 1);
            }
            slots[at] = [(h >> 32) as u32, bytes.len() as u32, s.len() as u32, value];
            bytes.extend_from_slice(s);
        }
        let mut table = LiteralTable {
            slots: Stored::from_vec(slots),
            bytes: Stored::from_vec(bytes),
            values: Stored::from_vec(values),
            ..LiteralTable::default()
        };
        table.derive();
        table
    }

    /// A table from saved parts, checked so that a damaged file is an error, never a crash:
    /// every range lies inside its array, every value is below `value_limit`, and every string
    /// is found by a probe that ends at its own slot (so none is stored twice).
    pub(crate) fn from_parts(
        slots: Stored<[u32; 4]>,
        bytes: Stored<u8>,
        values: Stored<u32>,
        value_limit: u32,
    ) -> Result<LiteralTable, &'static str> {
        // A power of two long, and with an empty slot so that every probe ends.
        let shape_ok = slots.is_empty()
            || slots.len().is_power_of_two() && slots.iter().any(|s| s[3] == EMPTY_MARK);
        if !shape_ok {
            return Err("literal table damaged");
        }
        for slot in slots.iter().filter(|s| s[3] != EMPTY_MARK) {
            let [_, start, len, value] = *slot;
            if start as u64 + len as u64 > bytes.len() as u64 {
                return Err("literal pattern out of range");
            }
            let listed = if value & LIST == 0 {
                std::slice::from_ref(&slot[3])
            } else {
                let at = (value & !LIST) as usize;
                let count = *values.get(at).ok_or("literal pattern out of range")? as usize;
                values
                    .get(at + 1..)
                    .and_then(|rest| rest.get(..count))
                    .ok_or("literal pattern out of range")?
            };
            if listed.iter().any(|&v| v >= value_limit) {
                return Err("literal pattern value out of range");
            }
        }
        let mut table = LiteralTable {
            slots,
            bytes,
            values,
            ..LiteralTable::default()
        };
        for (i, slot) in table.slots.iter().enumerate() {
            if slot[3] == EMPTY_MARK {
                continue;
            }
            let string = table.string(slot);
            if table.probe(string, hash(string)) != Some(i) {
                return Err("literal pattern not found where it is stored");
            }
        }
        table.derive();
        Ok(table)
    }

    fn derive(&mut self) {
        let mut filter = [0u64; 64];
        for slot in self.slots.iter().filter(|s| s[3] != EMPTY_MARK) {
            let (word, bit) = filter_bit(self.string(slot));
            filter[word] |= bit;
        }
        self.filter = filter;
    }

    /// The slot of the string equal to `key`, whose [`hash`] is `h`. Ends: the table is never
    /// full (checked).
    #[inline]
    fn probe(&self, key: &[u8], h: u64) -> Option<usize> {
        let tag = (h >> 32) as u32;
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = h as usize & mask;
        loop {
            let slot = &self.slots[at];
            if slot[3] == EMPTY_MARK {
                return None;
            }
            if slot[0] == tag && slot[2] as usize == key.len() && same_bytes(self.string(slot), key)
            {
                return Some(at);
            }
            at = (at + 1) & mask;
        }
    }

    fn string(&self, slot: &[u32; 4]) -> &[u8] {
        &self.bytes[slot[1] as usize..][..slot[2] as usize]
    }

    /// How many distinct strings are stored (a count of the used slots).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s[3] != EMPTY_MARK).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the values of the string equal to `key`, if there is one, and says whether
    /// there was. `key_hash` is the key's hash (this module's `hash`) when the caller has it
    /// already.
    #[inline(always)]
    pub fn find(&self, key: &[u8], key_hash: Option<u64>, out: &mut Vec<u32>) -> bool {
        let (word, bit) = filter_bit(key);
        if self.filter[word] & bit == 0 {
            return false;
        }
        let h = key_hash.unwrap_or_else(|| hash(key));
        let Some(at) = self.probe(key, h) else {
            return false;
        };
        let value = self.slots[at][3];
        if value & LIST == 0 {
            out.push(value);
        } else {
            let at = (value & !LIST) as usize;
            let count = self.values[at] as usize;
            out.extend_from_slice(&self.values[at + 1..][..count]);
        }
        true
    }
}

const K: [u64; 4] = [
    0x243F_6A88_85A3_08D3,
    0x1319_8A2E_0370_7344,
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
];

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ (p >> 64) as u64
}

/// A folded-multiply hash (the full 128-bit product of two words, its halves xored), after
/// foldhash and wyhash. Modalias keys are 10 to 100 bytes; each 16 bytes cost one multiply,
/// and the two words of a 16-byte piece are independent, so a 20-byte `platform:` key hashes
/// in about two multiplies' latency, where a word-by-word chain took four. It needs no seed:
/// the strings are the kernel's, not an attacker's, and a collision only costs a probe.
///
/// A key of 8 bytes or more is hashed by 16-byte pieces: its last 16 bytes (two 8-byte words,
/// overlapping when shorter) with [`hash_last`], then those at 0, 16, 32, ... that end before
/// them with [`hash_before`], then [`hash_finish`]. These are the pieces that
/// `names::normalize_alias` makes normal one vector at a time, so it gives the hash too,
/// from its registers.
#[inline(always)]
pub(crate) fn hash(key: &[u8]) -> u64 {
    let word = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().unwrap());
    let n = key.len();
    // Every byte is read at least once; overlapping reads are fine, the length is mixed in.
    let h = if n >= 16 {
        let mut h = hash_last(word(n - 16), word(n - 8));
        let mut at = 0;
        while at + 16 < n {
            h = hash_before(h, word(at), word(at + 8));
            at += 16;
        }
        h
    } else if n >= 8 {
        hash_last(word(0), word(n - 8))
    } else if n >= 4 {
        let half = |at: usize| u64::from(u32::from_le_bytes(key[at..at + 4].try_into().unwrap()));
        hash_last(half(0), half(n - 4))
    } else if n > 0 {
        let b = u64::from(key[0]) | u64::from(key[n / 2]) << 8 | u64::from(key[n - 1]) << 16;
        fold(b ^ K[0], K[1])
    } else {
        K[0]
    };
    hash_finish(h, n)
}

/// [`hash`]'s start: the key's last 16 bytes as two words.
#[inline(always)]
pub(crate) fn hash_last(lo: u64, hi: u64) -> u64 {
    fold(lo ^ K[0], hi ^ K[1])
}

/// [`hash`]'s step for a piece before the last one.
#[inline(always)]
pub(crate) fn hash_before(h: u64, lo: u64, hi: u64) -> u64 {
    (h ^ fold(lo ^ K[2], hi ^ K[3])).rotate_left(23)
}

/// [`hash`]'s end, for a key of `n` bytes.
#[inline(always)]
pub(crate) fn hash_finish(h: u64, n: usize) -> u64 {
    fold(h ^ n as u64, K[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_equal_string() {
        let items: [(&[u8], u32); 5] = [
            (b"platform:serial8250", 3),
            (b"i2c:tmp102", 1),
            (b"platform:serial8250", 9),
            (b"", 4),
            (b"platform:serial825", 2),
        ];
        let t = LiteralTable::build(items);
        assert_eq!(t.len(), 4);
        let find = |k: &[u8]| {
            let mut out = Vec::new();
            t.find(k, None, &mut out);
            out
        };
        assert_eq!(find(b"platform:serial8250"), [3, 9]);
        assert_eq!(find(b"platform:serial825"), [2]);
        assert_eq!(find(b""), [4]);
        assert_eq!(find(b"i2c:tmp102"), [1]);
        assert!(find(b"i2c:tmp10").is_empty());
        assert!(find(b"platform:serial82500").is_empty());
    }

    /// Every byte of a key of any length takes part in its hash: changing any one byte
    /// changes it (a byte left unread would put all such keys on one probe sequence).
    #[test]
    fn every_byte_is_hashed() {
        let mut rng = crate::test_rng::XorShift(0x9E37_79B9_7F4A_7C15);
        for n in 0..80 {
            let key: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let h = hash(&key);
            for i in 0..n {
                let mut other = key.clone();
                other[i] ^= 1 << (i % 8);
                assert_ne!(hash(&other), h, "length {n}, byte {i}");
            }
            let mut longer = key.clone();
            longer.push(0);
            assert_ne!(hash(&longer), h, "length {n} and one zero byte more");
        }
    }

    #[test]
    fn a_string_with_several_values_keeps_them_in_order() {
        let t = LiteralTable::build([(&b"ab"[..], 5), (&b"cd"[..], LIST | 3), (&b"ab"[..], 2)]);
        let find = |k: &[u8]| {
            let mut out = Vec::new();
            t.find(k, None, &mut out);
            out
        };
        assert_eq!(find(b"ab"), [5, 2]);
        // A value with the list bit set is stored as a list of one, not taken for a list.
        assert_eq!(find(b"cd"), [LIST | 3]);
    }

    #[test]
    fn saved_parts_are_checked() {
        let t = LiteralTable::build([(&b"ab"[..], 0), (&b"cd"[..], 1), (&b"cd"[..], 0)]);
        let parts = |slots: Vec<[u32; 4]>, values: Vec<u32>, limit| {
            LiteralTable::from_parts(
                Stored::from_vec(slots),
                t.bytes.clone(),
                Stored::from_vec(values),
                limit,
            )
        };
        let (slots, values) = (t.slots.to_vec(), t.values.to_vec());
        let again = parts(slots.clone(), values.clone(), 2).unwrap();
        let mut out = Vec::new();
        again.find(b"cd", None, &mut out);
        assert_eq!(out, [1, 0]);
        assert_eq!(again.len(), 2);

        let used: Vec<usize> = (0..slots.len()).filter(|&i| slots[i] != EMPTY).collect();
        let with = |i: usize, slot: [u32; 4]| {
            let mut s = slots.clone();
            s[i] = slot;
            s
        };
        let [h, start, _, value] = slots[used[0]];
        let other_empty = (0..slots.len()).find(|&i| slots[i] == EMPTY).unwrap();
        assert!(
            parts(with(other_empty, slots[used[0]]), values.clone(), 2).is_err(),
            "stored twice"
        );
        assert!(parts(with(used[0], [h, start, 9, value]), values.clone(), 2).is_err());
        assert!(
            parts(slots.clone(), values.clone(), 1).is_err(),
            "value limit"
        );
        assert!(
            parts(slots.clone(), vec![5, 0, 1], 2).is_err(),
            "list too long"
        );
        assert!(
            parts(vec![EMPTY; 16], values.clone(), 2)
                .unwrap()
                .is_empty()
        );
        let full: Vec<[u32; 4]> = slots.iter().map(|_| slots[used[0]]).collect();
        assert!(parts(full, values.clone(), 2).is_err(), "no empty slot");
        assert!(
            parts(slots[..12].to_vec(), values.clone(), 2).is_err(),
            "not a power of two"
        );
        assert!(parts(Vec::new(), Vec::new(), 2).unwrap().is_empty());
    }
}
