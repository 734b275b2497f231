//! `-t`: a pty from the container's own devpts (mounted `newinstance` at /dev/pts by
//! mounts.rs), as runc's console socket does: the container's side opens its
//! `dev/pts/ptmx`, unlocks it and takes the slave with TIOCGPTPEER (no lookup in
//! /dev/pts the container could race); the slave is bound over the container's
//! /dev/console and becomes the command's controlling terminal and stdio (command.rs),
//! so `tty` inside prints `/dev/pts/0`. For `run` the cloned child does this and sends
//! the master to the parent over a socketpair (SCM_RIGHTS, sys.rs); for `exec` the
//! parent does it itself once it has joined the container's mount namespace. Nothing
//! of the host's devpts reaches the container.
//!
//! On the host side the terminal goes raw (restored by a guard, on every path) and
//! stdio.rs's relay loop copies stdin -> master and master -> stdout; the window size is
//! set when the pty is made and copied again on every SIGWINCH.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sys::termios::{self, SetArg, Termios};

use super::sys::{cvt, SysResult};
use crate::fs::openat2::openat2;

/// A pty pair from a container's devpts.
pub(crate) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

const DEVPTS_SUPER_MAGIC: libc::c_long = 0x1cd1;

/// Opens a new pty on the devpts at `dev/pts` inside `root` (resolved inside it, no
/// symlink followed): the master from its `ptmx` (checked to be devpts's char 5:2,
/// opened non-blocking, so even a FIFO there could not hang us), unlocked, and the slave
/// from the master with TIOCGPTPEER. Both O_NOCTTY and close-on-exec. Syscalls only:
/// the cloned child calls this between clone and exec.
pub(crate) fn open_in(root: RawFd) -> SysResult<Pty> {
    let master = openat2(
        root,
        c"dev/pts/ptmx",
        libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
    )?;
    let m = master.as_raw_fd();
    // SAFETY: all-zero is a valid value of these plain C structs.
    let (mut st, mut sfs): (libc::stat, libc::statfs) = unsafe { std::mem::zeroed() };
    // SAFETY: an fd this process owns and pointers to structs this frame owns.
    cvt(unsafe { libc::fstat(m, &mut st) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fstatfs(m, &mut sfs) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR
        || st.st_rdev != libc::makedev(5, 2)
        || sfs.f_type as libc::c_long != DEVPTS_SUPER_MAGIC
    {
        return Err(libc::ENOTTY);
    }
    let unlock: libc::c_int = 0;
    // SAFETY: an ioctl on an fd this process owns; TIOCSPTLCK reads the int it points at.
    cvt(unsafe { libc::ioctl(m, libc::TIOCSPTLCK, &unlock) })?;
    // SAFETY: an ioctl on an fd this process owns; TIOCGPTPEER takes open flags and
    // returns a new fd.
    let s = cvt(unsafe {
        libc::ioctl(
            m,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(s) };
    Ok(Pty { master, slave })
}

/// The host terminal's window size (stdin's, else stdout's), when either is a terminal.
pub(crate) fn host_winsize() -> Option<libc::winsize> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    for fd in [0, 1] {
        // SAFETY: an ioctl on fds 0 and 1, always open (stdio.rs makes sure); TIOCGWINSZ
        // writes the winsize it points at.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 {
            return Some(ws);
        }
    }
    None
}

/// Sets `master`'s window size (the kernel sends SIGWINCH to the pty's foreground
/// process group when it changes). Syscalls only.
pub(crate) fn set_winsize(master: RawFd, ws: &libc::winsize) {
    // SAFETY: an ioctl on an fd the caller owns; TIOCSWINSZ reads the winsize it points at.
    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, ws) };
}

/// Copies the host terminal's window size to `master`, if there is one.
pub(crate) fn copy_winsize(master: RawFd) {
    if let Some(ws) = host_winsize() {
        set_winsize(master, &ws);
    }
}

/// Restores the host terminal's settings when dropped.
pub(crate) struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Host stdin raw, when it is a terminal.
    pub(crate) fn enter() -> RawMode {
        let stdin = io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, s);
        }
    }
}
