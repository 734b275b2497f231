//! `-t`: a pty pair made on the host's devpts before the clone. The slave becomes the
//! command's controlling terminal (setsid + TIOCSCTTY in init.rs) and is bound over the
//! container's /dev/console; the host terminal goes raw (restored by a guard, on every
//! path) and a poll loop copies stdin -> master and master -> stdout, propagating the
//! window size initially and on SIGWINCH.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::RunError;
use crate::exit::ExitStatus;

pub(crate) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

pub(crate) fn open_pty() -> Result<Pty, RunError> {
    let p = nix::pty::openpty(None, None).map_err(|e| RunError::Sys("open a pty", e))?;
    for fd in [&p.master, &p.slave] {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| RunError::Sys("set close-on-exec", e))?;
    }
    Ok(Pty {
        master: p.master,
        slave: p.slave,
    })
}

/// Restores the host terminal's settings when dropped.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
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

fn copy_winsize(master: &OwnedFd) {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: an ioctl on an fd this process owns; the argument is an integer or points at a live value of the type the request reads or writes.
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 {
        // SAFETY: an ioctl on an fd this process owns; the argument is an integer or points at a live value of the type the request reads or writes.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

/// Relays until PID 1 exits, then drains what the command wrote last.
pub(crate) fn relay(
    master: &OwnedFd,
    pid: Pid,
    signals: &SigSet,
    with_stdin: bool,
) -> Result<u8, RunError> {
    let _raw = RawMode::enter();
    copy_winsize(master);
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| RunError::Sys("signalfd", e))?;
    let stdin = io::stdin();
    let mut stdin_open = with_stdin;
    let mut master_open = true;
    let mut out = io::stdout();
    let mut buf = [0u8; 8192];
    let mut status = None;
    while status.is_none() {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RunError::Sys("poll", e)),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 1;
        if master_open {
            if ready[i] && !pump(master.as_fd(), &mut out, &mut buf) {
                master_open = false;
            }
            i += 1;
        }
        if stdin_open && ready[i] {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = write_all(master.as_fd(), &buf[..n]);
                }
            }
        }
        if ready[0] {
            while let Ok(Some(si)) = sfd.read_signal() {
                let sig = Signal::try_from(si.ssi_signo as i32).unwrap_or(Signal::SIGCHLD);
                match sig {
                    Signal::SIGCHLD => match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) => {}
                        Ok(st) => {
                            status = ExitStatus::from_wait(st).map(ExitStatus::code).or(status)
                        }
                        Err(e) => return Err(RunError::Sys("wait for the container", e)),
                    },
                    Signal::SIGWINCH => copy_winsize(master),
                    s => {
                        let _ = nix::sys::signal::kill(pid, s);
                    }
                }
                if status.is_some() {
                    break;
                }
            }
        }
    }
    // Everything in the container is gone: drain without blocking.
    let _ = nix::fcntl::fcntl(
        master.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    while master_open && pump(master.as_fd(), &mut out, &mut buf) {}
    let _ = out.flush();
    Ok(status.unwrap_or(ExitStatus::Failure.code()))
}

/// One read from the master to stdout; false at EOF/EIO (all slave ends closed).
fn pump(master: BorrowedFd, out: &mut io::Stdout, buf: &mut [u8]) -> bool {
    match nix::unistd::read(master.as_raw_fd(), buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            true
        }
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        let n = nix::unistd::write(fd, data)?;
        data = &data[n..];
    }
    Ok(())
}
