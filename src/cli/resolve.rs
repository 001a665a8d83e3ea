//! `modaliasd resolve`: MODALIAS strings or module names in, module names out.

use super::{EXIT_INVALID_INPUT, EXIT_OK, TREE_OPTIONS_HELP, TreeOptions, json};
use crate::matcher::Scratch;
use crate::resolve::{NoConfig, Resolution, Resolver, Table};
use std::ffi::OsString;
use std::io::{BufRead, Write};

/// Longest input line accepted; longer ones are reported and skipped. A kernel uevent's whole
/// environment is at most 2,048 bytes, so this leaves a wide margin for synthetic input.
const MAX_LINE: usize = 1 << 20;

fn help() -> String {
    format!(
        "\
Usage: modaliasd resolve [OPTIONS] [STRING...]

Prints, for each STRING (or, without arguments, each line of standard input), the STRING, a tab
and the modules it resolves to, separated by spaces (nothing after the tab when none match). The
lookup is libkmod's without modprobe.d: module name, symbol:NAME, modules.alias patterns,
built-in module names, built-in aliases; modules are in libkmod's order, each once.

Options:
{TREE_OPTIONS_HELP}  --json          one JSON object per line instead, with the matching patterns
                  and their lines
  -h, --help      this help

Input lines longer than 1 MiB or holding a NUL byte, and strings with an unbalanced bracket, are
reported on standard error; the rest are still resolved, and the exit status is then 1.
"
    )
}

pub fn run(args: Vec<OsString>) -> Result<i32, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut tree_options = TreeOptions::default();
    let mut as_json = false;
    let mut strings: Vec<Vec<u8>> = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Long(name) if TreeOptions::takes(name) => {
                let name = name.to_owned();
                tree_options.set(&name, &mut parser)?;
            }
            lexopt::Arg::Long("json") => as_json = true,
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{}", help());
                return Ok(EXIT_OK);
            }
            lexopt::Arg::Value(v) => {
                use std::os::unix::ffi::OsStringExt;
                strings.push(v.into_vec());
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let resolver = tree_options.resolver()?;

    let stdout = std::io::stdout();
    let mut out = Output {
        resolver: &resolver,
        writer: std::io::BufWriter::with_capacity(64 * 1024, stdout.lock()),
        json: as_json,
        scratch: Scratch::default(),
        resolution: Resolution::default(),
        invalid: 0,
    };
    let written = if strings.is_empty() {
        let stdin = std::io::stdin();
        out.stream(&mut std::io::BufReader::with_capacity(
            64 * 1024,
            stdin.lock(),
        ))
    } else {
        strings
            .iter()
            .enumerate()
            .try_for_each(|(i, s)| out.one(s, i as u64 + 1, "argument"))
    };
    match written.and_then(|()| out.writer.flush()) {
        Ok(()) => {}
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(EXIT_OK),
        Err(e) => return Err(format!("writing output: {e}")),
    }
    Ok(if out.invalid > 0 {
        EXIT_INVALID_INPUT
    } else {
        EXIT_OK
    })
}

struct Output<'a, W: Write> {
    resolver: &'a Resolver,
    writer: W,
    json: bool,
    scratch: Scratch,
    resolution: Resolution,
    invalid: u64,
}

impl<W: Write> Output<'_, W> {
    /// Resolves line after line, holding one line at a time. Output is flushed only before a
    /// read would block, so a pipe gets large writes and an interactive user gets each answer.
    fn stream<R: std::io::Read>(
        &mut self,
        input: &mut std::io::BufReader<R>,
    ) -> std::io::Result<()> {
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            if input.buffer().is_empty() {
                self.writer.flush()?;
            }
            line.clear();
            number += 1;
            match read_line(input, &mut line)? {
                LineRead::End => return Ok(()),
                LineRead::TooLong => {
                    self.invalid += 1;
                    tracing::warn!("stdin:{number}: line longer than 1 MiB; skipped");
                }
                LineRead::Line => self.one(&line, number, "stdin")?,
            }
        }
    }

    fn one(&mut self, input: &[u8], number: u64, origin: &str) -> std::io::Result<()> {
        let error = if input.contains(&0) {
            Some("contains a NUL byte, which no kernel string can".to_owned())
        } else {
            self.resolver
                .resolve_into(input, &NoConfig, &mut self.scratch, &mut self.resolution)
                .err()
                .map(|e| e.to_string())
        };
        if let Some(e) = &error {
            self.invalid += 1;
            tracing::error!("{origin}:{number}: {}: {e}", input.escape_ascii());
            self.resolution = Resolution::default();
        }
        if self.json {
            self.write_json(input, error.as_deref())
        } else {
            self.writer.write_all(input)?;
            self.writer.write_all(b"\t")?;
            if error.is_none() {
                for (i, name) in self.resolution.names(self.resolver).enumerate() {
                    if i > 0 {
                        self.writer.write_all(b" ")?;
                    }
                    self.writer.write_all(name.as_bytes())?;
                }
            }
            self.writer.write_all(b"\n")
        }
    }

    fn write_json(&mut self, input: &[u8], error: Option<&str>) -> std::io::Result<()> {
        let w = &mut self.writer;
        w.write_all(b"{\"input\":")?;
        json::string(w, input)?;
        if let Some(e) = error {
            w.write_all(b",\"error\":")?;
            json::string(w, e.as_bytes())?;
            return w.write_all(b"}\n");
        }
        let r = &self.resolution;
        w.write_all(b",\"normalized\":")?;
        json::string(w, r.normalized())?;
        write!(
            w,
            ",\"source\":\"{}\",\"builtin\":{},\"modules\":[",
            r.source().as_str(),
            r.builtin()
        )?;
        for (i, name) in r.names(self.resolver).enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            json::string(w, name.as_bytes())?;
        }
        w.write_all(b"],\"matches\":[")?;
        for (i, &rank) in r.entries.iter().enumerate() {
            let e = self.resolver.entry(rank);
            if i > 0 {
                w.write_all(b",")?;
            }
            let file = match e.table {
                Table::Alias => self.resolver.aliases_file(),
                Table::BuiltinAlias => "modules.builtin.modinfo",
            };
            w.write_all(b"{\"module\":")?;
            json::string(w, e.module.as_bytes())?;
            w.write_all(b",\"pattern\":")?;
            json::string(w, e.pattern)?;
            write!(w, ",\"file\":\"{file}\",\"line\":{}}}", e.line)?;
        }
        w.write_all(b"]}\n")
    }
}

enum LineRead {
    Line,
    TooLong,
    End,
}

/// Reads one line into `line` (without its newline), giving up on lines over [`MAX_LINE`] while
/// still consuming them, so a single huge line costs bounded memory.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<LineRead> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => LineRead::End,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        any = true;
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buf.len());
        input.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_but_consumed() {
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.extend_from_slice(b"\nnext\nlast");
        let mut input = std::io::Cursor::new(data);
        let mut line = Vec::new();
        assert!(matches!(
            read_line(&mut input, &mut line).unwrap(),
            LineRead::TooLong
        ));
        line.clear();
        assert!(matches!(
            read_line(&mut input, &mut line).unwrap(),
            LineRead::Line
        ));
        assert_eq!(line, b"next");
        line.clear();
        assert!(matches!(
            read_line(&mut input, &mut line).unwrap(),
            LineRead::Line
        ));
        assert_eq!(line, b"last");
        assert!(matches!(
            read_line(&mut input, &mut line).unwrap(),
            LineRead::End
        ));
    }
}
