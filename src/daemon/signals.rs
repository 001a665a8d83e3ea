//! SIGTERM, SIGINT and SIGHUP as a file descriptor (`signalfd`), so the daemon waits for
//! signals and events in one `poll` and wakes up for nothing else.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: finish what is under way and exit.
    Stop,
    /// SIGHUP: reload configuration, rules and index.
    Reload,
}

pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks the three signals in this thread (threads started later inherit that) and opens
    /// a descriptor to read them. Call before starting any thread.
    pub fn new() -> std::io::Result<Signals> {
        // SAFETY: plain signal-mask and signalfd calls on a properly initialised set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A pending signal, if any.
    pub fn read(&self) -> Option<Signal> {
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reading into a buffer of exactly the record's size.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if n as usize != size {
            return None;
        }
        match info.ssi_signo as i32 {
            libc::SIGHUP => Some(Signal::Reload),
            _ => Some(Signal::Stop),
        }
    }
}

/// Which of `fds` are readable after waiting up to `timeout` (forever with `None`).
pub fn poll(fds: &[RawFd], timeout: Option<std::time::Duration>) -> std::io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    loop {
        let ret = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if ret >= 0 {
            return Ok(pfds.iter().map(|p| p.revents != 0).collect());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
