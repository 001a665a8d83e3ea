//! `modaliasd modinfo` against Debian's kmod `modinfo`, byte for byte: every module file of the
//! Debian trees (6.12's `.ko.xz`, 6.1's plain `.ko`, arm64, and i386's 32-bit ELF), every
//! built-in module and a sample of names and aliases looked up in the module directory, each
//! field with `-F`, `-0`, and modules whose signature was stripped or damaged. `--json` must
//! carry what the plain output says. The symbol versions the diagnostics compare are checked
//! against `modprobe --dump-modversions`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{KernelTree, Rng, TempDir, kernel_tree};

fn modinfo_kmod(tree: &KernelTree, args: &[&str]) -> Output {
    Command::new("modinfo")
        .arg("-b")
        .arg(&tree.root)
        .args(["-k", &tree.kver])
        .args(args)
        .output()
        .expect("modinfo (package kmod)")
}

fn modinfo_ours(tree: &KernelTree, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .args(["modinfo", "--root"])
        .arg(&tree.root)
        .args(["--kver", &tree.kver])
        .args(args)
        .output()
        .unwrap()
}

fn module_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if e.file_type().unwrap().is_dir() {
            module_files(&path, out);
        } else if path.to_string_lossy().contains(".ko") {
            out.push(path);
        }
    }
}

fn assert_same(tree: &KernelTree, args: &[&str]) {
    let (kmod, ours) = (modinfo_kmod(tree, args), modinfo_ours(tree, args));
    if kmod.stdout != ours.stdout {
        let (k, o) = (
            String::from_utf8_lossy(&kmod.stdout),
            String::from_utf8_lossy(&ours.stdout),
        );
        let first = k
            .lines()
            .zip(o.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(k.lines().count().min(o.lines().count()));
        panic!(
            "modinfo {args:?} differs at line {}:\n  kmod: {:?}\n  ours: {:?}",
            first + 1,
            k.lines().nth(first),
            o.lines().nth(first)
        );
    }
    assert_eq!(
        kmod.status.success(),
        ours.status.success(),
        "exit status of modinfo {args:?}: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
}

fn every_file_is_shown_as_kmod_shows_it(series: &str, min_files: usize) {
    let tree = kernel_tree(series);
    let mut files = Vec::new();
    module_files(&tree.module_dir(), &mut files);
    files.sort();
    assert!(files.len() >= min_files, "{} modules only", files.len());
    // Two batches at a time: one per core.
    let chunks: Vec<Vec<String>> = files
        .chunks(300)
        .map(|c| c.iter().map(|p| p.to_string_lossy().into_owned()).collect())
        .collect();
    std::thread::scope(|s| {
        for half in chunks.chunks(chunks.len().div_ceil(2)) {
            let tree = &tree;
            s.spawn(move || {
                for chunk in half {
                    let args: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    assert_same(tree, &args);
                }
            });
        }
    });
}

#[test]
fn every_module_file_of_the_6_12_tree() {
    every_file_is_shown_as_kmod_shows_it("6.12", 3000);
}

#[test]
fn every_module_file_of_the_6_1_tree() {
    every_file_is_shown_as_kmod_shows_it("6.1", 3000);
}

#[test]
fn every_module_file_of_the_arm64_tree() {
    every_file_is_shown_as_kmod_shows_it("arm64-6.12", 3000);
}

#[test]
fn every_module_file_of_the_cloud_tree() {
    every_file_is_shown_as_kmod_shows_it("cloud-6.12", 1000);
}

/// 32-bit ELF modules (686-pae).
#[test]
fn every_module_file_of_the_i386_tree() {
    every_file_is_shown_as_kmod_shows_it("i386-6.1", 3000);
}

/// The `__versions` entries (CRC and symbol) that the CRC-mismatch diagnosis reads, against
/// kmod's, on 64- and 32-bit modules.
#[test]
fn symbol_versions_are_read_as_kmod_reads_them() {
    for series in ["6.1", "i386-6.1"] {
        let tree = kernel_tree(series);
        let mut files = Vec::new();
        module_files(&tree.module_dir(), &mut files);
        files.sort();
        let mut with_versions = 0;
        for file in files.iter().step_by(7) {
            let kmod = Command::new("modprobe")
                .arg("--dump-modversions")
                .arg(file)
                .output()
                .expect("modprobe (package kmod)");
            let data = std::fs::read(file).unwrap();
            let elf = modaliasd::modinfo::elf::Elf::parse(&data).unwrap();
            let ours: String = elf
                .versions()
                .iter()
                .map(|(crc, name)| format!("0x{crc:08x}\t{name}\n"))
                .collect();
            assert_eq!(
                ours,
                String::from_utf8_lossy(&kmod.stdout),
                "{}",
                file.display()
            );
            with_versions += usize::from(!ours.is_empty());
        }
        assert!(
            with_versions > 300,
            "{series}: {with_versions} files with versions"
        );
    }
}

#[test]
fn names_aliases_builtins_and_fields() {
    names_aliases_builtins_and_fields_of("6.12");
}

/// arm64 has built-in modules whose strings come in two runs (`arm_cci`).
#[test]
fn names_aliases_builtins_and_fields_of_the_arm64_tree() {
    names_aliases_builtins_and_fields_of("arm64-6.12");
}

#[test]
fn names_aliases_builtins_and_fields_of_the_i386_tree() {
    names_aliases_builtins_and_fields_of("i386-6.1");
}

/// ext4, kvm and most filesystems are built in here.
#[test]
fn names_aliases_builtins_and_fields_of_the_cloud_tree() {
    names_aliases_builtins_and_fields_of("cloud-6.12");
}

fn names_aliases_builtins_and_fields_of(series: &str) {
    let tree = kernel_tree(series);
    let dir = tree.module_dir();
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap();
    let mut names: Vec<String> = builtin
        .lines()
        .map(modaliasd::names::modname_from_path)
        .collect();
    assert!(names.len() > 100);
    // Built-in modules have no file: kmod prints their name itself, for `-F name` too.
    let some_builtin = [names[0].clone(), names[names.len() / 2].clone()];
    let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap();
    let mut rng = Rng(0x6d6f64696e666f);
    let modules: Vec<String> = dep
        .lines()
        .map(|l| modaliasd::names::modname_from_path(l.split(':').next().unwrap()))
        .collect();
    names.extend((0..150).map(|_| modules[rng.below(modules.len())].replace('_', "-")));
    // Aliases: literal ones as they are, a pattern made concrete, and names that match nothing.
    names.extend([
        "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00".into(),
        "usb:v0627p0001d0000dc00dsc00dp00ic03isc00ip00in00".into(),
        "fs-ext4".into(),
        "crypto-sha256".into(),
        "char-major-10-229".into(),
        "no-such-module".into(),
    ]);
    for name in &names {
        assert_same(&tree, &[name]);
    }
    for field in [
        "filename",
        "license",
        "alias",
        "depends",
        "name",
        "vermagic",
        "parm",
        "parmtype",
        "sig_id",
        "signer",
        "sig_key",
        "sig_hashalgo",
        "signature",
        "nonexistent",
    ] {
        for name in [
            "e1000e",
            "snd-hda-intel",
            "ext4",
            "crc32c_generic",
            "usbhid",
        ]
        .iter()
        .chain(&some_builtin.each_ref().map(String::as_str))
        {
            assert_same(&tree, &["-F", field, name]);
        }
    }
    assert_same(&tree, &["-0", "e1000e", "ext4"]);
    assert_same(&tree, &["-0", "-F", "parm", "e1000e"]);
    // kmod's shorthands for -F.
    for short in ["-a", "-d", "-l", "-p", "-n"] {
        assert_same(&tree, &[short, "e1000e", "ext4"]);
    }
    // Parameters with a type and no description (kvm's), in a listing and alone.
    assert_same(&tree, &["kvm"]);
    assert_same(&tree, &["-F", "parm", "kvm"]);
}

/// The signature's end: kmod reads it from the last 40 bytes (12-byte header, 28-byte magic).
const SIG_TRAILER: usize = 12 + 28;

#[test]
fn stripped_and_damaged_signatures() {
    let tree = kernel_tree("6.1"); // plain .ko files: the bytes can be edited in place
    let path = tree.module_dir().join(
        std::fs::read_to_string(tree.module_dir().join("modules.dep"))
            .unwrap()
            .lines()
            .find(|l| l.contains("/e1000e.ko"))
            .unwrap()
            .split(':')
            .next()
            .unwrap(),
    );
    let original = std::fs::read(&path).unwrap();
    assert!(original.ends_with(b"~Module signature appended~\n"));
    let sig_len = u32::from_be_bytes(
        original[original.len() - 32..original.len() - 28]
            .try_into()
            .unwrap(),
    ) as usize;
    let sig_start = original.len() - SIG_TRAILER - sig_len;
    let tmp = TempDir::new("modinfo-sig");
    let mut variants: Vec<(&str, Vec<u8>)> = vec![("stripped", original[..sig_start].to_vec())];
    let mut rng = Rng(7);
    for i in 0..120 {
        // Damage in the PKCS#7 structure's first bytes (tags, lengths, OIDs, the issuer's name,
        // the serial number) and anywhere. kmod shows a signature only when OpenSSL decodes it.
        let mut damaged = original.clone();
        let at = if i < 60 {
            sig_start + rng.below(128)
        } else {
            sig_start + rng.below(sig_len)
        };
        damaged[at] ^= 1 << rng.below(8);
        variants.push(("damaged", damaged));
    }
    let mut header = original.clone();
    header[original.len() - SIG_TRAILER + 2] = 9; // unknown id_type
    variants.push(("bad id type", header));
    let mut files = Vec::new();
    for (i, (what, bytes)) in variants.iter().enumerate() {
        let file = tmp
            .path()
            .join(format!("{i}-{}.ko", what.replace(' ', "_")));
        std::fs::write(&file, bytes).unwrap();
        files.push(file.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    assert_same(&tree, &args);
    let stripped = modinfo_ours(&tree, &[&files[0]]);
    assert!(!String::from_utf8_lossy(&stripped.stdout).contains("sig_id"));
}

#[test]
fn json_carries_the_same_fields() {
    let tree = kernel_tree("6.12");
    let o = modinfo_ours(&tree, &["--json", "e1000e", "ext4"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let modules = v.as_array().unwrap();
    assert_eq!(modules.len(), 2);
    let e1000e = &modules[0];
    assert_eq!(e1000e["name"], "e1000e");
    let fields = e1000e["fields"].as_array().unwrap();
    let values = |key: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|f| f["key"] == key)
            .map(|f| f["value"].as_str().unwrap().to_owned())
            .collect()
    };
    let plain = |field: &str| -> Vec<String> {
        String::from_utf8_lossy(&modinfo_kmod(&tree, &["-F", field, "e1000e"]).stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(values("alias"), plain("alias"));
    assert_eq!(values("signer"), plain("signer"));
    assert_eq!(values("vermagic"), plain("vermagic"));
    let params = e1000e["parameters"].as_array().unwrap();
    let rendered: Vec<String> = params
        .iter()
        .map(|p| {
            format!(
                "{}:{} ({})",
                p["name"].as_str().unwrap(),
                p["description"].as_str().unwrap(),
                p["type"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(rendered, plain("parm"));
}
