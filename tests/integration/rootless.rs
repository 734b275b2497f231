//! Rootless: the real binary run by ordinary users this module creates (useradd, with
//! and without /etc/subuid and /etc/subgid ranges; removed when the test process
//! exits). Each command drops to the user with setpriv and a clean environment, so
//! nothing of root's reaches it; `run` and `exec` also enter the test's own network
//! namespace (the user's slirp4netns, too, lives only there).
//!
//! Covered: pull from a loopback server into the user's default store, owners mapped
//! onto the subordinate range and nothing owned by host root; run (id and uid_map,
//! writes vanish, `--name` keeps them, exit codes, signals, -t), exec, ps, stop, rm,
//! rmi, gc; a volume cannot write a root-owned host file (root's container can: the
//! control); another user sees and reaches nothing of the first; the single-id map's
//! warning and its storage; limits refused on this cgroup v1 host; the private
//! network (slirp4netns) keeps the host's loopback out (--net host: the control); a
//! rootless build is the root build, digest for digest.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::harness::{
    fixture_tar, in_netns, locker_bin, new_netns, require_root, run_bounded, Run,
};
use crate::server::Server;

/// The first container uid above 0 lands here on the host (usermod --add-subuids).
const RANGE: u32 = 300_000;
const COUNT: u32 = 65_536;

pub struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

pub struct Users {
    /// Has subordinate ranges RANGE..RANGE+COUNT.
    pub ranged: TestUser,
    /// Has none: the single-id map.
    pub single: TestUser,
    /// A copy of the binary every user may execute (the build tree may be private).
    bin: PathBuf,
}

static NAMES: OnceLock<Vec<String>> = OnceLock::new();
static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The `locker` entry `--userns auto` allocates from, when the tests add it.
const AUTO_LINE: &str = "locker:2000000:1048576";
/// What the rootless tests change on the host, shared by every test process running
/// at once (several checkouts' test runs on one machine): /dev/net/tun made 0666 (as
/// Debian's udev makes it for rootless slirp4netns; this VM has no udev) and the
/// `locker` line of /etc/subuid and /etc/subgid. The first process to come makes the
/// changes and records what was there; the last to leave undoes them. The record and
/// its lock live in SETUP_DIR.
const SETUP_DIR: &str = "/run/locker-tests";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct HostSetup {
    /// Test processes using the changes.
    pids: Vec<u32>,
    /// /dev/net/tun's mode before the first of them.
    tun_mode: Option<u32>,
    /// Whether the first of them added AUTO_LINE.
    auto_added: bool,
}

fn with_host_setup(f: impl FnOnce(&mut HostSetup)) {
    use std::os::fd::AsRawFd;
    fs::create_dir_all(SETUP_DIR).unwrap();
    let lock = fs::File::create(Path::new(SETUP_DIR).join("host.lock")).unwrap();
    // SAFETY: flock on an fd this function owns; released when it is closed.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let path = Path::new(SETUP_DIR).join("host.json");
    let mut setup: HostSetup = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    setup
        .pids
        .retain(|p| Path::new(&format!("/proc/{p}")).exists());
    f(&mut setup);
    if setup.pids.is_empty() {
        let _ = fs::remove_file(&path);
    } else {
        fs::write(&path, serde_json::to_vec(&setup).unwrap()).unwrap();
    }
}

fn join_host_setup() {
    with_host_setup(|s| {
        if s.pids.is_empty() {
            s.tun_mode = fs::metadata("/dev/net/tun").ok().map(|m| m.mode() & 0o7777);
            let has = fs::read_to_string("/etc/subuid")
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("locker:"));
            s.auto_added = !has;
            if !has {
                for f in ["/etc/subuid", "/etc/subgid"] {
                    let mut text = fs::read_to_string(f).unwrap_or_default();
                    if !text.is_empty() && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(AUTO_LINE);
                    text.push('\n');
                    fs::write(f, text).unwrap();
                }
            }
        }
        if s.tun_mode.is_some() {
            fs::set_permissions("/dev/net/tun", fs::Permissions::from_mode(0o666)).unwrap();
        }
        s.pids.push(std::process::id());
    });
}

fn leave_host_setup() {
    with_host_setup(|s| {
        s.pids.retain(|&p| p != std::process::id());
        if !s.pids.is_empty() {
            return;
        }
        if s.auto_added {
            for f in ["/etc/subuid", "/etc/subgid"] {
                let text = fs::read_to_string(f).unwrap_or_default();
                let kept: String = text
                    .lines()
                    .filter(|l| *l != AUTO_LINE)
                    .map(|l| format!("{l}\n"))
                    .collect();
                let _ = fs::write(f, kept);
            }
        }
        if let Some(mode) = s.tun_mode {
            let _ = fs::set_permissions("/dev/net/tun", fs::Permissions::from_mode(mode));
        }
    });
}

extern "C" fn remove_users() {
    for name in NAMES.get().into_iter().flatten() {
        let _ = Command::new("userdel")
            .args(["-r", "-f", name])
            .stderr(Stdio::null())
            .status();
    }
    if let Some(dir) = BIN_DIR.get() {
        let _ = fs::remove_dir_all(dir);
    }
    leave_host_setup();
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn add_user(name: &str, ranges: bool) -> TestUser {
    // -K SUB_UID_COUNT=0: no automatic range; the ranged user gets exactly ours.
    sh(Command::new("useradd").args([
        "-m",
        "-K",
        "SUB_UID_COUNT=0",
        "-K",
        "SUB_GID_COUNT=0",
        "-s",
        "/bin/sh",
        name,
    ]));
    if ranges {
        let r = format!("{RANGE}-{}", RANGE + COUNT - 1);
        sh(Command::new("usermod").args(["--add-subuids", &r, "--add-subgids", &r, name]));
    }
    let pw = nix::unistd::User::from_name(name).unwrap().unwrap();
    TestUser {
        name: name.into(),
        uid: pw.uid.as_raw(),
        gid: pw.gid.as_raw(),
        home: pw.dir,
    }
}

pub fn users() -> &'static Users {
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS.get_or_init(|| {
        require_root();
        let tag = std::process::id() % 100_000;
        let (a, b) = (format!("lkra{tag}"), format!("lkrb{tag}"));
        NAMES.get_or_init(|| vec![a.clone(), b.clone()]);
        // SAFETY: registers a plain function with no captured state.
        unsafe { libc::atexit(remove_users) };
        join_host_setup();
        // Per test process: another checkout's run must not remove ours.
        let bin_dir = BIN_DIR.get_or_init(|| {
            PathBuf::from(format!(
                "/var/tmp/locker-rootless-bin-{}",
                std::process::id()
            ))
        });
        fs::create_dir_all(bin_dir).unwrap();
        fs::set_permissions(bin_dir, fs::Permissions::from_mode(0o755)).unwrap();
        let bin = bin_dir.join("locker");
        fs::copy(locker_bin(), &bin).unwrap();
        Users {
            ranged: add_user(&a, true),
            single: add_user(&b, false),
            bin,
        }
    })
}

/// One test's view: a user, a network namespace, a loopback file server.
pub struct Ctx {
    user: &'static TestUser,
    netns: Arc<OwnedFd>,
    /// `--root` for every command; None: the user's default store.
    root: Option<PathBuf>,
}

impl Ctx {
    pub fn new(user: &'static TestUser, store: Option<&str>) -> Ctx {
        let root = store.map(|s| user.home.join("stores").join(s));
        Ctx {
            user,
            netns: Arc::new(new_netns()),
            root,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_env(&[], args)
    }

    /// `command` with extra environment variables (the rest is cleared).
    fn command_env(&self, env: &[String], args: &[&str]) -> Command {
        let u = self.user;
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            &u.uid.to_string(),
            "--regid",
            &u.gid.to_string(),
            "--init-groups",
            "--",
        ])
        .arg("env")
        .arg("-i")
        .arg(format!("HOME={}", u.home.display()))
        .arg(format!("USER={}", u.name))
        .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .args(env)
        .arg(&users().bin);
        if let Some(r) = &self.root {
            cmd.arg("--root").arg(r);
        }
        cmd.args(args).current_dir("/").stdin(Stdio::null());
        if matches!(args.first(), Some(&"run") | Some(&"exec")) {
            in_netns(&mut cmd, &self.netns);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_bounded(self.command(args), Duration::from_secs(120))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, Some(0), "expected success\n{}", r.dump());
        r.stdout
    }

    fn store(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| self.user.home.join(".local/share/locker"))
    }

    /// The fixture (owners: root, and tester 1000 for /home/tester and a file) imported
    /// as `name`.
    fn import_fixture(&self, name: &str) -> Run {
        let path = self.user.home.join(format!("{name}.tar"));
        fs::write(&path, owned_fixture()).unwrap();
        std::os::unix::fs::chown(&path, Some(self.user.uid), Some(self.user.gid)).unwrap();
        self.run(&["import", path.to_str().unwrap(), "--name", name])
    }
}

/// The fixture with /home/tester and /home/tester/notes owned by 1000:1000, a setuid
/// file, and a device node (which no user namespace can make).
fn owned_fixture() -> Vec<u8> {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    TAR.get_or_init(|| {
        let mut out = tar::Builder::new(Vec::new());
        let mut a = tar::Archive::new(fixture_tar());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut h = e.header().clone();
            let path = e.path().unwrap().into_owned();
            if path == Path::new("home/tester") {
                h.set_uid(1000);
                h.set_gid(1000);
            }
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            if h.entry_type().is_symlink() {
                let target = e.link_name().unwrap().unwrap().into_owned();
                out.append_link(&mut h, &path, target).unwrap();
            } else {
                out.append_data(&mut h, &path, data.as_slice()).unwrap();
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_size(6);
        out.append_data(&mut h, "home/tester/notes", &b"notes\n"[..])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o4755);
        h.set_size(4);
        out.append_data(&mut h, "bin/suid", &b"#!x\n"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Block);
        h.set_mode(0o600);
        h.set_size(0);
        h.set_device_major(8).unwrap();
        h.set_device_minor(0).unwrap();
        out.append_data(&mut h, "dev/sda", std::io::empty())
            .unwrap();
        out.into_inner().unwrap()
    })
    .clone()
}

fn owners(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            v.push((e.path(), m.uid()));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    v
}

fn catalog_for(ctx: &Ctx, server: &Server) -> String {
    let data = crate::harness::compress(&owned_fixture(), "gzip");
    let hex = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&data))
    };
    let url = server.serve("/rootless/fixture.tar.gz", data);
    let path = ctx.user.home.join("catalog.toml");
    fs::write(
        &path,
        format!("[images.rlfix]\nurl = \"{url}\"\nsha256 = \"{hex}\"\n"),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn rootless_lifecycle_in_the_users_own_store() {
    let ctx = Ctx::new(&users().ranged, None);
    let server = Server::start();
    let catalog = catalog_for(&ctx, &server);
    let r = ctx.run(&["--catalog", &catalog, "pull", "rlfix"]);
    assert_eq!(r.code, Some(0), "{}", r.dump());
    assert!(
        r.stderr.contains("1 device nodes left out"),
        "the node is reported once\n{}",
        r.dump()
    );
    // The default store: ~/.local/share/locker, the user's, 0700.
    let store = ctx.store();
    let m = fs::metadata(&store).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (ctx.user.uid, 0o700));
    // Owners are mapped ids: container 0 is the user, 1000 is RANGE + 999; nothing is
    // host root's.
    let all = owners(&store);
    assert!(
        all.iter().all(|(_, uid)| *uid != 0),
        "host root owns {:?}",
        all.iter().find(|(_, u)| *u == 0)
    );
    let notes = all
        .iter()
        .find(|(p, _)| p.ends_with("home/tester/notes"))
        .expect("notes stored");
    assert_eq!(notes.1, RANGE + 999, "{notes:?}");
    let suid = all.iter().find(|(p, _)| p.ends_with("bin/suid")).unwrap();
    assert_eq!(
        fs::metadata(&suid.0).unwrap().mode() & 0o7777,
        0o4755,
        "setuid kept"
    );
    assert!(!all.iter().any(|(p, _)| p.ends_with("dev/sda")));

    // Inside: root of the namespace, mapped onto the user and the range.
    let out = ctx.ok(&[
        "run",
        "--net",
        "none",
        "rlfix",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; stat -c %u /home/tester/notes",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "0",
            "0",
            &ctx.user.uid.to_string(),
            "1",
            "1",
            &RANGE.to_string(),
            "65536",
            "1000"
        ],
        "{out}"
    );
    // Writes vanish; a named container keeps them.
    ctx.ok(&[
        "run",
        "--net",
        "none",
        "rlfix",
        "sh",
        "-c",
        "echo x > /scratch",
    ]);
    let r = ctx.run(&["run", "--net", "none", "rlfix", "test", "-e", "/scratch"]);
    assert_eq!(r.code, Some(1), "{}", r.dump());
    ctx.ok(&[
        "run",
        "--net",
        "none",
        "--name",
        "keep",
        "rlfix",
        "sh",
        "-c",
        "echo kept > /kept",
    ]);
    assert_eq!(
        ctx.ok(&["run", "--net", "none", "--name", "keep", "rlfix", "cat", "/kept"]),
        "kept\n"
    );
    // Exit codes and a signal.
    assert_eq!(
        ctx.run(&["run", "--net", "none", "rlfix", "sh", "-c", "exit 3"])
            .code,
        Some(3)
    );
    assert_eq!(
        ctx.run(&["run", "--net", "none", "rlfix", "sh", "-c", "kill -TERM $$"])
            .code,
        Some(143)
    );
    // -t: a pty from the container's own devpts.
    let out = ctx.ok(&["run", "--net", "none", "-t", "rlfix", "tty"]);
    assert!(out.trim().starts_with("/dev/"), "{out:?}");
    // Detached, exec, ps, stop, rm.
    let id = ctx.ok(&[
        "run", "--net", "none", "-d", "--name", "bg", "rlfix", "sleep", "600",
    ]);
    assert!(!id.trim().is_empty());
    assert!(ctx.ok(&["ps"]).contains("bg"));
    let out = ctx.ok(&[
        "exec",
        "bg",
        "sh",
        "-c",
        "id -u; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert!(out.starts_with("0\n"), "{out}");
    let out = ctx.ok(&["exec", "-u", "1000", "bg", "id", "-u"]);
    assert_eq!(out, "1000\n");
    ctx.ok(&["stop", "--time", "5", "bg"]);
    ctx.ok(&["rm", "bg"]);
    ctx.ok(&["rm", "keep"]);
    assert!(!ctx.ok(&["ps", "-a"]).contains("bg"));
    // rmi and gc free everything; nothing of the user's is left in the store.
    ctx.ok(&["rmi", "rlfix"]);
    ctx.ok(&["gc"]);
    let left: Vec<_> = owners(&store.join("rootfs"));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn rootless_volume_cannot_write_a_root_owned_host_file() {
    let ctx = Ctx::new(&users().ranged, Some("vol"));
    assert_eq!(ctx.import_fixture("fix").code, Some(0));
    let dir = tempfile::Builder::new()
        .prefix("locker-rl-vol-")
        .tempdir_in("/var/tmp")
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.path().join("passwd");
    fs::write(&target, "root-owned\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let vol = format!("{}:/host", target.display());
    let r = ctx.run(&[
        "run",
        "--net",
        "none",
        "-v",
        &vol,
        "fix",
        "sh",
        "-c",
        "echo pwned >> /host",
    ]);
    assert_ne!(
        r.code,
        Some(0),
        "HOLE: container root wrote a host root file\n{}",
        r.dump()
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "root-owned\n");
    // CONTROL: root's container, with the same volume, writes it.
    let l = crate::harness::Locker::new();
    let tar = l.path("fix.tar");
    fs::write(&tar, fixture_tar()).unwrap();
    l.ok(&["import", tar.to_str().unwrap(), "--name", "fix"]);
    l.ok(&[
        "run",
        "--net",
        "none",
        "-v",
        &vol,
        "fix",
        "sh",
        "-c",
        "echo written >> /host",
    ]);
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "root-owned\nwritten\n"
    );
}

#[test]
fn another_user_sees_and_reaches_nothing() {
    let a = Ctx::new(&users().ranged, Some("private"));
    assert_eq!(a.import_fixture("mine").code, Some(0));
    a.ok(&[
        "run", "--net", "none", "-d", "--name", "held", "mine", "sleep", "600",
    ]);
    let b = Ctx::new(&users().single, None);
    let images = b.ok(&["images"]);
    assert!(!images.contains("mine"), "{images}");
    assert!(!b.ok(&["ps", "-a"]).contains("held"));
    let theirs = a.store();
    let store = theirs.to_str().unwrap();
    for args in [
        vec!["--root", store, "images"],
        vec!["--root", store, "run", "--net", "none", "mine", "true"],
        vec!["--root", store, "exec", "held", "true"],
        vec!["--root", store, "stop", "held"],
        vec!["--root", store, "rmi", "mine"],
    ] {
        let r = b.run(&args);
        assert_eq!(r.code, Some(125), "{}", r.dump());
    }
    assert!(a.ok(&["ps"]).contains("held"), "still running");
    // Root's locker trusts no one else's store either: its state files name the pids
    // root would signal.
    for args in [vec!["ps", "-a"], vec!["stop", "held"], vec!["images"]] {
        let mut cmd = Command::new(locker_bin());
        cmd.arg("--root")
            .arg(&theirs)
            .args(&args)
            .stdin(Stdio::null());
        let r = run_bounded(cmd, Duration::from_secs(30));
        assert_eq!(
            r.code,
            Some(125),
            "root used another user's store\n{}",
            r.dump()
        );
        assert!(r.stderr.contains("belongs to uid"), "{}", r.dump());
    }
    assert!(a.ok(&["ps"]).contains("held"), "still running");
    a.ok(&["rm", "-f", "held"]);
}

#[test]
fn single_id_map_warns_and_stores_everything_as_the_user() {
    let ctx = Ctx::new(&users().single, Some("single"));
    let r = ctx.import_fixture("fix");
    assert_eq!(r.code, Some(0), "{}", r.dump());
    assert!(
        r.stderr.contains("/etc/subuid"),
        "the warning says how to fix it\n{}",
        r.dump()
    );
    assert!(r.stderr.contains("stored as owned by root"), "{}", r.dump());
    assert!(owners(&ctx.store()).iter().all(|(_, u)| *u == ctx.user.uid));
    let out = ctx.ok(&[
        "run",
        "--net",
        "none",
        "fix",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["0", "0", &ctx.user.uid.to_string(), "1"], "{out}");
}

#[test]
fn rootless_limits_need_a_delegated_cgroup() {
    let ctx = Ctx::new(&users().ranged, Some("limits"));
    assert_eq!(ctx.import_fixture("fix").code, Some(0));
    for limit in [["--memory", "64m"], ["--pids", "100"], ["--cpus", "1"]] {
        let mut args = vec!["run", "--net", "none"];
        args.extend(limit);
        args.extend(["fix", "true"]);
        let r = ctx.run(&args);
        assert_eq!(r.code, Some(125), "{}", r.dump());
        assert!(r.stderr.contains("delegated"), "{}", r.dump());
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.dump());
    }
    // Without limits the same run works.
    ctx.ok(&["run", "--net", "none", "fix", "true"]);
    // Named networks (a host bridge) and --userns auto need root, said in one line.
    for args in [
        vec!["network", "create", "n1"],
        vec!["run", "--net", "none", "--userns", "auto", "fix", "true"],
    ] {
        let r = ctx.run(&args);
        assert_eq!(r.code, Some(125), "{}", r.dump());
        assert!(r.stderr.contains("root"), "{}", r.dump());
    }
}

#[test]
fn rootless_private_network_keeps_the_host_loopback_out() {
    let ctx = Ctx::new(&users().ranged, Some("net"));
    assert_eq!(ctx.import_fixture("fix").code, Some(0));
    // A service on the (test namespace's) host loopback.
    let ns = ctx.netns.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        nix::sched::setns(&*ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        tx.send(l.local_addr().unwrap().port()).unwrap();
        for s in l.incoming().flatten() {
            use std::io::Write;
            let _ = (&s).write_all(b"secret\n");
        }
    });
    let port = rx.recv().unwrap().to_string();
    let probe = |net: &str, addr: &str| {
        ctx.run(&[
            "run",
            "--net",
            net,
            "fix",
            "sh",
            "-c",
            &format!("ip -o -4 addr show; nc -w 2 {addr} {port} </dev/null"),
        ])
    };
    let r = probe("private", "10.0.2.2");
    assert!(
        r.stdout.contains("tap0"),
        "slirp4netns configured tap0\n{}",
        r.dump()
    );
    assert!(
        !r.stdout.contains("secret"),
        "HOLE: the host loopback through the gateway\n{}",
        r.dump()
    );
    let r = probe("private", "127.0.0.1");
    assert!(!r.stdout.contains("secret"), "HOLE\n{}", r.dump());
    // CONTROL: on the host's network the service answers.
    let r = probe("host", "127.0.0.1");
    assert!(r.stdout.contains("secret"), "CONTROL\n{}", r.dump());
}

#[test]
fn rootless_build_is_the_root_build() {
    let user = &users().ranged;
    let ctx = Ctx::new(user, Some("build"));
    // The packages root's build tests cache, copied so the user may write beside them.
    let cache = user.home.join("debs");
    let shared = Path::new("/var/cache/locker-tests/debs");
    sh(Command::new("mkdir").arg("-p").arg(&cache));
    if shared.exists() {
        sh(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", shared.display()))
            .arg(&cache));
    }
    sh(Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(&cache));
    let env = [
        format!("LOCKER_DEB_CACHE={}", cache.display()),
        "SOURCE_DATE_EPOCH=1700000000".to_string(),
    ];
    let cmd = ctx.command_env(&env, &["build", "bookworm"]);
    let r = run_bounded(cmd, Duration::from_secs(900));
    assert_eq!(r.code, Some(0), "{}", r.dump());
    let digest = r
        .stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sha256:"))
        .unwrap()
        .to_string();
    assert_eq!(
        digest,
        crate::build::built_digest(),
        "the same tree as root's build\n{}",
        r.dump()
    );
    // And the built image runs as the user.
    assert!(ctx
        .ok(&[
            "run",
            "--net",
            "none",
            "bookworm",
            "cat",
            "/etc/debian_version"
        ])
        .starts_with("12"));
}

/// The `--userns auto` block of a container whose /proc/self/uid_map is `map`.
fn auto_base(map: &str) -> u32 {
    let w: Vec<u32> = map.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!((w.len(), w[0], w[2]), (3, 0, 65536), "{map}");
    let (start, count) = locker_range();
    assert!(
        w[1] >= start && w[1] + 65536 <= start + count,
        "{map} outside the locker range"
    );
    w[1]
}

fn locker_range() -> (u32, u32) {
    let text = fs::read_to_string("/etc/subuid").unwrap();
    let l = text.lines().find(|l| l.starts_with("locker:")).unwrap();
    let f: Vec<u32> = l.split(':').skip(1).map(|x| x.parse().unwrap()).collect();
    (f[0], f[1])
}

#[test]
fn userns_auto_gives_a_root_container_its_own_range() {
    users();
    let l = crate::harness::Locker::new();
    let tar = l.path("fix.tar");
    fs::write(&tar, owned_fixture()).unwrap();
    l.ok(&["import", tar.to_str().unwrap(), "--name", "fix"]);
    let vol = tempfile::Builder::new()
        .prefix("locker-auto-vol-")
        .tempdir_in("/var/tmp")
        .unwrap();
    fs::set_permissions(vol.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let v = format!("{}:/vol", vol.path().display());
    let script = "cat /proc/self/uid_map; stat -c %u /home/tester/notes /; id -u; echo x > /vol/f; echo y > /new && cat /new";
    let out = l.ok(&[
        "run", "--net", "none", "--userns", "auto", "-v", &v, "fix", "sh", "-c", script,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let base = auto_base(lines[0]);
    // The one lower layer on disk, seen through an idmapped mount: owners as stored.
    assert_eq!(&lines[1..], ["1000", "0", "0", "y"], "{out}");
    assert_eq!(
        fs::metadata(vol.path().join("f")).unwrap().uid(),
        base,
        "the volume file is the range's"
    );
    // HOLE: a root-owned host file through a volume; CONTROL: without --userns auto.
    let target = vol.path().join("rootfile");
    fs::write(&target, "root\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let tv = format!("{}:/host", target.display());
    let r = l.run(&[
        "run",
        "--net",
        "none",
        "--userns",
        "auto",
        "-v",
        &tv,
        "fix",
        "sh",
        "-c",
        "echo pwned >> /host",
    ]);
    assert_ne!(r.code, Some(0), "HOLE\n{}", r.dump());
    assert_eq!(fs::read_to_string(&target).unwrap(), "root\n");
    l.ok(&[
        "run",
        "--net",
        "none",
        "-v",
        &tv,
        "fix",
        "sh",
        "-c",
        "echo ok >> /host",
    ]);
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "root\nok\n",
        "CONTROL"
    );
    // Two at once get two blocks; exec lands in the container's range.
    let id = l.ok(&[
        "run", "--net", "none", "--userns", "auto", "-d", "fix", "sleep", "600",
    ]);
    let id = id.trim();
    let held = auto_base(&l.ok(&["exec", id, "cat", "/proc/self/uid_map"]));
    let other = l.ok(&[
        "run",
        "--net",
        "none",
        "--userns",
        "auto",
        "fix",
        "cat",
        "/proc/self/uid_map",
    ]);
    assert_ne!(held, auto_base(other.trim()));
    l.ok(&["stop", id]);
    // SIGKILL of locker: the container dies too (PID 1's parent-death signal is set
    // again after it joins the user namespace, which cleared it), and its block is free.
    let mut child = l
        .command(&[
            "run", "--net", "none", "--userns", "auto", "fix", "sleep", "600",
        ])
        .spawn()
        .unwrap();
    let state_dir = l.root().join("run");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let pid1 = loop {
        let found = fs::read_dir(&state_dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let v: serde_json::Value =
                    serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
                v["pid"].as_i64().filter(|p| *p > 0)
            });
        // Running: PID 1 has forked the command (it joined the user namespace first).
        let running = |p: i64| {
            fs::read_to_string(format!("/proc/{p}/task/{p}/children"))
                .is_ok_and(|c| !c.trim().is_empty())
        };
        if let Some(p) = found.filter(|&p| running(p)) {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the container never started"
        );
        std::thread::yield_now();
    };
    // SAFETY: pidfd_open with integer arguments; a negative result is an error.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid1 as libc::pid_t, 0) };
    assert!(fd >= 0, "pidfd_open {pid1}");
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    let pidfd = Ok::<_, ()>(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    if let Ok(fd) = pidfd {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)).unwrap();
        assert_eq!(
            n, 1,
            "HOLE: the --userns auto container outlived its killed locker"
        );
    }
    // Named containers are refused in one line (their files would change owner).
    l.fails(&[
        "run", "--net", "none", "--userns", "auto", "--name", "n", "fix", "true",
    ]);
}

/// A rootless container's DNS never opens a way to the host's loopback: with an
/// upstream server in the host's resolv.conf the container names it and slirp's
/// 10.0.2.3 redirect is off; only a host whose sole resolver is a loopback stub gets
/// 10.0.2.3, forwarded to port 53 of that stub (as root's DNS forwarder; the CONTROL).
#[test]
fn rootless_dns_leads_to_the_host_loopback_only_for_a_stub_resolver() {
    use std::os::unix::process::CommandExt;
    let ctx = Ctx::new(&users().ranged, Some("dns"));
    assert_eq!(ctx.import_fixture("fix").code, Some(0));
    let ns = ctx.netns.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        nix::sched::setns(&*ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:53").unwrap();
        tx.send(()).unwrap();
        for s in l.incoming().flatten() {
            use std::io::Write;
            let _ = (&s).write_all(b"STUB-REACHED\n");
        }
    });
    rx.recv().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("locker-rl-dns-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let probe = |conf: &str| {
        let file = dir.path().join(format!("resolv-{}", conf.len()));
        fs::write(&file, conf).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let src = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
        let mut cmd = ctx.command(&[
            "run",
            "fix",
            "sh",
            "-c",
            "cat /etc/resolv.conf; nc -w 2 10.0.2.3 53 </dev/null",
        ]);
        // SAFETY: between fork and exec only unshare and mount run, on C strings made
        // before the fork: the host's resolv.conf, for this command only.
        unsafe {
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        src.as_ptr(),
                        c"/etc/resolv.conf".as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        run_bounded(cmd, Duration::from_secs(60))
    };
    let r = probe("nameserver 127.0.0.1\nnameserver 192.0.2.53\n");
    assert!(
        r.stdout.contains("nameserver 192.0.2.53") && !r.stdout.contains("127.0.0.1"),
        "{}",
        r.dump()
    );
    assert!(
        !r.stdout.contains("STUB-REACHED"),
        "HOLE: 10.0.2.3 led to the host's loopback\n{}",
        r.dump()
    );
    let r = probe("nameserver 127.0.0.1\n");
    assert!(r.stdout.contains("nameserver 10.0.2.3"), "{}", r.dump());
    assert!(
        r.stdout.contains("STUB-REACHED"),
        "CONTROL: the stub is the container's DNS\n{}",
        r.dump()
    );
}
