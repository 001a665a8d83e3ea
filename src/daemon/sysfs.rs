//! Devices present now, read from sysfs: every `ROOT/sys/devices/**/modalias`.
//!
//! This is what `coldplug --scan` loads drivers for without triggering any event, and what the
//! daemon rescans after its receive buffer overflowed (events were lost, the devices were not).
//! Each device becomes a synthetic `add` message in kernel format (`ACTION`, `DEVPATH`,
//! `SUBSYSTEM` from the `subsystem` link, `MODALIAS`), in depth-first order so that parents come
//! before their children.

use std::path::Path;

/// The kernel-format `add` messages for every device with a non-empty `modalias` under
/// `ROOT/sys/devices`. Symbolic links are not followed, so the walk ends.
pub fn scan(root: &Path) -> Vec<Vec<u8>> {
    let sys = root.join("sys");
    let mut out = Vec::new();
    let mut stack = vec![sys.join("devices")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut children = Vec::new();
        let mut modalias = None;
        for e in entries.flatten() {
            let name = e.file_name();
            match e.file_type() {
                Ok(t) if t.is_dir() => children.push(e.path()),
                Ok(t) if t.is_file() && name == "modalias" => {
                    modalias = std::fs::read(e.path()).ok();
                }
                _ => {}
            }
        }
        if let Some(mut alias) = modalias {
            while alias.last().is_some_and(|c| *c == b'\n' || *c == 0) {
                alias.pop();
            }
            if !alias.is_empty() && !alias.contains(&0) {
                let devpath = dir.strip_prefix(&sys).unwrap_or(&dir);
                let devpath = format!("/{}", devpath.to_string_lossy());
                let subsystem = std::fs::read_link(dir.join("subsystem"))
                    .ok()
                    .and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned()));
                let mut msg =
                    format!("add@{devpath}\0ACTION=add\0DEVPATH={devpath}\0").into_bytes();
                if let Some(s) = subsystem {
                    msg.extend_from_slice(format!("SUBSYSTEM={s}\0").as_bytes());
                }
                msg.extend_from_slice(b"MODALIAS=");
                msg.extend_from_slice(&alias);
                msg.push(0);
                out.push(msg);
            }
        }
        children.sort();
        stack.extend(children.into_iter().rev());
    }
    out
}
