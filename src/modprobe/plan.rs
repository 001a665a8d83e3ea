//! Load plans: what modprobe would insert, in which order, with which options.
//!
//! This follows libkmod's `kmod_module_probe_insert_module` and `__kmod_module_get_probe_list`:
//!
//! - A name or MODALIAS is resolved with the configuration (see [`crate::resolve`]); every module
//!   it names is planned in turn. The blacklist stops a top-level module when it was reached
//!   through an alias, or always with `-b` (what udev and the daemon use). It never stops a
//!   dependency or a softdep.
//! - A module's dependencies come from its `modules.dep` line, walked last to first (the line
//!   lists them deepest last). Each dependency is preceded by its `pre:` softdeps and followed
//!   by its `post:` softdeps; softdep targets go through the full lookup and are planned
//!   recursively, each module object at most once (a visited mark breaks loops). The module
//!   itself comes last, wrapped in its own softdeps. Only the first `softdep` line matching a
//!   module counts (kmod issue #33).
//! - A module with an `install` command (first matching line, fnmatch) runs that instead of
//!   being inserted, unless it has softdeps. A built-in module is reported as built in.
//! - Options are every `options` line naming the module or the alias it was reached by (for
//!   a modprobe.d `alias` line, its pattern as written, not the name it matched), in parse
//!   order, plus the caller's own options for the top-level module.
//!
//! Plans print like `modprobe --show-depends`, except that paths are as on the target system
//! (`/lib/modules/KVER/...`), without the `--root` prefix.

use super::Config;
use crate::index::ModuleTree;
use crate::matcher::{Scratch, fnmatch};
use crate::resolve::{Resolution, Resolver, Source};
use std::collections::HashMap;

/// What to do for one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Insert the file at this path (relative to the module directory, as `modules.dep` has it).
    Insert { path: String },
    /// Run this `install` command instead.
    Install { command: String },
    /// Built into the kernel image: nothing to do.
    Builtin,
    /// Known only by name (an alias to a module the tree lacks): nothing can be done.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub module: String,
    pub action: Action,
    /// Options for `finit_module` or for `$CMDLINE_OPTS`.
    pub options: String,
    /// A dependency or the top-level module; false for softdeps, whose failures do not count.
    pub required: bool,
    /// Modules that must be loaded before this one: its modules.dep dependencies, its `pre:`
    /// softdeps, and for a `post:` softdep the module it follows. (A parallel loader needs
    /// these; the order of the steps already respects them.)
    pub waits_for: Vec<String>,
}

/// The outcome for one name given to `load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing resolves: modprobe's "Module X not found".
    NotFound,
    /// Steps in order (possibly none when every match was blacklisted).
    Steps(Vec<Step>),
}

/// When the blacklist applies to the modules a name resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlacklistMode {
    /// Plain modprobe: only to modules reached through an alias.
    AliasOnly,
    /// `modprobe -b`, udev and the daemon: always.
    Always,
}

/// Everything a plan needs: the module directory, its compiled lookup tables and the
/// configuration.
pub struct Planner<'a> {
    resolver: &'a Resolver,
    config: &'a Config,
    modules: HashMap<&'a str, (&'a str, &'a [String])>,
    builtin: std::collections::HashSet<&'a str>,
    /// Reused by every lookup: a fresh one would clear the matcher's whole memo each time.
    scratch: std::cell::RefCell<(Scratch, Resolution)>,
    /// Each module's softdeps, looked up once.
    softdep_cache: std::cell::RefCell<HashMap<String, Softdeps>>,
}

type Softdeps = std::rc::Rc<(Vec<ModuleRef>, Vec<ModuleRef>)>;

/// A module object as libkmod has one: its name and the alias it was reached by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ModuleRef {
    name: String,
    alias: Option<String>,
    builtin: bool,
}

impl<'a> Planner<'a> {
    pub fn new(tree: &'a ModuleTree, resolver: &'a Resolver, config: &'a Config) -> Planner<'a> {
        let modules = tree
            .modules
            .iter()
            .map(|m| (m.name.as_str(), (m.path.as_str(), m.deps.as_slice())))
            .collect();
        let builtin = tree.builtin.iter().map(String::as_str).collect();
        Planner {
            resolver,
            config,
            modules,
            builtin,
            scratch: Default::default(),
            softdep_cache: Default::default(),
        }
    }

    /// libkmod's lookup with the configuration: the module objects `key` names.
    fn lookup(&self, key: &[u8]) -> Option<Vec<ModuleRef>> {
        let mut guard = self.scratch.borrow_mut();
        let (scratch, res) = &mut *guard;
        self.resolver
            .resolve_into(key, self.config, scratch, res)
            .ok()?;
        let builtin = res.builtin();
        // The alias a module object carries, whose `options` lines also apply to it: for the
        // module index's answers the key looked up, but for a modprobe.d `alias` line its
        // pattern as written (`acpi*`, not the `acpi_als` it matched), as libkmod's
        // kmod_module_new_from_alias is given.
        let alias_of = |name: &str| match res.source() {
            Source::ConfigAlias => self
                .config
                .aliases
                .iter()
                .find(|a| a.module == name && fnmatch(a.pattern.as_bytes(), res.normalized()))
                .map(|a| a.pattern.clone()),
            Source::Symbol | Source::Alias | Source::BuiltinAlias => {
                Some(String::from_utf8_lossy(res.normalized()).into_owned())
            }
            _ => None,
        };
        let refs: Vec<ModuleRef> = res
            .names(self.resolver)
            .map(|n| ModuleRef {
                name: n.to_owned(),
                alias: alias_of(n),
                builtin,
            })
            .collect();
        (!refs.is_empty()).then_some(refs)
    }

    /// The modules `key` names, as libkmod's lookup finds them (the configuration's aliases
    /// included; no blacklist), each with its `modules.dep` path, `None` when built in or not
    /// in `modules.dep`.
    pub fn lookup_paths(&self, key: &str) -> Vec<(String, Option<String>)> {
        self.lookup(key.as_bytes())
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let path = match m.builtin || self.builtin.contains(m.name.as_str()) {
                    true => None,
                    false => self
                        .modules
                        .get(m.name.as_str())
                        .map(|(p, _)| p.to_string()),
                };
                (m.name, path)
            })
            .collect()
    }

    fn is_blacklisted(&self, name: &str) -> bool {
        self.config.blacklist.iter().any(|b| b.module == name)
    }

    /// The plan for one name or MODALIAS, as `modprobe [-b] --show-depends` computes it.
    pub fn plan(&self, key: &str, mode: BlacklistMode, extra_options: &str) -> Outcome {
        let Some(targets) = self.lookup(key.as_bytes()) else {
            return Outcome::NotFound;
        };
        let mut steps = Vec::new();
        for top in targets {
            let stopped_by_blacklist = match mode {
                BlacklistMode::Always => true,
                BlacklistMode::AliasOnly => top.alias.is_some(),
            };
            if stopped_by_blacklist && self.is_blacklisted(&top.name) {
                continue;
            }
            let mut list: Vec<(ModuleRef, bool)> = Vec::new();
            let mut visited = std::collections::HashSet::new();
            self.probe_list(&top, &mut visited, &mut list);
            // The top-level module and its modules.dep closure must load; softdeps need not.
            let mut required = vec![top.name.clone()];
            if let Some((_, deps)) = self.modules.get(top.name.as_str()) {
                required.extend(deps.iter().map(|d| crate::names::modname_from_path(d)));
            }
            // A post softdep follows the module that names it.
            let mut follows: HashMap<String, Vec<String>> = HashMap::new();
            for (m, _) in &list {
                for p in &self.softdeps(&m.name).1 {
                    follows
                        .entry(p.name.clone())
                        .or_default()
                        .push(m.name.clone());
                }
            }
            for (m, ignore_command) in list {
                let extra = (m == top).then_some(extra_options);
                let mut step = self.step(&m, ignore_command, extra);
                step.required = required.contains(&m.name);
                if let Some((_, deps)) = self.modules.get(m.name.as_str()) {
                    step.waits_for
                        .extend(deps.iter().map(|d| crate::names::modname_from_path(d)));
                }
                step.waits_for
                    .extend(self.softdeps(&m.name).0.iter().map(|p| p.name.clone()));
                step.waits_for
                    .extend(follows.get(&m.name).into_iter().flatten().cloned());
                step.waits_for.retain(|w| *w != m.name);
                steps.push(step);
            }
        }
        Outcome::Steps(steps)
    }

    /// `__kmod_module_get_probe_list`.
    fn probe_list(
        &self,
        m: &ModuleRef,
        visited: &mut std::collections::HashSet<ModuleRef>,
        list: &mut Vec<(ModuleRef, bool)>,
    ) {
        if !visited.insert(m.clone()) {
            return;
        }
        if let Some((_, deps)) = self.modules.get(m.name.as_str()) {
            for dep in deps.iter().rev() {
                let d = ModuleRef {
                    name: crate::names::modname_from_path(dep),
                    alias: None,
                    builtin: false,
                };
                self.fill_softdep(&d, visited, list);
            }
        }
        self.fill_softdep(m, visited, list);
    }

    /// `__kmod_module_fill_softdep`: pre softdeps, the module, post softdeps.
    fn fill_softdep(
        &self,
        m: &ModuleRef,
        visited: &mut std::collections::HashSet<ModuleRef>,
        list: &mut Vec<(ModuleRef, bool)>,
    ) {
        let deps = self.softdeps(&m.name);
        let (pre, post) = &*deps;
        for p in pre {
            self.probe_list(p, visited, list);
        }
        list.push((m.clone(), !pre.is_empty() || !post.is_empty()));
        for p in post {
            self.probe_list(p, visited, list);
        }
    }

    /// The first `softdep` line matching `name` (fnmatch), its targets looked up.
    fn softdeps(&self, name: &str) -> Softdeps {
        if let Some(cached) = self.softdep_cache.borrow().get(name) {
            return cached.clone();
        }
        let found = match self
            .config
            .softdeps
            .iter()
            .find(|s| fnmatch(s.module.as_bytes(), name.as_bytes()))
        {
            None => (Vec::new(), Vec::new()),
            Some(line) => {
                let resolve = |names: &[String]| -> Vec<ModuleRef> {
                    names
                        .iter()
                        .filter_map(|n| self.lookup(n.as_bytes()))
                        .flatten()
                        .collect()
                };
                (resolve(&line.pre), resolve(&line.post))
            }
        };
        let found = std::rc::Rc::new(found);
        self.softdep_cache
            .borrow_mut()
            .insert(name.to_owned(), found.clone());
        found
    }

    fn step(&self, m: &ModuleRef, ignore_command: bool, extra: Option<&str>) -> Step {
        let options = self.options(m, extra);
        let command = self
            .config
            .installs
            .iter()
            .find(|c| fnmatch(c.module.as_bytes(), m.name.as_bytes()));
        let action = match (command, ignore_command) {
            (Some(c), false) => Action::Install {
                command: c.command.clone(),
            },
            _ => match self.modules.get(m.name.as_str()) {
                Some((path, _)) if stays_inside(path) => Action::Insert {
                    path: (*path).to_owned(),
                },
                Some(_) => Action::Missing,
                None if m.builtin || self.builtin.contains(m.name.as_str()) => Action::Builtin,
                None => Action::Missing,
            },
        };
        Step {
            module: m.name.clone(),
            action,
            options,
            required: true,
            waits_for: Vec::new(),
        }
    }

    /// libkmod's `kmod_module_get_options` joined with the caller's options as
    /// `module_options_concat` joins them (a space after configured options, even alone).
    fn options(&self, m: &ModuleRef, extra: Option<&str>) -> String {
        let configured: Vec<&str> = self
            .config
            .options
            .iter()
            .filter(|o| o.module == m.name || m.alias.as_deref() == Some(o.module.as_str()))
            .map(|o| o.options.as_str())
            .filter(|o| !o.is_empty())
            .collect();
        let extra = extra.filter(|e| !e.is_empty());
        match (configured.is_empty(), extra) {
            (true, None) => String::new(),
            (true, Some(e)) => e.to_owned(),
            (false, e) => format!("{} {}", configured.join(" "), e.unwrap_or("")),
        }
    }
}

/// A `modules.dep` path must stay inside the module directory: relative, no `..` component.
/// (depmod writes absolute paths only for modules outside it, which we refuse to load.)
fn stays_inside(path: &str) -> bool {
    !path.starts_with('/') && !path.split('/').any(|c| c == "..")
}

/// What `modprobe --show-depends` prints for a plan: each step's line, each line once.
pub fn show_depends_lines(steps: &[Step], module_dir: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    steps
        .iter()
        .filter_map(|s| s.show_depends_line(module_dir))
        .filter(|l| seen.insert(l.clone()))
        .collect()
}

impl Step {
    /// The line `modprobe --show-depends` prints, with `module_dir` as the module directory's
    /// path on the target system; `None` for a module it prints nothing for.
    pub fn show_depends_line(&self, module_dir: &str) -> Option<String> {
        match &self.action {
            Action::Insert { path } => Some(format!("insmod {module_dir}/{path} {}", self.options)),
            Action::Install { command } => Some(format!("install {command} {}", self.options)),
            Action::Builtin => Some(format!("builtin {}", self.module)),
            Action::Missing => None,
        }
    }
}
