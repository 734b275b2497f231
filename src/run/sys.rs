//! Raw syscalls for the container's setup, in one audited place: no allocation and no
//! locks, because most of them run in the cloned child or a forked one, between the
//! clone and execve (fork safety). Errors are the errno, as `SysResult`.

use std::ffi::{c_int, c_ulong, CStr};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A failed syscall's errno.
pub(crate) type SysResult<T> = Result<T, i32>;

pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

pub(crate) fn cvt(r: c_int) -> SysResult<c_int> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

fn opt(p: Option<&CStr>) -> *const libc::c_char {
    p.map_or(std::ptr::null(), CStr::as_ptr)
}

pub(crate) fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    // SAFETY: NUL-terminated strings (or null pointers) and integer flags.
    let r = unsafe {
        libc::mount(
            opt(src),
            target.as_ptr(),
            opt(fstype),
            flags,
            opt(data).cast(),
        )
    };
    cvt(r).map(drop)
}

/// "/proc/self/fd/N" without allocating.
pub(crate) struct FdPath([u8; 32]);

impl FdPath {
    pub(crate) fn new(fd: RawFd) -> FdPath {
        let mut b = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        b[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut n = fd as u32;
        let mut i = 0;
        loop {
            digits[i] = b'0' + (n % 10) as u8;
            i += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for j in 0..i {
            b[prefix.len() + j] = digits[i - 1 - j];
        }
        FdPath(b)
    }
    pub(crate) fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.0).expect("nul")
    }
}

/// Closes every fd above 2 but `keep` (negative entries ignored; at most 8).
/// CVE-2024-21626: an fd inherited from whoever started locker, or locker's own v2
/// cgroup fd, must not be open while the container is set up (a workdir of
/// /proc/self/fd/N would be on the host), let alone reach the command.
pub(crate) fn close_fds_except(keep: &[RawFd]) {
    close_fds_from_except(3, keep)
}

/// Opens /dev/null on each fd in `from..to` that is not open, so the range is held
/// (by the caller's descriptors, or by these) before the process opens its own.
pub(crate) fn hold_fd_gaps(from: RawFd, to: RawFd) -> std::io::Result<()> {
    for fd in from..to {
        // SAFETY: fcntl F_GETFD on an integer fd: no memory is touched.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        let got = std::os::fd::IntoRawFd::into_raw_fd(null);
        if got == fd {
            continue; // the lowest free number was this one: kept open
        }
        // SAFETY: dup2 of an fd we own onto a free number, then the original closed.
        let r = unsafe { libc::dup2(got, fd) };
        // SAFETY: closes the fd opened above, owned here and not used again.
        unsafe { libc::close(got) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `close_fds_except`, keeping fds 3..`from` too (`--preserve-fds`).
pub(crate) fn close_fds_from_except(from: RawFd, keep: &[RawFd]) {
    let mut k = [RawFd::MAX; 24 + super::MAX_IDMAPPED_LAYERS];
    let mut n = 0;
    for &fd in keep.iter().filter(|&&fd| fd >= from).take(k.len()) {
        k[n] = fd;
        n += 1;
    }
    let k = &mut k[..n];
    k.sort_unstable();
    let mut next: u32 = from.max(3) as u32;
    for &fd in k.iter() {
        let fd = fd as u32;
        if fd > next {
            // SAFETY: close_range with integer arguments only.
            unsafe { libc::close_range(next, fd - 1, 0) };
        }
        next = next.max(fd + 1);
    }
    // SAFETY: close_range with integer arguments only.
    unsafe { libc::close_range(next, u32::MAX, 0) };
}

/// runc's hardening after CVE-2024-21626: the cwd must be inside the root. For a cwd
/// outside it the kernel's getcwd answers "(unreachable)/...", not an absolute path.
pub(crate) fn check_cwd_inside_root() -> SysResult<()> {
    let mut buf = [0u8; 4096];
    // SAFETY: a raw syscall whose pointer arguments point at live values of the sizes the kernel expects.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return Err(errno());
    }
    if buf[0] != b'/' {
        return Err(libc::ENOENT);
    }
    Ok(())
}

/// `lo` up in a new network namespace: SIOCGIFFLAGS / SIOCSIFFLAGS, no `ip` binary.
pub(crate) fn loopback_up() -> SysResult<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    // SAFETY: socket takes integers and returns a new fd.
    let s = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let mut req = IfReq {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: an ioctl on an fd this process owns; the argument is an integer or points at a live value of the type the request reads or writes.
    let r = cvt(unsafe { libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) }).and_then(|_| {
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        // SAFETY: an ioctl on an fd this process owns; the argument is an integer or points at a live value of the type the request reads or writes.
        cvt(unsafe { libc::ioctl(s, libc::SIOCSIFFLAGS, &req) })
    });
    // SAFETY: closes an fd this process owns and does not use again.
    unsafe { libc::close(s) };
    r.map(drop)
}

/// Keeps exactly `caps` (bit N = capability N): bounding set trimmed, then effective =
/// permitted = the set, inheritable and ambient empty (CVE-2022-24769).
pub(crate) fn drop_capabilities(caps: u64, cap_last: u32) -> SysResult<()> {
    drop_bounding(caps, cap_last)?;
    set_capabilities(caps)
}

/// Trims the bounding set to `caps` (needs CAP_SETPCAP: before any other drop).
pub(crate) fn drop_bounding(caps: u64, cap_last: u32) -> SysResult<()> {
    for cap in 0..=cap_last {
        // Only what is still in the bounding set: dropping needs CAP_SETPCAP even for
        // a capability already gone (PID 1 may have dropped SETPCAP itself).
        // SAFETY: prctl with integer arguments only.
        let present =
            unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } > 0;
        if caps & (1u64 << cap) == 0 && present {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r < 0 && errno() != libc::EINVAL {
                return Err(errno());
            }
        }
    }
    Ok(())
}

/// Effective = permitted = `caps` (as far as this process holds them), inheritable and
/// ambient empty. After a setuid to a non-zero uid nothing is held any more, so a
/// non-root command keeps no capability, as with Docker.
pub(crate) fn set_capabilities(caps: u64) -> SysResult<()> {
    capset_held(caps, caps, 0)
}

/// Sets the effective, permitted and inheritable sets, each no more than this process
/// holds (`--privileged` asks for every capability; a host without, say,
/// CAP_SYS_RESOURCE cannot give that one; the kernel's own rule for inheritable,
/// without a bounding-set lookup), and clears the ambient set.
fn capset_held(effective: u64, permitted: u64, inheritable: u64) -> SysResult<()> {
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
    let mut held = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget fills two Data structs for version 3, which `held` is.
    let r = unsafe { libc::syscall(libc::SYS_capget, &hdr as *const Header, held.as_mut_ptr()) };
    cvt(r as c_int)?;
    let have = held[0].permitted as u64 | (held[1].permitted as u64) << 32;
    let (e, p, i) = (effective & have, permitted & have, inheritable & have);
    let data = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: a raw syscall whose pointer arguments point at live values of the sizes the kernel expects.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) } as c_int)?;
    // SAFETY: prctl with integer arguments only.
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

/// An OCI process's capability sets exactly (as far as this process holds them),
/// after its credentials were set with PR_SET_KEEPCAPS; the ambient ones raised last.
pub(crate) fn set_cap_sets(sets: &super::spec::CapSets) -> SysResult<()> {
    capset_held(sets.effective, sets.permitted, sets.inheritable)?;
    for cap in 0..64u64 {
        if sets.ambient & (1 << cap) != 0 {
            // An ambient capability must be permitted and inheritable; one that is not
            // is left out, as runc does.
            // SAFETY: prctl with integer arguments only.
            unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
        }
    }
    Ok(())
}

/// Every signal back to its default action and none blocked, as a command expects
/// after exec (Rust ignores SIGPIPE; PID 1 blocked what it forwards).
pub(crate) fn default_signals() {
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

pub(crate) fn redirect_null(fd: c_int) -> SysResult<()> {
    // SAFETY: a NUL-terminated path; the kernel reads nothing else.
    let n = cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: dup2 between fds this process owns.
    cvt(unsafe { libc::dup2(n, fd) })?;
    // SAFETY: closes an fd this process owns and does not use again.
    unsafe { libc::close(n) };
    Ok(())
}

/// Random bytes from the kernel (a container id).
pub(crate) fn random_bytes<const N: usize>() -> SysResult<[u8; N]> {
    let mut b = [0u8; N];
    // SAFETY: getrandom writes at most b.len() bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(errno());
    }
    Ok(b)
}

/// Clears FD_CLOEXEC on `fd`, so an exec'd program inherits it (async-signal-safe:
/// used between fork and exec).
pub(crate) fn clear_cloexec(fd: RawFd) -> SysResult<()> {
    // SAFETY: F_SETFD takes an int flag set and touches no memory.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(|_| ())
}

/// Moves this process into a mount namespace of its own whose mounts are all private:
/// nothing it mounts or unmounts propagates back (async-signal-safe).
pub(crate) fn private_mount_ns() -> SysResult<()> {
    // SAFETY: unshare takes integer flags.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
}

/// A pidfd of this process, for the child to tell whether we are still there.
pub(crate) fn pidfd_self() -> SysResult<OwnedFd> {
    // SAFETY: getpid takes nothing and cannot fail.
    pidfd_open(unsafe { libc::getpid() })
}

/// A pidfd of `pid` (readable once it has exited).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> SysResult<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(errno());
    }
    // SAFETY: r is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// clone3 without CLONE_VM: a fork into new namespaces, and into the cgroup2 directory
/// `cgroup_fd` when given, with a new cgroup namespace rooted there when `cgroupns`
/// (the child has no v1 hierarchy left to join). Returns 0 in the child.
pub(crate) fn clone3(ns_flags: u64, cgroup_fd: Option<RawFd>, cgroupns: bool) -> SysResult<i32> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    // SAFETY: clone_args is plain data; all-zero is its documented default.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = ns_flags;
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    if cgroupns {
        args.flags |= libc::CLONE_NEWCGROUP as u64;
    }
    args.exit_signal = libc::SIGCHLD as u64;
    // SAFETY: without CLONE_VM this is a fork: the child gets its own copy of the
    // address space and continues from here with r == 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if r < 0 {
        return Err(errno());
    }
    Ok(r as i32)
}

/// Joins a new anonymous session keyring (keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)),
/// as runc does: the caller's session keyring is not the container's. A kernel without
/// keyrings has nothing to leave behind.
pub(crate) fn join_new_session_keyring() -> SysResult<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl with a null name pointer: the kernel reads nothing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    match r {
        r if r >= 0 => Ok(()),
        _ if errno() == libc::ENOSYS => Ok(()),
        _ => Err(errno()),
    }
}

/// Writes `value` to the file `path` (a /proc/sys key of an OCI config's sysctl).
pub(crate) fn write_proc_file(path: &CStr, value: &[u8]) -> SysResult<()> {
    // SAFETY: a NUL-terminated path.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    // SAFETY: a buffer the caller owns, with its true length.
    let n = unsafe { libc::write(fd, value.as_ptr().cast(), value.len()) };
    let e = errno();
    // SAFETY: closes the fd opened above.
    unsafe { libc::close(fd) };
    if n < 0 {
        return Err(e);
    }
    Ok(())
}

/// Sets this process's oom_score_adj to `value` (decimal) unless it has it already
/// (inherited from PID 1, which set it while still dumpable: in a user namespace a
/// non-dumpable process's /proc files belong to host root and refuse the write).
pub(crate) fn set_oom_score_adj(value: &CStr) -> SysResult<()> {
    let path = c"/proc/self/oom_score_adj";
    let mut cur = [0u8; 16];
    // SAFETY: a NUL-terminated path.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: a buffer this frame owns, with its true length.
    let n = unsafe { libc::read(fd, cur.as_mut_ptr().cast(), cur.len()) };
    // SAFETY: closes the fd opened above.
    unsafe { libc::close(fd) };
    if n > 0 && cur[..n as usize].trim_ascii_end() == value.to_bytes() {
        return Ok(());
    }
    // SAFETY: a NUL-terminated path.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    let v = value.to_bytes();
    // SAFETY: a buffer this frame owns, with its true length.
    let n = unsafe { libc::write(fd, v.as_ptr().cast(), v.len()) };
    let e = errno();
    // SAFETY: closes the fd opened above.
    unsafe { libc::close(fd) };
    if n < 0 {
        return Err(e);
    }
    Ok(())
}

/// Whether this user namespace denies setgroups(2) (/proc/self/setgroups says
/// "deny"); read without allocating.
pub(crate) fn setgroups_denied() -> bool {
    let mut buf = [0u8; 8];
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/proc/self/setgroups".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: a buffer this frame owns, with its true length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: closes the fd opened above.
    unsafe { libc::close(fd) };
    n >= 4 && &buf[..4] == b"deny"
}

/// Joins the user namespace `fd` and becomes its root (uid and gid 0, no supplementary
/// groups): host root's process turns into the container range's first id.
pub(crate) fn become_root_of(fd: RawFd) -> SysResult<()> {
    // SAFETY: setns with an fd this process owns and integer flags.
    cvt(unsafe { libc::setns(fd, libc::CLONE_NEWUSER) })?;
    // SAFETY: closes an fd this process owns and does not use again.
    unsafe { libc::close(fd) };
    // SAFETY: integer arguments; a null list of length 0.
    cvt(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setresgid(0, 0, 0) })?;
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setresuid(0, 0, 0) }).map(drop)
}

/// setrlimit(2).
pub(crate) fn setrlimit(resource: u32, soft: u64, hard: u64) -> SysResult<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: a pointer to an rlimit this frame owns.
    cvt(unsafe { libc::setrlimit(resource as _, &lim) }).map(drop)
}

/// Puts `fds[i]` on fd `i` (negative entries keep what is there). The first step of
/// the cloned child and of `exec`'s forked one: the stdio plan (stdio.rs) was made in
/// the parent, and its fds are all above 2, so no dup2 here clobbers another's source.
pub(crate) fn install_stdio(fds: &[RawFd; 3]) -> SysResult<()> {
    for (i, &fd) in fds.iter().enumerate() {
        if fd >= 0 {
            // SAFETY: dup2 between fds this process owns.
            cvt(unsafe { libc::dup2(fd, i as c_int) })?;
        }
    }
    Ok(())
}

/// A connected AF_UNIX SOCK_SEQPACKET pair, close-on-exec (the console socket).
/// A socket bound to [::]:`port` for IPv6 only (IPV6_V6ONLY: the IPv4 port is bound
/// on its own), listening when TCP.
pub(crate) fn bind_v6only(port: u16, udp: bool) -> SysResult<OwnedFd> {
    let kind = if udp {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: socket takes integer arguments and returns a new fd or -1.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET6, kind | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a new socket nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: c_int = 1;
    // SAFETY: setsockopt reads sizeof(int) bytes from &one.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&one as *const c_int).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    })?;
    // SAFETY: an all-zero sockaddr_in6 is the unspecified address.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_port = port.to_be();
    // SAFETY: bind reads a sockaddr_in6 of the size given.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    })?;
    if !udp {
        // SAFETY: listen takes an fd and a backlog.
        cvt(unsafe { libc::listen(fd, 128) })?;
    }
    Ok(sock)
}

pub(crate) fn socketpair() -> SysResult<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: socketpair writes two fds into the array it is given.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: two new fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Room for one SCM_RIGHTS message carrying one fd, aligned for `cmsghdr`.
#[repr(C)]
union FdCmsg {
    _align: libc::cmsghdr,
    buf: [u8; 64],
}

/// Sends `fd` over the unix socket `sock` (SCM_RIGHTS, one byte of payload). Allocates
/// nothing: the cloned child sends the console's master with it.
pub(crate) fn send_fd(sock: RawFd, fd: RawFd) -> SysResult<()> {
    let mut byte = [b'm'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cmsg = FdCmsg { buf: [0; 64] };
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: the union's bytes are always initialised; taking their address reads nothing.
    msg.msg_control = unsafe { cmsg.buf.as_mut_ptr() }.cast();
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) } as _;
    // SAFETY: msg_control points at 64 aligned bytes, more than CMSG_SPACE(4): the
    // first header and its data lie inside the buffer.
    unsafe {
        let h = libc::CMSG_FIRSTHDR(&msg);
        (*h).cmsg_level = libc::SOL_SOCKET;
        (*h).cmsg_type = libc::SCM_RIGHTS;
        (*h).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(h).cast::<c_int>(), fd);
    }
    loop {
        // SAFETY: msg and everything it points at live on this frame for the call.
        let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(());
        }
        if errno() != libc::EINTR {
            return Err(errno());
        }
    }
}

/// Receives one fd sent by `send_fd`, close-on-exec; None when the peer closed the
/// socket without sending one (the child failed before; its report says why).
pub(crate) fn recv_fd(sock: RawFd) -> SysResult<Option<OwnedFd>> {
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cmsg = FdCmsg { buf: [0; 64] };
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: the union's bytes are always initialised; taking their address reads nothing.
    msg.msg_control = unsafe { cmsg.buf.as_mut_ptr() }.cast();
    msg.msg_controllen = 64;
    let n = loop {
        // SAFETY: msg and everything it points at live on this frame for the call.
        let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r;
        }
        if errno() != libc::EINTR {
            return Err(errno());
        }
    };
    if n == 0 {
        return Ok(None);
    }
    // SAFETY: the kernel filled msg_control (msg_controllen says how much); the
    // CMSG_* walk stays inside it, and an SCM_RIGHTS header carries whole fds.
    unsafe {
        let mut h = libc::CMSG_FIRSTHDR(&msg);
        let mut got = None;
        while !h.is_null() {
            if (*h).cmsg_level == libc::SOL_SOCKET && (*h).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(h).cast::<c_int>();
                let count = ((*h).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<c_int>();
                for i in 0..count {
                    let fd = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    // The first is the one; any other is closed (dropped) here.
                    if got.is_none() {
                        got = Some(fd);
                    }
                }
            }
            h = libc::CMSG_NXTHDR(&msg, h);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(libc::EMSGSIZE);
        }
        Ok(got)
    }
}
