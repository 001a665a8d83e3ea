//! The crate's error type: what was attempted, on which file, and where in it.

use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    /// A file could not be opened or read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A required file is absent (and so is its binary index, where one could stand in).
    Missing { path: PathBuf, what: &'static str },
    /// A line of a text file does not have the expected form.
    Syntax {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A binary file is truncated or inconsistent.
    Corrupt {
        path: PathBuf,
        offset: u64,
        message: String,
    },
    /// Anything else, already phrased for the user.
    Other(String),
}

impl Error {
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub fn io(path: &Path, source: std::io::Error) -> Error {
        ErrorKind::Io {
            path: path.to_owned(),
            source,
        }
        .into()
    }

    pub fn missing(path: &Path, what: &'static str) -> Error {
        ErrorKind::Missing {
            path: path.to_owned(),
            what,
        }
        .into()
    }

    pub fn syntax(path: &Path, line: u64, message: impl Into<String>) -> Error {
        ErrorKind::Syntax {
            path: path.to_owned(),
            line,
            message: message.into(),
        }
        .into()
    }

    pub fn corrupt(path: &Path, offset: u64, message: impl Into<String>) -> Error {
        ErrorKind::Corrupt {
            path: path.to_owned(),
            offset,
            message: message.into(),
        }
        .into()
    }

    pub fn other(message: impl Into<String>) -> Error {
        ErrorKind::Other(message.into()).into()
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error { kind }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ErrorKind::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ErrorKind::Missing { path, what } => {
                write!(f, "{}: missing ({what})", path.display())
            }
            ErrorKind::Syntax {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            ErrorKind::Corrupt {
                path,
                offset,
                message,
            } => write!(f, "{}: at byte {offset}: {message}", path.display()),
            ErrorKind::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
