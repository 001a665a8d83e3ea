//! All patterns of a table compiled into one trie over tokens, searched with a set of
//! (node, position) states.
//!
//! Why a trie and not a DFA: modalias patterns are long literal prefixes (`pci:v00008086d000010D3`)
//! followed by a few `*`-separated fields. A trie shares the prefixes, so a lookup follows one
//! literal path and only branches where a pattern has a wildcard. A DFA over 27,000 such patterns
//! explodes (tried on Debian 6.1's aliases: a dense DFA never finished determinising; a lazy one
//! needed a 21 MiB cache).
//!
//! Why it stays fast with many stars: reaching the node after a `*` at position `p` means "the
//! star may stop at any position `q >= p`". If the same star node was already expanded from a
//! position `p' <= p`, every continuation from `p` was already explored. Each star node therefore
//! remembers the lowest position it was expanded from and only expands positions below it. Every
//! other node has exactly one parent, so each (node, position) pair is visited at most once and a
//! lookup costs at most `star nodes reached x key length` steps, never the exponential blow-up of
//! naive backtracking. libkmod instead enumerates the whole subtree under a wildcard and runs
//! fnmatch on every stored suffix.
//!
//! Layout: a lookup takes a few dozen steps, so its cost is cache misses, not instructions. Each
//! node is one contiguous run of `u32` words (header, literal segment, edge labels, edge targets,
//! accepted values), and nodes are laid out depth first, so a lookup path mostly walks forward
//! through memory. Literal runs are path-compressed into a node's segment; for the node a `*`
//! leads to, the segment is what must follow the star, so its first byte is searched with memchr
//! instead of trying every position.
//!
//! A star followed only by literal strings that each end the pattern with another `*` (the
//! `cpu:...:feature:*0081*` family) is a "contains any of these" question. Such stars get an
//! Aho-Corasick searcher over the strings, which answers it in one pass over the key.

use super::pattern::{ByteSet, Token};
use super::starts::StartFilter;

const NONE: u32 = u32::MAX;

// Header word of a node.
const SEG_LEN_MASK: u32 = 0xFFFF;
const LIT_SHIFT: u32 = 16;
const LIT_MASK: u32 = 0x1FF;
const HAS_ANY: u32 = 1 << 25;
const HAS_STAR: u32 = 1 << 26;
const HAS_CLASSES: u32 = 1 << 27;
const HAS_ACCEPTS: u32 = 1 << 28;
const STAR_TARGET: u32 = 1 << 29;
const HAS_CONTAINS: u32 = 1 << 30;
/// A star target that is a chain: `seg1 * seg2 * ... segN *` then another star target, where
/// each segment leads only to the next star (see `chain_segments`).
const CHAIN: u32 = 1 << 31;

/// The compiled form of a list of token sequences, each with a `u32` value reported on a match.
#[derive(Clone, Debug, Default)]
pub struct Automaton {
    /// Nodes, each a run of words; the root is at offset 0.
    pub(crate) code: Code,
    /// The words while building; moved into `code` when done.
    pub(crate) building: Vec<u32>,
    pub(crate) classes: Vec<ByteSet>,
    /// Literal sets of "contains" stars: (strings, value lists), see the module docs.
    pub(crate) contains: Vec<ContainsSet>,
    pub(crate) star_slots: u32,
    pub(crate) node_count: u32,
    /// The root's literal child for each first byte (NONE: no pattern starts with it), when
    /// the root has nothing but literal children, as every modules.alias has. Most keys that
    /// reach the automaton die within a few nodes of the root, and finding the first byte
    /// among the root's dozens of labels was a good part of such a walk. Derived, not saved.
    pub(crate) root_children: Option<Box<[u32; 256]>>,
    /// The depths of [`Automaton::jumps`], deepest first; none unless told.
    pub(crate) jump_depths: Vec<usize>,
    /// Where the walk of a key's first bytes ends (see [`Jumps`]), one table per depth: a key
    /// tries each until one has its start. Derived, not saved, and only on the first search:
    /// the PCI automaton's device paths take a quarter of a millisecond to find, which would
    /// double what loading a saved index costs besides mapping it, and only keys not in the
    /// kernel's PCI layout reach that automaton.
    pub(crate) jumps: std::sync::OnceLock<Vec<Jumps>>,
    /// Which keys can reach a pattern at all (see [`StartFilter`]). Derived, not saved, and only
    /// for automata told to have one.
    pub(crate) starts: Option<StartFilter>,
}

/// For every path of literal bytes `depth` long from the root (8 to 24 bytes) with at most one
/// wildcard node on the way, the node whose segment holds the path's end and where that
/// segment starts in the key. A key whose first `depth` bytes are such a path can start its
/// walk there: the walk from the root could only have come the same way, and what it would
/// have done besides is the wildcard node's branching (its star, `?` and classes), which the
/// jump does first. (A node that accepts on the way does not matter: it accepts only keys that
/// end there, and these are longer.)
///
/// Made for the PCI automaton, where every key starts `pci:v` and eight vendor digits, and
/// most then `d`, eight device digits and `sv` that some pattern spells too: Debian's 6.12
/// tree has some 320 vendor paths and 7,300 device paths. Walking down the device digits took
/// a node per digit that tells devices apart, one dependent load after another, in 750 KiB of
/// nodes. The wildcard on the way is a vendor's own star (`pci:v00008086d*sv*sd*bc01sc01i*`).
/// A key whose device has no path tries the vendor's; one with another start walks from the
/// root as before.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Jumps {
    depth: usize,
    /// Open addressing, a power of two long and at most half full; `NONE` as the node marks
    /// an empty slot.
    slots: Box<[Jump]>,
}

/// A path's bytes (three words, see [`Jumps::words`]) and where its walk goes on.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Jump {
    words: [u64; 3],
    node: u32,
    pos: u32,
    /// The wildcard node on the way and the position after its segment, or `NONE`.
    wild: u32,
    wild_pos: u32,
}

impl Jumps {
    /// A path's words: its first eight bytes, eight from the middle and its last eight,
    /// overlapping when it is shorter than 24.
    #[inline]
    fn words(key: &[u8], depth: usize) -> [u64; 3] {
        let word = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().unwrap());
        [word(0), word(8.min(depth - 8)), word(depth - 8)]
    }

    #[inline]
    fn slot(&self, w: [u64; 3]) -> usize {
        let h = (w[0] ^ w[1].rotate_left(21) ^ w[2].rotate_left(42))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & (self.slots.len() - 1)
    }

    /// Where a walk of `key` may start instead of the root.
    #[inline]
    fn find(&self, key: &[u8]) -> Option<&Jump> {
        if key.len() < self.depth {
            return None;
        }
        let words = Jumps::words(key, self.depth);
        let mut at = self.slot(words);
        loop {
            let jump = &self.slots[at];
            if jump.node == NONE {
                return None;
            }
            if jump.words == words {
                return Some(jump);
            }
            at = (at + 1) & (self.slots.len() - 1);
        }
    }
}

/// An array built in memory, or used in place from a mapped saved index file so that only the
/// pages lookups touch stay resident (the automaton's words, the pattern text). It keeps the
/// slice's pointer and length next to whatever keeps the memory alive, so reading it is as
/// cheap as reading a slice: lookups index it in their innermost loop.
pub(crate) struct Stored<T: 'static> {
    ptr: *const T,
    len: usize,
    _owner: Owner<T>,
}

#[allow(dead_code)] // the owners are held only to keep the memory alive
enum Owner<T> {
    Vec(Vec<T>),
    Map(std::sync::Arc<Mapping>),
}

// SAFETY: the memory is never written after construction (a Vec is not touched again, a mapping
// is read-only), so sharing the pointer between threads is sound when T is.
unsafe impl<T: Send + Sync> Send for Stored<T> {}
unsafe impl<T: Send + Sync> Sync for Stored<T> {}

/// The automaton's words.
pub(crate) type Code = Stored<u32>;

impl<T> std::fmt::Debug for Stored<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stored({} elements)", self.len)
    }
}

impl<T> Default for Stored<T> {
    fn default() -> Self {
        Stored::from_vec(Vec::new())
    }
}

impl<T: Clone> Clone for Stored<T> {
    fn clone(&self) -> Self {
        Stored::from_vec(self.to_vec())
    }
}

impl<T> Stored<T> {
    pub(crate) fn from_vec(v: Vec<T>) -> Self {
        // The heap buffer does not move when the Vec does, so the pointer stays valid.
        Stored {
            ptr: v.as_ptr(),
            len: v.len(),
            _owner: Owner::Vec(v),
        }
    }

    /// `len` elements at byte `offset` of `map`, if they lie inside it, aligned.
    pub(crate) fn mapped(map: &std::sync::Arc<Mapping>, offset: usize, len: usize) -> Option<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        let fits = offset.checked_add(bytes)? <= map.len;
        let aligned = (map.ptr as usize + offset) % std::mem::align_of::<T>() == 0;
        (fits && aligned).then(|| Stored {
            // SAFETY: inside the mapping, as just checked.
            ptr: unsafe { map.ptr.add(offset) }.cast::<T>(),
            len,
            _owner: Owner::Map(map.clone()),
        })
    }
}

impl<T> std::ops::Deref for Stored<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: ptr and len describe memory owned by `_owner` (a Vec's buffer or a checked,
        // aligned range of a read-only mapping of Plain values), alive as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A read-only private mapping of a whole file.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and never mutated through this handle.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn map(file: &std::fs::File, len: usize) -> std::io::Result<Mapping> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: mapping a file we opened, read-only and private.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the whole mapping is readable for its lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Drops the pages of `range` from this process (they stay in the page cache and come back
    /// on the next access): after validation touched every page, only those lookups use remain.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) {
        let page = 4096;
        let start = range.start.div_ceil(page) * page;
        let end = range.end / page * page;
        if end > start {
            // SAFETY: advising on pages inside our own mapping.
            unsafe {
                libc::madvise(
                    self.ptr.add(start) as *mut libc::c_void,
                    end - start,
                    libc::MADV_DONTNEED,
                );
            }
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what map() mapped.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

/// The strings a "contains" star looks for, each with the values it accepts.
#[derive(Debug, Default)]
pub(crate) struct ContainsSet {
    pub(crate) strings: Vec<Vec<u8>>,
    pub(crate) values: Vec<Vec<u32>>,
    /// Built on first use: most lookups never reach a contains-star, so loading a saved index
    /// should not pay for it.
    searcher: std::sync::OnceLock<SubstringSearcher>,
}

impl Clone for ContainsSet {
    fn clone(&self) -> Self {
        ContainsSet::new(self.strings.clone(), self.values.clone())
    }
}

#[derive(Debug)]
enum SubstringSearcher {
    /// Strings of one length: SIMD (Teddy). No two equal-length strings can match at one
    /// position, so restarting one byte after each match start finds every occurrence, without
    /// the cost of an overlapping search.
    Packed(aho_corasick::packed::Searcher),
    Automaton(aho_corasick::AhoCorasick),
    /// Strings that all begin with the same two bytes or more (`bc01sc01i`, `bc0Csc03i30`, the
    /// class tails of the `pci:v*` patterns): find that prefix, rare in a key, and compare the
    /// strings only where it occurs.
    Prefixed {
        prefix: memchr::memmem::Finder<'static>,
    },
    /// A few strings are found faster one memmem at a time.
    Each(Vec<memchr::memmem::Finder<'static>>),
}

impl ContainsSet {
    pub(crate) fn new(strings: Vec<Vec<u8>>, values: Vec<Vec<u32>>) -> ContainsSet {
        ContainsSet {
            strings,
            values,
            searcher: std::sync::OnceLock::new(),
        }
    }

    /// A set only asked whether its strings occur ([`ContainsSet::occurs_in`]), reporting no
    /// values.
    pub(crate) fn without_values(strings: Vec<Vec<u8>>) -> ContainsSet {
        let values = vec![Vec::new(); strings.len()];
        ContainsSet::new(strings, values)
    }

    /// Whether any of the strings occurs in `key`.
    pub(crate) fn occurs_in(&self, key: &[u8]) -> bool {
        match self.searcher() {
            SubstringSearcher::Packed(packed) => packed.find(key).is_some(),
            SubstringSearcher::Automaton(ac) => ac.is_match(key),
            SubstringSearcher::Prefixed { prefix } => {
                prefixed_occurrences(prefix, &self.strings, key)
                    .next()
                    .is_some()
            }
            SubstringSearcher::Each(finders) => finders.iter().any(|f| f.find(key).is_some()),
        }
    }

    fn searcher(&self) -> &SubstringSearcher {
        self.searcher.get_or_init(|| {
            let strings = &self.strings;
            let same_length = strings.windows(2).all(|w| w[0].len() == w[1].len());
            if strings.len() >= 2 && same_length {
                let mut builder = aho_corasick::packed::Config::new()
                    .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                    .builder();
                builder.extend(strings);
                if let Some(packed) = builder.build() {
                    return SubstringSearcher::Packed(packed);
                }
            }
            let common =
                strings
                    .iter()
                    .skip(1)
                    .fold(strings.first().map_or(0, |s| s.len()), |n, s| {
                        n.min(
                            s.iter()
                                .zip(&strings[0])
                                .take_while(|(a, b)| a == b)
                                .count(),
                        )
                    });
            if strings.len() >= 2 && common >= 2 {
                return SubstringSearcher::Prefixed {
                    prefix: memchr::memmem::Finder::new(&strings[0][..common]).into_owned(),
                };
            }
            if strings.len() >= 4 {
                // The strings mostly start with the same byte (`0` of `0081`), so a start-byte
                // prefilter would stop at every feature; the DFA alone is faster.
                let ac = aho_corasick::AhoCorasick::builder()
                    .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                    .prefilter(false)
                    .build(strings);
                if let Ok(ac) = ac {
                    return SubstringSearcher::Automaton(ac);
                }
            }
            SubstringSearcher::Each(
                strings
                    .iter()
                    .map(|s| memchr::memmem::Finder::new(s).into_owned())
                    .collect(),
            )
        })
    }
}

/// Every (string, start) where one of `strings`, all of which begin with what `prefix` finds,
/// occurs in `hay`, by start. Every occurrence of a string starts with an occurrence of the
/// prefix; the search goes on one byte after each, not past it, since occurrences may overlap
/// (`aa` in `aaa`).
fn prefixed_occurrences<'a>(
    prefix: &'a memchr::memmem::Finder<'static>,
    strings: &'a [Vec<u8>],
    hay: &'a [u8],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let mut at = 0;
    let starts = std::iter::from_fn(move || {
        let start = at + prefix.find(&hay[at..])?;
        at = start + 1;
        Some(start)
    });
    starts.flat_map(move |start| {
        let rest = &hay[start..];
        strings
            .iter()
            .enumerate()
            .filter(move |(_, s)| rest.len() >= s.len() && same_bytes(&rest[..s.len()], s))
            .map(move |(i, _)| (i, start))
    })
}

/// Per-thread search state, reused across lookups so a lookup allocates nothing.
#[derive(Default, Debug)]
pub struct Scratch {
    generation: u32,
    /// Per star slot: (generation it was last touched in, lowest position expanded).
    memo: Vec<(u32, u32)>,
    stack: Vec<(u32, u32)>,
    seen: Vec<bool>,
}

impl Scratch {
    fn reset(&mut self, slots: usize) {
        // One scratch serves several automata: it only ever grows, and entries of another
        // generation count as untouched.
        if self.memo.len() < slots {
            self.memo.resize(slots, (0, 0));
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.memo.iter_mut().for_each(|m| *m = (0, 0));
            self.generation = 1;
        }
        self.stack.clear();
    }
}

/// Token keys order siblings: literal bytes first (by value), then `?`, `*` and classes.
const KEY_ANY: u32 = 256;
const KEY_STAR: u32 = 257;
const KEY_CLASS: u32 = 258;

/// The uncompressed trie, children and values of node `i` in flat arrays (no allocation per
/// node: building one vector per node was most of the compile time).
struct BuildTrie {
    child_start: Vec<u32>,
    children: Vec<(u32, u32)>,
    value_start: Vec<u32>,
    values: Vec<u32>,
}

impl BuildTrie {
    /// Groups `(node, item)` pairs by node, keeping their order within a node.
    fn group<T: Copy + Default>(count: usize, pairs: &[(u32, T)]) -> (Vec<u32>, Vec<T>) {
        let mut start = vec![0u32; count + 1];
        for &(n, _) in pairs {
            start[n as usize + 1] += 1;
        }
        for i in 0..count {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut items = vec![T::default(); pairs.len()];
        for &(n, item) in pairs {
            items[fill[n as usize] as usize] = item;
            fill[n as usize] += 1;
        }
        (start, items)
    }

    fn children(&self, node: usize) -> &[(u32, u32)] {
        &self.children[self.child_start[node] as usize..self.child_start[node + 1] as usize]
    }

    fn values(&self, node: usize) -> &[u32] {
        &self.values[self.value_start[node] as usize..self.value_start[node + 1] as usize]
    }
}

/// A decoded node header with the offsets of its parts.
#[derive(Clone, Copy)]
struct View {
    header: u32,
    /// Word offset of the segment bytes.
    seg: usize,
    labels: usize,
    targets: usize,
    /// Word offset just after the literal targets.
    rest: usize,
}

impl View {
    #[inline]
    fn seg_len(self) -> usize {
        (self.header & SEG_LEN_MASK) as usize
    }
    #[inline]
    fn lit_count(self) -> usize {
        ((self.header >> LIT_SHIFT) & LIT_MASK) as usize
    }
}

fn words_for(bytes: usize) -> usize {
    bytes.div_ceil(4)
}

impl Automaton {
    /// Compiles `(tokens, value)` pairs. A value is reported once per matching pattern.
    pub fn build(patterns: &[(Vec<Token>, u32)]) -> Automaton {
        let mut class_index: std::collections::HashMap<ByteSet, u32> = Default::default();
        let mut classes = Vec::new();
        let mut keyed: Vec<(Vec<u32>, u32)> = patterns
            .iter()
            .map(|(tokens, value)| {
                let keys = tokens
                    .iter()
                    .map(|t| match *t {
                        Token::Literal(b) => b as u32,
                        Token::Any => KEY_ANY,
                        Token::Star => KEY_STAR,
                        Token::Class(set) => {
                            let id = *class_index.entry(set).or_insert_with(|| {
                                classes.push(set);
                                classes.len() as u32 - 1
                            });
                            KEY_CLASS + id
                        }
                    })
                    .collect();
                (keys, *value)
            })
            .collect();
        keyed.sort_unstable();

        // Insert in sorted order: each new child is the largest key of its parent so far, so
        // children come out sorted and the path to the previous sequence is the only one to
        // look at.
        let mut node_count = 1u32;
        let mut edges: Vec<(u32, (u32, u32))> = Vec::new();
        let mut accepts: Vec<(u32, u32)> = Vec::new();
        let mut path: Vec<u32> = vec![0];
        let mut prev: &[u32] = &[];
        for (keys, value) in &keyed {
            let common = keys.iter().zip(prev).take_while(|(a, b)| a == b).count();
            path.truncate(common + 1);
            for &k in &keys[common..] {
                let parent = *path.last().unwrap();
                edges.push((parent, (k, node_count)));
                path.push(node_count);
                node_count += 1;
            }
            accepts.push((*path.last().unwrap(), *value));
            prev = keys;
        }
        let (child_start, children) = BuildTrie::group(node_count as usize, &edges);
        let (value_start, values) = BuildTrie::group(node_count as usize, &accepts);
        let nodes = BuildTrie {
            child_start,
            children,
            value_start,
            values,
        };

        let mut out = Automaton {
            classes,
            ..Default::default()
        };
        out.emit(&nodes);
        out.code = Stored::from_vec(std::mem::take(&mut out.building));
        out.derive();
        out
    }

    /// Computes what is derived from the saved words. For a loaded automaton, only once it is
    /// validated: the table holds node offsets read from the file.
    pub(crate) fn derive(&mut self) {
        self.root_children = None;
        if self.code.is_empty() {
            return;
        }
        let root = self.view(0);
        let only_literals = HAS_STAR | HAS_ANY | HAS_CLASSES | HAS_ACCEPTS | STAR_TARGET;
        if root.header & only_literals != 0 || root.seg_len() != 0 {
            return;
        }
        let mut table = Box::new([NONE; 256]);
        let labels = &self.bytes()[root.labels * 4..][..root.lit_count()];
        for (i, &b) in labels.iter().enumerate() {
            table[b as usize] = self.code[root.targets + i];
        }
        self.root_children = Some(table);
    }

    /// Has [`Jumps`] made for keys' first bytes, one table per depth (8 to 24), deepest first,
    /// when first needed; none for a depth no path reaches.
    pub(crate) fn derive_jumps(&mut self, depths: &[usize]) {
        assert!(depths.iter().all(|d| (8..=24).contains(d)), "{depths:?}");
        self.jump_depths = depths.to_vec();
        self.jumps = Default::default();
    }

    #[inline]
    pub(crate) fn jumps(&self) -> &[Jumps] {
        self.jumps.get_or_init(|| {
            self.jump_depths
                .iter()
                .filter_map(|&d| self.jumps_at(d))
                .collect()
        })
    }

    fn jumps_at(&self, depth: usize) -> Option<Jumps> {
        if self.code.is_empty() {
            return None;
        }
        let mut found = Vec::new();
        let tree = self.walk_literal_paths((NONE, 0), |node, v, path, wild| {
            let start = path.len();
            let seg = self.segment(v);
            if start + seg.len() >= depth {
                path.extend_from_slice(&seg[..depth - start]);
                found.push(Jump {
                    words: Jumps::words(path, depth),
                    node,
                    pos: start as u32,
                    wild: wild.0,
                    wild_pos: wild.1,
                });
                return false;
            }
            path.extend_from_slice(seg);
            if v.header & (HAS_STAR | HAS_ANY | HAS_CLASSES) != 0 {
                if wild.0 != NONE {
                    // A second wildcard: keys here start from a shallower jump, or the root.
                    return false;
                }
                *wild = (node, path.len() as u32);
            }
            true
        });
        if !tree || found.is_empty() {
            return None;
        }
        let empty = Jump {
            words: [0; 3],
            node: NONE,
            pos: 0,
            wild: NONE,
            wild_pos: 0,
        };
        let mut jumps = Jumps {
            depth,
            slots: vec![empty; (found.len() * 2).next_power_of_two()].into(),
        };
        for jump in found {
            let mut at = jumps.slot(jump.words);
            while jumps.slots[at].node != NONE {
                at = (at + 1) & (jumps.slots.len() - 1);
            }
            jumps.slots[at] = jump;
        }
        Some(jumps)
    }

    /// Walks the paths of literal bytes down from the root, depth first. `visit` gets each node
    /// with the path to it (the bytes before its segment) and the path's state, extends the
    /// path by whatever of the node it takes, updates the state, and says whether to go on to
    /// the node's literal children (each then gets that path, its label and the state). False
    /// when the walk was cut off: a compiled automaton is a tree, so no node is visited twice,
    /// but a damaged saved file that still validates can have edges that meet or loop, and its
    /// paths could run to 256^depth.
    fn walk_literal_paths<T: Copy>(
        &self,
        state: T,
        mut visit: impl FnMut(u32, View, &mut Vec<u8>, &mut T) -> bool,
    ) -> bool {
        // One path buffer for the whole walk: an entry holds how long the path to its parent
        // was. Depth first, everything pushed after an entry is done before it, and those
        // entries' paths are all longer, so the parent's bytes are still in place.
        let mut path = Vec::new();
        let mut todo = vec![(0u32, 0usize, None, state)];
        let mut visits = 0;
        while let Some((node, len, label, mut state)) = todo.pop() {
            visits += 1;
            if visits > self.node_count as usize {
                return false;
            }
            path.truncate(len);
            path.extend(label);
            let v = self.view(node);
            if !visit(node, v, &mut path, &mut state) {
                continue;
            }
            let labels = &self.bytes()[v.labels * 4..][..v.lit_count()];
            for (i, &b) in labels.iter().enumerate() {
                todo.push((self.code[v.targets + i], path.len(), Some(b), state));
            }
        }
        true
    }

    /// Derives the [`StartFilter`] from the literal paths at the top of the trie: each path is
    /// followed until the filter has what it needs from it, or until a wildcard or an accepting
    /// node ends a start there.
    pub(crate) fn derive_starts(&mut self) {
        self.starts = None;
        if self.code.is_empty() {
            return;
        }
        let mut filter = StartFilter::default();
        let tree = self.walk_literal_paths((), |_, v, path, _| {
            // The label that led here, then the segment, a byte at a time.
            if filter.note_prefix(path) {
                return false;
            }
            for &b in self.segment(v) {
                path.push(b);
                if filter.note_prefix(path) {
                    return false;
                }
            }
            if v.header & (HAS_STAR | HAS_ANY | HAS_CLASSES | HAS_ACCEPTS) != 0 {
                filter.note_start(path);
            }
            true
        });
        if !tree {
            return;
        }
        self.starts = Some(filter);
    }

    /// If the subtree below the star target `start` is only literal strings, each ending in a
    /// `*` that ends its patterns, returns those strings and their values.
    fn contains_strings(nodes: &BuildTrie, start: usize) -> Option<ContainsSet> {
        let mut strings = Vec::new();
        let mut values = Vec::new();
        let mut stack = vec![(start, Vec::new())];
        while let Some((id, text)) = stack.pop() {
            if !nodes.values(id).is_empty() {
                return None;
            }
            for &(k, child) in nodes.children(id) {
                match k {
                    0..=255 => {
                        let mut t = text.clone();
                        t.push(k as u8);
                        stack.push((child as usize, t));
                    }
                    KEY_STAR => {
                        let c = child as usize;
                        if !nodes.children(c).is_empty() || text.is_empty() {
                            return None;
                        }
                        strings.push(text.clone());
                        values.push(nodes.values(c).to_vec());
                    }
                    _ => return None,
                }
            }
        }
        // A lone short string is found as fast by the memchr-led walk; sets and longer strings
        // (the cpu feature ids) are where trying every position costs.
        let worth_it = strings.len() >= 2 || strings.first().is_some_and(|s| s.len() >= 3);
        worth_it.then(|| ContainsSet::new(strings, values))
    }

    /// The literal run starting at build node `start` (single literal children, no values) and
    /// the node where it ends.
    fn compress(nodes: &BuildTrie, start: usize) -> (Vec<u8>, usize) {
        let mut segment = Vec::new();
        let mut cur = start;
        while cur != 0
            && nodes.values(cur).is_empty()
            && nodes.children(cur).len() == 1
            && nodes.children(cur)[0].0 < 256
            && segment.len() < SEG_LEN_MASK as usize
        {
            segment.push(nodes.children(cur)[0].0 as u8);
            cur = nodes.children(cur)[0].1 as usize;
        }
        (segment, cur)
    }

    /// Starting at star target `start`: the segments of a chain `seg * seg * ...` where each
    /// segment is non-empty and leads only to another star, and the star target after the last
    /// one. For such a segment the first occurrence is all that matters (the next star,
    /// expanded from there, covers every later one), so a chain is matched by successive
    /// first-occurrence searches with no branching. Tails like `sv*sd*bc*sc*i*` are chains.
    fn chain_segments(nodes: &BuildTrie, start: usize) -> (Vec<Vec<u8>>, usize) {
        let mut segments = Vec::new();
        let mut cur = start;
        loop {
            let (segment, end) = Self::compress(nodes, cur);
            let children = nodes.children(end);
            let only_star =
                nodes.values(end).is_empty() && children.len() == 1 && children[0].0 == KEY_STAR;
            if segment.is_empty() || !only_star {
                return (segments, cur);
            }
            segments.push(segment);
            cur = children[0].1 as usize;
        }
    }

    /// Lays out the build trie depth first, compressing chains of single literal children into
    /// segments. Iterative, so deep patterns cannot overflow the stack.
    fn emit(&mut self, nodes: &BuildTrie) {
        // (build node, is a star target, word to patch with this node's offset)
        let mut work: Vec<(usize, bool, Option<usize>)> = vec![(0, false, None)];
        while let Some((start, star_target, patch)) = work.pop() {
            let offset = self.building.len() as u32;
            if let Some(p) = patch {
                self.code_mut()[p] = offset;
            }
            self.node_count += 1;
            if star_target {
                if let Some(set) = Self::contains_strings(nodes, start) {
                    self.code_mut().push(STAR_TARGET | HAS_CONTAINS);
                    {
                        let v = self.star_slots;
                        self.code_mut().push(v);
                    }
                    self.star_slots += 1;
                    {
                        let v = self.contains.len() as u32;
                        self.code_mut().push(v);
                    }
                    self.contains.push(set);
                    continue;
                }
                let (segments, next) = Self::chain_segments(nodes, start);
                if !segments.is_empty() {
                    self.code_mut().push(STAR_TARGET | CHAIN);
                    {
                        let v = self.star_slots;
                        self.code_mut().push(v);
                    }
                    self.star_slots += 1;
                    self.code_mut().push(segments.len() as u32);
                    for seg in &segments {
                        self.code_mut().push(seg.len() as u32);
                        self.push_bytes(seg);
                    }
                    work.push((next, true, Some(self.building.len())));
                    self.code_mut().push(NONE);
                    continue;
                }
            }
            let (segment, cur) = Self::compress(nodes, start);
            let node_children = nodes.children(cur);
            let node_values = nodes.values(cur);
            let lits: Vec<(u8, u32)> = node_children
                .iter()
                .filter(|(k, _)| *k < 256)
                .map(|&(k, c)| (k as u8, c))
                .collect();
            let any = node_children.iter().find(|(k, _)| *k == KEY_ANY);
            let star = node_children.iter().find(|(k, _)| *k == KEY_STAR);
            let classes: Vec<(u32, u32)> = node_children
                .iter()
                .filter(|(k, _)| *k >= KEY_CLASS)
                .map(|&(k, c)| (k - KEY_CLASS, c))
                .collect();
            let mut header = segment.len() as u32 | (lits.len() as u32) << LIT_SHIFT;
            if star_target {
                header |= STAR_TARGET;
            }
            header |= if any.is_some() { HAS_ANY } else { 0 };
            header |= if star.is_some() { HAS_STAR } else { 0 };
            header |= if classes.is_empty() { 0 } else { HAS_CLASSES };
            header |= if node_values.is_empty() {
                0
            } else {
                HAS_ACCEPTS
            };
            self.code_mut().push(header);
            if star_target {
                {
                    let v = self.star_slots;
                    self.code_mut().push(v);
                }
                self.star_slots += 1;
            }
            self.push_bytes(&segment);
            self.push_bytes(&lits.iter().map(|l| l.0).collect::<Vec<_>>());
            // Children go on the work list in reverse, so the first literal child is laid out
            // right after this node.
            let mut children = Vec::new();
            for &(_, c) in &lits {
                children.push((c as usize, false, Some(self.building.len())));
                self.code_mut().push(NONE);
            }
            if let Some(&(_, c)) = star {
                children.push((c as usize, true, Some(self.building.len())));
                self.code_mut().push(NONE);
            }
            if let Some(&(_, c)) = any {
                children.push((c as usize, false, Some(self.building.len())));
                self.code_mut().push(NONE);
            }
            if !classes.is_empty() {
                self.code_mut().push(classes.len() as u32);
                for &(class, c) in &classes {
                    self.code_mut().push(class);
                    children.push((c as usize, false, Some(self.building.len())));
                    self.code_mut().push(NONE);
                }
            }
            if !node_values.is_empty() {
                self.code_mut().push(node_values.len() as u32);
                self.code_mut().extend_from_slice(node_values);
            }
            work.extend(children.into_iter().rev());
        }
    }

    /// The words while building (always owned then).
    fn code_mut(&mut self) -> &mut Vec<u32> {
        &mut self.building
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(4) {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            self.code_mut().push(u32::from_ne_bytes(w));
        }
    }

    pub fn node_count(&self) -> usize {
        self.node_count as usize
    }

    /// Heap bytes held by the compiled form.
    pub fn heap_bytes(&self) -> usize {
        self.code.len() * 4
            + self
                .root_children
                .as_ref()
                .map_or(0, |t| std::mem::size_of_val(&**t))
            + self.jumps.get().map_or(0, |j| {
                j.iter().map(|j| std::mem::size_of_val(&*j.slots)).sum()
            })
            + self.starts.as_ref().map_or(0, StartFilter::heap_bytes)
            + self.classes.len() * 32
            + self
                .contains
                .iter()
                .map(|c| {
                    c.strings.iter().map(|s| s.len()).sum::<usize>()
                        + c.values.iter().map(|v| v.len() * 4).sum::<usize>()
                        + match c.searcher.get() {
                            Some(SubstringSearcher::Automaton(ac)) => ac.memory_usage(),
                            _ => 0,
                        }
                })
                .sum::<usize>()
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        // SAFETY: any initialised u32 is four initialised bytes; u8 has alignment 1.
        unsafe { std::slice::from_raw_parts(self.code.as_ptr().cast::<u8>(), self.code.len() * 4) }
    }

    #[inline]
    fn view(&self, off: u32) -> View {
        let off = off as usize;
        let header = self.code[off];
        let seg = off + 1 + usize::from(header & STAR_TARGET != 0);
        let seg_len = (header & SEG_LEN_MASK) as usize;
        let lit_count = ((header >> LIT_SHIFT) & LIT_MASK) as usize;
        let labels = seg + words_for(seg_len);
        let targets = labels + words_for(lit_count);
        View {
            header,
            seg,
            labels,
            targets,
            rest: targets + lit_count,
        }
    }

    #[inline]
    fn segment(&self, v: View) -> &[u8] {
        &self.bytes()[v.seg * 4..][..v.seg_len()]
    }

    /// Whether some pattern may match `key`: false only when the start filter, if this
    /// automaton has one, rules every pattern out. Asked before [`Automaton::search`], so that
    /// a key turned away costs no call.
    #[inline]
    pub fn may_match(&self, key: &[u8]) -> bool {
        self.starts.as_ref().is_none_or(|f| f.may_match(key))
    }

    /// Appends the value of every pattern that matches `key` to `out`, in no particular order;
    /// a value may appear more than once.
    pub fn search(&self, key: &[u8], scratch: &mut Scratch, out: &mut Vec<u32>) {
        if self.code.is_empty() {
            return;
        }
        scratch.reset(self.star_slots as usize);
        // A key that starts with a jump's path starts where that path ends. Otherwise the root,
        // with its empty segment, branches at position 0. `branch` returns the literal child to
        // follow next, so the main path never touches the stack.
        let jump = if self.jump_depths.is_empty() {
            None
        } else {
            self.jump(key, scratch, out)
        };
        let mut next = match (jump, &self.root_children) {
            (Some(start), _) => Some(start),
            (None, Some(table)) => match key.first().map(|&b| table[b as usize]) {
                Some(child) if child != NONE => Some((child, 1)),
                _ => return,
            },
            (None, None) => self.branch(self.view(0), 0, key, scratch, out),
        };
        loop {
            let (node, pos) = match next {
                Some(n) => n,
                None => match scratch.stack.pop() {
                    Some(n) => n,
                    None => return,
                },
            };
            let v = self.view(node);
            let seg = self.segment(v);
            let pos = pos as usize;
            next = None;
            if key.len() - pos < seg.len() || !same_bytes(&key[pos..pos + seg.len()], seg) {
                continue;
            }
            let pos = pos + seg.len();
            if v.header & (HAS_STAR | HAS_ANY | HAS_CLASSES | HAS_ACCEPTS) == 0 {
                // Most nodes on a lookup's path only branch on the next byte.
                if let Some(&b) = key.get(pos) {
                    let labels = &self.bytes()[v.labels * 4..][..v.lit_count()];
                    next =
                        find_label(labels, b).map(|i| (self.code[v.targets + i], pos as u32 + 1));
                }
                continue;
            }
            next = self.branch(v, pos, key, scratch, out);
        }
    }

    /// Where the walk of `key` may start instead of the root, with the branching of the
    /// wildcard node on the way done (see [`Jumps`]). Out of line: only the PCI automaton has
    /// jumps, and the other automata's walks need not carry this code.
    #[inline(never)]
    fn jump(&self, key: &[u8], scratch: &mut Scratch, out: &mut Vec<u32>) -> Option<(u32, u32)> {
        let jump = self.jumps().iter().find_map(|j| j.find(key))?;
        if jump.wild != NONE {
            // Its literal child is the path, which the jump skips.
            let _ = self.branch(
                self.view(jump.wild),
                jump.wild_pos as usize,
                key,
                scratch,
                out,
            );
        }
        Some((jump.node, jump.pos))
    }

    /// Everything that can happen at node `v` once its segment has matched and `pos` bytes of
    /// the key are consumed. Other continuations go on the stack; the literal child, if any, is
    /// returned for the caller to follow at once.
    #[inline]
    fn branch(
        &self,
        v: View,
        pos: usize,
        key: &[u8],
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) -> Option<(u32, u32)> {
        let mut at = v.rest;
        let star = if v.header & HAS_STAR != 0 {
            at += 1;
            self.code[at - 1]
        } else {
            NONE
        };
        let any = if v.header & HAS_ANY != 0 {
            at += 1;
            self.code[at - 1]
        } else {
            NONE
        };
        let classes = at;
        if v.header & HAS_CLASSES != 0 {
            at += 1 + 2 * self.code[at] as usize;
        }
        if pos == key.len() && v.header & HAS_ACCEPTS != 0 {
            let n = self.code[at] as usize;
            out.extend_from_slice(&self.code[at + 1..at + 1 + n]);
        }
        if star != NONE {
            self.expand_star(star, pos, key, scratch, out);
        }
        let &b = key.get(pos)?;
        let next = pos as u32 + 1;
        let labels = &self.bytes()[v.labels * 4..][..v.lit_count()];
        let literal = find_label(labels, b).map(|i| (self.code[v.targets + i], next));
        if any != NONE {
            scratch.stack.push((any, next));
        }
        if v.header & HAS_CLASSES != 0 {
            let count = self.code[classes] as usize;
            for i in 0..count {
                let class = self.code[classes + 1 + 2 * i] as usize;
                if self.classes[class].contains(b) {
                    scratch.stack.push((self.code[classes + 2 + 2 * i], next));
                }
            }
        }
        literal
    }

    /// The star leading to `target` is reached at `pos`: it may stop anywhere from `pos` on.
    fn expand_star(
        &self,
        target: u32,
        pos: usize,
        key: &[u8],
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) {
        let header = self.code[target as usize];
        let slot_index = self.code[target as usize + 1] as usize;
        let slot = &mut scratch.memo[slot_index];
        let first_visit = slot.0 != scratch.generation;
        let end = if slot.0 == scratch.generation {
            if slot.1 as usize <= pos {
                return;
            }
            slot.1 as usize
        } else {
            key.len() + 1
        };
        *slot = (scratch.generation, pos as u32);
        if header & HAS_CONTAINS != 0 {
            self.expand_contains(
                self.code[target as usize + 2] as usize,
                pos,
                end,
                key,
                scratch,
                out,
            );
            return;
        }
        if header & CHAIN != 0 {
            // First occurrence of each segment in turn, then the star target after them.
            let t = target as usize;
            let count = self.code[t + 2] as usize;
            let mut at = t + 3;
            let mut p = pos;
            for _ in 0..count {
                let len = self.code[at] as usize;
                let seg = &self.bytes()[(at + 1) * 4..][..len];
                at += 1 + words_for(len);
                match find_segment(seg, &key[p.min(key.len())..]) {
                    Some(q) => p += q + len,
                    None => return,
                }
            }
            self.expand_star(self.code[at], p, key, scratch, out);
            return;
        }
        let t = self.view(target);
        if t.header & (SEG_LEN_MASK | LIT_MASK << LIT_SHIFT | HAS_STAR | HAS_ANY | HAS_CLASSES) == 0
        {
            // A trailing `*`: it matches whatever is left, so accept once instead of trying
            // every remaining position.
            if first_visit && t.header & HAS_ACCEPTS != 0 {
                let at = t.rest;
                let n = self.code[at] as usize;
                out.extend_from_slice(&self.code[at + 1..at + 1 + n]);
            }
            return;
        }
        let seg = self.segment(t);
        match seg.split_first() {
            None => {
                for q in pos..end {
                    if let Some(n) = self.branch(t, q, key, scratch, out) {
                        scratch.stack.push(n);
                    }
                }
            }
            Some((&first, rest)) => {
                // The star stops at q where the segment occurs; the segment needs its bytes.
                if seg.len() > key.len() {
                    return;
                }
                let last = end.min(key.len() - seg.len() + 1);
                // When the segment leads only to another star, the first occurrence is enough:
                // that star, expanded from there, covers every later occurrence too.
                let first_only = t.header & (HAS_ANY | HAS_CLASSES | HAS_ACCEPTS) == 0
                    && t.header & HAS_STAR != 0
                    && t.lit_count() == 0;
                let mut q = pos;
                while q < last {
                    match find_byte(first, &key[q..last]) {
                        None => break,
                        Some(off) => {
                            let at = q + off;
                            if same_bytes(&key[at + 1..at + seg.len()], rest) {
                                if let Some(n) = self.branch(t, at + seg.len(), key, scratch, out) {
                                    scratch.stack.push(n);
                                }
                                if first_only {
                                    break;
                                }
                            }
                            q = at + 1;
                        }
                    }
                }
            }
        }
    }

    /// A "contains" star reached at `pos`, already expanded from `end` on: every string that
    /// occurs starting in `pos..end` accepts its values (its pattern ends in `*`). Each value is
    /// reported once per lookup.
    fn expand_contains(
        &self,
        set: usize,
        pos: usize,
        end: usize,
        key: &[u8],
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) {
        let set = &self.contains[set];
        scratch.seen.clear();
        scratch.seen.resize(set.strings.len(), false);
        // Occurrences starting before `end` were reported by the earlier, lower expansion only
        // if they start at or after that expansion's position, which is `end`: so report those
        // starting in pos..end, and nothing else.
        let hay = &key[pos..];
        let mut report = |i: usize, start: usize, out: &mut Vec<u32>| {
            if start < end - pos && !scratch.seen[i] {
                scratch.seen[i] = true;
                out.extend_from_slice(&set.values[i]);
            }
        };
        match set.searcher() {
            SubstringSearcher::Packed(packed) => {
                let mut at = 0;
                while at < hay.len() {
                    let span = aho_corasick::Span {
                        start: at,
                        end: hay.len(),
                    };
                    let Some(m) = packed.find_in(hay, span) else {
                        break;
                    };
                    if m.start() >= end - pos {
                        break;
                    }
                    report(m.pattern().as_usize(), m.start(), out);
                    at = m.start() + 1;
                }
            }
            SubstringSearcher::Automaton(ac) => {
                for m in ac.find_overlapping_iter(hay) {
                    report(m.pattern().as_usize(), m.start(), out);
                }
            }
            SubstringSearcher::Prefixed { prefix } => {
                for (i, start) in prefixed_occurrences(prefix, &set.strings, hay)
                    .take_while(|&(_, start)| start < end - pos)
                {
                    report(i, start, out);
                }
            }
            SubstringSearcher::Each(finders) => {
                for (i, finder) in finders.iter().enumerate() {
                    if let Some(start) = finder.find(hay) {
                        report(i, start, out);
                    }
                }
            }
        }
    }

    /// Checks every offset the search follows, so that a damaged saved index cannot make it read
    /// out of bounds. Nodes are contiguous from offset 0, so two linear passes suffice: the first
    /// walks them in order, checking each field and marking where nodes start; the second checks
    /// that every edge lands on the start of a node of the right kind. (Termination needs no
    /// check: every step consumes a byte or hits a star's memo.) Returns the number of nodes.
    pub(crate) fn validate(&self, values_below: u32) -> Result<u32, &'static str> {
        let len = self.code.len();
        if len > 0 && self.code[0] & STAR_TARGET != 0 {
            return Err("root is a star target");
        }
        // One walk: node starts go into one bitmap and edge targets into another, each split
        // by whether the target is a star target; then every target must be a start of the
        // same kind. (A second walk that checked each edge against the starts took half the
        // time of loading a saved index.)
        let words = len.div_ceil(64);
        let bit = |at: usize| (at / 64, 1u64 << (at % 64));
        let (mut starts, mut targets) = (
            [vec![0u64; words], vec![0u64; words]],
            [vec![0u64; words], vec![0u64; words]],
        );
        let count = self.walk(
            values_below,
            |off| {
                let (w, b) = bit(off);
                starts[usize::from(self.code[off] & STAR_TARGET != 0)][w] |= b;
            },
            |target, star| {
                let t = target as usize;
                if t >= len {
                    return Err("edge does not lead to a node");
                }
                let (w, b) = bit(t);
                targets[usize::from(star)][w] |= b;
                Ok(())
            },
        )?;
        for kind in 0..2 {
            for ((&wanted, &same), &other) in targets[kind]
                .iter()
                .zip(&starts[kind])
                .zip(&starts[1 - kind])
            {
                let missing = wanted & !same;
                if missing & other != 0 {
                    return Err("star edge and star target disagree");
                }
                if missing != 0 {
                    return Err("edge does not lead to a node");
                }
            }
        }
        Ok(count)
    }

    /// Walks the nodes in layout order, checking each one's fields; reports each node's offset
    /// and each edge (target, is a star edge). Edges are not checked here.
    fn walk(
        &self,
        values_below: u32,
        mut on_node: impl FnMut(usize),
        mut on_edge: impl FnMut(u32, bool) -> Result<(), &'static str>,
    ) -> Result<u32, &'static str> {
        let len = self.code.len();
        let word = |at: usize| self.code.get(at).copied().ok_or("node runs past the end");
        let mut count = 0u32;
        let mut off = 0usize;
        while off < len {
            on_node(off);
            count += 1;
            let header = self.code[off];
            if header & STAR_TARGET != 0 && word(off + 1)? >= self.star_slots {
                return Err("star slot out of range");
            }
            if header & HAS_CONTAINS != 0 {
                let set = self
                    .contains
                    .get(word(off + 2)? as usize)
                    .ok_or("bad set")?;
                if set.values.iter().flatten().any(|&v| v >= values_below)
                    || set.values.len() != set.strings.len()
                    || header & STAR_TARGET == 0
                {
                    return Err("contains set out of range");
                }
                off += 3;
                continue;
            }
            if header & CHAIN != 0 {
                if header & STAR_TARGET == 0 {
                    return Err("chain that is not a star target");
                }
                let count = word(off + 2)? as usize;
                let mut at = off + 3;
                for _ in 0..count {
                    let seg_len = word(at)? as usize;
                    if seg_len == 0 || seg_len > len * 4 {
                        return Err("bad chain segment");
                    }
                    at += 1 + words_for(seg_len);
                }
                on_edge(word(at)?, true)?;
                off = at + 1;
                continue;
            }
            let v = self.view(off as u32);
            if v.rest > len {
                return Err("node runs past the end");
            }
            for i in 0..v.lit_count() {
                on_edge(self.code[v.targets + i], false)?;
            }
            let mut at = v.rest;
            if header & HAS_STAR != 0 {
                on_edge(word(at)?, true)?;
                at += 1;
            }
            if header & HAS_ANY != 0 {
                on_edge(word(at)?, false)?;
                at += 1;
            }
            if header & HAS_CLASSES != 0 {
                let n = word(at)? as usize;
                for i in 0..n {
                    if word(at + 1 + 2 * i)? as usize >= self.classes.len() {
                        return Err("class out of range");
                    }
                    on_edge(word(at + 2 + 2 * i)?, false)?;
                }
                at += 1 + 2 * n;
            }
            if header & HAS_ACCEPTS != 0 {
                let n = word(at)? as usize;
                let accepted = self
                    .code
                    .get(at + 1..at + 1 + n)
                    .ok_or("node runs past the end")?;
                if accepted.iter().any(|&v| v >= values_below) {
                    return Err("accepted value out of range");
                }
                at += 1 + n;
            }
            off = at;
        }
        Ok(count)
    }
}

/// The first occurrence of a non-empty `seg` in `hay`.
#[inline]
fn find_segment(seg: &[u8], hay: &[u8]) -> Option<usize> {
    if seg.len() > hay.len() {
        return None;
    }
    let (&first, rest) = seg.split_first()?;
    let last = hay.len() - seg.len() + 1;
    let mut q = 0;
    while q < last {
        let at = q + find_byte(first, &hay[q..last])?;
        if same_bytes(&hay[at + 1..at + seg.len()], rest) {
            return Some(at);
        }
        q = at + 1;
    }
    None
}

/// memchr, without its set-up cost on the short haystacks most lookups have.
#[inline]
fn find_byte(b: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() < 64 {
        find_byte_short(b, hay)
    } else {
        memchr::memchr(b, hay)
    }
}

/// [`find_byte`] eight bytes at a time. A byte-at-a-time loop costs a mispredicted exit
/// branch at a different trip count on nearly every call; this takes at most four words.
#[inline]
fn find_byte_short(b: u8, hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte is the first equal one: a borrow can only flag bytes above a
    // zero byte, never below it.
    let first_equal = |word: u64| {
        let x = word ^ (u64::from(b) * ONES);
        let t = x.wrapping_sub(ONES) & !x & HIGH;
        (t != 0).then(|| t.trailing_zeros() as usize / 8)
    };
    let n = hay.len();
    if n < 8 {
        return hay.iter().position(|&c| c == b);
    }
    let mut at = 0;
    while at + 8 <= n {
        if let Some(i) = first_equal(u64::from_le_bytes(hay[at..at + 8].try_into().unwrap())) {
            return Some(at + i);
        }
        at += 8;
    }
    if at == n {
        return None;
    }
    // The last eight bytes, overlapping those already searched, which hold no match.
    let i = first_equal(u64::from_le_bytes(hay[n - 8..].try_into().unwrap()))?;
    Some(n - 8 + i)
}

/// Slice equality for the short runs segments and keys are: eight bytes at a time, no libc
/// call (memcmp's call and dispatch cost more than the compare on 10 to 60 bytes).
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap());
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last word, overlapping the one before when the length is not a multiple of 8.
    word(a, n - 8) == word(b, n - 8)
}

#[inline]
fn find_label(labels: &[u8], b: u8) -> Option<usize> {
    if labels.len() <= 16 {
        labels.iter().position(|&l| l == b)
    } else {
        labels.binary_search(&b).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::pattern::{Parsed, parse};
    use super::*;

    fn compile(patterns: &[&str]) -> Automaton {
        let list: Vec<_> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| match parse(p.as_bytes()) {
                Parsed::Tokens(t) => (t, i as u32),
                Parsed::Irregular => panic!("{p}"),
            })
            .collect();
        let a = Automaton::build(&list);
        assert_eq!(a.validate(patterns.len() as u32), Ok(a.node_count));
        a
    }

    /// The values of the patterns matching `key`, asked as `PatternSet` asks: the start filter
    /// first, if there is one.
    fn matches(a: &Automaton, key: &str) -> Vec<u32> {
        let mut out = Vec::new();
        if a.may_match(key.as_bytes()) {
            a.search(key.as_bytes(), &mut Scratch::default(), &mut out);
        }
        out.sort();
        out
    }

    #[test]
    fn shared_prefixes_and_wildcards() {
        let a = compile(&[
            "pci:v00008086d000010D3sv*sd*bc*sc*i*",
            "pci:v*d*sv*sd*bc02sc00i*",
            "pci:v00008086d*sv*sd*bc*sc*i*",
            "usb:v1234p*",
            "abc",
            "ab?",
            "a[b-c]c",
        ]);
        assert_eq!(
            matches(&a, "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"),
            [0, 1, 2]
        );
        assert_eq!(matches(&a, "pci:v000010ECd00008168sv0sd0bc02sc00i00"), [1]);
        assert_eq!(matches(&a, "abc"), [4, 5, 6]);
        assert_eq!(matches(&a, "abd"), [5]);
        assert_eq!(matches(&a, "ab"), Vec::<u32>::new());
        assert_eq!(matches(&a, "usb:v1234p"), [3]);
    }

    /// A saved automaton's edges are checked against the nodes: each must lead to the start of
    /// a node, of the kind (star target or not) the edge says.
    #[test]
    fn validation_checks_every_edge() {
        let a = compile(&["ab*c", "ax", "b"]);
        let mut nodes = Vec::new();
        a.walk(3, |off| nodes.push(off), |_, _| Ok(())).unwrap();
        let star_target = *nodes
            .iter()
            .find(|&&o| a.code[o] & STAR_TARGET != 0)
            .unwrap();
        let mid_node = (1..a.code.len()).find(|o| !nodes.contains(o)).unwrap();
        let edge = a.view(0).targets;
        let with = |target: usize| {
            let mut code = a.code.to_vec();
            code[edge] = target as u32;
            let mut b = a.clone();
            b.code = Stored::from_vec(code);
            b.validate(3)
        };
        assert_eq!(with(a.code[edge] as usize), Ok(a.node_count));
        assert_eq!(with(star_target), Err("star edge and star target disagree"));
        assert_eq!(with(mid_node), Err("edge does not lead to a node"));
        assert_eq!(with(a.code.len()), Err("edge does not lead to a node"));
    }

    /// The first byte is looked up in a table only when the root has nothing but literal
    /// children; a pattern that starts with a wildcard, or an empty one, keeps the root's
    /// own branching.
    #[test]
    fn the_first_byte_table_only_where_the_root_is_literal() {
        let literal = compile(&["of:N*", "acpi*:PNP0A03:*", "platform:hmem*", "x"]);
        assert!(literal.root_children.is_some());
        assert_eq!(matches(&literal, "platform:hmem0"), [2]);
        assert_eq!(matches(&literal, "acpi:PNP0A03:"), [1]);
        assert_eq!(matches(&literal, "x"), [3]);
        assert_eq!(matches(&literal, "qlatform:hmem0"), Vec::<u32>::new());
        assert_eq!(matches(&literal, ""), Vec::<u32>::new());
        for first in ["*abc", "?bc", "[ab]bc", ""] {
            let a = compile(&["abc", first]);
            assert!(a.root_children.is_none(), "{first}");
        }
        assert_eq!(matches(&compile(&["abc", "*bc"]), "zbc"), [1]);
        assert_eq!(matches(&compile(&["abc", "?bc"]), "abc"), [0, 1]);
        assert_eq!(matches(&compile(&["abc", "[!a]bc"]), "bbc"), [1]);
        assert_eq!(matches(&compile(&["abc", ""]), ""), [1]);
    }

    /// A walk that starts at its jump finds what the walk from the root finds, and only paths
    /// with at most one wildcard node before the depth get a jump.
    #[test]
    fn jumps_start_walks_where_the_root_would_have_come() {
        let patterns = [
            "pci:v00008086d000010D3sv*sd*bc*sc*i*",
            "pci:v00008086d*sv*sd*bc02sc00i*",
            "pci:v00008086",
            "pci:v000010ECd00008168sv*sd*bc*sc*i*",
            "pci:v000010E?d*",
            "pci:v00002*d00001234*",
            "pci:v00003*",
            "pci:v00003333d*",
            "pci:v00001AF[45]d*",
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001000sv*",
            "pci:v0",
        ];
        let mut a = compile(&patterns);
        a.derive_jumps(&[24, 13]);
        let [devices, vendors] = a.jumps() else {
            panic!("two depths")
        };
        let wild = |j: Option<&Jump>| j.map(|j| j.wild != NONE);
        // Paths that end a pattern before the depth (`pci:v00008086`, `pci:v0`) have a jump;
        // those behind `?`, `*` or a class keep it with that node to branch at.
        assert_eq!(wild(vendors.find(b"pci:v00008086d")), Some(false));
        assert_eq!(wild(vendors.find(b"pci:v000010ECd")), Some(true), "?");
        assert_eq!(wild(vendors.find(b"pci:v00001AF4d")), Some(true), "class");
        assert_eq!(wild(vendors.find(b"pci:v00003333d")), Some(true), "star");
        assert_eq!(wild(vendors.find(b"pci:v00002AF4d")), None, "no such path");
        assert!(
            vendors.find(b"pci:v0000808").is_none(),
            "shorter than the depth"
        );
        let vendor_star = devices.find(b"pci:v00008086d000010D3sv").unwrap();
        assert_eq!(
            vendor_star.wild_pos, 14,
            "the vendor's star follows its `d`"
        );
        assert_eq!(wild(devices.find(b"pci:v000010ECd00008168sv")), Some(true));
        assert_eq!(
            wild(devices.find(b"pci:v00001AF4d00001000sv")),
            None,
            "a class and a star on the way"
        );
        let mut root = a.clone();
        root.derive_jumps(&[]);
        assert!(
            a.heap_bytes() > root.heap_bytes(),
            "the table counts as held memory"
        );
        let mut rng = crate::test_rng::XorShift(0x5DEE_CE66_D1CE_4E5B);
        let pieces = [
            "pci:v", "00008086", "000010EC", "00001AF4", "00001AF5", "00002AF4", "00003333", "d",
            "000010D3", "00001000", "00001234", "00008168", "sv", "sd", "bc02", "sc00", "i", "00",
            "Z",
        ];
        // Keys start on the paths, and beside them, so that every jump is taken.
        let starts = [
            "pci:v",
            "pci:v00008086d",
            "pci:v000010ECd",
            "pci:v00001AF4d",
            "pci:v00003333d",
            "pci:v00008086d000010D3sv",
            "pci:v000010ECd00008168sv",
            "pci:v00001AF4d00001000sv",
        ];
        for _ in 0..40_000 {
            let n = rng.next() % 9;
            let start = starts[(rng.next() % starts.len() as u64) as usize];
            let key = key_from(&mut rng, start, &pieces, n);
            let want = fnmatch_all(&patterns, &key);
            let mut from_root = matches(&root, &key);
            from_root.dedup();
            let mut jumped = matches(&a, &key);
            jumped.dedup();
            assert_eq!(from_root, want, "{key}");
            assert_eq!(jumped, want, "{key}");
        }
    }

    /// `start` and then `n` pieces drawn from `pieces`.
    fn key_from(
        rng: &mut crate::test_rng::XorShift,
        start: &str,
        pieces: &[&str],
        n: u64,
    ) -> String {
        let mut key = String::from(start);
        for _ in 0..n {
            key.push_str(pieces[(rng.next() % pieces.len() as u64) as usize]);
        }
        key
    }

    /// The indexes of the patterns that glibc's fnmatch says match `key`, in order.
    fn fnmatch_all(patterns: &[&str], key: &str) -> Vec<u32> {
        patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| super::super::pattern::libc_fnmatch(p.as_bytes(), key.as_bytes()))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// `a` as a damaged file could have it: each of the root's literal edges leads back to the
    /// root, which validation (edge by edge) does not catch.
    fn with_root_edges_to_root(a: &Automaton) -> Automaton {
        let root = a.view(0);
        let mut code = a.code.to_vec();
        for i in 0..root.lit_count() {
            code[root.targets + i] = 0;
        }
        let mut looped = a.clone();
        looped.code = Stored::from_vec(code);
        looped
    }

    /// Edges of a damaged file that lead back to the root make paths meet: the jump table is
    /// then left out instead of enumerating 2^depth paths.
    #[test]
    fn jumps_only_for_a_tree() {
        let a = compile(&["ab*", "ba*"]);
        let mut looped = with_root_edges_to_root(&a);
        assert_eq!(
            looped.validate(2),
            Ok(a.node_count),
            "the loop is not caught there"
        );
        looped.derive_jumps(&[8]);
        assert!(looped.jumps().is_empty());
        let mut tree = a.clone();
        tree.derive_jumps(&[8]);
        assert!(tree.jumps().is_empty(), "no literal path is 8 bytes long");
    }

    /// The start filter turns a key away only when no pattern matches it, and does turn away
    /// keys whose bus has patterns only under other starts.
    #[test]
    fn start_filter_turns_away_only_keys_nothing_matches() {
        let patterns = [
            "platform:hmem*",
            "platform:hmem_platform*",
            "platform:e820_pmem*",
            "usb:v1234p*d*",
            "of:N*T*Cfoo",
            "acpi*:PNP0C09:*",
            "char-major-99-*",
            "sound-service-?-3",
            "foo:*",
            "bar:",
            "a::b*",
            "x[ab]:y*",
            "1123456789abc:x*",
            "2123456789abcd:y*",
            "0123456789abcde:*",
            "very_long_bus_name:z*",
        ];
        let mut a = compile(&patterns);
        a.derive_starts();
        let filter = a.starts.clone().expect("a tree");
        for key in [
            &b"platform:gpio_exar"[..],
            b"platform:",
            b"platform",
            b"usb:x9999p0001",
            b"usb:",
            b"of:",
            b"baz:x",
            b"1123456789abc:y",
            b"2123456789abcd:z",
            b"9123456789abcde:z",
            b"",
        ] {
            assert!(!filter.may_match(key), "{}", String::from_utf8_lossy(key));
        }
        let mut unfiltered = a.clone();
        unfiltered.starts = None;
        assert!(
            a.heap_bytes() > unfiltered.heap_bytes(),
            "its table is held"
        );
        let mut rng = crate::test_rng::XorShift(0x9E37_79B9_7F4A_7C15);
        let pieces = [
            "platform:",
            "hmem",
            "_platform",
            "e820_pmem",
            "gpio",
            "usb:v",
            "1234",
            "p",
            "d",
            "of:N",
            "T",
            "Cfoo",
            "acpi",
            "acpi:",
            "PNP0C09:",
            "char-major-99-",
            "sound-service-",
            "3",
            "-",
            "foo:",
            "bar:",
            "a::b",
            "a:",
            "xa:y",
            "xb:",
            "xc:y",
            "1123456789abc",
            "2123456789abcd",
            "0123456789abcde",
            "d",
            "e",
            ":",
            "x",
            "y",
            "z",
            "very_long_bus_name:",
            "",
        ];
        let mut turned_away = 0;
        for _ in 0..50_000 {
            let n = rng.next() % 5;
            let key = key_from(&mut rng, "", &pieces, n);
            let want = fnmatch_all(&patterns, &key);
            if !filter.may_match(key.as_bytes()) {
                turned_away += 1;
                assert_eq!(want, Vec::<u32>::new(), "{key}");
            }
            let mut found = matches(&a, &key);
            found.dedup();
            assert_eq!(found, want, "{key}");
            let mut walked = matches(&unfiltered, &key);
            walked.dedup();
            assert_eq!(walked, want, "{key}");
        }
        assert!(turned_away > 10_000, "{turned_away} keys turned away");
    }

    /// A pattern that starts with a wildcard can match any key: nothing is turned away.
    #[test]
    fn start_filter_of_a_leading_wildcard_keeps_every_key() {
        for first in ["*x", "?:a", "[ab]:c"] {
            let mut a = compile(&["platform:hmem*", first]);
            a.derive_starts();
            let filter = a.starts.expect("a tree");
            for key in ["", "platform:gpio", "zz:x", "q"] {
                assert!(filter.may_match(key.as_bytes()), "{first} {key}");
            }
        }
    }

    /// As for jumps, a damaged file whose edges loop gets no filter.
    #[test]
    fn start_filter_only_for_a_tree() {
        let mut looped = with_root_edges_to_root(&compile(&["ab*", "ba*"]));
        looped.derive_starts();
        assert!(looped.starts.is_none());
    }

    #[test]
    fn contains_stars() {
        let a = compile(&[
            "cpu:f:*,0001,*",
            "cpu:f:*,0002,*",
            "cpu:f:*,0003,*",
            "cpu:f:*,0004,*",
            "cpu:f:*,0001,*",
        ]);
        assert_eq!(a.contains.len(), 1);
        assert_eq!(matches(&a, "cpu:f:,0000,0001,0004,"), [0, 3, 4]);
        assert_eq!(matches(&a, "cpu:f:,0002"), Vec::<u32>::new());
    }

    #[test]
    fn contains_strings_with_a_common_prefix_that_overlaps_itself() {
        let a = compile(&["x:*aab*", "x:*aabb*", "x:*aac*", "y*"]);
        assert_eq!(a.contains.len(), 1);
        assert_eq!(matches(&a, "x:aaab"), [0]);
        assert_eq!(matches(&a, "x:aaaabb"), [0, 1]);
        assert_eq!(matches(&a, "x:aaac-aab"), [0, 2]);
        assert_eq!(matches(&a, "x:aa"), Vec::<u32>::new());
        assert!(matches!(
            a.contains[0].searcher(),
            SubstringSearcher::Prefixed { .. }
        ));
    }

    #[test]
    fn short_byte_search_agrees_with_a_plain_scan() {
        let mut hay = Vec::new();
        for len in 0..40usize {
            hay.clear();
            hay.extend((0..len).map(|i| b"ab\x80\x00\x01\xff"[i * 7 % 6]));
            for b in [b'a', b'b', 0x80, 0x01, 0xff, 0x00, 0x7f] {
                for start in 0..=len {
                    let h = &hay[start..];
                    assert_eq!(
                        find_byte_short(b, h),
                        h.iter().position(|&c| c == b),
                        "{b:#x} in {h:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn many_stars_stay_polynomial() {
        let a = compile(&["*a*a*a*a*a*a*a*a*a*a*a*a*b"]);
        let key = "a".repeat(4000);
        assert!(matches(&a, &key).is_empty());
        assert_eq!(matches(&a, &format!("{key}b")), [0]);
    }
}
