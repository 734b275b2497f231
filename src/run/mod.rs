//! `locker run`, the parent side. Reads top to bottom as the steps: decide the
//! container's stdio (stdio.rs), clean up stale containers, plan (pure), prepare
//! host-side resources (state file, cgroup, volume fds, pipes, console socket), clone
//! once with every namespace, put the child in its cgroup, release it, receive the
//! pty's master (-t), learn whether the exec worked, then relay signals, stdio and the
//! terminal until PID 1 exits; a guard removes cgroup, mount point and state on every
//! path.
//! `locker build` takes the same path with the tree itself as a read-write root
//! (`Root::Direct`: no overlay, sync calls suppressed) to configure packages.
//!
//! Single-threaded and allocation-complete before the clone (fork safety).

pub(crate) mod cgroups;
pub(crate) mod command;
pub(crate) mod devices;
pub(crate) mod init;
pub(crate) mod join;
pub(crate) mod monitor;
pub(crate) mod mounts;
pub(crate) mod net;
pub(crate) mod overlay;
pub(crate) mod plan;
pub(crate) mod report;
pub(crate) mod seccomp;
pub(crate) mod spec;
pub(crate) mod state;
pub(crate) mod stdio;
pub(crate) mod sys;
pub(crate) mod tty;
pub(crate) mod userns;

pub(crate) use spec::{Net, Process, Root, Spec};

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

use crate::exit::ExitStatus;
use crate::fs::path_error::{io_err, PathError};
use crate::store::Resolved;
use cgroups::CgroupError;
use plan::Layers;
use state::{NamedMeta, State};

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
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("container {0:?} is in use by a running container (`locker ps` shows it)")]
    NameInUse(String),
    #[error("no running container {0:?}; `locker ps` lists them")]
    NotRunning(String),
    #[error("container {0:?} is running; `locker stop {0}` first")]
    Running(String),
    #[error("no named container {0:?}; `locker ps -a` lists them")]
    NoContainer(String),
    #[error("container {name:?} was created from image {was}; run it with that image or `locker rm {name}`")]
    OtherImage { name: String, was: String },
    #[error("{0}")]
    Sys(&'static str, #[source] nix::Error),
    #[error("flatten the {layers} layers of image {image} (this kernel's overlayfs takes no `lowerdir+`)")]
    Flatten {
        image: String,
        layers: usize,
        #[source]
        source: Box<crate::store::StoreError>,
    },
    #[error("{step}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("command not found: {0}")]
    NotFound(String),
    /// An error a detached container's monitor reported (its one line and exit code).
    #[error("{message}")]
    Reported { code: u8, message: String },
    #[error("cannot execute {cmd}")]
    NotExecutable {
        cmd: String,
        #[source]
        source: io::Error,
    },
}

impl RunError {
    /// Docker's convention: 127 not found, 126 not executable, 125 locker's own error.
    pub(crate) fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::NotFound(_) => ExitStatus::NotFound,
            RunError::NotExecutable { .. } => ExitStatus::CannotExecute,
            RunError::Reported { code: 126, .. } => ExitStatus::CannotExecute,
            RunError::Reported { code: 127, .. } => ExitStatus::NotFound,
            _ => ExitStatus::Failure,
        }
    }
}

fn cstring(p: &Path) -> Result<CString, RunError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| RunError::Usage(format!("path {p:?} contains a NUL byte")))
}

/// The highest capability this kernel knows (the bounding set is trimmed up to it).
pub(crate) fn cap_last() -> u32 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// A CLOEXEC pipe (release and error pipes between parent and child).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RunError::Sys("pipe", e))
}

/// The most lower layers `--userns auto` idmaps (each is an fd the child keeps until
/// it attaches it).
pub(crate) const MAX_IDMAPPED_LAYERS: usize = 48;

/// Runs the container `spec` describes, its state under `root`; returns the command's
/// exit status.
pub(crate) fn run(root: &Path, spec: &Spec) -> Result<u8, RunError> {
    let Started {
        guard,
        named,
        pid,
        signals,
        mut streams,
        master,
        stdin,
    } = start(root, spec)?;
    // 8. Relay until PID 1 exits; its status is the command's.
    if let Some(m) = master {
        streams.attach_tty(m, stdin);
    }
    let status = if streams.is_direct() {
        supervise(pid, &signals)?
    } else {
        stdio::relay(streams, pid, &signals)?
    };
    finish(guard, named)?;
    let _ = signals.thread_unblock();
    Ok(status)
}

/// A container whose command was exec'd: what its parent (`run`, or a detached
/// container's monitor) holds until PID 1 exits.
pub(crate) struct Started {
    guard: Guard,
    named: Option<Named>,
    /// PID 1, the parent's child.
    pub pid: Pid,
    /// Blocked in this thread (and inherited by PID 1, which unblocks its own).
    pub signals: SigSet,
    pub streams: stdio::Stdio,
    /// With -t: the pty's master.
    pub master: Option<OwnedFd>,
    /// The command reads stdin (-i).
    pub stdin: bool,
}

impl Started {
    /// Leaves the container running past this process (an OCI container, which
    /// `delete` removes): nothing is undone here; returns PID 1.
    pub(crate) fn keep(mut self) -> Pid {
        self.guard.child = None;
        self.guard.cgroup = None;
        self.guard.state = false;
        self.guard.base = PathBuf::new();
        self.guard.net = None;
        self.guard.net_prepared = None;
        self.pid
    }

    /// PID 1 was reaped: removes what the container had on the host.
    pub(crate) fn finish(self) -> Result<(), RunError> {
        finish(self.guard, self.named)
    }
}

fn finish(mut guard: Guard, named: Option<Named>) -> Result<(), RunError> {
    guard.child = None;
    drop(named);
    guard.finish()
}

/// Steps 0-7 of `run`: everything up to the exec'd command, whose parent the caller is.
pub(crate) fn start(root: &Path, spec: &Spec) -> Result<Started, RunError> {
    start_with(root, spec, &mut |_| Ok(()))
}

/// `start`, with `before_release` called with PID 1's pid between the clone and the
/// release (an OCI container's prestart and createRuntime hooks run there).
pub(crate) fn start_with(
    root: &Path,
    spec: &Spec,
    before_release: &mut dyn FnMut(Pid) -> Result<(), RunError>,
) -> Result<Started, RunError> {
    let contract = spec.contract.as_ref();
    // 0. The container's stdio, first: nothing run opens may sit on a closed fd 0-2.
    let mut streams = match contract {
        Some(_) => stdio::Stdio::inherit(),
        None => stdio::Stdio::plan(spec.process.stdin, spec.process.terminal)?,
    };

    // 1. Leftovers of containers whose `locker run` was killed (an OCI container
    // outlives its `create` on purpose: `delete` removes it).
    if contract.is_none() {
        let _ = state::reap_stale(root);
    }

    // 2. The plan: pure, from the spec and what the image says.
    let image = &spec.image;
    let limits = spec.resources;
    let mut named = match &spec.name {
        Some(n) => Some(Named::claim(root, n, image)?),
        None => None,
    };
    let facts = match contract {
        Some(_) => plan::ImageFacts::default(),
        None => image_facts(
            &image.lower_dirs(),
            named.as_ref().map(|n| n.upper.as_path()),
        )?,
    };
    let host_resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
    let (mut plan, mut resolv) =
        plan::build(spec, &facts, &|k| std::env::var(k).ok(), &host_resolv)?;

    // 3. Host-side resources, each owned by the guard from the moment it exists.
    let volumes = plan
        .volumes
        .iter()
        .map(|v| check_volume(v))
        .collect::<Result<Vec<_>, _>>()?;
    let id = match &spec.id {
        Some(id) => id.clone(),
        None => hex::encode(
            sys::random_bytes::<6>()
                .map_err(|e| RunError::Sys("getrandom", nix::Error::from_raw(e)))?,
        ),
    };
    let run_dir = state::run_dir(root);
    crate::store::root_dir(root).map_err(io_err("use store directory", root))?;
    crate::store::private_dir(&run_dir).map_err(io_err("create", &run_dir))?;
    let base = run_dir.join(&id);
    let mut guard = Guard {
        root: root.to_path_buf(),
        id: id.clone(),
        base: base.clone(),
        cgroup: None,
        child: None,
        state: false,
        net_prepared: None,
        net: None,
        slirp: None,
        userns: None,
    };
    std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
        .create(&base)
        .map_err(io_err("create", &base))?;
    // The network: a bridge lease and ports (wired up after the clone), or another
    // container's namespace to join.
    let mut shared_hosts = None;
    let mut join_netns = None;
    let mut net_state = None;
    let mut slirp_ports = None;
    let mut slirp_dns = false;
    match &spec.net {
        // An ordinary user's container: user-mode networking (net/slirp.rs).
        Net::Bridge { network, ports } if userns::rootless() => {
            if network.name != net::network::DEFAULT {
                return Err(RunError::Usage(format!(
                    "named networks ({}) need root: a rootless container has its own private network only",
                    network.name
                )));
            }
            // The root path's choice (net/dns.rs): --dns, the host's servers, or
            // systemd-resolved's upstream; only a host with nothing but a loopback
            // stub gets slirp's own 10.0.2.3, which forwards to it.
            let host = String::from_utf8_lossy(&host_resolv);
            let stub = fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
            resolv = match net::dns::choose(&spec.dns, &host, stub.as_deref()) {
                r @ net::dns::Resolvers::Direct(_) => net::dns::resolv_conf(&r, &host).into_bytes(),
                net::dns::Resolvers::Forward(_) => {
                    slirp_dns = true;
                    net::slirp::RESOLV_CONF.as_bytes().to_vec()
                }
            };
            let hostname = plan.hostname.to_string_lossy().into_owned();
            plan.hosts = plan::hosts_file(
                &hostname,
                false,
                Some(net::slirp::GUEST_ADDR),
                &spec.add_hosts,
            );
            slirp_ports = Some(ports.clone());
        }
        Net::Bridge { network, ports } => {
            let host = String::from_utf8_lossy(&host_resolv);
            // NET_ADMIN (12) or NET_RAW (13): it could forge frames on the bridge.
            let forges = spec.security.capabilities & (1 << 12 | 1 << 13) != 0;
            let p = net::prepare(
                network,
                &id,
                spec.name.as_deref(),
                ports,
                &spec.dns,
                &host,
                forges,
            )?;
            resolv = p.resolv_conf.clone().into_bytes();
            let hostname = plan.hostname.to_string_lossy().into_owned();
            plan.hosts = plan::hosts_file(&hostname, false, Some(p.addr()), &spec.add_hosts);
            shared_hosts = p.shared_hosts()?.map(|h| cstring(&h)).transpose()?;
            net_state = Some(state::NetState {
                network: network.name.clone(),
                addr: p.addr(),
                addr6: p.addr6(),
                lease: p.lease_path().to_path_buf(),
                ports: ports.clone(),
                resolv_conf: p.resolv_conf.clone(),
                guard: p.guard.clone(),
            });
            guard.net_prepared = Some(p);
        }
        Net::Container(other) => {
            let s = state::find_running(root, other)
                .ok_or_else(|| RunError::NotRunning(other.clone()))?;
            if let Some(n) = &s.net {
                resolv = n.resolv_conf.clone().into_bytes();
            }
            let p = PathBuf::from(format!("/proc/{}/ns/net", s.pid));
            let f = fs::File::open(&p).map_err(io_err("open the network namespace", &p))?;
            // The pid may have been reused between the lookup and the open.
            if !state::alive(s.pid, s.pid_start) {
                return Err(RunError::NotRunning(other.clone()));
            }
            join_netns = Some(f);
        }
        Net::Host | Net::None => {}
    }
    let hierarchy = if userns::rootless() {
        cgroups::detect_rootless(&limits, spec.limits_asked)?
    } else {
        Some(cgroups::detect(&limits))
    };
    let cgroup_name = contract
        .and_then(|c| c.cgroup_name.as_deref())
        .unwrap_or(&id);
    let mut cgroup = match &hierarchy {
        Some(h) => cgroups::create(h, &spec.cgroup_parent, cgroup_name, &limits)?,
        None => cgroups::Cgroup::none(),
    };
    if contract.is_some() {
        guard.cgroup = Some(cgroup.clone());
        cgroup = cgroup.flatten()?;
    }
    guard.cgroup = Some(cgroup.clone());
    let mut state = State {
        id: id.clone(),
        name: spec.name.clone(),
        image: image.name.clone(),
        digest: image.digest.clone(),
        command: plan
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        stop_signal: image
            .config
            .as_ref()
            .and_then(|c| c.stop_signal.as_deref())
            .and_then(spec::parse_signal),
        pidns: state::pid_namespace(),
        locker_pid: std::process::id() as i32,
        locker_start: state::start_time(std::process::id() as i32).unwrap_or(0),
        pid: 0,
        pid_start: 0,
        started: state::now(),
        cgroup_v2: cgroup.v1_tasks().is_empty(),
        security: Some(state::ExecSecurity {
            capabilities: plan.capabilities,
            no_new_privileges: plan.no_new_privileges,
            seccomp: plan.seccomp.as_ref().map(|p| hex::encode(p.to_bytes())),
            rlimits: plan
                .rlimits
                .iter()
                .map(|r| (r.resource, r.soft, r.hard))
                .collect(),
            oom_score_adj: spec.process.oom_score_adj,
        }),
        cgroups: cgroup.dirs.clone(),
        limit_cgroups: cgroup.limit_dirs.clone(),
        base: base.clone(),
        net: net_state,
    };
    state::write_state(root, &state)
        .map_err(io_err("write state", &state::state_path(root, &id)))?;
    guard.state = true;

    // --userns auto: the container's own id range, and each lower layer seen through
    // it (idmapped mounts, attached at base/lN by the child).
    let usage = |e: userns::UsernsError| RunError::Usage(e.to_string());
    let contract_map = spec.contract.as_ref().and_then(|c| c.userns.clone());
    let auto = match contract_map {
        _ if spec.userns_auto => Some(userns::auto().map_err(usage)?),
        Some(map) => Some(userns::mapped(map).map_err(usage)?),
        None => None,
    };
    let mut idmapped = Vec::new();
    let (layers, lowers, overlay) = root_layers(
        root,
        spec,
        image,
        named.as_ref(),
        &base,
        (auto.as_ref().filter(|_| spec.userns_auto), &mut idmapped),
    )?;
    let lower_top = lowers[0].clone();
    let base_c = cstring(&base)?;
    let sub = |s: &str| cstring(&base.join(s));
    let (root_c, upper_tmp, work_tmp, nodes_c, files_c) = (
        sub("root")?,
        sub("upper")?,
        sub("work")?,
        sub("nodes")?,
        sub("files")?,
    );
    let argv = plan::pointers(&plan.argv);
    let envp = plan::pointers(&plan.env);
    let cap_last = cap_last();
    let (release_rd, release_wr) = pipe()?;
    let (error_rd, error_wr) = pipe()?;
    // A network to wire up after the clone: the child mounts its root meanwhile and
    // waits for this pipe's byte only before it needs the network (init.rs).
    let wired = if guard.net_prepared.is_some() || slirp_ports.is_some() {
        Some(pipe()?)
    } else {
        None
    };
    let parent_pidfd =
        sys::pidfd_self().map_err(|e| RunError::Sys("pidfd_open", nix::Error::from_raw(e)))?;
    // -t: the child makes the pty on the container's devpts and sends us the master
    // (an OCI container's goes to its console socket instead).
    let console_socket = match contract.and_then(|c| c.console_socket.as_ref()) {
        Some(p) if plan.tty => Some(
            std::os::unix::net::UnixStream::connect(p)
                .map_err(io_err("connect to the console socket", p))?,
        ),
        _ => None,
    };
    let console = if plan.tty && console_socket.is_none() {
        Some(sys::socketpair().map_err(|e| RunError::Sys("socketpair", nix::Error::from_raw(e)))?)
    } else {
        None
    };
    let winsize = match spec.winsize {
        _ if !plan.tty => None,
        Some((rows, cols)) => Some(libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None => tty::host_winsize(),
    };
    let cgroup_fd = match &cgroup.clone_into {
        Some(d) => Some(fs::File::open(d).map_err(io_err("open cgroup", d))?),
        None => None,
    };
    // The child moves itself into each v1 hierarchy (see cgroups::Cgroup).
    let tasks: Vec<fs::File> = cgroup
        .v1_tasks()
        .iter()
        .map(|t| {
            fs::OpenOptions::new()
                .write(true)
                .open(t)
                .map_err(io_err("open cgroup", t))
        })
        .collect::<Result<_, _>>()?;
    let task_fds: Vec<RawFd> = tasks.iter().map(|f| f.as_raw_fd()).collect();
    let idmapped_fds: Vec<RawFd> = idmapped.iter().map(|(f, _)| f.as_raw_fd()).collect();
    let idmapped_at: Vec<(RawFd, &std::ffi::CStr)> = idmapped
        .iter()
        .map(|(f, at)| (f.as_raw_fd(), at.as_c_str()))
        .collect();
    // Namespaces joined by path: the PID namespace by the parent (it applies to the
    // children it makes), the others by the child.
    let mut join_files = Vec::new();
    for (flag, path) in contract.map_or(&[][..], |c| &c.join_namespaces[..]) {
        let f = fs::File::open(path).map_err(io_err("open the namespace", path))?;
        if *flag == libc::CLONE_NEWPID as u64 {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(|e| RunError::Sys("join the pid namespace", e))?;
        } else {
            join_files.push((f, *flag as libc::c_int));
        }
    }
    let join_ns: Vec<(RawFd, libc::c_int)> = join_files
        .iter()
        .map(|(f, t)| (f.as_raw_fd(), *t))
        .collect();
    let start_fifo = match contract.and_then(|c| c.exec_fifo.as_ref()) {
        Some(p) => Some(
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .map_err(io_err("open", p))?,
        ),
        None => None,
    };
    let console_sock = match (&console_socket, &console) {
        (Some(s), _) => s.as_raw_fd(),
        (None, Some((_, theirs))) => theirs.as_raw_fd(),
        (None, None) => -1,
    };
    let start_fifo_fd = start_fifo.as_ref().map_or(-1, |f| f.as_raw_fd());
    let mut keep = vec![
        release_rd.as_raw_fd(),
        error_wr.as_raw_fd(),
        parent_pidfd.as_raw_fd(),
        console_sock,
        join_netns.as_ref().map_or(-1, |f| f.as_raw_fd()),
        start_fifo_fd,
    ];
    keep.extend(join_ns.iter().map(|(fd, _)| *fd));
    let child = init::Child {
        plan: &plan,
        layers: &layers,
        userns: auto.as_ref().map_or(-1, |a| a.userns.as_raw_fd()),
        idmapped: &idmapped_fds,
        base: mounts::Base {
            dir: &base_c,
            root: &root_c,
            upper: &upper_tmp,
            work: &work_tmp,
            nodes: &nodes_c,
            files: &files_c,
            lower: &lower_top,
            overlay: overlay.as_ref(),
            idmapped: &idmapped_at,
            owner: auto
                .as_ref()
                .filter(|_| spec.userns_auto)
                .map(|a| (a.map.uids[0].outside, a.map.gids[0].outside)),
        },
        resolv: &resolv,
        shared_hosts: shared_hosts.as_deref(),
        join_netns: join_netns.as_ref().map_or(-1, |f| f.as_raw_fd()),
        volumes: &volumes,
        release_rd: release_rd.as_raw_fd(),
        release_wr: release_wr.as_raw_fd(),
        wired_rd: wired.as_ref().map_or(-1, |(rd, _)| rd.as_raw_fd()),
        parent_pidfd: parent_pidfd.as_raw_fd(),
        error_wr: error_wr.as_raw_fd(),
        stdio: streams.child,
        console_sock,
        winsize,
        cgroup_tasks: &task_fds,
        cap_last,
        envp: &envp,
        argv: &argv,
        join_ns: &join_ns,
        start_fifo: start_fifo_fd,
        keep: &keep,
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
    let into = cgroup_fd.as_ref().map(|f| f.as_raw_fd());
    let pid = sys::clone3(plan.ns_flags, into, task_fds.is_empty() && plan.cgroupns)
        .map_err(|e| RunError::Sys("clone the container (needs root)", nix::Error::from_raw(e)))?;
    if pid == 0 {
        init::child_main(&child);
    }
    let pid = Pid::from_raw(pid);
    guard.child = Some(pid);
    if let Some(n) = named.as_mut() {
        n.keep = true;
    }
    drop((
        release_rd,
        error_wr,
        cgroup_fd,
        tasks,
        parent_pidfd,
        join_netns,
        idmapped,
        join_files,
        start_fifo,
        console_socket,
    ));
    guard.userns = auto;
    let (wired_rd, wired_wr) = wired.unzip();
    drop(wired_rd);
    streams.close_child_ends();
    let console = console.map(|(ours, _theirs)| ours);

    // 6. Record the pid (first: if we die from here on, reap_stale knows whom to
    // kill), into the cgroup (v1), release the child.
    state.pid = pid.as_raw();
    state.pid_start = state::start_time(pid.as_raw()).unwrap_or(0);
    state::write_state(root, &state)
        .map_err(io_err("write state", &state::state_path(root, &id)))?;
    before_release(pid)?;
    nix::unistd::write(&release_wr, b"x").map_err(|e| RunError::Sys("release the container", e))?;
    drop(release_wr);

    // 6b. The network, wired while the child mounts its root (the state already names
    // what a kill would leave); then the child may go on to the network's steps. A
    // child that failed first is what the user hears of.
    if let Some(wired_wr) = wired_wr {
        let attached = (|| -> Result<(), RunError> {
            if let Some(p) = guard.net_prepared.take() {
                guard.net = Some(p.attach(pid.as_raw())?);
            }
            if let Some(ports) = &slirp_ports {
                guard.slirp = Some(net::slirp::start(pid.as_raw(), ports, &base, slirp_dns)?);
            }
            Ok(())
        })();
        if let Err(e) = attached {
            drop(wired_wr);
            let mut buf = Vec::new();
            let _ = fs::File::from(error_rd).read_to_end(&mut buf);
            let _ = guard.wait();
            return Err(match report::Report::decode(&buf) {
                Some(r) if r.step != report::Step::Release => {
                    report::explain(&buf, &plan.argv[0], &plan.mounts, &plan.volumes)
                }
                _ => e,
            });
        }
        nix::unistd::write(&wired_wr, b"x")
            .map_err(|e| RunError::Sys("release the container to its network", e))?;
    }

    // 7. The pty's master (-t), sent before the exec (None: the child failed first,
    // and its report says why). Then EOF: the command was exec'd; a report: which step
    // failed.
    let master = match &console {
        Some(sock) => sys::recv_fd(sock.as_raw_fd())
            .map_err(|e| RunError::Sys("receive the console", nix::Error::from_raw(e)))?,
        None => None,
    };
    // An OCI console socket's peer got the master, not us.
    let want_master = console.is_some();
    drop(console);
    let mut buf = Vec::new();
    let mut error_rd = fs::File::from(error_rd);
    let _ = error_rd.read_to_end(&mut buf);
    if !buf.is_empty() {
        let _ = guard.wait();
        return Err(report::explain(
            &buf,
            &plan.argv[0],
            &plan.mounts,
            &plan.volumes,
        ));
    }

    if master.is_none() && want_master {
        let _ = guard.wait();
        return Err(RunError::Setup {
            step: "receive the console".into(),
            source: io::Error::from_raw_os_error(libc::EPIPE),
        });
    }
    Ok(Started {
        guard,
        named,
        pid,
        signals,
        streams,
        master,
        stdin: plan.stdin,
    })
}

/// How the root is made: the layer kind, the lower directories (top first) and the
/// overlay to mount (none for a bound tree). A stack one overlay cannot take on this
/// kernel is flattened into one cached tree in the store (store::flat). With
/// `--userns auto` each lower directory is an idmapped mount (its fd and where the child
/// attaches it, base/lN, pushed to `idmapped`); a stack deeper than
/// `MAX_IDMAPPED_LAYERS` is flattened first.
fn root_layers(
    root: &Path,
    spec: &Spec,
    image: &Resolved,
    named: Option<&Named>,
    base: &Path,
    (auto, idmapped): (Option<&userns::Auto>, &mut Vec<(OwnedFd, CString)>),
) -> Result<(Layers, Vec<CString>, Option<overlay::Overlay>), RunError> {
    let mut dirs: Vec<PathBuf> = image.lower_dirs().iter().map(|p| p.to_path_buf()).collect();
    let fsconfig = dirs.len() > 1 && overlay::fsconfig_lowerdir_plus();
    let flatten = |layers: usize| {
        crate::store::Store::existing(root)
            .flatten(&image.lowers)
            .map_err(|e| RunError::Flatten {
                image: image.name.clone(),
                layers,
                source: Box::new(e),
            })
    };
    if auto.is_some() && dirs.len() > MAX_IDMAPPED_LAYERS {
        dirs = vec![flatten(dirs.len())?];
    }
    loop {
        let layers = match named {
            // An OCI bundle's root: bound as it is (config.json's root.readonly).
            _ if spec.contract.is_some() => Layers::Bundle {
                readonly: spec.contract.as_ref().is_some_and(|c| c.readonly_root),
            },
            _ if spec.root == Root::Direct => Layers::Direct,
            _ if spec.root == Root::ReadOnly && dirs.len() > 1 => Layers::ReadOnlyStack,
            _ if spec.root == Root::ReadOnly => Layers::ReadOnly,
            Some(n) => Layers::Disk {
                upper: cstring(&n.upper)?,
                work: cstring(&n.work)?,
            },
            None => Layers::Tmpfs,
        };
        idmapped.clear();
        let lowers = match auto {
            None => dirs
                .iter()
                .map(|d| cstring(d))
                .collect::<Result<Vec<_>, _>>()?,
            Some(a) => {
                let mut v = Vec::new();
                for (i, d) in dirs.iter().enumerate() {
                    let fd = userns::idmapped_mount(d, &a.userns)
                        .map_err(|e| RunError::Usage(format!("--userns auto: {e}")))?;
                    let at = cstring(&base.join(format!("l{i}")))?;
                    idmapped.push((fd, at.clone()));
                    v.push(at);
                }
                v
            }
        };
        let upper = match &layers {
            Layers::Disk { upper, work } => Some((upper.clone(), work.clone())),
            Layers::Tmpfs => Some((cstring(&base.join("upper"))?, cstring(&base.join("work"))?)),
            _ => None,
        };
        if matches!(
            layers,
            Layers::ReadOnly | Layers::Direct | Layers::Bundle { .. }
        ) {
            return Ok((layers, lowers, None));
        }
        for p in lowers.iter().chain(upper.iter().flat_map(|(u, w)| [u, w])) {
            if p.as_bytes()
                .iter()
                .any(|b| matches!(b, b',' | b':' | b'\\'))
            {
                return Err(RunError::Usage(format!(
                    "path {p:?} contains `,`, `:` or `\\`, which overlayfs cannot take"
                )));
            }
        }
        match overlay::Overlay::new(lowers.clone(), upper, fsconfig) {
            Ok(o) => return Ok((layers, lowers, Some(o))),
            Err(overlay::TooDeep { .. }) if dirs.len() > 1 => dirs = vec![flatten(dirs.len())?],
            Err(overlay::TooDeep { .. }) => {
                return Err(RunError::Usage(format!(
                    "the overlay options for image {} do not fit one mount; use a shorter --root",
                    image.name
                )))
            }
        }
    }
}

/// Reads /etc/passwd, /etc/group and whether /bin/bash exists, resolving every path
/// inside the image (an image's symlink never reaches the host's files). A named
/// container's upper layer wins over the image.
fn image_facts(lowers: &[&Path], upper: Option<&Path>) -> Result<plan::ImageFacts, RunError> {
    let open_dir = |p: &Path| -> Result<fs::File, RunError> {
        Ok(fs::File::open(p).map_err(io_err("open image", p))?)
    };
    let lowers = lowers
        .iter()
        .map(|l| open_dir(l))
        .collect::<Result<Vec<_>, _>>()?;
    let upper = upper.and_then(|u| fs::File::open(u).ok());
    // The first layer that has the file decides (a whiteout or a FIFO reads as empty).
    // An OCI image's symlinks may cross layers (`bin -> usr/bin` in the base, bash in
    // a later layer): that is resolved per layer here, which is what `has_bash` needs.
    let read = |rel: &std::ffi::CStr| -> String {
        upper
            .iter()
            .chain(lowers.iter())
            .find_map(|dir| read_in_root(dir.as_raw_fd(), rel))
            .unwrap_or_default()
    };
    let has_bash = lowers
        .iter()
        .any(|l| mounts::open_in_root(l.as_raw_fd(), c"bin/bash", 0).is_ok());
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
    let f = match crate::fs::openat2::open_regular_in(dir, rel) {
        Ok(Some(f)) => f,
        Ok(None) => {
            // Missing, or there but not a regular file (then read as empty).
            let in_root = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
            return crate::fs::openat2::openat2(dir, rel, libc::O_PATH, in_root)
                .ok()
                .map(|_| String::new());
        }
        Err(_) => return Some(String::new()),
    };
    let mut buf = Vec::new();
    if f.take(LIMIT).read_to_end(&mut buf).is_err() {
        return Some(String::new());
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A volume's host path must exist (Docker would create it; locker refuses typos).
fn check_volume(p: &Path) -> Result<CString, RunError> {
    fs::symlink_metadata(p).map_err(io_err("use volume source (it must exist on the host)", p))?;
    cstring(p)
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
                    if let Some(c) = ExitStatus::from_wait(st).map(ExitStatus::code) {
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

/// Undoes everything `run` made on the host, on success, error or panic.
struct Guard {
    root: PathBuf,
    id: String,
    base: PathBuf,
    cgroup: Option<cgroups::Cgroup>,
    child: Option<Pid>,
    state: bool,
    /// The network before and after the clone; dropped once the child is dead.
    net_prepared: Option<net::Prepared>,
    net: Option<net::Attached>,
    /// A rootless container's user-mode network helper; ends when dropped.
    slirp: Option<net::slirp::Slirp>,
    /// `--userns auto`: the id range's lease, released when dropped.
    userns: Option<userns::Auto>,
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
        drop(self.net.take());
        drop(self.net_prepared.take());
        drop(self.slirp.take());
        drop(self.userns.take());
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
            let p = state::state_path(&self.root, &self.id);
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
        let dir = state::containers_dir(root).join(name);
        // upper/ and work/ below keep 0755: upper's mode is the container's `/`.
        for d in [&state::containers_dir(root), &dir] {
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
