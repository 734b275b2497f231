//! Test harness: runs the real binary with a private `--root`, bounded in time, and
//! dumps command, stdout and stderr when an expectation fails. Also builds the fixture
//! root filesystem (static busybox + applet links + passwd/group) once per test run.

#![allow(dead_code)]

use std::io::Write;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Tests need root (namespaces, mounts, cgroups). In CI a missing root is a failure.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "integration tests must run as root (bash tests/run.sh)"
    );
}

pub fn locker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_locker")
}

/// One test's private store plus a HOME without a user catalog, and a network
/// namespace of its own (lo only, no route anywhere) that its `run`, `exec` and
/// `network` commands run in: the bridges, NAT rules and addresses a default container
/// gets are made there and vanish with it, never on the machine's own network.
pub struct Locker {
    pub dir: tempfile::TempDir,
    pub netns: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

/// A new network namespace with lo up, held by the returned fd (made on a thread of
/// its own, so the test process stays where it is).
pub fn new_netns() -> std::os::fd::OwnedFd {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        // A child of this thread starts in its network namespace.
        let st = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip (iproute2)");
        assert!(st.success(), "ip link set lo up");
        let f = std::fs::File::open("/proc/thread-self/ns/net").expect("open own netns");
        std::os::fd::OwnedFd::from(f)
    })
    .join()
    .expect("netns thread")
}

/// Undoes, on drop, what a default container on the machine's own network makes there:
/// the locker0 bridge and locker's nftables table (when they were not there before),
/// the leases, and net.ipv4.ip_forward (restored to what it was); where the host has
/// IPv6, the `ip6 locker` table and net.ipv6.conf.all.forwarding too.
pub struct HostNetworkGuard {
    bridge_existed: bool,
    table_existed: bool,
    table6_existed: bool,
    ip_forward: String,
    ip6_forward: String,
}

const IP6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

fn nft_table_exists(family: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", family, "locker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl HostNetworkGuard {
    pub fn new() -> HostNetworkGuard {
        let bridge_existed = Path::new("/sys/class/net/locker0").exists();
        HostNetworkGuard {
            bridge_existed,
            table_existed: nft_table_exists("ip"),
            table6_existed: nft_table_exists("ip6"),
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap_or_default(),
            ip6_forward: std::fs::read_to_string(IP6_FORWARD).unwrap_or_default(),
        }
    }
}

impl Drop for HostNetworkGuard {
    fn drop(&mut self) {
        if !self.bridge_existed {
            let _ = Command::new("ip").args(["link", "del", "locker0"]).status();
        }
        if !self.table_existed {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", "locker"])
                .status();
        }
        if !self.bridge_existed {
            let dir = leases_of("/proc/self/ns/net");
            let _ = std::fs::remove_dir_all(dir.join("locker0"));
            let _ = std::fs::remove_file(dir.join("bridges.lock"));
            let _ = std::fs::remove_dir(&dir);
        }
        if !self.table6_existed && nft_table_exists("ip6") {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip6", "locker"])
                .status();
        }
        if !self.ip_forward.is_empty() {
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", self.ip_forward.trim());
        }
        if !self.ip6_forward.is_empty() {
            let _ = std::fs::write(IP6_FORWARD, self.ip6_forward.trim());
        }
    }
}

/// locker's lease directory for the network namespace `ns` (a /proc ns path or fd path).
pub fn leases_of(ns: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(ns).map(|m| m.ino()).unwrap_or(0);
    Path::new("/run/locker/net").join(ino.to_string())
}

impl Drop for Locker {
    fn drop(&mut self) {
        // The namespace dies with its last fd; its leases (all of them dead) go too.
        if let Some(ns) = &self.netns {
            use std::os::fd::AsRawFd;
            let dir = leases_of(&format!("/proc/self/fd/{}", ns.as_raw_fd()));
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Puts `cmd`'s child into the network namespace `ns` before it execs.
pub fn in_netns(cmd: &mut Command, ns: &std::sync::Arc<std::os::fd::OwnedFd>) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = ns.as_raw_fd();
    // SAFETY: between fork and exec only setns (async-signal-safe) runs; the fd stays
    // open in the parent for the child's whole start.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub struct Run {
    pub cmd: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn dump(&self) -> String {
        format!(
            "command: {}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }
}

impl Locker {
    pub fn new() -> Locker {
        require_root();
        // Under /var/tmp: on disk like /var/lib/locker, not on a tmpfs /tmp.
        let dir = tempfile::Builder::new()
            .prefix("locker-test-")
            .tempdir_in("/var/tmp")
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Locker {
            dir,
            netns: Some(std::sync::Arc::new(new_netns())),
        }
    }

    /// `cmd` (from `command`) back on the machine's own network (the one test that
    /// reaches the Debian archive from a default container; see HostNetworkGuard).
    pub fn on_host_network_for(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        let home = std::fs::File::open("/proc/self/ns/net").expect("own netns");
        let fd = std::os::fd::IntoRawFd::into_raw_fd(home);
        // SAFETY: between fork and exec only setns runs; the fd is leaked on purpose
        // (one per call, a handful per test run) so it stays valid for the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// PID 1 of the one container running in this store, from its state file.
    pub fn container_pid1(&self) -> i32 {
        let states: Vec<PathBuf> = std::fs::read_dir(self.root().join("run"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        assert_eq!(states.len(), 1, "{states:?}");
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&states[0]).unwrap()).unwrap();
        let pid = state["pid"].as_i64().unwrap() as i32;
        assert!(pid > 1 && Path::new(&format!("/proc/{pid}")).exists());
        pid
    }

    /// The binary with this test's `--root`, a clean HOME and no catalog override.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(locker_bin());
        cmd.arg("--root").arg(self.root()).args(args);
        // Only these make or use container networks (start and restart run a detached
        // container again); pull/import reach test servers on the host's 127.0.0.1.
        if let Some(ns) = &self.netns {
            if matches!(
                args.first(),
                Some(&"run")
                    | Some(&"exec")
                    | Some(&"network")
                    | Some(&"gc")
                    | Some(&"start")
                    | Some(&"restart")
            ) {
                in_netns(&mut cmd, ns);
            }
        }
        cmd.env_remove("LOCKER_CATALOG")
            .env_remove("LOCKER_ROOT")
            .env("HOME", self.dir.path().join("home"));
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_bounded(self.command(args), Duration::from_secs(120))
    }

    /// Runs and expects exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, Some(0), "expected success\n{}", r.dump());
        r.stdout
    }

    /// Runs and expects exit `code`; returns the run for more checks.
    pub fn code(&self, args: &[&str], code: i32) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, Some(code), "expected exit {code}\n{}", r.dump());
        r
    }

    /// Expects locker's own error: exit 125 and a one-line message on stderr.
    pub fn fails(&self, args: &[&str]) -> Run {
        let r = self.code(args, 125);
        let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            !lines.is_empty(),
            "error must be explained on stderr\n{}",
            r.dump()
        );
        assert!(
            lines.last().unwrap().starts_with("locker: "),
            "error line must start with `locker: `\n{}",
            r.dump()
        );
        r
    }
}

/// Runs `cmd`, killing it if it outlives `limit` (a hung test fails, it never hangs CI).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Run {
    let shown = format!("{cmd:?}");
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out: Output = match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::SIGKILL,
            );
            let out = rx.recv().expect("wait after kill").expect("wait");
            panic!(
                "timed out after {limit:?}: {shown}\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    Run {
        cmd: shown,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn busybox_path() -> &'static str {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("busybox not found: install busybox-static (bash tests/run.sh does)");
}

/// The fixture root filesystem as an uncompressed tar: static busybox with a link for
/// every applet, /etc/passwd and /etc/group with root, a user and nobody, and the usual
/// top-level directories. Built once per test binary run.
pub fn fixture_tar() -> &'static [u8] {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    TAR.get_or_init(|| {
        let busybox = std::fs::read(busybox_path()).expect("read busybox");
        let list = Command::new(busybox_path()).arg("--list-full").output().expect("busybox --list-full");
        let mut b = tar::Builder::new(Vec::new());
        let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(mode);
            h.set_size(0);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, path, std::io::empty()).unwrap();
        };
        let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, path, data).unwrap();
        };
        for (d, mode) in [
            ("bin", 0o755), ("sbin", 0o755), ("usr", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755),
            ("etc", 0o755), ("root", 0o700), ("home", 0o755), ("home/tester", 0o755), ("tmp", 0o1777),
            ("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("run", 0o755), ("var", 0o755), ("var/tmp", 0o1777),
        ] {
            dir(&mut b, d, mode);
        }
        file(&mut b, "bin/busybox", 0o755, &busybox);
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let applet = applet.trim().trim_start_matches('/');
            if applet.is_empty() || applet == "bin/busybox" {
                continue;
            }
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            h.set_mtime(1_700_000_000);
            b.append_link(&mut h, applet, "/bin/busybox").unwrap();
        }
        file(&mut b, "etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:Tester:/home/tester:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
        file(&mut b, "etc/group", 0o644, b"root:x:0:\ntester:x:1000:\nwheel:x:10:tester\nnogroup:x:65534:\n");
        file(&mut b, "etc/os-release", 0o644, b"NAME=\"locker fixture\"\nID=fixture\n");
        b.into_inner().unwrap()
    })
}

/// `data` compressed with the command-line tool `tool` (gzip, xz, zstd) or as is ("none").
pub fn compress(data: &[u8], tool: &str) -> Vec<u8> {
    if tool == "none" {
        return data.to_vec();
    }
    let mut child = Command::new(tool)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e} (bash tests/run.sh installs it)"));
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

/// Sends each line of `r` that satisfies `wanted` (a reader thread): the caller waits
/// on the receiver with a bound (`recv_timeout`), never with a sleep.
pub fn lines_where(
    r: impl Read + Send + 'static,
    wanted: impl Fn(&str) -> bool + Send + 'static,
) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if wanted(&line) {
                let _ = tx.send(line);
            }
        }
    });
    rx
}

/// Lines of `r` equal to `want` (surrounding blanks ignored).
pub fn wait_line(r: impl Read + Send + 'static, want: &str) -> Receiver<String> {
    let want = want.to_string();
    lines_where(r, move |line| line.trim() == want)
}

/// Waits for `child` to exit, killing it and failing after `limit`.
pub fn wait_child(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The containment probe (tests/probe/probe.c), compiled statically once per test run
/// into cargo's integration-test scratch directory (under the target dir), so it runs
/// inside the busybox fixture: bind it in with `-v PATH:/probe:ro`.
pub fn probe_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/probe.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(dir).expect("test scratch dir");
        let out = dir.join("probe");
        let tmp = dir.join(format!("probe.{}.tmp", std::process::id()));
        let r = run_bounded(
            {
                let mut c = Command::new("cc");
                c.args(["-static", "-O1", "-Wall", "-o"])
                    .arg(&tmp)
                    .arg(&src);
                c
            },
            Duration::from_secs(120),
        );
        assert_eq!(
            r.code,
            Some(0),
            "compiling the probe needs gcc and libc6-dev (bash tests/run.sh installs them)\n{}",
            r.dump()
        );
        std::fs::rename(&tmp, &out).expect("install probe");
        out
    })
}

/// The sorted entry names of `dir` (none if it is missing).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(it) => it
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Removes the containers' cgroup parent from every hierarchy, with what podman left
/// in it (its `conmon` cgroup; a failed run's containers'), deepest first.
pub struct CgroupParent(pub String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        // What a failed test left running there (a shim outlives its daemon): ours,
        // since the parent is this test's own.
        fn kill_in(dir: &std::path::Path) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    kill_in(&e.path());
                }
            }
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        fn remove(dir: &std::path::Path) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&e.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        let dirs: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|h| h.path().join(&self.0))
            .filter(|d| d.exists())
            .collect();
        dirs.iter().for_each(|d| kill_in(d));
        // Bounded: the killed leave their cgroups as they are reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for d in &dirs {
            while has_procs(d) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            remove(d);
        }
    }
}

fn has_procs(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && has_procs(&e.path()))
        || !std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .trim()
            .is_empty()
}
