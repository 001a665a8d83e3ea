//! PCI MODALIASes answered by comparing fields instead of walking the automaton.
//!
//! The kernel writes every PCI device's MODALIAS in one layout (`drivers/pci/pci-driver.c`:
//! `pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X`), and the patterns depmod gets for PCI
//! drivers (`scripts/mod/file2alias.c`) spell the same fields: each field is all its digits,
//! `*`, or some leading digits then `*`. A third of a Debian `modules.alias` is such patterns,
//! and in the automaton a PCI key walks three subtrees (every `pci:v*` pattern, the vendor's,
//! the device's), each ending in a `sv*sd*bc*sc*i*` chain. Here a lookup decodes the key's
//! fields, probes three tables (keyed by vendor and device, by vendor, by class) and compares
//! the few patterns found there, and the few left over, under a mask.
//!
//! # Why comparing fields is exactly fnmatch
//! Digits are `[0-9A-F]`; no separator byte (`pci:v`, `d`, `sv`, `sd`, `bc`, `sc`, `i`) is one.
//! In a key of the kernel's layout the separators are therefore the only non-digit bytes. A
//! pattern's separators are literal runs of non-digit bytes, so each must match inside one of
//! the key's separators, in order. No two consecutive separators fit inside one key separator,
//! so they land on seven different ones, that is, each on its own: `d` could only otherwise sit
//! in `sd` and `i` in `pci:v`, and either would leave too few key separators for the rest. With
//! the separators aligned, each pattern field faces exactly the key's field, and a field of
//! digits then `*` matches exactly the values that start with those digits.
//!
//! Keys of any other shape, malformed or mutated, are not covered by that argument: they are
//! answered by an automaton over the same patterns ([`super::PatternSet`] keeps both).

use super::automaton::Stored;

/// The separators of a PCI MODALIAS, each followed by a field of that many hex digits.
const LAYOUT: [(&[u8], usize); 7] = [
    (b"pci:v", 8),
    (b"d", 8),
    (b"sv", 8),
    (b"sd", 8),
    (b"bc", 2),
    (b"sc", 2),
    (b"i", 2),
];
const KEY_LEN: usize = 53;
/// Every pattern the index holds starts with this; other keys need not look at it at all.
pub(crate) const PREFIX: &[u8] = b"pci:v";
/// How deep a key's walk of the PCI automaton may start (see `automaton::Jumps`): after
/// `pci:v`, the eight vendor digits, `d`, the eight device digits and `sv`; else after the
/// vendor digits.
pub(crate) const JUMP_DEPTHS: [usize; 2] = [PREFIX.len() + 8 + 1 + 8 + 2, PREFIX.len() + 8];

/// Vendor, device, subvendor, subdevice, and class, subclass and interface in one word.
type Fields = [u32; 5];

/// Where field `i` of [`LAYOUT`] goes in [`Fields`]: word and bit shift.
const fn place(i: usize) -> (usize, u32) {
    match i {
        0..=3 => (i, 0),
        4 => (4, 16),
        5 => (4, 8),
        _ => (4, 0),
    }
}

fn hex(b: u8) -> Option<u32> {
    match HEX[usize::from(b)] {
        INVALID => None,
        d => Some(u32::from(d)),
    }
}

const INVALID: u8 = 0x80;
/// Digit values, [`INVALID`] for every other byte.
static HEX: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Eight upper-case hex digits as their value, most significant first, or None. Branch-free
/// on the bytes: every test is done on all eight at once in one word.
#[inline]
fn hex8(digits: &[u8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = u64::from_le_bytes(digits.try_into().ok()?);
    if x & HIGH != 0 {
        return None;
    }
    // With every byte below 0x80, adding up to 0x7F to a byte cannot carry into the next, so
    // "byte + (0x80 - n) has its top bit set" is "byte >= n", for all bytes at once.
    let at_least = |n: u64| (x + (0x80 - n) * ONES) & HIGH;
    let valid = at_least(0x30) == HIGH // '0'
        && at_least(0x47) == 0 // beyond 'F'
        && at_least(0x3A) & !at_least(0x41) == 0; // between '9' and 'A'
    if !valid {
        return None;
    }
    // '0'..'9' are 0x30..0x39, 'A'..'F' are 0x41..0x46: the low nibble, plus 9 for letters.
    let v = (x & 0x0F0F_0F0F_0F0F_0F0F) + 9 * ((x & 0x4040_4040_4040_4040) >> 6);
    // Byte 0 holds the most significant digit: pair the nibbles, then the bytes, then the halves.
    let v = ((v << 4) | (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = ((v << 8) | (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some(((v << 16) | (v >> 32)) as u32)
}

/// Two upper-case hex digits as their value, or None.
#[inline]
fn hex2(digits: &[u8]) -> Option<u32> {
    let (hi, lo) = (HEX[usize::from(digits[0])], HEX[usize::from(digits[1])]);
    ((hi | lo) & INVALID == 0).then_some(u32::from(hi) << 4 | u32::from(lo))
}

/// The fields of a key in exactly the kernel's layout (upper-case digits, nothing after).
#[inline]
fn parse_key(key: &[u8]) -> Option<Fields> {
    let key: &[u8; KEY_LEN] = key.try_into().ok()?;
    // Separators at their fixed offsets (see LAYOUT).
    let seps = key[..5] == *b"pci:v"
        && key[13] == b'd'
        && key[22..24] == *b"sv"
        && key[32..34] == *b"sd"
        && key[42..44] == *b"bc"
        && key[46..48] == *b"sc"
        && key[50] == b'i';
    if !seps {
        return None;
    }
    let class = hex2(&key[44..46])? << 16 | hex2(&key[48..50])? << 8 | hex2(&key[51..53])?;
    Some([
        hex8(&key[5..13])?,
        hex8(&key[14..22])?,
        hex8(&key[24..32])?,
        hex8(&key[34..42])?,
        class,
    ])
}

/// One pattern: the key matches when `key & mask == value` in every word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct FieldPattern {
    pub(crate) value: Fields,
    pub(crate) mask: Fields,
    /// The caller's value for the pattern.
    pub(crate) id: u32,
}

impl FieldPattern {
    /// The pattern as fields, when it has the layout this index answers.
    pub(crate) fn parse(p: &[u8], id: u32) -> Option<FieldPattern> {
        let mut out = FieldPattern {
            id,
            ..Default::default()
        };
        let mut at = 0;
        for (i, &(sep, width)) in LAYOUT.iter().enumerate() {
            if !p[at..].starts_with(sep) {
                return None;
            }
            at += sep.len();
            let digits = p[at..]
                .iter()
                .take(width)
                .take_while(|&&b| hex(b).is_some())
                .count();
            let v = p[at..at + digits]
                .iter()
                .fold(0u32, |v, &b| v << 4 | hex(b).unwrap_or(0));
            at += digits;
            if p.get(at) == Some(&b'*') {
                at += 1;
            } else if digits < width {
                return None;
            }
            if digits > 0 {
                // The digits are the field's leading ones.
                let unset = 4 * (width - digits) as u32;
                let (word, shift) = place(i);
                out.value[word] |= (v << unset) << shift;
                out.mask[word] |= ((u32::MAX >> (32 - 4 * digits as u32)) << unset) << shift;
            }
        }
        (at == p.len()).then_some(out)
    }

    #[inline]
    fn matches(&self, key: &Fields) -> bool {
        // No early exit: five and-compares cost less than a branch each.
        (0..5).fold(true, |ok, i| ok & (key[i] & self.mask[i] == self.value[i]))
    }
}

/// A slot of an open-addressing table: the patterns for one vendor (and device) are
/// `patterns[start..start + len]`. `len == 0` marks an empty slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Slot {
    pub(crate) vendor: u32,
    pub(crate) device: u32,
    pub(crate) start: u32,
    pub(crate) len: u32,
}

/// PCI patterns grouped for field comparison (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct PciIndex {
    /// In groups: by vendor and device, by vendor, by class, then the rest.
    pub(crate) patterns: Stored<FieldPattern>,
    /// Groups of patterns naming a whole vendor and device; a power-of-two table, or empty.
    pub(crate) by_device: Stored<Slot>,
    /// Groups naming a whole vendor but not a whole device (`device` is 0).
    pub(crate) by_vendor: Stored<Slot>,
    /// Groups without a whole vendor that name a whole class byte (`bc`; in `vendor`,
    /// `device` is 0): `pci:v*d*sv*sd*bc0Csc03i30*` and the like.
    pub(crate) by_class: Stored<Slot>,
    /// The rest, compared one by one: `[start, len]`.
    pub(crate) rest: [u32; 2],
}

const FULL: u32 = u32::MAX;

#[inline]
fn bucket(vendor: u32, device: u32, slots: usize) -> usize {
    let x = (u64::from(vendor) << 32 | u64::from(device)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 32) as usize & (slots - 1)
}

fn table(groups: &[Slot]) -> Vec<Slot> {
    if groups.is_empty() {
        return Vec::new();
    }
    // At most half full, so probes stay short and there is always an empty slot to stop at.
    let slots = (groups.len() * 2).next_power_of_two();
    let mut t = vec![Slot::default(); slots];
    for g in groups {
        let mut i = bucket(g.vendor, g.device, slots);
        while t[i].len != 0 {
            i = (i + 1) & (slots - 1);
        }
        t[i] = *g;
    }
    t
}

#[inline]
fn probe(t: &[Slot], vendor: u32, device: u32) -> Option<&Slot> {
    if t.is_empty() {
        return None;
    }
    let mut i = bucket(vendor, device, t.len());
    loop {
        let s = &t[i];
        if s.len == 0 {
            return None;
        }
        if s.vendor == vendor && s.device == device {
            return Some(s);
        }
        i = (i + 1) & (t.len() - 1);
    }
}

impl PciIndex {
    pub(crate) fn build(mut patterns: Vec<FieldPattern>) -> PciIndex {
        // The group a pattern goes in, and its key there.
        let group = |p: &FieldPattern| -> (u32, u32, u32) {
            let class = p.value[4] >> 16;
            match (
                p.mask[0] == FULL,
                p.mask[1] == FULL,
                p.mask[4] >> 16 == 0xFF,
            ) {
                (true, true, _) => (0, p.value[0], p.value[1]),
                (true, false, _) => (1, p.value[0], 0),
                (false, _, true) => (2, class, 0),
                _ => (3, 0, 0),
            }
        };
        patterns.sort_by_key(|p| (group(p), p.id));
        let mut tables = [Vec::new(), Vec::new(), Vec::new()];
        let mut rest = [patterns.len() as u32, 0];
        let mut start = 0;
        while start < patterns.len() {
            let (kind, vendor, device) = group(&patterns[start]);
            let len = patterns[start..]
                .iter()
                .take_while(|q| group(q) == (kind, vendor, device))
                .count();
            match tables.get_mut(kind as usize) {
                Some(t) => t.push(Slot {
                    vendor,
                    device,
                    start: start as u32,
                    len: len as u32,
                }),
                None => rest = [start as u32, len as u32],
            }
            start += len;
        }
        let [devices, vendors, classes] = tables;
        PciIndex {
            patterns: Stored::from_vec(patterns),
            by_device: Stored::from_vec(table(&devices)),
            by_vendor: Stored::from_vec(table(&vendors)),
            by_class: Stored::from_vec(table(&classes)),
            rest,
        }
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Appends the id of every pattern that matches `key` and returns true, or returns false
    /// without looking when `key` is not in the kernel's layout.
    #[inline]
    pub fn find(&self, key: &[u8], out: &mut Vec<u32>) -> bool {
        let Some(fields) = parse_key(key) else {
            return false;
        };
        let mut compare = |start: u32, len: u32| {
            let group = &self.patterns[start as usize..][..len as usize];
            out.extend(group.iter().filter(|p| p.matches(&fields)).map(|p| p.id));
        };
        if let Some(s) = probe(&self.by_device, fields[0], fields[1]) {
            compare(s.start, s.len);
        }
        if let Some(s) = probe(&self.by_vendor, fields[0], 0) {
            compare(s.start, s.len);
        }
        if let Some(s) = probe(&self.by_class, fields[4] >> 16, 0) {
            compare(s.start, s.len);
        }
        compare(self.rest[0], self.rest[1]);
        true
    }

    /// Checks what a lookup follows, for an index read from a file: ranges inside the pattern
    /// list, ids below `ids_below`, tables of a power-of-two size with an empty slot.
    pub(crate) fn validate(&self, ids_below: u32) -> Result<(), &'static str> {
        let n = self.patterns.len() as u64;
        let in_range = |start: u32, len: u32| u64::from(start) + u64::from(len) <= n;
        for t in [&self.by_device, &self.by_vendor, &self.by_class] {
            if !t.is_empty() && (!t.len().is_power_of_two() || t.iter().all(|s| s.len != 0)) {
                return Err("bad PCI table");
            }
            if t.iter().any(|s| !in_range(s.start, s.len)) {
                return Err("PCI group out of range");
            }
        }
        if !in_range(self.rest[0], self.rest[1]) {
            return Err("PCI group out of range");
        }
        if self.patterns.iter().any(|p| p.id >= ids_below) {
            return Err("PCI pattern value out of range");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(patterns: &[&str]) -> PciIndex {
        PciIndex::build(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| FieldPattern::parse(p.as_bytes(), i as u32).unwrap())
                .collect(),
        )
    }

    fn find(ix: &PciIndex, key: &str) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        ix.find(key.as_bytes(), &mut out).then(|| {
            out.sort();
            out
        })
    }

    const KEY: &str = "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00";

    #[test]
    fn fields_under_masks() {
        let ix = index(&[
            "pci:v00008086d000010D3sv*sd*bc*sc*i*",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
            "pci:v00008086d*sv*sd*bc02sc00i*",
            "pci:v*d*sv*sd*bc02sc*i*",
            "pci:v*d*sv*sd*bc03sc*i*",
            "pci:v00008086d000010D4sv*sd*bc*sc*i*",
            "pci:v00008086d0000*sv*sd*bc*sc*i*",
            "pci:v00008086d00001*sv*sd*bc*sc*i0*",
            "pci:v0000808*d*sv*sd*bc*sc*i*",
        ]);
        assert_eq!(find(&ix, KEY), Some(vec![0, 1, 2, 3, 6, 7, 8]));
    }

    #[test]
    fn other_layouts_are_not_answered() {
        let ix = index(&["pci:v*d*sv*sd*bc*sc*i*"]);
        for key in [
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i0",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i000",
            "pci:v00008086d000010d3sv00008086sd0000A01Fbc02sc00i00",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00x00",
            "usb:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
        ] {
            assert_eq!(find(&ix, key), None, "{key}");
        }
        assert_eq!(find(&ix, KEY), Some(vec![0]));
    }

    #[test]
    fn only_the_layout_is_taken() {
        for p in [
            "pci:v00008086d000010D3sv*sd*bc*sc*i",
            "pci:v00008086d000010D3sv*sd*bc*sc*i*x",
            "pci:v0000808?d*sv*sd*bc*sc*i*",
            "pci:v00008086d**sv*sd*bc*sc*i*",
            "pci:v0000808d*sv*sd*bc*sc*i*",
            "pci:v00008086d*00sv*sd*bc*sc*i*",
            "pci:v00008086d*sv*sd*bc*sc*i0F0*",
            "pci:v00008086d*sv*sd*bc*sc*i[0-9]*",
            "pci:v0000abcdd*sv*sd*bc*sc*i*",
            "pci:*",
        ] {
            assert_eq!(FieldPattern::parse(p.as_bytes(), 0), None, "{p}");
        }
    }

    #[test]
    fn patterns_outside_the_index_that_start_alike_still_match() {
        use crate::matcher::{PatternSet, Scratch};
        let patterns: [&[u8]; 4] = [
            b"pci:v*d*sv*sd*bc02sc*i*",
            b"pc*",
            b"pci:v0000808?d*",
            b"usb:*",
        ];
        let set = PatternSet::build(patterns.iter().zip(0..).map(|(p, i)| (*p, i)));
        assert_eq!(set.pci().len(), 1);
        assert!(!set.pci_only);
        let short = &KEY[..KEY.len() - 1];
        for key in [KEY, short] {
            let mut out = Vec::new();
            set.find(key.as_bytes(), &mut Scratch::default(), &mut out);
            out.sort();
            assert_eq!(out, [0, 1, 2], "{key}");
        }
        let apart: [&[u8]; 3] = [b"pci:v*d*sv*sd*bc*sc*i*", b"usb:*", b"pcmcia:*"];
        assert!(PatternSet::build(apart.iter().zip(0..).map(|(p, i)| (*p, i))).pci_only);
        let star: [&[u8]; 2] = [b"pci:v*d*sv*sd*bc*sc*i*", b"*"];
        assert!(!PatternSet::build(star.iter().zip(0..).map(|(p, i)| (*p, i))).pci_only);
    }

    #[test]
    fn fixed_offsets_follow_the_layout() {
        let mut key = Vec::new();
        for (i, &(sep, width)) in LAYOUT.iter().enumerate() {
            key.extend_from_slice(sep);
            key.extend((0..width).map(|d| b"0123456789ABCDEF"[(i * 3 + d) % 16]));
        }
        assert_eq!(key.len(), KEY_LEN);
        let fields = parse_key(&key).unwrap();
        assert_eq!(
            fields,
            [
                0x0123_4567,
                0x3456_789A,
                0x6789_ABCD,
                0x9ABC_DEF0,
                0xCD_F0_23
            ]
        );
    }

    #[test]
    fn hex8_decodes_exactly_upper_case_digits() {
        assert_eq!(hex8(b"000010D3"), Some(0x10D3));
        assert_eq!(hex8(b"FEDCBA98"), Some(0xFEDC_BA98));
        assert_eq!(hex8(b"01234567"), Some(0x0123_4567));
        for b in 0..=255u8 {
            for at in [0, 3, 7] {
                let mut d = *b"00000000";
                d[at] = b;
                let want = (b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
                    .then(|| u32::from_str_radix(std::str::from_utf8(&d).unwrap(), 16).unwrap());
                assert_eq!(hex8(&d), want, "{}", d.escape_ascii());
            }
        }
    }

    /// Random patterns of the layout against kernel-layout keys, checked with glibc's fnmatch.
    #[test]
    fn agrees_with_fnmatch() {
        let mut rng = crate::test_rng::XorShift(0x9C1);
        let mut next = |n: u64| rng.next() % n;
        // Few digit values, so that fields often agree.
        const DIGITS: &[u8] = b"08F";
        let mut patterns = Vec::new();
        let mut texts = Vec::new();
        for id in 0..400u32 {
            let mut p = Vec::new();
            for &(sep, width) in &LAYOUT {
                p.extend_from_slice(sep);
                let digits = match next(4) {
                    0 => 0,
                    1 => width,
                    _ => next(width as u64 + 1) as usize,
                };
                p.extend((0..digits).map(|_| DIGITS[next(3) as usize]));
                if digits < width || next(3) == 0 {
                    p.push(b'*');
                }
            }
            patterns.push(FieldPattern::parse(&p, id).unwrap());
            texts.push(p);
        }
        let ix = PciIndex::build(patterns);
        for _ in 0..3000 {
            let mut key = Vec::new();
            for &(sep, width) in &LAYOUT {
                key.extend_from_slice(sep);
                key.extend((0..width).map(|_| DIGITS[next(3) as usize]));
            }
            let mut got = Vec::new();
            assert!(ix.find(&key, &mut got));
            got.sort();
            let want: Vec<u32> = (0..texts.len() as u32)
                .filter(|&i| crate::matcher::libc_fnmatch(&texts[i as usize], &key))
                .collect();
            assert_eq!(got, want, "{}", key.escape_ascii());
        }
    }
}
