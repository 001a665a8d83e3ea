//! modaliasd's resolver against libkmod, side by side in one run, on a real Debian module tree.
//!
//! `cargo bench --bench resolve` prints a Markdown report: per-lookup time by bus with the ratio,
//! compile time, saved-index load time, resident memory, and a whole `modaliasd resolve` of
//! 200,000 stdin lines against the same lookups through libkmod in one process.
//!
//! Timing: each figure is the median of several rounds; a round runs the whole key set once.
//! Set MODALIASD_BENCH_SERIES=6.1 to measure the 6.1 tree (default 6.12).

#[path = "../tests/support/corpus.rs"]
mod corpus;
#[path = "../tests/support/mod.rs"]
mod support;

use modaliasd::index::ModuleTree;
use modaliasd::matcher::Scratch;
use modaliasd::resolve::saved::{from_file, save};
use modaliasd::resolve::{NoConfig, Resolution, Resolver};
use std::ffi::CString;
use std::hint::black_box;
use std::time::{Duration, Instant};
use support::libkmod::Libkmod;
use support::{Rng, TempDir};

const BUSES: &[&str] = &[
    "pci", "usb", "acpi", "of", "cpu", "hid", "platform", "other",
];
const ROUNDS: usize = 7;
const PCI_KERNEL: &str = "pci, kernel layout";

fn bus_of(key: &[u8]) -> &'static str {
    let head = key.split(|&c| c == b':').next().unwrap_or(b"");
    let head = head.strip_suffix(b"*").unwrap_or(head);
    BUSES
        .iter()
        .copied()
        .find(|b| b.as_bytes() == head)
        .unwrap_or("other")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_rounds(mut f: impl FnMut()) -> Duration {
    f(); // warm caches and lazily built state
    median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn ns(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn fmt_time(nanos: f64) -> String {
    if nanos >= 1_000_000.0 {
        format!("{:.1} ms", nanos / 1e6)
    } else if nanos >= 1000.0 {
        format!("{:.1} µs", nanos / 1e3)
    } else {
        format!("{nanos:.0} ns")
    }
}

/// Keys for one bus: real-looking strings made from the tree's own patterns (concretised, and as
/// many again mutated so that misses are measured too); `cpu` gets full feature lists.
fn keys_by_bus(tree: &ModuleTree) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut rng = Rng(0xBE_4C_11);
    let mut by_bus: Vec<(&'static str, Vec<Vec<u8>>)> =
        BUSES.iter().map(|b| (*b, Vec::new())).collect();
    for a in &tree.aliases {
        let bus = bus_of(&a.pattern);
        if bus == "cpu" {
            continue;
        }
        let slot = &mut by_bus.iter_mut().find(|(b, _)| *b == bus).unwrap().1;
        let c = corpus::concretize(&a.pattern, &mut rng);
        slot.push(corpus::mutate(&c, &mut rng));
        slot.push(c);
    }
    let cpu = &mut by_bus.iter_mut().find(|(b, _)| *b == "cpu").unwrap().1;
    for s in corpus::sysfs_modaliases() {
        if s.starts_with(b"cpu:") {
            cpu.push(s);
        }
    }
    while cpu.len() < 500 {
        cpu.push(corpus::cpu_modalias(&mut rng, 0x2F0, 4));
    }
    // The same PCI patterns again, as the kernel writes PCI keys: every field at its full width
    // (concretize fills a `*` with 0 to 9 random bytes, which no kernel writes). A row of its
    // own, outside the total, so that the rows above stay comparable with earlier runs.
    let mut pci_kernel = Vec::new();
    for a in &tree.aliases {
        if let Some(k) = corpus::pci_kernel_layout(&a.pattern, &mut rng) {
            pci_kernel.push(corpus::pci_near_miss(&k, &mut rng));
            pci_kernel.push(k);
        }
    }
    by_bus.push((PCI_KERNEL, pci_kernel));
    for (_, keys) in &mut by_bus {
        // Cap each bus so the slow reference does not dominate the run.
        let step = keys.len().div_ceil(4000).max(1);
        *keys = keys.iter().step_by(step).cloned().collect();
    }
    by_bus
}

fn main() {
    let series = std::env::var("MODALIASD_BENCH_SERIES").unwrap_or_else(|_| "6.12".into());
    let kernel = support::kernel_tree(&series);
    let dir = kernel.module_dir();
    println!(
        "## modaliasd vs libkmod on Debian {} ({})\n",
        kernel.kver,
        std::env::consts::ARCH
    );

    // Compile: parse the text files, then compile.
    let load = time_rounds(|| {
        black_box(ModuleTree::load(&dir).unwrap());
    });
    let tree = ModuleTree::load(&dir).unwrap();
    let compile = time_rounds(|| {
        black_box(Resolver::build(&tree));
    });
    let resolver = Resolver::build(&tree);
    let tmp = TempDir::new("bench");
    let index = tmp.path().join("modaliasd.index");
    save(&index, &resolver, &tree.sources).unwrap();
    let index_len = std::fs::metadata(&index).unwrap().len();
    let load_saved = time_rounds(|| {
        black_box(from_file(&index).unwrap());
    });

    // Per-lookup time by bus.
    let kmod = Libkmod::new(&dir);
    let by_bus = keys_by_bus(&tree);
    let mut scratch = Scratch::default();
    let mut res = Resolution::default();
    println!("### Lookup time per MODALIAS (median of {ROUNDS} rounds)\n");
    println!("| bus | keys | libkmod | modaliasd | speed-up |");
    println!("|---|---:|---:|---:|---:|");
    let (mut total_ours, mut total_kmod, mut total_n) = (Duration::ZERO, Duration::ZERO, 0);
    let mut kernel_row = None;
    for (bus, keys) in &by_bus {
        if keys.is_empty() {
            continue;
        }
        let ckeys: Vec<CString> = keys
            .iter()
            .filter_map(|k| CString::new(k.clone()).ok())
            .collect();
        let theirs = time_rounds(|| {
            for k in &ckeys {
                black_box(kmod.lookup_count(k));
            }
        });
        let ours = time_rounds(|| {
            for k in keys {
                let _ = resolver.resolve_into(k, &NoConfig, &mut scratch, &mut res);
                black_box(res.modules.len());
            }
        });
        if *bus == PCI_KERNEL {
            kernel_row = Some((keys.len(), theirs, ours));
            continue;
        }
        total_ours += ours;
        total_kmod += theirs;
        total_n += keys.len();
        println!(
            "| {bus} | {} | {} | {} | {:.0}× |",
            keys.len(),
            fmt_time(ns(theirs, keys.len())),
            fmt_time(ns(ours, keys.len())),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
    println!(
        "| **all** | {total_n} | {} | {} | **{:.0}×** |",
        fmt_time(ns(total_kmod, total_n)),
        fmt_time(ns(total_ours, total_n)),
        total_kmod.as_secs_f64() / total_ours.as_secs_f64()
    );
    if let Some((n, theirs, ours)) = kernel_row {
        println!(
            "| {PCI_KERNEL} | {n} | {} | {} | {:.0}× |",
            fmt_time(ns(theirs, n)),
            fmt_time(ns(ours, n)),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
    println!();

    println!("### Building and loading\n");
    println!("| step | time |");
    println!("|---|---:|");
    println!(
        "| read the text files (`ModuleTree::load`) | {} |",
        fmt_time(load.as_nanos() as f64)
    );
    println!(
        "| compile {} aliases (`Resolver::build`) | {} |",
        resolver.alias_count(),
        fmt_time(compile.as_nanos() as f64)
    );
    println!(
        "| load the saved index ({:.1} MiB, read + validate) | {} |\n",
        index_len as f64 / (1 << 20) as f64,
        fmt_time(load_saved.as_nanos() as f64)
    );

    memory(&kernel, &index);

    end_to_end(&kernel, &by_bus, &kmod);
}

/// Peak resident memory of one lookup in a fresh process, by `/usr/bin/time` (Debian package
/// `time`): modaliasd with its saved index and compiling from the text files, and libkmod's
/// `modprobe --resolve-alias` on the same tree.
fn memory(kernel: &support::KernelTree, index: &std::path::Path) {
    let key = "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00";
    let exe = env!("CARGO_BIN_EXE_modaliasd");
    let root = kernel.root.to_str().unwrap();
    let peak = |cmd: &[&str]| -> Option<u64> {
        let out = std::process::Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .args(cmd)
            .stdout(std::process::Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stderr);
        text.lines().last()?.trim().parse().ok()
    };
    let idx = index.to_str().unwrap();
    let rows = [
        (
            "`modaliasd resolve`, saved index",
            peak(&[
                exe,
                "resolve",
                "--root",
                root,
                "--kver",
                &kernel.kver,
                "--index",
                idx,
                key,
            ]),
        ),
        (
            "`modaliasd resolve --no-index` (compiles)",
            peak(&[
                exe,
                "resolve",
                "--root",
                root,
                "--kver",
                &kernel.kver,
                "--no-index",
                key,
            ]),
        ),
        (
            "`modprobe -R` (libkmod, mmapped .bin indexes)",
            peak(&["modprobe", "-d", root, "-S", &kernel.kver, "-R", key]),
        ),
    ];
    println!("### Peak resident memory of one lookup, fresh process\n");
    println!("| process | peak RSS |");
    println!("|---|---:|");
    for (what, kib) in rows {
        match kib {
            Some(k) => println!("| {what} | {:.1} MiB |", k as f64 / 1024.0),
            None => println!("| {what} | not measured (/usr/bin/time missing) |"),
        }
    }
    println!();
}

/// A whole `modaliasd resolve` process on 200,000 lines against the same lookups through libkmod
/// in this process (context creation included).
fn end_to_end(kernel: &support::KernelTree, by_bus: &[(&str, Vec<Vec<u8>>)], _warm: &Libkmod) {
    const LINES: usize = 200_000;
    let all: Vec<&Vec<u8>> = by_bus.iter().flat_map(|(_, k)| k).collect();
    let lines: Vec<&Vec<u8>> = all.iter().cycle().take(LINES).copied().collect();
    let tmp = TempDir::new("bench-e2e");
    let input = tmp.path().join("input");
    let mut text = Vec::new();
    for l in &lines {
        text.extend_from_slice(l);
        text.push(b'\n');
    }
    std::fs::write(&input, &text).unwrap();
    let exe = env!("CARGO_BIN_EXE_modaliasd");
    let index = tmp.path().join("index");
    let run = |extra: &[&str]| {
        let t = Instant::now();
        let out = std::process::Command::new(exe)
            .args(["resolve", "--root"])
            .arg(&kernel.root)
            .args(["--kver", &kernel.kver])
            .args(extra)
            .stdin(std::fs::File::open(&input).unwrap())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(out.code().is_some_and(|c| c <= 1));
        t.elapsed()
    };
    let index_arg = index.to_str().unwrap();
    run(&["--index", index_arg]); // writes the index
    let cold = median((0..3).map(|_| run(&["--no-index"])).collect());
    let warm = median((0..3).map(|_| run(&["--index", index_arg])).collect());
    let ckeys: Vec<CString> = lines
        .iter()
        .filter_map(|k| CString::new(k.to_vec()).ok())
        .collect();
    let theirs = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let kmod = Libkmod::new(&kernel.module_dir());
                for k in &ckeys {
                    black_box(kmod.lookup_count(k));
                }
                t.elapsed()
            })
            .collect(),
    );
    println!("### 200,000 lookups, process start to exit\n");
    println!("| run | time | speed-up over libkmod |");
    println!("|---|---:|---:|");
    println!(
        "| libkmod, one process (`kmod_new` + lookups) | {} | 1× |",
        fmt_time(theirs.as_nanos() as f64)
    );
    for (what, d) in [
        ("`modaliasd resolve`, saved index", warm),
        ("`modaliasd resolve --no-index` (compiles first)", cold),
    ] {
        println!(
            "| {what} | {} | {:.0}× |",
            fmt_time(d.as_nanos() as f64),
            theirs.as_secs_f64() / d.as_secs_f64()
        );
    }
}
