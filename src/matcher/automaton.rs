//! All patterns of a table compiled into one trie over tokens, searched with a set of
//! (node, position) states.
//!
//! Why a trie and not a DFA: modalias patterns are long literal prefixes (`pci:v00008086d000010D3`)
//! followed by a few `*`-separated fields. A trie shares the prefixes, so a lookup follows one
//! literal path and only branches where a pattern has a wildcard. A DFA over 27,000 such patterns
//! explodes (semantics.md §7: a dense DFA never finished determinising; a lazy one needs a 21 MiB
//! cache).
//!
//! Why it stays fast with many stars: reaching the node after a `*` at position `p` means "the
//! star may stop at any position `q >= p`". If the same star node was already expanded from a
//! position `p' <= p`, every continuation from `p` was already explored. Each star node therefore
//! remembers the lowest position it was expanded from and only expands positions below it. Every
//! other node has exactly one parent, so each (node, position) pair is visited at most once and a
//! lookup costs at most `star nodes reached x key length` steps, never the exponential blow-up of
//! naive backtracking. libkmod instead enumerates the whole subtree under a wildcard and runs
//! fnmatch on every stored suffix (semantics.md §2).
//!
//! Literal runs are path-compressed: a node owns the bytes that must follow on arrival
//! (`segment`). For the node a `*` leads to, the segment is what must follow the star, so its first
//! byte is searched with memchr instead of trying every position.

use super::pattern::{ByteSet, Token};

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(crate) struct Node {
    pub(crate) seg_start: u32,
    pub(crate) seg_len: u32,
    pub(crate) lit_start: u32,
    pub(crate) lit_len: u32,
    pub(crate) class_start: u32,
    pub(crate) class_len: u32,
    pub(crate) any: u32,
    pub(crate) star: u32,
    pub(crate) accept_start: u32,
    pub(crate) accept_len: u32,
    /// For nodes that a `*` edge leads to: their slot in the search memo.
    pub(crate) star_slot: u32,
}

/// The compiled form of a list of token sequences, each with a `u32` value reported on a match.
#[derive(Clone, Debug, Default)]
pub struct Automaton {
    pub(crate) nodes: Vec<Node>,
    pub(crate) seg_bytes: Vec<u8>,
    pub(crate) lit_labels: Vec<u8>,
    pub(crate) lit_targets: Vec<u32>,
    pub(crate) class_ids: Vec<u32>,
    pub(crate) class_targets: Vec<u32>,
    pub(crate) classes: Vec<ByteSet>,
    pub(crate) accepts: Vec<u32>,
    pub(crate) star_slots: u32,
}

/// Per-thread search state, reused across lookups so a lookup allocates nothing.
#[derive(Default, Debug)]
pub struct Scratch {
    generation: u32,
    /// Per star slot: (generation it was last touched in, lowest position expanded).
    memo: Vec<(u32, u32)>,
    stack: Vec<(u32, u32)>,
}

impl Scratch {
    fn reset(&mut self, slots: usize) {
        if self.memo.len() != slots {
            self.memo = vec![(0, 0); slots];
            self.generation = 0;
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

struct BuildNode {
    children: Vec<(u32, u32)>,
    values: Vec<u32>,
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
        // children stay sorted and the path to the previous sequence is the only one to look at.
        let mut nodes = vec![BuildNode {
            children: Vec::new(),
            values: Vec::new(),
        }];
        let mut path: Vec<u32> = vec![0];
        let mut prev: &[u32] = &[];
        for (keys, value) in &keyed {
            let common = keys.iter().zip(prev).take_while(|(a, b)| a == b).count();
            path.truncate(common + 1);
            for &k in &keys[common..] {
                let parent = *path.last().unwrap() as usize;
                let id = nodes.len() as u32;
                nodes.push(BuildNode {
                    children: Vec::new(),
                    values: Vec::new(),
                });
                nodes[parent].children.push((k, id));
                path.push(id);
            }
            nodes[*path.last().unwrap() as usize].values.push(*value);
            prev = keys;
        }

        let mut out = Automaton {
            classes,
            ..Default::default()
        };
        let mut map = vec![NONE; nodes.len()];
        out.freeze(&nodes, 0, &mut map);
        out
    }

    /// Converts build node `id` (and its subtree) into the compact form, absorbing chains of
    /// single literal children into the node's segment. Iterative, so deep patterns cannot
    /// overflow the stack.
    fn freeze(&mut self, nodes: &[BuildNode], root: u32, map: &mut [u32]) {
        // Work list of (build node that starts a frozen node, frozen index, is a star target).
        let mut work = vec![(root, self.alloc(false), false)];
        map[root as usize] = 0;
        while let Some((start, index, _)) = work.pop() {
            // Follow the chain of nodes that have exactly one literal child and nothing else.
            let seg_start = self.seg_bytes.len() as u32;
            let mut cur = start as usize;
            while nodes[cur].values.is_empty()
                && nodes[cur].children.len() == 1
                && nodes[cur].children[0].0 < 256
                && cur != root as usize
            {
                let (k, child) = nodes[cur].children[0];
                self.seg_bytes.push(k as u8);
                cur = child as usize;
            }
            let node = &nodes[cur];
            let mut n = self.nodes[index as usize];
            n.seg_start = seg_start;
            n.seg_len = self.seg_bytes.len() as u32 - seg_start;
            n.accept_start = self.accepts.len() as u32;
            n.accept_len = node.values.len() as u32;
            self.accepts.extend_from_slice(&node.values);
            n.lit_start = self.lit_labels.len() as u32;
            n.class_start = self.class_ids.len() as u32;
            for &(k, child) in &node.children {
                let is_star = k == KEY_STAR;
                let target = self.alloc(is_star);
                work.push((child, target, is_star));
                match k {
                    0..=255 => {
                        self.lit_labels.push(k as u8);
                        self.lit_targets.push(target);
                    }
                    KEY_ANY => n.any = target,
                    KEY_STAR => n.star = target,
                    _ => {
                        self.class_ids.push(k - KEY_CLASS);
                        self.class_targets.push(target);
                    }
                }
            }
            n.lit_len = self.lit_labels.len() as u32 - n.lit_start;
            n.class_len = self.class_ids.len() as u32 - n.class_start;
            self.nodes[index as usize] = n;
        }
    }

    fn alloc(&mut self, star_target: bool) -> u32 {
        let slot = if star_target {
            self.star_slots += 1;
            self.star_slots - 1
        } else {
            NONE
        };
        self.nodes.push(Node {
            any: NONE,
            star: NONE,
            star_slot: slot,
            ..Default::default()
        });
        self.nodes.len() as u32 - 1
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Heap bytes held by the compiled form.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
            + self.seg_bytes.len()
            + self.lit_labels.len()
            + self.lit_targets.len() * 4
            + self.class_ids.len() * 4
            + self.class_targets.len() * 4
            + self.classes.len() * 32
            + self.accepts.len() * 4
    }

    /// Appends the value of every pattern that matches `key` to `out`, each once, in no
    /// particular order.
    pub fn search(&self, key: &[u8], scratch: &mut Scratch, out: &mut Vec<u32>) {
        if self.nodes.is_empty() {
            return;
        }
        scratch.reset(self.star_slots as usize);
        // The root has an empty segment; start with its branches at position 0.
        self.branch(0, 0, key, scratch, out);
        while let Some((node, pos)) = scratch.stack.pop() {
            let n = &self.nodes[node as usize];
            let seg = self.segment(n);
            if key.len() - (pos as usize) < seg.len() || &key[pos as usize..][..seg.len()] != seg {
                continue;
            }
            self.branch(node, pos as usize + seg.len(), key, scratch, out);
        }
    }

    #[inline]
    fn segment(&self, n: &Node) -> &[u8] {
        &self.seg_bytes[n.seg_start as usize..][..n.seg_len as usize]
    }

    /// Everything that can happen at `node` once its segment has matched and `pos` bytes of the
    /// key are consumed.
    #[inline]
    fn branch(&self, node: u32, pos: usize, key: &[u8], scratch: &mut Scratch, out: &mut Vec<u32>) {
        let n = &self.nodes[node as usize];
        if pos == key.len() {
            out.extend_from_slice(
                &self.accepts[n.accept_start as usize..][..n.accept_len as usize],
            );
        }
        if n.star != NONE {
            self.expand_star(n.star, pos, key, scratch, out);
        }
        let Some(&b) = key.get(pos) else { return };
        let next = pos as u32 + 1;
        let labels = &self.lit_labels[n.lit_start as usize..][..n.lit_len as usize];
        if let Some(i) = find_label(labels, b) {
            scratch
                .stack
                .push((self.lit_targets[n.lit_start as usize + i], next));
        }
        if n.any != NONE {
            scratch.stack.push((n.any, next));
        }
        for i in n.class_start as usize..(n.class_start + n.class_len) as usize {
            if self.classes[self.class_ids[i] as usize].contains(b) {
                scratch.stack.push((self.class_targets[i], next));
            }
        }
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
        let t = &self.nodes[target as usize];
        let slot = &mut scratch.memo[t.star_slot as usize];
        let end = if slot.0 == scratch.generation {
            if slot.1 as usize <= pos {
                return;
            }
            slot.1 as usize
        } else {
            key.len() + 1
        };
        *slot = (scratch.generation, pos as u32);
        let seg = self.segment(t);
        match seg.split_first() {
            None => {
                for q in pos..end {
                    self.branch(target, q, key, scratch, out);
                }
            }
            Some((&first, rest)) => {
                // The star stops at q where the segment occurs; the segment needs its bytes.
                if seg.len() > key.len() {
                    return;
                }
                let last = end.min(key.len() - seg.len() + 1);
                let mut q = pos;
                while q < last {
                    match memchr::memchr(first, &key[q..last]) {
                        None => break,
                        Some(off) => {
                            let at = q + off;
                            if key[at + 1..].starts_with(rest) {
                                self.branch(target, at + seg.len(), key, scratch, out);
                            }
                            q = at + 1;
                        }
                    }
                }
            }
        }
    }
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
        Automaton::build(&list)
    }

    fn matches(a: &Automaton, key: &str) -> Vec<u32> {
        let mut out = Vec::new();
        a.search(key.as_bytes(), &mut Scratch::default(), &mut out);
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

    #[test]
    fn many_stars_stay_polynomial() {
        let a = compile(&["*a*a*a*a*a*a*a*a*a*a*a*a*b"]);
        let key = "a".repeat(4000);
        assert!(matches(&a, &key).is_empty());
        assert_eq!(matches(&a, &format!("{key}b")), [0]);
    }
}
