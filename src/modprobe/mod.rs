//! modprobe semantics: the modprobe.d configuration ([`config`]) and how it takes part in
//! resolving a name (libkmod's lookup steps 1 and 4, see [`crate::resolve`]).

pub mod config;
pub mod plan;

pub use config::{Config, ConfigSources, Origin};

use crate::matcher::fnmatch;
use crate::resolve::ConfigLookup;

impl ConfigLookup for Config {
    /// Every `alias` line whose pattern matches, in parse order (fnmatch, flags 0).
    fn aliases(&self, key: &[u8]) -> Vec<String> {
        self.aliases
            .iter()
            .filter(|a| fnmatch(a.pattern.as_bytes(), key))
            .map(|a| a.module.clone())
            .collect()
    }

    /// An `install` or `remove` command for exactly this name.
    fn has_command(&self, key: &[u8]) -> bool {
        self.installs
            .iter()
            .chain(&self.removes)
            .any(|c| c.module.as_bytes() == key)
    }
}

impl Config {
    /// The effective configuration in `modprobe -c`'s order and form, each line followed by
    /// `  # ORIGIN` (its file and line, or the kernel command line).
    pub fn dump(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        for b in &self.blacklist {
            writeln!(out, "blacklist {}  # {}", b.module, b.origin)?;
        }
        for c in &self.installs {
            writeln!(out, "install {} {}  # {}", c.module, c.command, c.origin)?;
        }
        for c in &self.removes {
            writeln!(out, "remove {} {}  # {}", c.module, c.command, c.origin)?;
        }
        for a in &self.aliases {
            writeln!(out, "alias {} {}  # {}", a.pattern, a.module, a.origin)?;
        }
        for o in &self.options {
            writeln!(out, "options {} {}  # {}", o.module, o.options, o.origin)?;
        }
        for s in &self.softdeps {
            write!(out, "softdep {}", s.module)?;
            if !s.pre.is_empty() {
                write!(out, " pre: {}", s.pre.join(" "))?;
            }
            if !s.post.is_empty() {
                write!(out, " post: {}", s.post.join(" "))?;
            }
            writeln!(out, "  # {}", s.origin)?;
        }
        for w in &self.weakdeps {
            writeln!(
                out,
                "weakdep {} {}  # {}",
                w.module,
                w.deps.join(" "),
                w.origin
            )?;
        }
        Ok(())
    }
}
