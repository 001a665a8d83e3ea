//! Socket activation: the uevent socket handed over by the service manager (systemd's listen-fds
//! protocol, `ListenNetlink=kobject-uevent 1` in a socket unit).
//!
//! Why it matters: the socket outlives the daemon. Events that arrive while modaliasd restarts,
//! or between the initramfs and the real root, wait in its queue instead of being lost.

use crate::uevent::netlink::{GROUP_KERNEL, Listener, NETLINK_KOBJECT_UEVENT};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The first descriptor the protocol passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Why a handed-over socket could not be used.
#[derive(Debug)]
pub struct ActivationError(String);

impl std::fmt::Display for ActivationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "socket activation: {}", self.0)
    }
}

impl std::error::Error for ActivationError {}

/// The uevent listener passed in `$LISTEN_FDS`, if the service manager passed one to this
/// process (`$LISTEN_PID`). `Ok(None)` when nothing was passed: the caller opens its own.
///
/// Every passed descriptor is marked close-on-exec so that `RUN` programs do not inherit it,
/// and the variables are cleared for the same reason.
///
/// # Safety
/// Must be called before any other thread exists: it changes the environment.
pub unsafe fn take_listener() -> Result<Option<Listener>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    // SAFETY: the caller guarantees no other thread reads the environment now.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(None);
    };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None); // meant for another process (a parent that exec'd us without clearing)
    }
    let count: RawFd = count
        .parse()
        .map_err(|_| ActivationError(format!("LISTEN_FDS={count:?} is not a number")))?;
    let mut found = None;
    for fd in LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count) {
        // SAFETY: fcntl on a descriptor number; a closed one just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        if found.is_none() && is_kernel_uevent_socket(fd) {
            found = Some(fd);
        }
    }
    let Some(fd) = found else {
        return Err(ActivationError(format!(
            "none of the {count} passed descriptors is a NETLINK_KOBJECT_UEVENT socket bound to group {GROUP_KERNEL} \
             (the socket unit needs ListenNetlink=kobject-uevent 1)"
        )));
    };
    // SAFETY: the protocol hands the descriptor to this process; nothing else owns it.
    let listener = Listener::from_fd(unsafe { OwnedFd::from_raw_fd(fd) });
    listener
        .enable_credentials()
        .map_err(|e| ActivationError(format!("SO_PASSCRED on descriptor {fd}: {e}")))?;
    Ok(Some(listener))
}

fn is_kernel_uevent_socket(fd: RawFd) -> bool {
    let int_option = |option| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid buffer of the length given.
        let ret = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (ret == 0).then_some(value)
    };
    if int_option(libc::SO_DOMAIN) != Some(libc::AF_NETLINK)
        || int_option(libc::SO_PROTOCOL) != Some(NETLINK_KOBJECT_UEVENT)
    {
        return false;
    }
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: a valid address buffer of the length given.
    let ret =
        unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_nl).cast(), &mut len) };
    ret == 0 && addr.nl_groups & (1 << (GROUP_KERNEL - 1)) != 0
}
