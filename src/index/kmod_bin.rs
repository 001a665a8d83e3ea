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

/// Every entry of the index at `path`, keys in byte order and, under one key, values in stored
/// order.
pub fn read_all(path: &Path) -> Result<Vec<Entry>> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(path, &data)
}

pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Entry>> {
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
        assert!(parse(p, b"").is_err());
        assert!(parse(p, b"\xb0\x07\xf4\x57\0\x02\0\x01").is_err());
        let mut bad = b"\xb0\x07\xf4\x57\0\x02\0\x01".to_vec();
        bad.extend_from_slice(&(FLAG_CHILDREN | 12).to_be_bytes());
        bad.extend_from_slice(b"ab");
        bad.extend_from_slice(&(FLAG_CHILDREN | 12).to_be_bytes()); // points at itself
        bad.extend_from_slice(&(FLAG_CHILDREN | 12).to_be_bytes());
        assert!(parse(p, &bad).is_err());
    }
}
