//! libkmod's wildcard search re-enacted step by step, for keys that contain `*`, `?` or `[`.
//!
//! libkmod walks its radix tree (`index_mm_searchwild`) comparing the key byte by byte, and at
//! every node offers the key's remainder to the `*`, `?` and `[` subtrees through fnmatch. Because
//! the walk also follows a child edge whose byte is a wildcard when the key has that very byte, a
//! key such as `usb:v0D96p410Ad0[1-9]*dc*` matches the pattern written the same way, which
//! fnmatch alone would not do. Whether the walk can continue past a wildcard depends on where
//! depmod's tree has node boundaries, so the only faithful way to answer such keys is to build the
//! same tree and walk it the same way. Real MODALIAS strings never contain these bytes; for every
//! other key the compiled automaton gives the same answer (see [`super`]).

use crate::index::kmod_bin::{RadixTree, add_value};
use crate::matcher::libc_fnmatch;

impl RadixTree<u32> {
    /// `index_mm_searchwild`: the values of every matching key, in libkmod's order.
    pub(crate) fn search(&self, key: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut node = 0usize;
        let mut i = 0usize;
        loop {
            let n = &self.nodes[node];
            for (j, &c) in n.prefix.iter().enumerate() {
                if matches!(c, b'*' | b'?' | b'[') {
                    self.all(node, j, &mut buf, &key[(i + j).min(key.len())..], &mut out);
                    return out.into_iter().map(|(_, v)| v).collect();
                }
                if key.get(i + j) != Some(&c) {
                    return out.into_iter().map(|(_, v)| v).collect();
                }
            }
            i += n.prefix.len();
            for wildcard in [b'*', b'?', b'['] {
                if let Some(child) = self.child(node, wildcard) {
                    buf.push(wildcard);
                    self.all(child, 0, &mut buf, &key[i..], &mut out);
                    buf.pop();
                }
            }
            let Some(&c) = key.get(i) else {
                for &(p, v) in &n.values {
                    add_value(&mut out, p, v);
                }
                return out.into_iter().map(|(_, v)| v).collect();
            };
            match self.child(node, c) {
                Some(next) => {
                    node = next;
                    i += 1;
                }
                None => return out.into_iter().map(|(_, v)| v).collect(),
            }
        }
    }

    /// `index_mm_searchwild_all`: every value below `node` whose pattern (the wildcard part,
    /// accumulated in `buf`) matches `subkey`; children first, then the node's own values.
    fn all(
        &self,
        node: usize,
        from: usize,
        buf: &mut Vec<u8>,
        subkey: &[u8],
        out: &mut Vec<(u32, u32)>,
    ) {
        let n = &self.nodes[node];
        let pushed = n.prefix.len() - from;
        buf.extend_from_slice(&n.prefix[from..]);
        for &(c, child) in &n.children {
            buf.push(c);
            self.all(child as usize, 0, buf, subkey, out);
            buf.pop();
        }
        if !n.values.is_empty() && libc_fnmatch(buf, subkey) {
            for &(p, v) in &n.values {
                add_value(out, p, v);
            }
        }
        buf.truncate(buf.len() - pushed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_walk_through_wildcard_edges() {
        let mut t = RadixTree::new();
        t.insert(b"ab[1-9]*x", 0, 1);
        t.insert(b"ab[1-9]*y", 0, 2);
        t.insert(b"ab*", 0, 3);
        // fnmatch alone would not match the key written like the pattern.
        assert_eq!(t.search(b"ab[1-9]*x"), [1, 3]);
        assert_eq!(t.search(b"ab5zx"), [1, 3]);
        assert_eq!(t.search(b"ac"), Vec::<u32>::new());
    }

    #[test]
    fn equal_priorities_come_out_in_reverse_walk_order() {
        let mut t = RadixTree::new();
        for (i, k) in [&b"a*"[..], b"a*b", b"ab", b"a?"].iter().enumerate() {
            t.insert(k, 0, i as u32);
        }
        // Walk: the `*` subtree post-order (a*b, a*), then `?` (a?), then the exact node (ab);
        // each new value goes first.
        assert_eq!(t.search(b"ab"), [2, 3, 0, 1]);
    }
}
