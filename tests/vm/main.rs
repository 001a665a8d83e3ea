//! Issue 5's proof on a real kernel: Debian's 6.12 kernel booted under qemu (software
//! emulation) from one initramfs, once with `modaliasd run --coldplug` and once with Debian's
//! systemd-udevd + `udevadm trigger --type=all --action=add` + `udevadm settle`. Both must end
//! with the same modules loaded; modaliasd must insert each module once, honour the modprobe.d
//! blacklist and options and the command line's options, say coldplug is complete only once it
//! is, and load the driver of a NIC hot-added through the qemu monitor.

#[path = "../support/mod.rs"]
mod support;

mod machine;

use machine::{CMDLINE_OPTION, HOTPLUG_DRIVER, Image, Report};

fn context(r: &Report) -> String {
    format!(
        "mode {}; qemu: {}\n--- console ---\n{}",
        r.mode, r.qemu, r.console
    )
}

fn assert_boot_completed(r: &Report) {
    assert!(r.ended, "the boot did not finish: {}", context(r));
    assert!(r.errors.is_empty(), "{:?}: {}", r.errors, context(r));
    assert!(!r.modules.is_empty(), "no module loaded: {}", context(r));
}

#[test]
fn modaliasd_loads_what_udevd_loads_each_module_once() {
    let tree = support::kernel_tree("6.12");
    let image = Image::build(&tree);
    // Two boots at once: one per core, and the emulated boots take most of a minute each.
    let (ours, udevd) = std::thread::scope(|s| {
        let ours = s.spawn(|| image.boot("run", true, 1));
        let udevd = s.spawn(|| image.boot("udevd", true, 1));
        (ours.join().unwrap(), udevd.join().unwrap())
    });
    assert_boot_completed(&udevd);
    assert_boot_completed(&ours);

    // The reference itself must show what is checked below, or the checks prove nothing.
    assert!(
        udevd.modules.iter().any(|m| m == "usb_storage")
            && udevd.modules.iter().any(|m| m == "sd_mod"),
        "udevd did not reach the devices behind the USB controller: {}",
        context(&udevd)
    );

    assert_eq!(
        ours.modules,
        udevd.modules,
        "modaliasd and udevd loaded different modules\n--- modaliasd ---\n{}",
        context(&ours)
    );

    assert_eq!(
        ours.daemon_exit,
        Some(0),
        "after SIGTERM: {}",
        context(&ours)
    );

    // Each module once, and none failed.
    let insertions = ours.insertions();
    let twice: Vec<_> = insertions.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "inserted more than once: {twice:?}");
    let inserted: Vec<String> = insertions.keys().cloned().collect();
    assert_eq!(
        inserted, ours.modules_after_hotplug,
        "the log's insertions are not the loaded modules"
    );
    let failures: Vec<_> = ours.log.iter().filter(|l| l.contains("error")).collect();
    assert!(failures.is_empty(), "{failures:#?}");

    // The blacklist: the virtio entropy device is there, its driver is not loaded.
    for r in [&ours, &udevd] {
        let rng = r
            .virtio
            .iter()
            .find(|(alias, _)| alias.starts_with("virtio:d00000004"))
            .unwrap_or_else(|| panic!("no virtio-rng device: {}", context(r)));
        assert_eq!(rng.1, "-", "{}: blacklisted driver bound", r.mode);
        assert!(!r.modules.iter().any(|m| m == "virtio_rng"), "{}", r.mode);
    }
    // Options from modprobe.d and from the kernel command line, as the kernel took them.
    assert_eq!(ours.params["e1000/parameters/copybreak"], "77");
    let (param, value) = CMDLINE_OPTION.split_once('=').unwrap();
    let (module, param) = param.split_once('.').unwrap();
    assert_eq!(ours.params[&format!("{module}/parameters/{param}")], value);
    assert_eq!(ours.params, udevd.params);

    // Hotplug after coldplug.
    for r in [&ours, &udevd] {
        assert!(
            r.hotplug_seconds.is_some(),
            "{}: the hot-added NIC got no driver: {}",
            r.mode,
            context(r)
        );
        assert!(r.modules_after_hotplug.iter().any(|m| m == HOTPLUG_DRIVER));
    }
    // Timings are reported, never asserted (benches/boot.rs measures them properly).
    for r in [&ours, &udevd] {
        let late: Vec<_> = r
            .modules
            .iter()
            .filter(|m| !r.modules_at_done.contains(m))
            .collect();
        eprintln!(
            "{}: coldplug reported done after {:.2} s, last module after {:.2} s \
             (loaded later than done: {late:?}); hot-added NIC bound after {:.2} s; {} modules",
            r.mode,
            r.coldplug_seconds(),
            r.last_change - r.started,
            r.hotplug_seconds.unwrap(),
            r.modules.len()
        );
    }
}
