//! From a MODALIAS or a module name to the modules libkmod would return, in libkmod's order.
//!
//! libkmod (`kmod_module_new_from_lookup`) normalises the string, then tries these sources in
//! turn and stops at the first that yields anything (docs/design.md, "Resolving"):
//!
//! 1. `alias` lines of modprobe.d            — [`ConfigLookup::aliases`]
//! 2. an exact module name in `modules.dep`   (not for strings containing `:`)
//! 3. `modules.symbols`, for `symbol:NAME`
//! 4. a modprobe.d `install`/`remove` command — [`ConfigLookup::has_command`]
//! 5. `modules.alias` patterns (fnmatch)
//! 6. `modules.builtin` names
//! 7. built-in aliases from `modules.builtin.modinfo` (the modules are marked built in)
//!
//! Steps 1 and 4 belong to the modprobe.d configuration; [`NoConfig`] answers "nothing" for them.
//!
//! # Matching
//! libkmod compares a pattern's bytes before its first `*`, `?` or `[` literally and hands the rest
//! to fnmatch; the compiled automaton does the same ([`Syntax::Libkmod`]). Keys that themselves
//! contain `*`, `?` or `[` can also match through libkmod's literal walk; those few are answered by
//! re-enacting that walk (`resolve/kmod_walk.rs`).
//!
//! # Order
//! libkmod inserts every match into a list kept sorted by priority, a new entry going *before*
//! entries of equal priority. For `modules.alias` the priority is the module's depmod position, so
//! the order is simply `modules.dep` order. Built-in aliases all have priority 0, so their order is
//! the reverse of the order libkmod's walk meets them. The walk meets patterns by the position of
//! their first wildcard (shallow first), then in post-order (a pattern after the longer patterns
//! it is a prefix of), and under one pattern in depmod's stored order (newest first). Each
//! compiled entry gets its rank in the reversed order up front, so sorting the matched ranks gives
//! libkmod's order directly; the module list keeps each module's first occurrence.

mod kmod_walk;
mod name_index;
pub mod saved;

use crate::index::kmod_bin::RadixTree;
use crate::index::{AliasEntry, ModuleTree};
use crate::matcher::automaton::Stored;
use crate::matcher::pattern::literal_prefix_len;
use crate::matcher::{PatternSet, Scratch, Syntax};
use crate::names::{AliasError, KeyShape, normalize_alias};
use name_index::NameIndex;
use std::collections::HashMap;

/// The modprobe.d steps of the lookup (1 and 4). The loader's configuration implements this.
pub trait ConfigLookup {
    /// Module names that `alias` lines map `key` to, in order.
    fn aliases(&self, key: &[u8]) -> Vec<String>;
    /// Whether an `install` or `remove` command exists for exactly `key`.
    fn has_command(&self, key: &[u8]) -> bool;
}

/// No modprobe.d configuration at all.
pub struct NoConfig;

impl ConfigLookup for NoConfig {
    fn aliases(&self, _: &[u8]) -> Vec<String> {
        Vec::new()
    }
    fn has_command(&self, _: &[u8]) -> bool {
        false
    }
}

/// Which lookup step produced the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Nothing,
    ConfigAlias,
    ModuleName,
    Symbol,
    ConfigCommand,
    Alias,
    BuiltinName,
    BuiltinAlias,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Nothing => "none",
            Source::ConfigAlias => "config-alias",
            Source::ModuleName => "module-name",
            Source::Symbol => "symbol",
            Source::ConfigCommand => "config-command",
            Source::Alias => "alias",
            Source::BuiltinName => "builtin-name",
            Source::BuiltinAlias => "builtin-alias",
        }
    }
}

/// The answer for one string. Reused across lookups to avoid allocating.
#[derive(Debug, Default, Clone)]
pub struct Resolution {
    pub source: Option<Source>,
    /// Distinct modules in libkmod's order: ids into the resolver's names, or, from
    /// `names_len` on, into `extra` (names that only modprobe.d knows).
    pub modules: Vec<u32>,
    pub extra: Vec<String>,
    /// For pattern sources: the matched entries, in rank order (see [`Resolver::entry`]).
    pub entries: Vec<u32>,
    normalized: Vec<u8>,
}

impl Resolution {
    pub fn source(&self) -> Source {
        self.source.unwrap_or(Source::Nothing)
    }
    /// The key after normalisation.
    pub fn normalized(&self) -> &[u8] {
        &self.normalized
    }
    /// The module names, in order.
    pub fn names<'a>(&'a self, resolver: &'a Resolver) -> impl Iterator<Item = &'a str> + 'a {
        let base = resolver.names.len();
        self.modules
            .iter()
            .map(move |&id| match (id as usize).checked_sub(base) {
                Some(i) => self.extra[i].as_str(),
                None => resolver.names[id as usize].as_str(),
            })
    }

    /// True when the modules are built into the kernel image.
    pub fn builtin(&self) -> bool {
        matches!(self.source(), Source::BuiltinName | Source::BuiltinAlias)
    }
}

/// Which table an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Alias,
    BuiltinAlias,
}

/// One compiled pattern, for explaining a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryInfo<'a> {
    pub table: Table,
    pub pattern: &'a [u8],
    pub module: &'a str,
    /// Line (or record number) in the file it came from; 0 for a binary index.
    pub line: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Entry {
    pub(crate) module: u32,
    pub(crate) line: u32,
    /// Position in its table as depmod inserted it (file order).
    pub(crate) order: u32,
    /// depmod's priority (the module's position; 0 for built-in aliases).
    pub(crate) priority: u32,
    pub(crate) pattern_start: u32,
    pub(crate) pattern_len: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct SymbolEntry {
    pub(crate) start: u32,
    pub(crate) len: u32,
    pub(crate) module: u32,
}

/// The compiled lookup tables of one module directory.
#[derive(Debug, Default)]
pub struct Resolver {
    pub(crate) names: Vec<String>,
    /// Ids of modules in `modules.dep`, sorted by name.
    pub(crate) dep_sorted: Vec<u32>,
    /// Ids of built-in modules, sorted by name.
    pub(crate) builtin_sorted: Vec<u32>,
    /// Whether some built-in module's name has a `:`: if none has, a MODALIAS (which always
    /// has one) need not be looked up among them. Derived, not saved.
    pub(crate) builtin_colon: bool,
    /// `dep_sorted` and `builtin_sorted` by name. Derived, not saved.
    dep_index: NameIndex,
    builtin_index: NameIndex,
    /// `modules.symbols` sorted by key then priority; keys live in `symbol_bytes`.
    pub(crate) symbols: Stored<SymbolEntry>,
    pub(crate) symbol_bytes: Stored<u8>,
    /// All pattern entries in rank order: `modules.alias` first, then built-in aliases.
    pub(crate) entries: Stored<Entry>,
    pub(crate) alias_entries: u32,
    pub(crate) pattern_bytes: Stored<u8>,
    pub(crate) patterns: PatternSet,
    pub(crate) aliases_file: String,
    /// libkmod's trees for `modules.alias` and the built-in aliases, built on first use by a key
    /// that contains a wildcard byte.
    pub(crate) kmod_trees: std::sync::OnceLock<[RadixTree<u32>; 2]>,
}

struct Interner<'a> {
    names: Vec<String>,
    ids: HashMap<&'a str, u32>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, name: &'a str) -> u32 {
        *self.ids.entry(name).or_insert_with(|| {
            self.names.push(name.to_owned());
            self.names.len() as u32 - 1
        })
    }
}

/// The entries of one table with their insertion positions, in the order libkmod returns
/// them when several match (see the module docs).
fn libkmod_order(table: &[AliasEntry]) -> Vec<(usize, &AliasEntry)> {
    // Each pattern's literal prefix is measured once, not in every comparison: with 27,000
    // patterns that was a sixth of compiling (41 to 34 ms).
    let mut v: Vec<(usize, usize, &AliasEntry)> = table
        .iter()
        .enumerate()
        .map(|(i, e)| (i, literal_prefix_len(&e.pattern), e))
        .collect();
    v.sort_by(|(ia, la, a), (ib, lb, b)| {
        a.priority
            .cmp(&b.priority)
            .then(lb.cmp(la))
            .then_with(|| post_order(&b.pattern, &a.pattern))
            .then(ia.cmp(ib))
    });
    v.into_iter().map(|(i, _, e)| (i, e)).collect()
}

/// libkmod's walk order within one depth: post-order, so a pattern comes after the patterns it
/// is a proper prefix of.
fn post_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    match a.iter().zip(b).find(|(x, y)| x != y) {
        Some((x, y)) => x.cmp(y),
        None => b.len().cmp(&a.len()),
    }
}

impl Resolver {
    /// Compiles the tables of `tree`.
    pub fn build(tree: &ModuleTree) -> Resolver {
        let mut interner = Interner {
            names: Vec::new(),
            ids: HashMap::new(),
        };
        // Module ids follow modules.dep order, so id order is priority order.
        let dep_ids: Vec<u32> = tree.modules.iter().map(|m| interner.id(&m.name)).collect();
        let builtin_ids: Vec<u32> = tree.builtin.iter().map(|n| interner.id(n)).collect();

        let alias_order = libkmod_order(&tree.aliases);
        let builtin = libkmod_order(&tree.builtin_aliases);
        let mut r = Resolver {
            aliases_file: tree.aliases_file.to_owned(),
            ..Default::default()
        };
        let (mut entries, mut pattern_bytes) = (Vec::new(), Vec::new());
        for (order, e) in alias_order.iter().chain(builtin.iter()) {
            let module = interner.id(&e.module);
            entries.push(Entry {
                module,
                line: e.line,
                order: *order as u32,
                priority: e.priority,
                pattern_start: pattern_bytes.len() as u32,
                pattern_len: e.pattern.len() as u32,
            });
            pattern_bytes.extend_from_slice(&e.pattern);
        }
        r.entries = Stored::from_vec(entries);
        r.pattern_bytes = Stored::from_vec(pattern_bytes);
        r.alias_entries = alias_order.len() as u32;
        r.patterns = PatternSet::build_with(
            Syntax::Libkmod,
            r.entries
                .iter()
                .enumerate()
                .map(|(rank, e)| (r.pattern_slice(e), rank as u32)),
        );
        let mut symbols: Vec<(Vec<u8>, u32, u32)> = tree
            .symbols
            .iter()
            .map(|s| (s.pattern.clone(), s.priority, interner.id(&s.module)))
            .collect();
        symbols.sort();
        let (mut entries, mut bytes) = (Vec::new(), Vec::new());
        for (key, _, module) in symbols {
            entries.push(SymbolEntry {
                start: bytes.len() as u32,
                len: key.len() as u32,
                module,
            });
            bytes.extend_from_slice(&key);
        }
        r.symbols = Stored::from_vec(entries);
        r.symbol_bytes = Stored::from_vec(bytes);

        r.names = interner.names;
        r.dep_sorted = sorted_by_name(&r.names, dep_ids);
        r.builtin_sorted = sorted_by_name(&r.names, builtin_ids);
        r.derive();
        r
    }

    /// Sets the fields derived from the others, after building or loading.
    pub(crate) fn derive(&mut self) {
        self.builtin_colon = self
            .builtin_sorted
            .iter()
            .any(|&id| self.names[id as usize].contains(':'));
        self.dep_index = NameIndex::new(&self.names, &self.dep_sorted);
        self.builtin_index = NameIndex::new(&self.names, &self.builtin_sorted);
    }

    /// The built-in module called `key`, if there is one.
    fn builtin_name(&self, key: &[u8], shape: KeyShape) -> Option<u32> {
        if !self.builtin_colon && shape.colon {
            return None;
        }
        self.builtin_index.find(&self.names, key, shape.hash)
    }

    fn symbol_key(&self, s: &SymbolEntry) -> &[u8] {
        &self.symbol_bytes[s.start as usize..][..s.len as usize]
    }

    fn pattern_slice(&self, e: &Entry) -> &[u8] {
        &self.pattern_bytes[e.pattern_start as usize..][..e.pattern_len as usize]
    }

    /// The entry of rank `rank`, as reported in [`Resolution::entries`].
    pub fn entry(&self, rank: u32) -> EntryInfo<'_> {
        let e = &self.entries[rank as usize];
        EntryInfo {
            table: if rank < self.alias_entries {
                Table::Alias
            } else {
                Table::BuiltinAlias
            },
            pattern: self.pattern_slice(e),
            module: &self.names[e.module as usize],
            line: e.line,
        }
    }

    /// `modules.alias` or `modules.alias.bin`: where the alias entries were read from.
    pub fn aliases_file(&self) -> &str {
        &self.aliases_file
    }

    pub fn patterns(&self) -> &PatternSet {
        &self.patterns
    }

    pub fn alias_count(&self) -> usize {
        self.alias_entries as usize
    }

    /// Resolves `input` into `out`. Fails only when the string cannot be normalised.
    pub fn resolve_into<C: ConfigLookup + ?Sized>(
        &self,
        input: &[u8],
        config: &C,
        scratch: &mut Scratch,
        out: &mut Resolution,
    ) -> Result<(), AliasError> {
        out.source = None;
        out.modules.clear();
        out.extra.clear();
        out.entries.clear();
        let shape = normalize_alias(input, &mut out.normalized)?;
        let key = &out.normalized[..];

        let from_config = config.aliases(key);
        if !from_config.is_empty() {
            out.source = Some(Source::ConfigAlias);
            for name in from_config {
                self.push_name(out, name);
            }
            return Ok(());
        }
        if !shape.colon {
            if let Some(id) = self.dep_index.find(&self.names, key, shape.hash) {
                out.source = Some(Source::ModuleName);
                out.modules.push(id);
                return Ok(());
            }
        }
        if key.starts_with(b"symbol:") {
            let start = self.symbols.partition_point(|s| self.symbol_key(s) < key);
            for s in self.symbols[start..]
                .iter()
                .take_while(|s| self.symbol_key(s) == key)
            {
                if !out.modules.contains(&s.module) {
                    out.modules.push(s.module);
                }
            }
            if !out.modules.is_empty() {
                out.source = Some(Source::Symbol);
                return Ok(());
            }
        }
        if config.has_command(key) {
            out.source = Some(Source::ConfigCommand);
            let name = String::from_utf8_lossy(key).into_owned();
            self.push_name(out, name);
            return Ok(());
        }

        if shape.wildcard {
            let [aliases, builtin] = self.kmod_trees.get_or_init(|| self.build_kmod_trees());
            out.entries = aliases.search(key);
            if out.entries.is_empty() && self.builtin_name(key, shape).is_none() {
                out.entries = builtin.search(key);
            }
        } else {
            self.patterns
                .find_hashed(key, shape.hash, scratch, &mut out.entries);
            // Most keys that match at all match one pattern of modules.alias: no order to make.
            if let [rank] = out.entries[..]
                && rank < self.alias_entries
            {
                out.source = Some(Source::Alias);
                out.modules.push(self.entries[rank as usize].module);
                return Ok(());
            }
            out.entries.sort_unstable();
            out.entries.dedup();
        }
        let split = out.entries.partition_point(|&r| r < self.alias_entries);
        if split > 0 {
            out.entries.truncate(split);
            out.source = Some(Source::Alias);
        } else if let Some(id) = self.builtin_name(key, shape) {
            out.entries.clear();
            out.source = Some(Source::BuiltinName);
            out.modules.push(id);
            return Ok(());
        } else if !out.entries.is_empty() {
            out.source = Some(Source::BuiltinAlias);
        } else {
            out.source = Some(Source::Nothing);
            return Ok(());
        }
        let mut last = u32::MAX;
        for &rank in &out.entries {
            let m = self.entries[rank as usize].module;
            // Ranks of one module are adjacent for modules.alias; the `contains` keeps built-in
            // aliases right too, where one module's ranks can interleave with another's.
            if m != last && !out.modules.contains(&m) {
                out.modules.push(m);
            }
            last = m;
        }
        Ok(())
    }

    /// libkmod's radix trees, with entries inserted in depmod's order.
    fn build_kmod_trees(&self) -> [RadixTree<u32>; 2] {
        let mut trees = [RadixTree::new(), RadixTree::new()];
        let mut ranks: Vec<u32> = (0..self.entries.len() as u32).collect();
        ranks.sort_by_key(|&r| (r >= self.alias_entries, self.entries[r as usize].order));
        for rank in ranks {
            let e = &self.entries[rank as usize];
            let pattern = self.pattern_slice(e);
            let table = usize::from(rank >= self.alias_entries);
            trees[table].insert(pattern, e.priority, rank);
        }
        trees
    }

    /// Appends a module known by name only, reusing its id when the tree knows it.
    fn push_name(&self, out: &mut Resolution, name: String) {
        let id = match self.names.iter().position(|n| *n == name) {
            Some(i) => i as u32,
            None => match out.extra.iter().position(|n| *n == name) {
                Some(i) => (self.names.len() + i) as u32,
                None => {
                    out.extra.push(name);
                    (self.names.len() + out.extra.len() - 1) as u32
                }
            },
        };
        if !out.modules.contains(&id) {
            out.modules.push(id);
        }
    }

    /// Convenience wrapper around [`Resolver::resolve_into`] without modprobe.d.
    pub fn resolve(&self, input: &[u8]) -> Result<Resolution, AliasError> {
        let mut out = Resolution::default();
        self.resolve_into(input, &NoConfig, &mut Scratch::default(), &mut out)?;
        Ok(out)
    }
}

fn sorted_by_name(names: &[String], mut ids: Vec<u32>) -> Vec<u32> {
    ids.sort_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names that agree in their first 16 bytes (`snd_soc_intel_so...`), one that is another's
    /// prefix, and lookups of names near them.
    #[test]
    fn module_names_are_found_whole() {
        let names = [
            "snd_soc_intel_sof_rt5682",
            "snd_soc_intel_sof_board_helpers",
            "snd_soc_intel_sof",
            "snd_soc_intel_so",
            "snd_soc_intel_s",
            "e1000e",
            "zram",
            "a",
        ];
        let mut r = Resolver {
            names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        };
        r.dep_sorted = sorted_by_name(&r.names, (0..names.len() as u32).collect());
        r.derive();
        let find = |name: &str| r.dep_index.find(&r.names, name.as_bytes(), None);
        for (id, name) in names.iter().enumerate() {
            assert_eq!(find(name), Some(id as u32), "{name}");
        }
        for absent in [
            "",
            "0",
            "snd_soc_intel_sof_",
            "snd_soc_intel_sof_rt5682x",
            "snd_soc_intel_sof_board",
            "snd_soc_intel_sog",
            "snd_soc_intel_",
            "zzz",
        ] {
            assert_eq!(find(absent), None, "{absent}");
        }
    }
}
