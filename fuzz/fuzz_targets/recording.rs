//! `cargo fuzz run recording`: any bytes as a recording line; never a panic, and what parses
//! formats back to a line that parses to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modaliasd::uevent::record;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(r)) = record::parse_line(1, data) {
        let line = record::format_line(r.time, &r.message);
        let again = record::parse_line(1, line.strip_suffix(b"\n").unwrap()).unwrap().unwrap();
        assert_eq!(again.message, r.message);
    }
});
