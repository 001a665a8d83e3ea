//! Shared by the integration tests: fixture discovery, temporary directories, the libkmod oracle.
#![allow(dead_code)]

pub mod libkmod;

use std::path::{Path, PathBuf};

/// The cache that `tests/fixtures/kernels.sh` fills.
pub fn fixture_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("MODALIASD_FIXTURES") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    base.join("modaliasd/kernels")
}

/// A Debian kernel tree fetched by the fixture script: its root and kernel release.
pub struct KernelTree {
    pub root: PathBuf,
    pub kver: String,
}

impl KernelTree {
    pub fn module_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.kver)
    }
}

/// The tree of `series` ("6.12" or "6.1"). Missing fixtures fail the test: a differential test
/// that quietly skips proves nothing.
pub fn kernel_tree(series: &str) -> KernelTree {
    let root = fixture_cache().join(series);
    let modules = root.join("lib/modules");
    let kver = std::fs::read_dir(&modules)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| {
            panic!(
                "no kernel fixture at {}: run tests/fixtures/kernels.sh (or tests/deps.sh)",
                modules.display()
            )
        });
    KernelTree { root, kver }
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "modaliasd-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic xorshift64*, so that a failing corpus reproduces.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// The file of module `name` in `tree`, from its modules.dep.
pub fn module_file(tree: &KernelTree, name: &str) -> PathBuf {
    let dep = std::fs::read_to_string(tree.module_dir().join("modules.dep")).unwrap();
    let rel = dep
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .find(|p| modaliasd::names::modname_from_path(p) == name)
        .unwrap_or_else(|| panic!("{name} is not in {}", tree.kver));
    tree.module_dir().join(rel)
}

/// Module `name` of `tree`, decompressed.
pub fn module_image(tree: &KernelTree, name: &str) -> Vec<u8> {
    modaliasd::modinfo::read_module_file(&module_file(tree, name)).unwrap()
}

/// Cuts the appended signature (data, 12-byte header, magic) off a module image.
pub fn strip_signature(image: &mut Vec<u8>) {
    let magic = modaliasd::modinfo::signature::MAGIC;
    assert!(image.ends_with(magic), "the module is not signed");
    let n = image.len();
    let sig_len = u32::from_be_bytes(image[n - 32..n - 28].try_into().unwrap()) as usize;
    image.truncate(n - magic.len() - 12 - sig_len);
}

/// Debian packages that `tests/fixtures/unpack-debs.sh NAME PACKAGE...` unpacked next to the
/// kernel trees (tests/deps.sh runs it); `marker` is a file the tree must hold.
pub fn unpacked_debs(name: &str, marker: &str) -> PathBuf {
    let dir = fixture_cache().parent().unwrap().join(name);
    assert!(
        dir.join(marker).exists(),
        "{} is missing: run tests/deps.sh (tests/fixtures/unpack-debs.sh {name} ...)",
        dir.join(marker).display()
    );
    dir
}

/// Copies the file `from` to `to`, mode included, creating `to`'s directory.
pub fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
}

/// Runs the shell `script` (given on standard input, so it may be long) in a private mount
/// namespace (`unshare -m`, needs root), where it can lay unpacked packages over /usr or bind a
/// file over /proc/cmdline without touching the machine. Fails the test when it fails.
pub fn run_in_private_mounts(what: &str, script: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("unshare")
        .args(["-m", "sh", "-s"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run unshare (util-linux)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} (unshare -m needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The shell line that lays `usr_trees` (each laid out like /usr, the first on top) over /usr,
/// for a script in a private mount namespace.
pub fn overlay_usr(usr_trees: &[&Path]) -> String {
    let lower: Vec<String> = usr_trees.iter().map(|d| d.display().to_string()).collect();
    format!(
        "mount -t overlay overlay -o lowerdir={}:/usr /usr",
        lower.join(":")
    )
}

/// [`run_in_private_mounts`], and what it printed: standard output, then standard error.
pub fn in_private_mounts(what: &str, script: &str) -> String {
    let out = run_in_private_mounts(what, script);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `modaliasd -v resolve` of `keys` on the tree under `root`: its output and its log.
pub fn resolve_verbose(root: &Path, kver: &str, keys: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .args(["-v", "resolve", "--root"])
        .arg(root)
        .args(["--kver", kver])
        .args(keys)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An initramfs that a real generator built, unpacked at `root`: it holds the binary and a
/// saved index, which the daemon finds fresh at boot and which answers for drivers the image
/// holds (e1000, usb-storage).
pub fn assert_image_has_the_daemon(root: &Path, kver: &str) {
    assert!(
        root.join("usr/sbin/modaliasd").exists(),
        "no binary in the image"
    );
    assert!(
        root.join("usr/lib/modules")
            .join(kver)
            .join("modaliasd.index")
            .exists(),
        "no index in the image"
    );
    let (answer, log) = resolve_verbose(
        root,
        kver,
        &[
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
            "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00",
        ],
    );
    assert_eq!(
        answer,
        "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00\te1000\n\
         usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00\tusb_storage\n"
    );
    assert!(log.contains("resolver: saved index"), "{log}");
}

/// Unpacks the initramfs `image` (a cpio archive, gzip-compressed or not) into `root`, as the
/// kernel does.
pub fn unpack_initrd(image: &Path, root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let gzip = std::fs::read(image).unwrap().starts_with(&[0x1f, 0x8b]);
    let reader = if gzip { "zcat" } else { "cat" };
    let unpack = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{reader} {} | cpio -id --quiet", image.display()))
        .current_dir(root)
        .output()
        .unwrap();
    assert!(unpack.status.success(), "{unpack:?}");
}

/// `modprobe --show-depends NAME` and `modaliasd load --dry-run --show-depends NAME` on the
/// fixture tree `kernel` with the configuration directories `config` (one `-C` each), `-b`
/// when `blacklist`, and `options` (space-separated) as extra module options: (theirs, ours).
pub fn show_depends_both(
    kernel: &KernelTree,
    config: &[&Path],
    name: &str,
    blacklist: bool,
    options: &str,
) -> (std::process::Output, std::process::Output) {
    let mut theirs = std::process::Command::new("modprobe");
    theirs
        .arg("-d")
        .arg(&kernel.root)
        .args(["-S", &kernel.kver]);
    let mut ours = std::process::Command::new(env!("CARGO_BIN_EXE_modaliasd"));
    ours.args(["load", "--dry-run", "--root"])
        .arg(&kernel.root)
        .args(["--kver", &kernel.kver, "--cmdline", "/proc/cmdline"]);
    for dir in config {
        theirs.arg("-C").arg(dir);
        ours.arg("-C").arg(dir);
    }
    if blacklist {
        theirs.arg("-b");
        ours.arg("-b");
    }
    theirs.args(["--show-depends", name]);
    ours.args(["--show-depends", name]);
    if !options.is_empty() {
        theirs.args(options.split(' '));
        ours.args(["-o", options]);
    }
    (
        theirs.output().expect("run modprobe (Debian package kmod)"),
        ours.output().unwrap(),
    )
}

/// The lines of a `--show-depends` output, each once, in order (modprobe prints a module again
/// when a softdep repeats it), paths without the fixture's root.
pub fn distinct_lines(stdout: &[u8], kernel: &KernelTree) -> Vec<String> {
    let prefix = format!(" {}/lib/modules/", kernel.root.display());
    let mut seen = std::collections::HashSet::new();
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| l.replacen(&prefix, " /lib/modules/", 1))
        .filter(|l| seen.insert(l.clone()))
        .collect()
}

/// `modprobe -c` and `modaliasd config` on the fixture tree `kernel` with the configuration
/// directories `config` (one `-C` each) and this machine's command line: (theirs, ours).
pub fn config_both(
    kernel: &KernelTree,
    config: &[&Path],
) -> (std::process::Output, std::process::Output) {
    let mut theirs = std::process::Command::new("modprobe");
    theirs
        .arg("-c")
        .arg("-d")
        .arg(&kernel.root)
        .args(["-S", &kernel.kver]);
    let mut ours = std::process::Command::new(env!("CARGO_BIN_EXE_modaliasd"));
    ours.args(["config", "--root"]).arg(&kernel.root).args([
        "--kver",
        &kernel.kver,
        "--cmdline",
        "/proc/cmdline",
    ]);
    for dir in config {
        theirs.arg("-C").arg(dir);
        ours.arg("-C").arg(dir);
    }
    (
        theirs.output().expect("run modprobe (Debian package kmod)"),
        ours.output().unwrap(),
    )
}

/// The configuration lines of `modprobe -c`'s output (`ours` false: up to its index dump,
/// without its empty lines) or of `modaliasd config`'s (`ours`: each without its
/// `  # FILE:LINE`). Split on newlines only: `lines()` would also drop a carriage return that
/// ends a line's text, which is part of the configuration's value.
pub fn config_lines(stdout: &[u8], ours: bool) -> Vec<String> {
    let text = String::from_utf8_lossy(stdout);
    let lines = text.split_terminator('\n');
    if ours {
        lines
            .map(|l| l.rsplit_once("  # ").map_or(l, |(line, _)| line).to_owned())
            .collect()
    } else {
        lines
            .take_while(|l| !l.starts_with("# End of configuration files"))
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Builds the package as a packager would (`dpkg-buildpackage -b -us -uc`), from a copy of
/// the source tree in `tmp` so that nothing lands beside the checkout (dpkg-buildpackage
/// writes to the parent directory); the copy shares the checkout's `target` so the build
/// reuses what cargo built.
pub fn build_package(tmp: &Path) -> PathBuf {
    use std::process::Command;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = tmp.join("src/modaliasd");
    std::fs::create_dir_all(&src).unwrap();
    let copy = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {manifest} && git ls-files -z --cached --others --exclude-standard \
             | xargs -0 -I{{}} cp -P --parents {{}} {src} && ln -s {manifest}/target {src}/target",
            manifest = manifest.display(),
            src = src.display()
        ))
        .status()
        .unwrap();
    assert!(copy.success(), "copying the source tree");
    let o = Command::new("dpkg-buildpackage")
        .args(["-b", "-us", "-uc"])
        .current_dir(&src)
        .output()
        .expect("dpkg-buildpackage (tests/deps.sh installs dpkg-dev and debhelper)");
    assert!(
        o.status.success(),
        "dpkg-buildpackage: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let arch = String::from_utf8(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let deb = tmp.join(format!(
        "src/modaliasd_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch.trim()
    ));
    assert!(deb.exists(), "{} not built", deb.display());
    deb
}
