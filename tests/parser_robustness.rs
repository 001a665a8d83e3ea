//! The fuzz targets' properties (fuzz/fuzz_targets), run deterministically on every test run:
//! real messages mutated and truncated at random through the uevent parser and the recording
//! reader. Never a panic; parsed events answer consistently; recordings round-trip.

mod support;

use modaliasd::uevent::{Event, record};
use support::Rng;

fn seeds() -> Vec<Vec<u8>> {
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/coldplug.rec"
    ))
    .unwrap();
    record::read(&text[..])
        .filter_map(Result::ok)
        .map(|r| r.message)
        .collect()
}

#[test]
fn mutated_messages_never_break_the_parser() {
    let seeds = seeds();
    assert!(seeds.len() > 100);
    let mut rng = Rng(0xF022);
    let mut parsed = 0;
    for _ in 0..200_000 {
        let mut m = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(m.len().max(1));
            match rng.below(5) {
                0 if !m.is_empty() => m[i] = rng.next() as u8,
                1 if !m.is_empty() => m[i] = [0, b'=', b'@', b'\n'][rng.below(4)],
                2 => m.truncate(i),
                3 => m.insert(i.min(m.len()), rng.next() as u8),
                _ => {
                    let copy = m.clone();
                    m.extend_from_slice(&copy[..copy.len().min(200)]);
                }
            }
        }
        if let Ok(e) = Event::parse(&m) {
            parsed += 1;
            for (k, v) in e.vars() {
                assert!(!k.is_empty());
                assert!(e.get(k).is_some());
                let _ = v;
            }
            // Whatever parses survives the recording format unchanged.
            let line = record::format_line(1.0, &m);
            let back = record::parse_line(1, line.strip_suffix(b"\n").unwrap())
                .expect("a parsed event records")
                .expect("not a comment");
            assert_eq!(
                back.message,
                m.strip_suffix(b"\0")
                    .unwrap_or(&m)
                    .iter()
                    .copied()
                    .chain([0])
                    .collect::<Vec<u8>>()
            );
        }
        let _ = record::parse_line(1, &m);
    }
    assert!(parsed > 10_000, "only {parsed} mutated messages parsed");
}

/// `text` with a few random byte-level changes: replaced, inserted (often a byte the syntax
/// cares about), deleted, or the text cut short.
fn mutate_text(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    let special = b"\"\\=!,*?[]{}#$%:\n\t +-_.";
    let mut m = text.to_vec();
    for _ in 0..1 + rng.below(6) {
        let i = rng.below(m.len().max(1)).min(m.len());
        match rng.below(5) {
            0 if i < m.len() => m[i] = rng.next() as u8,
            1 if i < m.len() => m[i] = special[rng.below(special.len())],
            2 => m.insert(i, special[rng.below(special.len())]),
            3 if i < m.len() => {
                m.remove(i);
            }
            _ => m.truncate(i),
        }
    }
    m
}

/// The rules parser and matcher on mutated rule files (the shipped ones), applied to the recorded
/// events, and the modprobe.d parser on mutated configuration: never a panic, and a bad line
/// costs only itself.
#[test]
fn mutated_rules_and_configuration_never_break_their_parsers() {
    use modaliasd::modprobe::Config;
    use modaliasd::rules::Rules;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/rules.d");
    let rule_files: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let messages = seeds();
    let events: Vec<Event> = messages
        .iter()
        .filter_map(|m| Event::parse(m).ok())
        .collect();
    assert!(events.len() > 100);
    let config_text: &[u8] = b"alias pci:v00008086d*sv*sd*bc02* e1000e\n\
        options e1000e InterruptThrottleRate=3000,3000 debug=2\n\
        install fuse /bin/true $CMDLINE_OPTS\nremove fuse /bin/false\nblacklist pcspkr\n\
        softdep snd-hda-intel pre: snd-hda-codec-realtek post: snd_hda_codec_hdmi\n\
        options snd-hda-intel \\\n  model=auto\n# comment\n";
    let mut rng = Rng(0x0E11_5EED);
    let (mut kept, mut config_kept) = (0, 0);
    for round in 0..3000 {
        let original = &rule_files[round % rule_files.len()];
        let text = mutate_text(&mut rng, original);
        let mut rules = Rules::default();
        rules.parse(
            std::path::Path::new("mutated.rules"),
            &String::from_utf8_lossy(&text),
        );
        kept += rules.len();
        for e in events.iter().step_by(7) {
            let _ = rules.apply(e);
        }

        let text = mutate_text(&mut rng, config_text);
        let mut config = Config::default();
        config.parse_file(std::path::Path::new("mutated.conf"), &text);
        config_kept += config.aliases.len() + config.options.len() + config.softdeps.len();
        config.parse_cmdline(&text);
    }
    // A bad line costs only itself: most of the good lines still count.
    assert!(
        kept > 6000,
        "only {kept} rules parsed from 3000 mutated files"
    );
    assert!(
        config_kept > 4000,
        "only {config_kept} entries parsed from 3000 mutated files"
    );
}
