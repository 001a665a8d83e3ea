//! The recording format written by `modaliasd record` and read by `modaliasd replay`.
//!
//! ```text
//! # modaliasd recording 1
//! 1732245123.123456 add@/devices/pci0000:00/0000:00:02.0 ACTION=add DEVPATH=/devices/... SUBSYSTEM=pci MODALIAS=pci:v... SEQNUM=1520
//! ```
//!
//! One event per line: the receive time in seconds since the epoch (microseconds), then the
//! event exactly as the kernel sent it, its strings separated by single spaces instead of NUL
//! bytes. Every key is kept. A byte that is not printable ASCII, a space or a backslash is
//! written `\xHH`, so any event survives the round trip. Lines starting with `#` and blank
//! lines are ignored.

use std::io::{BufRead, Write};

pub const HEADER: &str = "# modaliasd recording 1";

fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if (0x21..=0x7E).contains(&b) && b != b'\\' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
}

fn unescape(field: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' {
            if field.get(i + 1) != Some(&b'x') {
                return None;
            }
            let hex = std::str::from_utf8(field.get(i + 2..i + 4)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    Some(out)
}

/// One line for a kernel-format message received at `time` (seconds since the epoch).
pub fn format_line(time: f64, message: &[u8]) -> Vec<u8> {
    let mut line = format!("{time:.6}").into_bytes();
    let message = message.strip_suffix(b"\0").unwrap_or(message);
    for part in message.split(|&c| c == 0) {
        line.push(b' ');
        escape(&mut line, part);
    }
    line.push(b'\n');
    line
}

pub fn write_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{HEADER}")?;
    writeln!(
        out,
        "# one event per line: SECONDS ACTION@DEVPATH KEY=VALUE ... (\\xHH escapes)"
    )
}

/// An event read back: when it was received and the message in kernel format.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub line: u64,
    pub time: f64,
    pub message: Vec<u8>,
}

/// A line that is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses one line (without its newline); `Ok(None)` for comments and blank lines.
pub fn parse_line(number: u64, line: &[u8]) -> Result<Option<Recorded>, RecordError> {
    let err = |message: &str| RecordError {
        line: number,
        message: message.to_owned(),
    };
    if line.is_empty() || line[0] == b'#' || line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut fields = line.split(|&c| c == b' ').filter(|f| !f.is_empty());
    let time = fields
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| err("expected the receive time first"))?;
    let mut message = Vec::with_capacity(line.len());
    let mut any = false;
    for field in fields {
        let bytes = unescape(field).ok_or_else(|| err("bad \\x escape"))?;
        if bytes.contains(&0) {
            return Err(err("a NUL byte inside a field"));
        }
        message.extend_from_slice(&bytes);
        message.push(0);
        any = true;
    }
    if !any {
        return Err(err("no event after the time"));
    }
    super::Event::parse(&message).map_err(|e| err(&e.to_string()))?;
    Ok(Some(Recorded {
        line: number,
        time,
        message,
    }))
}

/// Every event of a recording, with an error for each bad line; reading stops only at the end
/// or on an I/O error.
pub fn read(input: impl BufRead) -> impl Iterator<Item = Result<Recorded, RecordError>> {
    input
        .split(b'\n')
        .enumerate()
        .filter_map(|(i, line)| match line {
            Ok(line) => {
                parse_line(i as u64 + 1, line.strip_suffix(b"\r").unwrap_or(&line)).transpose()
            }
            Err(e) => Some(Err(RecordError {
                line: i as u64 + 1,
                message: e.to_string(),
            })),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_byte() {
        let msg =
            b"add@/devices/x y\0ACTION=add\0DEVPATH=/devices/x y\0NAME=a\\b\xff\tc\0SEQNUM=7\0";
        let line = format_line(1.5, msg);
        assert_eq!(
            line,
            b"1.500000 add@/devices/x\\x20y ACTION=add DEVPATH=/devices/x\\x20y NAME=a\\x5cb\\xff\\x09c SEQNUM=7\n"
        );
        let back = parse_line(1, line.strip_suffix(b"\n").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(back.message, msg);
        assert_eq!(back.time, 1.5);
    }

    #[test]
    fn broken_lines_are_reported_with_numbers_and_skipped() {
        let text = b"# c\n\n1.0 add@/a ACTION=add\nnot-a-time add@/b\n2.0\n3.0 add@/c BAD\\x\n4.0 bogus@/d\n5.0 add@/e ACTION=add\n";
        let results: Vec<_> = read(&text[..]).collect();
        let ok: Vec<u64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| r.line)
            .collect();
        let bad: Vec<u64> = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| e.line)
            .collect();
        assert_eq!(ok, [3, 8]);
        assert_eq!(bad, [4, 5, 6, 7]);
    }
}
