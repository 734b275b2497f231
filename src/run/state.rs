//! Container state on disk and the operations over it (list, stop, rm, reap).
//!
//! Layout under ROOT:
//!   run/ID.json          one running container: pids (+ start times, against pid
//!                        reuse), cgroup dirs, name, image, command; written before
//!                        the clone, removed by `run` when the container ends
//!   run/ID/              the mount point of the container's tmpfs (only mounted
//!                        inside the container's mount namespace)
//!   containers/NAME/     a named container: upper/ work/ (its writes), meta.json
//!                        (image it was created from), lock (flock held while running)
//!   containers/KEY/      a detached container's record (KEY: its name, or the id of an
//!                        unnamed one): config.json, status.json, ctr.log, attach.sock
//!                        (monitor.rs); its run/ID.json names the monitor as the parent
//!
//! Invariant: a state file whose locker process is gone is stale; `reap_stale` kills
//! what is left of that container (the recorded PID 1, checked by start time, and
//! whatever is still in its cgroups) and removes its cgroups, mount point and state
//! file. The state has PID 1's pid from right after the clone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::RunError;
use crate::fs::path_error::io_err;

/// One container's record in ROOT/run/ID.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct State {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    /// The store tree it runs on, so `rmi` and `gc` leave it alone.
    #[serde(default)]
    pub digest: String,
    pub command: Vec<String>,
    /// What `stop` sends first (an OCI image's StopSignal); SIGTERM when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// The PID namespace (its inode) the pids here mean something in; 0: unknown (a
    /// state from before it was recorded).
    #[serde(default)]
    pub pidns: u64,
    /// The `locker run` process (host pid) and its start time (clock ticks since boot).
    pub locker_pid: i32,
    pub locker_start: u64,
    /// The container's PID 1 as the host sees it; 0 before the clone.
    pub pid: i32,
    pub pid_start: u64,
    /// Unix seconds.
    pub started: u64,
    /// Cloned straight into its one cgroup2 cgroup (else joined to each by the parent).
    pub cgroup_v2: bool,
    /// What `exec` applies too: the container's capabilities, its seccomp filter (hex
    /// of the compiled program; None: unconfined), rlimits and OOM score.
    #[serde(default)]
    pub security: Option<ExecSecurity>,
    /// The payload's cgroups (PARENT/ID/ctr): `exec` joins these.
    pub cgroups: Vec<PathBuf>,
    /// Their parents, holding the limits (PARENT/ID): removed after `cgroups`.
    #[serde(default)]
    pub limit_cgroups: Vec<PathBuf>,
    pub base: PathBuf,
    /// On a bridge: its address, lease and published ports (undone if the run is
    /// killed), and the resolv.conf that `--net container:` shares.
    #[serde(default)]
    pub net: Option<NetState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct NetState {
    pub network: String,
    pub addr: std::net::Ipv4Addr,
    /// Its IPv6 address (a bridge with IPv6): its ports' IPv6 elements lead there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr6: Option<std::net::Ipv6Addr>,
    pub lease: PathBuf,
    pub ports: Vec<crate::run::net::PortMap>,
    pub resolv_conf: String,
    /// The bridge port's anti-spoofing elements (a container given NET_RAW/NET_ADMIN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<crate::run::net::firewall::PortGuard>,
}

pub(crate) fn run_dir(root: &Path) -> PathBuf {
    root.join("run")
}

pub(crate) fn state_path(root: &Path, id: &str) -> PathBuf {
    run_dir(root).join(format!("{id}.json"))
}

pub(crate) fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes the state by rename, so readers never see half a file.
pub(crate) fn write_state(root: &Path, s: &State) -> io::Result<()> {
    let path = state_path(root, &s.id);
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec(s).map_err(io::Error::other)?)?;
    fs::rename(&tmp, &path)
}

pub(crate) fn read_states(root: &Path) -> Vec<State> {
    let Ok(rd) = fs::read_dir(run_dir(root)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
        .collect()
}

/// Start time of `pid` (field 22 of /proc/PID/stat), None if it is gone (or a zombie:
/// a killed monitor whose new parent has not reaped it yet is dead all the same).
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    if after.starts_with(['Z', 'X']) {
        return None;
    }
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Is the process that was `pid` started at `start` still there (not a reused pid)?
pub(crate) fn alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// The inode of this process's PID namespace (0 if unreadable), read once: it is
/// asked for every state and lease a run looks at.
pub(crate) fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    static INO: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INO.get_or_init(|| fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino()))
}

/// Whether `recorded` (a state's or a lease's PID namespace) is another than ours:
/// its pids cannot be judged from here (a process is not "dead" because a child PID
/// namespace does not see it).
pub(crate) fn other_pid_namespace(recorded: u64) -> bool {
    recorded != 0 && recorded != pid_namespace()
}

impl State {
    pub(crate) fn running(&self) -> bool {
        alive(self.locker_pid, self.locker_start)
            && (self.pid == 0 || alive(self.pid, self.pid_start))
    }
}

/// Removes what containers whose `locker run` died left behind: every process still in
/// their cgroups (PID 1 if it somehow outlived PDEATHSIG, anything that escaped it),
/// the cgroups, mount point and state file, and state files half-written by a killed
/// run. One container that cannot be cleaned does not stop the others: the errors are
/// collected and returned together. Returns the ids reaped.
pub(crate) fn reap_stale(root: &Path) -> io::Result<Vec<String>> {
    if let Ok(rd) = fs::read_dir(run_dir(root)) {
        for e in rd.flatten() {
            // Old enough that no live `write_state` is between write and rename.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(60));
            if e.file_name().to_string_lossy().ends_with(".json.tmp") && old {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let mut reaped = Vec::new();
    let mut errors = Vec::new();
    for s in read_states(root) {
        if other_pid_namespace(s.pidns) || alive(s.locker_pid, s.locker_start) {
            continue;
        }
        match remove(root, &s) {
            Ok(()) => reaped.push(s.id),
            Err(e) => errors.push(format!("container {}: {e}", s.id)),
        }
    }
    if errors.is_empty() {
        Ok(reaped)
    } else {
        Err(io::Error::other(errors.join("; ")))
    }
}

/// Removes one container whatever its state: kills PID 1 and everything in its
/// cgroups, then removes the cgroups, mount point and state file (`reap_stale`, and an
/// OCI container's `delete`).
pub(crate) fn remove(root: &Path, s: &State) -> io::Result<()> {
    use nix::sys::signal::{kill, SIGKILL};
    use nix::unistd::Pid;
    // Its pids name other processes here: never signal them.
    if other_pid_namespace(s.pidns) {
        return Err(io::Error::other(format!(
            "container {} was started in another PID namespace; remove it from there",
            s.id
        )));
    }
    // A pidfd says at once when PID 1 is gone (no polling of /proc for it).
    let mut pidfd = None;
    if alive(s.pid, s.pid_start) {
        pidfd = crate::run::sys::pidfd_open(s.pid).ok();
        let _ = kill(Pid::from_raw(s.pid), SIGKILL);
    }
    if let Some(fd) = &pidfd {
        use std::os::fd::AsRawFd;
        let mut p = [libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let _ = crate::run::stdio::poll(&mut p, 5000);
    }
    let procs = |dir: &Path| -> Vec<i32> {
        fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p| p > 0)
            .collect()
    };
    for dir in &s.cgroups {
        // cgroup2 (a v2 host, or a hybrid host's unified mount) kills at once.
        let cg_kill = dir.join("cgroup.kill");
        if cg_kill.exists() && fs::write(&cg_kill, "1").is_ok() {
            continue;
        }
        for p in procs(dir) {
            let _ = kill(Pid::from_raw(p), SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while (alive(s.pid, s.pid_start) || s.cgroups.iter().any(|d| !procs(d).is_empty()))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let all: Vec<PathBuf> = s.cgroups.iter().chain(&s.limit_cgroups).cloned().collect();
    crate::run::cgroups::remove_dirs(&all, Duration::from_secs(2)).map_err(io::Error::other)?;
    // What a rootless container's slirp4netns left beside the (container-side) base.
    for f in ["slirp4netns.sock", "slirp4netns.log"] {
        let _ = fs::remove_file(s.base.join(f));
    }
    let _ = fs::remove_dir(&s.base);
    if let Some(n) = &s.net {
        crate::run::net::release_stale(&s.id, n);
    }
    match fs::remove_file(state_path(root, &s.id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The protections a container runs under, for `exec` to apply the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ExecSecurity {
    pub capabilities: u64,
    pub no_new_privileges: bool,
    pub seccomp: Option<String>,
    pub rlimits: Vec<(u32, u64, u64)>,
    pub oom_score_adj: i32,
}

/// A named container's record of the image it was made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NamedMeta {
    pub image: String,
    /// The tree its upper layer was made over; another tree under it would be a
    /// different filesystem.
    #[serde(default)]
    pub digest: String,
}

/// A container (running, or named and kept) that uses the store tree `digest`.
pub(crate) fn user_of(root: &Path, digest: &str) -> Option<String> {
    read_states(root)
        .into_iter()
        .filter(|s| s.digest == digest && s.running())
        .map(|s| s.name.unwrap_or(s.id))
        .chain(
            named_containers(root)
                .into_iter()
                .filter(|(_, m)| m.digest == digest)
                .map(|(n, _)| n),
        )
        .next()
}

pub(crate) fn named_containers(root: &Path) -> Vec<(String, NamedMeta)> {
    let Ok(rd) = fs::read_dir(containers_dir(root)) else {
        return Vec::new();
    };
    let mut v: Vec<(String, NamedMeta)> = rd
        .flatten()
        .filter_map(|e| {
            let meta = serde_json::from_slice(&fs::read(e.path().join("meta.json")).ok()?).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), meta))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

pub(crate) fn find_running(root: &Path, name: &str) -> Option<State> {
    read_states(root)
        .into_iter()
        .filter(State::running)
        .find(|s| s.name.as_deref() == Some(name) || s.id == name)
}

/// Stops the running container `name` (name or id): SIGTERM to its PID 1 (which
/// forwards it to the command), SIGKILL after `grace`; returns once `locker run` has
/// removed its state (bounded).
pub(crate) fn stop(root: &Path, name: &str, grace: Duration) -> Result<(), RunError> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let s = find_running(root, name).ok_or_else(|| RunError::NotRunning(name.into()))?;
    let first = s
        .stop_signal
        .and_then(|n| Signal::try_from(n).ok())
        .unwrap_or(Signal::SIGTERM);
    let _ = kill(Pid::from_raw(s.pid), first);
    let deadline = Instant::now() + grace;
    while alive(s.pid, s.pid_start) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(s.pid, s.pid_start) {
        let _ = kill(Pid::from_raw(s.pid), Signal::SIGKILL);
    }
    // `locker run` removes the state once it has reaped PID 1.
    let deadline = Instant::now() + Duration::from_secs(5);
    while state_path(root, &s.id).exists() && s.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Deletes the stopped named container `name` (its layers and record).
pub(crate) fn rm(root: &Path, name: &str) -> Result<(), RunError> {
    if find_running(root, name).is_some() {
        return Err(RunError::Running(name.into()));
    }
    let dir = containers_dir(root).join(name);
    if name.contains('/') || name.starts_with('.') || !dir.join("meta.json").exists() {
        return Err(RunError::NoContainer(name.into()));
    }
    // Take the lock: a run starting right now must not lose its layers under it.
    let lock_path = dir.join("lock");
    let lock = fs::File::options()
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| RunError::NameInUse(name.into()))?;
    crate::store::remove_tree(&dir).map_err(io_err("remove", &dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stale(root: &Path, id: &str, cgroup: PathBuf) {
        let s = State {
            id: id.into(),
            name: None,
            image: "img".into(),
            digest: String::new(),
            command: vec!["true".into()],
            stop_signal: None,
            pidns: 0,
            locker_pid: 0,
            locker_start: 0,
            pid: 0,
            pid_start: 0,
            started: 0,
            cgroup_v2: false,
            security: None,
            cgroups: vec![cgroup],
            limit_cgroups: Vec::new(),
            net: None,
            base: run_dir(root).join(id),
        };
        fs::create_dir_all(&s.base).unwrap();
        write_state(root, &s).unwrap();
    }

    /// One container whose cgroup can't be removed must not stop the others.
    #[test]
    fn reap_stale_goes_on_after_an_error() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let cg = root.join("cg");
        for id in ["a", "b", "c"] {
            fs::create_dir_all(cg.join(id)).unwrap();
            fs::write(cg.join(id).join("cgroup.procs"), "").unwrap();
            stale(root, id, cg.join(id));
        }
        // A fake cgroup dir is not removable while it holds a file: b fails.
        fs::remove_file(cg.join("a/cgroup.procs")).unwrap();
        fs::remove_file(cg.join("c/cgroup.procs")).unwrap();
        let old = run_dir(root).join("x.json.tmp");
        let fresh = run_dir(root).join("y.json.tmp");
        fs::write(&old, "{").unwrap();
        fs::write(&fresh, "{").unwrap();
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let e = reap_stale(root).unwrap_err();
        assert!(e.to_string().contains("container b"), "{e}");
        for id in ["a", "c"] {
            assert!(!state_path(root, id).exists(), "{id} reaped");
            assert!(!cg.join(id).exists() && !run_dir(root).join(id).exists());
        }
        assert!(state_path(root, "b").exists(), "b is kept for a retry");
        assert!(!old.exists(), "a killed run's half-written state goes");
        assert!(fresh.exists(), "one being written right now stays");
    }
}
