//! Issue 5's proof on a real kernel: Debian's 6.12 kernel booted under qemu (software
//! emulation) from one initramfs, once with `modaliasd run --coldplug` and once with Debian's
//! systemd-udevd + `udevadm trigger --type=all --action=add` + `udevadm settle`. Both must end
//! with the same modules loaded; modaliasd must insert each module once, honour the modprobe.d
//! blacklist and options and the command line's options, say coldplug is complete only once it
//! is, and load the driver of a NIC hot-added through the qemu monitor.

#[path = "../support/mod.rs"]
mod support;

mod machine;

use machine::{CMDLINE_OPTION, HOTPLUG_DRIVER, Hotplug, Image, Report};

fn context(r: &Report) -> String {
    format!(
        "mode {}; qemu: {}\n--- console ---\n{}",
        r.mode, r.qemu, r.console
    )
}

/// `module` was not loaded in `before` and is in `after`.
fn came_in(before: &[String], after: &[String], module: &str) -> bool {
    !before.iter().any(|m| m == module) && after.iter().any(|m| m == module)
}

fn assert_same_modules(ours: &Report, udevd: &Report) {
    assert_eq!(
        ours.modules,
        udevd.modules,
        "modaliasd and udevd loaded different modules\n--- modaliasd ---\n{}\n--- udevd ---\n{}",
        context(ours),
        context(udevd)
    );
}

fn assert_each_inserted_once(r: &Report) {
    let twice: Vec<_> = r.insertions().into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "inserted more than once: {twice:?}");
}

fn assert_boot_completed(r: &Report) {
    assert!(r.ended, "the boot did not finish: {}", context(r));
    assert!(r.errors.is_empty(), "{:?}: {}", r.errors, context(r));
    assert!(!r.modules.is_empty(), "no module loaded: {}", context(r));
}

/// A second machine, none of its devices in the standard set: other NICs, disks behind
/// virtio, SCSI, NVMe and SD host controllers, USB 1 and 2 with HID devices behind a hub, other
/// sound cards, a watchdog, virtio input, console and balloon, an ISA panic device. What
/// udevd loads for it is computed by its own boot, as for the standard set.
fn other_devices(image: &Image) -> Vec<String> {
    let drive = |id: &str| image.drive(id);
    let mut d: Vec<String> = Vec::new();
    let mut dev = |args: &[&str]| d.extend(args.iter().map(|a| a.to_string()));
    dev(&[
        "-device", "rtl8139", "-device", "pcnet", "-device", "i82559er",
    ]);
    dev(&["-device", "vmxnet3"]);
    dev(&[
        "-drive",
        &drive("vblk"),
        "-device",
        "virtio-blk-pci,drive=vblk",
    ]);
    dev(&["-device", "virtio-scsi-pci,id=vscsi"]);
    dev(&[
        "-drive",
        &drive("vsd"),
        "-device",
        "scsi-hd,bus=vscsi.0,drive=vsd",
    ]);
    dev(&["-device", "lsi53c895a", "-device", "megasas"]);
    dev(&[
        "-drive",
        &drive("nvme"),
        "-device",
        "nvme,serial=vm1,drive=nvme",
    ]);
    dev(&[
        "-device",
        "sdhci-pci",
        "-drive",
        &drive("sd"),
        "-device",
        "sd-card,drive=sd",
    ]);
    dev(&[
        "-device",
        "ich9-usb-ehci1,id=ehci",
        "-device",
        "piix3-usb-uhci,id=uhci",
    ]);
    // A hub is full speed: behind USB 1, with the HID devices; a disk behind USB 2.
    dev(&["-device", "usb-hub,bus=uhci.0,port=1"]);
    dev(&["-device", "usb-kbd,bus=uhci.0,port=1.1"]);
    dev(&["-device", "usb-mouse,bus=uhci.0,port=1.2"]);
    dev(&["-drive", &drive("ehcistick")]);
    dev(&["-device", "usb-storage,bus=ehci.0,drive=ehcistick"]);
    dev(&["-audiodev", "none,id=snd1", "-device", "AC97,audiodev=snd1"]);
    dev(&[
        "-audiodev",
        "none,id=snd2",
        "-device",
        "ES1370,audiodev=snd2",
    ]);
    dev(&["-device", "i6300esb", "-device", "virtio-balloon-pci"]);
    dev(&[
        "-device",
        "virtio-keyboard-pci",
        "-device",
        "virtio-serial-pci",
    ]);
    dev(&["-device", "pvpanic"]);
    d
}

/// A third machine, q35 instead of pc (its own ICH9 SATA, LPC and SMBus), with display
/// adapters, USB 1 and 3 with a tablet, a network adapter and a sound card behind them, more
/// SCSI and NIC models, virtio input, and PCI devices no driver claims.
fn q35_devices(image: &Image) -> Vec<String> {
    let drive = |id: &str| image.drive(id);
    let mut d: Vec<String> = Vec::new();
    let mut dev = |args: &[&str]| d.extend(args.iter().map(|a| a.to_string()));
    dev(&["-M", "q35"]);
    dev(&["-device", "virtio-gpu-pci", "-device", "qxl"]);
    dev(&["-device", "ich9-usb-uhci1,id=u1"]);
    dev(&["-device", "usb-wacom-tablet,bus=u1.0"]);
    dev(&["-device", "qemu-xhci,id=x2", "-device", "usb-net,bus=x2.0"]);
    dev(&["-device", "usb-ccid,bus=x2.0"]);
    dev(&[
        "-chardev",
        "null,id=c1",
        "-device",
        "usb-serial,bus=x2.0,chardev=c1",
    ]);
    dev(&["-audiodev", "none,id=a3"]);
    dev(&["-device", "usb-audio,bus=x2.0,audiodev=a3"]);
    dev(&["-device", "pvscsi,id=pv", "-drive", &drive("pvd")]);
    dev(&["-device", "scsi-cd,bus=pv.0,drive=pvd"]);
    dev(&["-device", "am53c974", "-device", "dc390"]);
    dev(&[
        "-device", "ne2k_pci", "-device", "tulip", "-device", "e1000e",
    ]);
    dev(&["-object", "memory-backend-ram,id=hm,size=1M"]);
    dev(&["-device", "ivshmem-plain,memdev=hm"]);
    dev(&[
        "-device",
        "virtio-mouse-pci",
        "-device",
        "virtio-tablet-pci",
    ]);
    dev(&["-device", "pci-testdev", "-device", "edu"]);
    // The disk hot-added behind USB 3 after coldplug.
    dev(&["-drive", &drive("hot")]);
    d
}

/// Boots `image` with `devices` once with modaliasd and once with udevd, and checks that both
/// loaded the same modules, each once for modaliasd, and that the reference reached `reached`.
/// With `hotplug`, both must also have given the hot-added device its drivers, the same ones.
fn compare_with_udevd(
    image: &mut Image,
    devices: Vec<String>,
    reached: &[&str],
    hotplug: Option<Hotplug>,
) -> (Report, Report) {
    image.devices = devices;
    let with_hotplug = hotplug.is_some();
    if let Some(h) = hotplug {
        image.hotplug = h;
    }
    let image = &*image;
    let (ours, udevd) = std::thread::scope(|s| {
        let ours = s.spawn(|| image.boot("run", with_hotplug, 1));
        let udevd = s.spawn(|| image.boot("udevd", with_hotplug, 1));
        (ours.join().unwrap(), udevd.join().unwrap())
    });
    if with_hotplug {
        for r in [&ours, &udevd] {
            assert!(
                r.hotplug_seconds.is_some(),
                "{}: the hot-added {} got no driver: {}",
                r.mode,
                image.hotplug.device,
                context(r)
            );
        }
        assert_eq!(
            ours.modules_after_hotplug, udevd.modules_after_hotplug,
            "after hotplug"
        );
    }
    assert_boot_completed(&udevd);
    assert_boot_completed(&ours);
    for module in reached {
        assert!(
            udevd.modules.iter().any(|m| m == module),
            "udevd did not load {module}: {}",
            context(&udevd)
        );
    }
    assert_same_modules(&ours, &udevd);
    assert_each_inserted_once(&ours);
    (ours, udevd)
}

#[test]
fn on_a_q35_machine_modaliasd_loads_what_udevd_loads() {
    let tree = support::kernel_tree("6.12");
    let mut image = Image::build(&tree);
    let devices = q35_devices(&image);
    // Behind USB: the tablet, the network adapter and the sound card; the chipset's own
    // watchdog and SMBus; the SCSI CD-ROM.
    let reached = [
        "wacom",
        "cdc_ether",
        "snd_usb_audio",
        "iTCO_wdt",
        "i2c_i801",
        "sr_mod",
    ];
    // After coldplug, a USB disk: usb-storage for it, then, a second later (delay_use), sd_mod
    // for the SCSI disk it reveals.
    let disk = Hotplug {
        device: "usb-storage,bus=x2.0,drive=hot".into(),
        ready_when: "/sys/block/sd*".into(),
    };
    let (_, udevd) = compare_with_udevd(&mut image, devices, &reached, Some(disk));
    // The reference shows the hotplug needed both drivers.
    for module in ["usb_storage", "sd_mod"] {
        assert!(
            came_in(&udevd.modules, &udevd.modules_after_hotplug, module),
            "{module} should come with the hot-added disk: {}",
            context(&udevd)
        );
    }
}

/// A modprobe.d that uses more of the commands on the standard machine: a softdep that brings
/// two modules no device asks for (one with an option), an install command in place of a
/// present device's driver, and a second blacklisted driver. Both must apply it alike.
const RICHER_MODPROBE_CONF: &str = "\
blacklist virtio_rng
blacklist evdev
options e1000 copybreak=77
softdep e1000 pre: loop post: dummy
options loop max_loop=5
install pcspkr /bin/true
";

#[test]
fn a_richer_modprobe_d_is_applied_as_udevd_applies_it() {
    let tree = support::kernel_tree("6.12");
    let image = Image::build_with(&tree, RICHER_MODPROBE_CONF, None);
    let extra = "vmparams=loop/parameters/max_loop";
    let (ours, udevd) = std::thread::scope(|s| {
        let ours = s.spawn(|| image.boot_with("run", false, 1, extra));
        let udevd = s.spawn(|| image.boot_with("udevd", false, 1, extra));
        (ours.join().unwrap(), udevd.join().unwrap())
    });
    assert_boot_completed(&udevd);
    assert_boot_completed(&ours);
    let has = |r: &Report, m: &str| r.modules.iter().any(|x| x == m);
    // The reference shows each line at work.
    for module in ["loop", "dummy", "e1000"] {
        assert!(
            has(&udevd, module),
            "udevd without {module}: {}",
            context(&udevd)
        );
    }
    for module in ["pcspkr", "evdev", "virtio_rng"] {
        assert!(
            !has(&udevd, module),
            "udevd loaded {module}: {}",
            context(&udevd)
        );
    }
    assert_same_modules(&ours, &udevd);
    assert_eq!(udevd.params["loop/parameters/max_loop"], "5");
    assert_eq!(ours.params, udevd.params);
    assert_each_inserted_once(&ours);
}

#[test]
fn on_another_device_set_modaliasd_loads_what_udevd_loads() {
    let tree = support::kernel_tree("6.12");
    let mut image = Image::build(&tree);
    let devices = other_devices(&image);
    // What makes this set hard: HID devices behind a USB hub, disks behind USB 2 and virtio
    // SCSI, and ppdev, which no MODALIAS names (80-drivers.rules loads it when parport_pc
    // appears).
    let reached = ["usbhid", "sd_mod", "uas", "ppdev", "nvme", "mmc_block"];
    compare_with_udevd(&mut image, devices, &reached, None);
}

#[test]
fn modaliasd_loads_what_udevd_loads_each_module_once() {
    let tree = support::kernel_tree("6.12");
    let image = Image::build(&tree);
    // Two boots at once: one per core, and the emulated boots take most of a minute each.
    let (ours, udevd) = std::thread::scope(|s| {
        let ours = s.spawn(|| image.boot_with("run", true, 1, "vmrequest=1"));
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

    assert_same_modules(&ours, &udevd);

    // "Coldplug complete" (READY=1, settle) must mean the drivers are in: before the daemon
    // waited for its loads it said so with 3 of 59 modules in. Not every last one is demanded,
    // but the USB disk's is: it appears usb-storage's delay_use (1 s) after that driver binds,
    // and coldplug waits that out.
    assert!(
        ours.modules_at_done.len() * 10 >= ours.modules.len() * 9,
        "modaliasd said coldplug was complete with {} of {} modules in: {}",
        ours.modules_at_done.len(),
        ours.modules.len(),
        context(&ours)
    );
    assert!(
        ours.modules_at_done.iter().any(|m| m == "sd_mod"),
        "coldplug said complete before the USB disk's driver: {}",
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
    // The image's index was compiled when the image was built; cpio keeps whole seconds only,
    // so the daemon must know it fresh by its contents rather than compile at every boot.
    assert!(
        ours.log.iter().any(|l| l.contains("resolver: saved index")),
        "the daemon did not use the image's saved index: {}",
        context(&ours)
    );

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
    // The kernel's own request (fs-vfat), served by modaliasd linked as modprobe: vfat and
    // the fat it depends on come in, and they were not there before.
    for module in ["fat", "vfat"] {
        assert!(
            came_in(
                &ours.modules_after_hotplug,
                &ours.modules_after_request,
                module
            ),
            "{module} after the kernel's request: {}",
            context(&ours)
        );
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

use support::{module_image, strip_signature};

/// Issue 6's real failures: the 6.12 kernel refuses broken modules and modaliasd must name the
/// cause. A 6.1 module (version magic), a module with one `__versions` CRC changed
/// (modversions, the symbol exported by another module), a damaged signature, an option out of
/// its type's range, an unsigned module once `sig_enforce` is on, and the taint an unsigned
/// module leaves when enforcement is off.
#[test]
fn failed_loads_are_diagnosed_on_a_real_kernel() {
    let tree = support::kernel_tree("6.12");
    let old = support::kernel_tree("6.1");
    let overlay = support::TempDir::new("vm-overlay");
    let put = |rel: &str, image: &[u8]| {
        let path = overlay.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, image).unwrap();
    };
    put("extra/vm_vermagic.ko", &module_image(&old, "dummy"));

    let mut vcan = module_image(&tree, "vcan");
    let altered = {
        let elf = modaliasd::modinfo::elf::Elf::parse(&vcan).unwrap();
        let (index, (_, name)) = elf
            .versions()
            .into_iter()
            .enumerate()
            .find(|(_, (_, n))| n.starts_with("can_") || n.starts_with("alloc_can"))
            .expect("vcan imports a can-dev symbol");
        let table = elf.section("__versions").unwrap();
        let at = table.as_ptr() as usize - vcan.as_ptr() as usize + index * 64;
        drop(elf);
        vcan[at] ^= 0x5a;
        name
    };
    strip_signature(&mut vcan); // else the signature check fails first
    put("extra/vm_modversions.ko", &vcan);

    let mut nlmon = module_image(&tree, "nlmon");
    let n = nlmon.len();
    nlmon[n - 40 - 16] ^= 0x01; // inside the encrypted digest
    put("extra/vm_corrupt.ko", &nlmon);

    put("extra/vm_param.ko", &module_image(&tree, "ifb"));
    let mut dummy = module_image(&tree, "dummy");
    strip_signature(&mut dummy);
    put("kernel/drivers/net/dummy.ko", &dummy);
    let mut veth = module_image(&tree, "veth");
    strip_signature(&mut veth);
    put("extra/vm_unsigned.ko", &veth);

    let image = Image::build_with(
        &tree,
        "options vm_param numifbs=4294967296\n",
        Some(overlay.path()),
    );
    let r = image.boot("failures", false, 1);
    assert!(r.ended, "the boot did not finish: {}", context(&r));
    let load = |name: &str| -> (i32, String) {
        let (code, lines) = r
            .loads
            .get(name)
            .unwrap_or_else(|| panic!("no load of {name}: {}", context(&r)));
        (*code, lines.join("\n"))
    };
    let expect = |name: &str, code: i32, needles: &[&str]| {
        let (got, text) = load(name);
        assert_eq!(got, code, "{name}: exit status\n{text}");
        for needle in needles {
            assert!(
                text.contains(needle),
                "{name}: no '{needle}' in\n{text}\n--- kernel log ---\n{}",
                r.kmsg.join("\n")
            );
        }
        eprintln!("--- {name} ---\n{text}");
    };
    expect(
        "vm_vermagic",
        1,
        &[
            &format!("built for kernel {}", old.kver),
            &format!("running kernel is {}", tree.kver),
            "kernel: module dummy: ", // its own words, whichever check it failed first
        ],
    );
    expect(
        "vm_modversions",
        1,
        &[
            &format!("modversions mismatch: symbol {altered}"),
            "exported by module can_dev",
            &format!("disagrees about version of symbol {altered}"),
        ],
    );
    expect(
        "vm_corrupt",
        1,
        &["EKEYREJECTED", "signature does not match the module"],
    );
    expect(
        "vm_param",
        1,
        &[
            "option numifbs=4294967296",
            "outside the range of int",
            "invalid for parameter",
        ],
    );
    expect(
        "dummy",
        0,
        &["dummy tainted the kernel: E (unsigned module was loaded)"],
    );
    expect(
        "vm_unsigned",
        1,
        &["not signed", "sig_enforce=Y", "mokutil --import"],
    );
}

/// A fourth machine, for drivers the other sets leave out: IPMI (found through ACPI), UAS and
/// BOT disks behind USB 3, SAS, virtio crypto, IOMMU and 9p, VMware and Bochs display
/// adapters, another HDA controller; and devices Debian has no driver for (a Rocker switch, an
/// IPack carrier and its card).
fn fourth_devices(image: &Image) -> Vec<String> {
    let drive = |id: &str| image.drive(id);
    let mut d: Vec<String> = Vec::new();
    let mut dev = |args: &[&str]| d.extend(args.iter().map(|a| a.to_string()));
    dev(&["-device", "tpci200", "-device", "ipoctal232"]);
    dev(&[
        "-device",
        "ipmi-bmc-sim,id=bmc0",
        "-device",
        "isa-ipmi-kcs,bmc=bmc0",
    ]);
    dev(&["-device", "rocker"]);
    dev(&["-object", "cryptodev-backend-builtin,id=cr0"]);
    dev(&["-device", "virtio-crypto-pci,cryptodev=cr0"]);
    let shared = format!(
        "local,id=fs0,path={},security_model=none,readonly=on",
        image.dir.path().display()
    );
    dev(&["-fsdev", &shared]);
    dev(&["-device", "virtio-9p-pci,fsdev=fs0,mount_tag=host"]);
    dev(&["-device", "mptsas1068,id=mpt", "-drive", &drive("mptd")]);
    dev(&["-device", "scsi-hd,bus=mpt.0,drive=mptd"]);
    dev(&["-device", "qemu-xhci,id=x4"]);
    dev(&[
        "-device",
        "usb-uas,id=uas0,bus=x4.0",
        "-drive",
        &drive("uasd"),
    ]);
    dev(&["-device", "scsi-hd,bus=uas0.0,scsi-id=0,lun=0,drive=uasd"]);
    dev(&[
        "-device",
        "usb-bot,id=bot0,bus=x4.0",
        "-drive",
        &drive("botd"),
    ]);
    dev(&["-device", "scsi-hd,bus=bot0.0,scsi-id=0,lun=0,drive=botd"]);
    dev(&["-device", "vmware-svga", "-device", "bochs-display"]);
    dev(&["-device", "ich9-intel-hda", "-audiodev", "none,id=a4"]);
    dev(&["-device", "hda-micro,audiodev=a4"]);
    dev(&["-device", "e1000-82544gc", "-device", "pci-serial-2x"]);
    dev(&["-device", "virtio-iommu-pci", "-device", "ib700"]);
    d
}

#[test]
fn on_a_fourth_device_set_modaliasd_loads_what_udevd_loads() {
    let tree = support::kernel_tree("6.12");
    let mut image = Image::build(&tree);
    let devices = fourth_devices(&image);
    let reached = [
        "ipmi_si",
        "uas",
        "mptsas",
        "virtio_crypto",
        "virtio_iommu",
        "9pnet_virtio",
        "vmwgfx",
        "bochs",
    ];
    compare_with_udevd(&mut image, devices, &reached, None);
}
