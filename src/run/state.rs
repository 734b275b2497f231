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
//! what is left of that container (the recorded PID 1, checked by start time, and
//! whatever is still in its cgroups) and removes its cgroups, mount point and state
//! file. The state has PID 1's pid from right after the clone.

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
    /// The store tree it runs on, so `rmi` and `gc` leave it alone.
    #[serde(default)]
    pub digest: String,
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
        if alive(s.locker_pid, s.locker_start) {
            continue;
        }
        match reap_one(root, &s) {
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

fn reap_one(root: &Path, s: &State) -> io::Result<()> {
    use nix::sys::signal::{kill, SIGKILL};
    use nix::unistd::Pid;
    if alive(s.pid, s.pid_start) {
        let _ = kill(Pid::from_raw(s.pid), SIGKILL);
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
        let cg_kill = dir.join("cgroup.kill");
        if s.cgroup_v2 && cg_kill.exists() && fs::write(&cg_kill, "1").is_ok() {
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
    crate::run::cgroups::remove_dirs(&s.cgroups, Duration::from_secs(2))
        .map_err(io::Error::other)?;
    let _ = fs::remove_dir(&s.base);
    match fs::remove_file(state_path(root, &s.id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
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

fn named_containers(root: &Path) -> Vec<(String, NamedMeta)> {
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

fn uptime(started: u64) -> String {
    let s = now().saturating_sub(started);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// `locker ps [-a] [--json]`.
pub(crate) fn ps(root: &Path, all: bool, json: bool) -> anyhow::Result<()> {
    let _ = reap_stale(root);
    let mut running: Vec<State> = read_states(root)
        .into_iter()
        .filter(State::running)
        .collect();
    running.sort_by_key(|s| s.started);
    let stopped: Vec<(String, NamedMeta)> = if all {
        named_containers(root)
            .into_iter()
            .filter(|(n, _)| !running.iter().any(|s| s.name.as_deref() == Some(n)))
            .collect()
    } else {
        Vec::new()
    };
    if json {
        let mut rows: Vec<serde_json::Value> = running
            .iter()
            .map(|s| {
                serde_json::json!({"id": s.id, "name": s.name, "image": s.image, "pid": s.pid, "command": s.command,
                    "started": s.started, "status": "running"})
            })
            .collect();
        rows.extend(stopped.iter().map(|(n, m)| serde_json::json!({"id": null, "name": n, "image": m.image, "pid": null, "command": null, "started": null, "status": "stopped"})));
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:>8} {:<10} COMMAND",
        "NAME", "IMAGE", "PID", "UP"
    );
    for s in &running {
        println!(
            "{:<16} {:<16} {:>8} {:<10} {}",
            s.name.as_deref().unwrap_or(&s.id),
            s.image,
            s.pid,
            uptime(s.started),
            s.command.join(" ")
        );
    }
    for (n, m) in &stopped {
        println!("{:<16} {:<16} {:>8} {:<10} -", n, m.image, "-", "stopped");
    }
    Ok(())
}

fn find_running(root: &Path, name: &str) -> Option<State> {
    read_states(root)
        .into_iter()
        .filter(State::running)
        .find(|s| s.name.as_deref() == Some(name) || s.id == name)
}

/// `locker stop NAME..`: SIGTERM to the container's PID 1 (which forwards it to the
/// command), SIGKILL after 10 s.
pub(crate) fn stop(root: &Path, names: &[String]) -> anyhow::Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for name in names {
        let s = find_running(root, name).ok_or_else(|| {
            anyhow::anyhow!(
                "stop {name}: no running container of that name or id; `locker ps` lists them"
            )
        })?;
        let _ = kill(Pid::from_raw(s.pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
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
    }
    Ok(())
}

/// `locker rm NAME..`: deletes stopped named containers.
pub(crate) fn rm(root: &Path, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        if find_running(root, name).is_some() {
            anyhow::bail!("rm {name}: the container is running; `locker stop {name}` first");
        }
        let dir = containers_dir(root).join(name);
        if name.contains('/') || name.starts_with('.') || !dir.join("meta.json").exists() {
            anyhow::bail!("rm {name}: no named container of that name; `locker ps -a` lists them");
        }
        // Take the lock: a run starting right now must not lose its layers under it.
        let lock = fs::File::options().write(true).open(dir.join("lock"))?;
        let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| anyhow::anyhow!("rm {name}: the container is in use"))?;
        crate::store::remove_tree(&dir)
            .map_err(|e| anyhow::anyhow!("rm {name}: remove {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// `locker exec NAME CMD..`: joins the namespaces and cgroup of the container's PID 1,
/// then forks; the child takes the same user, env and capability rules as `run` and
/// execs CMD. Returns its exit code (128+N for signal N; 126/127 as `run`).
pub(crate) fn exec(root: &Path, a: &crate::cli::ExecArgs) -> anyhow::Result<u8> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;

    use crate::run::{init, plan, read_in_root, RunError};
    use anyhow::Context;

    let s = find_running(root, &a.name).ok_or_else(|| {
        anyhow::anyhow!(
            "exec {}: no running container of that name or id; `locker ps` lists them",
            a.name
        )
    })?;
    // The container's own /etc, resolved inside its root.
    let croot =
        fs::File::open(format!("/proc/{}/root", s.pid)).context("open the container's root")?;
    let read = |rel: &std::ffi::CStr| -> String {
        read_in_root(croot.as_raw_fd(), rel).unwrap_or_default()
    };
    let facts = plan::ImageFacts {
        passwd: read(c"etc/passwd"),
        group: read(c"etc/group"),
        has_bash: false,
    };
    let hostname = read(c"etc/hostname").trim().to_string();
    let opts = plan::Options {
        image: s.image.clone(),
        env: a.env.clone(),
        tty: a.tty,
        interactive: a.interactive,
        ..Default::default()
    };
    let ctx = |e: RunError| anyhow::Error::new(e).context(format!("exec {}", a.name));
    let user = plan::resolve_user(a.user.as_deref(), &s.image, &facts).map_err(ctx)?;
    let env = plan::build_env(&opts, &user, &hostname, &|k| std::env::var(k).ok()).map_err(ctx)?;
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(plan::DEFAULT_PATH.to_string(), |(_, v)| v.clone());
    let cmd = &a.command[0];
    let candidates: Vec<CString> = if cmd.contains('/') {
        vec![CString::new(cmd.as_str())?]
    } else {
        path.split(':')
            .map(|d| CString::new(format!("{}/{cmd}", d.trim_end_matches('/'))))
            .collect::<Result<_, _>>()?
    };
    let argv_c: Vec<CString> = a
        .command
        .iter()
        .map(|s| CString::new(s.as_str()))
        .collect::<Result<_, _>>()?;
    let env_c: Vec<CString> = env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let argv = init::pointers(&argv_c);
    let envp = init::pointers(&env_c);
    let workdir = match &a.workdir {
        Some(w) => CString::new(format!("/{}", plan::container_path(w).map_err(ctx)?))?,
        None => CString::new("/")?,
    };
    // Read before the fork: the child allocates nothing.
    let cap_last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let mut ns = Vec::new();
    for n in ["ipc", "uts", "net", "pid", "cgroup", "mnt"] {
        ns.push(
            fs::File::open(format!("/proc/{}/ns/{n}", s.pid))
                .with_context(|| format!("open /proc/{}/ns/{n}", s.pid))?,
        );
    }
    if !alive(s.pid, s.pid_start) {
        anyhow::bail!("exec {}: the container stopped", a.name);
    }
    for dir in &s.cgroups {
        fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .with_context(|| format!("join cgroup {}", dir.display()))?;
    }
    let pty = if a.tty {
        Some(crate::run::tty::open_pty()?)
    } else {
        None
    };
    let mut signals = nix::sys::signal::SigSet::empty();
    for &sig in init::FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
        signals.add(nix::sys::signal::Signal::try_from(sig)?);
    }
    signals.thread_block()?;
    let (err_rd, err_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    for f in &ns {
        nix::sched::setns(f, nix::sched::CloneFlags::empty())
            .context("join the container's namespaces")?;
    }
    let child = unsafe { libc::fork() };
    if child < 0 {
        anyhow::bail!("fork: {}", io::Error::last_os_error());
    }
    if child == 0 {
        let slave = pty.as_ref().map(|p| p.slave.as_raw_fd());
        let code = init::exec_joined(
            &user,
            cap_last,
            &workdir,
            &candidates,
            &argv,
            &envp,
            slave,
            a.interactive,
            err_wr.as_raw_fd(),
        );
        unsafe { libc::_exit(code) };
    }
    drop(err_wr);
    let pid = nix::unistd::Pid::from_raw(child);
    let master = pty.map(|p| {
        drop(p.slave);
        p.master
    });
    let mut buf = Vec::new();
    let _ = io::Read::read_to_end(&mut fs::File::from(err_rd), &mut buf);
    if let Some(r) = init::Report::decode(&buf) {
        let _ = nix::sys::wait::waitpid(pid, None);
        let e = match r.step {
            init::Step::ExecNotFound => RunError::NotFound(cmd.clone()),
            init::Step::ExecDenied => RunError::NotExecutable {
                cmd: cmd.clone(),
                source: io::Error::from_raw_os_error(r.errno),
            },
            st => RunError::Setup {
                step: format!("{st:?}").to_lowercase(),
                source: io::Error::from_raw_os_error(r.errno),
            },
        };
        return Err(ctx(e));
    }
    let code = match master {
        Some(m) => crate::run::tty::relay(&m, pid, &signals, a.interactive),
        None => crate::run::supervise(pid, &signals),
    }
    .map_err(ctx)?;
    Ok(code)
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
            locker_pid: 0,
            locker_start: 0,
            pid: 0,
            pid_start: 0,
            started: 0,
            cgroup_v2: false,
            cgroups: vec![cgroup],
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
