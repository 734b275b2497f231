//! The container's stdio (src/run/stdio.rs, src/run/tty.rs): what of the caller's fds
//! 0-2 reaches the container, and the relay. Each attack comes with a control that
//! shows the same attack working where the fd does reach it (on the host), so a
//! passing test is not vacuous. Waits are bounded and wait for expected output.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::harness::{busybox_path, wait_child, wait_line};
use crate::run::Ctx;

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `cmd` (stdin/stdout/stderr already set), bounded; returns its exit code.
fn status(cmd: Command) -> Option<i32> {
    let mut child = Session::start(cmd);
    wait_child(&mut child.0, Duration::from_secs(120)).code()
}

/// The host's busybox sh running `script`, as the control of an attack.
fn host_sh(script: &str) -> Command {
    let mut cmd = Command::new(busybox_path());
    cmd.args(["sh", "-c", script]);
    cmd
}

fn append(p: &Path) -> File {
    File::options().append(true).open(p).unwrap()
}

/// stdout (and stderr) a host file opened for appending, as `>>` does: the container
/// writes into it, but cannot reopen it through /proc/self/fd/1 to read what was there
/// or to truncate it.
#[test]
fn stdout_file_cannot_be_reopened() {
    let c = Ctx::new();
    let script = "echo secret-line; echo err-line >&2; \
        readlink /proc/self/fd/1; \
        timeout 2 head -n 1 /proc/self/fd/1 </dev/null; \
        exec 3</proc/self/fd/1; timeout 2 head -n 1 <&3; exec 3<&-; \
        : > /proc/self/fd/1; echo after";
    let f = c.l.path("log");
    std::fs::write(&f, "marker-line\n").unwrap();
    let mut cmd = c.l.command(&c.args(&[], &["sh", "-c", script]));
    cmd.stdout(append(&f)).stderr(append(&f));
    assert_eq!(status(cmd), Some(0));
    let got = std::fs::read_to_string(&f).unwrap();
    assert!(got.starts_with("marker-line\n"), "not truncated: {got:?}");
    assert_eq!(
        got.matches("marker-line").count(),
        1,
        "marker not read back: {got:?}"
    );
    for want in ["secret-line\n", "err-line\n", "pipe:[", "after\n"] {
        assert!(got.contains(want), "{want:?} missing: {got:?}");
    }

    // Controls: the same two attacks with the file itself as stdout (on the host).
    let g = c.l.path("control");
    std::fs::write(&g, "marker-line\n").unwrap();
    let mut cmd = host_sh("exec 3</proc/self/fd/1; head -n 1 <&3");
    cmd.stdout(append(&g));
    assert_eq!(status(cmd), Some(0));
    assert_eq!(
        std::fs::read_to_string(&g).unwrap(),
        "marker-line\nmarker-line\n",
        "control: a host file as fd 1 can be read back"
    );
    let mut cmd = host_sh(": > /proc/self/fd/1; echo after");
    cmd.stdout(append(&g));
    assert_eq!(status(cmd), Some(0));
    assert_eq!(
        std::fs::read_to_string(&g).unwrap(),
        "after\n",
        "control: and truncated"
    );
}

/// stdin a host directory with -i: the container gets an empty pipe, so it cannot
/// create a file in the directory through /proc/self/fd/0.
#[test]
fn stdin_directory_is_not_reachable() {
    let c = Ctx::new();
    let script = "echo x 2>/dev/null > /proc/self/fd/0/planted && echo PLANTED; \
        readlink /proc/self/fd/0; cat; echo eof";
    let d = c.l.path("dir");
    std::fs::create_dir(&d).unwrap();
    let out = c.l.path("out");
    let mut cmd = c.l.command(&c.args(&["-i"], &["sh", "-c", script]));
    cmd.stdin(File::open(&d).unwrap())
        .stdout(File::create(&out).unwrap());
    assert_eq!(status(cmd), Some(0));
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(!got.contains("PLANTED"), "{got}");
    assert!(got.contains("pipe:[") && got.ends_with("eof\n"), "{got}");
    assert!(!d.join("planted").exists());

    // Control: a host shell with the directory on fd 0 plants the file.
    let e = c.l.path("control");
    std::fs::create_dir(&e).unwrap();
    let mut cmd = host_sh("echo x > /proc/self/fd/0/planted");
    cmd.stdin(File::open(&e).unwrap());
    assert_eq!(status(cmd), Some(0));
    assert!(
        e.join("planted").exists(),
        "control: the attack works on the host"
    );
}

/// A pty made by the test: its slave becomes `cmd`'s stdin, stdout, stderr and
/// controlling terminal (setsid + TIOCSCTTY), as a terminal emulator does.
pub(crate) struct Pty {
    pub(crate) master: File,
    pub(crate) slave: OwnedFd,
}

impl Pty {
    pub(crate) fn new(rows: u16, cols: u16) -> Pty {
        // Both ends close-on-exec (libc's openpty sets neither): the tests run in
        // parallel threads, and a terminal leaked into another test's children
        // outlives its own test and blurs the end of its output.
        let flags =
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC;
        let m = nix::pty::posix_openpt(flags).unwrap();
        nix::pty::grantpt(&m).unwrap();
        nix::pty::unlockpt(&m).unwrap();
        // SAFETY: TIOCGPTPEER on the master this function owns returns a new fd.
        let s = unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCGPTPEER, flags.bits()) };
        assert!(s >= 0, "TIOCGPTPEER: {}", std::io::Error::last_os_error());
        // SAFETY: `s` is a new fd nothing else owns.
        let slave = unsafe { OwnedFd::from_raw_fd(s) };
        // SAFETY: an fd from posix_openpt; `into_raw_fd` gives up nix's ownership.
        let master = unsafe { File::from_raw_fd(m.into_raw_fd()) };
        let pty = Pty { master, slave };
        pty.resize(rows, cols);
        pty
    }

    /// Runs `cmd` on a new pty (24x80) as its controlling terminal and stdio, as a
    /// login shell's child would be; returns its exit code and all it wrote to the
    /// terminal (without carriage returns), to the slave's last close.
    pub(crate) fn run(mut cmd: Command) -> (Option<i32>, String) {
        let pty = Pty::new(24, 80);
        pty.attach(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let Pty { mut master, slave } = pty;
        drop(slave);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match master.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EIO: every slave is closed.
                    Err(_) => break,
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&out).replace('\r', ""));
        });
        let st = wait_child(&mut child, Duration::from_secs(60));
        let out = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| "<no pty output>".into());
        (st.code(), out)
    }

    /// Sets the terminal's size (what a terminal emulator does on a window resize).
    pub(crate) fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: an ioctl on the master the test owns; TIOCSWINSZ reads the winsize.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0, "TIOCSWINSZ");
    }

    pub(crate) fn attach(&self, cmd: &mut Command) {
        cmd.stdin(Stdio::from(self.slave.try_clone().unwrap()))
            .stdout(Stdio::from(self.slave.try_clone().unwrap()))
            .stderr(Stdio::from(self.slave.try_clone().unwrap()));
        // SAFETY: the pre_exec closure only makes async-signal-safe syscalls (setsid,
        // ioctl) between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// What the terminal's side shows: a reader thread on a copy of the master.
    pub(crate) fn output(&self) -> Output {
        let mut m = self.master.try_clone().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Output {
            rx,
            seen: String::new(),
        }
    }

    fn termios(&self) -> nix::sys::termios::Termios {
        nix::sys::termios::tcgetattr(&self.master).unwrap()
    }
}

pub(crate) struct Output {
    rx: Receiver<Vec<u8>>,
    pub(crate) seen: String,
}

impl Output {
    /// Waits until a line of the output (trimmed) is `line`, at most `LIMIT`.
    /// Waits until the output holds `needle` (anywhere), at most `LIMIT`.
    pub(crate) fn contains(&mut self, needle: &str) {
        let deadline = Instant::now() + LIMIT;
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {needle:?} within {LIMIT:?}; output:\n{}", self.seen),
            }
        }
    }

    pub(crate) fn line(&mut self, line: &str) {
        let deadline = Instant::now() + LIMIT;
        while !self.seen.lines().any(|l| l.trim() == line) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no line {line:?} within {LIMIT:?}; output:\n{}", self.seen),
            }
        }
    }
}

/// A spawned locker, killed if the test fails before it exits.
pub(crate) struct Session(pub(crate) std::process::Child);

impl Session {
    pub(crate) fn start(mut cmd: Command) -> Session {
        let child = cmd.spawn().unwrap();
        drop(cmd);
        Session(child)
    }

    pub(crate) fn wait(&mut self) -> Option<i32> {
        wait_child(&mut self.0, LIMIT).code()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn same_termios(a: &nix::sys::termios::Termios, b: &nix::sys::termios::Termios) -> bool {
    a.input_flags == b.input_flags
        && a.output_flags == b.output_flags
        && a.control_flags == b.control_flags
        && a.local_flags == b.local_flags
        && a.control_chars == b.control_chars
}

/// Without -t, a host terminal on fds 0-2 never reaches the container: it sees pipes
/// (or /dev/null), cannot change the terminal's modes, has no controlling terminal; the
/// terminal's settings and file status flags are as before. Control: with -t the
/// command does have a terminal (the container's own pty).
#[test]
fn host_terminal_not_given_without_t() {
    let c = Ctx::new();
    let script = "for fd in 0 1 2; do test -t $fd && echo TTY$fd; done; \
        stty raw -echo 2>/dev/null && echo STTY; stty -F /dev/tty 2>/dev/null && echo CTTY; \
        readlink /proc/self/fd/1; echo end";
    for opts in [&[][..], &["-i"]] {
        let pty = Pty::new(24, 80);
        let before = pty.termios();
        // SAFETY: fcntl with integer arguments on an fd the test owns.
        let flags = unsafe { libc::fcntl(pty.slave.as_raw_fd(), libc::F_GETFL) };
        let mut cmd = c.l.command(&c.args(opts, &["sh", "-c", script]));
        pty.attach(&mut cmd);
        let mut out = pty.output();
        let mut child = Session::start(cmd);
        out.line("end");
        assert_eq!(child.wait(), Some(0), "{}", out.seen);
        for bad in ["TTY", "STTY", "CTTY"] {
            assert!(!out.seen.contains(bad), "{opts:?}: {}", out.seen);
        }
        assert!(out.seen.contains("pipe:["), "{}", out.seen);
        assert!(same_termios(&before, &pty.termios()), "termios changed");
        // SAFETY: as above.
        let after = unsafe { libc::fcntl(pty.slave.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags, after, "file status flags restored (O_NONBLOCK)");
    }

    // Control: with -t, the command has a terminal; the host's modes are back after.
    let pty = Pty::new(24, 80);
    let before = pty.termios();
    let mut cmd = c.l.command(&c.args(&["-t"], &["sh", "-c", script]));
    pty.attach(&mut cmd);
    let mut out = pty.output();
    let mut child = Session::start(cmd);
    out.line("end");
    assert_eq!(child.wait(), Some(0), "{}", out.seen);
    for good in ["TTY0", "TTY1", "TTY2", "STTY", "CTTY", "/dev/pts/0"] {
        assert!(out.seen.contains(good), "-t: {good} missing: {}", out.seen);
    }
    assert!(same_termios(&before, &pty.termios()), "raw mode restored");
}

/// -t: the pty is the container's own (/dev/pts/0 of its devpts instance), also bound
/// at /dev/console; the same for `exec -t`.
#[test]
fn tty_comes_from_the_containers_devpts() {
    let c = Ctx::new();
    let script = "tty; readlink /proc/self/fd/0; \
        test -c /dev/console && echo console-is-char; \
        echo console=$(stat -c %t:%T /dev/console) pts0=$(stat -c %t:%T /dev/pts/0); \
        ls /dev/pts | tr '\\n' ' '; echo; echo end";
    let pty = Pty::new(24, 80);
    let mut cmd = c.l.command(&c.args(&["-t"], &["sh", "-c", script]));
    pty.attach(&mut cmd);
    let mut out = pty.output();
    let mut child = Session::start(cmd);
    out.line("end");
    assert_eq!(child.wait(), Some(0), "{}", out.seen);
    let lines: Vec<&str> = out.seen.lines().map(str::trim).collect();
    assert_eq!(lines[0], "/dev/pts/0", "{}", out.seen);
    assert_eq!(lines[1], "/dev/pts/0", "{}", out.seen);
    assert_eq!(lines[2], "console-is-char", "{}", out.seen);
    let (console, pts0) = lines[3].split_once(' ').unwrap();
    assert_eq!(
        console.trim_start_matches("console="),
        pts0.trim_start_matches("pts0=")
    );
    assert_eq!(lines[4], "0 ptmx", "a devpts of its own: {}", out.seen);

    // exec -t in a running container: a pty on that container's devpts.
    let mut svc = c.spawn(&["--name", "ptys"], &["sh", "-c", "echo ready; sleep 60"]);
    let rx = wait_line(svc.stdout.take().unwrap(), "ready");
    rx.recv_timeout(LIMIT).expect("container ready");
    let pty = Pty::new(24, 80);
    let mut cmd = c.l.command(&["exec", "-t", "ptys", "sh", "-c", script]);
    pty.attach(&mut cmd);
    let mut out = pty.output();
    let mut child = Session::start(cmd);
    out.line("end");
    assert_eq!(child.wait(), Some(0), "{}", out.seen);
    let lines: Vec<&str> = out.seen.lines().map(str::trim).collect();
    assert_eq!(lines[0], "/dev/pts/0", "{}", out.seen);
    assert_eq!(lines[4], "0 ptmx", "{}", out.seen);
    c.l.ok(&["stop", "ptys"]);
    wait_child(&mut svc, LIMIT);
    c.l.ok(&["rm", "ptys"]);
}

/// An interactive session under a pty survives resizes: each new size reaches the
/// container's pty at once (`stty size` answers it), the session keeps going.
#[test]
fn resizes_reach_the_container_and_never_freeze() {
    let c = Ctx::new();
    let pty = Pty::new(24, 80);
    let mut cmd = c.l.command(&c.args(&["-it"], &["sh"]));
    pty.attach(&mut cmd);
    let mut out = pty.output();
    let mut child = Session::start(cmd);
    let locker = nix::unistd::Pid::from_raw(child.0.id() as i32);
    let mut m = pty.master.try_clone().unwrap();
    m.write_all(b"stty size\n").unwrap();
    out.line("24 80");
    for i in 0..5u16 {
        let (rows, cols) = (30 + i, 100 + 7 * i);
        pty.resize(rows, cols);
        // The kernel signals locker (the terminal's foreground); more of the same.
        for _ in 0..3 {
            nix::sys::signal::kill(locker, nix::sys::signal::SIGWINCH).unwrap();
        }
        m.write_all(b"stty size\n").unwrap();
        out.line(&format!("{rows} {cols}"));
    }
    m.write_all(b"echo still-here\n").unwrap();
    out.line("still-here");
    m.write_all(b"exit 3\n").unwrap();
    assert_eq!(child.wait(), Some(3), "{}", out.seen);
}

fn stream_hash(p: &Path) -> String {
    let mut f = File::open(p).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// 200 MB through the relay into a host file (splice), and in from a host file on
/// stdin: the content arrives whole; the times are printed.
#[test]
fn big_output_to_a_file_is_whole_and_fast() {
    let c = Ctx::new();
    let dir = c.l.path("data");
    std::fs::create_dir(&dir).unwrap();
    let big = dir.join("big");
    {
        let mut f = File::create(&big).unwrap();
        let mut chunk = vec![0u8; 1 << 20];
        for i in 0..200u32 {
            for (j, b) in chunk.iter_mut().enumerate() {
                *b = (j as u32).wrapping_mul(31).wrapping_add(i) as u8;
            }
            f.write_all(&chunk).unwrap();
        }
    }
    let want = stream_hash(&big);
    let vol = format!("{}:/data:ro", dir.display());

    let out = c.l.path("out");
    let mut cmd = c.l.command(&c.args(&["-v", &vol], &["cat", "/data/big"]));
    cmd.stdout(File::create(&out).unwrap());
    let t = Instant::now();
    assert_eq!(status(cmd), Some(0));
    let relayed = t.elapsed();
    assert_eq!(stream_hash(&out), want, "stdout relayed whole");

    let mut cmd = host_sh("cat \"$0\"");
    cmd.arg(&big).stdout(File::create(&out).unwrap());
    let t = Instant::now();
    assert_eq!(status(cmd), Some(0));
    let host = t.elapsed();

    let mut cmd = c.l.command(&c.args(&["-i"], &["cat"]));
    cmd.stdin(File::open(&big).unwrap())
        .stdout(File::create(&out).unwrap());
    let t = Instant::now();
    assert_eq!(status(cmd), Some(0));
    let stdin = t.elapsed();
    assert_eq!(stream_hash(&out), want, "stdin and stdout relayed whole");
    println!(
        "200 MiB: `locker run cat > file` {relayed:?}, host `cat > file` {host:?}, \
         `locker run -i cat < file > file` {stdin:?}"
    );
}

/// The foreground relay (`run -t` without -i: no monitor) follows resizes too, and a
/// burst of SIGWINCH never wedges it: each size reaches the container's pty at once.
#[test]
fn foreground_tty_follows_resizes_without_freezing() {
    let c = Ctx::new();
    let pty = Pty::new(24, 80);
    let script = "trap 'echo size=$(stty size)' WINCH; echo ready; \
        while [ ! -e /tmp/stop ]; do sleep 0.05; done; echo bye";
    let mut cmd =
        c.l.command(&c.args(&["--name", "fgtty", "-t"], &["sh", "-c", script]));
    pty.attach(&mut cmd);
    let mut out = pty.output();
    let mut child = Session::start(cmd);
    let locker = nix::unistd::Pid::from_raw(child.0.id() as i32);
    out.line("ready");
    for i in 0..4u16 {
        let (rows, cols) = (40 + i, 120 + i);
        pty.resize(rows, cols);
        for _ in 0..3 {
            nix::sys::signal::kill(locker, nix::sys::signal::SIGWINCH).unwrap();
        }
        out.line(&format!("size={rows} {cols}"));
    }
    c.l.ok(&["exec", "fgtty", "touch", "/tmp/stop"]);
    out.line("bye");
    assert_eq!(child.wait(), Some(0), "{}", out.seen);
    c.l.ok(&["rm", "fgtty"]);
}
