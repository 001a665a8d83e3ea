//! Reader for kmod's binary indexes (`modules.alias.bin`, `modules.dep.bin`, ...).
//!
//! Some initramfs builders (mkinitcpio) copy only these, so every text file we read has this as
//! its stand-in. The format (depmod's `index_write`, libkmod's `index_mm_*`), all big-endian:
//!
//! ```text
//! header:  u32 magic 0xB007F457, u32 version 0x00020001, u32 root node reference
//! node reference: top bits say what the node holds, low 28 bits are its file offset
//!   0x80000000 prefix:   NUL-terminated bytes appended to the key
//!   0x20000000 children: u8 first, u8 last, (last - first + 1) u32 references (0 = none)
//!   0x40000000 values:   u32 count, then count x (u32 priority, NUL-terminated value)
//! ```
//!
//! A node's key is its parent's key, the child byte, then its prefix. We only ever need every
//! (key, value, priority) triple, so the reader walks the whole trie once.

use crate::error::{Error, Result};
use std::path::Path;

const MAGIC: u32 = 0xB007_F457;
const VERSION_MAJOR: u32 = 0x0002;
const FLAG_PREFIX: u32 = 0x8000_0000;
const FLAG_VALUES: u32 = 0x4000_0000;
const FLAG_CHILDREN: u32 = 0x2000_0000;
const OFFSET_MASK: u32 = 0x0FFF_FFFF;

/// One stored value: the key it sits under, its text and its priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub priority: u32,
}

/// Every entry of the index `data` (read from `path`, named in errors), keys in byte order and,
/// under one key, values in stored order.
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Entry>> {
    // depmod writes an empty file for an index it has no source for (modules.builtin.bin when
    // modules.builtin is missing, as in a dracut image before dracut copies it), and libkmod
    // reads a file too short for a header as no index at all.
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let r = Reader { path, data };
    if r.u32(0)? != MAGIC {
        return Err(Error::corrupt(path, 0, "not a kmod index (bad magic)"));
    }
    let version = r.u32(4)?;
    if version >> 16 != VERSION_MAJOR {
        return Err(Error::corrupt(
            path,
            4,
            format!("unsupported index version {version:#010x}"),
        ));
    }
    let root = r.u32(8)?;
    let mut out = Vec::new();
    // Depth-first, children in byte order; an explicit stack so a hostile file cannot overflow
    // ours, and a bound on the number of visits so a reference cycle cannot loop forever.
    let mut stack = vec![(root, Vec::new())];
    let mut visits = 0usize;
    while let Some((reference, mut key)) = stack.pop() {
        visits += 1;
        if visits > data.len() {
            return Err(Error::corrupt(path, 0, "node references form a cycle"));
        }
        let mut at = (reference & OFFSET_MASK) as usize;
        if at < 12 {
            return Err(Error::corrupt(
                path,
                at as u64,
                "node reference into the header",
            ));
        }
        if reference & FLAG_PREFIX != 0 {
            let s = r.cstr(at)?;
            key.extend_from_slice(s);
            at += s.len() + 1;
        }
        let mut children = Vec::new();
        if reference & FLAG_CHILDREN != 0 {
            let first = r.byte(at)?;
            let last = r.byte(at + 1)?;
            if last < first {
                return Err(Error::corrupt(path, at as u64, "child range is reversed"));
            }
            at += 2;
            for c in first..=last {
                let child = r.u32(at)?;
                at += 4;
                if child & OFFSET_MASK != 0 {
                    children.push((c, child));
                }
            }
        }
        if reference & FLAG_VALUES != 0 {
            let count = r.u32(at)? as usize;
            at += 4;
            for _ in 0..count {
                let priority = r.u32(at)?;
                let value = r.cstr(at + 4)?;
                at += 4 + value.len() + 1;
                out.push(Entry {
                    key: key.clone(),
                    value: value.to_vec(),
                    priority,
                });
            }
        }
        for (c, child) in children.into_iter().rev() {
            let mut k = key.clone();
            k.push(c);
            stack.push((child, k));
        }
    }
    Ok(out)
}

#[derive(Debug)]
pub(crate) struct RadixNode<V> {
    pub(crate) prefix: Vec<u8>,
    /// Sorted by byte.
    pub(crate) children: Vec<(u8, u32)>,
    /// (priority, value) in depmod's stored order.
    pub(crate) values: Vec<(u32, V)>,
}

impl<V> Default for RadixNode<V> {
    fn default() -> Self {
        RadixNode {
            prefix: Vec::new(),
            children: Vec::new(),
            values: Vec::new(),
        }
    }
}

/// A radix tree shaped exactly as depmod's `index_insert` shapes it: node boundaries where keys
/// diverge or end, values kept sorted by priority with the newest first among equals.
#[derive(Debug)]
pub struct RadixTree<V> {
    pub(crate) nodes: Vec<RadixNode<V>>,
}

/// libkmod's `add_value`: keep the list sorted by priority, a new value going before the values
/// of equal priority.
pub(crate) fn add_value<V>(values: &mut Vec<(u32, V)>, priority: u32, value: V) {
    let at = values.partition_point(|&(p, _)| p < priority);
    values.insert(at, (priority, value));
}

impl<V> Default for RadixTree<V> {
    fn default() -> Self {
        RadixTree {
            nodes: vec![RadixNode::default()],
        }
    }
}

impl<V> RadixTree<V> {
    pub fn new() -> RadixTree<V> {
        RadixTree::default()
    }

    pub(crate) fn child(&self, node: usize, c: u8) -> Option<usize> {
        let children = &self.nodes[node].children;
        children
            .binary_search_by_key(&c, |&(b, _)| b)
            .ok()
            .map(|i| children[i].1 as usize)
    }

    /// depmod's `index_insert`, in insertion order.
    pub fn insert(&mut self, key: &[u8], priority: u32, value: V) {
        let mut node = 0usize;
        let mut i = 0usize;
        loop {
            let prefix_len = self.nodes[node].prefix.len();
            let common = self.nodes[node]
                .prefix
                .iter()
                .zip(&key[i..])
                .take_while(|(a, b)| a == b)
                .count();
            if common < prefix_len {
                // Split: this node keeps prefix[..common]; a new child at prefix[common] takes
                // the rest of the prefix with all children and values.
                let old = std::mem::take(&mut self.nodes[node]);
                let edge = old.prefix[common];
                let moved = RadixNode {
                    prefix: old.prefix[common + 1..].to_vec(),
                    children: old.children,
                    values: old.values,
                };
                self.nodes.push(moved);
                let moved_id = self.nodes.len() as u32 - 1;
                self.nodes[node] = RadixNode {
                    prefix: old.prefix[..common].to_vec(),
                    children: vec![(edge, moved_id)],
                    values: Vec::new(),
                };
            }
            i += common;
            let Some(&c) = key.get(i) else {
                add_value(&mut self.nodes[node].values, priority, value);
                return;
            };
            match self.child(node, c) {
                Some(next) => {
                    node = next;
                    i += 1;
                }
                None => {
                    self.nodes.push(RadixNode {
                        prefix: key[i + 1..].to_vec(),
                        children: Vec::new(),
                        values: vec![(priority, value)],
                    });
                    let id = self.nodes.len() as u32 - 1;
                    let children = &mut self.nodes[node].children;
                    let at = children.partition_point(|&(b, _)| b < c);
                    children.insert(at, (c, id));
                    return;
                }
            }
        }
    }

    /// The tree in kmod's binary index format, as depmod's `index_write` lays it out closely
    /// enough for libkmod to read (children are written before their parent).
    pub fn to_bytes(&self) -> Vec<u8>
    where
        V: AsRef<[u8]>,
    {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&(VERSION_MAJOR << 16 | 1).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        let root = self.write_node(0, &mut out);
        out[8..12].copy_from_slice(&root.to_be_bytes());
        out
    }

    fn write_node(&self, node: usize, out: &mut Vec<u8>) -> u32
    where
        V: AsRef<[u8]>,
    {
        let n = &self.nodes[node];
        let children: Vec<(u8, u32)> = n
            .children
            .iter()
            .map(|&(c, child)| (c, self.write_node(child as usize, out)))
            .collect();
        let offset = out.len() as u32;
        let mut reference = offset;
        if !n.prefix.is_empty() {
            reference |= FLAG_PREFIX;
            out.extend_from_slice(&n.prefix);
            out.push(0);
        }
        if let (Some(first), Some(last)) = (children.first(), children.last()) {
            reference |= FLAG_CHILDREN;
            out.push(first.0);
            out.push(last.0);
            for c in first.0..=last.0 {
                let child = children.iter().find(|x| x.0 == c).map_or(0, |x| x.1);
                out.extend_from_slice(&child.to_be_bytes());
            }
        }
        if !n.values.is_empty() {
            reference |= FLAG_VALUES;
            out.extend_from_slice(&(n.values.len() as u32).to_be_bytes());
            for (priority, value) in &n.values {
                out.extend_from_slice(&priority.to_be_bytes());
                out.extend_from_slice(value.as_ref());
                out.push(0);
            }
        }
        reference
    }
}

struct Reader<'a> {
    path: &'a Path,
    data: &'a [u8],
}

impl Reader<'_> {
    fn truncated(&self, at: usize) -> Error {
        Error::corrupt(self.path, at as u64, "truncated")
    }

    fn byte(&self, at: usize) -> Result<u8> {
        self.data.get(at).copied().ok_or_else(|| self.truncated(at))
    }

    fn u32(&self, at: usize) -> Result<u32> {
        let b = self
            .data
            .get(at..at + 4)
            .ok_or_else(|| self.truncated(at))?;
        Ok(u32::from_be_bytes(b.try_into().unwrap()))
    }

    fn cstr(&self, at: usize) -> Result<&[u8]> {
        let rest = self.data.get(at..).ok_or_else(|| self.truncated(at))?;
        let len = memchr::memchr(0, rest).ok_or_else(|| self.truncated(self.data.len()))?;
        Ok(&rest[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_without_panicking() {
        let p = Path::new("x.bin");
        assert!(parse(p, b"\xb0").is_err());
        assert!(parse(p, b"\xb0\x07\xf4\x57\0\x02\0\x01").is_err());
        let mut bad = b"\xb0\x07\xf4\x57\0\x02\0\x01".to_vec();
        bad.extend_from_slice(&(FLAG_CHILDREN | 12).to_be_bytes());
        bad.extend_from_slice(b"ab");
        bad.extend_from_slice(&(FLAG_CHILDREN | 12).to_be_bytes()); // points at itself
        bad.extend_from_slice(&(FLAG_CHILDREN | 12).to_be_bytes());
        assert!(parse(p, &bad).is_err());
    }

    #[test]
    fn an_empty_file_is_an_empty_index() {
        assert_eq!(parse(Path::new("modules.builtin.bin"), b"").unwrap(), []);
    }

    #[test]
    fn written_indexes_read_back() {
        let mut t = RadixTree::new();
        for (i, k) in ["pci:v*d*", "pci:v0000", "usb:x", "pci:v00001234"]
            .iter()
            .enumerate()
        {
            t.insert(k.as_bytes(), i as u32, format!("m{i}"));
        }
        t.insert(b"usb:x", 0, "again".to_owned());
        let entries = parse(Path::new("t.bin"), &t.to_bytes()).unwrap();
        let got: Vec<(String, String, u32)> = entries
            .into_iter()
            .map(|e| {
                let key = String::from_utf8(e.key).unwrap();
                (key, String::from_utf8(e.value).unwrap(), e.priority)
            })
            .collect();
        let want = [
            ("pci:v*d*", "m0", 0),
            ("pci:v0000", "m1", 1),
            ("pci:v00001234", "m3", 3),
            ("usb:x", "again", 0),
            ("usb:x", "m2", 2),
        ];
        let want: Vec<(String, String, u32)> = want
            .iter()
            .map(|(k, v, p)| (k.to_string(), v.to_string(), *p))
            .collect();
        assert_eq!(got, want);
    }
}
