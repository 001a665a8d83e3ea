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
