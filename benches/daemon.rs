//! The daemon's pipeline on Debian's 6.12 tree: replay throughput, a 2,000-device coldplug in
//! `--scan` mode with faked loads, and the idle daemon's memory and wake-ups.
//!
//! `cargo bench --bench daemon` prints a Markdown report. Throughput is single-threaded.

#[path = "../tests/support/corpus.rs"]
mod corpus;
#[path = "../tests/support/mod.rs"]
mod support;

use modaliasd::daemon::{Processor, sysfs};
use modaliasd::index::ModuleTree;
use modaliasd::loader::Loader;
use modaliasd::loader::compression::Compression;
use modaliasd::loader::fake::FakeKernel;
use modaliasd::matcher::Scratch;
use modaliasd::modprobe::plan::Planner;
use modaliasd::modprobe::{Config, ConfigSources};
use modaliasd::resolve::{NoConfig, Resolution, Resolver};
use modaliasd::rules::{Request, Rules};
use modaliasd::uevent::Event;
use modaliasd::uevent::record;
use std::hint::black_box;
use std::time::{Duration, Instant};
use support::{Rng, TempDir};

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
    let mut rules = Rules::default();
    rules.parse(
        std::path::Path::new("80-drivers.rules"),
        modaliasd::rules::DEFAULT_RULES,
    );
    println!("## The daemon's pipeline on Debian {}\n", kernel.kver);
    println!("| measure | result | target |");
    println!("|---|---:|---:|");

    // 1. Parse, rules and resolve, one thread: 200,000 add events with distinct modaliases.
    let mut rng = Rng(0xDAE);
    let messages: Vec<Vec<u8>> = tree
        .aliases
        .iter()
        .cycle()
        .step_by(7)
        .take(200_000)
        .enumerate()
        .map(|(i, a)| {
            let m = corpus::concretize(&a.pattern, &mut rng);
            let mut msg = format!("add@/devices/pci0000:00/dev{i}\0ACTION=add\0DEVPATH=/devices/pci0000:00/dev{i}\0SUBSYSTEM=pci\0MODALIAS=").into_bytes();
            msg.extend_from_slice(&m);
            msg.extend_from_slice(format!("\0SEQNUM={i}\0").as_bytes());
            msg
        })
        .collect();
    let mut scratch = Scratch::default();
    let mut res = Resolution::default();
    // Median of 7 passes: one pass is at the mercy of whatever else the machine does.
    let mut rounds: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let mut resolved = 0usize;
            for msg in &messages {
                let event = Event::parse(msg).unwrap();
                for request in rules.apply(&event) {
                    if let (Request::Load(names), Some(m)) = (request, event.modalias()) {
                        if names.is_empty()
                            && resolver
                                .resolve_into(m, &NoConfig, &mut scratch, &mut res)
                                .is_ok()
                        {
                            resolved += res.modules.len();
                        }
                    }
                }
            }
            black_box(resolved);
            t.elapsed()
        })
        .collect();
    rounds.sort();
    let elapsed = rounds[rounds.len() / 2];
    println!(
        "| parse + rules + resolve, distinct modaliases (median of 7) | {:.2} M events/s | 1 M events/s |",
        messages.len() as f64 / elapsed.as_secs_f64() / 1e6
    );

    // 2. The recorded coldplug, replayed over and over with new device paths: the whole
    //    Processor (plans included; repeated modaliases are skipped as the daemon skips them).
    let recording = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/coldplug.rec"
    ))
    .unwrap();
    let recorded: Vec<Vec<u8>> = record::read(&recording[..])
        .filter_map(Result::ok)
        .map(|r| r.message)
        .collect();
    let planner = Planner::new(&tree, &resolver, &config);
    let mut processor = Processor::new(&planner, &rules);
    let total = 1_000_000;
    let stream: Vec<&Vec<u8>> = recorded.iter().cycle().take(total).collect();
    let t = Instant::now();
    let mut plans = 0usize;
    for msg in &stream {
        if let Ok(event) = Event::parse(msg) {
            plans += processor.handle(&event).plans.len();
        }
    }
    let elapsed = t.elapsed();
    black_box(plans);
    println!(
        "| full pipeline (rules, dedupe, plans) on the recorded coldplug, 1 M events | {:.2} M events/s | |",
        total as f64 / elapsed.as_secs_f64() / 1e6
    );

    // 3. Coldplug --scan of a fake sysfs with 2,000 devices, loads faked.
    let root = TempDir::new("bench-sysfs");
    let mut rng = Rng(0x2000);
    for (i, a) in tree.aliases.iter().step_by(13).take(2000).enumerate() {
        let d = root
            .path()
            .join(format!("sys/devices/platform/bus{}/dev{i}", i % 40));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("modalias"),
            [&corpus::concretize(&a.pattern, &mut rng)[..], b"\n"].concat(),
        )
        .unwrap();
        for attr in ["uevent", "power", "driver_override", "vendor", "device"] {
            std::fs::write(d.join(attr), b"x\n").unwrap();
        }
    }
    let run = || {
        let t = Instant::now();
        let mut processor = Processor::new(&planner, &rules);
        let mut all = Vec::new();
        for msg in sysfs::scan(root.path()) {
            if let Ok(event) = Event::parse(&msg) {
                all.extend(processor.handle(&event).plans);
            }
        }
        let planned = t.elapsed();
        let loader = Loader::new(
            FakeKernel::new().with_decompressor(Compression::Xz),
            dir.clone(),
        );
        let results = loader.load_plans(&all);
        black_box(results.len());
        (t.elapsed(), planned, results.len())
    };
    run();
    let mut times: Vec<(Duration, Duration, usize)> = (0..5).map(|_| run()).collect();
    times.sort();
    let (total, planned, modules) = times[2];
    println!(
        "| coldplug --scan, 2,000 devices ({modules} distinct modules), faked loads | {:.1} ms (scan + plans {:.1} ms) | 50 ms |",
        total.as_secs_f64() * 1e3,
        planned.as_secs_f64() * 1e3
    );

    // 4. The idle daemon: resident memory and wake-ups over 3 s.
    if let Some((rss, wakeups)) = idle_daemon(&kernel) {
        println!(
            "| idle `run` (saved index), resident | {:.1} MiB | 8 MiB |",
            rss as f64 / 1024.0
        );
        println!("| idle `run`, wake-ups in 3 s | {wakeups} | 0 |");
    } else {
        println!("| idle `run` | not measured (needs root for the netlink socket) | |");
    }
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn ctx_switches(pid: u32) -> u64 {
    // All threads of the process.
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
                for l in s.lines() {
                    if let Some(v) = l
                        .strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                    {
                        total += v.trim().parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
    }
    total
}

fn idle_daemon(kernel: &support::KernelTree) -> Option<(u64, u64)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_modaliasd"))
        .args(["run", "--cmdline", "none", "-C", "/dev/null", "--root"])
        .arg(&kernel.root)
        .args(["--kver", &kernel.kver])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut err = std::io::BufReader::new(child.stderr.take()?);
    let mut line = String::new();
    while err.read_line(&mut line).ok()? > 0 && !line.contains("listening") {
        line.clear();
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id();
    let rss = status_field(pid, "VmRSS:");
    let before = ctx_switches(pid);
    std::thread::sleep(Duration::from_secs(3));
    let wakeups = ctx_switches(pid) - before;
    let _ = child.kill();
    let _ = child.wait();
    Some((rss?, wakeups))
}
