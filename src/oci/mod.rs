//! locker as an OCI runtime: runc's lifecycle over a bundle (create, start, state,
//! kill, delete, and the verbs around them), on the engine `locker run` uses
//! (`run::start_with` with the bundle's `Contract`, config.rs).
//!
//! Layout under the runtime root (`--root`, default /run/locker-runtime):
//!   oci/ID/record.json   the container: bundle, PID 1 (+ start time), creation time,
//!                        annotations, the poststart/poststop hooks
//!   oci/ID/exec.fifo     present while the container is "created": PID 1 waits on it
//!                        (held open read-write by PID 1 itself) and `start` writes it
//!   run/ID.json, run/ID/ the engine's own state (cgroups, mount point), as for `run`
//!
//! Status, as the OCI runtime spec defines it: no record -> no container; PID 1 gone
//! (or a zombie) -> stopped; the FIFO still there -> created; a frozen cgroup ->
//! paused; else running. `create`'s process exits once PID 1 waits on the FIFO, so
//! PID 1 is re-parented to the caller's subreaper (containerd's shim, conmon), as with
//! runc. `delete` undoes everything: processes, cgroups, mount point, records.

pub(crate) mod config;
pub(crate) mod resources;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::fs::path_error::{io_err, PathError};
use crate::run::{self, state, RunError};
use config::{HookCmd, Hooks};

#[derive(Debug, thiserror::Error)]
pub(crate) enum OciError {
    #[error("read the bundle's config {path}: {why}")]
    Config { path: PathBuf, why: String },
    #[error("config field {field}: {why}")]
    Unsupported { field: String, why: String },
    #[error("container {0:?} exists already (`delete` it first)")]
    Exists(String),
    // runc's words ("does not exist", "container not running") are what containerd's
    // shim reads to tell a container that is gone from a failure.
    #[error("container {0:?} does not exist (`list` shows them)")]
    NoContainer(String),
    #[error("bad container id {0:?}: use letters, digits, `_`, `.`, `-`")]
    BadId(String),
    #[error(
        "container {id:?} is {status}{}: {what} needs it {want}",
        not_running(status)
    )]
    Status {
        id: String,
        status: &'static str,
        what: &'static str,
        want: &'static str,
    },
    #[error("unknown signal {0:?}: use a name (TERM, SIGKILL) or a number")]
    Signal(String),
    #[error("{stage} hook {path}: {why}")]
    Hook {
        stage: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Io(#[from] PathError),
}

fn not_running(status: &str) -> &'static str {
    if status == "stopped" {
        " (container not running)"
    } else {
        ""
    }
}

impl OciError {
    /// The exit status of the CLI edge: the engine's mapping for its own errors.
    pub(crate) fn exit_status(&self) -> crate::exit::ExitStatus {
        match self {
            OciError::Run(e) => e.exit_status(),
            _ => crate::exit::ExitStatus::Failure,
        }
    }
}

/// The OCI runtime spec version of the state and features locker prints.
pub(crate) const OCI_VERSION: &str = "1.0.2";

/// One container's record (oci/ID/record.json).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub pid: i32,
    pub pid_start: u64,
    /// RFC 3339, UTC.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    pub hooks: Hooks,
}

/// The OCI state (runtime spec "State"), as `state` prints it and hooks read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    pub pid: i32,
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// runc's extension, which `list` shows.
    #[serde(default)]
    pub created: String,
}

/// What `create` is asked for beyond the bundle.
#[derive(Debug, Default)]
pub(crate) struct CreateOpts {
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    /// `--preserve-fds N`: the caller's fds 3..3+N pass to the command.
    pub preserve_fds: u32,
}

/// The runtime over its root directory.
pub(crate) struct Runtime {
    pub root: PathBuf,
}

fn check_id(id: &str) -> Result<(), OciError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-+".contains(c))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(OciError::BadId(id.to_string()))
    }
}

/// Seconds since the epoch as RFC 3339 UTC.
fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

impl Runtime {
    fn dir(&self, id: &str) -> PathBuf {
        self.root.join("oci").join(id)
    }

    fn fifo(&self, id: &str) -> PathBuf {
        self.dir(id).join("exec.fifo")
    }

    fn record(&self, id: &str) -> Result<Record, OciError> {
        check_id(id)?;
        let p = self.dir(id).join("record.json");
        let b = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OciError::NoContainer(id.to_string()))
            }
            Err(e) => return Err(io_err("read", &p)(e).into()),
        };
        serde_json::from_slice(&b).map_err(|e| io_err("read", &p)(io::Error::other(e)).into())
    }

    fn write_record(&self, r: &Record) -> Result<(), OciError> {
        let p = self.dir(&r.id).join("record.json");
        let tmp = p.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(r).expect("json")).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &p).map_err(io_err("write", &p))?;
        Ok(())
    }

    /// The engine's record of the container (cgroups, mount point).
    fn engine_state(&self, id: &str) -> Option<state::State> {
        let b = fs::read(state::state_path(&self.root, id)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// The container's status now.
    pub(crate) fn status(&self, r: &Record) -> &'static str {
        if r.pid == 0 {
            return "creating";
        }
        if !state::alive(r.pid, r.pid_start) {
            return "stopped";
        }
        if self.fifo(&r.id).exists() {
            return "created";
        }
        if self.engine_state(&r.id).is_some_and(|s| frozen(&s.cgroups)) {
            return "paused";
        }
        "running"
    }

    pub(crate) fn state(&self, id: &str) -> Result<OciState, OciError> {
        let r = self.record(id)?;
        Ok(self.oci_state(&r, self.status(&r)))
    }

    fn oci_state(&self, r: &Record, status: &str) -> OciState {
        OciState {
            oci_version: OCI_VERSION.into(),
            id: r.id.clone(),
            status: status.into(),
            pid: if status == "stopped" { 0 } else { r.pid },
            bundle: r.bundle.clone(),
            annotations: r.annotations.clone(),
            created: r.created.clone(),
        }
    }

    /// `create`: the container set up, PID 1 waiting on the FIFO; returns PID 1.
    pub(crate) fn create(&self, id: &str, bundle: &Path, o: &CreateOpts) -> Result<Pid, OciError> {
        let started = self.create_started(id, bundle, o)?;
        Ok(started.keep())
    }

    fn create_started(
        &self,
        id: &str,
        bundle: &Path,
        o: &CreateOpts,
    ) -> Result<run::Started, OciError> {
        check_id(id)?;
        let bundle = fs::canonicalize(bundle).map_err(io_err("use bundle", bundle))?;
        crate::store::root_dir(&self.root).map_err(io_err("use runtime root", &self.root))?;
        let oci_dir = self.root.join("oci");
        crate::store::private_dir(&oci_dir).map_err(io_err("create", &oci_dir))?;
        let dir = self.dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(OciError::Exists(id.to_string()))
            }
            Err(e) => return Err(io_err("create", &dir)(e).into()),
        }
        // Until PID 1 waits on the FIFO, a failure removes everything made so far.
        struct Undo<'a>(&'a Path, bool);
        impl Drop for Undo<'_> {
            fn drop(&mut self) {
                if self.1 {
                    let _ = fs::remove_dir_all(self.0);
                }
            }
        }
        let mut undo = Undo(&dir, true);
        let mut b = config::load(&bundle, id)?;
        let fifo = self.fifo(id);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| io_err("create", &fifo)(io::Error::from(e)))?;
        if let Some(c) = b.spec.contract.as_mut() {
            c.exec_fifo = Some(fifo);
            c.console_socket = o.console_socket.clone();
            c.no_pivot = o.no_pivot;
            c.preserve_fds = o.preserve_fds;
        }
        if b.spec.process.terminal && o.console_socket.is_none() {
            return Err(OciError::Unsupported {
                field: "process.terminal".into(),
                why: "a terminal needs --console-socket".into(),
            });
        }
        let mut record = Record {
            id: id.to_string(),
            bundle: bundle.clone(),
            pid: 0,
            pid_start: 0,
            created: rfc3339(std::time::SystemTime::now()),
            annotations: b.annotations.clone(),
            hooks: Hooks {
                start_container: b.hooks.start_container.clone(),
                poststart: b.hooks.poststart.clone(),
                poststop: b.hooks.poststop.clone(),
                ..Hooks::default()
            },
        };
        self.write_record(&record)?;
        let hooks = b.hooks.clone();
        let res = b.resources.clone();
        let devices = b.devices.clone();
        let mut before = |pid: Pid| -> Result<(), RunError> {
            record.pid = pid.as_raw();
            record.pid_start = state::start_time(pid.as_raw()).unwrap_or(0);
            self.write_record(&record).map_err(to_run)?;
            if res.is_some() || !devices.is_empty() {
                if let Some(s) = self.engine_state(id) {
                    resources::apply(res.as_ref(), &devices, &s.cgroups, s.cgroup_v2)
                        .map_err(to_run)?;
                }
            }
            let st = self.oci_state(&record, "created");
            for h in hooks.prestart.iter().chain(&hooks.create_runtime) {
                run_hook("prestart", h, &st).map_err(to_run)?;
            }
            Ok(())
        };
        let started = run::start_with(&self.root, &b.spec, &mut before)?;
        // The engine's record names PID 1 as its keeper: nothing reaps it as stale.
        if let Some(mut s) = self.engine_state(id) {
            s.locker_pid = s.pid;
            s.locker_start = s.pid_start;
            let _ = state::write_state(&self.root, &s);
        }
        // In the container, once it is set up (a failure ends it: `started` and
        // `undo` clean up).
        let st = self.oci_state(&record, "created");
        for (i, h) in hooks.create_container.iter().enumerate() {
            self.run_hook_inside("createContainer", i, h, &st)?;
        }
        if let Some(p) = &o.pid_file {
            crate::fs::write_by_rename(p, started.pid.as_raw().to_string().as_bytes())
                .map_err(io_err("write pid file", p))?;
        }
        undo.1 = false;
        Ok(started)
    }

    /// `start`: releases PID 1 from the FIFO, then the poststart hooks.
    pub(crate) fn start(&self, id: &str) -> Result<(), OciError> {
        let r = self.record(id)?;
        let status = self.status(&r);
        if status != "created" {
            return Err(OciError::Status {
                id: id.into(),
                status,
                what: "start",
                want: "created",
            });
        }
        // In the container before its command; a failure stops it (runtime spec).
        let st = self.oci_state(&r, "created");
        for (i, h) in r.hooks.start_container.iter().enumerate() {
            if let Err(e) = self.run_hook_inside("startContainer", i, h, &st) {
                let _ = kill(Pid::from_raw(r.pid), Signal::SIGKILL);
                return Err(e);
            }
        }
        let fifo = self.fifo(id);
        // Non-blocking: no reader (PID 1 died) is ENXIO, not a hang.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .map_err(io_err("open", &fifo))?;
        f.write_all(b"0").map_err(io_err("write", &fifo))?;
        drop(f);
        fs::remove_file(&fifo).map_err(io_err("remove", &fifo))?;
        let st = self.oci_state(&r, "running");
        for h in &r.hooks.poststart {
            // A failed poststart hook is reported; the container keeps running (runtime
            // spec: "the runtime MUST log a warning").
            if let Err(e) = run_hook("poststart", h, &st) {
                eprintln!("locker: {e}");
            }
        }
        Ok(())
    }

    /// `kill`: `sig` to PID 1, or with `all` to every process in the container.
    pub(crate) fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<(), OciError> {
        let r = self.record(id)?;
        let status = self.status(&r);
        if status == "stopped" {
            return Err(OciError::Status {
                id: id.into(),
                status,
                what: "kill",
                want: "created or running",
            });
        }
        if all {
            for p in self.pids(&r) {
                let _ = kill(Pid::from_raw(p), sig);
            }
        }
        kill(Pid::from_raw(r.pid), sig)
            .map_err(|e| OciError::Run(RunError::Sys("kill the container", e)))?;
        Ok(())
    }

    /// The host pids of the container's processes (its cgroups).
    pub(crate) fn pids(&self, r: &Record) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .engine_state(&r.id)
            .map(|s| s.cgroups)
            .unwrap_or_default()
            .iter()
            .flat_map(|d| {
                fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub(crate) fn ps(&self, id: &str) -> Result<Vec<i32>, OciError> {
        let r = self.record(id)?;
        Ok(self.pids(&r))
    }

    /// `delete`: a stopped container's remains (runtime spec: deleting one that is not
    /// stopped is an error with no effect); `force` kills it first. Then the poststop
    /// hooks.
    pub(crate) fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
        let r = match self.record(id) {
            Ok(r) => r,
            // A create that died before its record: whatever the engine left. A
            // container already gone is deleted, as runc has it (containerd's shim
            // deletes, then force-deletes in its cleanup).
            Err(OciError::NoContainer(_)) if force => {
                let _ = fs::remove_dir_all(self.dir(id));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let status = self.status(&r);
        if status != "stopped" && !force {
            return Err(OciError::Status {
                id: id.into(),
                status,
                what: "delete",
                want: "stopped (or use --force)",
            });
        }
        if let Some(s) = self.engine_state(id) {
            if status == "paused" {
                thaw(&s.cgroups);
            }
            state::remove(&self.root, &s).map_err(io_err(
                "remove the container's cgroups and state",
                &state::state_path(&self.root, id),
            ))?;
        } else if state::alive(r.pid, r.pid_start) {
            let _ = kill(Pid::from_raw(r.pid), Signal::SIGKILL);
        }
        let st = self.oci_state(&r, "stopped");
        let dir = self.dir(id);
        fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        for h in &r.hooks.poststop {
            if let Err(e) = run_hook("poststop", h, &st) {
                eprintln!("locker: {e}");
            }
        }
        Ok(())
    }

    /// `pause` / `resume`: the freezer (v1 freezer.state, v2 cgroup.freeze).
    pub(crate) fn freeze(&self, id: &str, on: bool) -> Result<(), OciError> {
        let r = self.record(id)?;
        let status = self.status(&r);
        let want = if on { "running" } else { "paused" };
        if status != want {
            return Err(OciError::Status {
                id: id.into(),
                status,
                what: if on { "pause" } else { "resume" },
                want,
            });
        }
        let s = self
            .engine_state(id)
            .ok_or_else(|| OciError::NoContainer(id.into()))?;
        let (file, value) = freezer(&s.cgroups, on).ok_or_else(|| OciError::Unsupported {
            field: "pause".into(),
            why: "no freezer: mount the v1 freezer controller or use cgroup v2".into(),
        })?;
        fs::write(&file, value).map_err(io_err("write", &file))?;
        // v1 reports FREEZING until every task is stopped.
        let deadline = Instant::now() + Duration::from_secs(5);
        while on && !frozen(&s.cgroups) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Every container's state, by id.
    pub(crate) fn list(&self) -> Vec<OciState> {
        let Ok(rd) = fs::read_dir(self.root.join("oci")) else {
            return Vec::new();
        };
        let mut v: Vec<OciState> = rd
            .flatten()
            .filter_map(|e| self.state(&e.file_name().to_string_lossy()).ok())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// `run`: create, start, wait for PID 1 (this process is its parent), delete;
    /// returns its exit status.
    pub(crate) fn run(&self, id: &str, bundle: &Path, o: &CreateOpts) -> Result<u8, OciError> {
        let started = self.create_started(id, bundle, o)?;
        let signals = started.signals;
        let pid = started.keep();
        let r = self
            .start(id)
            .and_then(|()| Ok(run::supervise(pid, &signals)?));
        let d = self.delete(id, true);
        let code = r?;
        d?;
        Ok(code)
    }

    /// `run --detach`: create, then start, and return while the container runs (the
    /// caller's subreaper reaps it, as with runc). A failed start deletes what create
    /// made.
    pub(crate) fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        o: &CreateOpts,
    ) -> Result<(), OciError> {
        self.create(id, bundle, o)?;
        self.start(id).inspect_err(|_| {
            let _ = self.delete(id, true);
        })
    }

    /// A createContainer or startContainer hook: `exec --process` of a process.json
    /// (the hook's path as the command, its args and env, root, the container's
    /// capabilities and filter) in the container, the state on its stdin, bounded by
    /// its timeout as any hook.
    fn run_hook_inside(
        &self,
        stage: &'static str,
        index: usize,
        h: &HookCmd,
        st: &OciState,
    ) -> Result<(), OciError> {
        let mut args = vec![h.path.to_string_lossy().into_owned()];
        args.extend(h.args.iter().skip(1).cloned());
        let process = serde_json::json!({
            "args": args, "env": h.env, "cwd": "/", "user": {"uid": 0, "gid": 0},
        });
        let file = self.dir(&st.id).join(format!("{stage}-{index}.json"));
        crate::fs::write_by_rename(&file, &serde_json::to_vec(&process).expect("json"))
            .map_err(io_err("write", &file))?;
        let exe = std::env::current_exe().map_err(io_err("find", Path::new("/proc/self/exe")))?;
        let runner = HookCmd {
            path: exe,
            args: ["locker", "oci", "--root"]
                .iter()
                .map(|s| s.to_string())
                .chain([self.root.to_string_lossy().into_owned(), "exec".into()])
                .chain(["--process".into(), file.to_string_lossy().into_owned()])
                .chain([st.id.clone()])
                .collect(),
            env: std::env::vars().map(|(k, v)| format!("{k}={v}")).collect(),
            timeout: h.timeout,
        };
        let r = run_hook(stage, &runner, st).map_err(|e| match e {
            OciError::Hook { stage, why, .. } => OciError::Hook {
                stage,
                path: h.path.clone(),
                why,
            },
            e => e,
        });
        let _ = fs::remove_file(&file);
        r
    }

    /// `exec`: `process` in the created or running container.
    pub(crate) fn exec(&self, id: &str, o: &ExecOpts) -> Result<u8, OciError> {
        let r = self.record(id)?;
        let status = self.status(&r);
        // As runc: a created container too (its PID 1 waits on the FIFO; the
        // createContainer and startContainer hooks run so).
        if status != "running" && status != "created" {
            return Err(OciError::Status {
                id: id.into(),
                status,
                what: "exec",
                want: "created or running",
            });
        }
        let (process, contract) = exec_process(&r.bundle, o)?;
        Ok(run::join::exec(&self.root, id, &process, Some(&contract))?)
    }
}

fn to_run(e: OciError) -> RunError {
    match e {
        OciError::Run(r) => r,
        e => RunError::Usage(e.to_string()),
    }
}

/// The freezer file of the container's cgroups and the value for `on`.
fn freezer(cgroups: &[PathBuf], on: bool) -> Option<(PathBuf, &'static str)> {
    for d in cgroups {
        if d.join("cgroup.freeze").exists() {
            return Some((d.join("cgroup.freeze"), if on { "1" } else { "0" }));
        }
        if d.join("freezer.state").exists() {
            return Some((
                d.join("freezer.state"),
                if on { "FROZEN" } else { "THAWED" },
            ));
        }
    }
    None
}

fn frozen(cgroups: &[PathBuf]) -> bool {
    cgroups.iter().any(|d| {
        let v1 = fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN");
        let v2 = fs::read_to_string(d.join("cgroup.events"))
            .is_ok_and(|s| s.lines().any(|l| l == "frozen 1"));
        v1 || v2
    })
}

fn thaw(cgroups: &[PathBuf]) {
    if let Some((f, v)) = freezer(cgroups, false) {
        let _ = fs::write(f, v);
    }
}

/// Runs one hook with the state on its stdin, bounded by its timeout.
fn run_hook(stage: &'static str, h: &HookCmd, st: &OciState) -> Result<(), OciError> {
    let err = |why: String| OciError::Hook {
        stage,
        path: h.path.clone(),
        why,
    };
    let mut cmd = Command::new(&h.path);
    if let Some((argv0, rest)) = h.args.split_first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in &h.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| err(e.to_string()))?;
    let json = serde_json::to_vec(st).expect("json");
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is its business.
        let _ = stdin.write_all(&json);
    }
    let deadline = h
        .timeout
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = match deadline {
        None => child.wait().map_err(|e| err(e.to_string()))?,
        Some(d) => {
            let pidfd = run::sys::pidfd_open(child.id() as i32)
                .map_err(|e| err(io::Error::from_raw_os_error(e).to_string()))?;
            let left = d.saturating_duration_since(Instant::now());
            let mut pfd = [libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            let n = run::stdio::poll(&mut pfd, left.as_millis() as libc::c_int).unwrap_or(0);
            if n == 0 {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(format!("timed out after {}s", h.timeout.unwrap_or(0))));
            }
            child.wait().map_err(|e| err(e.to_string()))?
        }
    };
    if !status.success() {
        return Err(err(format!("failed: {status}")));
    }
    Ok(())
}

/// A signal by name (TERM, SIGTERM, any case) or number.
pub(crate) fn parse_signal(s: &str) -> Result<Signal, OciError> {
    run::spec::parse_signal(s)
        .and_then(|n| Signal::try_from(n).ok())
        .ok_or_else(|| OciError::Signal(s.to_string()))
}

/// The OCI features document (runtime spec, features.md): what this runtime honours.
pub(crate) fn features() -> oci_spec::runtime::Features {
    let caps: Vec<String> = run::spec::CAP_NAMES
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    let doc = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "dev", "diratime", "dirsync", "exec", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount",
            "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared",
            "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                               "SECCOMP_FILTER_FLAG_TSYNC"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                   "SECCOMP_FILTER_FLAG_TSYNC"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false}
        }
    });
    serde_json::from_value(doc).expect("a valid features document")
}

/// `spec`: the default config.json (oci-spec's, which is runc's: `sh` on a terminal),
/// hostname `locker`; `rootless`: a user namespace mapping the caller's ids to root
/// (which `create` refuses for now: see config.rs).
pub(crate) fn default_spec(rootless: bool) -> Result<oci_spec::runtime::Spec, OciError> {
    let mut spec = if rootless {
        oci_spec::runtime::Spec::rootless(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    } else {
        oci_spec::runtime::Spec::default()
    };
    spec.set_hostname(Some("locker".into()));
    Ok(spec)
}

/// runc's `exec` options.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecOpts {
    /// An OCI process object (JSON); None: the container's config.json process, with
    /// `args`.
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub tty: bool,
    pub cwd: Option<String>,
    /// K=V, over the process's.
    pub env: Vec<String>,
    /// UID[:GID], numbers.
    pub user: Option<String>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// The caller's fds 3..3+N pass to the process.
    pub preserve_fds: u32,
}

/// The process `exec` runs: `--process`'s, else the container's own (its bundle's
/// config.json) with ARGS, as runc does; then the options over it. Returns it as the
/// engine's `Process` and `ExecContract`.
fn exec_process(
    bundle: &Path,
    o: &ExecOpts,
) -> Result<(run::Process, run::spec::ExecContract), OciError> {
    let path = o
        .process
        .clone()
        .unwrap_or_else(|| bundle.join("config.json"));
    let bad = |why: String| OciError::Config {
        path: path.clone(),
        why,
    };
    let text = fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let mut p: oci_spec::runtime::Process = match &o.process {
        Some(_) => serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?,
        None => {
            let spec: oci_spec::runtime::Spec =
                serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
            let mut p = spec
                .process()
                .clone()
                .ok_or_else(|| bad("no process".into()))?;
            if o.args.is_empty() {
                return Err(bad("exec needs a command (ARGS or --process)".into()));
            }
            p.set_args(Some(o.args.clone()));
            // runc: a terminal only with --tty here, whatever the container has.
            p.set_terminal(Some(false));
            p
        }
    };
    if o.process.is_some() && !o.args.is_empty() {
        return Err(bad(
            "give the command in --process or as ARGS, not both".into()
        ));
    }
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(bad("process.args is empty".into()));
    }
    if p.apparmor_profile()
        .as_deref()
        .is_some_and(|s| !s.is_empty())
        || p.selinux_label().as_deref().is_some_and(|s| !s.is_empty())
    {
        return Err(bad("AppArmor and SELinux labels are not supported".into()));
    }
    if o.tty {
        p.set_terminal(Some(true));
    }
    let mut env: Vec<(String, String)> = p
        .env()
        .iter()
        .flatten()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    for kv in &o.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    }
    let (mut uid, mut gid) = (p.user().uid(), p.user().gid());
    if let Some(u) = &o.user {
        let num = |s: &str| {
            s.parse::<u32>().map_err(|_| OciError::Unsupported {
                field: "--user".into(),
                why: format!("{u:?}: use UID[:GID] as numbers"),
            })
        };
        match u.split_once(':') {
            Some((a, b)) => (uid, gid) = (num(a)?, num(b)?),
            None => uid = num(u)?,
        }
    }
    // A process.json's rlimits replace the container's (podman's conmon passes them);
    // the container's own process already has the container's.
    let rlimits = Some(config::rlimits(&p)?).filter(|r| o.process.is_some() && !r.is_empty());
    let process = run::Process {
        args: p.args().clone().unwrap_or_default(),
        env,
        cwd: Some(
            o.cwd
                .clone()
                .unwrap_or_else(|| p.cwd().to_string_lossy().into_owned()),
        ),
        user: None,
        terminal: p.terminal().unwrap_or(false),
        stdin: true,
        ..run::Process::default()
    };
    let contract = run::spec::ExecContract {
        uid,
        gid,
        additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        caps: config::cap_sets(&p)?,
        no_new_privileges: p.no_new_privileges(),
        rlimits,
        detach: o.detach,
        pid_file: o.pid_file.clone(),
        console_socket: o.console_socket.clone(),
        preserve_fds: o.preserve_fds,
    };
    Ok((process, contract))
}
