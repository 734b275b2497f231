//! Container state on disk and the commands over it (ps, exec, stop, rm).
//!
//! Layout under ROOT:
//!   run/ID.json          one running container: pids (+ start times, against pid
//!                        reuse), cgroup dirs, name, image, command; written before
//!                        the clone, removed by `run` when the container ends
//!   run/ID/              the mount point of the container's tmpfs (only mounted
//!                        inside the container's mount namespace)
//!   containers/NAME/     a named container: upper/ work/ (its writes), meta.json
//!                        (image it was created from), lock (flock held while running)
//!
//! Invariant: a state file whose locker process is gone is stale; `reap_stale` kills
//! what is left of that container (only the recorded PID 1, checked by start time) and
//! removes its cgroups, mount point and state file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One container's record in ROOT/run/ID.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct State {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    pub command: Vec<String>,
    /// The `locker run` process (host pid) and its start time (clock ticks since boot).
    pub locker_pid: i32,
    pub locker_start: u64,
    /// The container's PID 1 as the host sees it; 0 before the clone.
    pub pid: i32,
    pub pid_start: u64,
    /// Unix seconds.
    pub started: u64,
    pub cgroup_v2: bool,
    pub cgroups: Vec<PathBuf>,
    pub base: PathBuf,
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

/// Start time of `pid` (field 22 of /proc/PID/stat), None if it is gone.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Is the process that was `pid` started at `start` still there (not a reused pid)?
pub(crate) fn alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

impl State {
    pub(crate) fn running(&self) -> bool {
        alive(self.locker_pid, self.locker_start)
            && (self.pid == 0 || alive(self.pid, self.pid_start))
    }
}

/// Removes what containers whose `locker run` died left behind: their PID 1 (if it
/// somehow outlived PDEATHSIG), cgroups, mount point and state file. Returns their ids.
pub(crate) fn reap_stale(root: &Path) -> io::Result<Vec<String>> {
    let mut reaped = Vec::new();
    for s in read_states(root) {
        if alive(s.locker_pid, s.locker_start) {
            continue;
        }
        if alive(s.pid, s.pid_start) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(s.pid),
                nix::sys::signal::SIGKILL,
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(s.pid, s.pid_start) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        crate::run::cgroups::remove_dirs(&s.cgroups, Duration::from_secs(2))
            .map_err(io::Error::other)?;
        let _ = fs::remove_dir(&s.base);
        match fs::remove_file(state_path(root, &s.id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        reaped.push(s.id);
    }
    Ok(reaped)
}
