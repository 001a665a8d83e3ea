//! Patterns without a wildcard, answered by one hash probe on the whole key.
//!
//! About one alias pattern in eight is a plain string (`platform:serial8250`, `i2c:tmp102`,
//! `spi:...`). In the automaton each costs a walk of its whole length through nodes that branch
//! widely (265 `platform:` names fan out under one node), while the question they ask is only
//! "is the key exactly this string". Taking them out of the automaton answers that with one
//! hash of the key, and leaves the automaton only the patterns that need it: for a `platform:`
//! key it now dies a few nodes in.

/// Empty slot marker in the open-addressed table.
const EMPTY: u64 = 0;

/// A set of byte strings, each with the values of the patterns that are exactly that string.
#[derive(Clone, Debug, Default)]
pub struct LiteralTable {
    /// Per distinct string: start and length in `bytes`, start and count in `values`.
    pub(crate) records: Vec<[u32; 4]>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) values: Vec<u32>,
    /// Open addressing with linear probing, a power of two long and at most half full. A slot
    /// holds the string's hash in its upper half and its record index plus one in its lower.
    /// Derived from `records` (never saved), so a saved file cannot make a lookup miss.
    slots: Vec<u64>,
    /// Which (length, first byte) pairs some string has, by [`filter_bit`]: most keys of a bus
    /// without plain patterns (every PCI key, most USB keys) are turned away here without
    /// hashing 50 bytes or touching the table.
    filter: Vec<u64>,
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
        let mut table = LiteralTable::default();
        for group in items.chunk_by(|a, b| a.0 == b.0) {
            let s = group[0].0;
            table.records.push([
                table.bytes.len() as u32,
                s.len() as u32,
                table.values.len() as u32,
                group.len() as u32,
            ]);
            table.bytes.extend_from_slice(s);
            table.values.extend(group.iter().map(|g| g.1));
        }
        table
            .index()
            .expect("distinct strings in range: built just above");
        table
    }

    /// Rebuilds the table from saved parts, checking every range and that the strings are
    /// distinct.
    pub(crate) fn from_parts(
        records: Vec<[u32; 4]>,
        bytes: Vec<u8>,
        values: Vec<u32>,
        value_limit: u32,
    ) -> Result<LiteralTable, &'static str> {
        let in_range =
            |start: u32, len: u32, limit: usize| (start as u64 + len as u64) <= limit as u64;
        for &[s, l, vs, vc] in &records {
            if !in_range(s, l, bytes.len()) || !in_range(vs, vc, values.len()) {
                return Err("literal pattern out of range");
            }
        }
        if values.iter().any(|&v| v >= value_limit) {
            return Err("literal pattern value out of range");
        }
        let mut table = LiteralTable {
            records,
            bytes,
            values,
            slots: Vec::new(),
            filter: Vec::new(),
        };
        table.index()?;
        Ok(table)
    }

    fn index(&mut self) -> Result<(), &'static str> {
        let len = (self.records.len() * 2).next_power_of_two().max(16);
        let (mut slots, mut filter) = (vec![EMPTY; len], vec![0; 64]);
        for i in 0..self.records.len() {
            let s = self.string(i);
            let (word, bit) = filter_bit(s);
            filter[word] |= bit;
            let h = hash(s);
            let mut at = h as usize & (len - 1);
            loop {
                let slot = slots[at];
                if slot == EMPTY {
                    slots[at] = (h & !0xFFFF_FFFF) | (i as u64 + 1);
                    break;
                }
                if self.string((slot as u32 - 1) as usize) == s {
                    return Err("literal pattern stored twice");
                }
                at = (at + 1) & (len - 1);
            }
        }
        (self.slots, self.filter) = (slots, filter);
        Ok(())
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

    /// Appends the values of the string equal to `key`, if there is one.
    #[inline]
    pub fn find(&self, key: &[u8], out: &mut Vec<u32>) {
        if self.records.is_empty() {
            return;
        }
        let (word, bit) = filter_bit(key);
        if self.filter[word] & bit == 0 {
            return;
        }
        let h = hash(key);
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot == EMPTY {
                return;
            }
            if (slot ^ h) >> 32 == 0 {
                let [s, l, vs, vc] = self.records[(slot as u32 - 1) as usize];
                if l as usize == key.len() && &self.bytes[s as usize..][..l as usize] == key {
                    out.extend_from_slice(&self.values[vs as usize..][..vc as usize]);
                    return;
                }
            }
            at = (at + 1) & mask;
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
        let again =
            LiteralTable::from_parts(t.records.clone(), t.bytes.clone(), t.values.clone(), 2);
        assert_eq!(again.unwrap().slots, t.slots);
        let twice = vec![t.records[0], t.records[0]];
        assert!(LiteralTable::from_parts(twice, t.bytes.clone(), t.values.clone(), 2).is_err());
        let long = vec![[0, 5, 0, 1]];
        assert!(LiteralTable::from_parts(long, t.bytes.clone(), t.values.clone(), 2).is_err());
        assert!(LiteralTable::from_parts(t.records.clone(), t.bytes.clone(), t.values, 1).is_err());
    }
}
