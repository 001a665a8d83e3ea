//! The compiled [`Resolver`] saved to a file and loaded back without compiling.
//!
//! The file holds the resolver's arrays as they are in memory (native byte order, checked by a
//! marker), so loading is a few bulk copies. A header lists the module-directory files it was
//! compiled from with their sizes, modification times and content fingerprints;
//! [`load_or_build`] rebuilds when any of them changed, which is what happens after every
//! `depmod`. A file whose time changed but whose contents did not (an initramfs: cpio keeps
//! whole seconds), or a `modules.dep` whose paths changed but not its modules (initramfs-tools
//! decompresses the modules it copied), is read once to compare fingerprints, which costs far
//! less than compiling.
//!
//! Layout: `MAGIC`, u32 format version, u32 byte-order marker, the source stamps, then each
//! section as a u64 element count followed by the elements; a section used in place starts at
//! an 8-byte boundary.
//!
//! Loading maps the file (private, read-only). The arrays (the automata, the PCI and literal
//! tables, the pattern entries and text, the symbols) are used in place; the rest (module
//! names, flags, the rare irregular pattern) is copied out; after validation every page is
//! released, so only what lookups touch becomes resident again. The file is only ever replaced by rename, never
//! rewritten in place, so a mapping never sees it change under it.

use super::{Entry, Resolver, SymbolEntry};
use crate::error::{Error, Result};
use crate::index::{ModuleTree, SOURCE_FILES, SourceStamp, source_fingerprint};
use crate::matcher::automaton::{ContainsSet, Mapping, Stored};
use crate::matcher::pattern::ByteSet;
use crate::matcher::pci::{FieldPattern, Slot};
use crate::matcher::{Automaton, LiteralTable, NeedleSet, PatternSet, PciIndex};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"modaliasd-index\0";
const FORMAT: u32 = 13;
const BYTE_ORDER: u32 = 0x0102_0304;
/// Sections that may be used in place (the automaton) start at a multiple of this.
const ALIGN: usize = 8;

/// The file name of the saved form inside the module directory.
pub const FILE_NAME: &str = "modaliasd.index";

/// Marker for types whose every bit pattern is a valid value and that have no padding, so their
/// bytes can be copied in and out wholesale.
///
/// # Safety
/// Implement only for such types.
unsafe trait Plain: Copy + Default {}
unsafe impl Plain for u8 {}
unsafe impl Plain for u32 {}
unsafe impl Plain for Entry {}
unsafe impl Plain for SymbolEntry {}
unsafe impl Plain for ByteSet {}
unsafe impl Plain for FieldPattern {}
unsafe impl Plain for Slot {}
unsafe impl Plain for [u32; 4] {}

fn as_bytes<T: Plain>(v: &[T]) -> &[u8] {
    // SAFETY: T is Plain: no padding, so every byte is initialised.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

struct Writer(Vec<u8>);

impl Writer {
    fn align(&mut self) {
        let pad = self.0.len().next_multiple_of(ALIGN) - self.0.len();
        self.0.extend(std::iter::repeat_n(0u8, pad));
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn slice<T: Plain>(&mut self, v: &[T]) {
        self.0.extend_from_slice(&(v.len() as u64).to_ne_bytes());
        self.0.extend_from_slice(as_bytes(v));
    }
    /// A section the reader uses in place: aligned first.
    fn in_place<T: Plain>(&mut self, v: &[T]) {
        self.align();
        self.slice(v);
    }
}

/// Reads sections out of the file's bytes (a mapping of the file, or a buffer in tests).
struct Reader<'a> {
    path: &'a Path,
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn corrupt(&self, what: &str) -> Error {
        Error::corrupt(self.path, self.at as u64, what.to_owned())
    }
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| self.corrupt("truncated"))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().unwrap())
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_ne_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_ne_bytes(self.array()?))
    }
    /// Skips the padding the writer put before an aligned section.
    fn align(&mut self) -> Result<()> {
        let pad = self.at.next_multiple_of(ALIGN) - self.at;
        self.take(pad).map(|_| ())
    }
    /// A section's element count and the byte range of its elements.
    fn section<T: Plain>(&mut self) -> Result<(usize, std::ops::Range<usize>)> {
        let count = usize::try_from(self.u64()?).map_err(|_| self.corrupt("bad length"))?;
        let bytes = count
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| self.corrupt("bad length"))?;
        let start = self.at;
        self.take(bytes)?;
        Ok((count, start..start + bytes))
    }
    fn vec<T: Plain>(&mut self) -> Result<Vec<T>> {
        let (count, range) = self.section::<T>()?;
        let mut out = vec![T::default(); count];
        // SAFETY: `out` holds exactly the range's bytes of Plain values; any bit pattern is
        // valid.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.data[range.clone()].as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                range.len(),
            );
        }
        Ok(out)
    }
    /// A section used in place from `map` when there is one, copied otherwise.
    fn stored<T: Plain>(&mut self, map: Option<&std::sync::Arc<Mapping>>) -> Result<Stored<T>> {
        let Some(map) = map else {
            return Ok(Stored::from_vec(self.vec()?));
        };
        let (count, range) = self.section::<T>()?;
        Stored::mapped(map, range.start, count).ok_or_else(|| self.corrupt("section not aligned"))
    }

    /// A section written by [`Writer::in_place`].
    fn in_place<T: Plain>(&mut self, map: Option<&std::sync::Arc<Mapping>>) -> Result<Stored<T>> {
        self.align()?;
        self.stored(map)
    }

    fn string(&mut self) -> Result<String> {
        let bytes = self.vec::<u8>()?;
        String::from_utf8(bytes).map_err(|_| self.corrupt("string is not UTF-8"))
    }
}

fn write_stamps(w: &mut Writer, stamps: &[SourceStamp]) {
    w.u32(stamps.len() as u32);
    for s in stamps {
        w.slice(s.name.as_bytes());
        w.0.extend_from_slice(&s.len.to_ne_bytes());
        w.0.extend_from_slice(&s.mtime_ns.to_ne_bytes());
        w.0.extend_from_slice(&s.fingerprint.to_ne_bytes());
    }
}

fn read_stamps(r: &mut Reader) -> Result<Vec<SourceStamp>> {
    let n = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let name = r.string()?;
        let len = r.u64()?;
        let mtime_ns = i128::from_ne_bytes(r.array()?);
        out.push(SourceStamp {
            name,
            len,
            mtime_ns,
            fingerprint: r.u64()?,
        });
    }
    Ok(out)
}

/// Serialises `resolver`, compiled from files with the given stamps.
pub fn to_bytes(resolver: &Resolver, stamps: &[SourceStamp]) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.0.extend_from_slice(MAGIC);
    w.u32(FORMAT);
    w.u32(BYTE_ORDER);
    write_stamps(&mut w, stamps);
    w.u32(resolver.names.len() as u32);
    for n in &resolver.names {
        w.slice(n.as_bytes());
    }
    w.slice(&resolver.dep_sorted);
    w.slice(&resolver.builtin_sorted);
    w.in_place(&resolver.symbols);
    w.in_place(&resolver.symbol_bytes);
    w.in_place(&resolver.entries);
    w.u32(resolver.alias_entries);
    w.slice(&resolver.pattern_bytes[..]);
    w.slice(resolver.aliases_file.as_bytes());
    let set = &resolver.patterns;
    w.in_place(&set.literals.slots);
    w.in_place(&set.literals.bytes);
    w.in_place(&set.literals.values);
    write_automaton(&mut w, &set.automaton);
    write_automaton(&mut w, &set.pci_automaton);
    write_automaton(&mut w, &set.pci_wide);
    match &set.pci_wide_needs {
        None => w.u32(0),
        Some(needs) => {
            w.u32(1);
            w.u32(needs.strings().len() as u32);
            for s in needs.strings() {
                w.slice(s);
            }
        }
    }
    w.in_place(&set.pci.patterns);
    w.in_place(&set.pci.by_device);
    w.in_place(&set.pci.by_vendor);
    w.in_place(&set.pci.by_class);
    w.u32(set.pci.rest[0]);
    w.u32(set.pci.rest[1]);
    w.u32(u32::from(set.pci_only));
    w.u32(resolver.patterns.irregular.len() as u32);
    for (p, literal, v) in &resolver.patterns.irregular {
        w.slice(p);
        w.u32(*literal);
        w.u32(*v);
    }
    w.0
}

/// The automaton is used in place from a mapping of the file: 8-byte count, then words at an
/// aligned offset.
fn write_automaton(w: &mut Writer, a: &Automaton) {
    w.in_place(&a.code[..]);
    w.slice(&a.classes);
    w.u32(a.star_slots);
    w.u32(a.node_count);
    w.u32(a.contains.len() as u32);
    for set in &a.contains {
        w.u32(set.strings.len() as u32);
        for (s, v) in set.strings.iter().zip(&set.values) {
            w.slice(s);
            w.slice(v);
        }
    }
}

fn read_automaton(r: &mut Reader, map: Option<&std::sync::Arc<Mapping>>) -> Result<Automaton> {
    let code = r.in_place::<u32>(map)?;
    let mut a = Automaton {
        code,
        classes: r.vec()?,
        ..Default::default()
    };
    a.star_slots = r.u32()?;
    a.node_count = r.u32()?;
    for _ in 0..r.u32()? {
        let (mut strings, mut values) = (Vec::new(), Vec::new());
        for _ in 0..r.u32()? {
            strings.push(r.vec::<u8>()?);
            values.push(r.vec::<u32>()?);
        }
        a.contains.push(ContainsSet::new(strings, values));
    }
    Ok(a)
}

/// Reads a saved resolver and the stamps it was compiled from. Every count and index is checked,
/// so a corrupt file is an error, never a crash. Damage that stays in range (a changed byte of
/// a pattern's text, one valid value for another) is not detected and changes answers, as it
/// would in libkmod's `.bin` indexes; `tests/saved_index_damage.rs` damages files at random.
pub fn from_bytes(path: &Path, data: &[u8]) -> Result<(Resolver, Vec<SourceStamp>)> {
    read(path, data, None)
}

/// [`from_bytes`] on a file, which is mapped rather than read: the automaton, most of the
/// file, is used in place, and once validated its pages are dropped from this process until a
/// lookup needs them, so a daemon keeps resident only what it uses.
pub fn from_file(path: &Path) -> Result<(Resolver, Vec<SourceStamp>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
    let map = std::sync::Arc::new(Mapping::map(&file, len).map_err(|e| Error::io(path, e))?);
    read(path, map.bytes(), Some(&map))
}

fn read(
    path: &Path,
    data: &[u8],
    map: Option<&std::sync::Arc<Mapping>>,
) -> Result<(Resolver, Vec<SourceStamp>)> {
    let mut r = Reader { path, data, at: 0 };
    if r.array::<16>()? != *MAGIC {
        return Err(r.corrupt("not a modaliasd index"));
    }
    if r.u32()? != FORMAT {
        return Err(r.corrupt("written by another version of modaliasd"));
    }
    if r.u32()? != BYTE_ORDER {
        return Err(r.corrupt("written on a machine of another byte order"));
    }
    let stamps = read_stamps(&mut r)?;
    let mut res = Resolver::default();
    for _ in 0..r.u32()? {
        res.names.push(r.string()?);
    }
    res.dep_sorted = r.vec()?;
    res.builtin_sorted = r.vec()?;
    res.symbols = r.in_place(map)?;
    res.symbol_bytes = r.in_place(map)?;
    res.entries = r.in_place(map)?;
    res.alias_entries = r.u32()?;
    res.pattern_bytes = r.stored::<u8>(map)?;
    res.aliases_file = r.string()?;
    let slots = r.in_place(map)?;
    let bytes = r.in_place(map)?;
    let values = r.in_place(map)?;
    let entries = res.entries.len() as u32;
    let literals =
        LiteralTable::from_parts(slots, bytes, values, entries).map_err(|what| r.corrupt(what))?;
    let automaton = read_automaton(&mut r, map)?;
    let pci_automaton = read_automaton(&mut r, map)?;
    let pci_wide = read_automaton(&mut r, map)?;
    let pci_wide_needs = match r.u32()? {
        0 => None,
        1 => {
            let mut strings = Vec::new();
            for _ in 0..r.u32()? {
                strings.push(r.vec::<u8>()?);
            }
            Some(NeedleSet::new(strings))
        }
        _ => return Err(r.corrupt("bad flag")),
    };
    let patterns = r.in_place(map)?;
    let by_device = r.in_place(map)?;
    let by_vendor = r.in_place(map)?;
    let by_class = r.in_place(map)?;
    let pci = PciIndex {
        patterns,
        by_device,
        by_vendor,
        by_class,
        rest: [r.u32()?, r.u32()?],
    };
    let pci_only = match r.u32()? {
        0 => false,
        1 => true,
        _ => return Err(r.corrupt("bad flag")),
    };
    let mut irregular = Vec::new();
    for _ in 0..r.u32()? {
        let p = r.vec::<u8>()?;
        let literal = r.u32()?;
        if literal as usize > p.len() {
            return Err(r.corrupt("literal prefix longer than its pattern"));
        }
        irregular.push((p, literal, r.u32()?));
    }
    if r.at != data.len() {
        return Err(r.corrupt("trailing bytes"));
    }
    res.patterns = PatternSet {
        literals,
        automaton,
        pci,
        pci_automaton,
        pci_wide,
        pci_wide_needs,
        pci_only,
        irregular,
    };
    validate(&res).map_err(|what| Error::corrupt(path, 0, what))?;
    // The automata's derived tables hold node offsets read from the file, so only now.
    res.patterns.derive();
    res.derive();
    // Every other section was copied out and the automaton is validated: drop all the pages;
    // lookups fault back in just the automaton pages they walk.
    if let Some(map) = map {
        map.release(0..data.len());
    }
    Ok((res, stamps))
}

/// Checks every index the search and the resolver follow, so that a damaged file cannot make
/// them read out of bounds.
fn validate(r: &Resolver) -> std::result::Result<(), String> {
    let names = r.names.len() as u32;
    let ids_ok = |ids: &[u32]| ids.iter().all(|&i| i < names);
    if !ids_ok(&r.dep_sorted) || !ids_ok(&r.builtin_sorted) {
        return Err("module id out of range".into());
    }
    if r.symbols
        .iter()
        .any(|s| s.module >= names || s.start as u64 + s.len as u64 > r.symbol_bytes.len() as u64)
    {
        return Err("symbol out of range".into());
    }
    let entries = r.entries.len() as u32;
    if r.alias_entries > entries {
        return Err("alias entry count out of range".into());
    }
    for e in r.entries.iter() {
        let end = e.pattern_start as u64 + e.pattern_len as u64;
        if e.module >= names || end > r.pattern_bytes.len() as u64 {
            return Err("entry out of range".into());
        }
    }
    for a in [
        &r.patterns.automaton,
        &r.patterns.pci_automaton,
        &r.patterns.pci_wide,
    ] {
        match a.validate(entries) {
            Ok(n) if n == a.node_count => {}
            Ok(_) => return Err("node count disagrees with the automaton".into()),
            Err(e) => return Err(e.into()),
        }
    }
    r.patterns.pci.validate(entries)?;
    if r.patterns.irregular.iter().any(|(_, _, v)| *v >= entries) {
        return Err("irregular pattern value out of range".into());
    }
    Ok(())
}

/// Whether the file a stamp describes still holds what the index depends on: the same size
/// and time, or else the same fingerprint ([`source_fingerprint`]: the same contents, or for
/// `modules.dep` the same modules, whose paths may have changed).
fn unchanged(dir: &Path, stamp: &SourceStamp) -> bool {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(&stamp.name);
    let Ok(meta) = std::fs::metadata(&path) else {
        return false;
    };
    let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
    if meta.len() == stamp.len && mtime_ns == stamp.mtime_ns {
        return true;
    }
    if meta.len() != stamp.len && stamp.name != "modules.dep" {
        return false;
    }
    std::fs::read(&path)
        .is_ok_and(|data| source_fingerprint(&stamp.name, &data) == stamp.fingerprint)
}

/// Whether `stamps` still describe the files in `dir`: the same files with the same contents
/// (the same sizes and times, or failing the times, the same fingerprints), and no file
/// appeared that would have been read instead (a text file where only its `.bin` was used).
pub fn is_fresh(dir: &Path, stamps: &[SourceStamp]) -> bool {
    if !stamps.iter().all(|s| unchanged(dir, s)) {
        return false;
    }
    SOURCE_FILES
        .iter()
        .filter(|f| !f.ends_with(".bin"))
        .all(|f| stamps.iter().any(|s| s.name == *f) || !dir.join(f).exists())
}

/// How a resolver was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from a saved index that is still fresh.
    Saved,
    /// Compiled from the module directory; `saved` says whether the index file was (re)written.
    Compiled { saved: bool },
}

/// What [`load_or_build`] does with the saved index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachePolicy {
    /// Use `DIR/modaliasd.index` when fresh; otherwise compile and try to write it (silently
    /// giving up where the directory is read-only).
    Default,
    /// Use this file instead of `DIR/modaliasd.index`.
    File(PathBuf),
    /// Always compile, never read or write an index file.
    Off,
}

/// The resolver for module directory `dir`, from its saved index when that is fresh.
pub fn load_or_build(
    dir: &Path,
    policy: &CachePolicy,
) -> Result<(Resolver, ModuleTreeWarnings, Origin)> {
    let file = match policy {
        CachePolicy::Off => None,
        CachePolicy::Default => Some(dir.join(FILE_NAME)),
        CachePolicy::File(f) => Some(f.clone()),
    };
    if let Some(file) = &file {
        if let Ok((resolver, stamps)) = from_file(file) {
            if is_fresh(dir, &stamps) {
                return Ok((resolver, Vec::new(), Origin::Saved));
            }
        }
    }
    let tree = ModuleTree::load(dir)?;
    let resolver = Resolver::build(&tree);
    let saved = match &file {
        Some(f) => save(f, &resolver, &tree.sources).is_ok(),
        None => false,
    };
    Ok((resolver, tree.warnings, Origin::Compiled { saved }))
}

pub type ModuleTreeWarnings = Vec<crate::index::Warning>;

/// Writes the index atomically (a temporary file renamed over the old one).
pub fn save(file: &Path, resolver: &Resolver, stamps: &[SourceStamp]) -> Result<()> {
    let bytes = to_bytes(resolver, stamps);
    let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(file, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{AliasEntry, ModuleTree};

    /// A loaded automaton has the derived tables a built one has (derived after validation),
    /// and the PCI class patterns' needed strings come back.
    #[test]
    fn a_loaded_automaton_has_its_derived_tables() {
        let alias = |pattern: &str, module: &str| AliasEntry {
            pattern: pattern.as_bytes().to_vec(),
            module: module.to_owned(),
            priority: 0,
            line: 1,
        };
        let mut tree = ModuleTree::default();
        tree.aliases = vec![
            alias("platform:hmem*", "dax_hmem"),
            alias("of:N*T*Cfoo", "foo"),
            alias("pci:v00008086d*sv*sd*bc*sc*i*", "bar"),
            alias("pci:v00008086d000010D3sv*sd*bc*sc*i*", "e1000e"),
            alias("pci:v*d*sv*sd*bc0Csc03i30*", "baz"),
        ];
        let built = Resolver::build(&tree);
        let (loaded, _) = from_bytes(Path::new("test.index"), &to_bytes(&built, &[])).unwrap();
        for (b, l) in [
            (&built.patterns.automaton, &loaded.patterns.automaton),
            (
                &built.patterns.pci_automaton,
                &loaded.patterns.pci_automaton,
            ),
            (&built.patterns.pci_wide, &loaded.patterns.pci_wide),
        ] {
            assert!(b.root_children.is_some());
            assert_eq!(l.root_children, b.root_children);
            assert_eq!(l.jumps(), b.jumps());
            assert_eq!(l.starts, b.starts);
        }
        assert_eq!(loaded.patterns.pci_automaton.jumps().len(), 2);
        assert!(loaded.patterns.automaton.starts.is_some());
        let needs = |r: &Resolver| {
            r.patterns
                .pci_wide_needs
                .as_ref()
                .unwrap()
                .strings()
                .to_vec()
        };
        assert_eq!(needs(&loaded), needs(&built));
    }
}
