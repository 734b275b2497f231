//! `locker oci` / `locker-runtime`: runc's command line over OCI bundles made from the
//! busybox fixture tree, with `locker oci spec`'s default config.json: the lifecycle
//! (create waits for start, state, kill, delete), `run`'s exit code, the console
//! socket, hooks in order with the state on stdin, a refused field, and nothing left
//! behind after delete (cgroups, state, records).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{
    busybox_path, fixture_tar, locker_bin, require_root, run_bounded, wait_child, Run,
};

/// A bundle (rootfs from the fixture, config.json from `locker oci spec`) and a
/// runtime root of its own; every container it created is force-deleted on drop.
struct Bundle {
    dir: tempfile::TempDir,
    ids: std::cell::RefCell<Vec<String>>,
}

impl Bundle {
    fn new(args: &[&str]) -> Bundle {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("locker-ocirt-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let rootfs = dir.path().join("bundle/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        tar::Archive::new(fixture_tar()).unpack(&rootfs).unwrap();
        let b = Bundle {
            dir,
            ids: Default::default(),
        };
        let r = b.oci(&["spec", "--bundle", b.bundle().to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{}", r.dump());
        b.edit(|c| {
            c["process"]["terminal"] = json!(false);
            c["process"]["args"] = json!(args);
            c["root"]["readonly"] = json!(false);
        });
        b
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) {
        let p = self.bundle().join("config.json");
        let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        f(&mut c);
        std::fs::write(&p, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(locker_bin());
        cmd.arg("oci")
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(std::process::Stdio::null());
        cmd
    }

    fn oci(&self, args: &[&str]) -> Run {
        run_bounded(self.command(args), Duration::from_secs(60))
    }

    fn ok(&self, args: &[&str]) -> String {
        let r = self.oci(args);
        assert_eq!(r.code, Some(0), "{}", r.dump());
        r.stdout
    }

    /// `create` with `extra` options; the container keeps create's stdout and stderr
    /// (files here, read with `output`), as a shim's would.
    fn create_with(&self, id: &str, extra: &[&str]) {
        self.ids.borrow_mut().push(id.to_string());
        let out = std::fs::File::create(self.dir.path().join(format!("{id}.out"))).unwrap();
        let err = std::fs::File::create(self.dir.path().join(format!("{id}.err"))).unwrap();
        // runc's single-dash long options, as some callers spell them.
        let bundle = self.bundle();
        let mut args = vec!["create", "-bundle", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(id);
        let mut cmd = self.command(&args);
        let mut child = cmd.stdout(out).stderr(err).spawn().unwrap();
        let st = wait_child(&mut child, Duration::from_secs(60));
        assert!(
            st.success(),
            "create {id}: {st}
{}",
            self.output(id)
        );
    }

    fn create(&self, id: &str) {
        self.create_with(id, &[]);
    }

    /// What create (and then the container) wrote to stdout and stderr.
    fn output(&self, id: &str) -> String {
        let read = |ext: &str| {
            std::fs::read_to_string(self.dir.path().join(format!("{id}.{ext}"))).unwrap_or_default()
        };
        format!("--- stdout\n{}--- stderr\n{}", read("out"), read("err"))
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.state(id);
            if s["status"] == want {
                return s;
            }
            assert!(Instant::now() < deadline, "never {want}: {s}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The engine's record of a container: its cgroups.
    fn cgroups(&self, id: &str) -> Vec<PathBuf> {
        let p = self.root().join("run").join(format!("{id}.json"));
        let s: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        s["cgroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| PathBuf::from(d.as_str().unwrap()))
            .collect()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.oci(&["delete", "--force", id]);
        }
    }
}

fn id(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u32::from_le_bytes(b)
}

#[test]
fn create_waits_for_start_then_state_kill_delete_leave_nothing() {
    let b = Bundle::new(&["sh", "-c", "echo ran > /ran; exec sleep 60"]);
    let id = id("life");
    b.create(&id);
    let s = b.state(&id);
    assert_eq!(s["status"], "created", "{s}");
    assert_eq!(s["ociVersion"], "1.0.2");
    let pid = s["pid"].as_i64().unwrap();
    assert!(pid > 1 && Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        s["bundle"].as_str().unwrap(),
        b.bundle().canonicalize().unwrap().to_str().unwrap()
    );
    let ran = b.bundle().join("rootfs/ran");
    assert!(!ran.exists(), "the process must not run before start");
    // A second create of the same id is refused.
    let r = b.oci(&["create", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(r.stderr.contains("exists"), "{}", r.dump());

    let cgroups = b.cgroups(&id);
    assert!(!cgroups.is_empty());
    for d in &cgroups {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.split_whitespace().any(|p| p == pid.to_string()),
            "{d:?}: {procs}"
        );
    }
    b.ok(&["start", &id]);
    b.wait_status(&id, "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ran.exists() {
        assert!(Instant::now() < deadline, "the process never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    // start twice: an error, no effect.
    let r = b.oci(&["start", &id]);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    let ps: Vec<i64> = serde_json::from_str(&b.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(ps.contains(&pid), "{ps:?}");
    let list = b.ok(&["list", "--format", "json"]);
    assert!(list.contains(&id), "{list}");
    // Not stopped: delete refuses and changes nothing.
    let r = b.oci(&["delete", &id]);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert_eq!(b.state(&id)["status"], "running");

    b.ok(&["kill", &id, "KILL"]);
    let s = b.wait_status(&id, "stopped");
    assert_eq!(s["pid"], 0);
    let r = b.oci(&["kill", &id, "9"]);
    assert_eq!(
        r.code,
        Some(125),
        "a stopped container takes no signal\n{}",
        r.dump()
    );
    b.ok(&["delete", &id]);
    for d in &cgroups {
        assert!(!d.exists(), "cgroup {d:?} left behind");
    }
    assert!(!b.root().join("run").join(format!("{id}.json")).exists());
    assert!(!b.root().join("run").join(&id).exists());
    assert!(!b.root().join("oci").join(&id).exists());
    let r = b.oci(&["state", &id]);
    assert_eq!(r.code, Some(125), "{}", r.dump());
}

#[test]
fn run_returns_the_exit_code_and_deletes() {
    let b = Bundle::new(&["sh", "-c", "test \"$(hostname)\" = locker && exit 7"]);
    let id = id("run");
    b.ids.borrow_mut().push(id.clone());
    let r = b.oci(&["run", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert_eq!(r.code, Some(7), "{}", r.dump());
    assert!(!b.root().join("oci").join(&id).exists());
    assert!(!b.root().join("run").join(format!("{id}.json")).exists());
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let b = Bundle::new(&["true"]);
    let out = b.dir.path().join("hooks");
    std::fs::create_dir(&out).unwrap();
    let hook = |name: &str| {
        json!({
            "path": busybox_path(),
            "args": ["sh", "-c", format!("cat > {0}/{name}; echo {name} >> {0}/order", out.display())],
        })
    };
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
        c["annotations"] = json!({"org.example.test": "hooks"});
    });
    let id = id("hooks");
    b.create(&id);
    let pid = b.state(&id)["pid"].as_i64().unwrap();
    b.ok(&["start", &id]);
    b.wait_status(&id, "stopped");
    b.ok(&["delete", &id]);
    let order = std::fs::read_to_string(out.join("order")).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["prestart", "createRuntime", "poststart", "poststop"]
    );
    for (name, status) in [
        ("prestart", "created"),
        ("createRuntime", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let st: Value = serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap();
        assert_eq!(st["id"], id.as_str(), "{name}: {st}");
        assert_eq!(st["status"], status, "{name}: {st}");
        assert_eq!(
            st["annotations"]["org.example.test"], "hooks",
            "{name}: {st}"
        );
        if name != "poststop" {
            assert_eq!(st["pid"], pid, "{name}: {st}");
        }
    }
}

#[test]
fn a_failing_prestart_hook_fails_create_and_leaves_nothing() {
    let b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["hooks"] = json!({"prestart": [{"path": busybox_path(), "args": ["false"]}]});
    });
    let id = id("hookfail");
    let r = b.oci(&["create", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(r.stderr.contains("prestart hook"), "{}", r.dump());
    assert!(!b.root().join("oci").join(&id).exists());
    assert!(!b.root().join("run").join(format!("{id}.json")).exists());
}

#[test]
fn unsupported_fields_are_refused_not_ignored() {
    let b = Bundle::new(&["true"]);
    let id = id("refuse");
    for (field, value) in [
        ("apparmorProfile", json!("docker-default")),
        ("selinuxLabel", json!("system_u:system_r:container_t:s0")),
    ] {
        b.edit(|c| c["process"][field] = value);
        let r = b.oci(&["create", "--bundle", b.bundle().to_str().unwrap(), &id]);
        assert_eq!(r.code, Some(125), "{}", r.dump());
        assert!(r.stderr.contains(field), "{}", r.dump());
        assert!(r.stderr.lines().count() == 1, "one line\n{}", r.dump());
        b.edit(|c| {
            c["process"].as_object_mut().unwrap().remove(field);
        });
    }
    assert!(!b.root().join("oci").join(&id).exists());
    // The control: without them, the same bundle runs.
    let r = b.oci(&["run", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert_eq!(r.code, Some(0), "{}", r.dump());
    let r = b.oci(&["--systemd-cgroup", "state", &id]);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(r.stderr.contains("systemd-cgroup"), "{}", r.dump());
}

/// Receives one fd over a unix socket (SCM_RIGHTS), as containerd's console does.
fn recv_fd(sock: &std::os::unix::net::UnixStream) -> OwnedFd {
    let mut data = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut cmsg = [0u64; 8];
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg);
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled msg_control; the first header is inside it.
    unsafe {
        let h = libc::CMSG_FIRSTHDR(&msg);
        assert!(!h.is_null() && (*h).cmsg_type == libc::SCM_RIGHTS);
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(h).cast::<libc::c_int>());
        OwnedFd::from_raw_fd(fd)
    }
}

#[test]
fn the_terminal_goes_to_the_console_socket() {
    let b = Bundle::new(&["sh", "-c", "tty; echo console-ok"]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let sock = b.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let id = id("tty");
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        recv_fd(&conn)
    });
    b.create_with(&id, &["--console-socket", sock.to_str().unwrap()]);
    let master = accept.join().unwrap();
    // The master comes non-blocking (as the child opened it): block here.
    // SAFETY: fcntl with integer arguments on an fd this test owns.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, 0) };
    b.ok(&["start", &id]);
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    // EIO once the slave's last holder exits.
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&out).contains("console-ok") && Instant::now() < deadline {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.contains("console-ok"), "{text}");
    b.wait_status(&id, "stopped");
    b.ok(&["delete", &id]);
    // Without --console-socket, a terminal is refused.
    let r = b.oci(&["create", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(r.stderr.contains("console-socket"), "{}", r.dump());
}

#[test]
fn locker_runtime_is_the_same_command_line() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("locker-runtime");
    std::os::unix::fs::symlink(locker_bin(), &link).unwrap();
    let r = run_bounded(
        {
            let mut c = Command::new(&link);
            c.arg("features");
            c
        },
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(0), "{}", r.dump());
    let f: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(f["ociVersionMax"], "1.0.2");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("pid")));
}

/// Waits (bounded) until `path` holds a line, and returns what it holds.
fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "{path:?} never written");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a containerd shim asks of `exec`: the process from a process.json (numeric
/// ids with additional gids, its own capability sets, no_new_privileges, its exact
/// environment), `--detach` (locker returns while the command runs, the pid file
/// names it), and with a terminal the pty's master on the console socket.
#[test]
fn exec_detaches_with_the_process_json_pid_file_and_console() {
    let b = Bundle::new(&["sleep", "60"]);
    let id = id("exec");
    b.create(&id);
    b.ok(&["start", &id]);
    let process = b.dir.path().join("process.json");
    let script = "id -G > /tmp/exec-groups; id -u > /tmp/exec-uid; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status > /tmp/exec-status; \
                  echo \"FOO=$FOO HOME=${HOME-unset}\" > /tmp/exec-env; exec sleep 30";
    std::fs::write(
        &process,
        serde_json::to_vec(&json!({
            "args": ["sh", "-c", script],
            "env": ["PATH=/bin:/usr/bin", "FOO=bar"],
            "cwd": "/",
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]},
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_KILL"],
                "effective": ["CAP_CHOWN", "CAP_KILL"],
                "permitted": ["CAP_CHOWN", "CAP_KILL"],
                "ambient": ["CAP_CHOWN", "CAP_KILL"],
                "inheritable": ["CAP_CHOWN", "CAP_KILL"]
            },
            "noNewPrivileges": true
        }))
        .unwrap(),
    )
    .unwrap();
    let pid_file = b.dir.path().join("exec.pid");
    // The detached command keeps exec's stdio (as a shim's FIFOs): files here, so
    // that nothing waits for a pipe's end.
    let detached = |args: &[&str]| {
        let log = b.dir.path().join("exec.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = b
            .command(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let st = wait_child(&mut child, Duration::from_secs(20));
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(st.success(), "exec {args:?}: {st}\n{log}");
    };
    // Returns while the command runs (it sleeps 30 s; wait_child allows 20).
    detached(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--process",
        process.to_str().unwrap(),
        &id,
    ]);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(
        nspid.split_whitespace().count(),
        3,
        "the command is in the container's pid namespace: {nspid}"
    );
    let rootfs = b.bundle().join("rootfs");
    assert_eq!(wait_file(&rootfs.join("tmp/exec-uid")).trim(), "1000");
    let groups = wait_file(&rootfs.join("tmp/exec-groups"));
    assert_eq!(groups.trim(), "1000 10 20", "{groups}");
    let st = wait_file(&rootfs.join("tmp/exec-status"));
    assert!(st.contains("CapEff:\t0000000000000021"), "{st}");
    assert!(st.contains("CapBnd:\t0000000000000021"), "{st}");
    assert!(st.contains("NoNewPrivs:\t1"), "{st}");
    // The environment is the process's exactly: no HOME added.
    assert_eq!(
        wait_file(&rootfs.join("tmp/exec-env")).trim(),
        "FOO=bar HOME=unset"
    );

    // Control: without --detach, exec waits and returns the command's code.
    let r = b.oci(&["exec", &id, "sh", "-c", "exit 7"]);
    assert_eq!(r.code, Some(7), "{}", r.dump());

    // A detached terminal needs a console socket...
    let r = b.oci(&["exec", "--detach", "--tty", &id, "sh"]);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(r.stderr.contains("console-socket"), "{}", r.dump());
    // ...where the pty's master goes.
    let sock = b.dir.path().join("exec-console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        recv_fd(&conn)
    });
    detached(&[
        "exec",
        "--detach",
        "--tty",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "tty; echo exec-console-ok",
    ]);
    let master = accept.join().unwrap();
    // SAFETY: fcntl with integer arguments on an fd this test owns.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, 0) };
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    // EIO once the slave's last holder exits.
    while !String::from_utf8_lossy(&out).contains("exec-console-ok") {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("exec-console-ok"), "{text}");

    // The detached command ends with the container.
    b.ok(&["delete", "--force", &id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    {
        assert!(
            Instant::now() < deadline,
            "the detached command outlived delete"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `linux.uidMappings`: the container's root is host uid 100000 (gid 200000), so a
/// file of host root's given to it through a bind mount stays out of its reach (the
/// attack), which the same config without a user namespace writes (the control).
/// `exec` joins the container's user namespace too.
#[test]
fn a_user_namespace_maps_the_container_root_onto_an_unprivileged_id() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let b = Bundle::new(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; echo mine > /vol/mine; \
         (echo owned > /vol/hosts-root) 2>/dev/null && echo wrote || echo refused",
    ]);
    let vol = b.dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = vol.join("hosts-root");
    std::fs::write(&target, "host\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/vol", "type": "bind",
            "source": vol.to_str().unwrap(), "options": ["rbind", "rw"]
        }))
    });
    let run = |tag: &str| {
        let id = id(tag);
        b.ids.borrow_mut().push(id.clone());
        let r = b.oci(&["run", "--bundle", b.bundle().to_str().unwrap(), &id]);
        assert_eq!(r.code, Some(0), "{}", r.dump());
        r.stdout
    };

    // Control: host root's file is written by a container root that is host root.
    let out = run("nouserns");
    assert!(out.contains("wrote"), "{out}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "owned\n");
    std::fs::write(&target, "host\n").unwrap();
    std::fs::remove_file(vol.join("mine")).unwrap();

    let m = |host: u32| json!([{"containerID": 0, "hostID": host, "size": 65536}]);
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = m(100000);
        c["linux"]["gidMappings"] = m(200000);
    });
    let out = run("userns");
    let words: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(words[0], ["0", "100000", "65536"], "{out}");
    assert_eq!(words[1], ["0", "200000", "65536"], "{out}");
    assert_eq!(words[2], ["0"], "root inside: {out}");
    assert!(out.contains("refused"), "{out}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "host\n");
    let mine = std::fs::metadata(vol.join("mine")).unwrap();
    assert_eq!((mine.uid(), mine.gid()), (100000, 200000));

    // exec enters the same user namespace.
    b.edit(|c| c["process"]["args"] = json!(["sleep", "60"]));
    let id = id("userns-exec");
    b.create(&id);
    b.ok(&["start", &id]);
    let out = b.ok(&["exec", &id, "sh", "-c", "cat /proc/self/uid_map; id -u"]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["0", "100000", "65536", "0"], "{out}");
    b.ok(&["delete", "--force", &id]);
}

/// `run --detach` returns while the container runs (create, then start), as runc's.
#[test]
fn run_detach_returns_while_the_container_runs() {
    let b = Bundle::new(&["sleep", "60"]);
    let id = id("rund");
    b.ids.borrow_mut().push(id.clone());
    let started = Instant::now();
    let out = std::fs::File::create(b.dir.path().join("rund.out")).unwrap();
    let mut child = b
        .command(&[
            "run",
            "--detach",
            "--bundle",
            b.bundle().to_str().unwrap(),
            &id,
        ])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let st = wait_child(&mut child, Duration::from_secs(20));
    assert!(st.success(), "run --detach: {st}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let s = b.state(&id);
    assert_eq!(s["status"], "running", "{s}");
    let pid = s["pid"].as_i64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    b.ok(&["delete", "--force", &id]);
    assert!(!b.root().join("oci").join(&id).exists());
}

/// Runs locker-runtime ARGS with the caller's fds 3 and 4 open on `files` (not
/// close-on-exec, as a socket-activating caller passes them).
fn run_with_fds(b: &Bundle, args: &[&str], files: &[std::fs::File]) -> Run {
    use std::os::unix::process::CommandExt;
    let mut cmd = b.command(args);
    // Sources above 4, so that neither dup2 below closes the other's source.
    let high = |f: &std::fs::File| {
        // SAFETY: fcntl with integer arguments on an fd this test owns.
        let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        assert!(fd >= 10);
        // SAFETY: the fd was just returned by the kernel and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let (a_fd, z_fd) = (high(&files[0]), high(&files[1]));
    let (a, z) = (a_fd.as_raw_fd(), z_fd.as_raw_fd());
    // SAFETY: only dup2 and fcntl (async-signal-safe) on fds this test owns; a
    // dup2 onto itself keeps close-on-exec, so it is cleared explicitly.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(a, 3) < 0
                || libc::dup2(z, 4) < 0
                || libc::fcntl(3, libc::F_SETFD, 0) < 0
                || libc::fcntl(4, libc::F_SETFD, 0) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let r = run_bounded(cmd, Duration::from_secs(60));
    drop((a_fd, z_fd));
    r
}

/// Files "three" and "four" in the bundle's directory, open for reading.
fn three_four(b: &Bundle) -> Vec<std::fs::File> {
    ["three", "four"]
        .iter()
        .map(|t| {
            let p = b.dir.path().join(t);
            std::fs::write(&p, t).unwrap();
            std::fs::File::open(p).unwrap()
        })
        .collect()
}

/// What the probe script prints: fds 3 and 4's contents, then the fds it has open.
const FDS_SCRIPT: &str =
    "cat /proc/self/fd/3 /proc/self/fd/4 2>/dev/null; echo; ls /proc/self/fd | tr '\\n' ' '";

/// `--preserve-fds N` (create/run, and exec): the caller's fds 3 and 4 reach the
/// command (as runc passes them, for socket activation); without it, no fd of the
/// caller's does. A number in the range the caller left closed passes as /dev/null,
/// never as one of locker's own descriptors.
#[test]
fn preserve_fds_passes_the_callers_fds_and_no_others() {
    let b = Bundle::new(&["sh", "-c", FDS_SCRIPT]);
    let files = three_four(&b);
    let run = |extra: &[&str]| {
        let id = id("fds");
        b.ids.borrow_mut().push(id.clone());
        let bundle = b.bundle();
        let mut args = vec!["run", "--bundle", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(&id);
        let r = run_with_fds(&b, &args, &files);
        assert_eq!(r.code, Some(0), "{}", r.dump());
        r.stdout
    };
    let out = run(&["--preserve-fds", "2"]);
    let (text, fds) = out.split_once('\n').unwrap();
    assert_eq!(text, "threefour", "{out}");
    // 0-2, the two passed, and ls's own directory fd.
    assert_eq!(fds.split_whitespace().count(), 6, "{out}");
    // The control: the same caller without the option passes nothing of fds 3 and 4.
    let out = run(&[]);
    let (text, fds) = out.split_once('\n').unwrap();
    assert_eq!(text, "", "{out}");
    assert_eq!(fds.split_whitespace().count(), 4, "{out}");

    // exec into a running container: the same, and fd 5 (named, but closed in the
    // caller) is /dev/null in the process.
    let s = Bundle::new(&["sleep", "60"]);
    let files = three_four(&s);
    let sid = id("fdx");
    s.ids.borrow_mut().push(sid.clone());
    s.create(&sid);
    s.ok(&["start", &sid]);
    let script = format!("{FDS_SCRIPT}; echo; readlink /proc/self/fd/5 || echo none");
    let exec = |extra: &[&str]| {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[sid.as_str(), "sh", "-c", &script]);
        let r = run_with_fds(&s, &args, &files);
        assert_eq!(r.code, Some(0), "{}", r.dump());
        r.stdout
    };
    let out = exec(&["--preserve-fds", "3"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"threefour"), "{out}");
    assert_eq!(
        lines.get(1).map(|l| l.split_whitespace().count()),
        Some(7),
        "{out}"
    );
    assert_eq!(lines.get(2), Some(&"/dev/null"), "{out}");
    // The control: without the option, nothing of the caller's.
    let out = exec(&[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&""), "{out}");
    assert_eq!(
        lines.get(1).map(|l| l.split_whitespace().count()),
        Some(4),
        "{out}"
    );
    assert_eq!(lines.get(2), Some(&"none"), "{out}");
    s.ok(&["delete", "--force", &sid]);
}

/// createContainer and startContainer hooks run in the container (their path and
/// what they write resolve in its root), with the state on stdin: createContainer
/// during `create`, startContainer during `start` before the command; a failing
/// startContainer hook fails `start` and stops the container.
#[test]
fn container_hooks_run_inside_before_the_command() {
    let b = Bundle::new(&["sh", "-c", "test -s /started.json && echo command-saw-hook"]);
    let hook =
        |file: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > /{file}")]});
    b.edit(|c| {
        c["hooks"] = json!({
            "createContainer": [hook("created.json")],
            "startContainer": [hook("started.json")],
        })
    });
    let rootfs = b.bundle().join("rootfs");
    let id = id("inhooks");
    b.create(&id);
    let created: Value =
        serde_json::from_slice(&std::fs::read(rootfs.join("created.json")).unwrap()).unwrap();
    assert_eq!(created["id"], id.as_str());
    assert_eq!(created["status"], "created");
    assert!(!rootfs.join("started.json").exists());
    b.ok(&["start", &id]);
    let started: Value =
        serde_json::from_slice(&std::fs::read(rootfs.join("started.json")).unwrap()).unwrap();
    assert_eq!(started["id"], id.as_str());
    b.wait_status(&id, "stopped");
    assert!(
        b.output(&id).contains("command-saw-hook"),
        "{}",
        b.output(&id)
    );
    b.ok(&["delete", &id]);

    // A failing startContainer hook: start fails, the command never runs.
    std::fs::remove_file(rootfs.join("started.json")).unwrap();
    b.edit(|c| c["hooks"] = json!({"startContainer": [{"path": "/bin/false", "args": ["false"]}]}));
    let failing = self::id("inhooks-fail");
    b.create(&failing);
    let r = b.oci(&["start", &failing]);
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(r.stderr.contains("startContainer"), "{}", r.dump());
    b.wait_status(&failing, "stopped");
    assert!(
        !b.output(&failing).contains("command-saw-hook"),
        "{}",
        b.output(&failing)
    );
}
