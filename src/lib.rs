//! modaliasd: kernel uevents in, loaded drivers out.
//!
//! The pipeline, one module per stage: a uevent's `MODALIAS` is resolved against the module
//! directory ([`index`] reads it, [`matcher`] compiles its `fnmatch` patterns, [`resolve`] applies
//! libkmod's lookup order) and the resulting modules are loaded.

pub mod cli;
pub mod daemon;
pub mod diagnostics;
pub mod error;
pub mod index;
pub mod loader;
pub mod logging;
pub mod matcher;
pub mod modinfo;
pub mod modprobe;
pub mod names;
pub mod resolve;
pub mod rules;
pub mod udev_handoff;
pub mod uevent;

#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod test_support;

pub use error::{Error, Result};
