//! The kernel's uevent socket (`NETLINK_KOBJECT_UEVENT`, multicast group 1).
//!
//! Trust: any root process may multicast to group 1 from user space. The kernel's own messages
//! come from port id 0 with uid 0 credentials (`SO_PASSCRED`); everything else is rejected and
//! counted. Messages longer than the 8 KiB buffer (`MSG_TRUNC`) are rejected
//! too. The receive buffer is forced large (`SO_RCVBUFFORCE`, falling back to `SO_RCVBUF`); if it
//! overflows anyway, `recv` fails once with ENOBUFS, reported as [`Received::Overflow`]: events
//! are lost and the caller must rescan sysfs.

use super::Event;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub const NETLINK_KOBJECT_UEVENT: libc::c_int = 15;
/// The kernel's group.
pub const GROUP_KERNEL: u32 = 1;
pub const BUFFER_SIZE: usize = 8192;
/// udevd forces 128 MiB; so do we by default.
pub const DEFAULT_RECEIVE_BUFFER: usize = 128 << 20;

/// Counters of what the listener did not pass on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub not_from_kernel: u64,
    pub truncated: u64,
    pub malformed: u64,
    pub overflows: u64,
}

/// One `recv`'s outcome.
// The event is large (its variables sit in a fixed array) on purpose: receiving and parsing a
// message must not allocate, so it stays on the stack rather than in a Box.
#[allow(clippy::large_enum_variant)]
pub enum Received<'a> {
    /// A kernel event, with the raw message it was parsed from.
    Event(Event<'a>, &'a [u8]),
    /// The receive buffer overflowed: events were lost.
    Overflow,
    /// A message that was dropped (its reason is counted in [`Stats`]).
    Rejected(&'static str),
}

pub struct Listener {
    fd: OwnedFd,
    buf: Vec<u8>,
    pub stats: Stats,
}

/// A new, unbound `NETLINK_KOBJECT_UEVENT` socket.
fn uevent_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: a plain socket call; the descriptor is owned right away.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_KOBJECT_UEVENT,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Listener {
    /// Opens and binds a listener on `group` with a receive buffer of `receive_buffer` bytes.
    pub fn open(group: u32, receive_buffer: usize) -> std::io::Result<Listener> {
        let fd = uevent_socket()?;
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = 1 << (group - 1);
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        let listener = Listener::from_fd(fd);
        listener.set_receive_buffer(receive_buffer);
        listener.enable_credentials()?;
        Ok(listener)
    }

    /// `SO_PASSCRED`: without the sender's credentials no message can be trusted.
    pub fn enable_credentials(&self) -> std::io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: a valid option value of the length given.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    /// Wraps a socket someone else opened and bound (socket activation hands one over).
    pub fn from_fd(fd: OwnedFd) -> Listener {
        Listener {
            fd,
            buf: vec![0; BUFFER_SIZE],
            stats: Stats::default(),
        }
    }

    /// `SO_RCVBUFFORCE` (needs CAP_NET_ADMIN), else `SO_RCVBUF` (capped by rmem_max).
    pub fn set_receive_buffer(&self, bytes: usize) {
        let size = bytes.min(i32::MAX as usize) as libc::c_int;
        for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            let ret = unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if ret == 0 {
                return;
            }
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Waits up to `timeout` (forever with `None`) for the socket to be readable.
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> std::io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
        loop {
            let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ret >= 0 {
                return Ok(ret > 0);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one message (blocking).
    pub fn recv(&mut self) -> std::io::Result<Received<'_>> {
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: self.buf.as_mut_ptr().cast(),
            iov_len: self.buf.len(),
        };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = loop {
            // SAFETY: every pointer in msg refers to live buffers of the stated sizes.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
            if n >= 0 {
                break n as usize;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => {
                    self.stats.overflows += 1;
                    return Ok(Received::Overflow);
                }
                _ => return Err(e),
            }
        };
        self.stats.received += 1;
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            self.stats.truncated += 1;
            return Ok(Received::Rejected("longer than 8 KiB"));
        }
        // SAFETY: the control buffer was filled by recvmsg; CMSG_* walk it within its length.
        let mut uid = None;
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
                {
                    let cred =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::ucred);
                    uid = Some(cred.uid);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if addr.nl_pid != 0 || uid != Some(0) {
            self.stats.not_from_kernel += 1;
            return Ok(Received::Rejected("not sent by the kernel"));
        }
        let message = &self.buf[..n];
        match Event::parse(message) {
            Ok(event) => Ok(Received::Event(event, message)),
            Err(_) => {
                self.stats.malformed += 1;
                Ok(Received::Rejected("malformed"))
            }
        }
    }
}

/// The group libudev-zero (and mdevd's `-O 4`) listen on for kernel-format events.
pub const GROUP_REBROADCAST: u32 = 4;

/// A socket for sending events on to other groups after they were handled.
pub struct Rebroadcaster {
    fd: OwnedFd,
}

impl Rebroadcaster {
    pub fn open() -> std::io::Result<Rebroadcaster> {
        Ok(Rebroadcaster {
            fd: uevent_socket()?,
        })
    }

    /// Multicasts `message` (kernel format) to `group`. Needs CAP_NET_ADMIN, as udevd's own
    /// rebroadcast does.
    pub fn send(&self, group: u32, message: &[u8]) -> std::io::Result<()> {
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = 1 << (group - 1);
        // SAFETY: a valid buffer and address for the duration of the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            // Nobody listening is not an error worth reporting.
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }
}
