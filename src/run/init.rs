//! The cloned child: container setup, then PID 1.
//!
//! The child is a copy of locker's address space (no re-exec of /proc/self/exe,
//! CVE-2019-5736). It waits for the parent's release (cgroup joined, state recorded),
//! builds the file tree (mounts.rs), pivots, drops privileges, marks itself
//! non-dumpable (so /proc/1/exe, still the host binary, can't be opened by the
//! container), then forks: the grandchild execs the command, PID 1 reaps everything and
//! forwards signals, and exits with the command's status (128+N for signal N).
//! Any failure is written to the error pipe as a `Report`; EOF on that CLOEXEC pipe
//! means the exec succeeded. Only syscalls from here on: the plan was built before.

use std::ffi::{c_int, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::command::{self, Command};
use super::mounts::{self, Base, Sources};
use super::plan::{Layers, Plan};
use super::report::{report, step_err, Report, Step};
use super::sys::{self, cvt};
use super::tty;
use crate::exit::ExitStatus;

/// Signals PID 1 (and the host parent) forward to the command.
pub(crate) const FORWARDED: &[c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Everything the child uses, built before the clone.
pub(crate) struct Child<'a> {
    pub plan: &'a Plan,
    pub layers: &'a Layers,
    pub base: Base<'a>,
    pub resolv: &'a [u8],
    /// A named network's hosts file (see mounts::Sources).
    pub shared_hosts: Option<&'a std::ffi::CStr>,
    /// `--net container:NAME`: that container's network namespace, joined at once.
    pub join_netns: RawFd,
    pub volumes: &'a [CString],
    pub release_rd: RawFd,
    /// The parent's end: the child closes its copy at once, so the release read sees
    /// EOF if the parent dies.
    pub release_wr: RawFd,
    /// -1, or the pipe whose byte says the parent has wired the network (a veth or
    /// slirp4netns); EOF: it could not.
    pub wired_rd: RawFd,
    /// A pidfd of the parent (getppid() is 0 in the new PID namespace).
    pub parent_pidfd: RawFd,
    pub error_wr: RawFd,
    /// What goes on fds 0-2 first (stdio.rs; -1 keeps the inherited fd).
    pub stdio: [RawFd; 3],
    /// With -t: our end of the console socket; the pty's master goes to the parent
    /// over it (-1 without).
    pub console_sock: RawFd,
    /// With -t: the host terminal's window size, set on the pty when it is made.
    pub winsize: Option<libc::winsize>,
    /// The v1 hierarchies' `tasks` files: the child writes "0" to each (moving only
    /// itself, no global lock), then makes its cgroup namespace. Empty: cloned into its
    /// only (v2) cgroup with a new cgroup namespace already.
    pub cgroup_tasks: &'a [RawFd],
    pub cap_last: u32,
    /// `--userns auto`: the user namespace PID 1 joins once the container is set up
    /// (everything else was made by host root; -1 without).
    pub userns: RawFd,
    /// `--userns auto`: the idmapped lower layers (kept open until attached).
    pub idmapped: &'a [RawFd],
    pub envp: &'a [*const libc::c_char],
    pub argv: &'a [*const libc::c_char],
    /// Namespaces joined by path (fd, CLONE_NEW* type), right after the release.
    pub join_ns: &'a [(RawFd, c_int)],
    /// An OCI container's exec FIFO (see command::Command), -1 without.
    pub start_fifo: RawFd,
    /// Every fd above 2 the child keeps until the exec tail (the ones above).
    pub keep: &'a [RawFd],
}

/// Entry point of the cloned child; never returns.
pub(crate) fn child_main(c: &Child) -> ! {
    // First: nothing the parent did not hand over on purpose stays open; our copy of
    // the release write end goes too (see `setup`).
    // SAFETY: closes an fd this process owns and does not use again.
    unsafe { libc::close(c.release_wr) };
    // Into the container's cgroups before anything else runs here.
    for &fd in c.cgroup_tasks {
        // SAFETY: a live byte string and its true length.
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            report(c.error_wr, step_err(Step::CgroupJoin)(sys::errno()));
            // SAFETY: _exit ends this process at once, running no destructors of the parent's state.
            unsafe { libc::_exit(ExitStatus::Failure.code() as c_int) }
        }
    }
    // The stdio plan first: host fds that are not pipes, sockets or /dev/null leave
    // fds 0-2 here, and their copies above 2 go with the rest.
    if let Err(e) = sys::install_stdio(&c.stdio) {
        report(c.error_wr, step_err(Step::Stdio)(e));
        // SAFETY: _exit ends this process at once, running no destructors of the parent's state.
        unsafe { libc::_exit(ExitStatus::Failure.code() as c_int) }
    }
    let mut keep = [-1; 24 + crate::run::MAX_IDMAPPED_LAYERS];
    let fixed = [
        c.release_rd,
        c.wired_rd,
        c.error_wr,
        c.parent_pidfd,
        c.console_sock,
        c.join_netns,
        c.userns,
    ];
    // `c.keep`: an OCI container's exec FIFO and namespaces joined by path.
    for (k, fd) in keep
        .iter_mut()
        .zip(fixed.iter().chain(c.idmapped).chain(c.keep))
    {
        *k = *fd;
    }
    sys::close_fds_from_except(3 + c.plan.preserve_fds as RawFd, &keep);
    let code = match setup(c) {
        Ok(tty) if c.plan.direct => direct(c, tty),
        Ok(tty) => pid1(c, tty),
        Err(r) => {
            report(c.error_wr, r);
            ExitStatus::Failure.code() as c_int
        }
    };
    // SAFETY: _exit ends this process at once, running no destructors of the parent's state.
    unsafe { libc::_exit(code) }
}

/// Sets the container up, and hardens PID 1 itself: the command's own privileges are
/// set by the exec tail. Returns the console's slave (with -t), for the command.
fn setup(c: &Child) -> Result<Option<OwnedFd>, Report> {
    // If the parent dies, so do we. The parent dying before the release makes the read
    // below see EOF (our copy of the write end was closed in child_main); dying after
    // writing the byte but before this prctl is seen on the parent's pidfd.
    // (Not an OCI container's: it outlives `create` by design.)
    if !c.plan.direct {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    }
    let mut byte = [0u8; 1];
    // SAFETY: a buffer this frame owns, with its true length.
    let n = unsafe { libc::read(c.release_rd, byte.as_mut_ptr().cast(), 1) };
    let mut pfd = libc::pollfd {
        fd: c.parent_pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: a live pollfd array of the length given.
    let parent_gone = unsafe { libc::poll(&mut pfd, 1, 0) } != 0;
    if n != 1 || parent_gone {
        return Err(parent_lost());
    }
    // SAFETY: closes an fd this process owns and does not use again.
    unsafe { libc::close(c.release_rd) };
    if c.userns < 0 {
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(c.parent_pidfd) };
    }
    if c.join_netns >= 0 {
        // SAFETY: setns with an fd this process owns and integer flags.
        cvt(unsafe { libc::setns(c.join_netns, libc::CLONE_NEWNET) })
            .map_err(step_err(Step::JoinNetns))?;
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(c.join_netns) };
    }
    for &(fd, nstype) in c.join_ns {
        // SAFETY: setns with an fd this process owns and integer flags.
        cvt(unsafe { libc::setns(fd, nstype) }).map_err(step_err(Step::JoinNetns))?;
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(fd) };
    }
    if !c.cgroup_tasks.is_empty() && c.plan.cgroupns {
        // SAFETY: unshare takes integer flags.
        cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }).map_err(step_err(Step::CgroupNs))?;
    }
    // Modes given to mknod/open below are meant exactly; the command gets 022 back.
    // SAFETY: umask takes and returns an integer.
    unsafe { libc::umask(0) };
    if c.plan.set_hostname {
        let h = c.plan.hostname.as_bytes();
        // SAFETY: a pointer and the true length of a live byte string.
        cvt(unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) })
            .map_err(step_err(Step::Hostname))?;
    }

    let mfail = |f: mounts::MountFailure| Report {
        step: Step::Mount,
        errno: f.errno,
        index: f.index,
        what: f.what,
    };
    let root = mounts::prepare_root(&c.base, c.layers, &c.plan.base_tmpfs).map_err(mfail)?;
    for (name, data) in [
        (c"hostname", &c.plan.hostname_file[..]),
        (c"hosts", &c.plan.hosts[..]),
        (c"resolv.conf", c.resolv),
    ] {
        mounts::write_file(c.base.files, name, data).map_err(|e| Report {
            step: Step::Mount,
            errno: e,
            index: u32::MAX,
            what: "create",
        })?;
    }
    let pty = mounts::apply(
        &root,
        &c.base,
        &c.plan.mounts,
        &Sources {
            volumes: c.volumes,
            shared_hosts: c.shared_hosts,
        },
    )
    .map_err(mfail)?;
    // The master to the parent (its relay's end); the slave stays for the command.
    let tty = match pty {
        Some(p) => {
            if let Some(ws) = &c.winsize {
                tty::set_winsize(p.master.as_raw_fd(), ws);
            }
            sys::send_fd(c.console_sock, p.master.as_raw_fd()).map_err(step_err(Step::Tty))?;
            Some(p.slave)
        }
        None => None,
    };
    if c.console_sock >= 0 {
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(c.console_sock) };
    }
    if c.wired_rd >= 0 {
        let mut byte = [0u8; 1];
        // SAFETY: a buffer this frame owns, with its true length.
        let n = unsafe { libc::read(c.wired_rd, byte.as_mut_ptr().cast(), 1) };
        if n != 1 {
            return Err(parent_lost());
        }
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(c.wired_rd) };
    }
    if c.plan.new_netns {
        sys::loopback_up().map_err(step_err(Step::Loopback))?;
    }
    for (path, value) in &c.plan.sysctl {
        sys::write_proc_file(path, value.as_bytes()).map_err(step_err(Step::Sysctl))?;
    }
    let pfail = |f: mounts::MountFailure| Report {
        step: Step::Pivot,
        errno: f.errno,
        index: f.index,
        what: f.what,
    };
    if c.plan.no_pivot {
        mounts::chroot_into(&root).map_err(pfail)?;
    } else {
        mounts::pivot_into(&root).map_err(pfail)?;
    }
    drop(root);
    if let Layers::Bundle { readonly } = c.layers {
        mounts::finish_root(*readonly, c.plan.root_propagation).map_err(pfail)?;
    }
    // PID 1 keeps only what the exec tail needs to finish the drop (trim the bounding
    // set, set the command's credentials); the tail then sets the command's own set.
    const TAIL: u64 = 1 << 6 | 1 << 7 | 1 << 8; // SETGID, SETUID, SETPCAP
                                                // An OCI command without no_new_privs installs its filter with CAP_SYS_ADMIN
                                                // (command.rs), which the tail drops right after.
    let sys_admin = if c.plan.direct && c.plan.seccomp.is_some() && !c.plan.no_new_privileges {
        1 << 21
    } else {
        0
    };
    sys::drop_capabilities(c.plan.capabilities | TAIL | sys_admin, c.cap_last)
        .map_err(step_err(Step::Capabilities))?;
    // An OCI PID 1 is the command, and its config decides (the exec tail sets it).
    if !c.plan.direct {
        // SAFETY: prctl with integer arguments only.
        cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
            .map_err(step_err(Step::NoNewPrivs))?;
    }
    // While still dumpable (see sys::set_oom_score_adj); the command inherits it.
    sys::set_oom_score_adj(&c.plan.oom_score_adj).map_err(step_err(Step::OomScoreAdj))?;
    if c.userns >= 0 {
        sys::become_root_of(c.userns).map_err(step_err(Step::Credentials))?;
        // The uid change cleared the parent-death signal: set it again, then make sure
        // the parent did not die in between (its pidfd is readable once it has). Not
        // for an OCI container, which outlives `create`.
        let mut gone = false;
        if !c.plan.direct {
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            let mut pfd = libc::pollfd {
                fd: c.parent_pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: a live pollfd array of the length given.
            gone = unsafe { libc::poll(&mut pfd, 1, 0) } != 0;
        }
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(c.parent_pidfd) };
        if gone {
            return Err(parent_lost());
        }
    }
    // CVE-2019-5736: /proc/1/exe is locker's host binary; non-dumpable makes it
    // unopenable for the container (ptrace access needs CAP_SYS_PTRACE, dropped).
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) })
        .map_err(step_err(Step::Capabilities))?;
    Ok(tty)
}

/// The parent is gone (or could not finish its part) before the command ran.
fn parent_lost() -> Report {
    Report {
        step: Step::Release,
        errno: libc::EPIPE,
        index: u32::MAX,
        what: "",
    }
}

extern "C" fn noop(_: c_int) {}

/// An OCI container's PID 1 is the command: the exec tail, waiting on the exec FIFO
/// for `start` before the filter and the exec.
fn direct(c: &Child, tty: Option<OwnedFd>) -> c_int {
    command::exec(&Command {
        user: &c.plan.user,
        workdir: &c.plan.workdir,
        create_workdir: true,
        exec_paths: &c.plan.exec_paths,
        argv: c.argv,
        envp: c.envp,
        tty: tty.as_ref().map(|s| s.as_raw_fd()),
        stdio: [-1; 3],
        stdin: true,
        capabilities: c.plan.capabilities,
        cap_sets: c.plan.cap_sets,
        cap_last: c.cap_last,
        no_new_privileges: c.plan.no_new_privileges,
        seccomp: c.plan.seccomp.as_ref(),
        rlimits: &c.plan.rlimits,
        oom_score_adj: &c.plan.oom_score_adj,
        error_wr: c.error_wr,
        start_fifo: c.start_fifo,
        // An OCI container's PID 1 (it waits on its FIFO) outlives `create`.
        die_with_parent: c.start_fifo < 0,
        umask: c.plan.umask,
        preserve_fds: c.plan.preserve_fds,
    })
}

/// PID 1: fork the command (on the console's slave `tty` with -t), then reap and
/// forward until it exits.
fn pid1(c: &Child, tty: Option<OwnedFd>) -> c_int {
    // The parent blocked the forwarded signals and SIGCHLD before the clone; handlers
    // make sure the kernel does not drop them for an init process either.
    for &s in FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
        // SAFETY: installs a handler that is an extern "C" fn doing nothing (async-signal-safe).
        unsafe { libc::signal(s, noop as *const () as libc::sighandler_t) };
    }
    // SAFETY: fork in a single-threaded process; the child only makes syscalls until execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        report(c.error_wr, step_err(Step::Fork)(sys::errno()));
        return ExitStatus::Failure.code() as c_int;
    }
    if pid == 0 {
        command::exec(&Command {
            user: &c.plan.user,
            workdir: &c.plan.workdir,
            create_workdir: true,
            exec_paths: &c.plan.exec_paths,
            argv: c.argv,
            envp: c.envp,
            tty: tty.as_ref().map(|s| s.as_raw_fd()),
            stdio: [-1; 3],
            stdin: c.plan.stdin,
            capabilities: c.plan.capabilities,
            cap_sets: None,
            cap_last: c.cap_last,
            no_new_privileges: c.plan.no_new_privileges,
            seccomp: c.plan.seccomp.as_ref(),
            rlimits: &c.plan.rlimits,
            oom_score_adj: &c.plan.oom_score_adj,
            error_wr: c.error_wr,
            start_fifo: -1,
            die_with_parent: true,
            umask: 0o022,
            preserve_fds: 0,
        });
    }
    // SAFETY: closes an fd this process owns and does not use again.
    unsafe { libc::close(c.error_wr) };
    // The command's copy is the only one left: its exit ends the master's relay.
    drop(tty);
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a live signal set owned by this frame.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
            libc::sigaddset(&mut set, s);
        }
    }
    loop {
        // SAFETY: a live, initialised signal set; no siginfo is asked for.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill takes a pid and a signal number.
            unsafe { libc::kill(pid, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: a pointer to a status integer this frame owns.
            let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            if r == pid {
                // Leaving kills the rest of the PID namespace.
                if let Some(end) = ExitStatus::from_raw_wait(status) {
                    return end.code() as c_int;
                }
            }
        }
    }
}
