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

/// Empty slot marker in the open-addressed table.
const EMPTY: u64 = 0;

/// A set of byte strings, each with the values of the patterns that are exactly that string.
///
/// The arrays are saved in the index file and used in place from its mapping, like the
/// automaton, so a daemon keeps resident only the pages its lookups touch.
#[derive(Clone, Debug)]
pub struct LiteralTable {
    /// Per distinct string: start and length in `bytes`, start and count in `values`.
    pub(crate) records: Stored<[u32; 4]>,
    pub(crate) bytes: Stored<u8>,
    pub(crate) values: Stored<u32>,
    /// Open addressing with linear probing, a power of two long and at most half full. A slot
    /// holds the string's hash in its upper half and its record index plus one in its lower.
    pub(crate) slots: Stored<u64>,
    /// Which (length, first byte) pairs some string has, by [`filter_bit`]: most keys of a bus
    /// without plain patterns (every PCI key, most USB keys) are turned away here without
    /// hashing 50 bytes or touching the table. Derived, not saved.
    filter: [u64; 64],
}

impl Default for LiteralTable {
    fn default() -> Self {
        LiteralTable {
            records: Stored::default(),
            bytes: Stored::default(),
            values: Stored::default(),
            slots: Stored::default(),
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
        let (mut records, mut bytes, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for group in items.chunk_by(|a, b| a.0 == b.0) {
            let s = group[0].0;
            records.push([
                bytes.len() as u32,
                s.len() as u32,
                values.len() as u32,
                group.len() as u32,
            ]);
            bytes.extend_from_slice(s);
            values.extend(group.iter().map(|g| g.1));
        }
        // Distinct strings, so no probe sequence ever meets its own string.
        let len = (records.len() * 2).next_power_of_two().max(16);
        let mut slots = vec![EMPTY; len];
        for (i, &[s, l, ..]) in records.iter().enumerate() {
            let h = hash(&bytes[s as usize..][..l as usize]);
            let mut at = h as usize & (len - 1);
            while slots[at] != EMPTY {
                at = (at + 1) & (len - 1);
            }
            slots[at] = (h & !0xFFFF_FFFF) | (i as u64 + 1);
        }
        let mut table = LiteralTable {
            records: Stored::from_vec(records),
            bytes: Stored::from_vec(bytes),
            values: Stored::from_vec(values),
            slots: Stored::from_vec(slots),
            filter: [0; 64],
        };
        table.derive_filter();
        table
    }

    /// A table from saved parts, checked so that a damaged file is an error, never a crash or
    /// a wrong answer: every range lies inside its array, every value is below `value_limit`,
    /// and every string is found, by a probe that ends at its own record (so none is stored
    /// twice and none is lost).
    pub(crate) fn from_parts(
        records: Stored<[u32; 4]>,
        bytes: Stored<u8>,
        values: Stored<u32>,
        slots: Stored<u64>,
        value_limit: u32,
    ) -> Result<LiteralTable, &'static str> {
        let in_range =
            |start: u32, len: u32, limit: usize| (start as u64 + len as u64) <= limit as u64;
        for &[s, l, vs, vc] in records.iter() {
            if !in_range(s, l, bytes.len()) || !in_range(vs, vc, values.len()) {
                return Err("literal pattern out of range");
            }
        }
        if values.iter().any(|&v| v >= value_limit) {
            return Err("literal pattern value out of range");
        }
        // A power of two long, and with an empty slot so that every probe ends.
        let shape_ok = slots.is_empty() && records.is_empty()
            || slots.len().is_power_of_two() && slots.contains(&EMPTY);
        let slot_ok =
            |&slot: &u64| slot == EMPTY || (1..=records.len()).contains(&(slot as u32 as usize));
        if !shape_ok || !slots.iter().all(slot_ok) {
            return Err("literal table damaged");
        }
        let mut table = LiteralTable {
            records,
            bytes,
            values,
            slots,
            filter: [0; 64],
        };
        for i in 0..table.records.len() {
            if table.probe(table.string(i)) != Some(i) {
                return Err("literal pattern not found where it is stored");
            }
        }
        table.derive_filter();
        Ok(table)
    }

    fn derive_filter(&mut self) {
        for i in 0..self.records.len() {
            let (word, bit) = filter_bit(self.string(i));
            self.filter[word] |= bit;
        }
    }

    /// The record of the string equal to `key`. Ends: the table is never full (checked).
    #[inline]
    fn probe(&self, key: &[u8]) -> Option<usize> {
        let h = hash(key);
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = h as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot == EMPTY {
                return None;
            }
            let record = (slot as u32 - 1) as usize;
            if (slot ^ h) >> 32 == 0 && same_bytes(self.string(record), key) {
                return Some(record);
            }
            at = (at + 1) & mask;
        }
    }

    fn string(&self, record: usize) -> &[u8] {
        let [s, l, ..] = self.records[record];
        &self.bytes[s as usize..][..l as usize]
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends the values of the string equal to `key`, if there is one, and says whether
    /// there was.
    #[inline]
    pub fn find(&self, key: &[u8], out: &mut Vec<u32>) -> bool {
        let (word, bit) = filter_bit(key);
        if self.filter[word] & bit == 0 {
            return false;
        }
        match self.probe(key) {
            Some(record) => {
                let [_, _, start, count] = self.records[record];
                out.extend_from_slice(&self.values[start as usize..][..count as usize]);
                true
            }
            None => false,
        }
    }
}

/// A multiply-and-rotate hash over 8-byte words. Modalias keys are 10 to 100 bytes, where this
/// takes a few nanoseconds; it needs no seed because the strings are the kernel's, not an
/// attacker's, and a collision only costs a probe.
#[inline]
fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap());
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // The tail as one word read in place (copying it into a buffer first stalls on the
        // store): the key's last 8 bytes, overlapping the words before; or, for a key shorter
        // than a word, its first and last 4 bytes, or 3 of its bytes. Either way every byte is
        // read at least once, and the length is already in `h`.
        let n = key.len();
        let w = if n >= 8 {
            u64::from_le_bytes(key[n - 8..].try_into().unwrap())
        } else if n >= 4 {
            let lo = u32::from_le_bytes(key[..4].try_into().unwrap());
            let hi = u32::from_le_bytes(key[n - 4..].try_into().unwrap());
            u64::from(lo) | u64::from(hi) << 32
        } else {
            u64::from(key[0]) | u64::from(key[n / 2]) << 8 | u64::from(key[n - 1]) << 16
        };
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    h ^ (h >> 29)
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
            t.find(k, &mut out);
            out
        };
        assert_eq!(find(b"platform:serial8250"), [3, 9]);
        assert_eq!(find(b"platform:serial825"), [2]);
        assert_eq!(find(b""), [4]);
        assert_eq!(find(b"i2c:tmp102"), [1]);
        assert!(find(b"i2c:tmp10").is_empty());
        assert!(find(b"platform:serial82500").is_empty());
    }

    #[test]
    fn saved_parts_are_checked() {
        let t = LiteralTable::build([(&b"ab"[..], 0), (&b"cd"[..], 1)]);
        let parts = |records: Vec<[u32; 4]>, slots: Vec<u64>, limit| {
            LiteralTable::from_parts(
                Stored::from_vec(records),
                t.bytes.clone(),
                t.values.clone(),
                Stored::from_vec(slots),
                limit,
            )
        };
        let (records, slots) = (t.records.to_vec(), t.slots.to_vec());
        let again = parts(records.clone(), slots.clone(), 2).unwrap();
        let mut out = Vec::new();
        again.find(b"cd", &mut out);
        assert_eq!(out, [1]);

        let twice = vec![records[0], records[0]];
        assert!(parts(twice, slots.clone(), 2).is_err());
        assert!(parts(vec![[0, 5, 0, 1]], slots.clone(), 2).is_err());
        assert!(parts(records.clone(), slots.clone(), 1).is_err());
        assert!(
            parts(records.clone(), vec![EMPTY; 16], 2).is_err(),
            "strings lost"
        );
        assert!(
            parts(records.clone(), vec![1; 16], 2).is_err(),
            "no empty slot"
        );
        assert!(
            parts(records.clone(), vec![EMPTY; 12], 2).is_err(),
            "not a power of two"
        );
        assert!(parts(Vec::new(), Vec::new(), 2).unwrap().is_empty());
    }
}
