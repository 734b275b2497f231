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

use super::mounts::{self, cvt, Base, Sources};
use super::plan::{Layers, Plan, DEFAULT_CAPS};

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

/// Declares `Step` and the list `from_u32` decodes with from one list of names, so a
/// new step cannot be left out of the decoding.
macro_rules! steps {
    ($first:ident = $value:literal, $($name:ident),+ $(,)?) => {
        /// Steps that can fail in the child, sent over the error pipe.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u32)]
        pub(crate) enum Step {
            $first = $value,
            $($name),+
        }

        impl Step {
            const ALL: &'static [Step] = &[Step::$first, $(Step::$name),+];
        }
    };
}

steps!(
    Release = 1,
    CgroupNs,
    Hostname,
    Mount,
    Loopback,
    Pivot,
    Workdir,
    Capabilities,
    NoNewPrivs,
    Fork,
    Stdio,
    Tty,
    Credentials,
    Chdir,
    ExecNotFound,
    ExecDenied,
    Seccomp,
);

impl Step {
    pub(crate) fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == v)
    }
}

/// What the child writes on failure: 16 bytes, fixed layout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report {
    pub step: Step,
    pub errno: i32,
    /// Index of the mount op, u32::MAX when none.
    pub index: u32,
    /// Static description for mount failures (index into MOUNT_WHATS), else 0.
    pub what: &'static str,
}

impl Report {
    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&(self.step as u32).to_le_bytes());
        b[4..8].copy_from_slice(&self.errno.to_le_bytes());
        b[8..12].copy_from_slice(&self.index.to_le_bytes());
        // The child is a copy of the parent's address space: a &'static str pointer
        // is valid in both. Still, never dereference it unchecked: send a hash-free
        // index instead.
        let w = MOUNT_WHATS
            .iter()
            .position(|w| *w == self.what)
            .unwrap_or(0) as u32;
        b[12..16].copy_from_slice(&w.to_le_bytes());
        b
    }
    pub(crate) fn decode(b: &[u8]) -> Option<Report> {
        if b.len() < 16 {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Some(Report {
            step: Step::from_u32(u(0))?,
            errno: u(4) as i32,
            index: u(8),
            what: MOUNT_WHATS.get(u(12) as usize).copied().unwrap_or(""),
        })
    }
}

/// Every `what` string mounts.rs uses (kept in one list so it can cross the pipe).
pub(crate) const MOUNT_WHATS: &[&str] = &[
    "",
    "make / private",
    "mount tmpfs on",
    "mkdir",
    "bind image root",
    "remount image root read-only",
    "remount image root nodev",
    "mount overlay",
    "open root",
    "create",
    "open (must be a directory, not a symlink)",
    "mount proc on",
    "mount sysfs on",
    "open /dev/null",
    "stat /dev/null",
    "check /dev/null is char 1:3",
    "open",
    "bind pty on",
    "name",
    "bind file on",
    "stat source of",
    "bind volume on",
    "set flags (nodev, nosuid, ro) of volume on",
    "remount read-only",
    "stat",
    "mask",
    "mask (no /dev/null yet)",
    "bind read-only",
    "open nodes dir for",
    "mknod for",
    "open node for",
    "create node in",
    "open node in",
    "bind node in",
    "mkdir in",
    "open in",
    "mount in",
    "symlink in",
    "chdir to new root",
    "pivot_root",
    "detach old root",
    "chdir /",
];

/// Everything the child uses, built before the clone.
pub(crate) struct Child<'a> {
    pub plan: &'a Plan,
    pub layers: &'a Layers,
    pub base: Base<'a>,
    pub resolv: &'a [u8],
    pub volumes: &'a [CString],
    pub release_rd: RawFd,
    /// The parent's end: the child closes its copy at once, so the release read sees
    /// EOF if the parent dies.
    pub release_wr: RawFd,
    /// A pidfd of the parent (getppid() is 0 in the new PID namespace).
    pub parent_pidfd: RawFd,
    pub error_wr: RawFd,
    pub tty_slave: Option<RawFd>,
    pub tty_path: Option<&'a std::ffi::CStr>,
    /// v1: join the cgroup ns after the parent moved us (v2 cloned into it).
    pub unshare_cgroupns: bool,
    pub cap_last: u32,
    pub envp: &'a [*const libc::c_char],
    pub argv: &'a [*const libc::c_char],
}

fn report(fd: RawFd, r: Report) {
    let b = r.encode();
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
}

fn step_err(step: Step) -> impl Fn(i32) -> Report {
    move |errno| Report {
        step,
        errno,
        index: u32::MAX,
        what: "",
    }
}

/// Closes every fd above 2 but `keep` (negative entries ignored; at most 8).
/// CVE-2024-21626: an fd inherited from whoever started locker, or locker's own v2
/// cgroup fd, must not be open while the container is set up (a workdir of
/// /proc/self/fd/N would be on the host), let alone reach the command.
pub(crate) fn close_fds_except(keep: &[RawFd]) {
    let mut k = [RawFd::MAX; 8];
    let mut n = 0;
    for &fd in keep.iter().filter(|&&fd| fd > 2).take(k.len()) {
        k[n] = fd;
        n += 1;
    }
    let k = &mut k[..n];
    k.sort_unstable();
    let mut next: u32 = 3;
    for &fd in k.iter() {
        let fd = fd as u32;
        if fd > next {
            unsafe { libc::close_range(next, fd - 1, 0) };
        }
        next = next.max(fd + 1);
    }
    unsafe { libc::close_range(next, u32::MAX, 0) };
}

/// runc's hardening after CVE-2024-21626: the cwd must be inside the root. For a cwd
/// outside it the kernel's getcwd answers "(unreachable)/...", not an absolute path.
fn check_cwd_inside_root() -> mounts::SysResult<()> {
    let mut buf = [0u8; 4096];
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return Err(mounts::errno());
    }
    if buf[0] != b'/' {
        return Err(libc::ENOENT);
    }
    Ok(())
}

/// Entry point of the cloned child; never returns.
pub(crate) fn child_main(c: &Child) -> ! {
    // First: nothing the parent did not hand over on purpose stays open; our copy of
    // the release write end goes too (see `setup`).
    unsafe { libc::close(c.release_wr) };
    close_fds_except(&[
        c.release_rd,
        c.error_wr,
        c.parent_pidfd,
        c.tty_slave.unwrap_or(-1),
    ]);
    let code = match setup(c) {
        Ok(workdir) => pid1(c, workdir),
        Err(r) => {
            report(c.error_wr, r);
            125
        }
    };
    unsafe { libc::_exit(code) }
}

/// Sets the container up; returns the workdir (an fd inside the new root).
fn setup(c: &Child) -> Result<OwnedFd, Report> {
    // If the parent dies, so do we. The parent dying before the release makes the read
    // below see EOF (our copy of the write end was closed in child_main); dying after
    // writing the byte but before this prctl is seen on the parent's pidfd.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let mut byte = [0u8; 1];
    let n = unsafe { libc::read(c.release_rd, byte.as_mut_ptr().cast(), 1) };
    let mut pfd = libc::pollfd {
        fd: c.parent_pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    let parent_gone = unsafe { libc::poll(&mut pfd, 1, 0) } != 0;
    if n != 1 || parent_gone {
        return Err(Report {
            step: Step::Release,
            errno: libc::EPIPE,
            index: u32::MAX,
            what: "",
        });
    }
    unsafe { libc::close(c.release_rd) };
    unsafe { libc::close(c.parent_pidfd) };
    if c.unshare_cgroupns {
        cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }).map_err(step_err(Step::CgroupNs))?;
    }
    // Modes given to mknod/open below are meant exactly; the command gets 022 back.
    unsafe { libc::umask(0) };
    let h = c.plan.hostname.as_bytes();
    cvt(unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) })
        .map_err(step_err(Step::Hostname))?;

    let mfail = |f: mounts::MountFailure| Report {
        step: Step::Mount,
        errno: f.errno,
        index: f.index,
        what: f.what,
    };
    let root = mounts::prepare_root(&c.base, c.layers).map_err(mfail)?;
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
    mounts::apply(
        &root,
        &c.base,
        &c.plan.mounts,
        &Sources {
            volumes: c.volumes,
            tty_slave: c.tty_path,
        },
    )
    .map_err(mfail)?;
    if c.plan.net_none {
        loopback_up().map_err(step_err(Step::Loopback))?;
    }
    mounts::pivot_into(&root).map_err(|f| Report {
        step: Step::Pivot,
        errno: f.errno,
        index: f.index,
        what: f.what,
    })?;
    drop(root);
    let workdir = mounts::open_workdir(&c.plan.workdir).map_err(step_err(Step::Workdir))?;
    drop_capabilities(c.cap_last).map_err(step_err(Step::Capabilities))?;
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
        .map_err(step_err(Step::NoNewPrivs))?;
    if c.plan.suppress_sync {
        suppress_sync().map_err(step_err(Step::Seccomp))?;
    }
    // CVE-2019-5736: /proc/1/exe is locker's host binary; non-dumpable makes it
    // unopenable for the container (ptrace access needs CAP_SYS_PTRACE, dropped).
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) })
        .map_err(step_err(Step::Capabilities))?;
    Ok(workdir)
}

/// Makes the sync family of syscalls succeed without doing anything, as
/// systemd-nspawn's `--suppress-sync=yes` does (a seccomp filter returning errno 0):
/// dpkg fsyncs its database several times per package, and a build's tree is either
/// finished and renamed into the store or thrown away, never half-trusted. Only for
/// the build container; a foreign architecture's syscalls are left alone.
fn suppress_sync() -> mounts::SysResult<()> {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return Ok(());
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
        let stmt = |code: u16, k: u32| libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        };
        let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: JEQ_K,
            jt,
            jf,
            k,
        };
        let syscalls = [
            libc::SYS_fsync,
            libc::SYS_fdatasync,
            libc::SYS_sync,
            libc::SYS_syncfs,
            libc::SYS_sync_file_range,
            libc::SYS_msync,
        ];
        let n = syscalls.len() as u8;
        // seccomp_data: nr at offset 0, arch at 4.
        let mut prog = vec![
            stmt(LD_W_ABS, 4),
            jeq(AUDIT_ARCH, 1, 0),
            stmt(RET_K, libc::SECCOMP_RET_ALLOW),
            stmt(LD_W_ABS, 0),
        ];
        for (i, nr) in syscalls.iter().enumerate() {
            // Match: jump over the remaining tests and the ALLOW to the ERRNO(0).
            prog.push(jeq(*nr as u32, n - i as u8, 0));
        }
        prog.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
        prog.push(stmt(RET_K, libc::SECCOMP_RET_ERRNO));
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        cvt(unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
                0,
                0,
            )
        })?;
        Ok(())
    }
}

/// `lo` up in a new network namespace: SIOCGIFFLAGS / SIOCSIFFLAGS, no `ip` binary.
fn loopback_up() -> mounts::SysResult<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let s = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let mut req = IfReq {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    let r = cvt(unsafe { libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) }).and_then(|_| {
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        cvt(unsafe { libc::ioctl(s, libc::SIOCSIFFLAGS, &req) })
    });
    unsafe { libc::close(s) };
    r.map(drop)
}

/// Docker's default set: bounding set trimmed, then effective = permitted = the set,
/// inheritable and ambient empty (CVE-2022-24769).
fn drop_capabilities(cap_last: u32) -> mounts::SysResult<()> {
    for cap in 0..=cap_last {
        if DEFAULT_CAPS & (1u64 << cap) == 0 {
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r < 0 && mounts::errno() != libc::EINVAL {
                return Err(mounts::errno());
            }
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let hdr = Header {
        version: 0x2008_0522,
        pid: 0,
    }; // _LINUX_CAPABILITY_VERSION_3
    let lo = DEFAULT_CAPS as u32;
    let hi = (DEFAULT_CAPS >> 32) as u32;
    let data = [
        Data {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        Data {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    cvt(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) } as c_int)?;
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    })?;
    Ok(())
}

extern "C" fn noop(_: c_int) {}

/// PID 1: fork the command, then reap and forward until it exits.
fn pid1(c: &Child, workdir: OwnedFd) -> c_int {
    // The parent blocked the forwarded signals and SIGCHLD before the clone; handlers
    // make sure the kernel does not drop them for an init process either.
    for &s in FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
        unsafe { libc::signal(s, noop as *const () as libc::sighandler_t) };
    }
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        report(c.error_wr, step_err(Step::Fork)(mounts::errno()));
        return 125;
    }
    if pid == 0 {
        exec_command(c, &workdir);
    }
    drop(workdir);
    unsafe { libc::close(c.error_wr) };
    if let Some(s) = c.tty_slave {
        unsafe { libc::close(s) };
    }
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
            libc::sigaddset(&mut set, s);
        }
    }
    loop {
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            unsafe { libc::kill(pid, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            if r == pid {
                // Leaving kills the rest of the PID namespace.
                if libc::WIFEXITED(status) {
                    return libc::WEXITSTATUS(status);
                }
                if libc::WIFSIGNALED(status) {
                    return 128 + libc::WTERMSIG(status);
                }
            }
        }
    }
}

/// The grandchild: stdio, credentials, cwd, fds, then execve over the planned paths.
/// Every signal back to its default action and none blocked, as a command expects
/// after exec (Rust ignores SIGPIPE; PID 1 blocked what it forwards).
fn default_signals() {
    // SAFETY: plain libc calls on a zeroed, then emptied, signal set.
    unsafe {
        for s in 1..32 {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::signal(s, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

fn exec_command(c: &Child, workdir: &OwnedFd) -> ! {
    let fail = |step: Step, errno: i32| -> ! {
        report(c.error_wr, step_err(step)(errno));
        unsafe {
            libc::_exit(if step == Step::ExecNotFound {
                127
            } else if step == Step::ExecDenied {
                126
            } else {
                125
            })
        }
    };
    default_signals();
    unsafe { libc::umask(0o022) };
    if unsafe { libc::setsid() } < 0 {
        fail(Step::Tty, mounts::errno());
    }
    if let Some(slave) = c.tty_slave {
        if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
            fail(Step::Tty, mounts::errno());
        }
        for fd in 0..3 {
            if unsafe { libc::dup2(slave, fd) } < 0 {
                fail(Step::Stdio, mounts::errno());
            }
        }
    } else if !c.plan.stdin {
        redirect_null(0).unwrap_or_else(|e| fail(Step::Stdio, e));
    }
    let u = &c.plan.user;
    if unsafe { libc::setgroups(u.groups.len(), u.groups.as_ptr()) } < 0
        || unsafe { libc::setgid(u.gid) } < 0
        || unsafe { libc::setuid(u.uid) } < 0
    {
        fail(Step::Credentials, mounts::errno());
    }
    if unsafe { libc::fchdir(workdir.as_raw_fd()) } < 0 {
        fail(Step::Chdir, mounts::errno());
    }
    check_cwd_inside_root().unwrap_or_else(|e| fail(Step::Chdir, e));
    // CVE-2024-21626: nothing but 0-2 crosses the exec.
    unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as c_int) };
    let mut denied = 0;
    let mut last = libc::ENOENT;
    for p in &c.plan.exec_paths {
        unsafe { libc::execve(p.as_ptr(), c.argv.as_ptr(), c.envp.as_ptr()) };
        let e = mounts::errno();
        match e {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES | libc::EISDIR | libc::ENOEXEC | libc::EPERM => denied = e,
            _ => {
                last = e;
                break;
            }
        }
    }
    if denied != 0 {
        fail(Step::ExecDenied, denied);
    }
    if last == libc::ENOENT {
        fail(Step::ExecNotFound, last);
    }
    fail(Step::ExecDenied, last)
}

/// `locker exec`'s child, already in the container's namespaces: the same privilege
/// drop and exec as `run`'s command. Called right after the fork; allocates nothing.
/// Returns the exit code on failure.
#[allow(clippy::too_many_arguments)]
pub(crate) fn exec_joined(
    user: &super::plan::User,
    cap_last: u32,
    workdir: &CString,
    paths: &[CString],
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    tty: Option<RawFd>,
    stdin: bool,
    error_wr: RawFd,
) -> c_int {
    let fail = |step: Step, errno: i32| -> c_int {
        report(error_wr, step_err(step)(errno));
        if step == Step::ExecNotFound {
            127
        } else if step == Step::ExecDenied {
            126
        } else {
            125
        }
    };
    // We are in the container's PID namespace and still the host binary: not
    // dumpable, so the container can't open /proc/PID/exe or /proc/PID/fd (exec
    // resets it).
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    close_fds_except(&[error_wr, tty.unwrap_or(-1)]);
    default_signals();
    unsafe { libc::setsid() };
    if let Some(slave) = tty {
        if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
            return fail(Step::Tty, mounts::errno());
        }
        for fd in 0..3 {
            unsafe { libc::dup2(slave, fd) };
        }
    } else if !stdin {
        if let Err(e) = redirect_null(0) {
            return fail(Step::Stdio, e);
        }
    }
    if let Err(e) = drop_capabilities(cap_last) {
        return fail(Step::Capabilities, e);
    }
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return fail(Step::NoNewPrivs, mounts::errno());
    }
    if unsafe { libc::setgroups(user.groups.len(), user.groups.as_ptr()) } < 0
        || unsafe { libc::setgid(user.gid) } < 0
        || unsafe { libc::setuid(user.uid) } < 0
    {
        return fail(Step::Credentials, mounts::errno());
    }
    // Resolved inside the container's root, magic links refused (CVE-2024-21626).
    let bytes = workdir.to_bytes_with_nul();
    let rel = std::ffi::CStr::from_bytes_with_nul(bytes.strip_prefix(b"/").unwrap_or(bytes))
        .unwrap_or(c".");
    let rel = if rel.is_empty() { c"." } else { rel };
    let dir =
        match crate::fs::openat2::openat2(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
            .and_then(|root| mounts::open_in_root(root.as_raw_fd(), rel, libc::O_DIRECTORY))
        {
            Ok(d) => d,
            Err(e) => return fail(Step::Chdir, e),
        };
    if unsafe { libc::fchdir(dir.as_raw_fd()) } < 0 {
        return fail(Step::Chdir, mounts::errno());
    }
    drop(dir);
    if let Err(e) = check_cwd_inside_root() {
        return fail(Step::Chdir, e);
    }
    unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as c_int) };
    let mut denied = 0;
    for p in paths {
        unsafe { libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        match mounts::errno() {
            libc::ENOENT | libc::ENOTDIR => {}
            e => denied = e,
        }
    }
    if denied != 0 {
        fail(Step::ExecDenied, denied)
    } else {
        fail(Step::ExecNotFound, libc::ENOENT)
    }
}

fn redirect_null(fd: c_int) -> mounts::SysResult<()> {
    let n = cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    cvt(unsafe { libc::dup2(n, fd) })?;
    unsafe { libc::close(n) };
    Ok(())
}

/// argv/envp pointer arrays (NULL-terminated) over CStrings that outlive them.
pub(crate) fn pointers(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_roundtrip() {
        let r = Report {
            step: Step::Mount,
            errno: libc::ELOOP,
            index: 3,
            what: "mount proc on",
        };
        let d = Report::decode(&r.encode()).unwrap();
        assert_eq!(
            (d.step, d.errno, d.index, d.what),
            (Step::Mount, libc::ELOOP, 3, "mount proc on")
        );
        assert!(Report::decode(&[0u8; 16]).is_none());
    }

    #[test]
    fn every_step_decodes_to_itself() {
        assert_eq!(Step::ALL.len(), Step::Seccomp as usize);
        for &s in Step::ALL {
            assert_eq!(Step::from_u32(s as u32), Some(s));
        }
        assert_eq!(Step::from_u32(0), None);
        assert_eq!(Step::from_u32(Step::Seccomp as u32 + 1), None);
    }

    /// Every failure description in mounts.rs must be in MOUNT_WHATS to cross the pipe.
    #[test]
    fn mount_whats_complete() {
        let src = include_str!("mounts.rs");
        for part in src.split("fail(\"").skip(1) {
            let what = &part[..part.find('"').unwrap()];
            assert!(
                MOUNT_WHATS.contains(&what),
                "{what:?} missing from MOUNT_WHATS"
            );
        }
        for part in src.split("what: \"").skip(1) {
            let what = &part[..part.find('"').unwrap()];
            assert!(
                MOUNT_WHATS.contains(&what),
                "{what:?} missing from MOUNT_WHATS"
            );
        }
    }
}
