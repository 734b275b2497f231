//! `exec`: a command in a running container. Joins the namespaces and cgroups of the
//! container's PID 1, forks, and the child takes the same exec tail as `run`'s command
//! (command.rs): the same user, environment, capability and working-directory rules,
//! the same errors and exit codes, the same stdio rule (stdio.rs). With -t the parent,
//! once in the container's mount namespace, makes the pty on the container's devpts
//! (tty.rs). The parent relays signals, stdio and the terminal as `run` does.
//!
//! The container's /etc files are read on the host through its root, each resolved
//! inside it and read only when it is a regular file (`read_in_root`).

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::sys::signal::{SigSet, Signal};

use super::command::{self, Command};
use super::plan::{self, ImageFacts};
use super::seccomp::Program;
use super::spec::{ExecContract, Process, Rlimit, Security};
use super::state::{self, alive};
use super::stdio::{self, Stdio};
use super::{cap_last, pipe, read_in_root, report, supervise, tty, RunError};

/// The process whose namespaces and root `exec` joins: PID 1, or, where the caller may
/// not look into it (an ordinary user: PID 1 is locker's own non-dumpable init, whose
/// memory belongs to the host's user namespace), the first of its children that the
/// caller may: the container's command, exec'd inside the container's namespaces.
fn entry_pid(pid1: i32) -> i32 {
    let readable = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok();
    if readable(pid1) {
        return pid1;
    }
    fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|&p| readable(p))
        .unwrap_or(pid1)
}

/// Runs `process` in the running container `name` (its name or id); returns the
/// command's exit code (0 once it runs, with `contract.detach`).
pub(crate) fn exec(
    root: &Path,
    name: &str,
    process: &Process,
    contract: Option<&ExecContract>,
) -> Result<u8, RunError> {
    // The command's stdio, first (stdio.rs): nothing opened below may sit on fds 0-2.
    let mut streams = match contract {
        Some(_) => Stdio::inherit(),
        None => Stdio::plan(process.stdin, process.terminal)?,
    };
    let detach = contract.is_some_and(|c| c.detach);
    let console_socket = contract.and_then(|c| c.console_socket.as_deref());
    if detach && process.terminal && console_socket.is_none() {
        return Err(RunError::Usage(format!(
            "exec {name}: a detached command's terminal needs --console-socket"
        )));
    }
    // Opened and connected while the host's paths are still ours (before the
    // namespaces).
    let pid_file =
        match contract.and_then(|c| c.pid_file.as_deref()) {
            Some(p) => Some(crate::fs::LaterFile::open(p).map_err(
                crate::fs::path_error::io_err("open the pid file's directory", p),
            )?),
            None => None,
        };
    let console = match console_socket {
        Some(p) if process.terminal => Some(std::os::unix::net::UnixStream::connect(p).map_err(
            crate::fs::path_error::io_err("connect to the console socket", p),
        )?),
        _ => None,
    };
    let s = state::find_running(root, name).ok_or_else(|| RunError::NotRunning(name.into()))?;
    let entry = entry_pid(s.pid);
    let proc_path = |p: &str| Path::new("/proc").join(entry.to_string()).join(p);
    let croot_path = proc_path("root");
    let croot = fs::File::open(&croot_path).map_err(crate::fs::path_error::io_err(
        "open the container's root",
        &croot_path,
    ))?;
    let read = |rel: &std::ffi::CStr| read_in_root(croot.as_raw_fd(), rel).unwrap_or_default();
    let facts = ImageFacts {
        passwd: read(c"etc/passwd"),
        group: read(c"etc/group"),
        has_bash: false,
    };
    let hostname = read(c"etc/hostname").trim().to_string();
    let (user, env) = match contract {
        Some(c) => (
            plan::User {
                uid: c.uid,
                gid: c.gid,
                groups: c.additional_gids.clone(),
                home: String::new(),
            },
            process.env.clone(),
        ),
        None => {
            let user = plan::resolve_user(process.user.as_deref(), &s.image, &facts)?;
            let env = plan::build_env(process, &user, &hostname, &|k| std::env::var(k).ok());
            (user, env)
        }
    };
    let cmd = process
        .args
        .first()
        .ok_or_else(|| RunError::Usage("exec needs a command".into()))?;
    let exec_paths = plan::exec_paths(cmd, &env)?;
    let argv_c = process
        .args
        .iter()
        .map(|a| plan::cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env_c = plan::env_cstrings(&env)?;
    let (argv, envp) = (plan::pointers(&argv_c), plan::pointers(&env_c));
    let workdir = plan::cstr(process.cwd.as_deref().unwrap_or("/"))?;
    // The container's own protections (a state without them: locker's defaults).
    let sec = s.security.clone().unwrap_or_else(|| {
        let d = Security::default();
        state::ExecSecurity {
            capabilities: d.capabilities,
            no_new_privileges: d.no_new_privileges,
            seccomp: plan::seccomp_program(&d)
                .ok()
                .flatten()
                .map(|p| hex::encode(p.to_bytes())),
            rlimits: Vec::new(),
            oom_score_adj: 0,
        }
    });
    let filter = match &sec.seccomp {
        Some(h) => Some(
            hex::decode(h)
                .ok()
                .and_then(|b| Program::from_bytes(&b))
                .ok_or_else(|| {
                    RunError::Usage(format!(
                        "container {name}: its state names a seccomp filter locker cannot read"
                    ))
                })?,
        ),
        None => None,
    };
    let rlimits: Vec<Rlimit> = match contract.and_then(|c| c.rlimits.clone()) {
        Some(own) => own,
        None => sec
            .rlimits
            .iter()
            .map(|&(resource, soft, hard)| Rlimit {
                resource,
                soft,
                hard,
            })
            .collect(),
    };
    let oom = plan::cstr(&sec.oom_score_adj.to_string())?;
    let cap_last = cap_last();
    let cap_sets = contract.and_then(|c| c.caps);
    let no_new_privileges = contract
        .and_then(|c| c.no_new_privileges)
        .unwrap_or(sec.no_new_privileges);

    // A rootless container's namespaces belong to its user namespace: that first. A
    // root-run `--userns auto` container's belong to host root, who joins them first
    // and its user namespace last, as its PID 1 did.
    let user_last = nix::unistd::geteuid().is_root() && !super::userns::rootless();
    let usage = |e: super::userns::UsernsError| RunError::Usage(format!("exec {name}: {e}"));
    let auto_userns = if user_last {
        super::userns::other_of(entry).map_err(usage)?
    } else {
        super::userns::join_of(entry).map_err(usage)?;
        None
    };
    let mut ns = Vec::new();
    for n in ["ipc", "uts", "net", "pid", "cgroup", "mnt"] {
        let p = proc_path(&format!("ns/{n}"));
        ns.push(fs::File::open(&p).map_err(crate::fs::path_error::io_err("open", &p))?);
    }
    if !alive(s.pid, s.pid_start) {
        return Err(RunError::NotRunning(name.into()));
    }
    for dir in &s.cgroups {
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, std::process::id().to_string())
            .map_err(crate::fs::path_error::io_err("join cgroup", dir))?;
    }
    let mut signals = SigSet::empty();
    for &sig in super::init::FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
        signals.add(Signal::try_from(sig).expect("signal"));
    }
    signals
        .thread_block()
        .map_err(|e| RunError::Sys("block signals", e))?;
    let (err_rd, err_wr) = pipe()?;
    for f in &ns {
        nix::sched::setns(f, nix::sched::CloneFlags::empty())
            .map_err(|e| RunError::Sys("join the container's namespaces", e))?;
    }
    if let Some(u) = auto_userns {
        let fd = std::os::fd::IntoRawFd::into_raw_fd(u);
        super::sys::become_root_of(fd).map_err(|e| {
            RunError::Sys(
                "join the container's user namespace",
                nix::Error::from_raw(e),
            )
        })?;
    }
    // -t: a pty from the container's devpts, now that its mount namespace (and root)
    // is ours.
    let pty = if process.terminal {
        let pty =
            crate::fs::openat2::openat2(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
                .and_then(|r| tty::open_in(r.as_raw_fd()))
                .map_err(|e| {
                    RunError::Sys(
                        "open a pty on the container's /dev/pts/ptmx",
                        nix::Error::from_raw(e),
                    )
                })?;
        if let Some(ws) = tty::host_winsize() {
            tty::set_winsize(pty.master.as_raw_fd(), &ws);
        }
        if let Some(sock) = &console {
            super::sys::send_fd(sock.as_raw_fd(), pty.master.as_raw_fd()).map_err(|e| {
                RunError::Sys(
                    "send the pty to the console socket",
                    nix::Error::from_raw(e),
                )
            })?;
        }
        Some(pty)
    } else {
        None
    };
    // SAFETY: fork in a single-threaded process; the child only makes syscalls (the
    // tail allocates nothing) until execve or _exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(RunError::Sys("fork", nix::Error::last()));
    }
    if child == 0 {
        command::exec(&Command {
            user: &user,
            workdir: &workdir,
            create_workdir: false,
            exec_paths: &exec_paths,
            argv: &argv,
            envp: &envp,
            tty: pty.as_ref().map(|p| p.slave.as_raw_fd()),
            stdio: streams.child,
            stdin: process.stdin,
            capabilities: cap_sets.map_or(sec.capabilities, |c| c.bounding),
            cap_sets,
            cap_last,
            no_new_privileges,
            seccomp: filter.as_ref(),
            rlimits: &rlimits,
            oom_score_adj: &oom,
            error_wr: err_wr.as_raw_fd(),
            start_fifo: -1,
            die_with_parent: !detach,
            umask: 0o022,
            preserve_fds: contract.map_or(0, |c| c.preserve_fds),
        });
    }
    drop(err_wr);
    streams.close_child_ends();
    let pid = nix::unistd::Pid::from_raw(child);
    // A console socket's peer holds the master now: ours goes.
    let master = pty.and_then(|p| {
        drop(p.slave);
        console.is_none().then_some(p.master)
    });
    let mut buf = Vec::new();
    let _ = fs::File::from(err_rd).read_to_end(&mut buf);
    if !buf.is_empty() {
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(report::explain(&buf, &argv_c[0], &[], &[]));
    }
    if let (Some(f), Some(p)) = (&pid_file, contract.and_then(|c| c.pid_file.as_deref())) {
        f.write(child.to_string().as_bytes())
            .map_err(crate::fs::path_error::io_err("write pid file", p))?;
    }
    if detach {
        // The command is the caller's subreaper's to wait for now.
        return Ok(0);
    }
    if let Some(m) = master {
        streams.attach_tty(m, process.stdin);
    }
    if streams.is_direct() {
        supervise(pid, &signals)
    } else {
        stdio::relay(streams, pid, &signals)
    }
}
