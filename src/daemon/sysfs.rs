//! Devices present now, read from sysfs: every `ROOT/sys/devices/**/modalias`.
//!
//! This is what `coldplug --scan` loads drivers for without triggering any event, and what the
//! daemon rescans after its receive buffer overflowed (events were lost, the devices were not).
//! Each device becomes a synthetic `add` message in kernel format (`ACTION`, `DEVPATH`,
//! `SUBSYSTEM` from the `subsystem` link, `MODALIAS`, and the variables of its `uevent` file:
//! `DEVTYPE`, `DRIVER`, ...), in depth-first order so that parents come before their children.
//! The `uevent` variables are what the kernel's event would carry: rules match on them (Debian's
//! load of `sg` for every device of `DEVTYPE=scsi_device`), so a scanned device must meet the
//! rules as its event would.

use std::path::Path;

/// The kernel-format `add` messages for every device with a non-empty `modalias` under
/// `ROOT/sys/devices`. Symbolic links are not followed, so the walk ends. Subtrees are walked
/// by several threads (a boot has cores to spare and sysfs lookups dominate); the result is in
/// the same depth-first order as a single walk.
pub fn scan(root: &Path) -> Vec<Vec<u8>> {
    let sys = root.join("sys");
    // Split breadth-first until there are enough subtrees to share out, keeping the devices met
    // on the way (they come before their subtrees in depth-first order).
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut frontier = vec![sys.join("devices")];
    let mut head: Vec<(std::path::PathBuf, Vec<u8>)> = Vec::new();
    for _ in 0..4 {
        if frontier.len() >= threads * 4 {
            break;
        }
        let mut next = Vec::new();
        for dir in &frontier {
            let (message, children) = visit(&sys, dir);
            if let Some(m) = message {
                head.push((dir.clone(), m));
            }
            next.extend(children);
        }
        frontier = next;
    }
    let chunks: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
        let shares: Vec<_> = frontier
            .chunks(frontier.len().div_ceil(threads).max(1))
            .map(|share| {
                let sys = &sys;
                scope.spawn(move || share.iter().map(|d| walk(sys, d)).collect::<Vec<_>>())
            })
            .collect();
        shares
            .into_iter()
            .flat_map(|h| h.join().expect("sysfs walker"))
            .collect()
    });
    // Depth-first order: each head device, then the subtrees below it, in path order.
    let mut out: Vec<(std::path::PathBuf, Vec<u8>)> = head;
    for (dir, messages) in frontier.into_iter().zip(chunks) {
        for m in messages {
            out.push((dir.clone(), m));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, m)| m).collect()
}

/// Depth-first walk of one subtree, parents before children.
fn walk(sys: &Path, top: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_owned()];
    while let Some(dir) = stack.pop() {
        let (message, children) = visit(sys, &dir);
        out.extend(message);
        stack.extend(children.into_iter().rev());
    }
    out
}

/// One directory: its device's message, if it has a modalias, and its subdirectories (sorted).
fn visit(sys: &Path, dir: &Path) -> (Option<Vec<u8>>, Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (None, Vec::new());
    };
    let mut children = Vec::new();
    let mut modalias = None;
    let mut has_uevent = false;
    for e in entries.flatten() {
        // d_type from the directory listing: no stat, and a path only where needed.
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            children.push(e.path());
        } else if kind.is_file() && e.file_name() == "modalias" {
            modalias = std::fs::read(e.path()).ok();
        } else if kind.is_file() && e.file_name() == "uevent" {
            has_uevent = true;
        }
    }
    children.sort();
    let message = modalias.and_then(|mut alias| {
        while alias.last().is_some_and(|c| *c == b'\n' || *c == 0) {
            alias.pop();
        }
        if alias.is_empty() || alias.contains(&0) {
            return None;
        }
        let devpath = dir.strip_prefix(sys).unwrap_or(dir);
        let devpath = format!("/{}", devpath.to_string_lossy());
        let subsystem = std::fs::read_link(dir.join("subsystem"))
            .ok()
            .and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned()));
        let mut msg = format!("add@{devpath}\0ACTION=add\0DEVPATH={devpath}\0").into_bytes();
        if let Some(s) = subsystem {
            msg.extend_from_slice(format!("SUBSYSTEM={s}\0").as_bytes());
        }
        msg.extend_from_slice(b"MODALIAS=");
        msg.extend_from_slice(&alias);
        msg.push(0);
        if has_uevent {
            append_uevent_variables(
                &mut msg,
                &std::fs::read(dir.join("uevent")).unwrap_or_default(),
            );
        }
        Some(msg)
    });
    (message, children)
}

/// Appends the `KEY=VALUE` lines of a device's `uevent` file to its message, but for the keys
/// the message already has and lines that could not be a variable.
fn append_uevent_variables(msg: &mut Vec<u8>, uevent: &[u8]) {
    const OWN: &[&[u8]] = &[b"ACTION", b"DEVPATH", b"SUBSYSTEM", b"MODALIAS", b"SEQNUM"];
    for line in uevent.split(|c| *c == b'\n') {
        let Some(eq) = memchr::memchr(b'=', line) else {
            continue;
        };
        let key = &line[..eq];
        if key.is_empty() || line.contains(&0) || OWN.contains(&key) {
            continue;
        }
        msg.extend_from_slice(line);
        msg.push(0);
    }
}

/// Every device's `uevent` file under `ROOT/sys/devices` (devices with a subsystem: the others
/// send no event), in udev's trigger order: devices of
/// the `module`, `block`, `net`, `tty` and `input` subsystems first, then the rest; parents
/// before their children within each group.
pub fn uevent_files(root: &Path) -> Vec<std::path::PathBuf> {
    const FIRST: &[&str] = &["module", "block", "net", "tty", "input"];
    let mut out: Vec<(usize, std::path::PathBuf)> = Vec::new();
    let mut stack = vec![root.join("sys/devices")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut children = Vec::new();
        let mut has_uevent = false;
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                children.push(e.path());
            } else if kind.is_file() && e.file_name() == "uevent" {
                has_uevent = true;
            }
        }
        // A device with neither bus nor class (no `subsystem` link) accepts the write but the
        // kernel's uevent filter drops its event: triggering it would only be waited for.
        let subsystem = std::fs::read_link(dir.join("subsystem"))
            .ok()
            .and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned()));
        if let (true, Some(subsystem)) = (has_uevent, subsystem) {
            let rank = FIRST
                .iter()
                .position(|f| *f == subsystem)
                .unwrap_or(FIRST.len());
            out.push((rank, dir.join("uevent")));
        }
        children.sort();
        stack.extend(children.into_iter().rev());
    }
    // Stable: within a rank, the depth-first (parents first) order stays.
    out.sort_by_key(|(rank, _)| *rank);
    out.into_iter().map(|(_, p)| p).collect()
}

/// Orders scanned devices for coldplug: controllers whose drivers bring more devices first
/// (USB host controllers, storage controllers, by PCI class `0C03` and `01`), the rest in scan
/// order. What sits behind a controller (USB devices, disks) appears only once its driver is
/// in, and some of it only after a delay (usb-storage waits a second before it scans), so
/// starting those drivers first shortens the whole coldplug.
pub fn controllers_first(messages: &mut [Vec<u8>]) {
    // A stable sort keeps the scan order (parents before children) within each group.
    messages.sort_by_key(|m| !opens_a_bus(m));
}

/// Whether a scanned device's message is a USB host or storage controller's (see
/// [`controllers_first`]).
pub fn opens_a_bus(message: &[u8]) -> bool {
    let Some(at) = memchr::memmem::find(message, b"MODALIAS=pci:") else {
        return false;
    };
    let modalias = &message[at + 9..];
    let modalias = &modalias[..memchr::memchr(0, modalias).unwrap_or(modalias.len())];
    // pci:v...d...sv...sd...bcXXscYYiZZ
    match memchr::memmem::find(modalias, b"bc") {
        Some(i) => {
            let class = &modalias[i + 2..];
            class.starts_with(b"01") || class.starts_with(b"0Csc03")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_before_children_in_tree_order() {
        let root = std::env::temp_dir().join(format!("modaliasd-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let devices = [
            "pci0000:00",
            "pci0000:00/0000:00:14.0",
            "pci0000:00/0000:00:14.0/usb1/1-1",
            "pci0000:00/0000:00:1f.0",
            "platform/serial8250",
            "system/cpu/cpu0",
            "system/cpu/cpu1",
        ];
        for (i, d) in devices.iter().enumerate() {
            let dir = root.join("sys/devices").join(d);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("modalias"), format!("dev:{i}\n")).unwrap();
            std::fs::write(dir.join("uevent"), "").unwrap();
        }
        // A directory without a modalias and an empty modalias give nothing.
        std::fs::create_dir_all(root.join("sys/devices/virtual/net/lo")).unwrap();
        std::fs::write(root.join("sys/devices/virtual/net/lo/modalias"), "\n").unwrap();
        let got: Vec<String> = scan(&root)
            .iter()
            .map(|m| {
                let e = crate::uevent::Event::parse(m).unwrap();
                String::from_utf8_lossy(e.modalias().unwrap()).into_owned()
            })
            .collect();
        let want: Vec<String> = (0..devices.len()).map(|i| format!("dev:{i}")).collect();
        assert_eq!(got, want);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_scanned_device_carries_its_uevent_variables() {
        let root = crate::test_support::TempRoot::new("sysfs-uevent");
        let dir = "sys/devices/pci0000:00/0000:00:05.0/host0/target0:0:0/0:0:0:0";
        root.write(&format!("{dir}/modalias"), "scsi:t-0x00\n");
        root.write(
            &format!("{dir}/uevent"),
            "DEVTYPE=scsi_device\nDRIVER=sd\nMODALIAS=scsi:t-0x00\nnot a variable\n",
        );
        std::os::unix::fs::symlink(
            "../../../../../../bus/scsi",
            root.path().join(dir).join("subsystem"),
        )
        .unwrap();
        let messages = scan(root.path());
        assert_eq!(messages.len(), 1);
        let event = crate::uevent::Event::parse(&messages[0]).unwrap();
        assert_eq!(event.get(b"DEVTYPE"), Some(&b"scsi_device"[..]));
        assert_eq!(event.get(b"DRIVER"), Some(&b"sd"[..]));
        assert_eq!(event.get(b"SUBSYSTEM"), Some(&b"scsi"[..]));
        // MODALIAS once, from the modalias file.
        let text = String::from_utf8_lossy(&messages[0]);
        assert_eq!(text.matches("MODALIAS=").count(), 1, "{text}");
        // Debian's rule for SCSI devices now applies to the scanned device as to its event.
        let mut rules = crate::rules::Rules::default();
        rules.parse(
            std::path::Path::new("80-debian-compat.rules"),
            crate::rules::SHIPPED_RULES[0].1,
        );
        assert_eq!(rules.apply(&event).len(), 1);
    }

    #[test]
    fn usb_and_storage_controllers_go_first_in_scan_order() {
        let event = |path: &str, modalias: &str| {
            format!("add@{path}\0ACTION=add\0DEVPATH={path}\0MODALIAS={modalias}\0").into_bytes()
        };
        let mut messages = vec![
            event(
                "/a",
                "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00",
            ),
            event(
                "/b",
                "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
            ),
            event("/c", "acpi:PNP0400:"),
            event(
                "/d",
                "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30",
            ),
            event(
                "/e",
                "pci:v00008086d00007113sv00001AF4sd00001100bc06sc80i00",
            ),
            event(
                "/f",
                "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80",
            ),
        ];
        super::controllers_first(&mut messages);
        let order: Vec<u8> = messages.iter().map(|m| m[5]).collect();
        assert_eq!(order, b"bdface");
    }
}
