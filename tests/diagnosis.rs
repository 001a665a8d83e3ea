//! The failed-load diagnosis on real Debian modules, against a fake running system: a root
//! whose proc, sys and dev/kmsg say what the test wants (the release, signature enforcement,
//! keyrings, exported symbols, the kernel's messages) and whose lib/modules/RELEASE is the real
//! 6.12 tree. The real failures are in tests/vm (a kernel refusing these same files).

mod support;

use modaliasd::diagnostics::failure::{Context, Diagnosis, diagnose, preflight};
use modaliasd::loader::kernel::Errno;
use modaliasd::modinfo::{elf::Elf, read_module_file};
use std::path::{Path, PathBuf};
use support::{KernelTree, TempDir, kernel_tree, module_file, strip_signature};

struct FakeSystem {
    tmp: TempDir,
    tree: KernelTree,
}

impl FakeSystem {
    fn new() -> FakeSystem {
        let tree = kernel_tree("6.12");
        let tmp = TempDir::new("diagnosis");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("lib/modules")).unwrap();
        std::os::unix::fs::symlink(tree.module_dir(), root.join("lib/modules").join(&tree.kver))
            .unwrap();
        let f = FakeSystem { tmp, tree };
        f.write("proc/sys/kernel/osrelease", &format!("{}\n", f.tree.kver));
        f.write("sys/module/module/parameters/sig_enforce", "N\n");
        f.write(
            "sys/kernel/security/lockdown",
            "[none] integrity confidentiality\n",
        );
        f
    }
    fn root(&self) -> &Path {
        self.tmp.path()
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn module_dir(&self) -> PathBuf {
        self.root().join("lib/modules").join(&self.tree.kver)
    }
    fn module_path(&self, tree: &KernelTree, name: &str) -> PathBuf {
        module_file(tree, name)
    }
    fn diagnose(&self, module: &str, path: &Path, options: &str, errno: i32) -> Diagnosis {
        let dir = self.module_dir();
        let ctx = Context::new(self.root(), &dir);
        diagnose(&ctx, module, Some(path), options, Errno(errno))
    }
    /// A copy of module `name`'s image, edited, written as a plain .ko.
    fn edited(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut image = read_module_file(&self.module_path(&self.tree, name)).unwrap();
        edit(&mut image);
        let out = self.root().join(format!("{name}-edited.ko"));
        std::fs::write(&out, image).unwrap();
        out
    }
}

#[test]
fn vermagic_of_another_kernel_release() {
    let sys = FakeSystem::new();
    let old = kernel_tree("6.1");
    let d = sys.diagnose("dummy", &sys.module_path(&old, "dummy"), "", libc::ENOEXEC);
    let text = d.to_string();
    assert!(
        text.contains(&format!("built for kernel {}", old.kver)),
        "{text}"
    );
    assert!(
        text.contains(&format!("running kernel is {}", sys.tree.kver)),
        "{text}"
    );
}

#[test]
fn modversions_names_the_symbol_and_its_exporter() {
    let sys = FakeSystem::new();
    let mut altered = String::new();
    let path = sys.edited("xhci_pci", |image| {
        let elf = Elf::parse(image).unwrap();
        let versions = elf.versions();
        // A symbol another module exports, so the "through which module" part shows.
        let (index, (_, name)) = versions
            .iter()
            .enumerate()
            .find(|(_, (_, n))| n.starts_with("xhci_"))
            .unwrap();
        altered = name.clone();
        let table = elf.section("__versions").unwrap();
        let at = table.as_ptr() as usize - image.as_ptr() as usize + index * 64;
        image[at] ^= 0xff;
        strip_signature(image);
    });
    let d = sys.diagnose("xhci_pci", &path, "", libc::ENOEXEC);
    let text = d.to_string();
    assert!(text.contains(&format!("symbol {altered}")), "{text}");
    assert!(text.contains("exported by module xhci_hcd"), "{text}");
}

#[test]
fn signatures_under_enforcement() {
    let sys = FakeSystem::new();
    sys.write("sys/module/module/parameters/sig_enforce", "Y\n");
    let unsigned = sys.edited("dummy", strip_signature);
    let d = sys.diagnose("dummy", &unsigned, "", libc::EKEYREJECTED);
    assert!(d.cause.contains("not signed"), "{d}");
    assert!(d.to_string().contains("sig_enforce=Y"), "{d}");
    assert!(
        d.fix.as_deref().unwrap().contains("mokutil --import"),
        "{d}"
    );

    // Signed, but by a key the keyrings lack.
    sys.write(
        "proc/keys",
        "0a1b2c3d I------     1 perm 1f030000     0     0 asymmetri Some Other CA: 0123abcd: X509.rsa 0123abcd []\n\
         0a1b2c3e I------     1 perm 1f0b0000     0     0 keyring   .builtin_trusted_keys: 1\n",
    );
    let signed = sys.module_path(&sys.tree, "dummy");
    let d = sys.diagnose("dummy", &signed, "", libc::EKEYREJECTED);
    assert!(
        d.cause.contains("none of the kernel's keyrings holds"),
        "{d}"
    );
    assert!(d.to_string().contains("Some Other CA"), "{d}");
    assert!(d.to_string().contains(".builtin_trusted_keys: 1"), "{d}");
    // doctor NAME sees it coming.
    let dir = sys.module_dir();
    let ctx = Context::new(sys.root(), &dir);
    let found = preflight(&ctx, "dummy", &signed, "");
    assert!(
        found.iter().any(|d| d.cause.contains("keyrings")),
        "{found:?}"
    );

    // The key is there but the bytes were changed after signing.
    let signer = {
        let info = modaliasd::modinfo::ModuleInfo::from_file(&signed).unwrap();
        String::from_utf8(info.signature.unwrap().signer).unwrap()
    };
    sys.write(
        "proc/keys",
        &format!("0a1b2c3d I------     1 perm 1f030000     0     0 asymmetri {signer}: 99aa: X509.rsa 99aa []\n"),
    );
    let tampered = sys.edited("dummy", |image| image[100] ^= 1);
    let d = sys.diagnose("dummy", &tampered, "", libc::EKEYREJECTED);
    assert!(d.cause.contains("does not match the module"), "{d}");
}

#[test]
fn unknown_symbols_from_the_log_or_kallsyms() {
    let sys = FakeSystem::new();
    let path = sys.module_path(&sys.tree, "xhci_pci");
    // The kernel's message names the symbol.
    sys.write(
        "dev/kmsg",
        "3,100,5000,-;xhci_pci: Unknown symbol xhci_run (err -2)\n",
    );
    let d = sys.diagnose("xhci_pci", &path, "", libc::ENOENT);
    assert!(
        d.to_string()
            .contains("xhci_run: exported by module xhci_hcd"),
        "{d}"
    );
    assert!(
        d.kernel_said.iter().any(|l| l.contains("Unknown symbol")),
        "{d}"
    );
    // No log: what kallsyms lacks.
    std::fs::remove_file(sys.root().join("dev/kmsg")).unwrap();
    let image = read_module_file(&path).unwrap();
    let undefined = Elf::parse(&image).unwrap().undefined_symbols();
    let present: String = undefined
        .iter()
        .filter(|s| !s.starts_with("xhci_"))
        .map(|s| format!("0000000000000000 T {s}\n"))
        .collect();
    sys.write("proc/kallsyms", &present);
    let d = sys.diagnose("xhci_pci", &path, "", libc::ENOENT);
    let text = d.to_string();
    assert!(text.contains("exported by module xhci_hcd"), "{text}");
    assert!(!text.contains("printk"), "{text}");
}

#[test]
fn parameter_values_against_their_types() {
    let sys = FakeSystem::new();
    let path = sys.module_path(&sys.tree, "dummy");
    let d = sys.diagnose("dummy", &path, "numdummies=4294967296", libc::ERANGE);
    assert!(d.cause.contains("numdummies=4294967296"), "{d}");
    assert!(d.cause.contains("outside the range of int"), "{d}");
    let d = sys.diagnose("dummy", &path, "numdummies=lots", libc::EINVAL);
    assert!(d.cause.contains("not a valid int"), "{d}");
    let dir = sys.module_dir();
    let ctx = Context::new(sys.root(), &dir);
    let found = preflight(&ctx, "dummy", &path, "numdummies=2 nosuch=1");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].cause.contains("'nosuch' names no parameter"),
        "{found:?}"
    );
}

#[test]
fn doctor_lints_option_values_and_checks_named_modules() {
    let tree = kernel_tree("6.12");
    let tmp = TempDir::new("doctor-options");
    let conf = tmp.path().join("x.conf");
    std::fs::write(
        &conf,
        "options e1000e debug=2\noptions dummy numdummies=4294967296 bogus=1\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_modaliasd"))
            .arg("doctor")
            .arg("--root")
            .arg(&tree.root)
            .args(["--kver", &tree.kver, "--cmdline", "none", "-C"])
            .arg(&conf)
            .args(extra)
            .output()
            .unwrap()
    };
    let lint = run(&[]);
    let text = String::from_utf8_lossy(&lint.stdout);
    assert_eq!(lint.status.code(), Some(1), "{text}");
    let at = format!(
        "{}:2: warning: dummy: option numdummies=4294967296",
        conf.display()
    );
    assert!(text.contains(&at), "{text}");
    assert!(text.contains("'bogus' names no parameter"), "{text}");
    assert!(
        !text.contains(":1: warning"),
        "e1000e's line is right: {text}"
    );

    let named = run(&["e1000e"]);
    let text = String::from_utf8_lossy(&named.stdout);
    assert_eq!(named.status.code(), Some(0), "{text}");
    assert!(text.contains("e1000e: no problem found"), "{text}");
    let named = run(&["dummy"]);
    assert_eq!(named.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&named.stdout).contains("outside the range of int"));
}

#[test]
fn explain_shows_patterns_config_lines_state_and_plan() {
    let tree = kernel_tree("6.12");
    let tmp = TempDir::new("explain");
    let root = tmp.path();
    std::fs::create_dir_all(root.join("lib/modules")).unwrap();
    std::os::unix::fs::symlink(tree.module_dir(), root.join("lib/modules").join(&tree.kver))
        .unwrap();
    let conf = root.join("etc/modprobe.d/test.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(
        &conf,
        "options e1000e debug=2\nblacklist igb\nsoftdep e1000e pre: dummy\nalias my-nic e1000e\n",
    )
    .unwrap();
    // A device with its modalias and bound driver, and a module that is loaded.
    let dev = root.join("sys/devices/pci0000:00/0000:00:19.0");
    std::fs::create_dir_all(&dev).unwrap();
    let modalias = "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00";
    std::fs::write(dev.join("modalias"), format!("{modalias}\n")).unwrap();
    std::fs::create_dir_all(root.join("sys/bus/pci/drivers/e1000e")).unwrap();
    std::os::unix::fs::symlink("../../../bus/pci/drivers/e1000e", dev.join("driver")).unwrap();
    std::fs::create_dir_all(root.join("sys/module/e1000e")).unwrap();
    std::fs::write(root.join("sys/module/e1000e/initstate"), "live\n").unwrap();

    let explain = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_modaliasd"))
            .arg("explain")
            .arg("--root")
            .arg(root)
            .args(["--kver", &tree.kver, "--cmdline", "none"])
            .args(args)
            .output()
            .unwrap()
    };
    let o = explain(&["/sys/devices/pci0000:00/0000:00:19.0"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains(&format!("MODALIAS {modalias}")), "{text}");
    assert!(text.contains("bound to driver e1000e"), "{text}");
    assert!(text.contains("module e1000e: loaded"), "{text}");
    // The pattern's line really is that line of modules.alias.
    let line = text
        .lines()
        .find(|l| l.contains("matched ") && l.contains("-> e1000e"))
        .unwrap_or_else(|| panic!("{text}"));
    let (pattern, at) = {
        let rest = line.split("matched ").nth(1).unwrap();
        let pattern = rest.split(" -> ").next().unwrap().to_owned();
        let n: usize = line.rsplit(':').next().unwrap().parse().unwrap();
        (pattern, n)
    };
    let aliases = std::fs::read_to_string(tree.module_dir().join("modules.alias")).unwrap();
    assert_eq!(
        aliases.lines().nth(at - 1).unwrap(),
        format!("alias {pattern} e1000e")
    );
    let conf_at = |n: u32| format!("# {}:{n}", conf.display());
    assert!(
        text.contains(&format!("options e1000e debug=2  {}", conf_at(1))),
        "{text}"
    );
    assert!(
        text.contains(&format!("softdep e1000e pre: dummy  {}", conf_at(3))),
        "{text}"
    );
    // The plan is the one 'load --dry-run' prints for the same MODALIAS with the blacklist on.
    let load = std::process::Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .arg("load")
        .arg("--root")
        .arg(root)
        .args([
            "--kver",
            &tree.kver,
            "--cmdline",
            "none",
            "--dry-run",
            "-b",
            modalias,
        ])
        .output()
        .unwrap();
    let plan: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  plan: "))
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = String::from_utf8_lossy(&load.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(plan, expected);

    let o = explain(&["--json", "my-nic", "igb"]);
    assert!(o.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["source"], "config-alias");
    assert_eq!(lines[0]["matches"][0]["origin"], serde_json::Value::Null);
    assert_eq!(
        lines[0]["matches"][0]["file"],
        format!("{}:4", conf.display())
    );
    assert_eq!(lines[1]["blacklisted"][0], "igb");
    assert_eq!(
        lines[1]["config"][0]["origin"],
        format!("{}:2", conf.display())
    );

    let o = explain(&["no-such-thing"]);
    assert_eq!(o.status.code(), Some(1));
}
