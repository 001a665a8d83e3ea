//! The narrow interface to the kernel that loading needs, and its Linux implementation.
//!
//! Everything the loader asks of the kernel goes through [`Kernel`], so tests run the real
//! loading code against a fake (see [`super::fake`]) that records every insertion and returns
//! injected errors.

use super::compression::Compression;
use std::ffi::CStr;
use std::path::PathBuf;

/// `finit_module` flags (include/uapi/linux/module.h).
pub const MODULE_INIT_IGNORE_MODVERSIONS: u32 = 1;
pub const MODULE_INIT_IGNORE_VERMAGIC: u32 = 2;
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// An errno from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The symbolic name (`ENOEXEC`), or the number when it is not one we name.
    pub fn name(self) -> String {
        let name = match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EIO => "EIO",
            libc::E2BIG => "E2BIG",
            libc::ENOEXEC => "ENOEXEC",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ERANGE => "ERANGE",
            libc::ETXTBSY => "ETXTBSY",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::ENOSYS => "ENOSYS",
            libc::ENOKEY => "ENOKEY",
            libc::EKEYREJECTED => "EKEYREJECTED",
            libc::EKEYEXPIRED => "EKEYEXPIRED",
            libc::EBADMSG => "EBADMSG",
            libc::ETIMEDOUT => "ETIMEDOUT",
            _ => return format!("errno {}", self.0),
        };
        name.to_owned()
    }

    /// What modprobe says for it: its own wording for ENOENT and EEXIST, strerror otherwise.
    pub fn modprobe_message(self) -> String {
        match self.0 {
            libc::ENOENT => "Unknown symbol in module, or unknown parameter (see dmesg)".into(),
            libc::EEXIST => "Module already in kernel".into(),
            e => {
                // strerror's text, without the " (os error N)" Rust adds.
                let text = std::io::Error::from_raw_os_error(e).to_string();
                match text.rfind(" (os error ") {
                    Some(at) => text[..at].to_owned(),
                    None => text,
                }
            }
        }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.modprobe_message(), self.name())
    }
}

/// What `/sys/module/NAME` says about a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleState {
    Absent,
    Live,
    Coming,
    Going,
    /// A directory without `initstate`: built in (or, briefly, being created).
    Builtin,
}

pub trait Kernel: Send + Sync {
    /// `finit_module(fd, options, flags)`. `module` names it for logs and fakes; the kernel
    /// reads the name from the file.
    fn finit_module(
        &self,
        module: &str,
        file: &std::fs::File,
        options: &CStr,
        flags: u32,
    ) -> Result<(), Errno>;
    /// `init_module(image, len, options)` for an image decompressed in user space.
    fn init_module(&self, module: &str, image: &[u8], options: &CStr) -> Result<(), Errno>;
    fn module_state(&self, name: &str) -> ModuleState;
    /// The decompressor built into the kernel (`/sys/module/compression`), if any.
    fn decompressor(&self) -> Option<Compression>;
    /// `/proc/sys/kernel/tainted`, when it can be read.
    fn tainted(&self) -> Option<u64> {
        None
    }
    /// The taint letters a loaded module gave the kernel (`/sys/module/NAME/taint`).
    fn module_taint(&self, _name: &str) -> Option<String> {
        None
    }
    /// The kernel log positioned at its end: what is read from it later was logged since.
    fn log_cursor(&self) -> Option<std::fs::File> {
        None
    }
}

/// The running kernel, with `/sys` read under a root (`--root`, for a system being set up).
pub struct LinuxKernel {
    sys: PathBuf,
    proc: PathBuf,
    kmsg: PathBuf,
}

impl LinuxKernel {
    pub fn new(root: &std::path::Path) -> LinuxKernel {
        LinuxKernel {
            sys: root.join("sys"),
            proc: root.join("proc"),
            kmsg: root.join("dev/kmsg"),
        }
    }
}

fn syscall_result(ret: libc::c_long) -> Result<(), Errno> {
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    }
}

impl Kernel for LinuxKernel {
    fn finit_module(
        &self,
        _module: &str,
        file: &std::fs::File,
        options: &CStr,
        flags: u32,
    ) -> Result<(), Errno> {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid fd and NUL-terminated string for the duration of the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                file.as_raw_fd(),
                options.as_ptr(),
                flags as libc::c_int,
            )
        };
        syscall_result(ret)
    }

    fn init_module(&self, _module: &str, image: &[u8], options: &CStr) -> Result<(), Errno> {
        // SAFETY: a valid buffer of the given length and a NUL-terminated string.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_init_module,
                image.as_ptr(),
                image.len() as libc::c_ulong,
                options.as_ptr(),
            )
        };
        syscall_result(ret)
    }

    fn module_state(&self, name: &str) -> ModuleState {
        let dir = self.sys.join("module").join(name);
        match std::fs::read_to_string(dir.join("initstate")) {
            Ok(s) => match s.trim() {
                "live" => ModuleState::Live,
                "coming" => ModuleState::Coming,
                "going" => ModuleState::Going,
                _ => ModuleState::Live,
            },
            Err(_) if dir.is_dir() => ModuleState::Builtin,
            Err(_) => ModuleState::Absent,
        }
    }

    fn decompressor(&self) -> Option<Compression> {
        let name = std::fs::read_to_string(self.sys.join("module/compression")).ok()?;
        Compression::from_kernel_name(&name)
    }

    fn tainted(&self) -> Option<u64> {
        std::fs::read_to_string(self.proc.join("sys/kernel/tainted"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn log_cursor(&self) -> Option<std::fs::File> {
        use std::io::Seek;
        let mut file = open_kernel_log(&self.kmsg)?;
        file.seek(std::io::SeekFrom::End(0)).ok()?;
        Some(file)
    }

    fn module_taint(&self, name: &str) -> Option<String> {
        let text =
            std::fs::read_to_string(self.sys.join("module").join(name).join("taint")).ok()?;
        Some(text.trim().to_owned())
    }
}

/// Opens the kernel log for reading without blocking.
pub fn open_kernel_log(path: &std::path::Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()
}

/// The messages of the kernel log records (`PRIO,SEQ,USEC,FLAGS;TEXT`) readable from `file`
/// now: from its start, or, after a seek to the end, those logged since.
pub fn read_kernel_log(file: &mut std::fs::File) -> Vec<String> {
    use std::io::Read;
    let mut records = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        // /dev/kmsg gives one record per read; a plain file gives what fits.
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => records.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .filter(|l| !l.starts_with(' ')) // continuation (dictionary) lines
                    .map(|l| l.split_once(';').map_or(l, |(_, m)| m).to_owned()),
            ),
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue, // overwritten
            Err(_) => break,                                             // EAGAIN: done
        }
    }
    records
}
