//! modprobe.d configuration and the kernel command line, read as libkmod reads them.
//!
//! Files: every `*.conf` (and, as kmod 30 still accepts, `*.alias`) file not starting with `.` in
//! the configuration directories, highest precedence first. A basename already seen hides the
//! same basename further down; the surviving files are parsed in one order, sorted by basename,
//! whatever their directory. depmod's `modules.softdep` joins that list as if it were a
//! configuration file, and the kernel command line is read after all files.
//!
//! Lines: a backslash before a newline joins two lines, a backslash before anything else is
//! dropped and the character kept; only `#` in column 0 starts a comment; tokens split on spaces
//! and tabs; names have `-` turned into `_` outside brackets. A bad line is reported with its file
//! and line (the last physical line of a joined one, as libkmod counts) and skipped.

use std::path::{Path, PathBuf};

/// The directories searched under `--root`, highest precedence first.
pub const CONFIG_DIRS: &[&str] = &[
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/local/lib/modprobe.d",
    "usr/lib/modprobe.d",
    "lib/modprobe.d",
];

/// Where an entry was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: u32 },
    KernelCmdline,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::KernelCmdline => f.write_str("kernel command line"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasLine {
    /// An fnmatch pattern, normalised.
    pub pattern: String,
    pub module: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsLine {
    pub module: String,
    /// As written after the module name (tabs turned into spaces, as libkmod does).
    pub options: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// An fnmatch pattern for `install` and `remove`.
    pub module: String,
    pub command: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftdepLine {
    pub module: String,
    pub pre: Vec<String>,
    pub post: Vec<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakdepLine {
    pub module: String,
    pub deps: Vec<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlacklistLine {
    pub module: String,
    pub origin: Origin,
}

/// A problem that did not stop parsing: the line or file was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub origin: Origin,
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// The effective configuration, every entry in parse order with its origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The files parsed, in parse order.
    pub files: Vec<PathBuf>,
    pub aliases: Vec<AliasLine>,
    pub options: Vec<OptionsLine>,
    pub installs: Vec<CommandLine>,
    pub removes: Vec<CommandLine>,
    pub softdeps: Vec<SoftdepLine>,
    pub weakdeps: Vec<WeakdepLine>,
    pub blacklist: Vec<BlacklistLine>,
    pub warnings: Vec<ConfigWarning>,
}

/// Which configuration to read.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `--root`: the five directories are looked up under it.
    pub root: PathBuf,
    /// `--config PATH...` (like `modprobe -C`): files or directories replacing the five.
    pub paths: Vec<PathBuf>,
    /// The module directory, for its `modules.softdep`.
    pub module_dir: Option<PathBuf>,
    /// The kernel command line (`--cmdline FILE`, default `ROOT/proc/cmdline`); `None` reads none.
    pub cmdline: Option<PathBuf>,
}

/// libkmod's `underscores`: `-` becomes `_` outside brackets. An unbalanced bracket is only
/// noted by libkmod, so it is not an error here either.
pub fn underscores(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_bracket = false;
    for c in s.chars() {
        match c {
            '[' => in_bracket = true,
            ']' => in_bracket = false,
            '-' if !in_bracket => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// libkmod's `getline_wrapped`: logical lines with the number of their last physical line.
fn logical_lines(data: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut physical = 0u32;
    let mut i = 0;
    let mut any = false;
    while i < data.len() {
        let c = data[i];
        i += 1;
        any = true;
        match c {
            b'\n' => {
                physical += 1;
                out.push((physical, std::mem::take(&mut line)));
                any = false;
            }
            b'\\' => match data.get(i) {
                Some(b'\n') => {
                    physical += 1;
                    i += 1;
                }
                Some(&next) => {
                    line.push(next);
                    i += 1;
                }
                // A backslash at the very end: libkmod stores EOF as the byte 0xFF.
                None => line.push(0xFF),
            },
            _ => line.push(c),
        }
    }
    if any {
        out.push((physical + 1, line));
    }
    out
}

/// Splits off the next token (spaces and tabs delimit), like `strtok_r(.., "\t ")`.
fn next_token(rest: &mut &[u8]) -> Option<Vec<u8>> {
    let start = rest.iter().position(|&c| c != b' ' && c != b'\t')?;
    let s = &rest[start..];
    let end = s.iter().position(|&c| c == b' ' || c == b'\t');
    let token = s[..end.unwrap_or(s.len())].to_vec();
    // strtok_r consumes the one delimiter that ends the token.
    *rest = match end {
        Some(e) => &s[e + 1..],
        None => &s[s.len()..],
    };
    Some(token)
}

/// The remainder, like `strtok_r(NULL, "\0")`: `None` when nothing is left.
fn remainder(rest: &[u8]) -> Option<String> {
    (!rest.is_empty()).then(|| String::from_utf8_lossy(rest).into_owned())
}

fn name(token: Vec<u8>) -> String {
    underscores(&String::from_utf8_lossy(&token))
}

impl Config {
    /// Reads the configuration `sources` name. Unreadable files are warnings, as they are for
    /// libkmod; nothing here stops the load.
    pub fn load(sources: &ConfigSources) -> Config {
        let mut config = Config::default();
        let dirs: Vec<PathBuf> = if sources.paths.is_empty() {
            CONFIG_DIRS.iter().map(|d| sources.root.join(d)).collect()
        } else {
            sources.paths.clone()
        };
        // (basename, path), kept sorted by basename; the first of a basename wins.
        let mut files: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        let mut insert = |base: Vec<u8>, path: PathBuf| {
            if let Err(at) = files.binary_search_by(|(b, _)| b.cmp(&base)) {
                files.insert(at, (base, path));
            }
        };
        if let Some(dir) = &sources.module_dir {
            insert(b"modules.softdep".to_vec(), dir.join("modules.softdep"));
        }
        for dir in &dirs {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue;
            };
            if !meta.is_dir() {
                let base = dir.file_name().map(|b| b.as_encoded_bytes().to_vec());
                insert(base.unwrap_or_default(), dir.clone());
                continue;
            }
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    config.warn_file(dir, format!("cannot list directory: {e}"));
                    continue;
                }
            };
            for entry in entries.flatten() {
                let base = entry.file_name().as_encoded_bytes().to_vec();
                let wanted = base.first() != Some(&b'.')
                    && (base.ends_with(b".conf") || base.ends_with(b".alias"))
                    && base.len() >= 6;
                if !wanted {
                    continue;
                }
                let path = entry.path();
                if path.is_dir() {
                    config.warn_file(&path, "directories inside directories are not supported");
                    continue;
                }
                insert(base, path);
            }
        }
        for (_, path) in files {
            match std::fs::read(&path) {
                Ok(data) => {
                    config.parse_file(&path, &data);
                    config.files.push(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => config.warn_file(&path, format!("cannot read: {e}")),
            }
        }
        if let Some(cmdline) = &sources.cmdline {
            match std::fs::read(cmdline) {
                Ok(data) => config.parse_cmdline(&data),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => config.warnings.push(ConfigWarning {
                    origin: Origin::KernelCmdline,
                    message: format!("{}: {e}", cmdline.display()),
                }),
            }
        }
        config
    }

    fn warn_file(&mut self, path: &Path, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            origin: Origin::File {
                path: path.to_owned(),
                line: 0,
            },
            message: message.into(),
        });
    }

    /// Parses one file's contents (`path` only names it in origins and warnings).
    pub fn parse_file(&mut self, path: &Path, data: &[u8]) {
        for (line_no, mut line) in logical_lines(data) {
            // libkmod handles lines as C strings: a NUL byte ends the line.
            if let Some(nul) = memchr::memchr(0, &line) {
                line.truncate(nul);
            }
            let origin = Origin::File {
                path: path.to_owned(),
                line: line_no,
            };
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let mut rest = &line[..];
            let Some(cmd) = next_token(&mut rest) else {
                continue;
            };
            if !self.parse_command(&cmd, rest, &origin) {
                self.warnings.push(ConfigWarning {
                    origin,
                    message: format!(
                        "ignoring bad line starting with '{}'",
                        String::from_utf8_lossy(&cmd)
                    ),
                });
            }
        }
    }

    /// One command; false when the line is bad.
    fn parse_command(&mut self, cmd: &[u8], mut rest: &[u8], origin: &Origin) -> bool {
        let origin = origin.clone();
        match cmd {
            b"alias" => {
                let (Some(pattern), Some(module)) = (next_token(&mut rest), next_token(&mut rest))
                else {
                    return false;
                };
                self.aliases.push(AliasLine {
                    pattern: name(pattern),
                    module: name(module),
                    origin,
                });
            }
            b"blacklist" => {
                let Some(module) = next_token(&mut rest) else {
                    return false;
                };
                self.blacklist.push(BlacklistLine {
                    module: name(module),
                    origin,
                });
            }
            b"options" | b"install" | b"remove" | b"softdep" | b"weakdep" => {
                let Some(module) = next_token(&mut rest) else {
                    return false;
                };
                let Some(text) = remainder(rest) else {
                    return false;
                };
                let module = name(module);
                match cmd {
                    b"options" => self.options.push(OptionsLine {
                        module,
                        options: text.replace('\t', " "),
                        origin,
                    }),
                    b"install" => self.installs.push(CommandLine {
                        module,
                        command: text,
                        origin,
                    }),
                    b"remove" => self.removes.push(CommandLine {
                        module,
                        command: text,
                        origin,
                    }),
                    b"softdep" => {
                        let (pre, post) = parse_softdep(&text);
                        self.softdeps.push(SoftdepLine {
                            module,
                            pre,
                            post,
                            origin,
                        });
                    }
                    _ => self.weakdeps.push(WeakdepLine {
                        module,
                        deps: text.split_ascii_whitespace().map(str::to_owned).collect(),
                        origin,
                    }),
                }
            }
            b"include" | b"config" => {
                self.warnings.push(ConfigWarning {
                    origin,
                    message: format!(
                        "command {} is deprecated and not parsed anymore",
                        String::from_utf8_lossy(cmd)
                    ),
                });
            }
            _ => return false,
        }
        true
    }

    /// The kernel command line, read as libkmod 30's `kmod_config_parse_kcmdline` reads it:
    /// `module.param=value` adds options (dashes in the module name become underscores) and
    /// `modprobe.blacklist=a,b` adds blacklist entries. Its decisions are kept, checked against
    /// kmod 30 with random command lines (tests/cmdline_vs_modprobe.rs): a token with a second
    /// `.` before its `=`, or an `=` before its first `.`, is no option; a space inside quotes
    /// is allowed only in the value; an unterminated quote drops the token it opened; a quote
    /// before the module name (as grub writes `"m.p=a b"`) moves to the value (`p="a b"`); an
    /// empty module name or empty blacklist entries count; a module name with an unbalanced
    /// bracket is refused; any C whitespace separates (a newline too), and only the first
    /// 4,095 bytes are read. One deliberate difference: dashes in blacklist entries are normalised too, since
    /// kmod's `modprobe.blacklist=snd-hda-intel` fails to block `snd_hda_intel`, a bug, not a
    /// behaviour to keep.
    pub fn parse_cmdline(&mut self, data: &[u8]) {
        for KcmdlineOption {
            module,
            param,
            value,
        } in kcmdline_options(data)
        {
            if let Some(entries) = blacklist_entries(&module, &param, value.as_deref()) {
                for entry in entries {
                    self.blacklist.push(BlacklistLine {
                        module: underscores(&entry),
                        origin: Origin::KernelCmdline,
                    });
                }
                continue;
            }
            let module = String::from_utf8_lossy(&module);
            if !brackets_balanced(&module) {
                self.warnings.push(ConfigWarning {
                    origin: Origin::KernelCmdline,
                    message: format!("ignoring option with bad module name '{module}'"),
                });
                continue;
            }
            self.options.push(OptionsLine {
                module: underscores(&module),
                options: String::from_utf8_lossy(&param).replace('\t', " "),
                origin: Origin::KernelCmdline,
            });
        }
    }
}

/// What libkmod's `underscores` accepts: every `[` closed by a later `]`, no `]` outside one.
fn brackets_balanced(name: &str) -> bool {
    let mut open = false;
    for c in name.chars() {
        match c {
            '[' if !open => open = true,
            ']' if open => open = false,
            ']' => return false,
            _ => {}
        }
    }
    !open
}

/// C's `isspace` in the C locale, which libkmod's parsers use (Rust's ASCII whitespace lacks
/// the vertical tab).
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// libkmod's read buffer for /proc/cmdline (`KCMD_LINE_SIZE`), one byte kept for its NUL.
const KCMD_LINE_SIZE: usize = 4096;

/// One `module.param[=value]` of the kernel command line: `param` runs from after the first `.`
/// to the end of the token (`=value` included), `value` from after the `=`.
struct KcmdlineOption {
    module: Vec<u8>,
    param: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// The `modprobe.blacklist=` entries of a kernel command line as kmod reads them, dashes kept.
pub fn cmdline_blacklist_entries(data: &[u8]) -> Vec<String> {
    kcmdline_options(data)
        .iter()
        .filter_map(|o| blacklist_entries(&o.module, &o.param, o.value.as_deref()))
        .flatten()
        .collect()
}

/// The entries of a `modprobe.blacklist=a,b` option, empty ones included (kmod keeps them);
/// `None` for any other option.
fn blacklist_entries(module: &[u8], param: &[u8], value: Option<&[u8]>) -> Option<Vec<String>> {
    (module == b"modprobe" && param.starts_with(b"blacklist=")).then(|| {
        value
            .unwrap_or_default()
            .split(|&b| b == b',')
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect()
    })
}

/// The options of a kernel command line, by libkmod 30's state machine.
fn kcmdline_options(data: &[u8]) -> Vec<KcmdlineOption> {
    #[derive(PartialEq, Clone, Copy)]
    enum State {
        Ignore,
        Module,
        Param,
        Value,
    }
    let data = &data[..data.len().min(KCMD_LINE_SIZE - 1)];
    let mut out = Vec::new();
    let mut state = State::Module;
    let mut quoted = false;
    // Byte offsets: where the module name starts and ends, where the param and value start,
    // and where a quote opened the token.
    let (mut module, mut dot, mut param, mut value) = (0usize, 0usize, 0usize, None);
    let mut quote_start: Option<usize> = None;
    let mut p = 0;
    loop {
        // A NUL ends libkmod's string like the end of the data does.
        let c = data.get(p).copied().unwrap_or(0);
        let last = c == 0;
        let mut complete = false;
        match c {
            b'"' => {
                quoted = !quoted;
                // Only a quote as the token's first byte is allowed outside the value.
                if quoted && state == State::Module && p == module {
                    quote_start = Some(p);
                    module = p + 1;
                } else if state != State::Value {
                    state = State::Ignore;
                }
            }
            // Every C space separates options; only the end stops.
            c if c == 0 || c_isspace(c) => {
                if quoted && state == State::Value {
                    // Part of a quoted value.
                } else if quoted {
                    state = State::Ignore;
                } else if state == State::Value || state == State::Param {
                    complete = true;
                } else {
                    module = p + 1;
                    state = State::Module;
                    quote_start = None;
                }
            }
            b'.' => {
                if state == State::Module {
                    dot = p;
                    param = p + 1;
                    state = State::Param;
                } else if state == State::Param {
                    state = State::Ignore;
                }
            }
            b'=' => {
                if state == State::Param {
                    value = Some(p + 1);
                    state = State::Value;
                } else if state == State::Module {
                    state = State::Ignore;
                }
            }
            _ => {}
        }
        if complete {
            let name = data[module..dot].to_vec();
            let mut param_text = data[param..p].to_vec();
            let mut value_text = value.filter(|&v| v > param).map(|v| data[v..p].to_vec());
            if quote_start.is_some_and(|q| q < module) {
                // grub's `"m.p=a b"`: libkmod moves the quote to open the value.
                if let (Some(v), Some(text)) = (value.filter(|&v| v > param), &mut value_text) {
                    text.insert(0, b'"');
                    param_text.insert(v - param, b'"');
                }
            }
            out.push(KcmdlineOption {
                module: name,
                param: param_text,
                value: value_text,
            });
            module = p + 1;
            state = State::Module;
            quote_start = None;
        }
        if last {
            return out;
        }
        p += 1;
    }
}

/// Kernel command-line tokens: split on spaces, except inside double quotes.
pub fn split_cmdline(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ' ' | '\t' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    // An unterminated quote: kmod drops the token it opened (checked against kmod 30).
    if !cur.is_empty() && !quoted {
        out.push(cur);
    }
    out
}

/// `pre: a b post: c`, read as libkmod's `kmod_config_add_softdep` reads it: words separated
/// by C `isspace` bytes; words after `pre:` or `post:` go to that list, words before either
/// are ignored. One quirk of its word splitting is kept, because it decides what gets loaded:
/// its first word starts at the text's first byte unless that byte begins a run of two or more
/// blanks. With exactly one blank in front (`softdep m  pre: a`: two blanks after the name, of
/// which strtok took one), the first word is " pre:", which is no keyword, and the modules
/// after it are ignored until a `post:` (checked against kmod 30's `modprobe -c`).
fn parse_softdep(text: &str) -> (Vec<String>, Vec<String>) {
    let bytes = text.as_bytes();
    let glued = bytes.len() >= 2 && c_isspace(bytes[0]) && !c_isspace(bytes[1]);
    let (mut pre, mut post) = (Vec::new(), Vec::new());
    let mut mode = 0;
    let words = bytes.split(|&b| c_isspace(b)).filter(|w| !w.is_empty());
    for (i, word) in words.enumerate() {
        let keyword = !(glued && i == 0);
        match word {
            b"pre:" if keyword => mode = 1,
            b"post:" if keyword => mode = 2,
            w if mode == 1 => pre.push(String::from_utf8_lossy(w).into_owned()),
            w if mode == 2 => post.push(String::from_utf8_lossy(w).into_owned()),
            _ => {}
        }
    }
    (pre, post)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        let mut c = Config::default();
        c.parse_file(Path::new("t.conf"), text.as_bytes());
        c
    }

    #[test]
    fn softdep_words_split_as_libkmod_splits_them() {
        let lists = |text: &str| {
            let (pre, post) = parse_softdep(text);
            (pre.join(" "), post.join(" "))
        };
        let both = || ("a b".to_string(), "c".to_string());
        assert_eq!(lists("pre: a b post: c"), both());
        assert_eq!(lists("  pre: a\tb post:  c "), both());
        assert_eq!(lists("\t pre: a b post: c"), both());
        assert_eq!(lists("junk pre: a b post: c"), both());
        // One blank in front glues itself to the first word: no `pre:`.
        assert_eq!(lists(" pre: a b post: c"), (String::new(), "c".into()));
        assert_eq!(lists("\tpre: a b post: c"), (String::new(), "c".into()));
        assert_eq!(lists("pre:a post: c"), (String::new(), "c".into()));
        assert_eq!(lists("post: c pre: a pre: b"), ("a b".into(), "c".into()));
    }

    #[test]
    fn lines_join_and_escape_like_getline_wrapped() {
        let lines = logical_lines(b"a\\\nb\nc\\d\n\ne");
        assert_eq!(
            lines,
            [
                (2, b"ab".to_vec()),
                (3, b"cd".to_vec()),
                (4, b"".to_vec()),
                (5, b"e".to_vec())
            ]
        );
    }

    #[test]
    fn commands() {
        let c = parse(
            "# comment\n alias x-y[a-b] snd-hda-intel\noptions  e1000e\t a=1 \nsoftdep m pre: a b post: c\n  # indented\nblacklist\nbogus\ninstall fuse /bin/true $CMDLINE_OPTS\n",
        );
        assert_eq!(c.aliases[0].pattern, "x_y[a-b]");
        assert_eq!(c.aliases[0].module, "snd_hda_intel");
        // strtok consumes exactly the one delimiter after the module name.
        assert_eq!(c.options[0].options, " a=1 ");
        assert_eq!(c.softdeps[0].pre, ["a", "b"]);
        assert_eq!(c.softdeps[0].post, ["c"]);
        assert_eq!(c.installs[0].command, "/bin/true $CMDLINE_OPTS");
        let bad: Vec<u32> = c
            .warnings
            .iter()
            .map(|w| match w.origin {
                Origin::File { line, .. } => line,
                Origin::KernelCmdline => 0,
            })
            .collect();
        assert_eq!(bad, [5, 6, 7]);
    }

    #[test]
    fn kernel_command_line() {
        let mut c = Config::default();
        c.parse_cmdline(
            b"root=/dev/sda1 snd-hda-intel.model=auto x.p=\"a b\" a=b.c m.flag modprobe.blacklist=snd-pcsp,floppy -- init.arg=1\n",
        );
        let opts: Vec<(&str, &str)> = c
            .options
            .iter()
            .map(|o| (o.module.as_str(), o.options.as_str()))
            .collect();
        assert_eq!(
            opts,
            [
                ("snd_hda_intel", "model=auto"),
                ("x", "p=\"a b\""),
                ("m", "flag"),
                ("init", "arg=1")
            ]
        );
        let bl: Vec<&str> = c.blacklist.iter().map(|b| b.module.as_str()).collect();
        assert_eq!(bl, ["snd_pcsp", "floppy"]);
    }
}
