//! Module names to their ids, by hash.
//!
//! A key without a `:` is first looked up as a module name (libkmod's `modules.dep` step),
//! then among the built-in modules. A binary search over six thousand names took thirteen
//! steps whose direction no branch predictor can guess: about 50 ns, when a whole `platform:`
//! lookup took 25. One probe of an open-addressed table, with the literal table's hash, reads
//! one slot and compares one name.

use crate::matcher::literal::hash;

const EMPTY: u32 = u32::MAX;

/// A set of module ids, found by their names in the resolver's name list. Derived when
/// building or loading, not saved: filling it is one hash per name.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    /// Open addressing with linear probing, a power of two long and at most half full.
    slots: Box<[u32]>,
}

impl NameIndex {
    /// Indexes `ids` by `names[id]`; the ids have distinct names.
    pub(crate) fn new(names: &[String], ids: &[u32]) -> NameIndex {
        let len = (ids.len() * 2).next_power_of_two().max(16);
        let mut slots = vec![EMPTY; len].into_boxed_slice();
        for &id in ids {
            let mut at = hash(names[id as usize].as_bytes()) as usize & (len - 1);
            while slots[at] != EMPTY {
                at = (at + 1) & (len - 1);
            }
            slots[at] = id;
        }
        NameIndex { slots }
    }

    /// The id whose name is `name`; `name_hash` is its [`hash`] if the caller has it.
    #[inline]
    pub(crate) fn find(
        &self,
        names: &[String],
        name: &[u8],
        name_hash: Option<u64>,
    ) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = name_hash.unwrap_or_else(|| hash(name)) as usize & mask;
        loop {
            let id = self.slots[at];
            if id == EMPTY {
                return None;
            }
            if names[id as usize].as_bytes() == name {
                return Some(id);
            }
            at = (at + 1) & mask;
        }
    }
}
