//! Just enough JSON output for our records, without a serialisation framework.

use std::io::Write;

/// Writes `bytes` as a JSON string. Bytes that are not UTF-8 are written as `\u00XX` (their
/// Latin-1 reading), so that every input, however odd, gives valid JSON.
pub fn string(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(b"\"")?;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.write_all(b"\\\"")?,
                '\\' => out.write_all(b"\\\\")?,
                '\n' => out.write_all(b"\\n")?,
                '\t' => out.write_all(b"\\t")?,
                '\r' => out.write_all(b"\\r")?,
                c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
                c => write!(out, "{c}")?,
            }
        }
        for &b in chunk.invalid() {
            write!(out, "\\u{:04x}", b)?;
        }
    }
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        let mut v = Vec::new();
        super::string(&mut v, b"a\"b\\c\n\x01\xff\xc3\xa9").unwrap();
        assert_eq!(String::from_utf8(v).unwrap(), r#""a\"b\\c\n\u0001\u00ffé""#);
    }
}
