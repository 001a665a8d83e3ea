//! The saved index in an initramfs: compiled by a hook, it must still be found fresh after what
//! the generators do once their hooks have run, or the daemon compiles it at every boot.
//!
//! Debian's mkinitramfs runs the hooks, then decompresses every module it copied (`xz -d`) and
//! runs depmod again; dracut runs depmod after its modules' install(); and the image is a cpio
//! archive, which keeps whole seconds of the files' times. This test does the same with Debian's
//! depmod and xz on real 6.12 modules, and asks `resolve -v` where its resolver came from.

mod support;

use std::path::Path;
use std::process::Command;
use support::{KernelTree, TempDir, kernel_tree, module_file};

/// The MODALIAS every check resolves (an e1000 NIC under qemu), and `resolve`'s answer.
const E1000_MODALIAS: &str = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00";
const E1000_ANSWER: &str = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00\te1000\n";

/// Modules with their dependencies, as a hook's initramfs would hold them.
const MODULES: &[&str] = &["e1000", "e1000e", "ahci", "libahci", "libata", "scsi_mod"];

fn copy_modules(tree: &KernelTree, root: &Path, names: &[&str]) {
    copy_module_files(tree, root, names);
    let src = tree.module_dir();
    let dst = root.join("lib/modules").join(&tree.kver);
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
}

/// The module files alone, without the kernel's lists (modules.builtin, modules.order).
fn copy_module_files(tree: &KernelTree, root: &Path, names: &[&str]) {
    let src = tree.module_dir();
    let dst = root.join("lib/modules").join(&tree.kver);
    for name in names {
        let file = module_file(tree, name);
        let to = dst.join(file.strip_prefix(&src).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&file, &to).unwrap();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn depmod(root: &Path, kver: &str) {
    run(Command::new("depmod")
        .arg("-a")
        .arg("-b")
        .arg(root)
        .arg(kver));
}

/// `modaliasd compile`, as the hooks run it.
fn compile(root: &Path, kver: &str) {
    run(Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .args(["-q", "compile", "--root"])
        .arg(root)
        .args(["--kver", kver]));
}

/// `resolve -v` of e1000's MODALIAS: the answer and where the resolver came from.
fn resolve(root: &Path, kver: &str) -> (String, &'static str) {
    let (answer, log) = support::resolve_verbose(root, kver, &[E1000_MODALIAS]);
    let origin = if log.contains("resolver: saved index") {
        "saved"
    } else if log.contains("resolver: compiled") {
        "compiled"
    } else {
        panic!("no resolver origin in the log: {log}")
    };
    (answer, origin)
}

/// Every file's time cut to whole seconds, as in a cpio archive.
fn truncate_times(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let secs = std::fs::metadata(&path)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        if path.is_file() {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(whole).unwrap();
        }
    }
}

#[test]
fn the_index_a_hook_compiles_stays_fresh_through_the_generators_last_steps() {
    let tree = kernel_tree("6.12");
    let kver = tree.kver.clone();
    let root = TempDir::new("initramfs-index");
    copy_modules(&tree, root.path(), MODULES);
    let dir = root.path().join("lib/modules").join(&kver);

    // The hook: depmod for the modules copied so far, then compile.
    depmod(root.path(), &kver);
    compile(root.path(), &kver);
    let (before, origin) = resolve(root.path(), &kver);
    assert_eq!((before.as_str(), origin), (E1000_ANSWER, "saved"));

    // mkinitramfs after its hooks: decompress, depmod again; then the cpio archive.
    let mut compressed = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "xz") {
                compressed.push(p);
            }
        }
    }
    assert_eq!(
        compressed.len(),
        MODULES.len(),
        "the 6.12 tree ships .ko.xz"
    );
    for p in &compressed {
        run(Command::new("xz").arg("-d").arg(p));
    }
    depmod(root.path(), &kver);
    let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap();
    assert!(
        dep.contains("e1000.ko:") && !dep.contains(".ko.xz"),
        "{dep}"
    );
    truncate_times(&dir);
    assert_eq!(resolve(root.path(), &kver), (before.clone(), "saved"));

    // A module that a later hook adds is a change the index must not miss.
    copy_modules(&tree, root.path(), &["igb"]);
    depmod(root.path(), &kver);
    let (after, origin) = resolve(root.path(), &kver);
    assert_eq!((after, origin), (before, "compiled"));
}

#[test]
fn a_directory_depmod_indexed_without_the_kernels_lists_resolves_as_libkmod_does() {
    // What a dracut module's install() sees: modules copied, but not yet modules.builtin and
    // modules.order, which dracut copies at its very end. depmod then writes empty
    // modules.builtin.bin and modules.builtin.alias.bin, which libkmod reads as empty.
    let tree = kernel_tree("6.12");
    let kver = tree.kver.clone();
    let root = TempDir::new("initramfs-index");
    copy_module_files(&tree, root.path(), MODULES);
    depmod(root.path(), &kver);
    let dir = root.path().join("lib/modules").join(&kver);
    assert_eq!(
        std::fs::metadata(dir.join("modules.builtin.bin"))
            .unwrap()
            .len(),
        0,
        "depmod wrote something else than the case under test"
    );

    let keys = [
        E1000_MODALIAS,
        "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
        "e1000e",
        "scsi-mod",
        "unix",
        "crc32c",
        "fs-ext4",
    ];
    // As modprobe reads it: kmod_load_resources refuses the empty files (EINVAL).
    let kmod = support::libkmod::Libkmod::without_resources(&dir);
    let expected: String = keys
        .iter()
        .map(|k| {
            let names = support::libkmod::distinct(kmod.lookup(k.as_bytes()).unwrap_or_default());
            format!("{k}\t{}\n", names.join(" "))
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .args(["resolve", "--root"])
        .arg(root.path())
        .args(["--kver", &kver])
        .args(keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert!(expected.contains("\te1000\n"), "{expected}");

    // And the compiled index, written by a hook at that moment, reads back.
    compile(root.path(), &kver);
    let (answer, origin) = resolve(root.path(), &kver);
    assert_eq!((answer.as_str(), origin), (E1000_ANSWER, "saved"));
}
