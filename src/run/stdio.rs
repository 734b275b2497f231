//! The container's stdio, decided in the parent before the clone (or `exec`'s fork),
//! per fd 0, 1, 2, by fstat, and the one relay loop for `run` and `exec`, with or
//! without a terminal.
//!
//! The rule: a pipe, a socket or /dev/null (char 1:3) passes straight through (the
//! container can reach nothing through it but the data stream). ANYTHING else (a
//! terminal without -t, a regular file, a directory, any other device) never reaches
//! the container, not even PID 1: through /proc/self/fd/N the container could reopen a
//! host file for reading or truncation, write into a host directory, or change a host
//! terminal's modes and inject input (TIOCSTI). Such an fd is replaced by one end of a
//! new pipe that locker relays: stdin (with -i) host -> pipe, stdout and stderr
//! pipe -> host; splice(2) when one side is a regular file (so `cat big > file` stays
//! fast), read/write otherwise. Stdin that is a directory or not readable gives the
//! container an empty pipe (EOF); stdin without -i is /dev/null (the exec tail); an fd
//! the container does not use (all three with -t, which uses the pty) is /dev/null.
//! A closed fd 0-2 of locker is first opened on /dev/null, so nothing locker opens
//! later lands there.
//!
//! The relay loop polls the signalfd and the relay fds and never blocks elsewhere: the
//! relay ends are O_NONBLOCK on locker's side (a host fd's flags are restored when the
//! loop ends, since O_NONBLOCK on a shared file description affects the caller's
//! shell), buffers are bounded (64 KiB or 1 MiB per relay, none with splice), EAGAIN
//! waits for poll. EOF on stdin closes the container's write end; a failed write to the host
//! closes the container's read end (it gets EPIPE, as with a direct pipe). When PID 1
//! exits, what is left in the pipes is drained, bounded by `DRAIN`.
//!
//! When fds 0-2 are all pipes, sockets or /dev/null (and no -t), the cost is the three
//! fstat calls: no pipe, no relay (`Stdio::is_direct`; `run` then supervises with
//! sigwait as before).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::sys::{cvt, errno};
use super::tty::{self, RawMode};
use super::RunError;
use crate::exit::ExitStatus;

/// How long the relay keeps draining the container's output after PID 1 exited (the
/// pipes hold at most their capacity then; only a blocked host terminal can stall).
const DRAIN: Duration = Duration::from_secs(3);
/// A read/write relay's buffer (1 MiB, `SPLICE_MAX`, when splice falls back for a
/// regular file: an O_APPEND one refuses splice).
const BUF: usize = 64 << 10;
/// The most one splice call moves, and the size asked for the relay pipes.
const SPLICE_MAX: usize = 1 << 20;
/// Calls per relay per wakeup, so one busy relay cannot starve the others.
const BUDGET: usize = 64;

/// What an fd of locker is, for the rule above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A pipe (FIFO), a socket or /dev/null: passed through.
    Safe,
    Dir,
    Regular,
    /// A terminal, any other device.
    Other,
}

fn class(st: &libc::stat) -> Class {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO | libc::S_IFSOCK => Class::Safe,
        libc::S_IFCHR if st.st_rdev == libc::makedev(1, 3) => Class::Safe,
        libc::S_IFDIR => Class::Dir,
        libc::S_IFREG => Class::Regular,
        _ => Class::Other,
    }
}

fn fstat(fd: RawFd) -> Result<libc::stat, i32> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into a stat this frame owns; a bad fd is an error, not UB.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

fn sys(what: &'static str) -> impl Fn(i32) -> RunError {
    move |e| RunError::Sys(what, nix::Error::from_raw(e))
}

fn get_flags(fd: RawFd) -> Result<libc::c_int, i32> {
    // SAFETY: fcntl with integer arguments on an fd of this process.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })
}

fn set_flags(fd: RawFd, flags: libc::c_int) {
    // SAFETY: fcntl with integer arguments on an fd of this process.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
}

pub(crate) fn set_nonblock(fd: RawFd) {
    if let Ok(f) = get_flags(fd) {
        set_flags(fd, f | libc::O_NONBLOCK);
    }
}

/// A close-on-exec pipe; the end locker keeps (`ours`: 0 read, 1 write) non-blocking,
/// the container's end left blocking (O_NONBLOCK is per end: each has its own file
/// description).
fn relay_pipe(ours: usize, big: bool) -> Result<[OwnedFd; 2], RunError> {
    let (rd, wr) = super::pipe()?;
    if big {
        // Fewer wakeups for bulk output; the kernel's limit (pipe-max-size) may refuse.
        // SAFETY: fcntl with integer arguments on an fd this process owns.
        unsafe {
            libc::fcntl(
                rd.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                SPLICE_MAX as libc::c_int,
            )
        };
    }
    let p = [rd, wr];
    set_nonblock(p[ours].as_raw_fd());
    Ok(p)
}

/// The container's stdio, and what locker relays for it.
pub(crate) struct Stdio {
    /// What the child puts on fds 0, 1, 2 before anything else (sys::install_stdio);
    /// -1 keeps what it inherited (a pipe, a socket or /dev/null of the caller's).
    pub child: [RawFd; 3],
    /// The fds `child` names: closed in the parent once the child has its copies.
    child_ends: Vec<OwnedFd>,
    relays: Vec<Relay>,
    /// With -t: the pty's master (both tty relays use it).
    master: Option<OwnedFd>,
}

impl Stdio {
    /// Applies the rule to locker's fds 0-2. `stdin`: the command reads stdin (-i);
    /// `tty`: the command's stdio is a pty, so none of 0-2 is the container's.
    /// Called before run or exec opens anything else.
    pub(crate) fn plan(stdin: bool, tty: bool) -> Result<Stdio, RunError> {
        let mut s = Stdio {
            child: [-1; 3],
            child_ends: Vec::new(),
            relays: Vec::new(),
            master: None,
        };
        let mut null: Option<RawFd> = None;
        for fd in 0..3 {
            let st = match fstat(fd) {
                Ok(st) => st,
                Err(libc::EBADF) => {
                    reopen_null(fd).map_err(sys("open /dev/null on a closed stdio fd"))?;
                    continue;
                }
                Err(e) => return Err(sys("stat stdio")(e)),
            };
            let c = class(&st);
            if c == Class::Safe {
                continue;
            }
            let used = !tty && (fd != 0 || stdin);
            if !used {
                s.child[fd as usize] = match null {
                    Some(n) => n,
                    None => {
                        let n = nix::fcntl::open(
                            "/dev/null",
                            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                            nix::sys::stat::Mode::empty(),
                        )
                        .map_err(|e| RunError::Sys("open /dev/null", e))?;
                        // SAFETY: a new fd that nothing else owns.
                        let n = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) };
                        let raw = n.as_raw_fd();
                        s.child_ends.push(n);
                        null = Some(raw);
                        raw
                    }
                };
                continue;
            }
            let splice = c == Class::Regular;
            if fd == 0 {
                let fl = get_flags(0).map_err(sys("read stdin's flags"))?;
                let readable = fl & libc::O_PATH == 0 && fl & libc::O_ACCMODE != libc::O_WRONLY;
                let [rd, wr] = relay_pipe(1, splice)?;
                s.child[0] = rd.as_raw_fd();
                s.child_ends.push(rd);
                if c != Class::Dir && readable {
                    s.relays
                        .push(Relay::new(0, wr.as_raw_fd(), Some(wr), 0, false, splice));
                }
            } else {
                let [rd, wr] = relay_pipe(0, splice)?;
                s.child[fd as usize] = wr.as_raw_fd();
                s.child_ends.push(wr);
                s.relays
                    .push(Relay::new(rd.as_raw_fd(), fd, Some(rd), fd, true, splice));
            }
        }
        Ok(s)
    }

    /// The caller's fds 0-2 as they are, whatever they are: an OCI runtime's caller
    /// (containerd's shim, conmon) hands the container its stdio on purpose.
    pub(crate) fn inherit() -> Stdio {
        Stdio {
            child: [-1; 3],
            child_ends: Vec::new(),
            relays: Vec::new(),
            master: None,
        }
    }

    /// Nothing to relay: the container has the caller's pipes or /dev/null.
    pub(crate) fn is_direct(&self) -> bool {
        self.relays.is_empty() && self.master.is_none()
    }

    /// After the clone or fork: the child has its copies.
    pub(crate) fn close_child_ends(&mut self) {
        self.child_ends.clear();
    }

    /// With -t: relay host stdin (when `stdin`) -> master and master -> host stdout.
    pub(crate) fn attach_tty(&mut self, master: OwnedFd, stdin: bool) {
        let m = master.as_raw_fd();
        set_nonblock(m);
        if stdin {
            self.relays.push(Relay::new(0, m, None, 0, false, false));
        }
        self.relays.push(Relay::new(m, 1, None, 1, true, false));
        self.master = Some(master);
    }
}

/// Opens /dev/null on the closed `fd` (a blocking, inheritable fd of locker's own).
fn reopen_null(fd: RawFd) -> Result<(), i32> {
    // SAFETY: a NUL-terminated path.
    let n = cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) })?;
    if n != fd {
        // SAFETY: dup2 and close on fds this process owns.
        let r = cvt(unsafe { libc::dup2(n, fd) });
        // SAFETY: as above.
        unsafe { libc::close(n) };
        r?;
    }
    Ok(())
}

/// One direction of the relay.
struct Relay {
    from: RawFd,
    to: RawFd,
    /// The pipe end to the container this relay owns: closed when it ends (EOF for the
    /// container's stdin, EPIPE for its writes).
    pipe: Option<OwnedFd>,
    /// The host fd (0-2) on this relay's side, whose flags the loop changes.
    host: RawFd,
    /// Container -> host: drained when PID 1 has exited.
    outward: bool,
    splice: bool,
    /// The host side is a regular file: a read/write fallback gets a bigger buffer.
    bulk: bool,
    /// With splice, EAGAIN means the output (a pipe) is full; else the input is empty.
    full_means_out: bool,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Waiting for the output to take more (POLLOUT).
    wait_out: bool,
    done: bool,
}

impl Relay {
    fn new(
        from: RawFd,
        to: RawFd,
        pipe: Option<OwnedFd>,
        host: RawFd,
        outward: bool,
        splice: bool,
    ) -> Relay {
        Relay {
            from,
            to,
            pipe,
            host,
            outward,
            splice,
            bulk: splice,
            full_means_out: !outward,
            buf: Vec::new(),
            start: 0,
            end: 0,
            wait_out: false,
            done: false,
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.pipe = None;
        self.buf = Vec::new();
        self.start = 0;
        self.end = 0;
    }

    /// The fd and event poll waits on for this relay, if it is still running.
    fn interest(&self) -> Option<(RawFd, libc::c_short)> {
        if self.done {
            None
        } else if self.wait_out || self.start < self.end {
            Some((self.to, libc::POLLOUT))
        } else {
            Some((self.from, libc::POLLIN))
        }
    }

    /// Moves what can be moved without blocking. `draining`: PID 1 is gone, so an empty
    /// input ends the relay instead of waiting.
    fn pump(&mut self, draining: bool) {
        for _ in 0..BUDGET {
            if self.done {
                return;
            }
            if self.splice {
                // SAFETY: splice between two fds this process owns, no offsets.
                let n = unsafe {
                    libc::splice(
                        self.from,
                        std::ptr::null_mut(),
                        self.to,
                        std::ptr::null_mut(),
                        SPLICE_MAX,
                        libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
                    )
                };
                if n > 0 {
                    self.wait_out = false;
                    continue;
                }
                if n == 0 {
                    return self.finish();
                }
                match errno() {
                    libc::EINTR => {}
                    libc::EAGAIN if self.full_means_out => {
                        self.wait_out = true;
                        return;
                    }
                    libc::EAGAIN => {
                        if draining {
                            self.finish();
                        }
                        return;
                    }
                    // Not supported for this pair (an O_APPEND file on older kernels,
                    // a file system without splice): read and write instead.
                    libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP => self.splice = false,
                    _ => return self.finish(),
                }
                continue;
            }
            if self.start < self.end {
                // SAFETY: writes from the live buffer range [start, end).
                let n = unsafe {
                    libc::write(
                        self.to,
                        self.buf[self.start..].as_ptr().cast(),
                        self.end - self.start,
                    )
                };
                if n >= 0 {
                    self.start += n as usize;
                    self.wait_out = false;
                    continue;
                }
                match errno() {
                    libc::EINTR => continue,
                    libc::EAGAIN => {
                        self.wait_out = true;
                        return;
                    }
                    _ => return self.finish(),
                }
            }
            if self.buf.is_empty() {
                self.buf = vec![0; if self.bulk { SPLICE_MAX } else { BUF }];
            }
            self.start = 0;
            self.end = 0;
            // SAFETY: reads into the live buffer, at most its length.
            let n = unsafe { libc::read(self.from, self.buf.as_mut_ptr().cast(), self.buf.len()) };
            if n > 0 {
                self.end = n as usize;
                continue;
            }
            if n == 0 {
                return self.finish();
            }
            match errno() {
                libc::EINTR => {}
                libc::EAGAIN => {
                    if draining {
                        self.finish();
                    }
                    return;
                }
                // EIO: a pty master whose slaves are all closed; any other error ends
                // the relay too.
                _ => return self.finish(),
            }
        }
    }
}

/// Host fds made non-blocking for the loop; their flags come back on drop.
pub(crate) struct HostFlags(Vec<(RawFd, libc::c_int)>);

impl HostFlags {
    fn nonblocking(relays: &[Relay]) -> HostFlags {
        HostFlags::of(&relays.iter().map(|r| r.host).collect::<Vec<_>>())
    }

    /// Makes `fds` non-blocking (a regular file stays as it is: O_NONBLOCK means
    /// nothing there, and an O_APPEND log would see no change).
    pub(crate) fn of(fds: &[RawFd]) -> HostFlags {
        let mut saved: Vec<(RawFd, libc::c_int)> = Vec::new();
        // All flags first: fds 0-2 often share one file description (a terminal).
        for &fd in fds {
            if saved.iter().any(|(f, _)| *f == fd)
                || fstat(fd).is_ok_and(|st| class(&st) == Class::Regular)
            {
                continue;
            }
            if let Ok(f) = get_flags(fd) {
                saved.push((fd, f));
            }
        }
        for &(fd, f) in &saved {
            set_flags(fd, f | libc::O_NONBLOCK);
        }
        HostFlags(saved)
    }
}

impl Drop for HostFlags {
    fn drop(&mut self) {
        for &(fd, f) in &self.0 {
            set_flags(fd, f);
        }
    }
}

pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> Result<usize, RunError> {
    // SAFETY: a live array of pollfds of the length given.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match r {
        r if r >= 0 => Ok(r as usize),
        _ if errno() == libc::EINTR => Ok(0),
        _ => Err(sys("poll")(errno())),
    }
}

/// Relays stdio (and the terminal) and forwards signals until `pid` (PID 1, or exec's
/// child) exits; then drains the container's output. Returns the exit code.
pub(crate) fn relay(mut io: Stdio, pid: Pid, signals: &SigSet) -> Result<u8, RunError> {
    let master = io.master.as_ref().map(|m| m.as_raw_fd());
    let _raw = master.map(|_| RawMode::enter());
    let _flags = HostFlags::nonblocking(&io.relays);
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| RunError::Sys("signalfd", e))?;
    let relays = &mut io.relays;
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(relays.len() + 1);
    let mut owner: Vec<usize> = Vec::with_capacity(relays.len());
    let mut status = None;
    while status.is_none() {
        fds.clear();
        owner.clear();
        fds.push(libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for (i, r) in relays.iter().enumerate() {
            if let Some((fd, events)) = r.interest() {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                owner.push(i);
            }
        }
        poll(&mut fds, -1)?;
        // Signals first: a resize that happened before the input that follows it (the
        // kernel queues SIGWINCH at the ioctl) reaches the pty before that input does.
        // Non-blocking: every pending signal, then EAGAIN.
        if fds[0].revents != 0 {
            loop {
                let si = match sfd.read_signal() {
                    Ok(Some(si)) => si,
                    Ok(None) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(RunError::Sys("read signals", e)),
                };
                match Signal::try_from(si.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) => {}
                        Ok(st) => {
                            status = ExitStatus::from_wait(st).map(ExitStatus::code).or(status)
                        }
                        Err(e) => return Err(RunError::Sys("wait for the container", e)),
                    },
                    Ok(Signal::SIGWINCH) => match master {
                        Some(m) => tty::copy_winsize(m),
                        None => {
                            let _ = nix::sys::signal::kill(pid, Signal::SIGWINCH);
                        }
                    },
                    Ok(s) => {
                        let _ = nix::sys::signal::kill(pid, s);
                    }
                    Err(_) => {}
                }
            }
        }
        for (p, &i) in fds[1..].iter().zip(&owner) {
            if p.revents & libc::POLLNVAL != 0 {
                relays[i].finish();
            } else if p.revents != 0 {
                relays[i].pump(status.is_some());
            }
        }
    }
    drain(relays);
    Ok(status.unwrap_or(ExitStatus::Failure.code()))
}

/// After PID 1 exited: stdin is closed, the output relays run until their input is
/// empty or at EOF, or `DRAIN` has passed.
fn drain(relays: &mut [Relay]) {
    let deadline = Instant::now() + DRAIN;
    for r in relays.iter_mut().filter(|r| !r.outward) {
        r.finish();
    }
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(relays.len());
    loop {
        for r in relays
            .iter_mut()
            .filter(|r| !r.wait_out && r.start == r.end)
        {
            r.pump(true);
        }
        fds.clear();
        let mut owner = Vec::with_capacity(relays.len());
        for (i, r) in relays.iter().enumerate() {
            if let Some((fd, events)) = r.interest() {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                owner.push(i);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if fds.is_empty() || left.is_zero() {
            return;
        }
        if poll(&mut fds, left.as_millis().max(1) as libc::c_int).is_err() {
            return;
        }
        for (p, &i) in fds.iter().zip(&owner) {
            if p.revents & libc::POLLNVAL != 0 {
                relays[i].finish();
            } else if p.revents != 0 {
                relays[i].pump(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    fn stat_of(p: &str) -> libc::stat {
        let f = std::fs::File::open(p).unwrap();
        fstat(f.as_raw_fd()).unwrap()
    }

    #[test]
    fn classes_follow_the_rule() {
        assert_eq!(class(&stat_of("/dev/null")), Class::Safe);
        assert_eq!(class(&stat_of("/dev/zero")), Class::Other);
        assert_eq!(class(&stat_of("/")), Class::Dir);
        let f = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(class(&stat_of(f.path().to_str().unwrap())), Class::Regular);
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(class(&fstat(r.as_raw_fd()).unwrap()), Class::Safe);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(class(&fstat(a.as_raw_fd()).unwrap()), Class::Safe);
    }

    /// Pipe -> O_APPEND file (splice, or its fallback), then EOF ends the relay.
    #[test]
    fn outward_relay_appends_to_a_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"marker\n").unwrap();
        let app = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .unwrap();
        let [rd, wr] = relay_pipe(0, true).unwrap();
        let mut r = Relay::new(rd.as_raw_fd(), app.as_raw_fd(), Some(rd), 1, true, true);
        let mut w = std::fs::File::from(wr);
        let chunk = vec![b'x'; 50_000];
        for _ in 0..10 {
            w.write_all(&chunk).unwrap();
            r.pump(false);
            assert!(!r.done);
        }
        drop(w);
        r.pump(false);
        assert!(r.done);
        let mut all = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 7 + 500_000);
        assert!(all.starts_with(b"marker\nxxx"));
    }

    /// A full output pipe makes the relay wait for POLLOUT, keeping what it read.
    #[test]
    fn copy_relay_waits_on_a_full_output() {
        let [in_rd, in_wr] = relay_pipe(0, false).unwrap();
        let [out_rd, out_wr] = relay_pipe(1, false).unwrap();
        let mut r = Relay::new(in_rd.as_raw_fd(), out_wr.as_raw_fd(), None, 1, true, false);
        let mut out = std::fs::File::from(out_rd);
        set_nonblock(out.as_raw_fd());
        // Fill the output pipe first, then give the relay input.
        let filler = vec![0xffu8; 1 << 20];
        // SAFETY: writes from a live buffer, at most its length (non-blocking: stops full).
        let pre = unsafe { libc::write(out_wr.as_raw_fd(), filler.as_ptr().cast(), filler.len()) };
        assert!(pre > 0);
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        nix::unistd::write(&in_wr, &data).unwrap();
        r.pump(false);
        assert!(
            r.wait_out && r.start < r.end,
            "read, then EAGAIN on the output"
        );
        assert_eq!(r.interest(), Some((out_wr.as_raw_fd(), libc::POLLOUT)));
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match out.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if got.len() == pre as usize + data.len() {
                        break;
                    }
                    r.pump(false);
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&got[pre as usize..], &data[..]);
        drop(in_wr);
        r.pump(false);
        assert!(r.done, "EOF ends the relay");
    }

    #[test]
    fn drain_stops_on_an_empty_pipe_with_a_writer() {
        let [rd, wr] = relay_pipe(0, false).unwrap();
        let sink = std::fs::File::create("/dev/null").unwrap();
        let mut rs = [Relay::new(
            rd.as_raw_fd(),
            sink.as_raw_fd(),
            Some(rd),
            1,
            true,
            false,
        )];
        nix::unistd::write(&wr, b"left over").unwrap();
        let t = Instant::now();
        drain(&mut rs);
        assert!(rs[0].done);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
