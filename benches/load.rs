//! Load plans and parallel loading, on Debian's 6.12 tree.
//!
//! `cargo bench --bench load` prints a Markdown report:
//! - plans for every MODALIAS of a 500-device machine (this machine's sysfs strings and the
//!   tree's own patterns made concrete), computed by our planner, against the same plans from
//!   `modprobe --show-depends` run once per device (the only way to get them from kmod);
//! - a coldplug of about 60 modules with real dependencies through a fake kernel in which every
//!   insertion takes 20 ms: one at a time against the parallel scheduler.

#[path = "../tests/support/corpus.rs"]
mod corpus;
#[path = "../tests/support/mod.rs"]
mod support;

use modaliasd::index::ModuleTree;
use modaliasd::loader::Loader;
use modaliasd::loader::fake::FakeKernel;
use modaliasd::modprobe::plan::{BlacklistMode, Outcome, Planner, Step};
use modaliasd::modprobe::{Config, ConfigSources};
use modaliasd::resolve::Resolver;
use std::time::{Duration, Instant};
use support::Rng;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let kernel = support::kernel_tree("6.12");
    let dir = kernel.module_dir();
    let tree = ModuleTree::load(&dir).unwrap();
    let resolver = Resolver::build(&tree);
    let config = Config::load(&ConfigSources {
        root: "/".into(),
        paths: vec!["/dev/null".into()],
        module_dir: Some(dir.clone()),
        cmdline: None,
    });
    let planner = Planner::new(&tree, &resolver, &config);

    // 500 devices: this machine's, then patterns made concrete.
    let mut rng = Rng(0x500);
    let mut devices: Vec<String> = corpus::sysfs_modaliases()
        .into_iter()
        .map(|s| String::from_utf8_lossy(&s).into_owned())
        .collect();
    let step = tree.aliases.len() / 500;
    for a in tree.aliases.iter().step_by(step.max(1)) {
        if devices.len() == 500 {
            break;
        }
        devices
            .push(String::from_utf8_lossy(&corpus::concretize(&a.pattern, &mut rng)).into_owned());
    }
    let plan_all = || {
        devices
            .iter()
            .map(|d| planner.plan(d, BlacklistMode::Always, ""))
            .collect::<Vec<_>>()
    };
    plan_all();
    let ours = median(
        (0..9)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(plan_all());
                t.elapsed()
            })
            .collect(),
    );
    let sample: Vec<&String> = devices.iter().step_by(10).collect();
    let t = Instant::now();
    for d in &sample {
        let _ = std::process::Command::new("modprobe")
            .arg("-d")
            .arg(&kernel.root)
            .args([
                "-S",
                &kernel.kver,
                "-C",
                "/dev/null",
                "-b",
                "--show-depends",
                d,
            ])
            .output()
            .unwrap();
    }
    let theirs = t.elapsed() * (devices.len() as u32) / (sample.len() as u32);
    println!("## Load plans and loading on Debian {}\n", kernel.kver);
    println!("| task | modaliasd | reference | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| plans for {} device MODALIASes | {:.2} ms | {:.0} ms (`modprobe -b --show-depends` per device, extrapolated from {}) | {:.0}× |",
        devices.len(),
        ours.as_secs_f64() * 1e3,
        theirs.as_secs_f64() * 1e3,
        sample.len(),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );

    // Coldplug: top-level modules with shared dependencies, about 60 modules in all.
    let names = [
        "snd-hda-intel",
        "e1000e",
        "igb",
        "ixgbe",
        "usbhid",
        "hid-logitech-dj",
        "xhci-pci",
        "ahci",
        "nvme",
        "virtio-net",
        "virtio-blk",
        "i915",
        "btusb",
        "iwlwifi",
        "uas",
        "snd-usb-audio",
        "r8169",
        "mei-me",
        "intel-lpss-pci",
        "sdhci-pci",
    ];
    let mut plans: Vec<Vec<Step>> = Vec::new();
    let mut unique = std::collections::HashSet::new();
    for n in names {
        if let Outcome::Steps(steps) = planner.plan(n, BlacklistMode::Always, "") {
            for s in &steps {
                unique.insert(s.module.clone());
            }
            plans.push(steps);
            if unique.len() >= 60 {
                break;
            }
        }
    }
    let run = |threads: usize| {
        let mut loader = Loader::new(
            FakeKernel::new().with_delay(Duration::from_millis(20)),
            dir.clone(),
        );
        loader.threads = threads;
        let t = Instant::now();
        let results = loader.load_plans(&plans);
        assert!(results.iter().all(|(_, r)| r.is_ok()));
        t.elapsed()
    };
    let one_by_one = run(1);
    let parallel = run(std::thread::available_parallelism().map_or(2, |n| n.get()) * 2);
    println!(
        "| coldplug of {} modules, 20 ms per insertion | {:.0} ms (parallel) | {:.0} ms (one at a time) | {:.1}× |",
        unique.len(),
        parallel.as_secs_f64() * 1e3,
        one_by_one.as_secs_f64() * 1e3,
        one_by_one.as_secs_f64() / parallel.as_secs_f64()
    );
}
