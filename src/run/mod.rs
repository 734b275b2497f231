//! `locker run`, the parent side. Reads top to bottom as the steps: clean up stale
//! containers, plan (pure), prepare host-side resources (state file, cgroup, volume
//! fds, pipes, pty), clone once with every namespace, put the child in its cgroup,
//! release it, learn whether the exec worked, then relay signals (and the terminal)
//! until PID 1 exits; a guard removes cgroup, mount point and state on every path.
//! `run_in_tree` is the same path with the tree itself as a read-write root (no
//! overlay, sync calls suppressed): `locker build` configures packages with it.
//!
//! Single-threaded and allocation-complete before the clone (fork safety).

pub(crate) mod cgroups;
pub(crate) mod init;
pub(crate) mod mounts;
pub(crate) mod plan;
pub(crate) mod seccomp;
pub(crate) mod tty;

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cli::RunArgs;
use crate::containers::{self, NamedMeta, State};
use crate::path_error::{io_err, PathError};
use crate::store::Resolved;
use cgroups::{CgroupError, Limits};
use init::{Report, Step};
use plan::{Layers, MountOp};

#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error("{0}")]
    Usage(String),
    #[error("no {what} {name:?} in {file} of image {image}")]
    NoUser {
        what: &'static str,
        name: String,
        image: String,
        file: &'static str,
    },
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("container {0:?} is in use by a running container (`locker ps` shows it)")]
    NameInUse(String),
    #[error("container {name:?} was created from image {was}; run it with that image or `locker rm {name}`")]
    OtherImage { name: String, was: String },
    #[error("{0}")]
    Sys(&'static str, #[source] nix::Error),
    #[error("{step}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("command not found: {0}")]
    NotFound(String),
    #[error("cannot execute {cmd}")]
    NotExecutable {
        cmd: String,
        #[source]
        source: io::Error,
    },
}

impl RunError {
    /// Docker's convention: 127 not found, 126 not executable, 125 locker's own error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            RunError::NotFound(_) => 127,
            RunError::NotExecutable { .. } => 126,
            _ => 125,
        }
    }
}

fn cstring(p: &Path) -> Result<CString, RunError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| RunError::Usage(format!("path {p:?} contains a NUL byte")))
}

/// Runs `args` in `image`; returns the command's exit code (128+N for signal N).
pub(crate) fn run(root: &Path, image: &Resolved, args: &RunArgs) -> Result<u8, RunError> {
    run_with(root, image, args, false)
}

/// Runs `argv` with `tree` itself as the read-write root (no overlay): what the
/// command changes stays in `tree`. For `locker build`, which configures a tree that
/// becomes an image. `env` adds K=V pairs; `binds` are (host path, container path,
/// read-only). No /etc files are bound in, so none are left behind in the tree.
pub(crate) fn run_in_tree(
    root: &Path,
    tree: &Path,
    hostname: &str,
    argv: &[String],
    env: &[String],
    net_none: bool,
    binds: &[(PathBuf, String, bool)],
) -> Result<u8, RunError> {
    let image = Resolved {
        name: hostname.to_string(),
        digest: String::new(),
        rootfs: tree.to_path_buf(),
    };
    let args = RunArgs {
        name: None,
        hostname: Some(hostname.to_string()),
        env: env.to_vec(),
        env_file: Vec::new(),
        workdir: Some("/".into()),
        user: None,
        volumes: binds
            .iter()
            .map(|(host, ctr, ro)| {
                format!("{}:{ctr}{}", host.display(), if *ro { ":ro" } else { "" })
            })
            .collect(),
        tmpfs: Vec::new(),
        memory: None,
        pids: None,
        cpus: None,
        cgroup_parent: "locker".into(),
        net: if net_none { "none" } else { "host" }.into(),
        tty: false,
        interactive: false,
        read_only: false,
        image: hostname.to_string(),
        command: argv.to_vec(),
    };
    run_with(root, &image, &args, true)
}

fn run_with(root: &Path, image: &Resolved, args: &RunArgs, direct: bool) -> Result<u8, RunError> {
    // 1. Leftovers of containers whose `locker run` was killed.
    let _ = containers::reap_stale(root);

    // 2. The plan: pure, from options and what the image says.
    let opts = options(args, image)?;
    let limits = Limits {
        memory: args.memory.as_deref().map(plan::parse_size).transpose()?,
        pids: args.pids,
        cpus: match args.cpus {
            Some(c) if !(c > 0.0 && c.is_finite()) => {
                return Err(RunError::Usage(format!("bad --cpus {c}: must be > 0")))
            }
            c => c,
        },
    };
    let mut named = match &args.name {
        Some(n) => Some(Named::claim(root, n, image)?),
        None => None,
    };
    let facts = image_facts(&image.rootfs, named.as_ref().map(|n| n.upper.as_path()))?;
    let host_resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
    let (mut plan, resolv) = plan::build(&opts, &facts, &|k| std::env::var(k).ok(), &host_resolv)?;
    if direct {
        // Bound /etc files would become empty files in the tree once unmounted.
        plan.mounts
            .retain(|op| !matches!(op, MountOp::EtcFile { .. }));
        plan.suppress_sync = true;
    }

    // 3. Host-side resources, each owned by the guard from the moment it exists.
    let volumes = plan
        .volumes
        .iter()
        .map(|v| check_volume(&v.host))
        .collect::<Result<Vec<_>, _>>()?;
    let id = new_id()?;
    let run_dir = containers::run_dir(root);
    crate::store::private_dir(root).map_err(io_err("create", root))?;
    crate::store::private_dir(&run_dir).map_err(io_err("create", &run_dir))?;
    let base = run_dir.join(&id);
    let mut guard = Guard {
        root: root.to_path_buf(),
        id: id.clone(),
        base: base.clone(),
        cgroup: None,
        child: None,
        state: false,
    };
    std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
        .create(&base)
        .map_err(io_err("create", &base))?;
    let hierarchy = cgroups::detect(&limits);
    let cgroup = cgroups::create(&hierarchy, &args.cgroup_parent, &id, &limits)?;
    guard.cgroup = Some(cgroup.clone());
    let mut state = State {
        id: id.clone(),
        name: args.name.clone(),
        image: image.name.clone(),
        digest: image.digest.clone(),
        command: plan
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        locker_pid: std::process::id() as i32,
        locker_start: containers::start_time(std::process::id() as i32).unwrap_or(0),
        pid: 0,
        pid_start: 0,
        started: containers::now(),
        cgroup_v2: cgroup.v2,
        cgroups: cgroup.dirs.clone(),
        base: base.clone(),
    };
    containers::write_state(root, &state)
        .map_err(io_err("write state", &containers::state_path(root, &id)))?;
    guard.state = true;

    let layers = match &named {
        _ if direct => Layers::Direct,
        _ if args.read_only => Layers::ReadOnly,
        Some(n) => Layers::Disk {
            upper: cstring(&n.upper)?,
            work: cstring(&n.work)?,
        },
        None => Layers::Tmpfs,
    };
    let (upper, work) = match &layers {
        Layers::Disk { upper, work } => (upper.clone(), work.clone()),
        _ => (cstring(&base.join("upper"))?, cstring(&base.join("work"))?),
    };
    let lower = cstring(&image.rootfs)?;
    for p in [&lower, &upper, &work] {
        if p.as_bytes()
            .iter()
            .any(|b| matches!(b, b',' | b':' | b'\\'))
        {
            return Err(RunError::Usage(format!(
                "path {p:?} contains `,`, `:` or `\\`, which overlayfs cannot take"
            )));
        }
    }
    let overlay_data = CString::new(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.to_string_lossy(),
        upper.to_string_lossy(),
        work.to_string_lossy()
    ))
    .expect("no NUL");
    let base_c = cstring(&base)?;
    let sub = |s: &str| cstring(&base.join(s));
    let (root_c, upper_tmp, work_tmp, nodes_c, files_c) = (
        sub("root")?,
        sub("upper")?,
        sub("work")?,
        sub("nodes")?,
        sub("files")?,
    );
    let argv = init::pointers(&plan.argv);
    let envp = init::pointers(&plan.env);
    let cap_last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let (release_rd, release_wr) = pipe()?;
    let (error_rd, error_wr) = pipe()?;
    let parent_pidfd = pidfd_self()?;
    let pty = if plan.tty {
        Some(tty::open_pty()?)
    } else {
        None
    };
    let cgroup_fd = if cgroup.v2 {
        let d = &cgroup.dirs[0];
        Some(fs::File::open(d).map_err(io_err("open cgroup", d))?)
    } else {
        None
    };
    let tty_path = match &pty {
        Some(p) => Some(cstring(
            &fs::read_link(format!("/proc/self/fd/{}", p.slave.as_raw_fd()))
                .map_err(io_err("find pty", Path::new("/dev/pts")))?,
        )?),
        None => None,
    };
    let child = init::Child {
        plan: &plan,
        layers: &layers,
        base: mounts::Base {
            dir: &base_c,
            root: &root_c,
            upper: &upper_tmp,
            work: &work_tmp,
            nodes: &nodes_c,
            files: &files_c,
            lower: &lower,
            overlay_data: &overlay_data,
        },
        resolv: &resolv,
        volumes: &volumes,
        release_rd: release_rd.as_raw_fd(),
        release_wr: release_wr.as_raw_fd(),
        parent_pidfd: parent_pidfd.as_raw_fd(),
        error_wr: error_wr.as_raw_fd(),
        tty_slave: pty.as_ref().map(|p| p.slave.as_raw_fd()),
        tty_path: tty_path.as_deref(),
        unshare_cgroupns: !cgroup.v2,
        cap_last,
        envp: &envp,
        argv: &argv,
    };

    // 4. Signals wait for us (and for PID 1, which inherits the mask) from here on.
    let mut signals = SigSet::empty();
    for &s in init::FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
        signals.add(Signal::try_from(s).expect("signal"));
    }
    signals
        .thread_block()
        .map_err(|e| RunError::Sys("block signals", e))?;

    // 5. Clone once, with every namespace (and into the cgroup on v2).
    let pid = clone3(plan.ns_flags, cgroup_fd.as_ref().map(|f| f.as_raw_fd()))?;
    if pid == 0 {
        init::child_main(&child);
    }
    let pid = Pid::from_raw(pid);
    guard.child = Some(pid);
    if let Some(n) = named.as_mut() {
        n.keep = true;
    }
    drop((release_rd, error_wr, cgroup_fd, parent_pidfd));

    // 6. Record the pid (first: if we die from here on, reap_stale knows whom to
    // kill), into the cgroup (v1), release the child.
    state.pid = pid.as_raw();
    state.pid_start = containers::start_time(pid.as_raw()).unwrap_or(0);
    containers::write_state(root, &state)
        .map_err(io_err("write state", &containers::state_path(root, &id)))?;
    let pty = pty.map(|p| {
        drop(p.slave);
        p.master
    });
    if !cgroup.v2 {
        cgroup.join(pid.as_raw())?;
    }
    nix::unistd::write(&release_wr, b"x").map_err(|e| RunError::Sys("release the container", e))?;
    drop(release_wr);

    // 7. EOF: the command was exec'd. A report: which step failed.
    let mut buf = Vec::new();
    let mut error_rd = fs::File::from(error_rd);
    let _ = error_rd.read_to_end(&mut buf);
    if !buf.is_empty() {
        let _ = guard.wait();
        return Err(explain(&buf, &plan));
    }

    // 8. Relay until PID 1 exits; its status is the command's.
    let status = match pty {
        Some(master) => tty::relay(&master, pid, &signals, plan.stdin)?,
        None => supervise(pid, &signals)?,
    };
    guard.child = None;
    drop(named);
    guard.finish()?;
    let _ = signals.thread_unblock();
    Ok(status)
}

/// Options from the command line plus the files it names.
fn options(args: &RunArgs, image: &Resolved) -> Result<plan::Options, RunError> {
    let net_none = match args.net.as_str() {
        "host" => false,
        "none" => true,
        other => {
            return Err(RunError::Usage(format!(
                "bad --net {other:?}: use host or none"
            )))
        }
    };
    let env_files = args
        .env_file
        .iter()
        .map(|f| fs::read_to_string(f).map_err(io_err("read env file", f)))
        .collect::<Result<_, _>>()?;
    Ok(plan::Options {
        image: image.name.clone(),
        hostname: args.hostname.clone(),
        env: args.env.clone(),
        env_files,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        volumes: args.volumes.clone(),
        tmpfs: args.tmpfs.clone(),
        net_none,
        tty: args.tty,
        interactive: args.interactive,
        command: args.command.clone(),
    })
}

/// Reads /etc/passwd, /etc/group and whether /bin/bash exists, resolving every path
/// inside the image (an image's symlink never reaches the host's files). A named
/// container's upper layer wins over the image.
fn image_facts(rootfs: &Path, upper: Option<&Path>) -> Result<plan::ImageFacts, RunError> {
    let open_dir = |p: &Path| -> Result<fs::File, RunError> {
        Ok(fs::File::open(p).map_err(io_err("open image", p))?)
    };
    let lower = open_dir(rootfs)?;
    let upper = upper.and_then(|u| fs::File::open(u).ok());
    // The first layer that has the file decides (in upper, a whiteout or a FIFO
    // reads as empty).
    let read = |rel: &std::ffi::CStr| -> String {
        upper
            .iter()
            .chain(std::iter::once(&lower))
            .find_map(|dir| read_in_root(dir.as_raw_fd(), rel))
            .unwrap_or_default()
    };
    let has_bash = mounts::open_in_root(lower.as_raw_fd(), c"bin/bash", 0).is_ok();
    Ok(plan::ImageFacts {
        passwd: read(c"etc/passwd"),
        group: read(c"etc/group"),
        has_bash,
    })
}

/// Reads a small file of a container's tree on the host: `rel` resolved inside `dir`
/// (no symlink or magic link leaves it), opened non-blocking and without taking a
/// tty, read only when it is a regular file, at most 4 MiB. The container controls
/// these files: a FIFO would hang locker, a device node would be opened by the host.
/// None when there is no such file; empty when it is not a readable regular file.
pub(crate) fn read_in_root(dir: RawFd, rel: &std::ffi::CStr) -> Option<String> {
    const LIMIT: u64 = 4 << 20;
    let fd = match crate::openat2::openat2(
        dir,
        rel,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(libc::ENOENT) | Err(libc::ENOTDIR) => return None,
        Err(_) => return Some(String::new()),
    };
    let f = fs::File::from(fd);
    let regular = f.metadata().is_ok_and(|m| m.file_type().is_file());
    let mut buf = Vec::new();
    if !regular || f.take(LIMIT).read_to_end(&mut buf).is_err() {
        return Some(String::new());
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A volume's host path must exist (Docker would create it; locker refuses typos).
fn check_volume(host: &str) -> Result<CString, RunError> {
    let p = Path::new(host);
    fs::symlink_metadata(p).map_err(io_err("use volume source (it must exist on the host)", p))?;
    cstring(p)
}

fn new_id() -> Result<String, RunError> {
    let mut b = [0u8; 6];
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(RunError::Sys("getrandom", nix::Error::last()));
    }
    Ok(hex::encode(b))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RunError::Sys("pipe", e))
}

/// A pidfd of this process, for the child to tell whether we are still there.
fn pidfd_self() -> Result<OwnedFd, RunError> {
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if r < 0 {
        return Err(RunError::Sys("pidfd_open", nix::Error::last()));
    }
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(r as RawFd) })
}

/// clone3 without CLONE_VM: a fork into new namespaces (and, on v2, the cgroup).
fn clone3(ns_flags: u64, cgroup_fd: Option<RawFd>) -> Result<i32, RunError> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = ns_flags;
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP | libc::CLONE_NEWCGROUP as u64;
        args.cgroup = fd as u64;
    }
    args.exit_signal = libc::SIGCHLD as u64;
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if r < 0 {
        return Err(RunError::Sys(
            "clone the container (needs root)",
            nix::Error::last(),
        ));
    }
    Ok(r as i32)
}

/// Maps a wait status to an exit code (128+N for signal N).
fn exit_code(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, c) => Some(c as u8),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as u8),
        _ => None,
    }
}

/// Without a terminal: forward signals until PID 1 exits.
pub(crate) fn supervise(pid: Pid, signals: &SigSet) -> Result<u8, RunError> {
    loop {
        let sig = signals
            .wait()
            .map_err(|e| RunError::Sys("wait for signals", e))?;
        if sig == Signal::SIGCHLD {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(st) => {
                    if let Some(c) = exit_code(st) {
                        return Ok(c);
                    }
                }
                Err(e) => return Err(RunError::Sys("wait for the container", e)),
            }
        } else {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

/// The child's report as an error, naming the step (and the mount target).
fn explain(buf: &[u8], plan: &plan::Plan) -> RunError {
    let Some(r) = Report::decode(buf) else {
        return RunError::Setup {
            step: "set up the container".into(),
            source: io::Error::other("garbled report"),
        };
    };
    let source = io::Error::from_raw_os_error(r.errno);
    let cmd = plan.argv[0].to_string_lossy().into_owned();
    match r.step {
        Step::ExecNotFound => RunError::NotFound(cmd),
        Step::ExecDenied => RunError::NotExecutable { cmd, source },
        Step::Mount | Step::Pivot => {
            let target = match plan.mounts.get(r.index as usize) {
                Some(op) => format!(" {}", describe(op, plan)),
                None => String::new(),
            };
            RunError::Setup {
                step: format!("{}{target}", r.what),
                source,
            }
        }
        s => RunError::Setup {
            step: format!("{s:?}").to_lowercase(),
            source,
        },
    }
}

fn describe(op: &MountOp, plan: &plan::Plan) -> String {
    let show = |c: &CString| format!("/{}", c.to_string_lossy());
    match op {
        MountOp::Proc => "/proc".into(),
        MountOp::Sys => "/sys".into(),
        MountOp::Dev => "/dev".into(),
        MountOp::Console => "/dev/console".into(),
        MountOp::EtcFile { name } => format!("/etc/{name}"),
        MountOp::Bind { index, target, .. } => {
            format!("{} (volume {})", show(target), plan.volumes[*index].host)
        }
        MountOp::Tmpfs { target } | MountOp::Mask { target } | MountOp::ReadOnly { target } => {
            show(target)
        }
    }
}

/// Undoes everything `run` made on the host, on success, error or panic.
struct Guard {
    root: PathBuf,
    id: String,
    base: PathBuf,
    cgroup: Option<cgroups::Cgroup>,
    child: Option<Pid>,
    state: bool,
}

impl Guard {
    /// Waits for the child (PID 1) to exit; killing it if it lingers is Drop's job.
    fn wait(&mut self) -> Option<WaitStatus> {
        let pid = self.child.take()?;
        waitpid(pid, None).ok()
    }

    fn finish(mut self) -> Result<(), RunError> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<(), RunError> {
        if let Some(pid) = self.child.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(cg) = self.cgroup.take() {
            cg.remove(Duration::from_secs(2))?;
        }
        match fs::remove_dir(&self.base) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("remove", &self.base)(e).into())
            }
            _ => {}
        }
        if std::mem::take(&mut self.state) {
            let p = containers::state_path(&self.root, &self.id);
            fs::remove_file(&p).map_err(io_err("remove state", &p))?;
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

/// A named container's on-disk layers, locked for the run. Made by this run and the
/// run failed before the clone (bad volume, unknown user..): removed on drop, so a
/// typo leaves no container behind (pinning its image against rmi and gc).
struct Named {
    upper: PathBuf,
    work: PathBuf,
    dir: PathBuf,
    created: bool,
    keep: bool,
    _lock: Flock<fs::File>,
}

impl Drop for Named {
    fn drop(&mut self) {
        if self.created && !self.keep {
            let _ = crate::store::remove_tree(&self.dir);
        }
    }
}

impl Named {
    fn claim(root: &Path, name: &str, image: &Resolved) -> Result<Named, RunError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(RunError::Usage(format!(
                "bad container name {name:?}: use letters, digits, `_`, `.`, `-`"
            )));
        }
        let dir = containers::containers_dir(root).join(name);
        // upper/ and work/ below keep 0755: upper's mode is the container's `/`.
        for d in [&containers::containers_dir(root), &dir] {
            crate::store::private_dir(d).map_err(io_err("create", d))?;
        }
        let lock_path = dir.join("lock");
        let f = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
            .map_err(|_| RunError::NameInUse(name.to_string()))?;
        let meta_path = dir.join("meta.json");
        let created = !meta_path.exists();
        match fs::read(&meta_path) {
            Ok(b) => {
                let m: NamedMeta = serde_json::from_slice(&b)
                    .map_err(|e| io_err("read", &meta_path)(io::Error::other(e)))?;
                if m.image != image.name || (!m.digest.is_empty() && m.digest != image.digest) {
                    let short = &m.digest[..m.digest.len().min(12)];
                    return Err(RunError::OtherImage {
                        name: name.to_string(),
                        was: format!("{} (sha256:{short})", m.image),
                    });
                }
            }
            Err(_) => {
                fs::write(
                    &meta_path,
                    serde_json::to_vec(&NamedMeta {
                        image: image.name.clone(),
                        digest: image.digest.clone(),
                    })
                    .expect("json"),
                )
                .map_err(io_err("write", &meta_path))?;
            }
        }
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        for d in [&upper, &work] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        Ok(Named {
            upper,
            work,
            dir,
            created,
            keep: false,
            _lock: lock,
        })
    }
}
