//! The loader against a fake kernel that records every insertion, on real Debian module trees:
//! which system call and flags each module gets, user-space decompression of real `.ko.xz`,
//! order against dependencies, options, install commands, errors, each module once, and
//! concurrency (without timing assertions: what is checked is who waited for whom).

mod support;

use modaliasd::index::ModuleTree;
use modaliasd::loader::compression::Compression;
use modaliasd::loader::fake::FakeKernel;
use modaliasd::loader::kernel::{Errno, MODULE_INIT_COMPRESSED_FILE};
use modaliasd::loader::{Loaded, Loader};
use modaliasd::modprobe::plan::{BlacklistMode, Outcome, Planner, Step};
use modaliasd::modprobe::{Config, ConfigSources};
use modaliasd::resolve::Resolver;
use std::collections::HashMap;
use std::time::Duration;
use support::{KernelTree, TempDir, kernel_tree};

struct World {
    kernel: KernelTree,
    tree: ModuleTree,
    resolver: Resolver,
    config: Config,
}

fn world(series: &str, config_text: &str) -> (World, TempDir) {
    let kernel = kernel_tree(series);
    let tmp = TempDir::new("loader");
    let conf = tmp.path().join("t.conf");
    std::fs::write(&conf, config_text).unwrap();
    let tree = ModuleTree::load(&kernel.module_dir()).unwrap();
    let resolver = Resolver::build(&tree);
    let config = Config::load(&ConfigSources {
        root: "/".into(),
        paths: vec![conf],
        module_dir: None,
        cmdline: None,
    });
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    (
        World {
            kernel,
            tree,
            resolver,
            config,
        },
        tmp,
    )
}

fn plan(w: &World, name: &str) -> Vec<Step> {
    let planner = Planner::new(&w.tree, &w.resolver, &w.config);
    match planner.plan(name, BlacklistMode::Always, "") {
        Outcome::Steps(s) => s,
        Outcome::NotFound => panic!("{name} not found"),
    }
}

fn loader(w: &World, kernel: FakeKernel) -> Loader<FakeKernel> {
    Loader::new(kernel, w.kernel.module_dir())
}

#[test]
fn compressed_modules_go_the_way_the_kernel_can_take_them() {
    let (w, _tmp) = world("6.12", "options e1000e debug=2\n");
    let steps = plan(&w, "e1000e");
    // No kernel decompressor: decompressed here, init_module with a real ELF image.
    let l = loader(&w, FakeKernel::default());
    assert_eq!(
        l.load_plans(std::slice::from_ref(&steps)).last().unwrap().1,
        Ok(Loaded::Inserted)
    );
    let log = l.kernel.log();
    assert!(
        log.iter()
            .all(|i| i.user_decompressed && i.elf && i.flags == 0),
        "{log:?}"
    );
    let e1000e = log.iter().find(|i| i.module == "e1000e").unwrap();
    assert_eq!(e1000e.options, "debug=2 ");
    // The kernel has the xz decompressor: finit_module with MODULE_INIT_COMPRESSED_FILE.
    let l = loader(&w, FakeKernel::new().with_decompressor(Compression::Xz));
    l.load_plans(&[steps]);
    assert!(
        l.kernel
            .log()
            .iter()
            .all(|i| !i.user_decompressed && i.flags == MODULE_INIT_COMPRESSED_FILE)
    );
}

#[test]
fn plain_modules_use_finit_module_without_flags() {
    let (w, _tmp) = world("6.1", "");
    let l = loader(&w, FakeKernel::default());
    let results = l.load_plans(&[plan(&w, "snd-hda-intel")]);
    assert!(
        results.iter().all(|(_, r)| *r == Ok(Loaded::Inserted)),
        "{results:?}"
    );
    let log = l.kernel.log();
    assert!(
        log.iter()
            .all(|i| !i.user_decompressed && i.flags == 0 && i.elf)
    );
}

#[test]
fn dependencies_first_each_module_once_in_parallel() {
    let (w, _tmp) = world(
        "6.12",
        "softdep snd-hda-intel pre: snd-hda-codec-realtek post: snd-hda-codec-hdmi\n",
    );
    let names = [
        "snd-hda-intel",
        "e1000e",
        "usbhid",
        "xhci-pci",
        "ahci",
        "virtio-net",
        "igb",
        "snd-usb-audio",
    ];
    let plans: Vec<Vec<Step>> = names.iter().map(|n| plan(&w, n)).collect();
    let kernel = FakeKernel::new().with_delay(Duration::from_millis(20));
    let mut l = loader(&w, kernel);
    l.threads = 8;
    // The same plans from two callers at once, then once more: still one insertion each.
    std::thread::scope(|s| {
        s.spawn(|| l.load_plans(&plans));
        s.spawn(|| l.load_plans(&plans));
    });
    let again = l.load_plans(&plans);
    assert!(again.iter().all(|(_, r)| r.is_ok()), "{again:?}");
    let log = l.kernel.log();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for i in &log {
        *count.entry(i.module.as_str()).or_default() += 1;
    }
    assert!(count.values().all(|&c| c == 1), "{count:?}");
    let expected: std::collections::HashSet<&str> =
        plans.iter().flatten().map(|s| s.module.as_str()).collect();
    assert_eq!(count.len(), expected.len());
    // Every module started after everything it waits for had finished.
    let done: HashMap<&str, &modaliasd::loader::fake::Insertion> =
        log.iter().map(|i| (i.module.as_str(), i)).collect();
    for step in plans.iter().flatten() {
        for w in &step.waits_for {
            if let (Some(a), Some(b)) = (done.get(w.as_str()), done.get(step.module.as_str())) {
                assert!(
                    a.finished <= b.started,
                    "{} started before {w} finished",
                    step.module
                );
            }
        }
    }
    assert!(l.kernel.max_concurrency() > 1, "nothing ran in parallel");
}

#[test]
fn a_hung_insertion_does_not_hold_up_unrelated_modules() {
    let (w, _tmp) = world("6.12", "");
    let plans: Vec<Vec<Step>> = ["e1000e", "igb", "ahci", "usbhid"]
        .iter()
        .map(|n| plan(&w, n))
        .collect();
    let kernel = FakeKernel::new().with_module_delay("e1000e", Duration::from_millis(1500));
    let mut l = loader(&w, kernel);
    l.threads = 1;
    l.slow = Duration::from_millis(100);
    let results = l.load_plans(&plans);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let log = l.kernel.log();
    let e1000e = log.iter().find(|i| i.module == "e1000e").unwrap();
    // With one worker stuck in e1000e, the others still finished while it was inside.
    let unrelated: Vec<_> = log
        .iter()
        .filter(|i| ["igb", "ahci", "usbhid"].contains(&i.module.as_str()))
        .collect();
    assert_eq!(unrelated.len(), 3);
    assert!(
        unrelated.iter().all(|i| i.finished < e1000e.finished),
        "{log:?}"
    );
}

#[test]
fn errors_stop_dependents_but_not_for_softdeps_eexist_or_enodev() {
    let (w, _tmp) = world("6.12", "softdep e1000e pre: dummy\n");
    let snd = plan(&w, "snd-hda-intel");
    let kernel = FakeKernel::new()
        .with_error("snd", Errno(libc::ENOEXEC))
        .with_error("dummy", Errno(libc::EINVAL))
        .with_error("igb", Errno(libc::ENODEV));
    let l = loader(&w, kernel);
    l.kernel.set_live("soundcore");
    let results: HashMap<String, _> = l
        .load_plans(&[snd, plan(&w, "e1000e"), plan(&w, "igb")])
        .into_iter()
        .collect();
    assert_eq!(results["soundcore"], Ok(Loaded::AlreadyLoaded));
    let snd = results["snd"].as_ref().unwrap_err();
    assert_eq!(snd.errno, Some(Errno(libc::ENOEXEC)));
    assert!(
        snd.to_string().contains("Exec format error (ENOEXEC)"),
        "{snd}"
    );
    let top = results["snd_hda_intel"].as_ref().unwrap_err();
    assert!(top.message.contains("dependency"), "{top}");
    // A failed softdep does not stop the module; ENODEV is no failure on hotplug.
    assert!(results["dummy"].is_err());
    assert_eq!(results["e1000e"], Ok(Loaded::Inserted));
    assert_eq!(results["igb"], Ok(Loaded::NoDevice));
    assert!(!l.kernel.log().iter().any(|i| i.module == "soundcore"));
}

#[test]
fn a_dependency_that_finds_no_device_stops_its_dependents_quietly() {
    // Seen booting Debian's kernel in qemu: edac_mce_amd declines the emulated CPU (ENODEV), and
    // amd64_edac, which needs its symbols, would fail with ENOENT. libkmod stops the chain there.
    let (w, _tmp) = world("6.12", "");
    let kernel = FakeKernel::new().with_error("edac_mce_amd", Errno(libc::ENODEV));
    let l = loader(&w, kernel);
    let results: HashMap<String, _> = l
        .load_plans(&[plan(&w, "amd64_edac")])
        .into_iter()
        .collect();
    assert_eq!(results["edac_mce_amd"], Ok(Loaded::NoDevice));
    assert_eq!(results["amd64_edac"], Ok(Loaded::NoDevice));
    let tried: Vec<String> = l.kernel.log().into_iter().map(|i| i.module).collect();
    assert!(!tried.iter().any(|m| m == "amd64_edac"), "{tried:?}");
    assert!(tried.iter().any(|m| m == "edac_mce_amd"), "{tried:?}");
}

#[test]
fn install_commands_run_with_the_module_and_its_options() {
    let tmp = TempDir::new("install");
    let out = tmp.path().join("ran");
    let conf = format!(
        "install e1000e echo \"$MODPROBE_MODULE:$CMDLINE_OPTS\" > {}\noptions e1000e debug=2\ninstall igb false\n",
        out.display()
    );
    let (w, _t) = world("6.12", &conf);
    let l = loader(&w, FakeKernel::default());
    let results: HashMap<String, _> = l
        .load_plans(&[plan(&w, "e1000e"), plan(&w, "igb")])
        .into_iter()
        .collect();
    assert_eq!(results["e1000e"], Ok(Loaded::InstallCommand));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "e1000e:debug=2 \n");
    assert!(
        results["igb"]
            .as_ref()
            .unwrap_err()
            .message
            .contains("failed")
    );
    assert!(l.kernel.log().iter().all(|i| i.module != "e1000e"));
}

#[test]
fn corrupt_and_truncated_modules_are_clear_errors() {
    let (w, _tmp) = world("6.12", "");
    let real = w.tree.modules.iter().find(|m| m.name == "dummy").unwrap();
    let data = std::fs::read(w.kernel.module_dir().join(&real.path)).unwrap();
    let dir = TempDir::new("corrupt");
    let mut truncated = data[..data.len() / 2].to_vec();
    std::fs::write(dir.path().join("half.ko.xz"), &truncated).unwrap();
    truncated = data.clone();
    truncated[40] ^= 0xFF;
    std::fs::write(dir.path().join("flipped.ko.xz"), &truncated).unwrap();
    let l = Loader::new(FakeKernel::default(), dir.path().to_owned());
    for file in ["half.ko.xz", "flipped.ko.xz", "absent.ko.xz"] {
        let step = Step {
            module: file.split('.').next().unwrap().to_owned(),
            action: modaliasd::modprobe::plan::Action::Insert {
                path: file.to_owned(),
            },
            options: String::new(),
            required: true,
            waits_for: Vec::new(),
        };
        let err = l.insert(&step).unwrap_err();
        assert!(err.errno.is_some(), "{file}: {err}");
    }
    assert!(l.kernel.log().is_empty());
}

#[test]
fn modules_dep_paths_that_leave_the_module_directory_are_refused() {
    let root = TempDir::new("escape");
    let dir = root.path().join("lib/modules/9.9");
    std::fs::create_dir_all(dir.join("kernel")).unwrap();
    std::fs::write(
        dir.join("modules.dep"),
        "kernel/ok.ko:\n../../../../etc/evil.ko:\n/etc/abs.ko:\nkernel/../../up.ko:\n",
    )
    .unwrap();
    std::fs::write(dir.join("modules.alias"), "alias dev:evil evil\n").unwrap();
    std::fs::write(dir.join("kernel/ok.ko"), b"\x7fELF fake").unwrap();
    let tree = ModuleTree::load(&dir).unwrap();
    let resolver = Resolver::build(&tree);
    let config = Config::default();
    let planner = Planner::new(&tree, &resolver, &config);
    for name in ["evil", "dev:evil", "abs", "up"] {
        let Outcome::Steps(steps) = planner.plan(name, BlacklistMode::Always, "") else {
            panic!("{name} resolves");
        };
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0].action,
            modaliasd::modprobe::plan::Action::Missing,
            "{name}"
        );
        assert_eq!(steps[0].show_depends_line("/lib/modules/9.9"), None);
        let l = Loader::new(FakeKernel::new(), dir.clone());
        assert!(l.insert(&steps[0]).is_err());
        assert!(l.kernel.log().is_empty(), "{name} reached the kernel");
    }
    let Outcome::Steps(ok) = planner.plan("ok", BlacklistMode::Always, "") else {
        panic!("ok resolves");
    };
    let l = Loader::new(FakeKernel::new(), dir.clone());
    assert_eq!(l.insert(&ok[0]), Ok(Loaded::Inserted));
}
