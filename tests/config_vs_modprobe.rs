//! `modaliasd config` against Debian's `modprobe -c` on the same configuration directories.
//!
//! The configuration exercises what libkmod's parser decides: basename precedence across
//! directories and global basename order, `.conf` and `.alias` files, hidden files and
//! subdirectories, continuation lines and escapes, comments in column 0 only, dashes and
//! brackets, tabs in options, wildcard aliases and install commands, bad and incomplete lines,
//! NUL bytes and a 1 MiB line. Both read this machine's /proc/cmdline.
//!
//! Compared: every blacklist, install, remove, alias and options line in order, the module of
//! every softdep line (kmod 30's `-c` prints softdeps without the space before `post:`), and the
//! file and line of every bad-line report.

mod support;

use support::{TempDir, kernel_tree};

fn write(dir: &std::path::Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

/// Equal line lists, or a failure naming the first difference (lines cut short: one is 1 MiB).
fn same_lines(what: &str, ours: &[String], theirs: &[String]) {
    let cut = |l: Option<&String>| l.map(|l| l.chars().take(160).collect::<String>());
    if let Some(i) = (0..ours.len().max(theirs.len())).find(|&i| ours.get(i) != theirs.get(i)) {
        panic!(
            "{what} line {i} differs:\n  modaliasd: {:?}\n  modprobe:  {:?}",
            cut(ours.get(i)),
            cut(theirs.get(i))
        );
    }
}

#[test]
fn effective_configuration_matches_modprobe_c() {
    let kernel = kernel_tree("6.12");
    let tmp = TempDir::new("config");
    let high = tmp.path().join("high");
    let low = tmp.path().join("low");
    std::fs::create_dir_all(&high).unwrap();
    std::fs::create_dir_all(low.join("nested.conf")).unwrap();
    write(
        &high,
        "50-net.conf",
        b"options e1000e InterruptThrottleRate=3000 debug=2\n\
          options  snd-hda-intel\t  model=auto   \n\
          alias my-nic e1000e\n\
          options my-nic copybreak=1\n\
          alias pci:v00008086d*sv*sd*bc02* e1000e\n\
          install fuse /bin/true $CMDLINE_OPTS\n\
          install snd-* /sbin/modprobe --ignore-install $MODPROBE_MODULE\n\
          remove fuse /bin/false\n\
          blacklist pc-spkr\n\
          softdep snd-hda-intel pre: snd-hda-codec-realtek post: snd_hda_codec_hdmi\n\
          softdep snd-hda-intel pre: ignored\n",
    );
    write(
        &high,
        "10-continued.conf",
        b"options x \\\n  continued=1 \\\n  more=2\n\
          alias a\\-b c\\d\n\
          # a comment\n  # an indented comment is a bad line\n\
          \tblacklist tabbed\n\
          bogus line\nblacklist\noptions onlyname\ninstall\nalias one\n\
          alias bracket[a-z-] with-dash\n\
          include /etc/other.conf\n",
    );
    write(&high, "20-same-name.conf", b"options shadowing wins=1\n");
    write(&low, "20-same-name.conf", b"options shadowed loses=1\n");
    write(&low, "05-low.alias", b"options from-alias-file y=1\n");
    write(&low, ".hidden.conf", b"options hidden h=1\n");
    write(&low, "notconf.txt", b"options ignored i=1\n");
    write(
        &low,
        "30-nul.conf",
        b"options nul a=1\0b=2\nblack\0list x\n",
    );
    let mut long = b"options long ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 1 << 20));
    long.push(b'\n');
    write(&low, "40-long.conf", &long);

    let (modprobe, ours) = support::config_both(&kernel, &[&high, &low]);
    assert_eq!(
        ours.status.code(),
        Some(1),
        "bad lines make the exit status 1"
    );

    let theirs = support::config_lines(&modprobe.stdout, false);
    let ours_lines = support::config_lines(&ours.stdout, true);
    let plain = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| !l.starts_with("softdep ") && !l.starts_with("weakdep "))
            .cloned()
            .collect()
    };
    let softdep_modules = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("softdep "))
            .map(|l| l.split(' ').next().unwrap_or("").to_string())
            .collect()
    };
    assert!(
        theirs.len() > 10,
        "modprobe -c printed too little: {theirs:?}"
    );
    same_lines("plain", &plain(&ours_lines), &plain(&theirs));
    same_lines(
        "softdep",
        &softdep_modules(&ours_lines),
        &softdep_modules(&theirs),
    );

    // Bad lines: the same files and line numbers.
    let reports = |text: &str, marker: &str| -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| l.contains("ignoring bad line"))
            .map(|l| {
                let l = l.split(marker).nth(1).unwrap_or(l).trim();
                l.replace(" line ", ":")
            })
            .collect();
        v.sort();
        v
    };
    let theirs_bad = reports(
        &String::from_utf8_lossy(&modprobe.stderr),
        "kmod_config_parse: ",
    );
    let ours_bad = reports(
        &String::from_utf8_lossy(&ours.stderr),
        "modaliasd: warning: ",
    );
    assert!(theirs_bad.len() >= 6, "{theirs_bad:?}");
    assert_eq!(ours_bad, theirs_bad);
}

/// Binary garbage and an unreadable entry disturb nothing else: the good lines around them
/// still count, and nothing panics.
#[test]
fn garbage_configuration_is_survived() {
    let tmp = TempDir::new("garbage");
    let mut rng = support::Rng(0x6A7B);
    let garbage: Vec<u8> = (0..64 * 1024).map(|_| rng.next() as u8).collect();
    write(tmp.path(), "00-garbage.conf", &garbage);
    write(
        tmp.path(),
        "10-good.conf",
        b"options good a=1\nblacklist bad\n",
    );
    std::fs::create_dir_all(tmp.path().join("20-dir.conf")).unwrap();
    let config = modaliasd::modprobe::Config::load(&modaliasd::modprobe::ConfigSources {
        root: "/".into(),
        paths: vec![tmp.path().to_owned()],
        module_dir: None,
        cmdline: None,
    });
    assert!(
        config
            .options
            .iter()
            .any(|o| o.module == "good" && o.options == "a=1")
    );
    assert!(config.blacklist.iter().any(|b| b.module == "bad"));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.message.contains("directories inside"))
    );
}
