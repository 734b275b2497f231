//! Containment: attacks from inside a container that must fail, each next to a
//! control that shows the same attack working when the protection is explicitly off
//! (the flag named) or on the host, so that no test passes because the attack itself
//! is broken.
//!
//! The contract (README "Running containers"): Docker's default seccomp profile,
//! podman's default capabilities (no NET_RAW, MKNOD, AUDIT_WRITE), a nested cgroup
//! PARENT/ID/ctr in every hierarchy with the cgroup namespace rooted at ctr, a fresh
//! session keyring, reset oom_score_adj and rlimits, bounded tmpfses, stdio that does
//! not hand host files or terminals to the container, a ROOT locker never chmods, and
//! a named container's /etc files never opened on the host.
//!
//! The attacks use the static probe (tests/probe/probe.c), bound in at /probe. A
//! failing test says which hole is open ("HOLE") or which control did not work
//! ("CONTROL"); a control of a flag that does not exist yet fails with locker's
//! unknown-flag error.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{probe_bin, run_bounded, wait_child, wait_line, Run};
use crate::run::Ctx;
use crate::stdio::Pty;

const UNCONFINED: &[&str] = &["--security-opt", "seccomp=unconfined"];
const PRIVILEGED: &[&str] = &["--privileged"];

/// podman's default capability set (CHOWN DAC_OVERRIDE FOWNER FSETID KILL
/// NET_BIND_SERVICE SETFCAP SETGID SETPCAP SETUID SYS_CHROOT).
const DEFAULT_CAPS: u64 = 0x0000_0000_8004_05fb;
const CAP_CHOWN: u64 = 1 << 0;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_MKNOD: u64 = 1 << 27;
const CAP_AUDIT_WRITE: u64 = 1 << 29;

fn probe_vol() -> String {
    format!("{}:/probe:ro", probe_bin().display())
}

/// `opts` plus the probe's volume.
fn with_probe<'a>(vol: &'a str, opts: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["-v", vol];
    v.extend_from_slice(opts);
    v
}

/// The probe's one-line answer from inside a container, or, when locker itself failed
/// (an unknown flag, a setup error), that failure in angle brackets.
fn probe(c: &Ctx, opts: &[&str], args: &[&str]) -> String {
    let vol = probe_vol();
    let mut cmd = vec!["/probe"];
    cmd.extend_from_slice(args);
    let r = c.run(&with_probe(&vol, opts), &cmd);
    answer(&r)
}

fn answer(r: &Run) -> String {
    match r.code {
        Some(0) | Some(1) => r.stdout.trim().to_string(),
        code => {
            // clap's usage errors end with a hint line; the error is the `error:` one.
            let line = r
                .stderr
                .lines()
                .find(|l| l.starts_with("error:"))
                .or_else(|| r.stderr.lines().rfind(|l| !l.trim().is_empty()))
                .unwrap_or("");
            format!("<locker exit {code:?}: {}>", line.trim())
        }
    }
}

/// The probe run on the host, as a child of this test.
fn host_probe(args: &[&str]) -> String {
    let mut cmd = Command::new(probe_bin());
    cmd.args(args).stdin(Stdio::null());
    answer(&run_bounded(cmd, Duration::from_secs(60)))
}

/// What a probe must answer.
#[derive(Clone, Copy)]
enum Want {
    Is(&'static str),
    Not(&'static str),
    StartsWith(&'static str),
}

impl Want {
    fn accepts(self, got: &str) -> bool {
        match self {
            Want::Is(w) => got == w,
            Want::Not(w) => got != w && !got.starts_with('<'),
            Want::StartsWith(w) => got.starts_with(w),
        }
    }
    fn show(self) -> String {
        match self {
            Want::Is(w) => format!("`{w}`"),
            Want::Not(w) => format!("anything but `{w}` (the call reached the kernel)"),
            Want::StartsWith(w) => format!("`{w}...`"),
        }
    }
}

/// Collects the open holes and failed controls of one test, then fails listing all of
/// them at once.
struct Verdict {
    protection: &'static str,
    holes: Vec<String>,
    controls: Vec<String>,
}

impl Verdict {
    fn new(protection: &'static str) -> Verdict {
        Verdict {
            protection,
            holes: Vec::new(),
            controls: Vec::new(),
        }
    }

    /// An attack from inside a container: `probe ARGS` with `opts` must answer `want`.
    fn attack(&mut self, c: &Ctx, opts: &[&str], args: &[&str], want: Want) {
        let got = probe(c, opts, args);
        self.hole(
            want.accepts(&got),
            format!(
                "run {opts:?} /probe {}: got `{got}`, want {}",
                args.join(" "),
                want.show()
            ),
        );
    }

    /// The same attack with the protection off: it must work.
    fn control(&mut self, c: &Ctx, opts: &[&str], args: &[&str], want: Want) {
        let got = probe(c, opts, args);
        self.control_ok(
            want.accepts(&got),
            format!(
                "run {opts:?} /probe {}: got `{got}`, want {}",
                args.join(" "),
                want.show()
            ),
        );
    }

    fn host_control(&mut self, args: &[&str], want: Want) {
        let got = host_probe(args);
        self.control_ok(
            want.accepts(&got),
            format!(
                "host probe {}: got `{got}`, want {}",
                args.join(" "),
                want.show()
            ),
        );
    }

    fn hole(&mut self, fine: bool, what: impl Into<String>) {
        if !fine {
            self.holes.push(what.into());
        }
    }

    fn control_ok(&mut self, fine: bool, what: impl Into<String>) {
        if !fine {
            self.controls.push(what.into());
        }
    }

    fn finish(self) {
        if self.holes.is_empty() && self.controls.is_empty() {
            return;
        }
        let mut msg = format!("protection: {}\n", self.protection);
        for h in &self.holes {
            msg += &format!("  HOLE (the attack worked or was not refused as specified): {h}\n");
        }
        for c in &self.controls {
            msg +=
                &format!("  CONTROL FAILED (with the protection off the attack must work): {c}\n");
        }
        panic!("{msg}");
    }
}

/// At most 2000 characters of `s`.
fn clip(s: &str) -> String {
    s.chars().take(2000).collect()
}

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

fn status_hex(status: &str, key: &str) -> Option<u64> {
    status_field(status, key).and_then(|v| u64::from_str_radix(&v, 16).ok())
}

/// The container's /proc/self/status, or locker's failure.
fn ctr_status(c: &Ctx, opts: &[&str]) -> Result<String, String> {
    let r = c.run(opts, &["cat", "/proc/self/status"]);
    if r.code == Some(0) {
        Ok(r.stdout)
    } else {
        Err(answer(&r))
    }
}

fn host_bounding_set() -> u64 {
    status_hex(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "CapBnd",
    )
    .unwrap()
}

/// A container running `sh -c 'echo ready; sleep 60'`; stopped (SIGTERM to our
/// `locker run` child, then SIGKILL) when dropped, also when the test fails.
struct Running {
    child: Child,
}

impl Running {
    fn start(c: &Ctx, opts: &[&str]) -> Running {
        let mut child = c.spawn(opts, &["sh", "-c", "echo ready; exec sleep 60"]);
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let rx = wait_line(out, "ready");
        let mut r = Running { child };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = r.child.kill();
            let _ = r.child.wait();
            let mut e = String::new();
            let _ = err.read_to_string(&mut e);
            panic!("container {opts:?} did not start: {e}");
        }
        r
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host pids of a running container's PID 1 and of its command (PID 1's child).
fn container_pids(c: &Ctx) -> (i32, i32) {
    let pid1 = c.l.container_pid1();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kids = std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children"))
            .unwrap_or_default();
        if let Some(k) = kids.split_whitespace().next() {
            return (pid1, k.parse().unwrap());
        }
        assert!(Instant::now() < deadline, "PID 1 {pid1} has no child");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state_id(c: &Ctx) -> String {
    let dir = c.l.root().join("run");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            return v["id"].as_str().unwrap().to_string();
        }
    }
    panic!("no state file in {}", dir.display());
}

// ---------------------------------------------------------------- seccomp

/// Attack: none by itself; this is the switch the seccomp tests rely on.
/// Protection: a seccomp filter (Docker's default profile) is installed in every
/// default container: /proc/self/status says `Seccomp: 2`.
/// Control: `--security-opt seccomp=unconfined` and `--privileged` say `Seccomp: 0`.
#[test]
fn seccomp_filter_is_on_by_default() {
    let c = Ctx::new();
    let mut v = Verdict::new("seccomp: Docker's default profile on by default");
    match ctr_status(&c, &[]) {
        Ok(st) => v.hole(
            status_field(&st, "Seccomp").as_deref() == Some("2"),
            format!(
                "default container has Seccomp: {:?}",
                status_field(&st, "Seccomp")
            ),
        ),
        Err(e) => v.hole(false, format!("default container failed: {e}")),
    }
    for opts in [UNCONFINED, PRIVILEGED] {
        match ctr_status(&c, opts) {
            Ok(st) => v.control_ok(
                status_field(&st, "Seccomp").as_deref() == Some("0"),
                format!("{opts:?} has Seccomp: {:?}", status_field(&st, "Seccomp")),
            ),
            Err(e) => v.control_ok(false, format!("{opts:?}: {e}")),
        }
    }
    v.finish();
}

/// Attack: create namespaces from inside (a user namespace alone needs no
/// capability, and gives every capability over new mount, network... namespaces):
/// unshare(CLONE_NEWUSER[|CLONE_NEWNS|CLONE_NEWNET]) and clone(CLONE_NEWUSER).
/// Protection: the seccomp profile refuses unshare, and clone with namespace flags,
/// with EPERM (a plain fork by clone still works).
/// Control: with `--security-opt seccomp=unconfined` each call succeeds, as on the host.
#[test]
fn seccomp_refuses_namespace_creation() {
    let c = Ctx::new();
    let mut v = Verdict::new("seccomp: unshare/clone with namespace flags refused (EPERM)");
    let cases: &[&[&str]] = &[
        &["unshare", "user"],
        &["unshare", "user,mnt"],
        &["unshare", "user,net"],
        &["clone", "user"],
        &["clone", "user,mnt,pid"],
    ];
    for args in cases {
        v.attack(&c, &[], args, Want::Is("errno=1"));
        v.control(&c, UNCONFINED, args, Want::Is("ok"));
        v.host_control(args, Want::Is("ok"));
    }
    // Not a blanket refusal: fork by clone without namespace flags works.
    v.control(&c, &[], &["clone", "none"], Want::Is("ok"));
    v.finish();
}

/// Attack: clone3, whose flags live in memory a seccomp filter cannot inspect, so a
/// filter that allowed it could not refuse CLONE_NEWUSER through it.
/// Protection: clone3 fails with ENOSYS (libcs then fall back to clone).
/// Control: with `--security-opt seccomp=unconfined` clone3 works.
#[test]
fn seccomp_makes_clone3_enosys() {
    let c = Ctx::new();
    let mut v = Verdict::new("seccomp: clone3 refused with ENOSYS");
    v.attack(&c, &[], &["clone3"], Want::Is("errno=38"));
    v.attack(&c, &[], &["clone3", "user"], Want::Is("errno=38"));
    v.control(&c, UNCONFINED, &["clone3"], Want::Is("ok"));
    v.control(&c, UNCONFINED, &["clone3", "user"], Want::Is("ok"));
    v.finish();
}

/// Attack: mount(2). Without CAP_SYS_ADMIN the kernel refuses it anyway, but only
/// after looking the target up: a missing target answers ENOENT unfiltered, so EPERM
/// shows the filter refused the call before the kernel saw it.
/// Protection: the profile refuses mount (EPERM).
/// Control: with `--security-opt seccomp=unconfined`, ENOENT (the call reached the
/// kernel), as on the host.
#[test]
fn seccomp_refuses_mount() {
    let c = Ctx::new();
    let mut v = Verdict::new("seccomp: mount refused (EPERM)");
    v.attack(&c, &[], &["mount-enoent"], Want::Is("errno=1"));
    v.control(&c, UNCONFINED, &["mount-enoent"], Want::Is("errno=2"));
    v.host_control(&["mount-enoent"], Want::Is("errno=2"));
    v.finish();
}

/// Attack: the kernel keyring syscalls (keys are not namespaced: a container that can
/// call them reaches the user's keys and quota).
/// Protection: keyctl, add_key and request_key are refused (EPERM).
/// Control: with `--security-opt seccomp=unconfined`, keyctl and add_key work and
/// request_key answers ENOKEY.
#[test]
fn seccomp_refuses_keyring_syscalls() {
    let c = Ctx::new();
    let mut v = Verdict::new("seccomp: keyctl/add_key/request_key refused (EPERM)");
    for args in [&["keyctl-session"][..], &["add-key"], &["request-key"]] {
        v.attack(&c, &[], args, Want::Is("errno=1"));
    }
    v.control(&c, UNCONFINED, &["keyctl-session"], Want::StartsWith("ok"));
    v.control(&c, UNCONFINED, &["add-key"], Want::Is("ok"));
    v.control(&c, UNCONFINED, &["request-key"], Want::Is("errno=126"));
    v.finish();
}

/// Attack: the kernel's big attack surfaces reachable without capabilities: bpf,
/// perf_event_open, userfaultfd (user-mode faults), io_uring_setup,
/// open_by_handle_at; and a uevent socket (the host's device events). Each probe is one the kernel answers without EPERM unfiltered
/// (bpf: unknown command, EINVAL; open_by_handle_at: bad mount fd, EBADF).
/// Protection: the profile refuses each with EPERM.
/// Control: with `--security-opt seccomp=unconfined` each reaches the kernel.
#[test]
fn seccomp_refuses_kernel_attack_surface() {
    let c = Ctx::new();
    let mut v = Verdict::new(
        "seccomp: bpf, perf_event_open, userfaultfd, io_uring_setup, open_by_handle_at, uevent sockets refused (EPERM)",
    );
    let cases: &[(&[&str], &str)] = &[
        (&["bpf"], "errno=22"),
        (&["perf"], "ok"),
        (&["userfaultfd"], "ok"),
        (&["io-uring"], "ok"),
        (&["open-by-handle"], "errno=9"),
        (&["uevent"], "ok"),
    ];
    for (args, unconfined) in cases {
        v.attack(&c, &[], args, Want::Is("errno=1"));
        v.control(&c, UNCONFINED, args, Want::Is(unconfined));
        v.host_control(args, Want::Is(unconfined));
    }
    v.finish();
}

/// Attack: kexec_load and init_module (harmless arguments: no segments with an
/// undefined flag, an empty module). Without CAP_SYS_BOOT / CAP_SYS_MODULE the kernel
/// itself says EPERM, so the attack also checks the filter is installed at all
/// (`Seccomp: 2`); on a kernel built without kexec or modules the unfiltered answer is
/// ENOSYS.
/// Protection: the profile refuses both (EPERM).
/// Control: `--privileged` (all capabilities, no filter): the calls reach the kernel
/// (EINVAL/ENOEXEC, or ENOSYS), not EPERM.
#[test]
fn seccomp_refuses_kexec_and_init_module() {
    let c = Ctx::new();
    let mut v = Verdict::new("seccomp: kexec_load and init_module refused (EPERM)");
    match ctr_status(&c, &[]) {
        Ok(st) => v.hole(
            status_field(&st, "Seccomp").as_deref() == Some("2"),
            format!("no seccomp filter in a default container (Seccomp: {:?}): EPERM below is only the capability check", status_field(&st, "Seccomp")),
        ),
        Err(e) => v.hole(false, e),
    }
    for args in [&["kexec"][..], &["init-module"]] {
        v.attack(&c, &[], args, Want::Is("errno=1"));
        v.control(&c, PRIVILEGED, args, Want::Not("errno=1"));
    }
    v.finish();
}

/// Attack: personality(ADDR_NO_RANDOMIZE) and personality(READ_IMPLIES_EXEC), which
/// switch off ASLR or NX for what the process execs next.
/// Protection: the profile allows only Docker's safe personas (0, 0x8, 0x20000,
/// 0x20008, and the query 0xffffffff); others get EPERM.
/// Control: the safe values work in a default container; with `--security-opt
/// seccomp=unconfined` the unsafe ones work.
#[test]
fn seccomp_refuses_unsafe_personality() {
    let c = Ctx::new();
    let mut v = Verdict::new("seccomp: personality with unsafe values refused (EPERM)");
    for val in ["0x0040000", "0x0400000"] {
        v.attack(&c, &[], &["personality", val], Want::Is("errno=1"));
        v.control(&c, UNCONFINED, &["personality", val], Want::Is("ok"));
    }
    for safe in ["0x0", "0xffffffff"] {
        v.control(&c, &[], &["personality", safe], Want::Is("ok"));
    }
    v.finish();
}

/// Attack: none; `--security-opt seccomp=FILE.json` (Docker's profile format) must
/// replace the default profile, not stack on it.
/// Protection: a profile that allows everything but mkdir/mkdirat (EACCES) gives
/// exactly that: mkdir fails with "Permission denied", unshare(CLONE_NEWUSER), which
/// the default profile refuses, works. A malformed profile is a one-line error (125).
/// Control: without the option, mkdir works.
#[test]
fn seccomp_profile_file_replaces_the_default() {
    let c = Ctx::new();
    let mut v = Verdict::new("seccomp: --security-opt seccomp=FILE.json replaces the profile");
    let prof = c.l.path("profile.json");
    std::fs::write(
        &prof,
        r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 }
  ]
}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", prof.display());
    let vol = probe_vol();
    let r = c.run(
        &with_probe(&vol, &["--security-opt", &opt]),
        &["sh", "-c", "mkdir /tmp/d 2>&1; /probe unshare user"],
    );
    v.hole(
        r.code == Some(0)
            && r.stdout.contains("Permission denied")
            && r.stdout.trim_end().ends_with("ok"),
        format!(
            "with the profile: mkdir must say Permission denied and unshare must work: {} {:?}",
            answer(&r),
            r.stdout
        ),
    );
    let bad = c.l.path("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let bad_opt = format!("seccomp={}", bad.display());
    let r = c.run(&["--security-opt", &bad_opt], &["true"]);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    v.hole(
        r.code == Some(125)
            && lines.len() == 1
            && lines[0].starts_with("locker: ")
            && lines[0].contains("bad.json"),
        format!(
            "a malformed profile must be one error line naming it, exit 125: {:?} {:?}",
            r.code,
            r.stderr.trim()
        ),
    );
    let r = c.run(&[], &["sh", "-c", "mkdir /tmp/d && echo made"]);
    v.control_ok(
        r.stdout.trim() == "made",
        format!("mkdir without a profile\n{}", r.dump()),
    );
    v.finish();
}

/// Attack: `locker exec` into a running default container, then create a user
/// namespace and look at the capabilities.
/// Protection: an exec'd process is a container process: the same seccomp filter and
/// capabilities as the container's command.
/// Control: the same probe on the host creates the namespace.
#[test]
fn exec_gets_the_same_seccomp_and_capabilities() {
    let c = Ctx::new();
    let mut v = Verdict::new("seccomp and capabilities also for `locker exec`");
    let vol = probe_vol();
    let _svc = Running::start(&c, &with_probe(&vol, &["--name", "ex"]));
    let r = c.l.run(&["exec", "ex", "/probe", "unshare", "user"]);
    v.hole(
        answer(&r) == "errno=1",
        format!("exec /probe unshare user: {}", answer(&r)),
    );
    let r = c.l.run(&["exec", "ex", "cat", "/proc/self/status"]);
    v.hole(
        status_field(&r.stdout, "Seccomp").as_deref() == Some("2"),
        format!("exec: Seccomp {:?}", status_field(&r.stdout, "Seccomp")),
    );
    v.hole(
        status_hex(&r.stdout, "CapEff") == Some(DEFAULT_CAPS),
        format!(
            "exec: CapEff {:?}, want {DEFAULT_CAPS:016x}",
            status_field(&r.stdout, "CapEff")
        ),
    );
    v.host_control(&["unshare", "user"], Want::Is("ok"));
    drop(_svc);
    let _ = c.l.run(&["rm", "ex"]);
    v.finish();
}

// ---------------------------------------------------------------- capabilities

/// Attack: any use of CAP_NET_RAW (raw packets, ARP/ICMP spoofing on the host's
/// network), CAP_MKNOD, CAP_AUDIT_WRITE.
/// Protection: podman's default set: CapEff = CapPrm = CapBnd = 0x800405fb,
/// CapInh = CapAmb = 0.
/// Control: `--cap-add NET_RAW --cap-add MKNOD --cap-add AUDIT_WRITE` gives today's
/// Docker set back (0xa80425fb).
#[test]
fn default_capabilities_are_podmans_set() {
    let c = Ctx::new();
    let mut v = Verdict::new("capabilities: podman's default set (CapEff 0x800405fb)");
    match ctr_status(&c, &[]) {
        Ok(st) => {
            for key in ["CapEff", "CapPrm", "CapBnd"] {
                let got = status_hex(&st, key);
                v.hole(
                    got == Some(DEFAULT_CAPS),
                    format!(
                        "{key} {:?}, want {DEFAULT_CAPS:016x}{}",
                        status_field(&st, key),
                        got.map(|g| extra_caps(g & !DEFAULT_CAPS))
                            .unwrap_or_default()
                    ),
                );
            }
            for key in ["CapInh", "CapAmb"] {
                v.hole(
                    status_hex(&st, key) == Some(0),
                    format!("{key} {:?}", status_field(&st, key)),
                );
            }
        }
        Err(e) => v.hole(false, e),
    }
    let add = [
        "--cap-add",
        "NET_RAW",
        "--cap-add",
        "MKNOD",
        "--cap-add",
        "AUDIT_WRITE",
    ];
    match ctr_status(&c, &add) {
        Ok(st) => v.control_ok(
            status_hex(&st, "CapEff")
                == Some(DEFAULT_CAPS | CAP_NET_RAW | CAP_MKNOD | CAP_AUDIT_WRITE),
            format!(
                "{add:?}: CapEff {:?}, want 00000000a80425fb",
                status_field(&st, "CapEff")
            ),
        ),
        Err(e) => v.control_ok(false, format!("{add:?}: {e}")),
    }
    v.finish();
}

fn extra_caps(bits: u64) -> String {
    let names = [
        (CAP_NET_RAW, "NET_RAW"),
        (CAP_MKNOD, "MKNOD"),
        (CAP_AUDIT_WRITE, "AUDIT_WRITE"),
    ];
    let mut v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if bits & !(CAP_NET_RAW | CAP_MKNOD | CAP_AUDIT_WRITE) != 0 {
        v.push("others");
    }
    if v.is_empty() {
        String::new()
    } else {
        format!(" (extra: {})", v.join(", "))
    }
}

/// Attack: none; the flags that change the set, Docker's spelling.
/// Protection: `--cap-add NAME` / `--cap-drop NAME` with or without `CAP_`, `ALL`
/// accepted; an unknown name is a one-line error (125).
/// Control: the default set without flags (see `default_capabilities_are_podmans_set`).
#[test]
fn cap_add_and_cap_drop() {
    let c = Ctx::new();
    let mut v = Verdict::new("capabilities: --cap-add / --cap-drop");
    let bnd = host_bounding_set();
    let cases: &[(&[&str], u64)] = &[
        (&["--cap-add", "NET_RAW"], DEFAULT_CAPS | CAP_NET_RAW),
        (&["--cap-add", "CAP_NET_RAW"], DEFAULT_CAPS | CAP_NET_RAW),
        (&["--cap-drop", "CHOWN"], DEFAULT_CAPS & !CAP_CHOWN),
        (&["--cap-drop", "CAP_CHOWN"], DEFAULT_CAPS & !CAP_CHOWN),
        (&["--cap-drop", "ALL"], 0),
        (&["--cap-drop", "ALL", "--cap-add", "CHOWN"], CAP_CHOWN),
        (&["--cap-add", "ALL"], bnd),
    ];
    for (opts, want) in cases {
        match ctr_status(&c, opts) {
            Ok(st) => v.hole(
                status_hex(&st, "CapEff") == Some(*want),
                format!(
                    "{opts:?}: CapEff {:?}, want {want:016x}",
                    status_field(&st, "CapEff")
                ),
            ),
            Err(e) => v.hole(false, format!("{opts:?}: {e}")),
        }
    }
    let r = c.run(&["--cap-add", "NOPE"], &["true"]);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    v.hole(
        r.code == Some(125)
            && lines.len() == 1
            && lines[0].starts_with("locker: ")
            && lines[0].contains("NOPE"),
        format!(
            "--cap-add NOPE must be one error line naming NOPE: {:?} {:?}",
            r.code,
            r.stderr.trim()
        ),
    );
    v.finish();
}

/// Attack: read what the host's kernel tells its root in /proc and /sys: the physical
/// page map (kpageflags, kpagecount, kpagecgroup), the slab and vmalloc layout, the
/// crash dump's physical kernel address (vmcoreinfo), every user's key counts.
/// Protection: those files are masked: they read as empty.
/// Control: `--privileged` (no masks) reads data from each that this kernel has.
#[test]
fn kernel_layout_files_are_masked() {
    let c = Ctx::new();
    let mut v = Verdict::new("/proc and /sys files with the host kernel's layout are masked");
    let files = [
        "/proc/kpageflags",
        "/proc/kpagecount",
        "/proc/kpagecgroup",
        "/proc/slabinfo",
        "/proc/vmallocinfo",
        "/proc/key-users",
        "/sys/kernel/vmcoreinfo",
        "/sys/kernel/slab/kmalloc-64/objects",
    ];
    // Each file that exists: its path and how many of its first 4096 bytes read.
    let script = format!(
        "for f in {}; do [ -e $f ] && echo $f $(head -c 4096 $f 2>/dev/null | wc -c); done; true",
        files.join(" ")
    );
    let sizes = |r: &Run| -> Vec<(String, usize)> {
        r.stdout
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(f, n)| (f.to_string(), n.trim().parse().unwrap_or(usize::MAX)))
            .collect()
    };
    let open = c.run(PRIVILEGED, &["sh", "-c", &script]);
    let readable: Vec<String> = sizes(&open)
        .into_iter()
        .filter(|(_, n)| *n > 0 && *n != usize::MAX)
        .map(|(f, _)| f)
        .collect();
    v.control_ok(
        open.code == Some(0) && readable.len() >= 3,
        format!(
            "--privileged reads at least 3 of {files:?}: read {readable:?} ({})",
            answer(&open)
        ),
    );
    let r = c.run(&[], &["sh", "-c", &script]);
    let leaked: Vec<(String, usize)> = sizes(&r).into_iter().filter(|(_, n)| *n != 0).collect();
    v.hole(
        // (A masked directory's files are not there at all.)
        r.code == Some(0) && leaked.is_empty() && sizes(&r).len() + 1 >= readable.len(),
        format!(
            "a default container reads {leaked:?} (of {:?}; {})",
            sizes(&r),
            answer(&r)
        ),
    );
    v.finish();
}

/// Attack: none; `--privileged` is the explicit way to switch the protections off.
/// Protection (of the contract): `--privileged` gives every capability locker has
/// (its bounding set), no seccomp filter and no masked paths (/proc/kcore,
/// /sys/firmware are not mounted over).
/// Control: a default container has the masks (and fewer capabilities).
#[test]
fn privileged_turns_protections_off() {
    let c = Ctx::new();
    let mut v = Verdict::new("--privileged: all capabilities, no seccomp, no masked paths");
    let bnd = host_bounding_set();
    let masked = |mountinfo: &str| -> Vec<String> {
        mountinfo
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| *m == "/proc/kcore" || *m == "/sys/firmware" || *m == "/proc/timer_list")
            .map(String::from)
            .collect()
    };
    match ctr_status(&c, PRIVILEGED) {
        Ok(st) => {
            v.hole(
                status_hex(&st, "CapEff") == Some(bnd),
                format!(
                    "--privileged CapEff {:?}, want {bnd:016x}",
                    status_field(&st, "CapEff")
                ),
            );
            v.hole(
                status_field(&st, "Seccomp").as_deref() == Some("0"),
                format!("--privileged Seccomp {:?}", status_field(&st, "Seccomp")),
            );
        }
        Err(e) => v.hole(false, format!("--privileged: {e}")),
    }
    let r = c.run(PRIVILEGED, &["cat", "/proc/self/mountinfo"]);
    v.hole(
        r.code == Some(0) && masked(&r.stdout).is_empty(),
        format!(
            "--privileged still masks {:?} ({})",
            masked(&r.stdout),
            answer(&r)
        ),
    );
    let r = c.run(&[], &["cat", "/proc/self/mountinfo"]);
    v.control_ok(
        !masked(&r.stdout).is_empty(),
        format!(
            "a default container masks some of /proc/kcore, /proc/timer_list, /sys/firmware: {:?}",
            masked(&r.stdout)
        ),
    );
    v.finish();
}

/// Attack: with `--net host` (the default), open a raw IP socket or a packet socket:
/// spoof or sniff the host's traffic.
/// Protection: no CAP_NET_RAW: EPERM.
/// Control: `--cap-add NET_RAW` makes both work.
#[test]
fn no_raw_sockets_on_the_host_network() {
    let c = Ctx::new();
    let mut v = Verdict::new("capabilities: no NET_RAW (raw and packet sockets refused)");
    for args in [&["raw-socket"][..], &["packet-socket"]] {
        v.attack(&c, &[], args, Want::Is("errno=1"));
        v.attack(&c, &["--net", "host"], args, Want::Is("errno=1"));
        v.control(&c, &["--cap-add", "NET_RAW"], args, Want::Is("ok"));
    }
    v.finish();
}

/// Attack: mknod a character device (1:3) in the container's own tree and open it.
/// Protection: no CAP_MKNOD: mknod fails with EPERM.
/// Control: `--cap-add MKNOD` lets mknod succeed, and the node is still inert: open
/// fails (nodev mounts, device cgroup), on the root and on a `--tmpfs`.
#[test]
fn no_mknod_by_default() {
    let c = Ctx::new();
    let mut v = Verdict::new("capabilities: no MKNOD; device nodes inert even with it");
    v.attack(&c, &[], &["mknod", "/tmp/null"], Want::Is("errno=1"));
    let vol = probe_vol();
    let r = c.run(
        &with_probe(&vol, &["--cap-add", "MKNOD", "--tmpfs", "/scratch"]),
        &["sh", "-c", "/probe mknod /tmp/null; /probe open /tmp/null; /probe mknod /scratch/null; /probe open /scratch/null; true"],
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    if r.code != Some(0) || lines.len() != 4 {
        v.control_ok(false, format!("--cap-add MKNOD: {}", answer(&r)));
    } else {
        v.control_ok(
            lines[0] == "ok" && lines[2] == "ok",
            format!("--cap-add MKNOD: mknod must succeed: {lines:?}"),
        );
        v.hole(
            lines[1].starts_with("errno=") && lines[3].starts_with("errno="),
            format!("--cap-add MKNOD: the node must not open (root, --tmpfs): {lines:?}"),
        );
    }
    v.finish();
}

// ---------------------------------------------------------------- cgroups

/// A mounted cgroup hierarchy of the host.
struct Hierarchy {
    /// "cgroup" (v1) or "cgroup2".
    fstype: &'static str,
    /// `mount -o` for it ("-": none).
    opts: String,
    /// Where the host mounts it.
    host: PathBuf,
    /// The controllers field of /proc/PID/cgroup for it ("" for v2).
    key: String,
}

fn hierarchies() -> Vec<Hierarchy> {
    let subsys: Vec<String> = std::fs::read_to_string("/proc/cgroups")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    let mut v = Vec::new();
    for line in std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        match f[2] {
            "cgroup2" => v.push(Hierarchy {
                fstype: "cgroup2",
                opts: "-".into(),
                host: f[1].into(),
                key: String::new(),
            }),
            "cgroup" => {
                let mine: Vec<&str> = f[3]
                    .split(',')
                    .filter(|o| o.starts_with("name=") || subsys.iter().any(|s| s == o))
                    .collect();
                let named_only = mine.iter().all(|o| o.starts_with("name="));
                v.push(Hierarchy {
                    fstype: "cgroup",
                    opts: if named_only {
                        format!("none,{}", mine.join(","))
                    } else {
                        mine.join(",")
                    },
                    host: f[1].into(),
                    key: mine.join(","),
                })
            }
            _ => {}
        }
    }
    v
}

/// This test process's cgroup in the hierarchy with /proc/self/cgroup key `key`.
fn own_cgroup(key: &str) -> Option<String> {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, k, path) = (p.next()?, p.next()?, p.next()?);
            (k == key).then(|| path.to_string())
        })
}

/// Attack: none by itself; where the container's processes live, seen from the host.
/// Protection: in EVERY mounted hierarchy (each v1 one, and the cgroup2), the
/// container's PID 1 and command are in PARENT/ID/ctr (limits on PARENT/ID), one ID
/// for all.
/// Control: the test's own process is not in PARENT (it is where the test runner put it).
#[test]
fn container_cgroup_in_every_hierarchy_nested() {
    let c = Ctx::new();
    let mut v = Verdict::new(
        "cgroups: the container's own cgroup in every hierarchy, below PARENT/ID where limits are",
    );
    // Which hierarchies carry limits: devices (the allow-list) and pids always, memory
    // and cpu when asked. There the payload is one level below the limits (…/ctr);
    // elsewhere nothing is written and it runs in PARENT/ID itself.
    for (opts, limited) in [
        (&[][..], &["devices", "pids"][..]),
        (
            &["--memory", "64m", "--cpus", "1"][..],
            &["devices", "pids", "memory", "cpu"][..],
        ),
    ] {
        let _svc = Running::start(&c, opts);
        let id = state_id(&c);
        let (pid1, cmd) = container_pids(&c);
        for pid in [pid1, cmd] {
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            for line in cg.lines() {
                let ctrls = line.split(':').nth(1).unwrap_or("");
                let nested = ctrls.split(',').any(|k| limited.contains(&k));
                let want = if nested {
                    format!("/{}/{id}/ctr", c.parent)
                } else {
                    format!("/{}/{id}", c.parent)
                };
                v.hole(
                    line.ends_with(&format!(":{want}")),
                    format!("{opts:?}: pid {pid}: `{line}`, want `...:{want}`"),
                );
            }
        }
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    v.control_ok(
        !own.contains(&c.parent),
        format!("the test itself is in {own}"),
    );
    v.finish();
}

/// Sibling cgroups the test makes at the top of each hierarchy (next to PARENT), so
/// that a container seeing the host's tree sees them; removed (rmdir) on drop.
struct Markers(Vec<PathBuf>);

impl Markers {
    fn make(c: &Ctx) -> Markers {
        let mut v = Vec::new();
        for h in hierarchies() {
            // cpuset: a new cgroup there has no CPUs; no process goes into it, but
            // leave that controller alone anyway.
            if h.key.split(',').any(|k| k == "cpuset") {
                continue;
            }
            let m = h.host.join(format!("{}-sibling", c.parent));
            if std::fs::create_dir(&m).is_ok() {
                v.push(m);
            }
        }
        Markers(v)
    }
}

impl Drop for Markers {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = std::fs::remove_dir(m);
        }
    }
}

/// The script run after the probe mounted the hierarchy at DIR: the shell's pid,
/// the cgroups below the mount's root, the root's processes, every process listed.
fn cgroup_view_script(dir: &str) -> String {
    format!(
        "echo self=$$; cd {dir} || exit 3; find . -mindepth 1 -type d | sed 's/^/dir /'; \
         sed 's/^/root /' cgroup.procs; find . -name cgroup.procs -exec cat {{}} + | sed 's/^/pid /'"
    )
}

/// Attack: from a container with the filter off (`--security-opt seccomp=unconfined`),
/// become root of a new user namespace with new mount and cgroup namespaces (as
/// `unshare -U -r -m -C` does), mount each of the host's cgroup hierarchies (every v1
/// one and the cgroup2) and look around: other cgroups (a sibling the test made next
/// to PARENT), host processes (cgroup2 lists those outside the PID namespace as 0),
/// limits to rewrite.
/// Protection: the cgroup namespace is rooted at PARENT/ID/ctr in every hierarchy:
/// each mount shows one cgroup, holding the container's own processes.
/// Control: the same probe on the host mounts each hierarchy and sees the host's
/// cgroup (this test's own pid in its root) and the sibling.
#[test]
fn cgroup_mounts_from_inside_show_only_the_container() {
    let c = Ctx::new();
    let markers = Markers::make(&c);
    let mut v = Verdict::new("cgroups: namespace rooted at PARENT/ID/ctr in every hierarchy");
    let vol = probe_vol();
    let host_dir = c.l.path("cgmnt");
    let host_dir = host_dir.to_str().unwrap();
    let me = std::process::id().to_string();
    let sibling = format!("dir ./{}-sibling", c.parent);
    for h in hierarchies() {
        let what = format!("{} {}", h.fstype, h.opts);
        // Inside.
        let script = cgroup_view_script("/tmp/cg");
        let r = c.run(
            &with_probe(&vol, UNCONFINED),
            &[
                "/probe",
                "userns-cgroup",
                h.fstype,
                &h.opts,
                "/tmp/cg",
                "sh",
                "-c",
                &script,
            ],
        );
        let out = r.stdout.clone();
        let me_inside = out
            .lines()
            .find_map(|l| l.strip_prefix("self="))
            .unwrap_or("?")
            .to_string();
        if r.code != Some(0) || !out.lines().any(|l| l == format!("root {me_inside}")) {
            v.hole(
                false,
                format!(
                    "{what}: the mount must work and its root hold the shell: {} {}",
                    answer(&r),
                    clip(&r.stdout)
                ),
            );
            continue;
        }
        let dirs: Vec<&str> = out.lines().filter(|l| l.starts_with("dir ")).collect();
        v.hole(
            dirs.is_empty(),
            format!(
                "{what}: other cgroups visible: {:?}{}",
                &dirs[..dirs.len().min(5)],
                if dirs.iter().any(|d| *d == sibling) {
                    " (incl. the sibling next to PARENT)"
                } else {
                    ""
                }
            ),
        );
        let hidden = out.lines().filter(|l| *l == "pid 0").count();
        v.hole(
            hidden == 0,
            format!("{what}: {hidden} processes outside the container listed (as pid 0)"),
        );
        // Host control, in this test's own cgroup of that hierarchy.
        let mut cmd = Command::new(probe_bin());
        cmd.args(["userns-cgroup", h.fstype, &h.opts, host_dir, "sh", "-c"])
            .arg(cgroup_view_script(host_dir));
        let r = run_bounded(cmd, Duration::from_secs(60));
        v.control_ok(
            r.code == Some(0) && r.stdout.lines().any(|l| l == format!("root {me}")),
            format!(
                "{what} on the host: the mount's root must list this test's pid {me}\n{}",
                clip(&r.dump())
            ),
        );
        if own_cgroup(&h.key).as_deref() == Some("/")
            && markers.0.iter().any(|m| m.starts_with(&h.host))
        {
            v.control_ok(
                r.stdout.lines().any(|l| l == sibling),
                format!("{what} on the host: the sibling cgroup must be visible"),
            );
        }
    }
    drop(markers);
    v.finish();
}

/// The hierarchy holding the pids controller (a v1 one, else the cgroup2).
fn pids_hierarchy() -> Hierarchy {
    let all = hierarchies();
    let v1 = all
        .iter()
        .position(|h| h.fstype == "cgroup" && h.key.split(',').any(|k| k == "pids"));
    let i = v1
        .or_else(|| all.iter().position(|h| h.fstype == "cgroup2"))
        .unwrap();
    all.into_iter().nth(i).unwrap()
}

/// A cgroup the test makes itself (for the host control); rmdir on drop.
struct OwnCgroup(PathBuf);

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.0).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn pids_lift_script(dir: &str) -> String {
    format!(
        "read m < {dir}/pids.max; echo rootmax=$m; echo max > {dir}/pids.max && echo lifted; \
         ( i=0; while [ $i -lt 40 ]; do sleep 20 & i=$((i+1)); done ) 2>/dev/null; \
         read n < {dir}/pids.current; echo current=$n"
    )
}

/// Attack: `--pids 20`, filter off; in a new user + mount + cgroup namespace mount the
/// pids hierarchy, write `max` to pids.max at the mount's root, then start 40
/// processes.
/// Protection: the mount's root is PARENT/ID/ctr, not the limited PARENT/ID, so the
/// limit cannot be reached: at most 20 processes run (pids.current <= 20), and the
/// root's pids.max is not the limit.
/// Control: on the host, a probe the test puts into a cgroup of its own with
/// pids.max 20 and the same namespaces does lift it (the kernel lets the root of a
/// cgroup namespace rewrite its own limit).
#[test]
fn pids_limit_cannot_be_lifted_from_inside() {
    let c = Ctx::new();
    let mut v = Verdict::new("cgroups: --pids 20 cannot be lifted from inside");
    let h = pids_hierarchy();
    let vol = probe_vol();
    let r = c.run(
        &with_probe(&vol, &["--pids", "20", UNCONFINED[0], UNCONFINED[1]]),
        &[
            "/probe",
            "userns-cgroup",
            h.fstype,
            &h.opts,
            "/tmp/cg",
            "sh",
            "-c",
            &pids_lift_script("/tmp/cg"),
        ],
    );
    let field = |out: &str, k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(String::from)
    };
    let current = field(&r.stdout, "current=").and_then(|n| n.parse::<u32>().ok());
    v.hole(
        current.is_some_and(|n| (5..=20).contains(&n)),
        format!(
            "pids.current {current:?} after 40 forks (limit 20): {}\n{}",
            answer(&r),
            clip(&r.stdout)
        ),
    );
    v.hole(
        field(&r.stdout, "rootmax=").as_deref() != Some("20"),
        "the mount's root is the limited cgroup (its pids.max reads 20)",
    );

    // Control on the host, in a cgroup of the test's own.
    let cg = OwnCgroup(h.host.join(format!("{}-lift", c.parent)));
    std::fs::create_dir(&cg.0).unwrap();
    std::fs::write(cg.0.join("pids.max"), "20").unwrap();
    let host_dir = c.l.path("pidsmnt");
    let procs = std::ffi::CString::new(cg.0.join("cgroup.procs").to_str().unwrap()).unwrap();
    let mut cmd = Command::new(probe_bin());
    cmd.args([
        "userns-cgroup",
        h.fstype,
        &h.opts,
        host_dir.to_str().unwrap(),
        "sh",
        "-c",
    ])
    .arg(pids_lift_script(host_dir.to_str().unwrap()));
    // SAFETY: between fork and exec only open/write/close on a C string made before.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let r = run_bounded(cmd, Duration::from_secs(60));
    let lifted = std::fs::read_to_string(cg.0.join("pids.max")).unwrap_or_default();
    v.control_ok(
        r.stdout.contains("lifted") && lifted.trim() == "max",
        format!(
            "host: the namespace root lifts its own limit (pids.max now {lifted:?})\n{}",
            r.dump()
        ),
    );
    // Let the sleeps go before the cgroup is removed.
    let _ = std::fs::write(cg.0.join("pids.max"), "max");
    if let Ok(p) = std::fs::read_to_string(cg.0.join("cgroup.procs")) {
        for pid in p.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // Only processes in the cgroup this test made: the probe's sleeps.
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
    drop(cg);
    v.finish();
}

/// The host file `pids.max` of the container's limited cgroup (PARENT/ID), found from
/// its PID 1's pids line.
fn limited_pids_max(c: &Ctx) -> String {
    let h = pids_hierarchy();
    let pid1 = c.l.container_pid1();
    let cg = std::fs::read_to_string(format!("/proc/{pid1}/cgroup")).unwrap();
    let path = cg
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, k, path) = (p.next()?, p.next()?, p.next()?);
            (k == h.key).then(|| path.to_string())
        })
        .unwrap();
    let prefix = format!("/{}/", c.parent);
    let Some(rest) = path.strip_prefix(&prefix) else {
        return format!("<PID 1 is in {path}, not under /{}>", c.parent);
    };
    let id = rest.split('/').next().unwrap();
    let f = h.host.join(&c.parent).join(id).join("pids.max");
    std::fs::read_to_string(&f)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("<{}: {e}>", f.display()))
}

/// Attack: a fork bomb in a container started without `--pids`.
/// Protection: a default pids limit of 2048 on PARENT/ID (host file pids.max).
/// Control: `--pids -1` means no limit (`max`); `--pids 20` gives 20.
#[test]
fn default_pids_limit_is_2048() {
    let c = Ctx::new();
    let mut v = Verdict::new("cgroups: default pids limit 2048");
    {
        let _svc = Running::start(&c, &[]);
        let got = limited_pids_max(&c);
        v.hole(
            got == "2048",
            format!("default: PARENT/ID/pids.max is {got:?}"),
        );
    }
    {
        let _svc = Running::start(&c, &["--pids", "20"]);
        let got = limited_pids_max(&c);
        v.control_ok(
            got == "20",
            format!("--pids 20: PARENT/ID/pids.max is {got:?}"),
        );
    }
    let r = c.run(&["--pids", "-1"], &["true"]);
    if r.code != Some(0) {
        v.control_ok(false, format!("--pids -1: {}", answer(&r)));
    } else {
        let _svc = Running::start(&c, &["--pids", "-1"]);
        let got = limited_pids_max(&c);
        v.control_ok(
            got == "max",
            format!("--pids -1: PARENT/ID/pids.max is {got:?}"),
        );
    }
    v.finish();
}

// ---------------------------------------------------------------- keyrings

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const KEYCTL_INVALIDATE: libc::c_long = 21;
const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;

/// A key in this thread's (fresh) session keyring; invalidated on drop.
struct HostKey(libc::c_long);

impl HostKey {
    fn add(desc: &str, payload: &str) -> HostKey {
        // This test's thread joins a new anonymous session keyring (children spawned
        // from this thread inherit it), so the user's own keyrings are not touched.
        // SAFETY: keyctl with a null name pointer: the kernel reads nothing.
        let r = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>(),
            )
        };
        assert!(
            r >= 0,
            "join session keyring: {}",
            std::io::Error::last_os_error()
        );
        let ty = std::ffi::CString::new("user").unwrap();
        let d = std::ffi::CString::new(desc).unwrap();
        // SAFETY: NUL-terminated strings and a payload buffer with its true length.
        let serial = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                ty.as_ptr(),
                d.as_ptr(),
                payload.as_ptr(),
                payload.len(),
                KEY_SPEC_SESSION_KEYRING,
            )
        };
        assert!(serial > 0, "add_key: {}", std::io::Error::last_os_error());
        HostKey(serial)
    }
}

impl Drop for HostKey {
    fn drop(&mut self) {
        // SAFETY: keyctl with integer arguments only.
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, self.0) };
    }
}

/// Attack: read a key the host user holds in its session keyring (keys are not
/// namespaced): by serial (KEYCTL_READ) and by search, from a default container, with
/// `--security-opt seccomp=unconfined`, and with `--privileged`.
/// Protection: each container gets a fresh session keyring: the key is neither
/// possessed nor found, and the container's session keyring is not the host's.
/// Control: a child process of the test on the host reads the key.
#[test]
fn host_session_key_is_not_readable_inside() {
    let c = Ctx::new();
    let mut v = Verdict::new("keyrings: a fresh session keyring per container");
    let desc = format!("locker-test-{}", c.parent);
    let secret = format!("SECRET-{}", c.parent);
    let key = HostKey::add(&desc, &secret);
    let serial = key.0.to_string();
    v.host_control(
        &["keyctl-read", &serial],
        Want::Is(Box::leak(format!("ok {secret}").into_boxed_str())),
    );
    let host_session = host_probe(&["keyctl-session"]);
    for opts in [&[][..], UNCONFINED, PRIVILEGED] {
        let got = probe(&c, opts, &["keyctl-read", &serial]);
        v.hole(
            !got.contains(&secret) && !got.starts_with('<'),
            format!("{opts:?} keyctl-read {serial}: `{got}`"),
        );
        let got = probe(&c, opts, &["keyctl-search", &desc]);
        v.hole(
            !got.starts_with("ok") && !got.starts_with('<'),
            format!("{opts:?} keyctl-search {desc}: `{got}`"),
        );
        if !opts.is_empty() {
            let got = probe(&c, opts, &["keyctl-session"]);
            v.hole(
                got.starts_with("ok") && got != host_session,
                format!("{opts:?} session keyring `{got}`, the host's is `{host_session}`"),
            );
        }
    }
    drop(key);
    v.finish();
}

// ---------------------------------------------------------------- resources

/// `cmd` with its oom_score_adj set to `adj` between fork and exec.
fn with_oom_adj(cmd: &mut Command, adj: &'static [u8]) {
    // SAFETY: between fork and exec only open/write/close with static buffers.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, adj.as_ptr().cast(), adj.len()) != adj.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
}

/// Attack: locker started with oom_score_adj 500 (as a service manager may start it):
/// the container inherits it, and what it inherits it can pass on.
/// Protection: the container's processes have oom_score_adj 0, or `--oom-score-adj N`.
/// Control: a host process started the same way reads 500.
#[test]
fn oom_score_adj_is_reset() {
    let c = Ctx::new();
    let mut v = Verdict::new("resources: oom_score_adj 0 (or --oom-score-adj N)");
    let mut host = Command::new("cat");
    host.arg("/proc/self/oom_score_adj");
    with_oom_adj(&mut host, b"500");
    let r = run_bounded(host, Duration::from_secs(30));
    v.control_ok(
        r.stdout.trim() == "500",
        format!("host child: {}", r.dump()),
    );
    for (opts, want) in [(&[][..], "0"), (&["--oom-score-adj", "300"][..], "300")] {
        let mut cmd =
            c.l.command(&c.args(opts, &["cat", "/proc/self/oom_score_adj"]));
        with_oom_adj(&mut cmd, b"500");
        let r = run_bounded(cmd, Duration::from_secs(60));
        v.hole(
            r.code == Some(0) && r.stdout.trim() == want,
            format!(
                "{opts:?}, locker at 500: oom_score_adj {:?}, want {want} ({})",
                r.stdout.trim(),
                answer(&r)
            ),
        );
    }
    v.finish();
}

/// `cmd` with its RLIMIT_NOFILE soft limit set to `soft` between fork and exec.
fn with_nofile_soft(cmd: &mut Command, soft: u64) {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a live rlimit struct owned by this frame.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) }, 0);
    let hard = cur.rlim_max;
    // SAFETY: between fork and exec only setrlimit on a stack struct.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: soft.min(hard),
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Attack: none by itself: the container runs with whatever rlimits the host
/// process that started locker happened to have.
/// Protection: rlimits are set explicitly: nofile soft 1024 by default, whatever
/// locker's own; `--ulimit nofile=SOFT:HARD` sets both.
/// Control: a host process started the same way (nofile soft 777) reads 777.
#[test]
fn rlimits_are_set_explicitly() {
    let c = Ctx::new();
    let mut v = Verdict::new("resources: explicit rlimits (nofile soft 1024, --ulimit)");
    let mut host = Command::new("sh");
    host.args(["-c", "ulimit -n"]);
    with_nofile_soft(&mut host, 777);
    let r = run_bounded(host, Duration::from_secs(30));
    v.control_ok(
        r.stdout.trim() == "777",
        format!("host child: {}", r.dump()),
    );
    let mut cmd = c.l.command(&c.args(&[], &["sh", "-c", "ulimit -n"]));
    with_nofile_soft(&mut cmd, 777);
    let r = run_bounded(cmd, Duration::from_secs(60));
    v.hole(
        r.code == Some(0) && r.stdout.trim() == "1024",
        format!(
            "default nofile soft limit {:?}, want 1024 ({})",
            r.stdout.trim(),
            answer(&r)
        ),
    );
    let r = c.run(
        &["--ulimit", "nofile=100:200"],
        &["sh", "-c", "ulimit -n; ulimit -Hn"],
    );
    v.hole(
        r.code == Some(0) && r.stdout == "100\n200\n",
        format!("--ulimit nofile=100:200: {:?} ({})", r.stdout, answer(&r)),
    );
    // Attack (red team): raise the core limit from inside and dump core, which on a
    // host whose core_pattern is a pipe runs the host's root handler at will.
    // Protection: core is 0:0, so the raise fails. Control: --ulimit core=-1 allows it.
    let raise = "ulimit -c unlimited 2>/dev/null && echo RAISED; ulimit -Hc";
    let r = c.run(&[], &["sh", "-c", raise]);
    v.hole(
        r.code == Some(0) && r.stdout == "0\n",
        format!("default core limit: {:?} ({})", r.stdout, answer(&r)),
    );
    let r = c.run(&["--ulimit", "core=-1"], &["sh", "-c", raise]);
    v.control_ok(
        r.code == Some(0) && r.stdout == "RAISED\nunlimited\n",
        format!("--ulimit core=-1: {:?} ({})", r.stdout, answer(&r)),
    );
    v.finish();
}

/// Attack: fill a `--tmpfs` (host memory) beyond the size it was given. (Without
/// the option syntax, `/t:size=8m` is a path: the write then fails with ENOENT.)
/// Protection: `--tmpfs /t:size=8m` is 8 MiB: writing 16 MiB fails with ENOSPC.
/// Control: `--tmpfs /t:size=32m` takes the same 16 MiB.
#[test]
fn tmpfs_size_option_is_enforced() {
    let c = Ctx::new();
    let mut v = Verdict::new("resources: --tmpfs PATH:size=N is bounded");
    v.attack(
        &c,
        &["--tmpfs", "/t:size=8m"],
        &["write", "/t/f", "16"],
        Want::Is("errno=28"),
    );
    v.control(
        &c,
        &["--tmpfs", "/t:size=32m"],
        &["write", "/t/f", "16"],
        Want::Is("ok"),
    );
    v.finish();
}

/// Attack: fill the anonymous container's root (its overlay upper is a tmpfs: host
/// memory) or a plain `--tmpfs`: unbounded, a tmpfs takes half the host's RAM.
/// Protection: both are size-bounded: the plain `--tmpfs` mount has a size= option,
/// and the root's statfs (the upper tmpfs) is smaller than an unbounded tmpfs
/// (MemTotal/2).
/// Control: /dev/shm's explicit size=65536k is shown in /proc/mounts (the check can
/// see a bound); `df` of / works.
#[test]
fn default_tmpfs_and_upper_are_bounded() {
    let c = Ctx::new();
    let mut v =
        Verdict::new("resources: default --tmpfs and the anonymous upper tmpfs are bounded");
    let r = c.run(&["--tmpfs", "/t"], &["cat", "/proc/mounts"]);
    let line = r
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/t"))
        .unwrap_or("")
        .to_string();
    v.hole(
        line.contains("size="),
        format!("--tmpfs /t: `{line}` has no size= ({})", answer(&r)),
    );
    let shm = r
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/dev/shm"))
        .unwrap_or("");
    v.control_ok(shm.contains("size="), format!("/dev/shm: `{shm}`"));
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let r = c.run(&[], &["df", "-k", "/"]);
    let total: Option<u64> = r
        .stdout
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|t| t.parse().ok());
    v.control_ok(total.is_some(), format!("df -k /: {}", r.dump()));
    if let Some(t) = total {
        v.hole(
            t < mem_kib / 2 * 95 / 100,
            format!(
                "the upper tmpfs is {t} KiB: as big as an unbounded tmpfs (MemTotal/2 = {} KiB)",
                mem_kib / 2
            ),
        );
    }
    v.finish();
}

// ---------------------------------------------------------------- stdio

/// Attack: `locker run IMG CMD >> host-file`: reopen the host file through
/// /proc/self/fd (a magic link: a fresh open with any mode) to read what it held
/// before and to truncate it.
/// Protection: the container's stdout is not the host file (locker relays it): the
/// reopen reaches no host content, and the file keeps its content plus what the
/// container wrote.
/// Control: the same reopen on the host reads and truncates the file.
#[test]
fn stdout_host_file_cannot_be_reopened() {
    let c = Ctx::new();
    let mut v = Verdict::new("stdio: a host file as stdout cannot be reopened, read or truncated");
    let secret = "HOST-SECRET\n";
    let file = c.l.path("out.log");
    std::fs::write(&file, secret).unwrap();
    let append = || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap()
    };
    let vol = probe_vol();
    let mut cmd = c.l.command(&c.args(
        &with_probe(&vol, &[]),
        &[
            "sh",
            "-c",
            "/probe reopen-read 3 3>&1 1>&2; /probe reopen-trunc 3 3>&1 1>&2; echo legit",
        ],
    ));
    cmd.stdout(Stdio::from(append()));
    let r = run_bounded_keep_stdout(cmd);
    let after = std::fs::read_to_string(&file).unwrap();
    v.hole(
        !r.stderr.contains("HOST-SECRET"),
        format!("the container read the host file: {}", r.stderr.trim()),
    );
    v.hole(
        after == format!("{secret}legit\n"),
        format!(
            "the host file is now {after:?} (exit {:?}, stderr {})",
            r.code,
            r.stderr.trim()
        ),
    );

    // Control on the host, on the file as it was.
    std::fs::write(&file, secret).unwrap();
    let probe = probe_bin().to_str().unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("{probe} reopen-read 3 3>&1 1>&2")])
        .stdout(Stdio::from(append()));
    let r = run_bounded_keep_stdout(cmd);
    v.control_ok(
        r.stderr.contains("ok HOST-SECRET"),
        format!("host reopen-read: {}", r.stderr.trim()),
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("{probe} reopen-trunc 3 3>&1 1>&2")])
        .stdout(Stdio::from(append()));
    let r = run_bounded_keep_stdout(cmd);
    let after = std::fs::read_to_string(&file).unwrap();
    v.control_ok(
        r.stderr.trim() == "ok" && after.is_empty(),
        format!("host reopen-trunc: {} -> {after:?}", r.stderr.trim()),
    );
    v.finish();
}

/// Like `run_bounded`, but stdout stays what the command set (a file): only stderr is
/// captured.
fn run_bounded_keep_stdout(mut cmd: Command) -> Run {
    cmd.stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let st = wait_child(&mut child, Duration::from_secs(60));
    Run {
        cmd: shown,
        code: st.code(),
        stdout: String::new(),
        stderr: rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default(),
    }
}

/// Attack: `locker run -i IMG CMD < host-dir`: fd 0 is a host directory; create files
/// in it with openat(0, ...) and through /proc/self/fd/0/NAME.
/// Protection: the container's stdin is not the host directory: nothing is created
/// in it (locker may also refuse such a stdin, with a one-line error).
/// Control: the same on the host creates the file.
#[test]
fn stdin_directory_cannot_be_written() {
    let c = Ctx::new();
    let mut v = Verdict::new("stdio: a directory on stdin (-i) cannot be written through");
    let dir = c.l.path("stdin-dir");
    std::fs::create_dir(&dir).unwrap();
    let vol = probe_vol();
    let mut cmd = c.l.command(&c.args(
        &with_probe(&vol, &["-i"]),
        &[
            "sh",
            "-c",
            "/probe openat-create 0 planted; /probe create /proc/self/fd/0/planted2",
        ],
    ));
    cmd.stdin(Stdio::from(std::fs::File::open(&dir).unwrap()));
    let r = run_bounded(cmd, Duration::from_secs(60));
    let planted: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.hole(
        planted.is_empty(),
        format!("created in the host directory: {planted:?}\n{}", r.dump()),
    );
    for p in &planted {
        let _ = std::fs::remove_file(dir.join(p));
    }
    let mut cmd = Command::new(probe_bin());
    cmd.args(["openat-create", "0", "host-planted"]);
    cmd.stdin(Stdio::from(std::fs::File::open(&dir).unwrap()));
    let r = run_bounded(cmd, Duration::from_secs(30));
    v.control_ok(
        dir.join("host-planted").exists(),
        format!("host: {}", r.dump()),
    );
    v.finish();
}

/// Attack: `locker run IMG CMD` from a terminal, without -t: the container's stdout
/// and stderr are the user's terminal; it can reopen it for reading (the user's
/// keystrokes), take it as /dev/tty, or push input into it (TIOCSTI) for the user's
/// shell to run.
/// Protection: without -t the host terminal is not the container's tty: fds 0-2 are
/// not terminals, /dev/tty does not open, TIOCSTI does not inject.
/// Control: the same script on the host under the same terminal sees a tty on stdout
/// and injects; `-t` gives the container a terminal.
#[test]
fn host_terminal_without_t_is_not_the_containers_tty() {
    let c = Ctx::new();
    let mut v = Verdict::new("stdio: a host terminal without -t is not the container's tty");
    let script = |probe: &str| {
        format!(
            "for fd in 0 1 2; do test -t $fd && echo TTY-$fd; done; (exec 3</dev/tty) 2>/dev/null && echo DEV-TTY; \
             {probe} tiocsti 3 INJECTED-INPUT 3>&1 >/dev/null 2>&1 && echo TIOCSTI-OK; echo end"
        )
    };
    let vol = probe_vol();
    let (code, out) =
        Pty::run(c.l.command(&c.args(&with_probe(&vol, &[]), &["sh", "-c", &script("/probe")])));
    v.hole(
        code == Some(0) && out.contains("end"),
        format!("run failed: {code:?} {out}"),
    );
    for bad in [
        "TTY-0",
        "TTY-1",
        "TTY-2",
        "DEV-TTY",
        "TIOCSTI-OK",
        "INJECTED-INPUT",
    ] {
        v.hole(
            !out.contains(bad),
            format!("{bad} in the container's view: {out:?}"),
        );
    }
    let mut host = Command::new("sh");
    host.args(["-c", &script(probe_bin().to_str().unwrap())]);
    let (_, out) = Pty::run(host);
    v.control_ok(
        out.contains("TTY-1") && out.contains("TIOCSTI-OK"),
        format!("host: {out:?}"),
    );
    let (_, out) =
        Pty::run(c.l.command(&c.args(&["-t"], &["sh", "-c", "test -t 1 && echo TTY-1"])));
    v.control_ok(out.contains("TTY-1"), format!("-t: {out:?}"));
    v.finish();
}

/// Attack: none; with -t the container's terminal must be its own pty, not the host's
/// terminal or a console passed through.
/// Protection: `locker run -t IMG tty` prints /dev/pts/0 (the first pty of the
/// container's private devpts).
/// Control: `tty` without -t says "not a tty" (stdin is /dev/null).
#[test]
fn tty_is_the_containers_own_pts0() {
    let c = Ctx::new();
    let mut v = Verdict::new("stdio: -t gives /dev/pts/0 of the container's devpts");
    let (code, out) = Pty::run(c.l.command(&c.args(&["-t"], &["tty"])));
    v.hole(
        code == Some(0) && out.trim() == "/dev/pts/0",
        format!("run -t tty: {code:?} {out:?}"),
    );
    let r = c.run(&[], &["tty"]);
    v.control_ok(r.stdout.trim() == "not a tty", r.dump());
    v.finish();
}

// ---------------------------------------------------------------- --root

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Attack: `--root DIR` naming an existing directory (a home, /tmp, `/`): locker
/// used to chmod it to 0700.
/// Protection: an existing ROOT is never chmodded (`gc`, `run`).
/// Control: a ROOT that does not exist yet is created 0700.
#[test]
fn existing_root_is_never_chmodded() {
    let c = Ctx::new();
    let mut v = Verdict::new("--root: an existing directory is never chmodded");
    let root = c.l.root();
    set_mode(&root, 0o755);
    let r = c.l.run(&["gc"]);
    v.hole(
        r.code == Some(0) && mode_of(&root) == 0o755,
        format!("after gc ROOT is {:o}\n{}", mode_of(&root), r.dump()),
    );
    set_mode(&root, 0o755);
    let r = c.run(&[], &["true"]);
    v.hole(
        r.code == Some(0) && mode_of(&root) == 0o755,
        format!("after run ROOT is {:o}\n{}", mode_of(&root), r.dump()),
    );
    let fresh = c.l.path("fresh-root");
    let tar = c.l.path("fix.tar");
    std::fs::write(&tar, crate::harness::fixture_tar()).unwrap();
    let mut cmd = Command::new(crate::harness::locker_bin());
    cmd.arg("--root")
        .arg(&fresh)
        .args(["import", tar.to_str().unwrap(), "--name", "fix"]);
    cmd.env("HOME", c.l.path("home"))
        .env_remove("LOCKER_ROOT")
        .env_remove("LOCKER_CATALOG");
    let r = run_bounded(cmd, Duration::from_secs(60));
    v.control_ok(
        r.code == Some(0) && fresh.is_dir() && mode_of(&fresh) == 0o700,
        format!("a new ROOT: {}", r.dump()),
    );
    v.finish();
}

/// Attack: a ROOT other users can write into (0775, 0757, 0777, 1777): they could
/// plant trees, refs or state that locker, as root, then trusts.
/// Protection: such a ROOT is refused with a one-line error naming it (exit 125),
/// and its mode is left alone.
/// Control: the same store at 0700 works.
#[test]
fn group_or_world_writable_root_is_refused() {
    let c = Ctx::new();
    let mut v = Verdict::new("--root: a group/other-writable ROOT is refused (125)");
    let root = c.l.root();
    for mode in [0o775, 0o757, 0o777, 0o1777] {
        for args in [vec!["gc"], c.args(&[], &["true"])] {
            set_mode(&root, mode);
            let r = c.l.run(&args);
            let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            v.hole(
                r.code == Some(125)
                    && lines.len() == 1
                    && lines[0].starts_with("locker: ")
                    && lines[0].contains(root.to_str().unwrap())
                    && mode_of(&root) == mode,
                format!(
                    "ROOT {mode:o}, {:?}: exit {:?}, mode now {:o}, stderr {:?}",
                    args[0],
                    r.code,
                    mode_of(&root),
                    r.stderr.trim()
                ),
            );
        }
    }
    set_mode(&root, 0o700);
    let r = c.run(&[], &["true"]);
    v.control_ok(r.code == Some(0), r.dump());
    v.finish();
}

// ---------------------------------------------------------------- named containers

/// inotify IN_OPEN watches on some paths: was any of them opened?
struct OpenWatch {
    fd: OwnedFd,
}

impl OpenWatch {
    fn new(paths: &[&Path]) -> OpenWatch {
        // SAFETY: inotify_init1 takes integer flags.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            raw >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for p in paths {
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            // SAFETY: a live inotify fd and a NUL-terminated path.
            let w = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_OPEN) };
            assert!(
                w >= 0,
                "watch {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            );
        }
        OpenWatch { fd }
    }

    /// Number of open events since the last call.
    fn opens(&self) -> usize {
        let mut n = 0;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: a buffer this frame owns, with its true length.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                return n;
            }
            let mut off = 0usize;
            while off + std::mem::size_of::<libc::inotify_event>() <= r as usize {
                // SAFETY: the kernel wrote whole events; read_unaligned copes with the
                // byte buffer's alignment.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
                if ev.mask & libc::IN_OPEN != 0 {
                    n += 1;
                }
                off += std::mem::size_of::<libc::inotify_event>() + ev.len as usize;
            }
        }
    }
}

/// Attack: a named container replaces its /etc/passwd with a FIFO and (as one run
/// with MKNOD could) its /etc/group with a device node; the next `run --name` reads
/// those files on the host to resolve the user: a FIFO hangs a blocking open, a
/// device's open runs its driver's open on the host (a tape rewinds, a watchdog arms).
/// Protection: the host never opens them (inotify sees no open on the upper layer's
/// files), and the next run still works, in bounded time.
/// Control: the watch sees an open when the test itself opens the two nodes.
#[test]
fn named_upper_fifo_or_device_passwd_is_never_opened() {
    let c = Ctx::new();
    let mut v = Verdict::new(
        "named containers: a FIFO/device at upper /etc/passwd|group is never opened by the host",
    );
    c.sh(
        &["--name", "ff"],
        "rm /etc/passwd /etc/group && mkfifo /etc/passwd",
    );
    let upper = c.l.root().join("containers/ff/upper/etc");
    let passwd = upper.join("passwd");
    let group = upper.join("group");
    let _ = std::fs::remove_file(&group); // the whiteout
    nix::sys::stat::mknod(
        &group,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let watch = OpenWatch::new(&[&passwd, &group]);
    let start = Instant::now();
    let r = run_bounded(
        c.l.command(&c.args(&["--name", "ff"], &["sh", "-c", "echo ok"])),
        Duration::from_secs(30),
    );
    let took = start.elapsed();
    let opened = watch.opens();
    v.hole(
        opened == 0,
        format!("the host opened the FIFO/device {opened} time(s) during `run --name ff`"),
    );
    v.hole(
        r.code == Some(0) && r.stdout.trim() == "ok" && took < Duration::from_secs(20),
        format!("the next run must work, promptly ({took:?})\n{}", r.dump()),
    );
    // Control: the watch works.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&passwd);
    let g = std::fs::File::open(&group);
    v.control_ok(
        f.is_ok() && g.is_ok() && watch.opens() == 2,
        "the test's own opens must be seen",
    );
    drop((f, g));
    let _ = c.l.run(&["rm", "ff"]);
    v.finish();
}
