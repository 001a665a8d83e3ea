//! Why the kernel refused a module, as an expert would work it out: from the errno, the module
//! file itself (vermagic, `__versions`, signature, undefined symbols, declared parameters), the
//! running kernel's state (signature enforcement, lockdown, keyrings, exported symbols) and
//! the kernel's own message in `/dev/kmsg`.
//!
//! Everything about the running system is read below a root directory ([`System`]), so tests
//! give it a fake `proc`, `sys` and `dev/kmsg`.

use super::params;
use crate::loader::kernel::{Errno, open_kernel_log, read_kernel_log};
use crate::modinfo::elf::Elf;
use crate::modinfo::{ModuleInfo, read_module_file};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The running kernel as seen below a root directory.
pub struct System {
    pub root: PathBuf,
}

impl System {
    pub fn new(root: &Path) -> System {
        System {
            root: root.to_owned(),
        }
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel)).ok()
    }

    /// `uname -r` of the running kernel.
    pub fn release(&self) -> Option<String> {
        Some(self.read("proc/sys/kernel/osrelease")?.trim().to_owned())
    }

    /// `module.sig_enforce`: only signed modules with a known key load.
    pub fn sig_enforce(&self) -> Option<bool> {
        Some(
            self.read("sys/module/module/parameters/sig_enforce")?
                .trim()
                == "Y",
        )
    }

    /// The lockdown mode in force (`none`, `integrity`, `confidentiality`).
    pub fn lockdown(&self) -> Option<String> {
        let text = self.read("sys/kernel/security/lockdown")?;
        let start = text.find('[')?;
        let end = text[start..].find(']')?;
        Some(text[start + 1..start + end].to_owned())
    }

    /// `kernel.modules_disabled`: no module loads until reboot.
    pub fn modules_disabled(&self) -> bool {
        self.read("proc/sys/kernel/modules_disabled")
            .is_some_and(|v| v.trim() == "1")
    }

    /// `/proc/keys` as (type, description) pairs, `None` when it cannot be read. The type is
    /// printed cut to nine characters: asymmetric keys show as "asymmetri".
    fn proc_keys(&self) -> Option<Vec<(String, String)>> {
        let text = self.read("proc/keys")?;
        Some(
            text.lines()
                .filter_map(|line| {
                    // id flags usage expiry perm uid gid type description
                    let mut rest = line;
                    for _ in 0..7 {
                        rest = rest.trim_start().split_once(char::is_whitespace)?.1;
                    }
                    let (kind, description) = rest.trim_start().split_once(char::is_whitespace)?;
                    Some((kind.to_owned(), description.trim().to_owned()))
                })
                .collect(),
        )
    }

    /// The asymmetric keys `/proc/keys` shows (their descriptions: "CN: key id: ..."), `None`
    /// when it cannot be read.
    pub fn keys(&self) -> Option<Vec<String>> {
        Some(
            self.proc_keys()?
                .into_iter()
                .filter(|(kind, _)| kind.len() >= 9 && "asymmetric".starts_with(kind.as_str()))
                .map(|(_, d)| d)
                .collect(),
        )
    }

    /// The kernel's own keyrings (`.builtin_trusted_keys: 1`, `.platform: 3`, `.machine: empty`).
    pub fn keyrings(&self) -> Vec<String> {
        self.proc_keys()
            .unwrap_or_default()
            .into_iter()
            .filter(|(kind, d)| kind == "keyring" && d.starts_with('.'))
            .map(|(_, d)| d)
            .collect()
    }

    /// Every symbol name in `/proc/kallsyms` (the kernel's and loaded modules').
    pub fn kallsyms(&self) -> Option<HashSet<String>> {
        let text = self.read("proc/kallsyms")?;
        Some(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2))
                .map(str::to_owned)
                .collect(),
        )
    }

    /// The kernel log's messages (`/dev/kmsg`, or a plain file of its records in a test).
    pub fn kernel_messages(&self) -> Vec<String> {
        match open_kernel_log(&self.root.join("dev/kmsg")) {
            Some(mut file) => read_kernel_log(&mut file),
            None => Vec::new(),
        }
    }
}

/// What went wrong with one module, for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub module: String,
    /// One line: the cause.
    pub cause: String,
    /// The evidence.
    pub details: Vec<String>,
    /// What the kernel itself logged about it.
    pub kernel_said: Vec<String>,
    pub fix: Option<String>,
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.module, self.cause)?;
        for d in &self.details {
            write!(f, "\n  {d}")?;
        }
        for k in &self.kernel_said {
            write!(f, "\n  kernel: {k}")?;
        }
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

/// What the diagnosis may consult besides the module itself.
pub struct Context<'a> {
    pub system: System,
    /// The module directory the module comes from (`ROOT/lib/modules/KVER`).
    pub module_dir: &'a Path,
    /// The kernel's messages logged while the insertion was tried, when the loader caught
    /// them: the whole log also holds earlier attempts.
    pub logged: Option<Vec<String>>,
    /// `modules.symbols` of that directory, read when first needed.
    symbols: std::sync::OnceLock<HashMap<String, String>>,
    /// The kernel log, read once per diagnosis when `logged` does not have it.
    log: std::sync::OnceLock<Vec<String>>,
}

/// A module file read for diagnosis.
struct Module {
    path: PathBuf,
    image: Vec<u8>,
    info: ModuleInfo,
}

impl Module {
    fn read(path: &Path) -> Result<Module, String> {
        let image = read_module_file(path)?;
        let info = ModuleInfo::from_image(&image)?;
        Ok(Module {
            path: path.to_owned(),
            image,
            info,
        })
    }

    fn elf(&self) -> Option<Elf<'_>> {
        Elf::parse(&self.image).ok()
    }

    fn field(&self, key: &str) -> Option<String> {
        self.info
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The name the kernel knows it by (`.modinfo` name=, else from the file name).
    fn kernel_name(&self) -> String {
        self.field("name")
            .unwrap_or_else(|| crate::names::modname_from_path(&self.path.to_string_lossy()))
    }
}

impl<'a> Context<'a> {
    pub fn new(root: &Path, module_dir: &'a Path) -> Context<'a> {
        Context {
            system: System::new(root),
            module_dir,
            logged: None,
            symbols: std::sync::OnceLock::new(),
            log: std::sync::OnceLock::new(),
        }
    }

    /// The module exporting `symbol`, from `modules.symbols` (lines `alias symbol:NAME MODULE`).
    fn exporter(&self, symbol: &str) -> Option<String> {
        self.symbols
            .get_or_init(|| {
                let text = std::fs::read_to_string(self.module_dir.join("modules.symbols"))
                    .unwrap_or_default();
                text.lines()
                    .filter_map(|l| {
                        let mut w = l.split_whitespace();
                        (w.next()? == "alias").then_some(())?;
                        let sym = w.next()?.strip_prefix("symbol:")?;
                        Some((sym.to_owned(), w.next()?.to_owned()))
                    })
                    .collect()
            })
            .get(symbol)
            .cloned()
    }

    /// The running kernel's module directory: where its own modules (the reference for
    /// vermagic and CRCs) are.
    fn running_dir(&self) -> PathBuf {
        match self.system.release() {
            Some(release) => self.system.root.join("lib/modules").join(release),
            None => self.module_dir.to_owned(),
        }
    }

    /// Module files of the running kernel other than `except`: first those that depend on one
    /// of `related` (module names: they import the same symbols), then the rest in
    /// modules.dep order.
    fn reference_modules(&self, except: &Path, related: &[String]) -> Vec<PathBuf> {
        let dir = self.running_dir();
        let Ok(dep) = std::fs::read_to_string(dir.join("modules.dep")) else {
            return Vec::new();
        };
        let mut lines: Vec<(bool, PathBuf)> = dep
            .lines()
            .filter_map(|l| {
                let (path, deps) = l.split_once(':')?;
                let shares = deps
                    .split_whitespace()
                    .any(|d| related.contains(&crate::names::modname_from_path(d)));
                Some((!shares, dir.join(path)))
            })
            .filter(|(_, p)| p != except)
            .collect();
        lines.sort_by_key(|(later, _)| *later);
        lines.into_iter().map(|(_, p)| p).collect()
    }

    /// The running kernel's vermagic, as its own modules carry it.
    fn kernel_vermagic(&self, except: &Path) -> Option<(String, PathBuf)> {
        self.reference_modules(except, &[])
            .into_iter()
            .take(20)
            .find_map(|p| {
                let m = Module::read(&p).ok()?;
                Some((m.field("vermagic")?, p))
            })
    }

    /// The CRCs the running kernel has for `needed` symbols: from Module.symvers when the
    /// kernel's build directory is installed, else from the `__versions` tables of its own
    /// modules (which were built against exactly those CRCs).
    /// Reading every module of a tree takes seconds: the search stops after `SCAN_BUDGET`
    /// modules (the related ones first), so a symbol only this module imports may stay unknown.
    fn kernel_crcs(
        &self,
        versions: &[(u32, String)],
        except: &Path,
        related: &[String],
    ) -> (HashMap<String, u32>, String) {
        const SCAN_BUDGET: usize = 200;
        let needed: Vec<String> = versions.iter().map(|(_, n)| n.clone()).collect();
        let dir = self.running_dir();
        let symvers = dir.join("build/Module.symvers");
        let mut found = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&symvers) {
            for line in text.lines() {
                let mut f = line.split('\t');
                let (Some(crc), Some(name)) = (f.next(), f.next()) else {
                    continue;
                };
                if let Ok(crc) = u32::from_str_radix(crc.trim_start_matches("0x"), 16) {
                    found.insert(name.to_owned(), crc);
                }
            }
            return (found, symvers.display().to_string());
        }
        let wanted: HashSet<&String> = needed.iter().collect();
        for (scanned, path) in self
            .reference_modules(except, related)
            .into_iter()
            .enumerate()
        {
            if wanted.iter().all(|w| found.contains_key(*w)) {
                break;
            }
            if scanned >= SCAN_BUDGET {
                break;
            }
            let Ok(m) = Module::read(&path) else { continue };
            let Some(elf) = m.elf() else { continue };
            for (crc, name) in elf.versions() {
                if wanted.contains(&name) {
                    found.entry(name).or_insert(crc);
                }
            }
        }
        (
            found,
            format!("the __versions tables of {}'s own modules", dir.display()),
        )
    }

    /// The kernel's messages about `name` (prefixed "name: "), and its signature messages.
    fn kernel_said(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}: ");
        let module_prefix = format!("module {name}: ");
        let messages = match &self.logged {
            Some(logged) => logged,
            None => self.log.get_or_init(|| self.system.kernel_messages()),
        };
        let mut said: Vec<String> = messages
            .iter()
            .filter(|m| {
                m.starts_with(&prefix)
                    || m.starts_with(&module_prefix)
                    || m.starts_with("Loading of ")
                    || m.starts_with("Lockdown: ")
            })
            .cloned()
            .collect();
        // The latest few: the log may hold earlier attempts too.
        let keep = said.len().saturating_sub(4);
        said.drain(..keep);
        said
    }
}

fn diagnosis(module: &str, cause: impl Into<String>) -> Diagnosis {
    Diagnosis {
        module: module.to_owned(),
        cause: cause.into(),
        details: Vec::new(),
        kernel_said: Vec::new(),
        fix: None,
    }
}

const SIGN_FIX: &str = "sign it with a key the kernel trusts: \
/usr/src/linux-headers-$(uname -r)/scripts/sign-file sha256 MOK.priv MOK.der MODULE.ko, after \
enrolling that key with 'mokutil --import MOK.der' (confirmed in MokManager at the next boot). \
A key built into one kernel image (such as a kernel's 'Build time autogenerated kernel key') \
is gone after the next kernel update, so out-of-tree modules need your own enrolled key";

/// Compares the module's vermagic with the running kernel's.
fn check_vermagic(ctx: &Context, m: &Module, module: &str) -> Option<Diagnosis> {
    let theirs = m.field("vermagic")?;
    let (ours, reference) = ctx.kernel_vermagic(&m.path)?;
    if theirs == ours {
        return None;
    }
    let (t_release, t_flags) = theirs.split_once(' ').unwrap_or((&theirs, ""));
    let (o_release, o_flags) = ours.split_once(' ').unwrap_or((&ours, ""));
    let mut d = diagnosis(
        module,
        if t_release != o_release {
            format!("built for kernel {t_release}, but the running kernel is {o_release}")
        } else {
            "built with a different kernel configuration (vermagic flags differ)".to_owned()
        },
    );
    d.details.push(format!("module vermagic: '{theirs}'"));
    d.details.push(format!(
        "kernel vermagic: '{ours}' (as in {})",
        reference.display()
    ));
    let t: HashSet<&str> = t_flags.split_whitespace().collect();
    let o: HashSet<&str> = o_flags.split_whitespace().collect();
    let mut missing: Vec<&&str> = o.difference(&t).collect();
    let mut extra: Vec<&&str> = t.difference(&o).collect();
    missing.sort();
    extra.sort();
    if !missing.is_empty() || !extra.is_empty() {
        d.details.push(format!(
            "flags only the kernel has: {missing:?}; only the module has: {extra:?}"
        ));
    }
    d.fix = Some(format!(
        "use the module built for {o_release} (install its package, or rebuild it with \
         DKMS/make against /lib/modules/{o_release}/build); 'modprobe --force-vermagic' only \
         hides the mismatch"
    ));
    Some(d)
}

/// Compares the module's `__versions` CRCs with the running kernel's.
fn check_modversions(ctx: &Context, m: &Module, module: &str) -> Option<Diagnosis> {
    let versions = m.elf()?.versions();
    if versions.is_empty() {
        return None;
    }
    let related: Vec<String> = m
        .field("depends")
        .map(|d| {
            d.split(',')
                .filter(|s| !s.is_empty())
                .map(crate::names::normalize_modname)
                .collect()
        })
        .unwrap_or_default();
    let (kernel, source) = ctx.kernel_crcs(&versions, &m.path, &related);
    let mismatch = versions.iter().find_map(|(crc, name)| {
        let expected = *kernel.get(name)?;
        (expected != *crc).then(|| (*crc, name.clone(), Some(expected)))
    });
    // The kernel names the symbol itself when it refused the module for it.
    let (crc, name, expected) = mismatch.or_else(|| {
        let said = ctx.kernel_said(&m.kernel_name());
        let symbol = said
            .iter()
            .find_map(|l| l.split("disagrees about version of symbol ").nth(1))?
            .trim();
        let (crc, _) = versions.iter().find(|(_, n)| n == symbol)?;
        Some((*crc, symbol.to_owned(), None))
    })?;
    let through = match ctx.exporter(&name) {
        Some(owner) => format!("exported by module {owner}"),
        None => "exported by the kernel itself (vmlinux)".to_owned(),
    };
    let mut d = diagnosis(
        module,
        format!("modversions mismatch: symbol {name} has a different CRC in the running kernel"),
    );
    d.details.push(match expected {
        Some(expected) => format!(
            "{name}: the module expects 0x{crc:08x}, the kernel has 0x{expected:08x} ({through}); \
             CRCs from {source}"
        ),
        None => format!(
            "{name}: the module expects 0x{crc:08x}, which the kernel says it does not have \
             ({through})"
        ),
    });
    d.fix = Some(
        "rebuild the module against the running kernel's headers (its Module.symvers), or \
         install the module package built for this kernel"
            .into(),
    );
    Some(d)
}

fn check_signature(ctx: &Context, m: &Module, module: &str, errno: Errno) -> Diagnosis {
    let enforce = ctx.system.sig_enforce();
    let lockdown = ctx.system.lockdown();
    let state = format!(
        "signature enforcement: sig_enforce={}, lockdown={}",
        enforce.map_or("unknown", |e| if e { "Y" } else { "N" }),
        lockdown.as_deref().unwrap_or("unknown")
    );
    let keys = ctx.system.keys();
    let mut d = match &m.info.signature {
        None => {
            let mut d = diagnosis(
                module,
                "the module is not signed, and this kernel loads only signed modules",
            );
            d.details.push(state);
            d
        }
        Some(sig) => {
            let signer = String::from_utf8_lossy(&sig.signer).into_owned();
            let key_id = crate::modinfo::hex(&sig.key_id)
                .map(|h| String::from_utf8_lossy(&h).replace("\n\t\t", ""))
                .unwrap_or_default();
            // An empty list means the keys are hidden from us, not absent.
            let known = keys
                .as_ref()
                .filter(|keys| !keys.is_empty())
                .map(|keys| keys.iter().any(|k| k.starts_with(&format!("{signer}:"))));
            let enforced =
                enforce == Some(true) || lockdown.as_deref().is_some_and(|l| l != "none");
            let mismatch = "the signature does not match the module: it was changed after signing \
                            (edited, stripped of debug info, recompressed) or the signature is damaged";
            let cause = match (errno.0, known) {
                (libc::EBADMSG, _) => mismatch.to_owned(),
                // Without enforcement an unknown key is no error: the check itself failed.
                (libc::EKEYREJECTED, _) if enforce == Some(false) && !enforced => {
                    mismatch.to_owned()
                }
                (libc::EKEYREJECTED, Some(true)) => mismatch.to_owned(),
                (_, Some(false)) | (libc::ENOKEY, _) => {
                    format!("signed by '{signer}', a key none of the kernel's keyrings holds")
                }
                _ => format!(
                    "the kernel rejected the signature by '{signer}': its key is not in the \
                     kernel's keyrings, or the signature does not match the module"
                ),
            };
            let mut d = diagnosis(module, cause);
            d.details.push(format!(
                "signed by '{signer}', key serial {key_id}, {} ({})",
                sig.hash_algo, sig.id_type
            ));
            d.details.push(state);
            d
        }
    };
    let keyrings = ctx.system.keyrings();
    if !keyrings.is_empty() {
        d.details.push(format!(
            "kernel keyrings (/proc/keys): {}",
            keyrings.join(", ")
        ));
    }
    match keys {
        Some(keys) if !keys.is_empty() => d.details.push(format!(
            "keys the kernel has (/proc/keys): {}",
            keys.join("; ")
        )),
        Some(_) => d
            .details
            .push("/proc/keys shows no asymmetric key to this user".into()),
        None => {}
    }
    d.fix = Some(if d.cause.starts_with("the signature does not match") {
        "reinstall the module file from its package ('dpkg -S FILE' names it) or rebuild it; \
         a module changed on purpose must be signed again: /usr/src/linux-headers-$(uname -r)/\
         scripts/sign-file sha256 KEY.priv KEY.der MODULE.ko"
            .into()
    } else {
        SIGN_FIX.into()
    });
    d
}

/// The module's undefined symbols the kernel does not know, with who exports them.
fn check_symbols(ctx: &Context, m: &Module, module: &str) -> Option<Diagnosis> {
    let name = m.kernel_name();
    let from_log: Vec<String> = ctx
        .kernel_said(&name)
        .iter()
        .filter_map(|l| l.split("Unknown symbol ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let unknown = if !from_log.is_empty() {
        from_log
    } else {
        let known = ctx.system.kallsyms()?;
        m.elf()?
            .undefined_symbols()
            .into_iter()
            .filter(|s| !known.contains(s))
            .collect()
    };
    if unknown.is_empty() {
        return None;
    }
    let mut d = diagnosis(
        module,
        format!("{} symbol(s) it needs are not in the kernel", unknown.len()),
    );
    for s in unknown.iter().take(10) {
        d.details.push(match ctx.exporter(s) {
            Some(owner) => format!("{s}: exported by module {owner}, which is not loaded"),
            None => format!("{s}: no module in {} exports it", ctx.module_dir.display()),
        });
    }
    d.fix = Some(
        "load the exporting modules first (modprobe does, from modules.dep: run depmod if it \
         is stale), or rebuild the module for this kernel"
            .into(),
    );
    Some(d)
}

/// The options checked against the parameters the module declares.
pub fn check_options(info: &ModuleInfo, module: &str, options: &str) -> Vec<Diagnosis> {
    let declared: HashMap<String, Option<String>> = info
        .params()
        .into_iter()
        .map(|p| {
            (
                String::from_utf8_lossy(&p.name).replace('-', "_"),
                p.kind.map(|k| String::from_utf8_lossy(&k).into_owned()),
            )
        })
        .collect();
    let mut found = Vec::new();
    for token in crate::modprobe::config::split_cmdline(options) {
        let (name, value) = match token.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.trim_matches('"').to_owned())),
            None => (token.clone(), None),
        };
        let key = name.replace('-', "_");
        match declared.get(&key) {
            None => {
                let mut d = diagnosis(
                    module,
                    format!("option '{name}' names no parameter of the module"),
                );
                let mut names: Vec<&String> = declared.keys().collect();
                names.sort();
                d.details.push(if names.is_empty() {
                    "the module declares no parameters".into()
                } else {
                    format!(
                        "its parameters: {}",
                        names
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
                d.details
                    .push("the kernel ignores it ('unknown parameter ignored')".into());
                d.fix = Some(format!(
                    "remove '{token}' or correct the name (modinfo -p {module})"
                ));
                found.push(d);
            }
            Some(Some(kind)) => {
                if let Err(problem) = params::check(kind, value.as_deref()) {
                    let mut d = diagnosis(module, format!("option {token}: {problem}"));
                    d.details.push(format!(
                        "parameter {name} is declared as {kind}; the kernel refuses the load ({})",
                        match problem {
                            params::Problem::OutOfRange(_) => "ERANGE",
                            params::Problem::Invalid(_) => "EINVAL",
                        }
                    ));
                    d.fix = Some(format!("give {name} a value that fits {kind}"));
                    found.push(d);
                }
            }
            Some(None) => {}
        }
    }
    found
}

/// Why inserting `path` (module `module`, with `options`) failed with `errno`.
pub fn diagnose(
    ctx: &Context,
    module: &str,
    path: Option<&Path>,
    options: &str,
    errno: Errno,
) -> Diagnosis {
    let m = path.map(Module::read);
    let m = match m {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            let mut d = diagnosis(module, format!("the module file cannot be read: {e}"));
            d.kernel_said = ctx.kernel_said(module);
            return d;
        }
        None => {
            let mut d = diagnosis(module, format!("the kernel refused it: {errno}"));
            d.kernel_said = ctx.kernel_said(module);
            return d;
        }
    };
    let name = m.kernel_name();
    let mut d = match errno.0 {
        libc::ENOEXEC => {
            let arch = m
                .elf()
                .filter(|e| e.machine != 62 && cfg!(target_arch = "x86_64"));
            if let Some(elf) = arch {
                let mut d = diagnosis(module, "the module is for another processor architecture");
                d.details
                    .push(format!("ELF machine {} (x86-64 is 62)", elf.machine));
                d
            } else {
                check_vermagic(ctx, &m, module)
                    .or_else(|| check_modversions(ctx, &m, module))
                    .unwrap_or_else(|| {
                        diagnosis(
                            module,
                            "the kernel refused the module's format (not vermagic or modversions: \
                             see its message)",
                        )
                    })
            }
        }
        libc::ENOKEY | libc::EKEYREJECTED | libc::EKEYEXPIRED | libc::EBADMSG => {
            check_signature(ctx, &m, module, errno)
        }
        libc::EPERM => {
            if ctx.system.modules_disabled() {
                let mut d = diagnosis(
                    module,
                    "module loading is disabled (kernel.modules_disabled=1) until the next boot",
                );
                d.fix = Some("reboot; then load it before anything sets modules_disabled".into());
                d
            } else if ctx.system.lockdown().is_some_and(|l| l != "none") {
                check_signature(ctx, &m, module, errno)
            } else {
                let mut d = diagnosis(
                    module,
                    "not permitted: loading modules needs root (CAP_SYS_MODULE)",
                );
                d.fix = Some("run as root".into());
                d
            }
        }
        // A symbol whose CRC disagrees is reported as unknown with EINVAL (6.x) or ENOENT,
        // so both look at options, CRCs and symbols.
        libc::ENOENT | libc::EINVAL | libc::ERANGE | libc::ENOSPC => {
            let bad_option = check_options(&m.info, module, options)
                .into_iter()
                .find(|d| !d.cause.contains("names no parameter"));
            // Last, an option naming no parameter: older kernels refused those with ENOENT
            // (modprobe's "or unknown parameter"); current ones ignore them.
            bad_option
                .or_else(|| check_modversions(ctx, &m, module))
                .or_else(|| check_symbols(ctx, &m, module))
                .or_else(|| check_options(&m.info, module, options).into_iter().next())
                .unwrap_or_else(|| {
                    diagnosis(
                        module,
                        format!("the kernel refused it: {errno} (see its message)"),
                    )
                })
        }
        libc::ENOSYS => diagnosis(
            module,
            "this kernel was built without loadable module support",
        ),
        _ => diagnosis(module, format!("the kernel refused it: {errno}")),
    };
    d.kernel_said = ctx.kernel_said(&name);
    d
}

/// What would go wrong inserting `path` with `options` into the running kernel, found without
/// trying: version magic, modversions, signature against enforcement, options.
pub fn preflight(ctx: &Context, module: &str, path: &Path, options: &str) -> Vec<Diagnosis> {
    let m = match Module::read(path) {
        Ok(m) => m,
        Err(e) => {
            return vec![diagnosis(
                module,
                format!("the module file cannot be read: {e}"),
            )];
        }
    };
    let mut found = Vec::new();
    found.extend(check_vermagic(ctx, &m, module));
    found.extend(check_modversions(ctx, &m, module));
    let enforced = ctx.system.sig_enforce() == Some(true)
        || ctx.system.lockdown().is_some_and(|l| l != "none");
    if let Some(sig) = &m.info.signature {
        let signer = String::from_utf8_lossy(&sig.signer).into_owned();
        if let Some(keys) = ctx.system.keys() {
            if !keys.iter().any(|k| k.starts_with(&format!("{signer}:"))) {
                let errno = Errno(if enforced {
                    libc::EKEYREJECTED
                } else {
                    libc::ENOKEY
                });
                let mut d = check_signature(ctx, &m, module, errno);
                if !enforced {
                    d.cause
                        .push_str(" (not enforced: it would load and taint the kernel 'E')");
                }
                found.push(d);
            }
        }
    } else if enforced {
        found.push(check_signature(ctx, &m, module, Errno(libc::EKEYREJECTED)));
    }
    found.extend(check_options(&m.info, module, options));
    found
}
