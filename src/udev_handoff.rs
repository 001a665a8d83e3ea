//! Handing udev's module loading over to modaliasd, reversibly.
//!
//! On a system where systemd-udevd runs, udevd keeps everything it does (device nodes,
//! permissions, symlinks, tags, systemd's device units, network names) and modaliasd takes only
//! the module loading. udevd loads modules from its rules: the `kmod load` builtin in
//! `80-drivers.rules`, Debian's `80-debian-compat.rules` (sg for SCSI devices), and whatever
//! other package adds one. [`take`] writes, for each rules file that loads modules, a copy
//! without those loads to `/run/udev/rules.d`, where a file hides the file of the same name in
//! `/usr/lib/udev/rules.d` (udev reads a basename from the first of `/etc`, `/run`,
//! `/usr/local/lib`, `/usr/lib`, `/lib`). [`give_back`] removes those copies. Either then tells
//! a running udevd to reread its rules.
//!
//! Why a runtime override: `/run` is a tmpfs emptied at every boot, so nothing survives a
//! modaliasd that is disabled, purged, or never started again; the service removes the copies
//! when it stops or fails, and the package's removal does too. Nothing is masked and udevd is
//! never stopped, so the system always has a loader. A file an administrator put in
//! `/etc/udev/rules.d` (or another program in `/run/udev/rules.d`) wins over ours; such a file
//! is left alone and reported, and udevd keeps loading for its rules, which is harmless: a
//! module is inserted once, and EEXIST is not a failure.
//!
//! Each copy starts with [`MARKER`], which is how `give_back` knows a file as ours.

use std::io::Write;
use std::path::{Path, PathBuf};

/// udev's rules directories, most important first (relative to the root).
pub const UDEV_RULE_DIRS: &[&str] = &[
    "etc/udev/rules.d",
    "run/udev/rules.d",
    "usr/local/lib/udev/rules.d",
    "usr/lib/udev/rules.d",
    "lib/udev/rules.d",
];

/// Where the overrides go.
pub const OVERRIDE_DIR: &str = "run/udev/rules.d";

/// The first line of every file this module writes.
pub const MARKER: &str = "# modaliasd udev-handoff:";

/// A rules file that loads modules, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Overridden by a copy without the loads in `/run/udev/rules.d`.
    Overridden {
        source: PathBuf,
        loads: usize,
        written: PathBuf,
    },
    /// A file we cannot hide (in `/etc`, or someone else's in `/run`) loads modules.
    Kept { path: PathBuf, loads: usize },
}

/// What [`take`], [`give_back`] or [`status`] found and did.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Our overrides removed (by `give_back`, or by `take` for a file that loads no longer).
    pub removed: Vec<PathBuf>,
    /// Whether anything on disk changed, so that udevd should reread its rules.
    pub changed: bool,
}

impl Report {
    /// Whether udev loads no module by its rules, as far as files say.
    pub fn handed_off(&self) -> bool {
        !self
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Kept { .. }))
    }
}

/// An error reading or writing a rules file.
#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error {
        path: path.to_owned(),
        source,
    }
}

/// Writes the overrides that turn udev's module loading off, and removes ours that are no
/// longer needed. `root` is `/` on a running system.
pub fn take(root: &Path) -> Result<Report, Error> {
    survey(root, true)
}

/// What is loading modules in udev's rules now, changing nothing.
pub fn status(root: &Path) -> Result<Report, Error> {
    survey(root, false)
}

/// Removes every override this module wrote.
pub fn give_back(root: &Path) -> Result<Report, Error> {
    let mut report = Report::default();
    for path in rules_files(&root.join(OVERRIDE_DIR))? {
        if is_ours(&path)? {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path)(e)),
            }
            report.removed.push(path);
            report.changed = true;
        }
    }
    Ok(report)
}

fn survey(root: &Path, write: bool) -> Result<Report, Error> {
    let mut report = Report::default();
    let override_dir = root.join(OVERRIDE_DIR);
    // Every basename, with its files in udev's order of importance.
    let mut names: std::collections::BTreeMap<std::ffi::OsString, Vec<PathBuf>> =
        Default::default();
    for dir in UDEV_RULE_DIRS {
        for path in rules_files(&root.join(dir))? {
            let name = path.file_name().unwrap_or_default().to_owned();
            let files = names.entry(name).or_default();
            // /lib is /usr/lib on a merged-/usr system: the same file twice.
            if !files.iter().any(|f| same_file(f, &path)) {
                files.push(path);
            }
        }
    }
    for (name, files) in names {
        let ours = override_dir.join(&name);
        let mut candidates = files.iter();
        let Some(mut effective) = candidates.next() else {
            continue;
        };
        let have_ours = *effective == ours && is_ours(effective)?;
        if have_ours {
            // What udev would read without our copy.
            match candidates.next() {
                Some(next) => effective = next,
                None => {
                    if write {
                        remove_ours(&ours, &mut report)?;
                    }
                    continue;
                }
            }
        }
        let text = read(effective)?;
        let (without, loads) = without_loads(&text);
        if loads == 0 {
            if have_ours && write {
                remove_ours(&ours, &mut report)?;
            }
            continue;
        }
        // Only the directories below /run can be hidden from /run.
        let hideable = UDEV_RULE_DIRS[2..]
            .iter()
            .any(|dir| effective.starts_with(root.join(dir)));
        if !hideable || (!have_ours && !write) {
            report.findings.push(Finding::Kept {
                path: effective.clone(),
                loads,
            });
            continue;
        }
        if write {
            let content = format!(
                "{MARKER} {} without its module loading, which modaliasd does while its \
                 service runs.\n# Removed by 'modaliasd udev-handoff off' (the service's stop).\n{without}",
                effective.display()
            );
            if !have_ours || read(&ours)? != content {
                write_new(&override_dir, &ours, &content)?;
                report.changed = true;
            }
        }
        report.findings.push(Finding::Overridden {
            source: effective.clone(),
            loads,
            written: ours,
        });
    }
    Ok(report)
}

fn remove_ours(path: &Path, report: &mut Report) -> Result<(), Error> {
    std::fs::remove_file(path).map_err(io_error(path))?;
    report.removed.push(path.to_owned());
    report.changed = true;
    Ok(())
}

/// The `*.rules` files of a directory, sorted; none when it does not exist.
fn rules_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "rules") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn read(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn is_ours(path: &Path) -> Result<bool, Error> {
    // A symlink in /run/udev/rules.d is not something we wrote.
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(path)(e)),
    }
    Ok(read(path)?.starts_with(MARKER))
}

/// Writes `content` to `path` in `dir` through a new temporary file renamed over it: mode 0644
/// whatever the umask, never through a symlink, never a half-written file for udevd to read.
fn write_new(dir: &Path, path: &Path, content: &str) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io_error(dir))?;
    let tmp = dir.join(format!(
        ".{}.modaliasd-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    let written = file
        .write_all(content.as_bytes())
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(path)(e));
    }
    Ok(())
}

/// A rules text with its module loads taken out, and how many there were. A rule whose only
/// actions were loads is commented out whole (udev warns about a rule with no action); from a
/// rule with other actions too, only the load items go. Comments, labels, jumps and every other
/// rule are kept as they were.
pub fn without_loads(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut loads = 0;
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(first) = lines.next() {
        // A rule continues on the next line after a trailing backslash.
        let mut physical = vec![first];
        while continues(physical.last().unwrap()) {
            match lines.next() {
                Some(next) => physical.push(next),
                None => break,
            }
        }
        let logical: String = physical
            .iter()
            .map(|l| {
                let l = l.trim_end_matches(['\n', '\r']);
                l.strip_suffix('\\').unwrap_or(l)
            })
            .collect();
        let trimmed = logical.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            physical.iter().for_each(|l| out.push_str(l));
            continue;
        }
        let items = split_items(&logical);
        let is_load: Vec<bool> = items.iter().map(|i| item_loads(i)).collect();
        let n = is_load.iter().filter(|l| **l).count();
        if n == 0 {
            physical.iter().for_each(|l| out.push_str(l));
            continue;
        }
        loads += n;
        let other_actions = items
            .iter()
            .zip(&is_load)
            .any(|(i, load)| !load && item_is_action(i));
        if other_actions {
            let kept: Vec<&str> = items
                .iter()
                .zip(&is_load)
                .filter(|(_, load)| !**load)
                .map(|(i, _)| i.trim())
                .collect();
            out.push_str(&kept.join(", "));
            out.push('\n');
        } else {
            for l in &physical {
                out.push_str("# (loads a module) ");
                out.push_str(l);
            }
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    (out, loads)
}

fn continues(line: &str) -> bool {
    line.trim_end_matches(['\n', '\r']).ends_with('\\')
}

/// A rule's comma-separated items, split outside double quotes.
fn split_items(rule: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in rule.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&rule[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&rule[start..]);
    items.retain(|i| !i.trim().is_empty());
    items
}

/// An item's key, operator and unquoted value.
fn parse_item(item: &str) -> Option<(&str, &str, &str)> {
    let item = item.trim();
    let op_at = item.find(['=', '!', '+', '-', ':'])?;
    let key = item[..op_at].trim();
    let rest = &item[op_at..];
    let op_len = ["==", "!=", "+=", "-=", ":=", "="]
        .iter()
        .find(|op| rest.starts_with(**op))?
        .len();
    let value = rest[op_len..].trim();
    // udev allows a one-letter prefix before the quote (e"...").
    let value = value.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let value = value.strip_prefix('"')?.strip_suffix('"')?;
    Some((key, &rest[..op_len], value))
}

fn item_is_action(item: &str) -> bool {
    match parse_item(item) {
        Some((key, op, _)) => op != "==" && op != "!=" && key != "LABEL",
        None => true,
    }
}

/// Whether an item loads modules: the `kmod load` builtin, or a program run that is modprobe.
fn item_loads(item: &str) -> bool {
    let Some((key, op, value)) = parse_item(item) else {
        return false;
    };
    if op == "==" || op == "!=" {
        return false;
    }
    let mut words = value.split_ascii_whitespace();
    match key {
        "RUN{builtin}" => words.next() == Some("kmod") && words.next() == Some("load"),
        "RUN" | "RUN{program}" => words
            .next()
            .is_some_and(|program| program.rsplit('/').next() == Some("modprobe")),
        _ => false,
    }
}

/// Asks a running udevd to reread its rules (`udevadm control --reload`), when `root` is the
/// running system's and udevd's control socket exists. udevd rereads changed rules by itself only
/// every few seconds, and the events of a coldplug trigger come sooner than that.
pub fn reload_udevd(root: &Path) -> Result<bool, String> {
    if root != Path::new("/") || !Path::new("/run/udev/control").exists() {
        return Ok(false);
    }
    let udevadm = ["/usr/bin/udevadm", "/bin/udevadm", "/sbin/udevadm"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("udevd's control socket exists but no udevadm was found")?;
    let status = std::process::Command::new(udevadm)
        .args(["control", "--timeout=30", "--reload"])
        .status()
        .map_err(|e| format!("{}: {e}", udevadm.display()))?;
    if status.success() {
        Ok(true)
    } else {
        Err(format!("{} control --reload: {status}", udevadm.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIVERS: &str = "\
# do not edit this file, it will be overwritten on update

ACTION!=\"add\", GOTO=\"drivers_end\"

ENV{MODALIAS}==\"?*\", RUN{builtin}+=\"kmod load\"
SUBSYSTEM==\"memstick\", RUN{builtin}+=\"kmod load ms_block mspro_block\"

LABEL=\"drivers_end\"
";

    const COMPAT: &str = "\
# needed for old tape drivers
SUBSYSTEM==\"scsi\", ENV{DEVTYPE}==\"scsi_device\", TEST!=\"[module/sg]\", RUN{builtin}+=\"kmod load sg\"

# device permissions
KERNEL==\"nvram\", GROUP=\"kmem\", MODE=\"0640\"
";

    #[test]
    fn loads_are_commented_out_and_everything_else_is_kept() {
        let (out, n) = without_loads(DRIVERS);
        assert_eq!(n, 2);
        assert!(out.contains("ACTION!=\"add\", GOTO=\"drivers_end\"\n"));
        assert!(out.contains("LABEL=\"drivers_end\"\n"));
        assert!(
            out.contains("# (loads a module) ENV{MODALIAS}==\"?*\", RUN{builtin}+=\"kmod load\"\n")
        );
        assert_eq!(out.lines().count(), DRIVERS.lines().count());
        let (out, n) = without_loads(COMPAT);
        assert_eq!(n, 1);
        assert!(out.contains("KERNEL==\"nvram\", GROUP=\"kmem\", MODE=\"0640\"\n"));
        assert!(out.contains("# (loads a module) SUBSYSTEM==\"scsi\""));
    }

    #[test]
    fn a_load_beside_other_actions_goes_alone() {
        let rule =
            "KERNEL==\"x\", RUN+=\"/sbin/modprobe -b sg\", MODE=\"0600\", \\\n  TAG+=\"a,b\"\n";
        let (out, n) = without_loads(rule);
        assert_eq!(n, 1);
        assert_eq!(out, "KERNEL==\"x\", MODE=\"0600\", TAG+=\"a,b\"\n");
        // A continued rule made only of a match and a load is commented out on every line.
        let (out, n) = without_loads("KERNEL==\"x\", \\\n RUN{builtin}+=\"kmod load y\"\n");
        assert_eq!(n, 1);
        assert!(
            out.lines().all(|l| l.starts_with("# (loads a module)")),
            "{out}"
        );
        // Matches on RUN-like text and other builtins are not loads.
        let (_, n) = without_loads("ENV{X}==\"kmod load\", RUN{builtin}+=\"path_id\"\n");
        assert_eq!(n, 0);
    }

    fn root_with(files: &[(&str, &str)]) -> crate::test_support::TempRoot {
        let root = crate::test_support::TempRoot::new("handoff");
        for (path, text) in files {
            root.write(path, text);
        }
        root
    }

    #[test]
    fn take_then_give_back_restores_the_rules_directory() {
        let root = root_with(&[
            ("usr/lib/udev/rules.d/80-drivers.rules", DRIVERS),
            ("usr/lib/udev/rules.d/80-debian-compat.rules", COMPAT),
            (
                "usr/lib/udev/rules.d/60-block.rules",
                "KERNEL==\"sd*\", MODE=\"0660\"\n",
            ),
            (
                "run/udev/rules.d/99-other.rules",
                "KERNEL==\"x\", MODE=\"0600\"\n",
            ),
        ]);
        let report = take(root.path()).unwrap();
        assert!(report.changed && report.handed_off());
        assert_eq!(report.findings.len(), 2);
        let written =
            std::fs::read_to_string(root.path().join("run/udev/rules.d/80-drivers.rules")).unwrap();
        assert!(written.starts_with(MARKER));
        assert_eq!(without_loads(&written).1, 0);
        assert!(!root.path().join("run/udev/rules.d/60-block.rules").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.path().join("run/udev/rules.d/80-drivers.rules"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        // Taking again changes nothing; status sees the handoff.
        assert!(!take(root.path()).unwrap().changed);
        assert!(status(root.path()).unwrap().handed_off());
        let back = give_back(root.path()).unwrap();
        assert_eq!(back.removed.len(), 2);
        let left: Vec<_> = std::fs::read_dir(root.path().join("run/udev/rules.d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["99-other.rules"]);
        assert!(!status(root.path()).unwrap().handed_off());
    }

    #[test]
    fn files_we_cannot_hide_are_reported_and_left_alone() {
        let root = root_with(&[
            ("usr/lib/udev/rules.d/80-drivers.rules", DRIVERS),
            ("etc/udev/rules.d/80-drivers.rules", DRIVERS),
            ("run/udev/rules.d/70-local.rules", COMPAT),
        ]);
        let report = take(root.path()).unwrap();
        assert!(!report.handed_off());
        assert!(!report.changed);
        assert_eq!(
            std::fs::read_to_string(root.path().join("run/udev/rules.d/70-local.rules")).unwrap(),
            COMPAT
        );
        assert!(give_back(root.path()).unwrap().removed.is_empty());
    }

    #[test]
    fn an_override_whose_source_stopped_loading_is_removed() {
        let root = root_with(&[("usr/lib/udev/rules.d/80-drivers.rules", DRIVERS)]);
        take(root.path()).unwrap();
        root.write("usr/lib/udev/rules.d/80-drivers.rules", "# nothing\n");
        let report = take(root.path()).unwrap();
        assert_eq!(report.removed.len(), 1);
        assert!(
            !root
                .path()
                .join("run/udev/rules.d/80-drivers.rules")
                .exists()
        );
        // And one whose source is gone altogether.
        take(root.path()).unwrap();
        root.write("usr/lib/udev/rules.d/80-drivers.rules", DRIVERS);
        take(root.path()).unwrap();
        std::fs::remove_file(root.path().join("usr/lib/udev/rules.d/80-drivers.rules")).unwrap();
        assert_eq!(take(root.path()).unwrap().removed.len(), 1);
    }

    #[test]
    fn a_symlink_in_the_override_directory_is_never_written_through() {
        let root = root_with(&[
            ("usr/lib/udev/rules.d/80-drivers.rules", DRIVERS),
            ("secret", DRIVERS),
        ]);
        std::fs::create_dir_all(root.path().join("run/udev/rules.d")).unwrap();
        std::os::unix::fs::symlink(
            root.path().join("secret"),
            root.path().join("run/udev/rules.d/80-drivers.rules"),
        )
        .unwrap();
        // The symlink is someone else's override: kept, reported, not followed.
        let report = take(root.path()).unwrap();
        assert!(!report.handed_off());
        assert_eq!(
            std::fs::read_to_string(root.path().join("secret")).unwrap(),
            DRIVERS
        );
        assert!(give_back(root.path()).unwrap().removed.is_empty());
    }
}
