//! The initramfs binary: `packaging/build-static.sh` must give an executable that needs no
//! program interpreter (no ld.so, no shared libraries) and does the same job as the normal build.

use std::path::Path;
use std::process::Command;

/// The ELF program header types of `file` (64-bit little-endian only, as built here).
fn program_header_types(file: &[u8]) -> Vec<u32> {
    assert_eq!(&file[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(file[4], 2, "not a 64-bit ELF file");
    let u16_at = |at: usize| u16::from_le_bytes([file[at], file[at + 1]]) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap()) as usize;
    let (offset, size, count) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..count)
        .map(|i| {
            let at = offset + i * size;
            u32::from_le_bytes(file[at..at + 4].try_into().unwrap())
        })
        .collect()
}

const PT_INTERP: u32 = 3;

#[test]
fn the_static_build_needs_no_interpreter_and_plans_the_same() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = manifest.join("target/static/modaliasd");
    let build = Command::new(manifest.join("packaging/build-static.sh"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let normal = std::fs::read(env!("CARGO_BIN_EXE_modaliasd")).unwrap();
    assert!(
        program_header_types(&normal).contains(&PT_INTERP),
        "the check itself: a normal build has an interpreter"
    );
    let types = program_header_types(&std::fs::read(&out).unwrap());
    assert!(!types.contains(&PT_INTERP), "{types:?}");

    // Same job, empty environment (as early in an initramfs).
    let root = manifest.join("examples/root");
    let kver = std::fs::read_dir(root.join("lib/modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let replay = |binary: &Path| {
        let o = Command::new(binary)
            .env_clear()
            .args(["replay", "--dry-run", "--as-fast-as-possible", "--no-index"])
            .args(["--cmdline", "none", "-C", "/dev/null", "--root"])
            .arg(&root)
            .arg("--kver")
            .arg(&kver)
            .arg(manifest.join("examples/coldplug.rec"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let ours = replay(&out);
    assert!(!ours.is_empty());
    assert_eq!(ours, replay(Path::new(env!("CARGO_BIN_EXE_modaliasd"))));
}
