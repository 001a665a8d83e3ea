//! Issue 5's boot benchmark: Debian's 6.12 kernel under qemu (software emulation) with the VM
//! test's device set and initramfs, booted several times with each coldplug method in turn:
//!
//! - `run`: `modaliasd run --coldplug` in the background, `modaliasd settle`;
//! - `coldplug`: `modaliasd coldplug` (triggers add events, as udevadm trigger);
//! - `scan`: `modaliasd coldplug --scan` (reads sysfs, triggers nothing);
//! - `udevd`: Debian's systemd-udevd, `udevadm trigger --type=all --action=add`, `udevadm settle`;
//! - `oracle`: not a coldplug but a bound for one: the modules udevd's first boot
//!   ended with, all named at once to one `modaliasd load` (no discovery, no device to wait
//!   for), which shows how much of the time is the kernel's work on these modules.
//!
//! Two times per boot, both from /init's clock (/proc/uptime, 10 ms steps) and both counted from
//! the moment the method is started: when it said coldplug was done, and when the last module
//! appeared in /proc/modules (a watcher started with the method polls it every 0.1 s; the boot
//! goes on until nothing has changed for 5 s). The second is "all coldplug drivers loaded"; it
//! includes sd_mod behind USB storage, which the kernel's usb-storage only scans for after a
//! one-second delay, whichever method is used.
//!
//!   cargo bench --bench boot            MODALIASD_BOOTS=N boots per method (default 5)
//!                                        MODALIASD_VM_CPUS=N virtual CPUs (default 1)

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/vm/machine.rs"]
mod machine;

use machine::Image;

const METHODS: &[&str] = &["run", "coldplug", "scan", "udevd", "oracle"];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let boots = env_number("MODALIASD_BOOTS", 5).max(1);
    let cpus = env_number("MODALIASD_VM_CPUS", 1).max(1);
    let tree = support::kernel_tree("6.12");
    let image = Image::build(&tree);
    let mut done: Vec<Vec<f64>> = vec![Vec::new(); METHODS.len()];
    let mut last: Vec<Vec<f64>> = vec![Vec::new(); METHODS.len()];
    let mut sets: Vec<Option<Vec<String>>> = vec![None; METHODS.len()];
    let udevd = METHODS.iter().position(|m| *m == "udevd").unwrap();
    // Methods take turns, so that a slow phase of the machine hits them all alike.
    for boot in 0..boots {
        for (m, method) in METHODS.iter().enumerate() {
            let extra = match (*method, &sets[udevd]) {
                ("oracle", Some(modules)) => format!("vmmodules={}", modules.join(",")),
                _ => String::new(),
            };
            let r = image.boot_with(method, false, cpus, &extra);
            assert!(
                r.ended && r.errors.is_empty(),
                "{method}: {:?}; qemu: {}\n{}",
                r.errors,
                r.qemu,
                r.console
            );
            eprintln!(
                "boot {}/{boots} {method}: done {:.2} s, last module {:.2} s, {} modules",
                boot + 1,
                r.coldplug_seconds(),
                r.last_change - r.started,
                r.modules.len()
            );
            done[m].push(r.coldplug_seconds());
            last[m].push(r.last_change - r.started);
            match &sets[m] {
                None => sets[m] = Some(r.modules),
                Some(s) if *s != r.modules => {
                    eprintln!("{method}: the module set changed between boots")
                }
                _ => {}
            }
        }
    }
    let reference = median(last[udevd].clone());
    println!(
        "\n{boots} boots per method, {cpus} virtual CPU(s), qemu -accel tcg; medians in seconds"
    );
    println!(
        "{:<10} {:>12} {:>18} {:>16} {:>14}",
        "method", "says done", "last module loaded", "÷ udevd (last)", "same set"
    );
    for (m, method) in METHODS.iter().enumerate() {
        let l = median(last[m].clone());
        println!(
            "{:<10} {:>12.2} {:>18.2} {:>16.2} {:>14}",
            method,
            median(done[m].clone()),
            l,
            l / reference,
            if sets[m] == sets[udevd] { "yes" } else { "NO" }
        );
    }
}
