//! `cargo fuzz run uevent`: any bytes through the uevent parser and the rules; never a panic,
//! and a parsed event answers consistently.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modaliasd::uevent::Event;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = Event::parse(data) {
        let vars: Vec<_> = event.vars().collect();
        for (k, v) in &vars {
            assert!(!k.is_empty());
            assert_eq!(event.get(k).is_some(), true);
            let _ = v;
        }
        let mut rules = modaliasd::rules::Rules::default();
        rules.parse(std::path::Path::new("fuzz"), modaliasd::rules::DEFAULT_RULES);
        let _ = rules.apply(&event);
    }
});
