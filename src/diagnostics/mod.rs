//! Diagnostics: what an expert would point out.
//!
//! The configuration lint behind `modaliasd doctor` (mistakes in modprobe.d and on the kernel
//! command line that kmod accepts without a word and that then silently do nothing), the
//! diagnosis of a failed insertion ([`failure`]), parameter value checks ([`params`]) and the
//! taint flags ([`taint`]).

pub mod failure;
pub mod params;
pub mod taint;

use crate::modprobe::Config;
use crate::modprobe::config::{Origin, cmdline_blacklist_entries};
use crate::resolve::Resolver;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; nothing is wrong with what gets loaded.
    Note,
    /// The line does not do what it says.
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
        })
    }
}

/// One finding: where, how bad, what, and the one-line fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub origin: Origin,
    pub severity: Severity,
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.origin {
            // A finding about a whole file.
            Origin::File { path, line: 0 } => write!(f, "{}", path.display())?,
            origin => write!(f, "{origin}")?,
        }
        write!(
            f,
            ": {}: {} (fix: {})",
            self.severity, self.message, self.fix
        )
    }
}

/// Lints `config` against the module directory `resolver` was built from. `cmdline` is the
/// kernel command line as read (for what the parsed configuration no longer shows). File owners
/// are checked only when `check_owners` (the live system: a build tree belongs to its builder).
pub fn lint_config(
    config: &Config,
    resolver: &Resolver,
    cmdline: Option<&str>,
    check_owners: bool,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let known = |name: &str| {
        let aliased = config.aliases.iter().any(|a| a.pattern == name);
        aliased
            || resolver
                .resolve(name.as_bytes())
                .is_ok_and(|r| !r.modules.is_empty())
    };
    let wildcard = |name: &str| name.contains(['*', '?', '[']);
    let mut unknown = |kind: &str, module: &str, origin: &Origin| {
        if wildcard(module) || known(module) {
            return;
        }
        findings.push(Finding {
            origin: origin.clone(),
            severity: Severity::Warning,
            message: format!(
                "{kind} for '{module}', which is neither a module, a built-in nor an alias here"
            ),
            fix: "correct the name or remove the line".to_owned(),
        });
    };
    for o in &config.options {
        unknown("options", &o.module, &o.origin);
    }
    for b in &config.blacklist {
        unknown("blacklist", &b.module, &b.origin);
    }
    for s in &config.softdeps {
        unknown("softdep", &s.module, &s.origin);
    }
    for i in &config.installs {
        unknown("install", &i.module, &i.origin);
    }

    // kmod takes the first softdep line for a module and ignores the rest. The module
    // directory's modules.softdep (depmod copies it from the modules themselves) is not the
    // administrator's to fix, so only its first line per module counts here, silently.
    let mut first_softdep: HashMap<&str, &Origin> = HashMap::new();
    for s in &config.softdeps {
        let from_depmod = matches!(&s.origin, Origin::File { path, .. }
            if path.file_name().is_some_and(|n| n == "modules.softdep"));
        if from_depmod {
            first_softdep.entry(&s.module).or_insert(&s.origin);
            continue;
        }
        if s.pre.is_empty() && s.post.is_empty() {
            findings.push(Finding {
                origin: s.origin.clone(),
                severity: Severity::Warning,
                message: format!(
                    "softdep for '{}' names no 'pre:' or 'post:' modules: it does nothing",
                    s.module
                ),
                fix: "write 'softdep MODULE pre: A post: B'".to_owned(),
            });
        }
        match first_softdep.get(s.module.as_str()) {
            Some(first) => findings.push(Finding {
                origin: s.origin.clone(),
                severity: Severity::Warning,
                message: format!(
                    "second softdep line for '{}': only the first ({first}) is used",
                    s.module
                ),
                fix: "merge the pre: and post: lists into the first line".to_owned(),
            }),
            None => {
                first_softdep.insert(&s.module, &s.origin);
            }
        }
    }

    // A module with softdeps is loaded with them, and its install command is not run.
    for i in &config.installs {
        if let Some(softdep) = first_softdep.get(i.module.as_str()) {
            findings.push(Finding {
                origin: i.origin.clone(),
                severity: Severity::Warning,
                message: format!(
                    "install command for '{}' is ignored: the module has a softdep ({softdep})",
                    i.module
                ),
                fix: "remove the softdep, or do its loading inside the install command".to_owned(),
            });
        }
    }

    for path in &config.files {
        if let Some(problem) = unsafe_ownership(path, check_owners) {
            findings.push(Finding {
                origin: Origin::File {
                    path: path.clone(),
                    line: 0,
                },
                severity: Severity::Warning,
                message: problem,
                fix: format!("chown root:root {0} && chmod go-w {0}", path.display()),
            });
        }
    }

    if let Some(cmdline) = cmdline {
        // The entries as the configuration (and kmod) read them.
        for name in cmdline_blacklist_entries(cmdline.as_bytes()) {
            if name.contains('-') {
                findings.push(Finding {
                    origin: Origin::KernelCmdline,
                    severity: Severity::Note,
                    message: format!(
                        "modprobe.blacklist={name}: kmod's modprobe does not turn dashes into \
                         underscores here, so it does not blacklist the module (modaliasd does)"
                    ),
                    fix: format!("write it as {}", name.replace('-', "_")),
                });
            }
        }
    }
    findings.sort_by_key(|f| origin_key(&f.origin));
    findings
}

/// Files first in path and line order, then the command line.
fn origin_key(origin: &Origin) -> (u8, PathBuf, u32) {
    match origin {
        Origin::File { path, line } => (0, path.clone(), *line),
        Origin::KernelCmdline => (1, PathBuf::new(), 0),
    }
}

/// Configuration decides what runs as root (`install`): anyone else able to write it can too.
fn unsafe_ownership(path: &std::path::Path, check_owner: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "writable by {} (mode {:o}): anyone who can write it can run commands as root \
             through 'install'",
            if meta.mode() & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            meta.mode() & 0o7777
        ));
    }
    if check_owner && meta.uid() != 0 {
        return Some(format!(
            "owned by uid {}, not root: that user can run commands as root through 'install'",
            meta.uid()
        ));
    }
    None
}
