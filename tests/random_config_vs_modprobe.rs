//! Random modprobe.d configurations against Debian's modprobe: what the hand-written
//! configurations of config_vs_modprobe.rs and load_vs_modprobe.rs do not think of.
//!
//! Each seed writes a configuration over two directories from every command (alias, options,
//! install, remove, blacklist, softdep) on real module names of the 6.12 tree, built-in ones,
//! names that exist nowhere, and aliases of each other (chains, loops, wildcards), with dashes
//! and underscores swapped, random blanks, continuation lines, comments and bad lines. Then
//! every name it mentions and a few others go through `modaliasd load --dry-run --show-depends`
//! and `modprobe --show-depends` (with and without `-b`, sometimes with extra options): exit
//! status and the distinct output lines must agree, and `modaliasd config` must print the
//! plain lines `modprobe -c` prints, in its order. A failure names the seed and the files.

#[path = "support/corpus.rs"]
mod corpus;
mod support;

use modaliasd::index::ModuleTree;
use std::path::Path;
use support::{KernelTree, Rng, TempDir, kernel_tree};

/// Seeds per run; MODALIASD_CONFIG_SEEDS=N runs more, and MODALIASD_CONFIG_FIRST_SEED=N
/// starts elsewhere.
fn seeds() -> std::ops::RangeInclusive<u64> {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let first = env("MODALIASD_CONFIG_FIRST_SEED", 1);
    first..=first + env("MODALIASD_CONFIG_SEEDS", 12) - 1
}

fn pick(rng: &mut Rng, from: &[String]) -> String {
    from[rng.below(from.len())].clone()
}

/// `name` with some of its dashes and underscores swapped: the same module to libkmod.
fn respell(rng: &mut Rng, name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '_' | '-' if rng.chance(2) => {
                if c == '_' {
                    '-'
                } else {
                    '_'
                }
            }
            c => c,
        })
        .collect()
}

/// Blanks between tokens, as people type them.
fn blank(rng: &mut Rng) -> &'static str {
    if rng.chance(40) {
        // What editors and other systems leave behind: C whitespace that is no separator to
        // libkmod's strtok (" \t"), but is to its softdep splitting.
        return ["\r", "\x0b", "\x0c", " \r "][rng.below(4)];
    }
    [" ", " ", " ", "  ", "\t", " \t "][rng.below(6)]
}

fn line(rng: &mut Rng, words: &[&str]) -> String {
    let mut s = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            // A continuation line now and then, never after the last word.
            if rng.chance(15) {
                s.push_str(" \\\n");
            }
            s.push_str(blank(rng));
        }
        s.push_str(w);
    }
    if rng.chance(8) {
        s.push_str(blank(rng));
    }
    // A file written on another system: CRLF line ends.
    if rng.chance(20) {
        s.push('\r');
    }
    s.push('\n');
    s
}

struct Names {
    /// Modules of the tree (with dependencies and without), built-in modules, names that
    /// exist nowhere, and the aliases this configuration defines.
    modules: Vec<String>,
    aliases: Vec<String>,
}

fn names(tree: &ModuleTree, rng: &mut Rng) -> Names {
    let mut modules: Vec<String> = (0..14)
        .map(|_| tree.modules[rng.below(tree.modules.len())].name.clone())
        .collect();
    // Modules with long dependency chains make the interesting plans.
    for m in [
        "snd_hda_intel",
        "e1000e",
        "btrfs",
        "xfs",
        "usb_storage",
        "i915",
    ] {
        if rng.chance(2) {
            modules.push(m.to_string());
        }
    }
    for _ in 0..3 {
        modules.push(tree.builtin[rng.below(tree.builtin.len())].clone());
    }
    modules.push(format!("nosuch_{}", rng.below(100)));
    let aliases = (0..5).map(|i| format!("my-alias-{i}")).collect();
    Names { modules, aliases }
}

fn configuration(rng: &mut Rng, n: &Names, tree: &ModuleTree) -> String {
    let mut text = String::new();
    let any = |rng: &mut Rng| -> String {
        if rng.chance(3) {
            pick(rng, &n.aliases)
        } else {
            let m = pick(rng, &n.modules);
            respell(rng, &m)
        }
    };
    for _ in 0..10 + rng.below(25) {
        let l = match rng.below(12) {
            0 | 1 => {
                let (name, target) = (pick(rng, &n.aliases), any(rng));
                line(rng, &["alias", &name, &target])
            }
            2 => {
                // A wildcard alias over a real pattern's head, or an alias named like a module.
                let a = &tree.aliases[rng.below(tree.aliases.len())];
                let head: String = String::from_utf8_lossy(&a.pattern)
                    .chars()
                    .take_while(|c| *c != '*')
                    .take(12)
                    .collect();
                let name = if rng.chance(2) {
                    format!("{head}*")
                } else {
                    let m = pick(rng, &n.modules);
                    respell(rng, &m)
                };
                let target = any(rng);
                line(rng, &["alias", &name, &target])
            }
            3 | 4 => {
                let module = any(rng);
                let opts = ["a=1", "b=x,y", "c", "d=\"q r\"", "e=-1", "f=0x10"];
                let mut w = vec!["options", module.as_str()];
                for _ in 0..rng.below(4) {
                    w.push(opts[rng.below(opts.len())]);
                }
                line(rng, &w)
            }
            5 => {
                let module = any(rng);
                let cmd = if rng.chance(2) {
                    vec!["/bin/true"]
                } else {
                    vec![
                        "/sbin/modprobe",
                        "--ignore-install",
                        "$MODPROBE_MODULE",
                        "$CMDLINE_OPTS",
                    ]
                };
                let mut w = vec!["install", module.as_str()];
                w.extend(cmd);
                line(rng, &w)
            }
            6 => {
                let module = any(rng);
                line(rng, &["remove", &module, "/bin/true"])
            }
            7 | 8 => {
                let module = any(rng);
                line(rng, &["blacklist", &module])
            }
            9 | 10 => {
                let module = any(rng);
                let mut w: Vec<String> = vec!["softdep".into(), module];
                for part in ["pre:", "post:"] {
                    if rng.chance(3) {
                        continue;
                    }
                    w.push(part.into());
                    for _ in 0..1 + rng.below(3) {
                        w.push(any(rng));
                    }
                }
                let w: Vec<&str> = w.iter().map(String::as_str).collect();
                line(rng, &w)
            }
            _ => {
                let bad = [
                    "options e1000e a=1 # not a comment to libkmod\n",
                    "blacklist e1000e # nor here\n",
                    "# a comment\n",
                    "\n",
                    "options\n",
                    "alias only-one\n",
                    "softdep\n",
                    "frobnicate this\n",
                    "blacklist\n",
                    "install nothing-to-run\n",
                ];
                bad[rng.below(bad.len())].to_string()
            }
        };
        text.push_str(&l);
    }
    text
}

fn dirs_text(high: &Path, low: &Path) -> String {
    let mut s = String::new();
    for d in [high, low] {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            s += &format!(
                "--- {}\n{}",
                p.display(),
                std::fs::read_to_string(&p).unwrap()
            );
        }
    }
    s
}

fn compare_plans(kernel: &KernelTree, seed: u64, high: &Path, low: &Path, queries: &[String]) {
    for (i, name) in queries.iter().enumerate() {
        let b = i % 2 == 1;
        let opts = if i % 4 == 3 { "extra=1" } else { "" };
        let (theirs, ours) = support::show_depends_both(kernel, &[high, low], name, b, opts);
        let context = || {
            format!(
                "seed {seed}, {name:?} (-b {b}, options {opts:?})\nmodprobe said: {}{}\nwe said: {}{}\n{}",
                String::from_utf8_lossy(&theirs.stdout),
                String::from_utf8_lossy(&theirs.stderr),
                String::from_utf8_lossy(&ours.stdout),
                String::from_utf8_lossy(&ours.stderr),
                dirs_text(high, low)
            )
        };
        assert_eq!(
            ours.status.code(),
            theirs.status.code(),
            "exit status: {}",
            context()
        );
        assert_eq!(
            support::distinct_lines(&ours.stdout, kernel),
            support::distinct_lines(&theirs.stdout, kernel),
            "{}",
            context()
        );
    }
}

fn compare_config(kernel: &KernelTree, seed: u64, high: &Path, low: &Path) {
    let (theirs, ours) = support::config_both(kernel, &[high, low]);
    // softdep lines are left out: kmod 30's -c prints them without the space before `post:`.
    let plain = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| !l.starts_with("softdep ") && !l.starts_with("weakdep "))
            .collect()
    };
    assert_eq!(
        plain(support::config_lines(&ours.stdout, true)),
        plain(support::config_lines(&theirs.stdout, false)),
        "seed {seed}: config against modprobe -c\n{}",
        dirs_text(high, low)
    );
}

#[test]
fn random_configurations_plan_as_modprobe_does() {
    let kernel = kernel_tree("6.12");
    let tree = ModuleTree::load(&kernel.module_dir()).unwrap();
    let mut printed = 0;
    for seed in seeds() {
        let mut rng = Rng(0xC0F1_6000 + seed);
        let n = names(&tree, &mut rng);
        let tmp = TempDir::new("random-config");
        let high = tmp.path().join("high");
        let low = tmp.path().join("low");
        std::fs::create_dir_all(&high).unwrap();
        std::fs::create_dir_all(&low).unwrap();
        // One basename in both directories (the higher one's wins), one in each.
        std::fs::write(high.join("50-a.conf"), configuration(&mut rng, &n, &tree)).unwrap();
        std::fs::write(
            high.join("60-same.conf"),
            configuration(&mut rng, &n, &tree),
        )
        .unwrap();
        std::fs::write(low.join("60-same.conf"), configuration(&mut rng, &n, &tree)).unwrap();
        std::fs::write(low.join("40-low.conf"), configuration(&mut rng, &n, &tree)).unwrap();

        let mut queries: Vec<String> = n.aliases.clone();
        queries.extend(n.modules.iter().map(|m| respell(&mut rng, m)));
        // MODALIAS strings of the chosen modules: the blacklist applies to what they resolve to.
        for a in tree
            .aliases
            .iter()
            .filter(|a| n.modules.contains(&a.module))
            .step_by(7)
        {
            let key = corpus::concretize(&a.pattern, &mut rng);
            queries.push(String::from_utf8_lossy(&key).into_owned());
        }
        compare_config(&kernel, seed, &high, &low);
        compare_plans(&kernel, seed, &high, &low, &queries);
        printed += queries.len();
    }
    assert!(printed > 200, "only {printed} queries");
}
