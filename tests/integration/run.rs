//! `locker run` against the busybox fixture: isolation, exit codes, signals, limits,
//! mounts, users, tty, security hardening, and that nothing is left on the host.
//!
//! Every test uses its own store and its own cgroup parent (`locker-test-PID-N`); the
//! `Ctx` guard checks on drop that no mount of the test root and no container cgroup
//! remains, then removes the parent cgroup it made (even when the test failed).

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::harness::{run_bounded, wait_child, wait_line, Locker, Run};
use crate::images::install_fixture;

const IMG: &str = "fix";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub(crate) struct Ctx {
    pub l: Locker,
    pub(crate) parent: String,
    pub rootfs: PathBuf,
    image: String,
}

pub(crate) fn cgroup_bases() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        if e.path().join("cgroup.procs").exists() {
            v.push(e.path());
        }
    }
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        v.push("/sys/fs/cgroup".into());
    }
    v
}

impl Ctx {
    pub(crate) fn new() -> Ctx {
        Ctx::with_image(IMG, install_fixture)
    }

    /// A private store holding `image`, made by `install`, and a private cgroup parent.
    pub(crate) fn with_image(image: &str, install: impl FnOnce(&Locker, &str) -> PathBuf) -> Ctx {
        let l = Locker::new();
        let rootfs = install(&l, image);
        let parent = format!(
            "locker-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        Ctx {
            l,
            parent,
            rootfs,
            image: image.to_string(),
        }
    }

    pub(crate) fn args<'a>(&'a self, opts: &[&'a str], cmd: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["run", "--cgroup-parent", &self.parent];
        a.extend_from_slice(opts);
        a.push(&self.image);
        a.extend_from_slice(cmd);
        a
    }

    pub(crate) fn run(&self, opts: &[&str], cmd: &[&str]) -> Run {
        self.l.run(&self.args(opts, cmd))
    }

    pub(crate) fn ok(&self, opts: &[&str], cmd: &[&str]) -> String {
        self.l.ok(&self.args(opts, cmd))
    }

    pub(crate) fn code(&self, opts: &[&str], cmd: &[&str], code: i32) -> Run {
        self.l.code(&self.args(opts, cmd), code)
    }

    pub(crate) fn sh(&self, opts: &[&str], script: &str) -> String {
        self.ok(opts, &["sh", "-c", script])
    }

    pub(crate) fn spawn(&self, opts: &[&str], cmd: &[&str]) -> Child {
        self.l
            .command(&self.args(opts, cmd))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub(crate) fn container_cgroups(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for b in cgroup_bases() {
            if let Ok(rd) = std::fs::read_dir(b.join(&self.parent)) {
                left.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
        }
        left
    }

    fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .container_cgroups()
            .iter()
            .map(|p| format!("cgroup {}", p.display()))
            .collect();
        let root = self.l.dir.path().to_string_lossy().into_owned();
        for line in std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
        {
            if line.contains(&root) {
                v.push(format!("mount {line}"));
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.l.root().join("run")) {
            v.extend(
                rd.flatten()
                    .map(|e| format!("state {}", e.path().display())),
            );
        }
        v
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let left = self.leftovers();
        for p in self.container_cgroups() {
            rmdir_tree(&p);
        }
        for b in cgroup_bases() {
            let _ = std::fs::remove_dir(b.join(&self.parent));
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left on the host: {left:#?}");
        }
    }
}

/// Removes a cgroup directory and the cgroups below it, deepest first (rmdir only: a
/// cgroup with processes stays, and nothing is written into any cgroup).
fn rmdir_tree(p: &Path) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(p);
}

pub(crate) fn tree_hash(root: &Path) -> String {
    fn walk(p: &Path, rel: &str, h: &mut Sha256) {
        let md = std::fs::symlink_metadata(p).unwrap();
        use std::os::unix::fs::MetadataExt;
        h.update(format!(
            "{rel}\0{:o}\0{}\0{}\0",
            md.mode(),
            md.uid(),
            md.gid()
        ));
        if md.file_type().is_symlink() {
            h.update(
                std::fs::read_link(p)
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if md.is_file() {
            h.update(std::fs::read(p).unwrap());
        } else if md.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                walk(&p.join(&n), &format!("{rel}/{}", n.to_string_lossy()), h);
            }
        }
    }
    let mut h = Sha256::new();
    walk(root, "", &mut h);
    hex::encode(h.finalize())
}

fn file_hash(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn ps_shows_only_the_container() {
    let c = Ctx::new();
    let out = c.sh(
        &[],
        "echo pid=$$; grep PPid /proc/$$/status; ps -o pid,comm | tail -n +2 | wc -l",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=2", "command is PID 1's child\n{out}");
    assert!(
        lines[1].ends_with("\t1") || lines[1].ends_with(" 1"),
        "{out}"
    );
    // PID 1 (locker's reaper), sh, ps, and the pipeline's tail and wc.
    assert!(lines[2].trim().parse::<u32>().unwrap() <= 5, "{out}");
    let ps = c.ok(&[], &["ps"]);
    assert_eq!(ps.lines().count(), 3, "header, PID 1 and ps only:\n{ps}");
}

#[test]
fn hostname_is_isolated() {
    let c = Ctx::new();
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(c.ok(&[], &["hostname"]).trim(), IMG);
    assert_eq!(
        c.ok(&["--hostname", "box1"], &["cat", "/etc/hostname"])
            .trim(),
        "box1"
    );
    // Without CAP_SYS_ADMIN (Docker's default too) the name can't change; either way
    // the host's must not.
    c.run(&[], &["hostname", "changed"]);
    assert_eq!(nix::unistd::gethostname().unwrap(), host);
    assert!(c.ok(&[], &["cat", "/etc/hosts"]).contains("localhost"));
}

#[test]
fn host_files_invisible_and_writes_vanish() {
    let c = Ctx::new();
    let marker = format!("/tmp/locker-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let before = tree_hash(&c.rootfs);
    let r = c.run(&[], &["test", "-e", &marker]);
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(r.code, Some(1), "host /tmp must be invisible\n{}", r.dump());
    c.sh(&[], "echo x > /etc/new && rm /bin/ls && echo y >> /etc/passwd && mkdir -p /root/d && chmod 700 /etc");
    c.sh(
        &[],
        "test ! -e /etc/new && test -e /bin/ls && ! grep -q '^y$' /etc/passwd",
    );
    assert_eq!(tree_hash(&c.rootfs), before, "the store's rootfs changed");
}

#[test]
fn named_container_keeps_writes_and_is_exclusive() {
    let c = Ctx::new();
    c.sh(&["--name", "keep"], "echo kept > /root/f");
    assert_eq!(
        c.ok(&["--name", "keep"], &["cat", "/root/f"]).trim(),
        "kept"
    );
    assert!(
        c.run(&[], &["cat", "/root/f"]).code != Some(0),
        "anonymous runs don't see it"
    );
    assert!(c.l.root().join("containers/keep/upper/root/f").exists());
    // In use while a run holds it.
    let mut busy = c.spawn(&["--name", "keep"], &["sh", "-c", "echo ready; sleep 30"]);
    let rx = wait_line(busy.stdout.take().unwrap(), "ready");
    rx.recv_timeout(Duration::from_secs(20))
        .expect("container ready");
    let r = c.l.fails(&c.args(&["--name", "keep"], &["true"]));
    assert!(r.stderr.contains("in use"), "{}", r.dump());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(busy.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let st = wait_child(&mut busy, Duration::from_secs(20));
    assert_eq!(st.code(), Some(143), "sleep dies of the forwarded TERM");
}

#[test]
fn exit_codes() {
    let c = Ctx::new();
    c.code(&[], &["true"], 0);
    c.code(&[], &["sh", "-c", "exit 42"], 42);
    let r = c.code(&[], &["/etc/passwd"], 126);
    assert!(r.stderr.contains("/etc/passwd"), "{}", r.dump());
    let r = c.code(&[], &["nosuchcmd"], 127);
    assert!(
        r.stderr
            .contains("locker: run fix: command not found: nosuchcmd"),
        "{}",
        r.dump()
    );
    c.code(&[], &["sh", "-c", "kill -9 $$"], 137);
    let r =
        c.l.fails(&["run", "--cgroup-parent", &c.parent, "noimage", "true"]);
    assert!(r.stderr.contains("noimage"), "{}", r.dump());
}

#[test]
fn sigterm_is_forwarded() {
    let c = Ctx::new();
    let mut child = c.spawn(
        &[],
        &[
            "sh",
            "-c",
            "trap 'exit 3' TERM; echo ready; while true; do sleep 0.05; done",
        ],
    );
    let rx = wait_line(child.stdout.take().unwrap(), "ready");
    rx.recv_timeout(Duration::from_secs(20))
        .expect("trap installed");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        wait_child(&mut child, Duration::from_secs(20)).code(),
        Some(3)
    );
}

#[test]
fn orphans_are_reaped() {
    let c = Ctx::new();
    let out = c.sh(
        &[],
        "for i in 1 2 3 4 5; do (sh -c 'exit 0' &); done; n=0; \
         while [ $n -lt 500 ]; do z=$(grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null); [ -z \"$z\" ] && break; n=$((n+1)); sleep 0.01; done; \
         echo zombies=[$z]",
    );
    assert!(out.contains("zombies=[]"), "{out}");
}

#[test]
fn memory_limit_kills_with_137() {
    let c = Ctx::new();
    let r = c.run(
        &["--memory", "32m"],
        &["sh", "-c", "head -c 300m /dev/zero | tail"],
    );
    assert_eq!(r.code, Some(137), "{}", r.dump());
    c.code(
        &["--memory", "32m"],
        &["sh", "-c", "head -c 1m /dev/zero | tail | wc -c"],
        0,
    );
}

#[test]
fn pids_limit_stops_fork_bomb() {
    let c = Ctx::new();
    let r = c.run(
        &["--pids", "20"],
        &[
            "sh",
            "-c",
            "for i in $(seq 1 100); do sleep 30 & done; echo all-started",
        ],
    );
    assert!(
        !r.stdout.contains("all-started") || r.stderr.contains("fork"),
        "{}",
        r.dump()
    );
    c.code(&["--pids", "20"], &["true"], 0);
}

#[test]
fn cpus_limit_is_accepted() {
    let c = Ctx::new();
    c.code(&["--cpus", "0.5"], &["true"], 0);
    c.l.fails(&c.args(&["--cpus", "0"], &["true"]));
    c.l.fails(&c.args(&["--memory", "lots"], &["true"]));
}

#[test]
fn net_none_has_only_loopback_up() {
    let c = Ctx::new();
    let out = c.ok(&["--net", "none"], &["cat", "/proc/net/dev"]);
    let ifaces: Vec<&str> = out
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, ["lo"], "{out}");
    let flags = c.ok(&["--net", "none"], &["cat", "/sys/class/net/lo/flags"]);
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is up");
    assert!(c
        .ok(&["--net", "none"], &["cat", "/etc/hosts"])
        .contains("127.0.0.1"));
}

#[test]
fn volumes_rw_ro_and_missing() {
    let c = Ctx::new();
    let dir = c.l.path("vol");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("in"), "from-host").unwrap();
    let spec = format!("{}:/data", dir.display());
    assert_eq!(
        c.sh(&["-v", &spec], "cat /data/in; echo out > /data/out")
            .trim(),
        "from-host"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out")).unwrap().trim(),
        "out"
    );
    let ro = format!("{}:/deep/ro:ro", dir.display());
    let r = c.run(
        &["-v", &ro],
        &["sh", "-c", "cat /deep/ro/in && touch /deep/ro/x"],
    );
    assert_ne!(r.code, Some(0), "{}", r.dump());
    assert!(!dir.join("x").exists());
    let file = format!("{}:/etc/hostfile:ro", dir.join("in").display());
    assert_eq!(c.ok(&["-v", &file], &["cat", "/etc/hostfile"]), "from-host");
    let r =
        c.l.fails(&c.args(&["-v", "/nonexistent/locker:/x"], &["true"]));
    assert!(r.stderr.contains("/nonexistent/locker"), "{}", r.dump());
    assert!(c
        .sh(
            &["--tmpfs", "/scratch"],
            "echo t > /scratch/t; cat /proc/mounts"
        )
        .contains(" /scratch tmpfs"));
}

#[test]
fn users_env_and_workdir() {
    let c = Ctx::new();
    let out = c.ok(&["-u", "1000"], &["id"]);
    assert!(
        out.starts_with("uid=1000(tester) gid=1000(tester)"),
        "{out}"
    );
    assert!(
        out.contains("10(wheel)"),
        "supplementary groups from the image: {out}"
    );
    let out = c.ok(&["-u", "tester:wheel"], &["id"]);
    assert!(out.starts_with("uid=1000(tester) gid=10(wheel)"), "{out}");
    let r = c.l.fails(&c.args(&["-u", "bob"], &["id"]));
    assert!(
        r.stderr.contains("bob") && r.stderr.contains(IMG),
        "{}",
        r.dump()
    );
    assert_eq!(
        c.ok(&["-u", "1000"], &["sh", "-c", "echo $HOME"]).trim(),
        "/home/tester"
    );
    assert_eq!(
        c.ok(&["-u", "1000"], &["grep", "CapEff", "/proc/self/status"])
            .trim(),
        "CapEff:\t0000000000000000"
    );
    let envf = c.l.path("env");
    std::fs::write(&envf, "# c\nA=file\nB=file\n").unwrap();
    let out =
        c.l.command(&c.args(
            &[
                "-e",
                "A=cli",
                "--env-file",
                envf.to_str().unwrap(),
                "-e",
                "FROMHOST",
                "-w",
                "/new/dir",
            ],
            &[
                "sh",
                "-c",
                "echo $A $B $FROMHOST $container $HOSTNAME; pwd; env | grep -c ^TERM=",
            ],
        ))
        .env("FROMHOST", "hostval")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out, "cli file hostval locker fix\n/new/dir\n0\n");
    let env = c.ok(&[], &["env"]);
    assert!(
        env.contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
        "{env}"
    );
}

#[test]
fn stdin_passes_through_with_i() {
    let c = Ctx::new();
    let mut child =
        c.l.command(&c.args(&["-i"], &["cat"]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(c.ok(&[], &["cat"]), "", "without -i stdin is /dev/null");
}

#[test]
fn tty_under_a_pty() {
    let c = Ctx::new();
    let (code, out) = crate::stdio::Pty::run(c.l.command(&c.args(
        &["-it"],
        &[
            "sh",
            "-c",
            "tty; test -t 0 && test -t 1 && echo is-a-tty; echo TERM=$TERM",
        ],
    )));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("/dev/pts/0"),
        "the container's own pty: {out}"
    );
    assert!(out.contains("is-a-tty"), "{out}");
    assert!(out.contains("TERM=") && !out.contains("TERM=\n"), "{out}");
}

#[test]
fn capabilities_masks_and_no_new_privs() {
    let c = Ctx::new();
    let st = c.ok(&[], &["cat", "/proc/self/status"]);
    // podman's default set: Docker's without NET_RAW, MKNOD and AUDIT_WRITE.
    assert!(st.contains("CapEff:\t00000000800405fb"), "{st}");
    assert!(st.contains("CapBnd:\t00000000800405fb"), "{st}");
    assert!(st.contains("CapAmb:\t0000000000000000"), "{st}");
    assert!(st.contains("NoNewPrivs:\t1"), "{st}");
    let out = c.sh(&[], "head -c 16 /proc/kcore | wc -c; echo 1 > /proc/sys/kernel/domainname && echo WROTE-SYS; echo x > /proc/sysrq-trigger && echo WROTE-SYSRQ; ls /sys/firmware | wc -l; echo end");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "0", "kcore masked: {out}");
    assert!(!out.contains("WROTE"), "{out}");
    assert_eq!(lines[1].trim(), "0", "/sys/firmware masked: {out}");
    let r = c.run(&[], &["sh", "-c", "mount -o remount,rw /proc/sys"]);
    assert_ne!(r.code, Some(0), "{}", r.dump());
    let r = c.run(
        &["--cap-add", "MKNOD"],
        &["sh", "-c", "mknod /tmp/sda b 8 0 && head -c 1 /tmp/sda"],
    );
    assert_ne!(
        r.code,
        Some(0),
        "device nodes made in the container are inert\n{}",
        r.dump()
    );
}

#[test]
fn proc_1_exe_cannot_reach_the_host_binary() {
    let c = Ctx::new();
    let bin = Path::new(crate::harness::locker_bin());
    let before = file_hash(bin);
    let out = c.sh(&[], "cat /proc/1/exe > /dev/null 2>&1 && echo READ; echo x 2>/dev/null > /proc/1/exe && echo WROTE; ls /proc/1/root/ >/dev/null 2>&1 && echo ROOT; echo end");
    assert_eq!(out.trim(), "end", "{out}");
    assert_eq!(file_hash(bin), before);
}

#[test]
fn only_standard_fds_reach_the_command() {
    let c = Ctx::new();
    // An extra inherited fd in locker must not reach the container.
    let f = std::fs::File::open("/etc/hostname").unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on an fd this process owns, integer arguments.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let out = c.ok(&[], &["ls", "/proc/self/fd"]);
    drop(f);
    let fds: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "3 is ls's own directory fd\n{out}"
    );
}

#[test]
fn read_only_root() {
    let c = Ctx::new();
    let r = c.run(&["--read-only"], &["sh", "-c", "touch /x"]);
    assert_ne!(r.code, Some(0), "{}", r.dump());
    assert_eq!(
        c.ok(&["--read-only"], &["cat", "/etc/os-release"])
            .lines()
            .count(),
        2
    );
    c.sh(&["--read-only", "--tmpfs", "/tmp"], "touch /tmp/x");
}

/// An image whose /etc/resolv.conf and /etc/hostname point at host files, and whose
/// /proc is a symlink: nothing may be mounted onto the host.
#[test]
fn hostile_symlinks_stay_inside() {
    let c = Ctx::new();
    let evil = c.l.root().join("rootfs/evil");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&c.rootfs)
        .arg(&evil)
        .status()
        .unwrap();
    assert!(st.success());
    let host_target = c.l.path("host-target");
    std::fs::write(&host_target, "untouched").unwrap();
    std::os::unix::fs::symlink(&host_target, evil.join("etc/resolv.conf")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../../../..{}", host_target.display()),
        evil.join("etc/hostname"),
    )
    .unwrap();
    let refs = c.l.root().join("refs.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&refs).unwrap()).unwrap();
    v["images"]["evil"] = serde_json::json!({"digest": "evil", "aliases": [], "source": "test", "created": 0, "size": 0});
    std::fs::write(&refs, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = c.l.ok(&[
        "run",
        "--cgroup-parent",
        &c.parent,
        "evil",
        "sh",
        "-c",
        "cat /etc/hostname; echo changed > /etc/hostname; cat /etc/resolv.conf >/dev/null",
    ]);
    assert_eq!(out.trim(), "evil");
    assert_eq!(std::fs::read_to_string(&host_target).unwrap(), "untouched");
    assert!(
        std::fs::symlink_metadata(evil.join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "lower untouched"
    );
    // /proc as a symlink is refused (CVE-2019-19921).
    std::fs::remove_dir(evil.join("proc")).unwrap();
    std::os::unix::fs::symlink("/tmp", evil.join("proc")).unwrap();
    let r =
        c.l.fails(&["run", "--cgroup-parent", &c.parent, "evil", "true"]);
    assert!(r.stderr.contains("/proc"), "{}", r.dump());
}

#[test]
fn sigkill_of_locker_leaves_nothing_after_next_run() {
    let c = Ctx::new();
    let mut child = c.spawn(&["--pids", "50"], &["sh", "-c", "echo ready; sleep 60"]);
    let rx = wait_line(child.stdout.take().unwrap(), "ready");
    rx.recv_timeout(Duration::from_secs(20))
        .expect("container ready");
    let pid1 = c.l.container_pid1();
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid1}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !Path::new(&format!("/proc/{pid1}")).exists(),
        "container PID 1 outlived locker"
    );
    assert!(
        !c.container_cgroups().is_empty(),
        "the killed run could not clean up"
    );
    c.code(&[], &["true"], 0);
    assert!(
        c.container_cgroups().is_empty(),
        "{:?}",
        c.container_cgroups()
    );
}

#[test]
fn stop_via_sigint_while_running() {
    let c = Ctx::new();
    let mut child = c.spawn(&[], &["sh", "-c", "echo ready; sleep 60"]);
    let rx = wait_line(child.stdout.take().unwrap(), "ready");
    rx.recv_timeout(Duration::from_secs(20)).expect("ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    assert_eq!(
        wait_child(&mut child, Duration::from_secs(20)).code(),
        Some(130)
    );
    let _ = run_bounded;
}

#[test]
fn ps_exec_stop_rm() {
    let c = Ctx::new();
    let mut svc = c.spawn(&["--name", "svc"], &["sh", "-c", "echo ready; sleep 60"]);
    let rx = wait_line(svc.stdout.take().unwrap(), "ready");
    rx.recv_timeout(Duration::from_secs(20))
        .expect("container ready");
    let ps = c.l.ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("svc ") && l.contains(IMG) && l.contains("sh -c")),
        "{ps}"
    );
    let js: serde_json::Value = serde_json::from_str(&c.l.ok(&["ps", "--json"])).unwrap();
    assert_eq!(js[0]["name"], "svc");
    assert_eq!(c.l.ok(&["exec", "svc", "hostname"]).trim(), IMG);
    let procs = c.l.ok(&["exec", "svc", "ps"]);
    assert!(
        procs.contains("sleep 60"),
        "exec shares the PID namespace:\n{procs}"
    );
    assert!(c
        .l
        .ok(&["exec", "-u", "1000", "svc", "id"])
        .starts_with("uid=1000(tester)"));
    assert!(c
        .l
        .ok(&["exec", "svc", "grep", "CapEff", "/proc/self/status"])
        .contains("00000000800405fb"));
    assert_eq!(c.l.run(&["exec", "svc", "nosuch"]).code, Some(127));
    assert_eq!(
        c.l.run(&["exec", "svc", "sh", "-c", "exit 7"]).code,
        Some(7)
    );
    c.l.fails(&["rm", "svc"]);
    c.l.ok(&["stop", "svc"]);
    assert_eq!(
        wait_child(&mut svc, Duration::from_secs(20)).code(),
        Some(143)
    );
    assert!(!c.l.ok(&["ps"]).contains("svc"));
    assert!(c
        .l
        .ok(&["ps", "-a"])
        .lines()
        .any(|l| l.starts_with("svc ") && l.contains("stopped")));
    c.l.ok(&["rm", "svc"]);
    assert!(!c.l.root().join("containers/svc").exists());
    c.l.fails(&["rm", "svc"]);
    c.l.fails(&["exec", "svc", "true"]);
}

#[test]
fn rmi_and_gc_spare_an_image_a_named_container_uses() {
    let c = Ctx::new();
    c.sh(&["--name", "keep"], "echo kept > /data");
    let r = c.l.fails(&["rmi", IMG]);
    assert!(
        r.stderr.contains("keep"),
        "the error names the container\n{}",
        r.dump()
    );
    c.l.ok(&["gc"]);
    assert!(
        c.rootfs.is_dir(),
        "gc must not free a tree a container uses"
    );
    assert_eq!(c.sh(&["--name", "keep"], "cat /data").trim(), "kept");
    c.l.ok(&["rm", "keep"]);
    c.l.ok(&["rmi", IMG]);
    assert!(
        !c.rootfs.exists(),
        "the last name gone and no container: the tree is freed"
    );
}

/// A command whose fd 9 is a host directory opened without CLOEXEC.
fn with_host_fd9(mut cmd: std::process::Command, host: &Path) -> (std::process::Command, OwnedFd) {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(host.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; the kernel reads nothing else.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(fd >= 0);
    let raw = fd;
    // SAFETY: dup2 between fds this process owns.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    (cmd, unsafe { OwnedFd::from_raw_fd(fd) })
}

/// CVE-2024-21626: an image's workdir `/app -> /proc/self/fd/9` with a host directory
/// inherited as fd 9 must not put the command's cwd on the host (run and exec).
#[test]
fn workdir_via_leaked_fd_stays_inside() {
    let c = Ctx::new();
    std::os::unix::fs::symlink("/proc/self/fd/9", c.rootfs.join("app")).unwrap();
    let host = c.l.path("host-secret");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("HOST-MARKER"), "x").unwrap();
    let (cmd, fd) = with_host_fd9(
        c.l.command(&c.args(&["-w", "/app"], &["sh", "-c", "ls; ls ..; pwd"])),
        &host.join("sub"),
    );
    let r = run_bounded(cmd, Duration::from_secs(60));
    drop(fd);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(!r.stdout.contains("HOST-MARKER"), "{}", r.dump());
    // A plain workdir still works and is created inside.
    assert_eq!(c.ok(&["-w", "/made/here"], &["pwd"]).trim(), "/made/here");

    let mut svc = c.spawn(&["--name", "wd"], &["sh", "-c", "echo ready; sleep 60"]);
    let rx = wait_line(svc.stdout.take().unwrap(), "ready");
    rx.recv_timeout(Duration::from_secs(20)).expect("ready");
    let (cmd, fd) = with_host_fd9(
        c.l.command(&["exec", "-w", "/app", "wd", "sh", "-c", "ls; ls ..; pwd"]),
        &host.join("sub"),
    );
    let r = run_bounded(cmd, Duration::from_secs(60));
    drop(fd);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(!r.stdout.contains("HOST-MARKER"), "{}", r.dump());
    assert_eq!(c.l.ok(&["exec", "-w", "/tmp", "wd", "pwd"]).trim(), "/tmp");
    c.l.ok(&["stop", "wd"]);
    wait_child(&mut svc, Duration::from_secs(20));
}

/// locker's own directories in ROOT are 0700: a local user must not reach an image's
/// setuid binaries or device nodes. An existing ROOT is never chmod'ed (`--root DIR`
/// may be anything), and one others may write into is refused.
#[test]
fn store_is_private_to_root() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let c = Ctx::new();
    // The test dir (a 0700 tempdir) must not be what stops the user.
    std::fs::set_permissions(c.l.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tar = c.l.path("fix.tar");
    std::fs::write(&tar, crate::harness::fixture_tar()).unwrap();
    c.l.ok(&["import", tar.to_str().unwrap(), "--name", "fix2"]);
    c.sh(&["--name", "n1"], "true");
    for d in ["rootfs", "tmp", "containers", "containers/n1", "run"] {
        let mode = std::fs::metadata(c.l.root().join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700, "ROOT/{d} is {mode:o}");
    }
    let busybox = c.rootfs.join("bin/busybox");
    let stat = |as_nobody: bool| {
        let mut cmd = std::process::Command::new("stat");
        cmd.arg(&busybox)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if as_nobody {
            // std drops the supplementary groups when root sets a uid.
            cmd.uid(65534).gid(65534);
        }
        cmd.status().unwrap().success()
    };
    assert!(stat(false), "root sees {}", busybox.display());
    assert!(!stat(true), "nobody must not reach {}", busybox.display());
    // A readable ROOT is used as it is: the trees stay out of reach below it.
    std::fs::set_permissions(c.l.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    c.sh(&[], "true");
    assert!(!stat(true), "nobody must not reach {}", busybox.display());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&c.l.root()), 0o755, "an existing ROOT keeps its mode");
    // One that others can write into is refused, and left as it was.
    std::fs::set_permissions(c.l.root(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = c.l.fails(&c.args(&[], &["true"]));
    assert!(r.stderr.contains("writable by other users"), "{}", r.dump());
    assert_eq!(mode(&c.l.root()), 0o777);
    std::fs::set_permissions(c.l.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Is the v1 devices controller what `run` uses here (it refuses the mknod itself)?
fn v1_devices_cgroup() -> bool {
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    let unified_pids = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|w| w == "pids"));
    !v2 && !unified_pids && Path::new("/sys/fs/cgroup/devices/cgroup.procs").exists()
}

/// A device node made through a volume (or --tmpfs) must not open the host's device.
#[test]
fn device_nodes_in_volumes_are_inert() {
    let c = Ctx::new();
    let dir = c.l.path("devvol");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = format!("{}:/data", dir.display());
    // `test -c` first: a redirection to a missing path would just make a file.
    let script = "mknod /data/kmsg c 1 11 && echo MADE-KMSG; test -c /data/kmsg && echo hi 2>/dev/null > /data/kmsg && echo WROTE-KMSG; \
        mknod /data/null c 1 3 && echo MADE-NULL; test -c /data/null && echo hi 2>/dev/null > /data/null && echo WROTE-NULL; \
        mknod /scratch/null c 1 3; test -c /scratch/null && echo hi 2>/dev/null > /scratch/null && echo WROTE-TMPFS; echo end";
    // With CAP_MKNOD (not in the default set), so the nodes can be made at all.
    let out = c.sh(
        &["--cap-add", "MKNOD", "-v", &spec, "--tmpfs", "/scratch"],
        script,
    );
    assert!(out.ends_with("end\n"), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    if v1_devices_cgroup() {
        assert!(
            !out.contains("MADE-KMSG"),
            "the devices cgroup refuses mknod of 1:11\n{out}"
        );
        assert!(out.contains("MADE-NULL"), "1:3 is allowed\n{out}");
    }
}

/// Unmounts what a test mounted on the host, also when it fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `-v DIR:CTR:ro` is read-only (and nodev) on DIR's submounts too.
#[test]
fn volume_flags_cover_submounts() {
    let c = Ctx::new();
    let dir = c.l.path("rovol");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &dir.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let _umount = Unmount(dir.join("sub"));
    let ro = format!("{}:/data:ro", dir.display());
    let out = c.sh(
        &["-v", &ro],
        "touch /data/x 2>/dev/null && echo WROTE-TOP; touch /data/sub/x 2>/dev/null && echo WROTE-SUB; echo end",
    );
    assert_eq!(out.trim(), "end");
    assert!(!dir.join("sub/x").exists() && !dir.join("x").exists());
    let rw = format!("{}:/data", dir.display());
    let out = c.sh(
        &["-v", &rw],
        "touch /data/sub/y && echo WROTE-SUB; mknod /data/sub/null c 1 3; test -c /data/sub/null && echo hi 2>/dev/null > /data/sub/null && echo WROTE-NODE; echo end",
    );
    assert_eq!(out.trim(), "WROTE-SUB\nend", "rw, but nodev below too");
}

/// locker reads a named container's /etc/passwd on the host: a FIFO (or a device) put
/// there by the container must not hang it (or be opened); nor in `exec`.
#[test]
fn container_fifo_passwd_does_not_hang_locker() {
    let c = Ctx::new();
    // CAP_MKNOD is not in the default set: the attacker's first run asks for it.
    c.sh(
        &["--name", "ff", "--cap-add", "MKNOD"],
        "rm /etc/passwd /etc/group; mkfifo /etc/passwd; mknod /etc/group c 1 3",
    );
    let start = Instant::now();
    let r = run_bounded(
        c.l.command(&c.args(
            &["--name", "ff"],
            &["sh", "-c", "test -p /etc/passwd && echo fifo"],
        )),
        Duration::from_secs(30),
    );
    assert!(start.elapsed() < Duration::from_secs(20), "{}", r.dump());
    assert!(
        r.code == Some(0) && r.stdout.trim() == "fifo" || r.code == Some(125),
        "{}",
        r.dump()
    );
    let mut svc = c.spawn(&["--name", "ff"], &["sh", "-c", "echo ready; sleep 60"]);
    let rx = wait_line(svc.stdout.take().unwrap(), "ready");
    rx.recv_timeout(Duration::from_secs(20)).expect("ready");
    // (`id` would read the FIFO itself: the command must not touch it.)
    let r = run_bounded(
        c.l.command(&["exec", "ff", "echo", "ok"]),
        Duration::from_secs(30),
    );
    assert!(
        r.code == Some(0) && r.stdout.trim() == "ok" || r.code == Some(125),
        "{}",
        r.dump()
    );
    c.l.ok(&["stop", "ff"]);
    wait_child(&mut svc, Duration::from_secs(20));
}

/// A first `run --name` that fails before the container starts leaves no container;
/// a later failing run of an existing one keeps it.
#[test]
fn failed_first_run_creates_no_named_container() {
    let c = Ctx::new();
    c.l.fails(&c.args(
        &["--name", "typo", "-v", "/nonexistent/locker:/x"],
        &["true"],
    ));
    c.l.fails(&c.args(&["--name", "typo2", "-u", "bob"], &["true"]));
    let ps = c.l.ok(&["ps", "-a"]);
    assert!(!ps.contains("typo"), "{ps}");
    assert!(!c.l.root().join("containers/typo").exists());
    assert!(!c.l.root().join("containers/typo2").exists());
    c.sh(&["--name", "kept"], "echo x > /x");
    c.l.fails(&c.args(
        &["--name", "kept", "-v", "/nonexistent/locker:/x"],
        &["true"],
    ));
    assert_eq!(c.sh(&["--name", "kept"], "cat /x").trim(), "x");
    c.l.ok(&["rm", "kept"]);
}

/// The exec tail is one code path: each way a command can fail to start (not found,
/// not executable, a missing working directory, an unknown user) gives the same exit
/// code and the same error through `run` and through `exec`.
#[test]
fn exec_tail_failures_match_between_run_and_exec() {
    let c = Ctx::new();
    let mut svc = c.spawn(&["--name", "tail"], &["sh", "-c", "echo ready; sleep 60"]);
    let rx = wait_line(svc.stdout.take().unwrap(), "ready");
    rx.recv_timeout(Duration::from_secs(20))
        .expect("container ready");
    // (options, command, exit code, what stderr must say)
    let cases: [(&[&str], &[&str], i32, &str); 5] = [
        (&[], &["nosuch"], 127, "command not found: nosuch"),
        (&[], &["/etc/passwd"], 126, "cannot execute /etc/passwd"),
        (&[], &["/etc"], 126, "cannot execute /etc"),
        (
            &["-u", "nobodyatall"],
            &["true"],
            125,
            "no user \"nobodyatall\"",
        ),
        (&["-w", "/etc/passwd"], &["true"], 125, "workdir"),
    ];
    let message = |r: &Run| {
        let line = r.stderr.lines().last().unwrap_or("").to_string();
        // "locker: run fix: X" and "locker: exec tail: X" say the same X.
        line.split_once(": ")
            .and_then(|(_, rest)| rest.split_once(": "))
            .map(|(_, x)| x.to_string())
            .unwrap_or(line)
    };
    for (opts, cmd, code, says) in cases {
        let run = c.code(opts, cmd, code);
        let mut exec_args = vec!["exec"];
        exec_args.extend_from_slice(opts);
        exec_args.push("tail");
        exec_args.extend_from_slice(cmd);
        let exec = c.l.code(&exec_args, code);
        assert!(message(&run).contains(says), "{}", run.dump());
        assert_eq!(
            message(&run),
            message(&exec),
            "the same failure reads the same\n{}\n{}",
            run.dump(),
            exec.dump()
        );
    }
    c.l.ok(&["stop", "tail"]);
    wait_child(&mut svc, Duration::from_secs(20));
    c.l.ok(&["rm", "tail"]);
}

/// A reader that goes away (`locker ps | head -0`, `locker images | true`) is not an
/// error: exit 0, nothing on stderr, no panic.
#[test]
fn closed_stdout_is_success() {
    let c = Ctx::new();
    for args in [&["ps"][..], &["images"], &["ps", "--json"], &["catalog"]] {
        let mut cmd = c.l.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // Close the read end before locker writes: its first write gets EPIPE.
        drop(child.stdout.take());
        let status = wait_child(&mut child, Duration::from_secs(30));
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed: {err}");
    }
}
