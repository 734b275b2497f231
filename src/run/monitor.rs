//! Detached containers: the per-container monitor (as podman's conmon) and what the
//! other commands read of it.
//!
//! `run -d`, `run -it`, `start` fork a monitor (twice: it is nobody's child, in a
//! session of its own) that is the container's parent: PID 1 has PR_SET_PDEATHSIG
//! against it, so the container dies with its monitor and the monitor exits once its
//! container has ended for good. The monitor holds the container's stdio: its fds 0-2
//! are pipes whose other ends it keeps (or /dev/null, and the pty's master with -t),
//! so `run::start` passes them straight through. It writes every output to a log with
//! a size cap and one rotation, serves attach clients over a unix socket, records the
//! status and exit code, and applies the restart policy with a back-off. Its loop
//! polls and never blocks elsewhere: every fd it reads or writes is non-blocking, and
//! what a slow client has not taken is bounded (the container's output then waits).
//!
//! Layout, in the container's record dir ROOT/containers/KEY (KEY: the name, or the id
//! of an unnamed container; a named one's upper/ work/ meta.json lock live there too):
//!   config.json   id, restart policy, and the caller's record of how to create it
//!                 again (`start`); written before the monitor starts
//!   status.json   running | restarting | exited, exit code, pids, times, restarts
//!   ctr.log       one line per output line or piece: `RFC3339 stdout|stderr F|P text`
//!                 (podman's k8s-file format; P: the line goes on in the next entry);
//!   ctr.log.1     the previous one, after rotation at `LOG_MAX`
//!   attach.sock   the monitor's socket, while it runs
//!   stop          written by `stop`: the container's next exit is final
//!
//! The socket speaks frames `[kind u8][len u32 LE][payload]`: to the monitor `i`
//! (stdin bytes), `w` (rows, cols: u16 LE each), `s` (a signal for PID 1: i32 LE),
//! `e` (end of stdin); from it `o` (stdout), `r` (stderr), `x` (exit code, i32 LE),
//! sent after the container's resources are gone.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::state::{self, alive, start_time};
use super::stdio::{poll, set_nonblock, HostFlags};
use super::sys::errno;
use super::{RunError, Spec};
use crate::exit::ExitStatus;
use crate::fs::path_error::io_err;

/// A log file's size cap; at it the file becomes ctr.log.1 (replacing the older one).
pub(crate) const LOG_MAX: u64 = 8 << 20;
/// What one attach client may have waiting before the container's output waits.
const PEER_MAX: usize = 1 << 20;
/// Bytes read from the container per wakeup and fd.
const CHUNK: usize = 32 << 10;
/// After PID 1 exits: how long leftover output and clients' queues may take.
const DRAIN: Duration = Duration::from_secs(3);
/// The restart back-off: doubled per quick failure, up to the cap; a run that lasted
/// `STEADY` resets it.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const STEADY: Duration = Duration::from_secs(10);

/// `--restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restart {
    No,
    /// Restart after a non-zero exit, at most N times (None: no limit).
    OnFailure(Option<u32>),
    Always,
}

impl Restart {
    pub(crate) fn parse(s: &str) -> Result<Restart, RunError> {
        let bad = || {
            RunError::Usage(format!(
                "bad --restart {s:?}: use no, on-failure[:N], always or unless-stopped"
            ))
        };
        Ok(match s.split_once(':') {
            None if s == "no" => Restart::No,
            None if s == "always" || s == "unless-stopped" => Restart::Always,
            None if s == "on-failure" => Restart::OnFailure(None),
            Some(("on-failure", n)) => Restart::OnFailure(Some(n.parse().map_err(|_| bad())?)),
            _ => return Err(bad()),
        })
    }

    /// After an exit with `code`, `restarts` restarts so far: go again?
    fn again(self, code: i32, restarts: u32) -> bool {
        match self {
            Restart::No => false,
            Restart::Always => true,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
        }
    }
}

/// The back-off before restart number `n` (0-based) of a run of quick failures.
fn backoff(n: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

/// A detached container's configuration (config.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Config {
    pub id: String,
    /// The record dir's name: the container's name, else its id.
    pub key: String,
    pub name: Option<String>,
    pub image: String,
    pub created: u64,
    /// As typed (`Restart::parse`).
    pub restart: String,
    /// Removed once it has ended (an unnamed `run -it`).
    pub auto_remove: bool,
    pub tty: bool,
    pub stdin: bool,
    /// The caller's record of how to make the container again (for `start`).
    pub create: serde_json::Value,
}

/// What the monitor says of its container (status.json).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Status {
    /// created, running, restarting, exited.
    pub status: String,
    pub exit_code: Option<i32>,
    /// PID 1 (0 when not running).
    pub pid: i32,
    pub monitor_pid: i32,
    pub monitor_start: u64,
    /// The monitor's PID namespace (inode; 0: not recorded): from another one its pid
    /// cannot be judged, nor signalled.
    #[serde(default)]
    pub pidns: u64,
    /// Unix seconds.
    pub started: u64,
    pub finished: u64,
    pub restarts: u32,
}

impl Status {
    fn monitor_alive(&self) -> bool {
        self.monitor_pid > 0
            && (state::other_pid_namespace(self.pidns)
                || alive(self.monitor_pid, self.monitor_start))
    }

    /// As shown by `ps`: running, restarting, exited (CODE).
    pub(crate) fn show(&self) -> String {
        match (self.status.as_str(), self.exit_code) {
            ("exited", Some(c)) => format!("exited ({c})"),
            ("exited", None) => "exited (unknown)".into(),
            (s, _) => s.to_string(),
        }
    }
}

pub(crate) fn record_dir(root: &Path, key: &str) -> PathBuf {
    state::containers_dir(root).join(key)
}

fn socket_path(dir: &Path) -> PathBuf {
    dir.join("attach.sock")
}

pub(crate) fn log_path(dir: &Path) -> PathBuf {
    dir.join("ctr.log")
}

fn write_json(path: &Path, v: &impl Serialize) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(v).map_err(io::Error::other)?,
    )?;
    fs::rename(&tmp, path)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// A detached container found by name or id.
pub(crate) struct Found {
    pub dir: PathBuf,
    pub config: Config,
}

impl Found {
    /// The status, corrected when the monitor is gone without saying so (killed).
    pub(crate) fn status(&self) -> Status {
        let mut s: Status = read_json(&self.dir.join("status.json")).unwrap_or_else(|| Status {
            status: "created".into(),
            ..Status::default()
        });
        if matches!(s.status.as_str(), "running" | "restarting") && !s.monitor_alive() {
            s.status = "exited".into();
            s.pid = 0;
        }
        s
    }

    pub(crate) fn running(&self) -> bool {
        let s = self.status();
        s.monitor_alive() && s.status != "exited"
    }
}

/// Every detached container's record, by key.
pub(crate) fn list(root: &Path) -> Vec<Found> {
    let Ok(rd) = fs::read_dir(state::containers_dir(root)) else {
        return Vec::new();
    };
    let mut v: Vec<Found> = rd
        .flatten()
        .filter_map(|e| {
            let config = read_json(&e.path().join("config.json"))?;
            Some(Found {
                dir: e.path(),
                config,
            })
        })
        .collect();
    v.sort_by(|a, b| a.config.key.cmp(&b.config.key));
    v
}

/// The detached container `name` (its name, key or id; a unique id prefix of 4+).
pub(crate) fn find(root: &Path, name: &str) -> Option<Found> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let dir = record_dir(root, name);
    if let Some(config) = read_json(&dir.join("config.json")) {
        return Some(Found { dir, config });
    }
    let mut hits: Vec<Found> = list(root)
        .into_iter()
        .filter(|f| f.config.id == name || (name.len() >= 4 && f.config.id.starts_with(name)))
        .collect();
    (hits.len() == 1).then(|| hits.remove(0))
}

/// Writes the record of a container about to be started (config.json; status
/// `created`), refusing one whose monitor still runs.
pub(crate) fn create(root: &Path, cfg: &Config) -> Result<PathBuf, RunError> {
    let dir = record_dir(root, &cfg.key);
    if let Some(f) = find(root, &cfg.key).filter(|f| f.dir == dir) {
        if f.running() {
            return Err(RunError::NameInUse(cfg.key.clone()));
        }
    }
    for d in [&state::containers_dir(root), &dir] {
        crate::store::private_dir(d).map_err(io_err("create", d))?;
    }
    let p = dir.join("config.json");
    write_json(&p, cfg).map_err(io_err("write", &p))?;
    let _ = fs::remove_file(dir.join("stop"));
    Ok(dir)
}

/// Starts the monitor of the container `spec` describes, its record made by `create`;
/// returns once the command was exec'd (or with the error that stopped it: exit status
/// 125, 126, 127 as for `run`). `client`: the other end of a socket pair the caller
/// attaches through, connected before the container starts (no output is missed).
pub(crate) fn spawn(
    root: &Path,
    cfg: &Config,
    spec: &Spec,
    client: Option<UnixStream>,
) -> Result<(), RunError> {
    let restart = Restart::parse(&cfg.restart)?;
    let dir = record_dir(root, &cfg.key);
    let (report_rd, report_wr) = super::pipe()?;
    // SAFETY: locker is single-threaded here (nothing was spawned before `run`), so
    // the child may go on running Rust code.
    match unsafe { nix::unistd::fork() }.map_err(|e| RunError::Sys("fork the monitor", e))? {
        nix::unistd::ForkResult::Child => {
            drop(report_rd);
            let _ = nix::unistd::setsid();
            // SAFETY: as above; the grandchild is the monitor, the child exits at once.
            let code = match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    let mut m = Monitor::new(root, dir, cfg, restart, report_wr, client);
                    m.main(spec)
                }
                _ => 0,
            };
            // SAFETY: _exit ends the process at once: no destructor of the caller's
            // state (its guards, its store lock) runs twice.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(report_wr);
            drop(client);
            let _ = waitpid(child, None);
            let mut buf = String::new();
            let _ = fs::File::from(report_rd).read_to_string(&mut buf);
            match buf.split_once(' ') {
                _ if buf == "ok" => Ok(()),
                Some((code, message)) => Err(RunError::Reported {
                    code: code.parse().unwrap_or(125),
                    message: message.to_string(),
                }),
                None => Err(RunError::Reported {
                    code: 125,
                    message: format!(
                        "the monitor of container {} ended before starting it",
                        cfg.key
                    ),
                }),
            }
        }
    }
}

/// The error as `main` prints it: the chain on one line.
fn one_line(e: &RunError) -> String {
    let mut line = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !line.contains(&t) {
            line = format!("{line}: {t}");
        }
        src = s.source();
    }
    line
}

/// One frame of the attach protocol.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// Takes the complete frames off the front of `buf`.
fn frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 5 {
        let len = u32::from_le_bytes(buf[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        if buf.len() - at - 5 < len {
            break;
        }
        out.push((buf[at], buf[at + 5..at + 5 + len].to_vec()));
        at += 5 + len;
    }
    buf.drain(..at);
    out
}

/// Bytes waiting to be written to a non-blocking fd.
#[derive(Default)]
struct Queue {
    data: VecDeque<u8>,
}

impl Queue {
    fn push(&mut self, b: &[u8]) {
        self.data.extend(b);
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    /// Writes what `fd` takes; Err on a write error other than EAGAIN.
    fn flush(&mut self, fd: RawFd) -> Result<(), i32> {
        while !self.data.is_empty() {
            let (a, _) = self.data.as_slices();
            // SAFETY: writes from a live slice, at most its length.
            let n = unsafe { libc::write(fd, a.as_ptr().cast(), a.len()) };
            if n > 0 {
                self.data.drain(..n as usize);
                continue;
            }
            match errno() {
                libc::EINTR => {}
                libc::EAGAIN => return Ok(()),
                e => return Err(e),
            }
        }
        Ok(())
    }
}

/// Reads what `fd` has (non-blocking) into `buf`: Some(n), n == 0 at EOF (or EIO: a
/// pty whose slaves are all closed); None when nothing is there now.
fn read_some(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    loop {
        // SAFETY: reads into a live buffer, at most its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Some(n as usize);
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return None,
            _ => return Some(0),
        }
    }
}

/// The container's log: entries in podman's k8s-file format, rotated at `max`.
pub(crate) struct Log {
    path: PathBuf,
    file: Option<fs::File>,
    size: u64,
    max: u64,
    /// Per stream: the last entry was a piece (P), the line goes on.
    partial: [bool; 2],
}

impl Log {
    pub(crate) fn open(path: PathBuf, max: u64) -> Log {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Log {
            path,
            file,
            size,
            max,
            partial: [false; 2],
        }
    }

    /// Appends output of stream 1 (stdout) or 2 (stderr), one entry per line.
    pub(crate) fn write(&mut self, stream: u8, data: &[u8], now: SystemTime) {
        let name = if stream == 2 { "stderr" } else { "stdout" };
        let ts = humantime::format_rfc3339_nanos(now).to_string();
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut rest = data;
        while !rest.is_empty() {
            let (line, full) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            rest = &rest[(line.len() + full as usize).min(rest.len())..];
            out.extend_from_slice(
                format!("{ts} {name} {} ", if full { 'F' } else { 'P' }).as_bytes(),
            );
            out.extend_from_slice(line);
            out.push(b'\n');
            self.partial[(stream == 2) as usize] = !full;
        }
        if self.size + out.len() as u64 > self.max && self.size > 0 {
            let _ = fs::rename(&self.path, self.path.with_extension("log.1"));
            *self = Log {
                partial: self.partial,
                ..Log::open(self.path.clone(), self.max)
            };
        }
        if let Some(f) = self.file.as_mut() {
            // A full disk loses log lines, never the container's output to clients.
            if f.write_all(&out).is_ok() {
                self.size += out.len() as u64;
            }
        }
    }
}

/// One entry of a log: (timestamp, stream 1|2, whole line, text).
pub(crate) fn parse_entry(line: &[u8]) -> Option<(&str, u8, bool, &[u8])> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => 1,
        b"stderr" => 2,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some((ts, stream, full, parts.next().unwrap_or(b"")))
}

/// A client of the monitor's socket.
struct Peer {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Queue,
    gone: bool,
}

/// The monitor: see the module doc.
struct Monitor {
    root: PathBuf,
    dir: PathBuf,
    cfg: Config,
    restart: Restart,
    report: Option<OwnedFd>,
    peers: Vec<Peer>,
    listener: Option<UnixListener>,
    log: Log,
    /// The container's outputs: (fd, stream). Pipes (kept across restarts) or the pty.
    outs: Vec<(RawFd, u8)>,
    /// Where stdin goes: the stdin pipe's write end, or the pty's master.
    input: Option<RawFd>,
    input_q: Queue,
    /// A client ended stdin: close the pipe once `input_q` is through.
    input_eof: bool,
    /// Our ends of the stdio pipes.
    pipes: Vec<OwnedFd>,
    stdin_pipe: Option<OwnedFd>,
    master: Option<OwnedFd>,
    status: Status,
    /// The record was made for this run (`run`), not kept from an earlier one
    /// (`start`): a failed first start removes it.
    fresh: bool,
}

/// What ended a wait of the monitor's loop.
enum Event {
    Exited(i32),
    Stop,
    Timeout,
    Nothing,
}

impl Monitor {
    fn new(
        root: &Path,
        dir: PathBuf,
        cfg: &Config,
        restart: Restart,
        report: OwnedFd,
        client: Option<UnixStream>,
    ) -> Monitor {
        let log = Log {
            path: log_path(&dir),
            file: None,
            size: 0,
            max: LOG_MAX,
            partial: [false; 2],
        };
        Monitor {
            fresh: !dir.join("status.json").exists(),
            root: root.to_path_buf(),
            dir,
            cfg: cfg.clone(),
            restart,
            report: Some(report),
            peers: client
                .into_iter()
                .map(|sock| {
                    let _ = sock.set_nonblocking(true);
                    Peer {
                        sock,
                        inbuf: Vec::new(),
                        out: Queue::default(),
                        gone: false,
                    }
                })
                .collect(),
            listener: None,
            log,
            outs: Vec::new(),
            input: None,
            input_q: Queue::default(),
            input_eof: false,
            pipes: Vec::new(),
            stdin_pipe: None,
            master: None,
            status: Status {
                status: "created".into(),
                monitor_pid: std::process::id() as i32,
                monitor_start: start_time(std::process::id() as i32).unwrap_or(0),
                pidns: state::pid_namespace(),
                ..Status::default()
            },
        }
    }

    fn say(&mut self, msg: &str) {
        if let Some(r) = self.report.take() {
            let _ = fs::File::from(r).write_all(msg.as_bytes());
        }
    }

    fn save(&self) {
        let _ = write_json(&self.dir.join("status.json"), &self.status);
    }

    /// The container's stdio on fds 0-2 (inherited by PID 1), our ends above; every
    /// other fd closed.
    fn stdio(&mut self) -> Result<(), RunError> {
        let mut keep: Vec<RawFd> = self.report.iter().map(|r| r.as_raw_fd()).collect();
        keep.extend(self.peers.iter().map(|p| p.sock.as_raw_fd()));
        super::sys::close_fds_except(&keep);
        let null = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(io_err("open", Path::new("/dev/null")))?;
        let dup2 = |from: RawFd, to: RawFd| {
            // SAFETY: dup2 between fds this process owns.
            unsafe { libc::dup2(from, to) }
        };
        let (pipes_in, pipe_out) = (self.cfg.stdin && !self.cfg.tty, !self.cfg.tty);
        if pipes_in {
            let (rd, wr) = super::pipe()?;
            dup2(rd.as_raw_fd(), 0);
            set_nonblock(wr.as_raw_fd());
            self.input = Some(wr.as_raw_fd());
            self.stdin_pipe = Some(wr);
        } else {
            dup2(null.as_raw_fd(), 0);
        }
        for fd in [1, 2] {
            if pipe_out {
                let (rd, wr) = super::pipe()?;
                dup2(wr.as_raw_fd(), fd);
                set_nonblock(rd.as_raw_fd());
                self.outs.push((rd.as_raw_fd(), fd as u8));
                self.pipes.push(rd);
            } else {
                dup2(null.as_raw_fd(), fd);
            }
        }
        Ok(())
    }

    fn listen(&mut self) -> Result<(), RunError> {
        let p = socket_path(&self.dir);
        let _ = fs::remove_file(&p);
        let l = UnixListener::bind(&p).map_err(io_err("listen on", &p))?;
        l.set_nonblocking(true).map_err(io_err("listen on", &p))?;
        self.listener = Some(l);
        Ok(())
    }

    fn main(&mut self, spec: &Spec) -> i32 {
        if let Err(e) = self.stdio().and_then(|()| self.listen()) {
            self.say(&format!("125 {}", one_line(&e)));
            if self.fresh {
                self.discard();
            }
            return 1;
        }
        // Opened after stdio() closed every fd the monitor inherited.
        self.log = Log::open(log_path(&self.dir), LOG_MAX);
        let mut signals = SigSet::empty();
        for &s in super::init::FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
            signals.add(Signal::try_from(s).expect("signal"));
        }
        let _ = signals.thread_block();
        let Ok(sfd) =
            SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        else {
            self.say("125 signalfd failed");
            return 1;
        };
        let mut quick = 0u32;
        loop {
            let started = Instant::now();
            let s = match super::start(&self.root, spec) {
                Ok(s) => s,
                Err(e) => {
                    let code = e.exit_status().code();
                    if self.report.is_some() {
                        // Clean up before answering: when `run -d` returns, nothing
                        // of a container that never started is left.
                        let msg = format!("{code} {}", one_line(&e));
                        if self.fresh {
                            self.discard();
                            self.say(&msg);
                        } else {
                            // `start` of a kept container: it stays, and says why.
                            self.exited(code as i32);
                            self.save();
                            self.say(&msg);
                            self.end(None);
                        }
                        return 1;
                    }
                    self.exited(code as i32);
                    break;
                }
            };
            self.status.status = "running".into();
            self.status.pid = s.pid.as_raw();
            self.status.started = state::now();
            self.status.exit_code = None;
            self.save();
            self.say("ok");
            // `s` (guard, named lock) lives until `finish` below.
            let mut s = s;
            let pid = s.pid;
            if let Some(m) = s.master.take() {
                set_nonblock(m.as_raw_fd());
                self.outs.retain(|o| o.1 != 3);
                self.outs.push((m.as_raw_fd(), 3));
                if self.cfg.stdin {
                    self.input = Some(m.as_raw_fd());
                }
                self.master = Some(m);
            }
            let code = loop {
                if let Event::Exited(c) = self.serve(&sfd, Some(pid), None) {
                    break c;
                }
            };
            self.drain();
            let _ = s.finish();
            if let Some(m) = self.master.take() {
                self.outs.retain(|o| o.0 != m.as_raw_fd());
                if self.input == Some(m.as_raw_fd()) {
                    self.input = None;
                }
            }
            let stopped = fs::remove_file(self.dir.join("stop")).is_ok();
            if stopped || !self.restart.again(code, self.status.restarts) {
                self.exited(code);
                break;
            }
            quick = if started.elapsed() >= STEADY {
                0
            } else {
                quick + 1
            };
            self.status.status = "restarting".into();
            self.status.exit_code = Some(code);
            self.status.pid = 0;
            self.status.finished = state::now();
            self.status.restarts += 1;
            self.save();
            let deadline = Instant::now() + backoff(quick.saturating_sub(1));
            let stop = loop {
                match self.serve(&sfd, None, Some(deadline)) {
                    Event::Timeout => break false,
                    Event::Stop => break true,
                    Event::Exited(_) | Event::Nothing => {}
                }
            };
            if stop || fs::remove_file(self.dir.join("stop")).is_ok() {
                self.exited(code);
                break;
            }
        }
        let code = self.status.exit_code.unwrap_or(125);
        self.end(Some(code));
        0
    }

    /// The first start failed: the record goes (a named container's layers stay).
    fn discard(&mut self) {
        for f in [
            "config.json",
            "status.json",
            "ctr.log",
            "ctr.log.1",
            "attach.sock",
        ] {
            let _ = fs::remove_file(self.dir.join(f));
        }
        let _ = fs::remove_dir(&self.dir);
    }

    fn exited(&mut self, code: i32) {
        self.status.status = "exited".into();
        self.status.exit_code = Some(code);
        self.status.pid = 0;
        self.status.finished = state::now();
    }

    /// The container ended for good: the record says so (or is gone), then the
    /// clients hear the code and the monitor exits.
    fn end(&mut self, code: Option<i32>) {
        let _ = fs::remove_file(socket_path(&self.dir));
        self.listener = None;
        if self.cfg.auto_remove {
            let _ = crate::store::remove_tree(&self.dir);
        } else {
            self.save();
        }
        if let Some(c) = code {
            for p in &mut self.peers {
                p.out.push(&frame(b'x', &c.to_le_bytes()));
            }
        }
        let deadline = Instant::now() + DRAIN;
        while Instant::now() < deadline {
            let mut fds: Vec<libc::pollfd> = Vec::new();
            for p in self.peers.iter_mut().filter(|p| !p.gone) {
                if p.out.flush(p.sock.as_raw_fd()).is_err() || p.out.len() == 0 {
                    p.gone = true;
                } else {
                    fds.push(pollfd(p.sock.as_raw_fd(), libc::POLLOUT));
                }
            }
            if fds.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = poll(&mut fds, left.as_millis().max(1) as libc::c_int);
        }
    }

    /// After PID 1 exited: what is left in the output pipes or the pty, bounded.
    fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN;
        let mut buf = vec![0u8; CHUNK];
        let outs = self.outs.clone();
        for (fd, stream) in outs {
            while Instant::now() < deadline {
                match read_some(fd, &mut buf) {
                    Some(n) if n > 0 => self.output(stream, &buf[..n]),
                    _ => break,
                }
            }
        }
    }

    /// Output of the container: to the log and to every client.
    fn output(&mut self, stream: u8, data: &[u8]) {
        let s = if stream == 2 { 2 } else { 1 };
        self.log.write(s, data, SystemTime::now());
        let f = frame(if s == 2 { b'r' } else { b'o' }, data);
        for p in self.peers.iter_mut().filter(|p| !p.gone) {
            p.out.push(&f);
        }
    }

    fn handle_message(&mut self, kind: u8, data: &[u8], pid: Option<Pid>) {
        match kind {
            b'i' if self.input.is_some() && self.input_q.len() < PEER_MAX => {
                self.input_q.push(data)
            }
            b'w' if data.len() == 4 => {
                if let Some(m) = &self.master {
                    let ws = libc::winsize {
                        ws_row: u16::from_le_bytes([data[0], data[1]]),
                        ws_col: u16::from_le_bytes([data[2], data[3]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    super::tty::set_winsize(m.as_raw_fd(), &ws);
                }
            }
            b's' if data.len() == 4 => {
                let sig = i32::from_le_bytes(data.try_into().expect("4 bytes"));
                if let (Some(pid), Ok(sig)) = (pid, Signal::try_from(sig)) {
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
            // End of stdin: a pipe gets EOF once what came before is through; a pty
            // is left as it is (as Docker does).
            b'e' if self.stdin_pipe.is_some() => self.input_eof = true,
            _ => {}
        }
    }

    /// One round of the loop: waits on the signalfd, the socket, clients and the
    /// container's stdio; returns when PID 1 exited, on a stop (SIGTERM without a
    /// container), or at `deadline`.
    fn serve(&mut self, sfd: &SignalFd, pid: Option<Pid>, deadline: Option<Instant>) -> Event {
        let backlog = self.peers.iter().any(|p| !p.gone && p.out.len() > PEER_MAX);
        let mut fds = vec![pollfd(sfd.as_raw_fd(), libc::POLLIN)];
        if let Some(l) = &self.listener {
            fds.push(pollfd(l.as_raw_fd(), libc::POLLIN));
        }
        let outs_at = fds.len();
        if !backlog {
            fds.extend(self.outs.iter().map(|(fd, _)| pollfd(*fd, libc::POLLIN)));
        }
        let input_at = fds.len();
        if let (Some(fd), true) = (self.input, self.input_q.len() > 0) {
            fds.push(pollfd(fd, libc::POLLOUT));
        }
        let peers_at = fds.len();
        for p in self.peers.iter().filter(|p| !p.gone) {
            let mut ev = 0;
            if self.input_q.len() < PEER_MAX {
                ev |= libc::POLLIN;
            }
            if p.out.len() > 0 {
                ev |= libc::POLLOUT;
            }
            fds.push(pollfd(p.sock.as_raw_fd(), ev));
        }
        let timeout = deadline.map_or(-1, |d| {
            d.saturating_duration_since(Instant::now())
                .as_millis()
                .max(1) as libc::c_int
        });
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Event::Timeout;
        }
        if poll(&mut fds, timeout).is_err() {
            return Event::Timeout;
        }
        let mut event = None;
        // Signals first (SIGCHLD: PID 1 may have exited; others go to PID 1).
        if fds[0].revents != 0 {
            while let Ok(Some(si)) = sfd.read_signal() {
                match (Signal::try_from(si.ssi_signo as i32), pid) {
                    (Ok(Signal::SIGCHLD), Some(pid)) => {
                        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                            Ok(WaitStatus::StillAlive) => {}
                            Ok(st) => {
                                if let Some(c) = ExitStatus::from_wait(st) {
                                    event = Some(Event::Exited(c.code() as i32));
                                }
                            }
                            Err(_) => event = Some(Event::Exited(125)),
                        }
                    }
                    (Ok(Signal::SIGCHLD), None) => {
                        let _ = waitpid(None, Some(WaitPidFlag::WNOHANG));
                    }
                    (Ok(Signal::SIGTERM | Signal::SIGINT), None) => event = Some(Event::Stop),
                    (Ok(Signal::SIGWINCH), _) => {}
                    (Ok(s), Some(pid)) => {
                        let _ = nix::sys::signal::kill(pid, s);
                    }
                    _ => {}
                }
            }
        }
        if self.listener.is_some() && fds[1].revents != 0 {
            while let Some(Ok((sock, _))) = self.listener.as_ref().map(|l| l.accept()) {
                let _ = sock.set_nonblocking(true);
                self.peers.push(Peer {
                    sock,
                    inbuf: Vec::new(),
                    out: Queue::default(),
                    gone: false,
                });
            }
        }
        let mut buf = vec![0u8; CHUNK];
        if !backlog {
            let ready: Vec<(RawFd, u8)> = fds[outs_at..input_at]
                .iter()
                .zip(self.outs.clone())
                .filter(|(p, _)| p.revents != 0)
                .map(|(_, o)| o)
                .collect();
            for (fd, stream) in ready {
                // A pty's master reads EIO once its slaves are closed: PID 1 is gone
                // (or going); SIGCHLD says so.
                if let Some(n) = read_some(fd, &mut buf).filter(|&n| n > 0) {
                    self.output(stream, &buf[..n]);
                } else if stream == 3 && self.master.is_some() {
                    self.outs.retain(|o| o.0 != fd);
                }
            }
        }
        if input_at < peers_at && fds[input_at].revents != 0 {
            if let Some(fd) = self.input {
                if self.input_q.flush(fd).is_err() {
                    self.input = None;
                    self.input_q = Queue::default();
                }
            }
        }
        let mut msgs = Vec::new();
        let live: Vec<usize> = (0..self.peers.len())
            .filter(|&i| !self.peers[i].gone)
            .collect();
        for (p, &i) in fds[peers_at..].iter().zip(&live) {
            let peer = &mut self.peers[i];
            if p.revents & libc::POLLOUT != 0 && peer.out.flush(peer.sock.as_raw_fd()).is_err() {
                peer.gone = true;
            }
            if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match read_some(peer.sock.as_raw_fd(), &mut buf) {
                    Some(0) => peer.gone = true,
                    Some(n) => {
                        peer.inbuf.extend_from_slice(&buf[..n]);
                        msgs.extend(frames(&mut peer.inbuf));
                    }
                    None => {}
                }
            }
        }
        self.peers.retain(|p| !p.gone);
        for (kind, data) in msgs {
            self.handle_message(kind, &data, pid);
        }
        if let Some(fd) = self.input {
            if self.input_q.flush(fd).is_err() {
                self.input = None;
                self.input_q = Queue::default();
            }
        }
        if self.input_eof && self.input_q.len() == 0 && self.stdin_pipe.is_some() {
            self.input = None;
            self.stdin_pipe = None;
        }
        event.unwrap_or(if deadline.is_some_and(|d| Instant::now() >= d) {
            Event::Timeout
        } else {
            Event::Nothing
        })
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `--detach-keys`: Docker's format, `ctrl-p,ctrl-q` (each `ctrl-X` or one character);
/// empty: no detaching.
pub(crate) fn parse_detach_keys(s: &str) -> Result<Vec<u8>, RunError> {
    let bad = || {
        RunError::Usage(format!(
            "bad --detach-keys {s:?}: use a comma-separated list of ctrl-X or single characters (default ctrl-p,ctrl-q)"
        ))
    };
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|k| match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0].to_ascii_lowercase() {
                b @ b'a'..=b'z' => Ok(b - b'a' + 1),
                b'@' => Ok(0),
                b @ (b'[' | b'\\' | b']' | b'^' | b'_') => Ok(b - b'[' + 27),
                _ => Err(bad()),
            },
            _ if k.len() == 1 => Ok(k.as_bytes()[0]),
            _ => Err(bad()),
        })
        .collect()
}

/// Finds the detach sequence in what the user types: bytes of a possible start of it
/// are held back until the next key says whether it is the sequence.
pub(crate) struct Detacher {
    keys: Vec<u8>,
    matched: usize,
}

impl Detacher {
    pub(crate) fn new(keys: Vec<u8>) -> Detacher {
        Detacher { keys, matched: 0 }
    }

    /// Appends to `out` what goes to the container; true when the sequence was typed
    /// (what followed it in `input` is dropped).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return false;
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = usize::from(b == self.keys[0]);
            if self.matched == 0 {
                out.push(b);
            }
        }
        false
    }
}

/// Connects to the monitor of the running detached container `name`.
pub(crate) fn connect(root: &Path, name: &str) -> Result<(Found, UnixStream), RunError> {
    let f = find(root, name).ok_or_else(|| RunError::NoContainer(name.into()))?;
    if !f.running() {
        return Err(RunError::NotRunning(name.into()));
    }
    let p = socket_path(&f.dir);
    let sock = UnixStream::connect(&p).map_err(io_err("connect to the monitor at", &p))?;
    Ok((f, sock))
}

/// The client side of an attach (`attach`, `run -it`, `start -a`): the terminal raw
/// when `tty`, stdin to the container when `stdin`, its output to ours, window sizes
/// and signals passed on. Returns the container's exit code, or None when the user
/// typed the detach keys (the container goes on).
pub(crate) fn session(
    sock: UnixStream,
    keys: Vec<u8>,
    stdin: bool,
    tty: bool,
) -> Result<Option<u8>, RunError> {
    let mut signals = SigSet::empty();
    for &s in super::init::FORWARDED {
        signals.add(Signal::try_from(s).expect("signal"));
    }
    signals
        .thread_block()
        .map_err(|e| RunError::Sys("block signals", e))?;
    let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| RunError::Sys("signalfd", e))?;
    let _raw = (tty && stdin).then(super::tty::RawMode::enter);
    let _flags = HostFlags::of(&[1, 2]);
    sock.set_nonblocking(true).map_err(|e| {
        RunError::Sys(
            "attach",
            nix::Error::from_raw(e.raw_os_error().unwrap_or(0)),
        )
    })?;
    let s = sock.as_raw_fd();
    let mut to_sock = Queue::default();
    let winsize = |q: &mut Queue| {
        if let Some(ws) = super::tty::host_winsize() {
            let mut p = ws.ws_row.to_le_bytes().to_vec();
            p.extend_from_slice(&ws.ws_col.to_le_bytes());
            q.push(&frame(b'w', &p));
        }
    };
    if tty {
        winsize(&mut to_sock);
    }
    let mut det = Detacher::new(keys);
    let (mut out, mut err) = (Queue::default(), Queue::default());
    let mut inbuf = Vec::new();
    let mut stdin_open = stdin;
    let mut buf = vec![0u8; CHUNK];
    let mut typed = Vec::new();
    loop {
        let mut fds = vec![pollfd(sfd.as_raw_fd(), libc::POLLIN)];
        let mut ev = 0;
        if out.len() == 0 && err.len() == 0 {
            ev |= libc::POLLIN;
        }
        if to_sock.len() > 0 {
            ev |= libc::POLLOUT;
        }
        fds.push(pollfd(s, ev));
        let stdin_at = fds.len();
        if stdin_open && to_sock.len() < PEER_MAX {
            fds.push(pollfd(0, libc::POLLIN));
        }
        let outs_at = fds.len();
        if out.len() > 0 {
            fds.push(pollfd(1, libc::POLLOUT));
        }
        if err.len() > 0 {
            fds.push(pollfd(2, libc::POLLOUT));
        }
        poll(&mut fds, -1)?;
        // Signals first: a resize before the input that follows it.
        if fds[0].revents != 0 {
            while let Ok(Some(si)) = sfd.read_signal() {
                if si.ssi_signo as i32 == libc::SIGWINCH {
                    if tty {
                        winsize(&mut to_sock);
                    }
                } else {
                    to_sock.push(&frame(b's', &(si.ssi_signo as i32).to_le_bytes()));
                }
            }
        }
        if fds.len() > stdin_at && outs_at > stdin_at && fds[stdin_at].revents != 0 {
            match read_some(0, &mut buf) {
                Some(0) => {
                    stdin_open = false;
                    to_sock.push(&frame(b'e', &[]));
                }
                Some(n) => {
                    typed.clear();
                    let detach = det.feed(&buf[..n], &mut typed);
                    if !typed.is_empty() {
                        to_sock.push(&frame(b'i', &typed));
                    }
                    if detach {
                        // What was typed before the keys still reaches the container.
                        let deadline = Instant::now() + Duration::from_secs(1);
                        while to_sock.len() > 0 && Instant::now() < deadline {
                            if to_sock.flush(s).is_err() {
                                break;
                            }
                            let mut p = [pollfd(s, libc::POLLOUT)];
                            let _ = poll(&mut p, 100);
                        }
                        return Ok(None);
                    }
                }
                None => {}
            }
        }
        if fds[1].revents & libc::POLLOUT != 0 && to_sock.flush(s).is_err() {
            return Err(lost());
        }
        if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match read_some(s, &mut buf) {
                Some(0) => return Err(lost()),
                Some(n) => {
                    inbuf.extend_from_slice(&buf[..n]);
                    for (kind, data) in frames(&mut inbuf) {
                        match kind {
                            b'o' => out.push(&data),
                            b'r' => err.push(&data),
                            b'x' if data.len() == 4 => {
                                let code = i32::from_le_bytes(data.try_into().expect("4"));
                                let _ = (out.flush_all(1), err.flush_all(2));
                                return Ok(Some(code as u8));
                            }
                            _ => {}
                        }
                    }
                }
                None => {}
            }
        }
        let _ = to_sock.flush(s);
        // A failed write to our stdout: the reader is gone; what it would get is dropped.
        if out.flush(1).is_err() {
            out = Queue::default();
        }
        if err.flush(2).is_err() {
            err = Queue::default();
        }
    }
}

fn lost() -> RunError {
    RunError::Setup {
        step: "attach: the container's monitor closed the connection".into(),
        source: io::Error::from_raw_os_error(libc::EPIPE),
    }
}

impl Queue {
    /// Writes all of it, waiting (bounded: `DRAIN`) for a slow reader.
    fn flush_all(&mut self, fd: RawFd) -> Result<(), i32> {
        let deadline = Instant::now() + DRAIN;
        while self.len() > 0 && Instant::now() < deadline {
            self.flush(fd)?;
            let mut p = [pollfd(fd, libc::POLLOUT)];
            let _ = poll(&mut p, 100);
        }
        Ok(())
    }
}

/// `logs` options.
pub(crate) struct LogOpts {
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

/// Writes the log of container `name` (stdout entries to `out`, stderr to `err`); with
/// `follow`, goes on until the container has ended for good.
pub(crate) fn logs(
    root: &Path,
    name: &str,
    o: &LogOpts,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), RunError> {
    let f = find(root, name).ok_or_else(|| RunError::NoContainer(name.into()))?;
    let path = log_path(&f.dir);
    let old = fs::read(path.with_extension("log.1")).unwrap_or_default();
    let mut cur = fs::File::open(&path).ok();
    let mut data = Vec::new();
    if let Some(c) = cur.as_mut() {
        let _ = c.read_to_end(&mut data);
    }
    let mut lines: Vec<&[u8]> = old.split(|&b| b == b'\n').collect();
    lines.extend(data.split(|&b| b == b'\n'));
    let lines: Vec<&[u8]> = lines.into_iter().filter(|l| !l.is_empty()).collect();
    // --tail counts whole lines: entries back to the Nth last F.
    let first = match o.tail {
        None => 0,
        Some(n) => {
            let mut seen = 0;
            let mut at = lines.len();
            for (i, l) in lines.iter().enumerate().rev() {
                if parse_entry(l).is_some_and(|e| e.2) {
                    if seen == n {
                        break;
                    }
                    seen += 1;
                }
                at = i;
            }
            if n == 0 {
                lines.len()
            } else {
                at
            }
        }
    };
    let mut at_start = [true; 2];
    let mut show = |l: &[u8], out: &mut dyn Write, err: &mut dyn Write| -> io::Result<()> {
        let Some((ts, stream, full, text)) = parse_entry(l) else {
            return Ok(());
        };
        let w: &mut dyn Write = if stream == 2 { err } else { out };
        let s = (stream == 2) as usize;
        if o.timestamps && at_start[s] {
            write!(w, "{ts} ")?;
        }
        w.write_all(text)?;
        if full {
            w.write_all(b"\n")?;
        }
        at_start[s] = full;
        Ok(())
    };
    let werr = |e: io::Error| RunError::Setup {
        step: "write the log".into(),
        source: e,
    };
    for l in &lines[first..] {
        show(l, out, err).map_err(werr)?;
    }
    out.flush().map_err(werr)?;
    if !o.follow {
        return Ok(());
    }
    // Follow: read what is appended; a rotation shows as a new file at `path` (the
    // old one is read to its end first). Ends once the monitor is gone and all is read.
    use std::os::unix::fs::MetadataExt;
    let mut pending = Vec::new();
    loop {
        let done = !f.running();
        let mut got = false;
        if let Some(c) = cur.as_mut() {
            let mut more = Vec::new();
            let _ = c.read_to_end(&mut more);
            got = !more.is_empty();
            pending.extend_from_slice(&more);
        }
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let l: Vec<u8> = pending.drain(..=i).collect();
            show(&l[..l.len() - 1], out, err).map_err(werr)?;
        }
        out.flush().map_err(werr)?;
        let rotated = match (cur.as_ref(), fs::metadata(&path)) {
            (Some(c), Ok(m)) => c.metadata().map_or(true, |cm| cm.ino() != m.ino()),
            (None, Ok(_)) => true,
            _ => false,
        };
        if rotated && !got {
            cur = fs::File::open(&path).ok();
            continue;
        }
        if done && !got {
            return Ok(());
        }
        if !got {
            // The log has no change notification here; a short nap, as `tail -f`.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Blocks until the container `name` has ended for good; returns its exit code.
pub(crate) fn wait(root: &Path, name: &str) -> Result<i32, RunError> {
    let f = find(root, name).ok_or_else(|| RunError::NoContainer(name.into()))?;
    loop {
        let s = f.status();
        if !s.monitor_alive() || s.status == "exited" {
            return Ok(f.status().exit_code.unwrap_or(-1));
        }
        // The monitor exits right after its container: wait on its pidfd.
        match super::sys::pidfd_open(s.monitor_pid) {
            Ok(fd) if alive(s.monitor_pid, s.monitor_start) => {
                let mut p = [pollfd(fd.as_raw_fd(), libc::POLLIN)];
                let _ = poll(&mut p, 1000);
            }
            _ => {}
        }
    }
}

/// Stops the detached container `name`: its next exit is final (no restart); SIGTERM
/// to PID 1, SIGKILL after `grace`; returns once the monitor has ended (bounded).
pub(crate) fn stop(root: &Path, f: &Found, grace: Duration) -> Result<(), RunError> {
    let s = f.status();
    if !s.monitor_alive() {
        return Ok(());
    }
    if state::other_pid_namespace(s.pidns) {
        return Err(RunError::NameInUse(format!(
            "{} (started in another PID namespace: stop it from there)",
            f.config.key
        )));
    }
    let p = f.dir.join("stop");
    fs::write(&p, b"").map_err(io_err("write", &p))?;
    if s.status == "restarting" {
        let _ = nix::sys::signal::kill(Pid::from_raw(s.monitor_pid), Signal::SIGTERM);
    } else if state::find_running(root, &f.config.id).is_some() {
        state::stop(root, &f.config.id, grace)?;
    } else {
        let _ = nix::sys::signal::kill(Pid::from_raw(s.monitor_pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(s.monitor_pid, s.monitor_start) && Instant::now() < deadline {
        if let Ok(fd) = super::sys::pidfd_open(s.monitor_pid) {
            let mut p = [pollfd(fd.as_raw_fd(), libc::POLLIN)];
            let _ = poll(&mut p, 100);
        }
    }
    Ok(())
}

/// What killed monitors left in records: the socket, a status that says running
/// (now exited), the record of an auto-removed container. Returns the keys fixed.
pub(crate) fn reap(root: &Path) -> Vec<String> {
    let mut fixed = Vec::new();
    for f in list(root) {
        let s: Option<Status> = read_json(&f.dir.join("status.json"));
        let Some(s) = s else { continue };
        if !matches!(s.status.as_str(), "running" | "restarting") || s.monitor_alive() {
            continue;
        }
        let _ = fs::remove_file(socket_path(&f.dir));
        let _ = fs::remove_file(f.dir.join("stop"));
        if f.config.auto_remove {
            let _ = crate::store::remove_tree(&f.dir);
        } else {
            let _ = write_json(&f.dir.join("status.json"), &f.status());
        }
        fixed.push(f.config.key);
    }
    fixed
}

/// Deletes the record of the stopped detached container `f` (a named one's layers go
/// with `state::rm`).
pub(crate) fn remove(f: &Found) -> Result<(), RunError> {
    if f.running() {
        return Err(RunError::Running(f.config.key.clone()));
    }
    if f.dir.join("meta.json").exists() {
        return Ok(());
    }
    crate::store::remove_tree(&f.dir).map_err(io_err("remove", &f.dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert_eq!(Restart::parse("no").unwrap(), Restart::No);
        assert_eq!(Restart::parse("always").unwrap(), Restart::Always);
        assert_eq!(Restart::parse("unless-stopped").unwrap(), Restart::Always);
        assert_eq!(
            Restart::parse("on-failure").unwrap(),
            Restart::OnFailure(None)
        );
        let three = Restart::parse("on-failure:3").unwrap();
        assert_eq!(three, Restart::OnFailure(Some(3)));
        for bad in ["", "sometimes", "on-failure:x", "always:2", "on-failure:-1"] {
            assert!(Restart::parse(bad).is_err(), "{bad}");
        }
        assert!(!Restart::No.again(1, 0));
        assert!(Restart::Always.again(0, 100));
        assert!(!three.again(0, 0), "a success is not a failure");
        assert!(three.again(1, 2));
        assert!(!three.again(1, 3), "exactly three restarts");
        assert!(Restart::OnFailure(None).again(137, 1000));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn detach_keys_parse_as_docker() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            vec![0x10, 0x11]
        );
        assert_eq!(parse_detach_keys("ctrl-a,d").unwrap(), vec![0x01, b'd']);
        assert_eq!(
            parse_detach_keys("ctrl-@,ctrl-[,ctrl-_").unwrap(),
            vec![0, 27, 31]
        );
        assert_eq!(parse_detach_keys("").unwrap(), Vec::<u8>::new());
        for bad in ["ctrl-", "ctrl-pq", "pq", "ctrl-1", ","] {
            assert!(parse_detach_keys(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn detacher_holds_a_prefix_back_and_finds_the_keys() {
        let mut d = Detacher::new(vec![0x10, 0x11]);
        let mut out = Vec::new();
        assert!(!d.feed(b"ls\x10", &mut out));
        assert_eq!(out, b"ls", "a possible start is held back");
        assert!(!d.feed(b"x", &mut out));
        assert_eq!(out, b"ls\x10x", "not the sequence: both go through");
        out.clear();
        assert!(!d.feed(b"\x10\x10", &mut out));
        assert_eq!(out, b"\x10", "the second ^P may start it again");
        assert!(d.feed(b"\x11rest", &mut out));
        assert_eq!(out, b"\x10");
        // Split over reads, and no keys at all.
        let mut d = Detacher::new(vec![1, b'd']);
        out.clear();
        assert!(!d.feed(b"a\x01", &mut out));
        assert!(d.feed(b"d", &mut out));
        assert_eq!(out, b"a");
        let mut none = Detacher::new(Vec::new());
        out.clear();
        assert!(!none.feed(b"\x10\x11", &mut out));
        assert_eq!(out, b"\x10\x11");
    }

    #[test]
    fn frames_split_and_join() {
        let mut buf = frame(b'o', b"hello");
        buf.extend(frame(b'x', &3i32.to_le_bytes()));
        let tail = frame(b'i', b"partial");
        buf.extend_from_slice(&tail[..4]);
        let got = frames(&mut buf);
        assert_eq!(
            got,
            vec![(b'o', b"hello".to_vec()), (b'x', vec![3, 0, 0, 0])]
        );
        assert_eq!(buf, tail[..4], "an incomplete frame waits");
        buf.extend_from_slice(&tail[4..]);
        assert_eq!(frames(&mut buf), vec![(b'i', b"partial".to_vec())]);
        assert!(buf.is_empty());
        let mut empty = frame(b'e', b"");
        assert_eq!(frames(&mut empty), vec![(b'e', Vec::new())]);
    }

    #[test]
    fn log_entries_pieces_and_rotation() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("ctr.log");
        let mut log = Log::open(p.clone(), 200);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        log.write(1, b"one\ntw", now);
        log.write(1, b"o\n", now);
        log.write(2, b"err\n", now);
        let text = fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "2023-11-14T22:13:20.000000000Z stdout F one",
                "2023-11-14T22:13:20.000000000Z stdout P tw",
                "2023-11-14T22:13:20.000000000Z stdout F o",
                "2023-11-14T22:13:20.000000000Z stderr F err",
            ]
        );
        let e = parse_entry(lines[1].as_bytes()).unwrap();
        assert_eq!(e, ("2023-11-14T22:13:20.000000000Z", 1, false, &b"tw"[..]));
        assert_eq!(parse_entry(b"garbage"), None);
        // Past the cap, the file moves to ctr.log.1 and a new one starts.
        log.write(
            1,
            b"a line that crosses the cap of two hundred bytes\n",
            now,
        );
        assert!(p.with_extension("log.1").exists());
        let rotated = fs::read_to_string(p.with_extension("log.1")).unwrap();
        assert!(rotated.contains("stderr F err"), "{rotated}");
        let fresh = fs::read_to_string(&p).unwrap();
        assert!(fresh.ends_with("two hundred bytes\n") && fresh.lines().count() == 1);
        assert!(fs::metadata(&p).unwrap().len() <= 200);
    }

    fn record_with_log(lines: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        let cfg = Config {
            id: "0123456789ab".into(),
            key: "c".into(),
            name: Some("c".into()),
            image: "img".into(),
            created: 0,
            restart: "no".into(),
            auto_remove: false,
            tty: false,
            stdin: false,
            create: serde_json::Value::Null,
        };
        let dir = create(&root, &cfg).unwrap();
        let mut log = Log::open(log_path(&dir), LOG_MAX);
        let now = SystemTime::UNIX_EPOCH;
        for l in lines {
            log.write(if l.starts_with("E:") { 2 } else { 1 }, l.as_bytes(), now);
        }
        (t, root)
    }

    fn read_logs(root: &Path, name: &str, tail: Option<usize>, ts: bool) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let o = LogOpts {
            follow: false,
            tail,
            timestamps: ts,
        };
        logs(root, name, &o, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn logs_tail_timestamps_and_lookup_by_id() {
        let (_t, root) = record_with_log(&["a\nb\n", "E:x\n", "pie", "ce\n", "last\n"]);
        assert_eq!(
            read_logs(&root, "c", None, false),
            ("a\nb\npiece\nlast\n".into(), "E:x\n".into())
        );
        assert_eq!(read_logs(&root, "c", Some(2), false).0, "piece\nlast\n");
        assert_eq!(read_logs(&root, "c", Some(0), false).0, "");
        assert_eq!(
            read_logs(&root, "c", Some(100), false).0,
            "a\nb\npiece\nlast\n"
        );
        let (ts, _) = read_logs(&root, "c", Some(1), true);
        assert_eq!(ts, "1970-01-01T00:00:00.000000000Z last\n");
        assert_eq!(
            read_logs(&root, "0123", Some(1), false).0,
            "last\n",
            "id prefix"
        );
        assert!(find(&root, "012").is_none(), "too short a prefix");
        assert!(find(&root, "../c").is_none());
        let f = find(&root, "c").unwrap();
        assert_eq!(f.status().status, "created");
        assert!(!f.running());
    }

    /// A record whose monitor is gone (killed) reads as exited, and `reap` says so.
    #[test]
    fn dead_monitor_reads_as_exited() {
        let (_t, root) = record_with_log(&[]);
        let dir = record_dir(&root, "c");
        let st = Status {
            status: "running".into(),
            monitor_pid: i32::MAX - 1,
            monitor_start: 1,
            pid: 5,
            ..Status::default()
        };
        write_json(&dir.join("status.json"), &st).unwrap();
        fs::write(socket_path(&dir), b"").unwrap();
        let f = find(&root, "c").unwrap();
        assert_eq!(f.status().show(), "exited (unknown)");
        assert_eq!(reap(&root), vec!["c".to_string()]);
        assert!(!socket_path(&dir).exists());
        let saved: Status = read_json(&dir.join("status.json")).unwrap();
        assert_eq!(saved.status, "exited");
        assert!(reap(&root).is_empty());
        remove(&f).unwrap();
        assert!(!dir.exists());
    }
}
