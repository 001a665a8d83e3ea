//! Diagnostics on stderr, through `tracing`.
//!
//! The library emits `tracing` events; the binary installs the one subscriber defined here. Two
//! formats: `text`, one line per event in the `modaliasd: message` form that every command has
//! always printed (with the `<N>` priority prefix journald understands when stderr is the
//! journal, so `journalctl -p warning` works without a syslog dependency), and `json`, one object
//! per line for log shippers. Verbosity: `-q` errors only, default errors, warnings and the
//! daemon's milestones, `-v` per-event decisions, `-vv` everything.

use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How diagnostics are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("--log-format {other:?}: expected 'text' or 'json'")),
        }
    }
}

/// The logging options, common to every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// -2 for `-qq` (nothing at all, as kmod's `modprobe -q`), -1 for `-q`, 0 by default,
    /// 1 per `-v`.
    pub verbosity: i8,
    pub format: LogFormat,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            verbosity: 0,
            format: LogFormat::Text,
        }
    }
}

impl LogOptions {
    pub fn max_level(&self) -> LevelFilter {
        match self.verbosity {
            i8::MIN..=-2 => LevelFilter::OFF,
            -1 => LevelFilter::ERROR,
            0 => LevelFilter::INFO,
            1 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    }
}

/// Installs the process-wide subscriber. Later calls (tests running several commands in one
/// process) keep the first one.
pub fn init(options: LogOptions) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(options.max_level());
    let _ = match options.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .event_format(TextFormat {
                journal: stderr_is_journal(),
            })
            .try_init(),
    };
}

/// Whether stderr is the journal's stream socket: systemd sets `JOURNAL_STREAM=DEV:INODE` for the
/// service, and the check against stderr's own identity keeps a child whose stderr was
/// redirected from printing `<N>` prefixes into a file.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // fstat, not /proc/self/fd/2: early in boot /proc may not be mounted yet.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid stat buffer; fd 2 may be closed, which fstat reports.
    if unsafe { libc::fstat(2, &mut stat) } != 0 {
        return false;
    }
    stat.st_dev as u64 == dev && stat.st_ino as u64 == ino
}

/// `modaliasd: [warning: ]message key=value...`.
struct TextFormat {
    journal: bool,
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let mut fields = TextFields::default();
        event.record(&mut fields);
        if self.journal {
            let priority = match level {
                Level::ERROR => 3,
                Level::WARN => 4,
                Level::INFO => 6,
                Level::DEBUG | Level::TRACE => 7,
            };
            write!(writer, "<{priority}>")?;
        }
        writer.write_str("modaliasd: ")?;
        match level {
            Level::WARN => writer.write_str("warning: ")?,
            Level::DEBUG => writer.write_str("debug: ")?,
            Level::TRACE => writer.write_str("trace: ")?,
            _ => {}
        }
        writer.write_str(&fields.message)?;
        writer.write_str(&fields.rest)?;
        writer.write_char('\n')
    }
}

#[derive(Default)]
struct TextFields {
    message: String,
    rest: String,
}

impl Visit for TextFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

/// Takes the logging options out of `args`, wherever they are before a `--`, so that both
/// `modaliasd -v run` and `modaliasd run -v` work. Returns the options and the remaining
/// arguments.
pub fn take_options(
    args: Vec<std::ffi::OsString>,
) -> Result<(LogOptions, Vec<std::ffi::OsString>), String> {
    let mut options = LogOptions::default();
    let mut rest = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            rest.push(arg);
            continue;
        };
        match text {
            "--" => {
                rest.push(arg);
                rest.extend(args.by_ref());
                break;
            }
            "-q" | "--quiet" => options.verbosity = options.verbosity.min(-1),
            "-qq" => options.verbosity = -2,
            "--verbose" => options.verbosity = options.verbosity.max(0).saturating_add(1),
            "--log-format" => {
                let value = args
                    .next()
                    .ok_or("--log-format needs a value: 'text' or 'json'")?;
                options.format = value.to_string_lossy().parse()?;
            }
            _ if text.starts_with("--log-format=") => {
                options.format = text["--log-format=".len()..].parse()?;
            }
            _ if text.len() > 1
                && text.starts_with('-')
                && text[1..].bytes().all(|b| b == b'v') =>
            {
                let count = i8::try_from(text.len() - 1).unwrap_or(i8::MAX);
                options.verbosity = options.verbosity.max(0).saturating_add(count);
            }
            _ => rest.push(arg),
        }
    }
    Ok((options, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn take(args: &[&str]) -> Result<(LogOptions, Vec<String>), String> {
        let args = args.iter().map(OsString::from).collect();
        let (options, rest) = take_options(args)?;
        Ok((
            options,
            rest.into_iter().map(|a| a.into_string().unwrap()).collect(),
        ))
    }

    #[test]
    fn options_are_taken_anywhere_before_double_dash() {
        let (options, rest) =
            take(&["-v", "run", "--log-format", "json", "-vv", "--", "-q"]).unwrap();
        assert_eq!(options.verbosity, 3);
        assert_eq!(options.format, LogFormat::Json);
        assert_eq!(rest, ["run", "--", "-q"]);
        assert_eq!(options.max_level(), LevelFilter::TRACE);
    }

    #[test]
    fn quiet_and_bad_format() {
        let (options, rest) = take(&["resolve", "-q", "pci:v1"]).unwrap();
        assert_eq!(options.max_level(), LevelFilter::ERROR);
        let (options, _) = take(&["-q", "load", "-q"]).unwrap();
        assert_eq!(options.max_level(), LevelFilter::ERROR);
        let (options, _) = take(&["-qq", "load"]).unwrap();
        assert_eq!(options.max_level(), LevelFilter::OFF);
        assert_eq!(rest, ["resolve", "pci:v1"]);
        assert!(take(&["--log-format=xml"]).is_err());
        assert!(take(&["--log-format"]).is_err());
        // `-V` (version) and other short options are not ours.
        assert_eq!(take(&["-V"]).unwrap().1, ["-V"]);
    }
}
