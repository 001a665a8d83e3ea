//! Rules: the subset of udev's rule syntax that decides which modules an event loads.
//!
//! A rule is one line (a trailing backslash continues it) of comma-separated `KEY OP "VALUE"`
//! items. Supported:
//!
//! | key | operators | meaning |
//! |---|---|---|
//! | `ACTION`, `SUBSYSTEM`, `KERNEL`, `DEVPATH`, `DEVTYPE`, `DRIVER`, `ENV{KEY}` | `==`, `!=` | match the event |
//! | `RUN{builtin}` | `+=`, `=` | `"kmod load [NAME...]"`: load NAMEs, or the event's MODALIAS |
//! | `RUN`, `RUN{program}` | `+=`, `=` | run a program (`/bin/sh -c`), with the event in its environment |
//! | `GOTO` | `=` | skip to the rule with this `LABEL` |
//! | `LABEL` | `=` | a jump target |
//!
//! Match values are fnmatch patterns with `|` separating alternatives, as in udev; a missing
//! variable matches as the empty string, so `"?*"` means "set and not empty". Anything else (an
//! unknown key, an operator a key does not take, a broken value) is an error naming the file and
//! line, and that rule is skipped; the others still apply.
//!
//! Files: `*.rules` in `ROOT/etc/modaliasd/rules.d`, `ROOT/run/modaliasd/rules.d` and
//! `ROOT/usr/lib/modaliasd/rules.d`; a basename hides the same basename further down; all files
//! are read in basename order. With no file at all, the shipped files ([`SHIPPED_RULES`]) apply.

use crate::matcher::Glob;
use crate::uevent::Event;
use std::path::{Path, PathBuf};

pub const RULE_DIRS: &[&str] = &[
    "etc/modaliasd/rules.d",
    "run/modaliasd/rules.d",
    "usr/lib/modaliasd/rules.d",
];

/// The shipped default, also built into the binary.
pub const DEFAULT_RULES: &str = include_str!("../../rules.d/80-drivers.rules");

/// Every file of the repository's `rules.d`, by basename in reading order: what applies when the
/// rule directories hold no file at all (an initramfs builder that copied only the binary).
pub const SHIPPED_RULES: &[(&str, &str)] = &[
    (
        "80-debian-compat.rules",
        include_str!("../../rules.d/80-debian-compat.rules"),
    ),
    ("80-drivers.rules", DEFAULT_RULES),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Action,
    Subsystem,
    Kernel,
    Devpath,
    Devtype,
    Driver,
    Env(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Match {
    field: Field,
    negate: bool,
    alternatives: Vec<Glob>,
}

/// What a rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `kmod load NAME...`; no names means the event's MODALIAS.
    Load(Vec<String>),
    Run(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    origin: (PathBuf, u32),
    matches: Vec<Match>,
    requests: Vec<Request>,
    goto: Option<String>,
    label: Option<String>,
}

/// A rule that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub path: PathBuf,
    pub line: u32,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}; rule skipped",
            self.path.display(),
            self.line,
            self.message
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    pub files: Vec<PathBuf>,
    pub errors: Vec<RuleError>,
}

impl Rules {
    /// Reads the rule directories under `root`, or the built-in default when they hold none.
    pub fn load(root: &Path) -> Rules {
        let mut files: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
        for dir in RULE_DIRS {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                if !name.to_string_lossy().ends_with(".rules")
                    || files.iter().any(|(n, _)| *n == name)
                {
                    continue;
                }
                files.push((name, e.path()));
            }
        }
        files.sort();
        let mut rules = Rules::default();
        if files.is_empty() {
            for (name, text) in SHIPPED_RULES {
                rules.parse(Path::new(&format!("(built-in {name})")), text);
            }
            return rules;
        }
        for (_, path) in files {
            match std::fs::read(&path) {
                Ok(data) => rules.parse(&path, &String::from_utf8_lossy(&data)),
                Err(e) => rules.errors.push(RuleError {
                    path: path.clone(),
                    line: 0,
                    message: format!("cannot read: {e}"),
                }),
            }
            rules.files.push(path);
        }
        rules
    }

    /// Adds the rules in `text` (`path` names them in errors).
    pub fn parse(&mut self, path: &Path, text: &str) {
        let mut pending = String::new();
        let mut first_line = 0;
        for (i, raw) in text.lines().enumerate() {
            let number = i as u32 + 1;
            if pending.is_empty() {
                first_line = number;
            }
            if let Some(cont) = raw.strip_suffix('\\') {
                pending.push_str(cont);
                continue;
            }
            pending.push_str(raw);
            let line = std::mem::take(&mut pending);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_rule(line) {
                Ok(mut rule) => {
                    rule.origin = (path.to_owned(), first_line);
                    self.rules.push(rule);
                }
                Err(message) => self.errors.push(RuleError {
                    path: path.to_owned(),
                    line: first_line,
                    message,
                }),
            }
        }
    }

    /// What the rules ask for `event`, in rule order.
    pub fn apply(&self, event: &Event) -> Vec<Request> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.rules.len() {
            let rule = &self.rules[i];
            i += 1;
            if !rule.matches.iter().all(|m| m.matches(event)) {
                continue;
            }
            out.extend(rule.requests.iter().cloned());
            if let Some(label) = &rule.goto {
                // udev jumps forward only; a missing label ends the rules.
                i = self.rules[i..]
                    .iter()
                    .position(|r| r.label.as_deref() == Some(label.as_str()))
                    .map_or(self.rules.len(), |p| i + p);
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Match {
    fn matches(&self, event: &Event) -> bool {
        let value: &[u8] = match &self.field {
            Field::Action => event.action.as_str().as_bytes(),
            Field::Subsystem => event.subsystem().unwrap_or(b""),
            Field::Kernel => event.kernel_name(),
            Field::Devpath => event.devpath,
            Field::Devtype => event.get(b"DEVTYPE").unwrap_or(b""),
            Field::Driver => event.get(b"DRIVER").unwrap_or(b""),
            Field::Env(key) => event.get(key.as_bytes()).unwrap_or(b""),
        };
        let hit = self.alternatives.iter().any(|alt| alt.matches(value));
        hit != self.negate
    }
}

/// Splits a rule into `KEY OP "VALUE"` items and checks each against the supported subset.
fn parse_rule(line: &str) -> Result<Rule, String> {
    let mut rule = Rule {
        origin: (PathBuf::new(), 0),
        matches: Vec::new(),
        requests: Vec::new(),
        goto: None,
        label: None,
    };
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let key_end = rest
            .find(['=', '!', '+', ':', ' ', '\t'])
            .ok_or_else(|| format!("'{rest}' has no operator"))?;
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start();
        let op = ["==", "!=", "+=", ":=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("no operator after {key}"))?;
        rest = rest[op.len()..].trim_start();
        let value;
        (value, rest) =
            quoted(rest).ok_or_else(|| format!("the value of {key} is not a quoted string"))?;
        let (name, attr) = match key.find('{') {
            Some(open) if key.ends_with('}') => (&key[..open], Some(&key[open + 1..key.len() - 1])),
            Some(_) => return Err(format!("bad key {key}")),
            None => (key, None),
        };
        let is_match = matches!(op, "==" | "!=");
        let field = match (name, attr) {
            ("ACTION", None) => Some(Field::Action),
            ("SUBSYSTEM", None) => Some(Field::Subsystem),
            ("KERNEL", None) => Some(Field::Kernel),
            ("DEVPATH", None) => Some(Field::Devpath),
            ("DEVTYPE", None) => Some(Field::Devtype),
            ("DRIVER", None) => Some(Field::Driver),
            ("ENV", Some(k)) if !k.is_empty() && is_match => Some(Field::Env(k.to_owned())),
            _ => None,
        };
        match (field, op, name, attr) {
            (Some(field), "==" | "!=", _, _) => rule.matches.push(Match {
                field,
                negate: op == "!=",
                alternatives: value.split('|').map(|a| Glob::new(a.as_bytes())).collect(),
            }),
            (None, "+=" | "=", "RUN", Some("builtin")) => {
                let mut words = value.split_ascii_whitespace();
                if (words.next(), words.next()) != (Some("kmod"), Some("load")) {
                    return Err(format!(
                        "RUN{{builtin}} supports only \"kmod load\", not \"{value}\""
                    ));
                }
                rule.requests
                    .push(Request::Load(words.map(str::to_owned).collect()));
            }
            (None, "+=" | "=", "RUN", None | Some("program")) => {
                rule.requests.push(Request::Run(value.to_owned()))
            }
            (None, "=", "GOTO", None) => rule.goto = Some(value.to_owned()),
            (None, "=", "LABEL", None) => rule.label = Some(value.to_owned()),
            _ => return Err(format!("unsupported: {key}{op}\"{value}\"")),
        }
    }
    Ok(rule)
}

/// A double-quoted string (backslash escapes `"` and `\`) and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uevent::Event;

    fn ev(msg: &[u8]) -> Event<'_> {
        Event::parse(msg).unwrap()
    }

    #[test]
    fn shipped_rules_load_modaliases_on_add_and_the_special_cases() {
        let mut rules = Rules::default();
        rules.parse(Path::new("80-drivers.rules"), DEFAULT_RULES);
        assert!(rules.errors.is_empty(), "{:?}", rules.errors);
        let add = ev(b"add@/devices/x\0SUBSYSTEM=pci\0MODALIAS=pci:v1\0");
        assert_eq!(rules.apply(&add), [Request::Load(vec![])]);
        let change = ev(b"change@/devices/x\0SUBSYSTEM=pci\0MODALIAS=pci:v1\0");
        assert!(rules.apply(&change).is_empty());
        let empty = ev(b"add@/devices/x\0SUBSYSTEM=pci\0MODALIAS=\0");
        assert!(rules.apply(&empty).is_empty(), "?* needs a value");
        let tifm = ev(b"add@/devices/t\0SUBSYSTEM=tifm\0TIFM_CARD_TYPE=SD\0");
        assert_eq!(rules.apply(&tifm), [Request::Load(vec!["tifm_sd".into()])]);
        let parport = ev(b"add@/module/parport_pc\0SUBSYSTEM=module\0");
        assert_eq!(rules.apply(&parport), [Request::Load(vec!["ppdev".into()])]);
        let mtd = ev(b"add@/devices/mtd/mtd0ro\0MTD_FTL=smartmedia\0");
        assert_eq!(rules.apply(&mtd), [Request::Load(vec!["sm_ftl".into()])]);
    }

    #[test]
    fn bad_rules_are_reported_and_skipped() {
        let mut rules = Rules::default();
        rules.parse(
            Path::new("t.rules"),
            "SUBSYSTEM==\"a|b\", RUN+=\"/bin/x\"\n\
             ATTR{vendor}==\"0x8086\", RUN{builtin}+=\"kmod load x\"\n\
             SUBSYSTEM==\"pci\", RUN{builtin}+=\"hwdb\"\n\
             SUBSYSTEM=\"pci\"\n\
             SUBSYSTEM==pci\n\
             DRIVER!=\"?*\", \\\n  RUN{builtin}+=\"kmod load y\"\n",
        );
        let lines: Vec<u32> = rules.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert_eq!(rules.len(), 2);
        let b = ev(b"add@/devices/x\0SUBSYSTEM=b\0");
        assert_eq!(
            rules.apply(&b),
            [
                Request::Run("/bin/x".into()),
                Request::Load(vec!["y".into()])
            ]
        );
    }
}
