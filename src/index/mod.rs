//! Readers for a module directory, `ROOT/lib/modules/KVER`, as depmod leaves it.
//!
//! [`ModuleTree::load`] reads the text files depmod writes and, for each one that is absent, the
//! binary index that stands in for it (`modules.alias` or else `modules.alias.bin`, ...). Both give
//! the same [`ModuleTree`].
//!
//! Priorities: libkmod orders the modules a lookup returns by the priority depmod stored with each
//! alias, which is the module's position in depmod's sorted module list. depmod writes
//! `modules.dep` in that very order, so the line number in `modules.dep` *is* the priority. It is
//! also better than `modules.order`, which cannot place modules that are not listed in it
//! (out-of-tree modules in `updates/` or `extra/`), while `modules.dep` places every module.

pub mod kmod_bin;

use crate::error::{Error, Result};
use crate::names::{modname_from_path, normalize_alias, normalize_modname};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A module listed in `modules.dep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Path relative to the module directory, as written in `modules.dep`.
    pub path: String,
    /// Paths of the modules it depends on, as written in `modules.dep`.
    pub deps: Vec<String>,
}

/// One `alias` entry of `modules.alias`, `modules.symbols` or a built-in module's modinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasEntry {
    /// The pattern after libkmod's normalisation (`-` to `_` outside brackets).
    pub pattern: Vec<u8>,
    pub module: String,
    /// depmod's priority: the module's position in `modules.dep` (0 for built-in aliases).
    pub priority: u32,
    /// Where the entry was read: line number in a text file, 0 when it came from a `.bin`.
    pub line: u32,
}

/// A problem that did not stop the load: the entry was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: PathBuf,
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// A file that was read, identified well enough to notice when depmod rewrites it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStamp {
    pub name: String,
    pub len: u64,
    pub mtime_ns: i128,
    /// [`source_fingerprint`] of the contents: initramfs archives (cpio keeps whole seconds)
    /// and reproducible builds (one fixed time for every file) change the times of files whose
    /// contents are the same.
    pub fingerprint: u64,
}

/// The fingerprint recorded for source file `name`: [`fingerprint`] of what the compiled
/// index depends on. For `modules.dep` that is the module names in order, not the paths:
/// initramfs-tools decompresses the modules it copied and runs depmod again after its hooks,
/// which turns `kernel/.../e1000.ko.xz` into `kernel/.../e1000.ko` and changes nothing the
/// index holds. (The dependencies are read from `modules.dep` itself when plans are made.)
pub fn source_fingerprint(name: &str, data: &[u8]) -> u64 {
    if name != "modules.dep" {
        return fingerprint(data);
    }
    let mut names = Vec::with_capacity(data.len() / 4);
    for line in data.split(|&b| b == b'\n') {
        let path = &line[..memchr::memchr(b':', line).unwrap_or(line.len())];
        if path.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Without allocating per line: this runs at every start in an initramfs.
        names.extend(crate::names::modname_bytes(path));
        names.push(b'\n');
    }
    fingerprint(&names)
}

/// A fast hash of a file's contents, to tell whether a file whose time changed still holds
/// what an index was compiled from. Not cryptographic: whoever can rewrite the module index
/// needs no collision. Every step is a bijection of the state for a given word, so a change
/// to any one eight-byte word always changes the result.
pub fn fingerprint(data: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let step = |h: u64, word: u64| (h.rotate_left(23) ^ word).wrapping_mul(K);
    let mut chunks = data.chunks_exact(8);
    let mut h = (&mut chunks).fold(data.len() as u64, |h, c| {
        step(h, u64::from_le_bytes(c.try_into().unwrap()))
    });
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = step(h, u64::from_le_bytes(tail));
    h ^ h >> 29
}

/// Everything the resolver needs from a module directory.
#[derive(Debug, Default)]
pub struct ModuleTree {
    pub dir: PathBuf,
    /// In `modules.dep` order, which is depmod's priority order.
    pub modules: Vec<Module>,
    pub aliases: Vec<AliasEntry>,
    /// Which file the aliases came from (`modules.alias` or `modules.alias.bin`).
    pub aliases_file: &'static str,
    pub symbols: Vec<AliasEntry>,
    pub builtin: Vec<String>,
    pub builtin_aliases: Vec<AliasEntry>,
    /// What the files read were, for a saved index compiled from them ([`ModuleTree::load`]
    /// only: [`ModuleTree::load_modules`] leaves it empty rather than fingerprint files at
    /// every start for nothing).
    pub sources: Vec<SourceStamp>,
    pub warnings: Vec<Warning>,
    /// Whether reading records `sources`.
    record_sources: bool,
}

/// The files [`ModuleTree::load`] may read, in the order it reads them.
pub const SOURCE_FILES: &[&str] = &[
    "modules.dep",
    "modules.dep.bin",
    "modules.alias",
    "modules.alias.bin",
    "modules.symbols",
    "modules.symbols.bin",
    "modules.builtin",
    "modules.builtin.bin",
    "modules.builtin.modinfo",
    "modules.builtin.alias.bin",
];

/// `ROOT/lib/modules/KVER`.
pub fn module_dir(root: &Path, kver: &str) -> PathBuf {
    root.join("lib/modules").join(kver)
}

/// The running kernel's release, as `uname -r` prints it.
pub fn running_kernel_release() -> Result<String> {
    // SAFETY: utsname is plain data; uname fills it or fails.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(Error::other(format!(
            "uname: {}",
            std::io::Error::last_os_error()
        )));
    }
    let release: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        // c_char is i8 on x86-64 and u8 on arm64: its byte either way.
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    Ok(String::from_utf8_lossy(&release).into_owned())
}

impl ModuleTree {
    /// Reads the module directory `dir`. `modules.dep` (or `.bin`) and `modules.alias` (or
    /// `.bin`) are required; the symbol and built-in files are optional, as they are for libkmod.
    pub fn load(dir: &Path) -> Result<ModuleTree> {
        let mut tree = ModuleTree {
            dir: dir.to_owned(),
            record_sources: true,
            ..Default::default()
        };
        tree.load_dep()?;
        let priority: HashMap<String, u32> = tree
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i as u32))
            .collect();
        let (aliases, file) = tree.load_alias_table("modules.alias", &priority, true)?;
        tree.aliases = aliases;
        tree.aliases_file = file;
        tree.symbols = tree
            .load_alias_table("modules.symbols", &priority, false)?
            .0;
        tree.load_builtin()?;
        tree.load_builtin_aliases()?;
        Ok(tree)
    }

    /// Only what load plans need: `modules.dep` and `modules.builtin` (or their `.bin`). The
    /// daemon keeps this for its lifetime, so it skips the alias tables (the saved index has
    /// them compiled) and their several megabytes.
    pub fn load_modules(dir: &Path) -> Result<ModuleTree> {
        let mut tree = ModuleTree {
            dir: dir.to_owned(),
            ..Default::default()
        };
        tree.load_dep()?;
        tree.load_builtin()?;
        Ok(tree)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads `name` if present, recording its stamp; `Ok(None)` if it does not exist.
    fn read_optional(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(name);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let data = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if self.record_sources {
            self.sources.push(stamp(name, &meta, &data));
        }
        Ok(Some(data))
    }

    /// Reads the binary index `name` if present, recording its stamp.
    fn read_bin(&mut self, name: &str) -> Result<Option<Vec<kmod_bin::Entry>>> {
        match self.read_optional(name)? {
            Some(data) => Ok(Some(kmod_bin::parse(&self.path(name), &data)?)),
            None => Ok(None),
        }
    }

    fn warn(&mut self, name: &str, line: u64, message: impl Into<String>) {
        self.warnings.push(Warning {
            path: self.path(name),
            line,
            message: message.into(),
        });
    }

    fn load_dep(&mut self) -> Result<()> {
        if let Some(data) = self.read_optional("modules.dep")? {
            for (no, line) in lines(&data) {
                let Ok(line) = std::str::from_utf8(line) else {
                    self.warn("modules.dep", no, "not UTF-8; line skipped");
                    continue;
                };
                if line.trim().is_empty() {
                    continue;
                }
                match parse_dep_line(line) {
                    Some(m) => self.modules.push(m),
                    None => self.warn(
                        "modules.dep",
                        no,
                        "expected 'PATH: DEPENDENCY...'; line skipped",
                    ),
                }
            }
            return Ok(());
        }
        let Some(entries) = self.read_bin("modules.dep.bin")? else {
            return Err(Error::missing(
                &self.path("modules.dep"),
                "run depmod, or pass the right --root and --kver",
            ));
        };
        let mut modules: Vec<(u32, Module)> = Vec::with_capacity(entries.len());
        for e in entries {
            let parsed = std::str::from_utf8(&e.value).ok().and_then(parse_dep_line);
            match parsed {
                Some(m) => modules.push((e.priority, m)),
                None => self.warn(
                    "modules.dep.bin",
                    0,
                    format!(
                        "value for {} is not 'PATH: DEPENDENCY...'; skipped",
                        e.key.escape_ascii()
                    ),
                ),
            }
        }
        modules.sort_by_key(|(p, _)| *p);
        self.modules = modules.into_iter().map(|(_, m)| m).collect();
        Ok(())
    }

    /// Reads `modules.alias` or `modules.symbols` (lines `alias PATTERN MODULE`), or the `.bin`
    /// that stands in for it. Patterns are normalised as depmod does for the `.bin`.
    fn load_alias_table(
        &mut self,
        name: &'static str,
        priority: &HashMap<String, u32>,
        required: bool,
    ) -> Result<(Vec<AliasEntry>, &'static str)> {
        let bin_name: &'static str = match name {
            "modules.alias" => "modules.alias.bin",
            _ => "modules.symbols.bin",
        };
        let mut out = Vec::new();
        if let Some(data) = self.read_optional(name)? {
            let mut normalized = Vec::new();
            for (no, line) in lines(&data) {
                if line.is_empty() || line[0] == b'#' {
                    continue;
                }
                let Some((pattern, module)) = split_alias_line(line) else {
                    self.warn(name, no, "expected 'alias PATTERN MODULE'; line skipped");
                    continue;
                };
                let Ok(module) = std::str::from_utf8(module) else {
                    self.warn(name, no, "module name is not UTF-8; line skipped");
                    continue;
                };
                if let Err(e) = normalize_alias(pattern, &mut normalized) {
                    // depmod skips these too ("Unmatched bracket"), so libkmod never sees them.
                    self.warn(name, no, format!("{e} in pattern; line skipped"));
                    continue;
                }
                let module = normalize_modname(module);
                let priority = priority.get(&module).copied().unwrap_or(u32::MAX);
                out.push(AliasEntry {
                    pattern: normalized.clone(),
                    module,
                    priority,
                    line: no as u32,
                });
            }
            return Ok((out, name));
        }
        let Some(entries) = self.read_bin(bin_name)? else {
            if required {
                return Err(Error::missing(
                    &self.path(name),
                    "run depmod, or pass the right --root and --kver",
                ));
            }
            return Ok((out, name));
        };
        for e in insertion_order(entries) {
            match String::from_utf8(e.value) {
                Ok(module) => out.push(AliasEntry {
                    pattern: e.key,
                    module,
                    priority: e.priority,
                    line: 0,
                }),
                Err(_) => self.warn(bin_name, 0, "module name is not UTF-8; skipped"),
            }
        }
        Ok((out, bin_name))
    }

    fn load_builtin(&mut self) -> Result<()> {
        if let Some(data) = self.read_optional("modules.builtin")? {
            for (no, line) in lines(&data) {
                match std::str::from_utf8(line) {
                    Ok(l) if l.trim().is_empty() => {}
                    Ok(l) => self.builtin.push(modname_from_path(l.trim())),
                    Err(_) => self.warn("modules.builtin", no, "not UTF-8; line skipped"),
                }
            }
            return Ok(());
        }
        for e in self.read_bin("modules.builtin.bin")?.unwrap_or_default() {
            match String::from_utf8(e.key) {
                Ok(k) => self.builtin.push(k),
                Err(_) => self.warn("modules.builtin.bin", 0, "key is not UTF-8; skipped"),
            }
        }
        Ok(())
    }

    /// Built-in aliases come from `modules.builtin.modinfo` (`MODULE.alias=PATTERN\0` records) or
    /// `modules.builtin.alias.bin`. depmod inserts them all with priority 0; see
    /// [`crate::resolve`] for how libkmod then orders them.
    fn load_builtin_aliases(&mut self) -> Result<()> {
        if let Some(data) = self.read_optional("modules.builtin.modinfo")? {
            let mut normalized = Vec::new();
            for (index, record) in data.split(|&c| c == 0).enumerate() {
                let Some(eq) = memchr::memchr(b'=', record) else {
                    continue;
                };
                let (key, value) = (&record[..eq], &record[eq + 1..]);
                let Some(module) = key.strip_suffix(b".alias") else {
                    continue;
                };
                if module.is_empty() || module.contains(&b'.') || value.is_empty() {
                    continue;
                }
                let Ok(module) = std::str::from_utf8(module) else {
                    self.warn(
                        "modules.builtin.modinfo",
                        index as u64 + 1,
                        "module name is not UTF-8; skipped",
                    );
                    continue;
                };
                if let Err(e) = normalize_alias(value, &mut normalized) {
                    self.warn(
                        "modules.builtin.modinfo",
                        index as u64 + 1,
                        format!("{e} in alias; skipped"),
                    );
                    continue;
                }
                self.builtin_aliases.push(AliasEntry {
                    pattern: normalized.clone(),
                    module: module.to_owned(),
                    priority: 0,
                    // Records are NUL-separated; number them like lines.
                    line: index as u32 + 1,
                });
            }
            return Ok(());
        }
        let entries = self.read_bin("modules.builtin.alias.bin")?;
        for e in insertion_order(entries.unwrap_or_default()) {
            match String::from_utf8(e.value) {
                Ok(module) => self.builtin_aliases.push(AliasEntry {
                    pattern: e.key,
                    module,
                    priority: e.priority,
                    line: 0,
                }),
                Err(_) => self.warn(
                    "modules.builtin.alias.bin",
                    0,
                    "module name is not UTF-8; skipped",
                ),
            }
        }
        Ok(())
    }
}

/// depmod stores the values under one key newest first (among equal priorities); reverse each
/// key's group to get the insertion order that the text file has.
fn insertion_order(mut entries: Vec<kmod_bin::Entry>) -> Vec<kmod_bin::Entry> {
    let mut start = 0;
    while start < entries.len() {
        let key = &entries[start].key;
        let len = entries[start..]
            .iter()
            .take_while(|e| &e.key == key)
            .count();
        entries[start..start + len].reverse();
        start += len;
    }
    entries
}

fn stamp(name: &str, meta: &std::fs::Metadata, data: &[u8]) -> SourceStamp {
    use std::os::unix::fs::MetadataExt;
    SourceStamp {
        name: name.to_owned(),
        len: meta.len(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        fingerprint: source_fingerprint(name, data),
    }
}

/// Lines with their 1-based numbers, without the newline.
fn lines(data: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|&c| c == b'\n')
        .enumerate()
        .filter(move |_| !data.is_empty())
        .map(|(i, l)| (i as u64 + 1, l))
}

/// `alias PATTERN MODULE` into the pattern and the module. depmod writes a module's
/// `MODULE_ALIAS` value as it is, and a value may contain blanks (arm64's sound cards have
/// `alias mt8183_da7219_max98357 soc card mt8183_da7219_max98357`), which the `.bin` keeps in its
/// key. So the module is the last field and the pattern everything between it and `alias`.
fn split_alias_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let blank = |c: &u8| *c == b' ' || *c == b'\t';
    let rest = line.strip_prefix(b"alias")?;
    if !rest.first().is_some_and(blank) {
        return None;
    }
    let rest = rest.trim_ascii_end();
    let split = rest.iter().rposition(blank)?;
    let (pattern, module) = (&rest[..split], &rest[split + 1..]);
    let start = pattern.iter().position(|c| !blank(c))?;
    let end = pattern.iter().rposition(|c| !blank(c))?;
    Some((&pattern[start..=end], module))
}

/// `kernel/x/a.ko.xz: kernel/y/b.ko.xz kernel/z/c.ko.xz`
fn parse_dep_line(line: &str) -> Option<Module> {
    let (path, deps) = line.split_once(':')?;
    let path = path.trim();
    if path.is_empty() || path.contains(char::is_whitespace) {
        return None;
    }
    Some(Module {
        name: modname_from_path(path),
        path: path.to_owned(),
        deps: deps.split_whitespace().map(str::to_owned).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_lines_keep_the_blanks_inside_a_pattern() {
        let split = |l: &str| {
            split_alias_line(l.as_bytes()).map(|(p, m)| {
                (
                    String::from_utf8(p.to_vec()).unwrap(),
                    String::from_utf8(m.to_vec()).unwrap(),
                )
            })
        };
        let pair = |p: &str, m: &str| Some((p.to_owned(), m.to_owned()));
        assert_eq!(split("alias pci:v*d* m"), pair("pci:v*d*", "m"));
        assert_eq!(split("alias\tx  m \r"), pair("x", "m"));
        assert_eq!(split("alias a soc card a"), pair("a soc card", "a"));
        assert_eq!(split("alias a  b\tc d"), pair("a  b\tc", "d"));
        for bad in [
            "alias m",
            "alias  m",
            "alias",
            "aliasx y m",
            "options m x=1",
            "",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dep_lines() {
        let m = parse_dep_line("kernel/a/snd-hda-intel.ko.xz: kernel/b/x.ko.xz kernel/c/y.ko.xz")
            .unwrap();
        assert_eq!(m.name, "snd_hda_intel");
        assert_eq!(m.deps.len(), 2);
        assert!(parse_dep_line("no colon here").is_none());
        assert!(parse_dep_line(": x").is_none());
    }

    #[test]
    fn line_numbers() {
        let v: Vec<_> = lines(b"a\n\nb\n").collect();
        assert_eq!(v, [(1, &b"a"[..]), (2, &b""[..]), (3, &b"b"[..])]);
        assert_eq!(lines(b"").count(), 0);
    }
}
