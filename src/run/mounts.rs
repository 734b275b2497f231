//! The container's file tree, built by the child inside its new mount namespace:
//! overlay root, /proc, /sys, /dev, /etc files, volumes, masks, then pivot_root.
//!
//! Invariant (CVE-2021-30465, CVE-2019-19921, CVE-2025-31133): every target inside the
//! new root is opened with openat2(RESOLVE_IN_ROOT) from an fd of the root and mounted
//! onto /proc/self/fd/N, so an image's symlinks can never point a mount at the host;
//! /proc and the mask targets must not be symlinks at all; the /dev/null used for masks
//! is the one locker made, checked to be char 1:3. Only raw syscalls: this runs between
//! clone and exec.
//!
//! Invariant (devices): every mount the container can create files on is nodev: the
//! overlay, read-only or (for a build) direct root, the /dev, /dev/shm and --tmpfs tmpfses, mqueue, and
//! volumes with all their submounts (devpts takes no mknod). The container keeps
//! CAP_MKNOD, so a node it makes (`mknod /data/kmsg c 1 11`) must be inert. On cgroup
//! v2 this is the whole guard (no BPF_PROG_TYPE_CGROUP_DEVICE program is loaded); on
//! v1 the devices controller's allow-list (cgroups.rs) refuses the mknod as well.

use std::ffi::{c_int, c_ulong, CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::overlay::Overlay;
use super::plan::{DevNode, Layers, MountOp};
use super::sys::{cvt, errno, mount, FdPath, SysResult};
use super::tty::{self, Pty};
use crate::fs::openat2::openat2;

/// Opens `rel` inside `root` as an O_PATH fd; symlinks are followed only inside root.
pub(crate) fn open_in_root(root: RawFd, rel: &CStr, extra: c_int) -> SysResult<OwnedFd> {
    openat2(
        root,
        rel,
        libc::O_PATH | extra,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Opens `rel` inside `root` refusing any symlink on the way (for /proc and masks).
fn open_no_symlinks(root: RawFd, rel: &CStr, extra: c_int) -> SysResult<OwnedFd> {
    openat2(
        root,
        rel,
        libc::O_PATH | extra,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
    )
}

fn fstat(fd: RawFd) -> SysResult<libc::stat> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: an fd this process owns and a pointer to a stat this frame owns.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Splits a relative path (no leading '/', no '..', as plan guarantees) at its last '/'.
/// Writes the parent into `buf` as a C string.
fn split_last<'a>(rel: &'a CStr, buf: &'a mut [u8; 4096]) -> SysResult<(&'a CStr, &'a CStr)> {
    let bytes = rel.to_bytes_with_nul();
    match bytes.iter().rposition(|&b| b == b'/') {
        None => Ok((c".", rel)),
        Some(i) => {
            if i >= buf.len() {
                return Err(libc::ENAMETOOLONG);
            }
            buf[..i].copy_from_slice(&bytes[..i]);
            buf[i] = 0;
            let parent = CStr::from_bytes_with_nul(&buf[..=i]).map_err(|_| libc::EINVAL)?;
            let name = CStr::from_bytes_with_nul(&bytes[i + 1..]).map_err(|_| libc::EINVAL)?;
            Ok((parent, name))
        }
    }
}

/// `mkdir -p` inside root: each level resolved inside root, created with mkdirat in its
/// resolved parent. Returns an O_PATH fd of the directory.
pub(crate) fn mkdir_all_in_root(root: RawFd, rel: &CStr) -> SysResult<OwnedFd> {
    let bytes = rel.to_bytes();
    let mut buf = [0u8; 4096];
    if bytes.len() >= buf.len() {
        return Err(libc::ENAMETOOLONG);
    }
    let mut dir = openat2(
        root,
        c".",
        libc::O_PATH | libc::O_DIRECTORY,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )?;
    let mut start = 0;
    while start < bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |p| start + p);
        buf[..end].copy_from_slice(&bytes[..end]);
        buf[end] = 0;
        let prefix = CStr::from_bytes_with_nul(&buf[..=end]).map_err(|_| libc::EINVAL)?;
        dir = match open_in_root(root, prefix, libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => {
                let mut name = [0u8; 256];
                let comp = &bytes[start..end];
                if comp.len() >= name.len() {
                    return Err(libc::ENAMETOOLONG);
                }
                name[..comp.len()].copy_from_slice(comp);
                // SAFETY: an fd this process owns and a NUL-terminated name.
                let r = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr().cast(), 0o755) };
                if r < 0 && errno() != libc::EEXIST {
                    return Err(errno());
                }
                open_in_root(root, prefix, libc::O_DIRECTORY)?
            }
            Err(e) => return Err(e),
        };
        start = end + 1;
    }
    Ok(dir)
}

/// An O_PATH fd of the file `rel` inside root, created empty when missing (parents too).
/// A symlink at `rel` is replaced by the file when `replace_symlink` (never followed).
fn file_in_root(root: RawFd, rel: &CStr, replace_symlink: bool) -> SysResult<OwnedFd> {
    let mut buf = [0u8; 4096];
    let (parent, name) = split_last(rel, &mut buf)?;
    let dir = if parent == c"." {
        open_in_root(root, c".", libc::O_DIRECTORY)?
    } else {
        mkdir_all_in_root(root, parent)?
    };
    // O_PATH|O_DIRECTORY fds can't be used for openat(O_CREAT): reopen the dir.
    let dirfd = openat2(dir.as_raw_fd(), c".", libc::O_DIRECTORY | libc::O_RDONLY, 0)?;
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: an fd this process owns, a NUL-terminated name and a pointer to a stat this frame owns.
    let r = unsafe {
        libc::fstatat(
            dirfd.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    let exists = r == 0;
    if exists && st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        if !replace_symlink {
            return Err(libc::ELOOP);
        }
        // SAFETY: an fd this process owns and a NUL-terminated name.
        cvt(unsafe { libc::unlinkat(dirfd.as_raw_fd(), name.as_ptr(), 0) })?;
    }
    if !exists || st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        // SAFETY: an fd this process owns and a NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                dirfd.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        };
        cvt(fd)?;
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(fd) };
    }
    // SAFETY: an fd this process owns and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dirfd.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    cvt(fd)?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Paths on the host side of the container (the base dir is locker's own, under ROOT/run).
pub(crate) struct Base<'a> {
    /// ROOT/run/ID: a tmpfs is mounted here inside the new mount namespace.
    pub dir: &'a CStr,
    pub root: &'a CStr,
    pub upper: &'a CStr,
    pub work: &'a CStr,
    pub nodes: &'a CStr,
    pub files: &'a CStr,
    pub lower: &'a CStr,
    /// None when the root is a bound tree (read-only or a build's).
    pub overlay: Option<&'a Overlay>,
    /// `--userns auto`: detached idmapped mounts of the lower layers and where they
    /// are attached (base/lN, which `lower` and `overlay` name).
    pub idmapped: &'a [(RawFd, &'a CStr)],
    /// `--userns auto`: the host ids of the container's root, who owns the writable
    /// layer and /dev (host root made them).
    pub owner: Option<(u32, u32)>,
}

/// Which step failed; `index` says which mount op (for the message).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MountFailure {
    pub what: &'static str,
    pub index: u32,
    pub errno: i32,
}

fn fail(what: &'static str, index: usize) -> impl Fn(i32) -> MountFailure {
    move |errno| MountFailure {
        what,
        index: index as u32,
        errno,
    }
}

const NONE: usize = u32::MAX as usize;

/// Makes the mount tree private, mounts the base tmpfs and the root. Returns the root fd.
pub(crate) fn prepare_root(
    base: &Base,
    layers: &Layers,
    base_tmpfs: &CStr,
) -> Result<OwnedFd, MountFailure> {
    // Nothing mounted from here on may propagate back to the host.
    mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(fail("make / private", NONE))?;
    mount(
        Some(c"tmpfs"),
        base.dir,
        Some(c"tmpfs"),
        libc::MS_NOSUID,
        Some(base_tmpfs),
    )
    .map_err(fail("mount tmpfs on", NONE))?;
    for d in [base.root, base.upper, base.work, base.nodes, base.files] {
        // SAFETY: a NUL-terminated path.
        cvt(unsafe { libc::mkdir(d.as_ptr(), 0o755) }).map_err(fail("mkdir", NONE))?;
    }
    if let Some((uid, gid)) = base.owner {
        for d in [base.upper, base.work] {
            // SAFETY: a NUL-terminated path and integer ids.
            cvt(unsafe { libc::chown(d.as_ptr(), uid, gid) }).map_err(fail("chown", NONE))?;
        }
    }
    for &(fd, at) in base.idmapped {
        // SAFETY: a NUL-terminated path.
        cvt(unsafe { libc::mkdir(at.as_ptr(), 0o755) }).map_err(fail("mkdir", NONE))?;
        // SAFETY: a raw syscall with an fd this process owns and NUL-terminated paths.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                at.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        cvt(r as c_int).map_err(fail("attach the idmapped lower layer", NONE))?;
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(fd) };
    }
    match layers {
        Layers::ReadOnly | Layers::Direct | Layers::Bundle { .. } => {
            mount(
                Some(base.lower),
                base.root,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(fail("bind image root", NONE))?;
        }
        _ => match base.overlay {
            Some(o) => o
                .mount_at(base.root)
                .map_err(|(what, errno)| MountFailure {
                    what,
                    index: NONE as u32,
                    errno,
                })?,
            None => {
                return Err(fail("mount overlay (no layers planned)", NONE)(
                    libc::EINVAL,
                ))
            }
        },
    }
    match layers {
        Layers::ReadOnly | Layers::ReadOnlyStack => mount(
            None,
            base.root,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NODEV,
            None,
        )
        .map_err(fail("remount image root read-only", NONE))?,
        // A build's tree, written in place: maintainer scripts run as root with
        // CAP_MKNOD, so a node they make must be inert here too.
        Layers::Direct => mount(
            None,
            base.root,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NODEV | libc::MS_NOSUID,
            None,
        )
        .map_err(fail("remount image root nodev", NONE))?,
        _ => {}
    }
    // SAFETY: a NUL-terminated path; the kernel reads nothing else.
    let fd = unsafe {
        libc::open(
            base.root.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    cvt(fd).map_err(fail("open root", NONE))?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes one small file into the base tmpfs.
pub(crate) fn write_file(dir: &CStr, name: &CStr, data: &[u8]) -> SysResult<()> {
    // SAFETY: a NUL-terminated path; the kernel reads nothing else.
    let dfd = cvt(unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: an fd this process owns and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dfd,
            name.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    let r = cvt(fd).and_then(|fd| {
        // SAFETY: a buffer this frame owns, with its true length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(fd) };
        if n < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    });
    // SAFETY: closes an fd this process owns and does not use again.
    unsafe { libc::close(dfd) };
    r
}

/// What `apply` needs besides the plan.
/// Host-side sources, as paths: an fd opened before the clone belongs to the host's
/// mount namespace, and bind mounts from another namespace fail (EINVAL), so the child
/// opens them in its own copy of the host tree, before pivot_root.
pub(crate) struct Sources<'a> {
    pub volumes: &'a [CString],
    /// A named network's shared hosts file, bound read-only over /etc/hosts instead of
    /// the container's own (locker rewrites it in place as containers come and go).
    pub shared_hosts: Option<&'a CStr>,
}

const DEV_NODES: &[(&CStr, &CStr, u32, u32)] = &[
    (c"null", c"/dev/null", 1, 3),
    (c"zero", c"/dev/zero", 1, 5),
    (c"full", c"/dev/full", 1, 7),
    (c"random", c"/dev/random", 1, 8),
    (c"urandom", c"/dev/urandom", 1, 9),
    (c"tty", c"/dev/tty", 5, 0),
];

/// Applies the mount ops in order inside root. Returns the console's pty (with -t: the
/// `Console` op), for the caller to send the master to the parent and keep the slave.
pub(crate) fn apply(
    root: &OwnedFd,
    base: &Base,
    ops: &[MountOp],
    src: &Sources,
) -> Result<Option<Pty>, MountFailure> {
    let root = root.as_raw_fd();
    let mut devnull: Option<OwnedFd> = None;
    let mut pty = None;
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    for (i, op) in ops.iter().enumerate() {
        match op {
            MountOp::Proc => {
                // CVE-2019-19921: /proc must be a real directory, not a symlink anywhere.
                let t = match open_no_symlinks(root, c"proc", libc::O_DIRECTORY) {
                    Err(libc::ENOENT) => {
                        mkdir_all_in_root(root, c"proc").map_err(fail("create", i))?
                    }
                    r => r.map_err(fail("open (must be a directory, not a symlink)", i))?,
                };
                mount(
                    Some(c"proc"),
                    FdPath::new(t.as_raw_fd()).as_cstr(),
                    Some(c"proc"),
                    nosuid_nodev_noexec,
                    None,
                )
                .map_err(fail("mount proc on", i))?;
            }
            MountOp::Sys => {
                let t = match open_no_symlinks(root, c"sys", libc::O_DIRECTORY) {
                    Err(libc::ENOENT) => {
                        mkdir_all_in_root(root, c"sys").map_err(fail("create", i))?
                    }
                    r => r.map_err(fail("open (must be a directory, not a symlink)", i))?,
                };
                let target = FdPath::new(t.as_raw_fd());
                let fresh = mount(
                    Some(c"sysfs"),
                    target.as_cstr(),
                    Some(c"sysfs"),
                    nosuid_nodev_noexec | libc::MS_RDONLY,
                    None,
                );
                match fresh {
                    // A rootless container on the host's network: sysfs mounts only
                    // for a network namespace the user namespace owns. The host's
                    // /sys, read-only all the way down, as rootless podman binds it.
                    Err(libc::EPERM) => {
                        mount(
                            Some(c"/sys"),
                            target.as_cstr(),
                            None,
                            libc::MS_BIND | libc::MS_REC,
                            None,
                        )
                        .map_err(fail("bind the host's /sys on", i))?;
                        let t = open_in_root(root, c"sys", 0).map_err(fail("open", i))?;
                        set_attr_recursive(
                            t.as_raw_fd(),
                            libc::MOUNT_ATTR_RDONLY
                                | libc::MOUNT_ATTR_NOSUID
                                | libc::MOUNT_ATTR_NODEV
                                | libc::MOUNT_ATTR_NOEXEC,
                        )
                        .map_err(fail("make read-only", i))?;
                    }
                    r => r.map_err(fail("mount sysfs on", i))?,
                }
            }
            MountOp::Dev => {
                setup_dev(root, base, i)?;
                let fd =
                    open_no_symlinks(root, c"dev/null", 0).map_err(fail("open /dev/null", i))?;
                let st = fstat(fd.as_raw_fd()).map_err(fail("stat /dev/null", i))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
                    return Err(MountFailure {
                        what: "check /dev/null is char 1:3",
                        index: i as u32,
                        errno: libc::EINVAL,
                    });
                }
                devnull = Some(fd);
            }
            MountOp::Console => {
                // The pty comes from the container's own devpts (mounted with /dev
                // above), its slave bound over /dev/console.
                let p = tty::open_in(root)
                    .map_err(fail("open a pty on the container's /dev/pts/ptmx", i))?;
                let dev =
                    open_no_symlinks(root, c"dev", libc::O_DIRECTORY).map_err(fail("open", i))?;
                let t =
                    file_in_root(dev.as_raw_fd(), c"console", false).map_err(fail("create", i))?;
                mount(
                    Some(FdPath::new(p.slave.as_raw_fd()).as_cstr()),
                    FdPath::new(t.as_raw_fd()).as_cstr(),
                    None,
                    libc::MS_BIND,
                    None,
                )
                .map_err(fail("bind pty on", i))?;
                pty = Some(p);
            }
            MountOp::EtcFile { name } => {
                let mut path = [0u8; 64];
                let n = name.len();
                path[..4].copy_from_slice(b"etc/");
                path[4..4 + n].copy_from_slice(name.as_bytes());
                let rel = CStr::from_bytes_until_nul(&path).map_err(|_| MountFailure {
                    what: "name",
                    index: i as u32,
                    errno: libc::EINVAL,
                })?;
                // Best effort: a read-only image without /etc keeps what it has.
                let t = match file_in_root(root, rel, true) {
                    Ok(t) => t,
                    Err(libc::EROFS) | Err(libc::ENOENT) => continue,
                    Err(e) => return Err(fail("create", i)(e)),
                };
                let mut srcp = [0u8; 4096];
                let fb = base.files.to_bytes();
                srcp[..fb.len()].copy_from_slice(fb);
                srcp[fb.len()] = b'/';
                srcp[fb.len() + 1..fb.len() + 1 + n].copy_from_slice(name.as_bytes());
                let own = CStr::from_bytes_until_nul(&srcp).map_err(|_| MountFailure {
                    what: "name",
                    index: i as u32,
                    errno: libc::EINVAL,
                })?;
                let shared = src.shared_hosts.filter(|_| *name == "hosts");
                let target = FdPath::new(t.as_raw_fd());
                mount(
                    Some(shared.unwrap_or(own)),
                    target.as_cstr(),
                    None,
                    libc::MS_BIND,
                    None,
                )
                .map_err(fail("bind file on", i))?;
                if shared.is_some() {
                    // Other containers read it too: this one may not write it. The fd
                    // above is the file under the new mount: resolve the path again
                    // to reach the mount itself.
                    let t = file_in_root(root, rel, false).map_err(fail("create", i))?;
                    let target = FdPath::new(t.as_raw_fd());
                    mount(
                        None,
                        target.as_cstr(),
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        None,
                    )
                    .map_err(fail("remount read-only", i))?;
                }
            }
            MountOp::Bind {
                index,
                target,
                readonly,
                ..
            } => {
                let (sfd, t) = bind_ends(root, &src.volumes[*index], target, i)?;
                mount(
                    Some(FdPath::new(sfd.as_raw_fd()).as_cstr()),
                    FdPath::new(t.as_raw_fd()).as_cstr(),
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
                .map_err(fail("bind volume on", i))?;
                // On every submount of the source too (a MS_REMOUNT would change only
                // the top one): nodev, so a node the container makes in a volume is
                // inert; nosuid; read-only for `:ro`.
                let t = open_in_root(root, target, 0).map_err(fail("open", i))?;
                let mut set = libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSUID;
                if *readonly {
                    set |= libc::MOUNT_ATTR_RDONLY;
                }
                set_attr_recursive(t.as_raw_fd(), set)
                    .map_err(fail("set flags (nodev, nosuid, ro) of volume on", i))?;
            }
            MountOp::Tmpfs {
                target,
                data,
                flags,
            } => {
                let t = mkdir_all_in_root(root, target).map_err(fail("create", i))?;
                mount(
                    Some(c"tmpfs"),
                    FdPath::new(t.as_raw_fd()).as_cstr(),
                    Some(c"tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV | flags,
                    Some(data),
                )
                .map_err(fail("mount tmpfs on", i))?;
            }
            MountOp::Mask { target } => {
                let t = match open_no_symlinks(root, target, 0) {
                    Err(libc::ENOENT) => continue,
                    r => r.map_err(fail("open", i))?,
                };
                let st = fstat(t.as_raw_fd()).map_err(fail("stat", i))?;
                let tp = FdPath::new(t.as_raw_fd());
                if is_dir(&st) {
                    mount(
                        Some(c"tmpfs"),
                        tp.as_cstr(),
                        Some(c"tmpfs"),
                        libc::MS_RDONLY | nosuid_nodev_noexec,
                        Some(c"size=0,mode=555"),
                    )
                    .map_err(fail("mask", i))?;
                } else {
                    let null = devnull.as_ref().ok_or(MountFailure {
                        what: "mask (no /dev/null yet)",
                        index: i as u32,
                        errno: libc::EINVAL,
                    })?;
                    mount(
                        Some(FdPath::new(null.as_raw_fd()).as_cstr()),
                        tp.as_cstr(),
                        None,
                        libc::MS_BIND,
                        None,
                    )
                    .map_err(fail("mask", i))?;
                }
            }
            MountOp::ReadOnly { target } => {
                let t = match open_no_symlinks(root, target, 0) {
                    Err(libc::ENOENT) => continue,
                    r => r.map_err(fail("open", i))?,
                };
                let tp = FdPath::new(t.as_raw_fd());
                mount(
                    Some(tp.as_cstr()),
                    tp.as_cstr(),
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
                .map_err(fail("bind read-only", i))?;
                let t = open_no_symlinks(root, target, 0).map_err(fail("open", i))?;
                mount(
                    None,
                    FdPath::new(t.as_raw_fd()).as_cstr(),
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | nosuid_nodev_noexec,
                    None,
                )
                .map_err(fail("remount read-only", i))?;
            }
            MountOp::Fs {
                target,
                source,
                fstype,
                flags,
                data,
                propagation,
            } => {
                // CVE-2019-19921: proc and sysfs never land on a symlink's target.
                let t = if fstype.to_bytes() == b"proc" || fstype.to_bytes() == b"sysfs" {
                    match open_no_symlinks(root, target, libc::O_DIRECTORY) {
                        Err(libc::ENOENT) => mkdir_all_in_root(root, target),
                        r => r,
                    }
                    .map_err(fail("open (must be a directory, not a symlink)", i))?
                } else {
                    mkdir_all_in_root(root, target).map_err(fail("create", i))?
                };
                let data = (!data.is_empty()).then_some(data.as_c_str());
                mount(
                    Some(source),
                    FdPath::new(t.as_raw_fd()).as_cstr(),
                    Some(fstype),
                    *flags,
                    data,
                )
                .map_err(fail("mount on", i))?;
                if *propagation != 0 {
                    let t = open_in_root(root, target, 0).map_err(fail("open", i))?;
                    mount(
                        None,
                        FdPath::new(t.as_raw_fd()).as_cstr(),
                        None,
                        *propagation,
                        None,
                    )
                    .map_err(fail("set propagation of", i))?;
                }
            }
            MountOp::OciBind {
                index,
                target,
                recursive,
                flags,
                propagation,
            } => {
                let (sfd, t) = bind_ends(root, &src.volumes[*index], target, i)?;
                let rec = if *recursive { libc::MS_REC } else { 0 };
                mount(
                    Some(FdPath::new(sfd.as_raw_fd()).as_cstr()),
                    FdPath::new(t.as_raw_fd()).as_cstr(),
                    None,
                    libc::MS_BIND | rec,
                    None,
                )
                .map_err(fail("bind on", i))?;
                if *flags != 0 || *propagation != 0 {
                    let t = open_in_root(root, target, 0).map_err(fail("open", i))?;
                    let tp = FdPath::new(t.as_raw_fd());
                    if *flags != 0 {
                        mount(
                            None,
                            tp.as_cstr(),
                            None,
                            libc::MS_BIND | libc::MS_REMOUNT | *flags,
                            None,
                        )
                        .map_err(fail("remount", i))?;
                    }
                    if *propagation != 0 {
                        mount(None, tp.as_cstr(), None, *propagation, None)
                            .map_err(fail("set propagation of", i))?;
                    }
                }
            }
            MountOp::DevNodes { nodes } => {
                make_nodes(root, base, nodes, i)?;
                let fd =
                    open_no_symlinks(root, c"dev/null", 0).map_err(fail("open /dev/null", i))?;
                let st = fstat(fd.as_raw_fd()).map_err(fail("stat /dev/null", i))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
                    return Err(MountFailure {
                        what: "check /dev/null is char 1:3",
                        index: i as u32,
                        errno: libc::EINVAL,
                    });
                }
                devnull = Some(fd);
            }
        }
    }
    Ok(pty)
}

/// A bind's two ends: the host source (O_PATH, opened before anything follows it) and
/// its target inside `root`, made a directory or a file to match the source.
fn bind_ends(
    root: RawFd,
    source: &CStr,
    target: &CStr,
    i: usize,
) -> Result<(OwnedFd, OwnedFd), MountFailure> {
    // SAFETY: a NUL-terminated path; the kernel reads nothing else.
    let sfd = cvt(unsafe { libc::open(source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) })
        .map_err(fail("stat source of", i))?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    let st = fstat(sfd.as_raw_fd()).map_err(fail("stat source of", i))?;
    let t = if is_dir(&st) {
        mkdir_all_in_root(root, target)
    } else {
        file_in_root(root, target, false)
    }
    .map_err(fail("create", i))?;
    Ok((sfd, t))
}

/// mount_setattr(2) on `fd`'s mount and every mount below it.
fn set_attr_recursive(fd: RawFd, set: u64) -> SysResult<()> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = set;
    // SAFETY: a raw syscall whose pointer arguments point at live values of the sizes
    // the kernel expects.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    } as c_int)
    .map(drop)
}

/// `DevNodes`: each node made in the base tmpfs (where device nodes work), owned as
/// asked, and bound over a file at its target; then /dev's standard symlinks where
/// nothing is in their place.
fn make_nodes(root: RawFd, base: &Base, nodes: &[DevNode], i: usize) -> Result<(), MountFailure> {
    // SAFETY: a NUL-terminated path; the kernel reads nothing else.
    let dir = cvt(unsafe {
        libc::open(
            base.nodes.as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
        )
    })
    .map_err(fail("open nodes dir for", i))?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    let dir = unsafe { OwnedFd::from_raw_fd(dir) };
    for n in nodes {
        let d = dir.as_raw_fd();
        // SAFETY: an fd this process owns and a NUL-terminated name.
        cvt(unsafe { libc::mknodat(d, n.name.as_ptr(), n.mode, n.dev) })
            .map_err(fail("mknod for", i))?;
        // SAFETY: as above.
        cvt(unsafe { libc::fchownat(d, n.name.as_ptr(), n.uid, n.gid, 0) })
            .map_err(fail("chown node for", i))?;
        // SAFETY: as above.
        let s = unsafe {
            libc::openat(
                d,
                n.name.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        // SAFETY: the fd was just returned by the kernel and nothing else owns it.
        let s = unsafe { OwnedFd::from_raw_fd(cvt(s).map_err(fail("open node for", i))?) };
        let t = file_in_root(root, &n.target, true).map_err(fail("create node in", i))?;
        mount(
            Some(FdPath::new(s.as_raw_fd()).as_cstr()),
            FdPath::new(t.as_raw_fd()).as_cstr(),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(fail("bind node in", i))?;
    }
    let dev = mkdir_all_in_root(root, c"dev").map_err(fail("create", i))?;
    let devfd = openat2(dev.as_raw_fd(), c".", libc::O_DIRECTORY | libc::O_RDONLY, 0)
        .map_err(fail("open", i))?;
    for (target, name) in [
        (c"pts/ptmx", c"ptmx"),
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
    ] {
        // SAFETY: NUL-terminated strings and an fd this process owns.
        let r = unsafe { libc::symlinkat(target.as_ptr(), devfd.as_raw_fd(), name.as_ptr()) };
        if r < 0 && errno() != libc::EEXIST {
            return Err(fail("symlink in", i)(errno()));
        }
    }
    Ok(())
}

/// /dev: tmpfs (nodev, so nodes made later by the container are inert) with the
/// standard nodes bound in from the base tmpfs (binds keep their source's dev flag).
fn setup_dev(root: RawFd, base: &Base, i: usize) -> Result<(), MountFailure> {
    let t = match open_no_symlinks(root, c"dev", libc::O_DIRECTORY) {
        Err(libc::ENOENT) => mkdir_all_in_root(root, c"dev").map_err(fail("create", i))?,
        r => r.map_err(fail("open (must be a directory, not a symlink)", i))?,
    };
    mount(
        Some(c"tmpfs"),
        FdPath::new(t.as_raw_fd()).as_cstr(),
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV,
        Some(c"mode=755,size=65536k"),
    )
    .map_err(fail("mount tmpfs on", i))?;
    drop(t);
    let dev = open_no_symlinks(root, c"dev", libc::O_DIRECTORY).map_err(fail("open", i))?;
    if let Some((uid, gid)) = base.owner {
        // SAFETY: an (O_PATH) fd this process owns, an empty path and integer ids.
        cvt(unsafe {
            libc::fchownat(dev.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH)
        })
        .map_err(fail("chown", i))?;
    }
    let devfd = openat2(dev.as_raw_fd(), c".", libc::O_DIRECTORY | libc::O_RDONLY, 0)
        .map_err(fail("open", i))?;
    let d = devfd.as_raw_fd();
    // SAFETY: a NUL-terminated path; the kernel reads nothing else.
    let nodes = cvt(unsafe {
        libc::open(
            base.nodes.as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
        )
    })
    .map_err(fail("open nodes dir for", i))?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    let nodes = unsafe { OwnedFd::from_raw_fd(nodes) };
    for (name, host, major, minor) in DEV_NODES {
        let rdev = libc::makedev(*major, *minor);
        // SAFETY: an fd this process owns and a NUL-terminated name.
        let made = cvt(unsafe {
            libc::mknodat(
                nodes.as_raw_fd(),
                name.as_ptr(),
                libc::S_IFCHR | 0o666,
                rdev,
            )
        });
        let (dir, node) = match made {
            Ok(_) => (nodes.as_raw_fd(), *name),
            // A user namespace makes no device node: the host's own is bound in, as
            // rootless podman does (checked to be the very device below).
            Err(libc::EPERM) => (libc::AT_FDCWD, *host),
            Err(e) => return Err(fail("mknod for", i)(e)),
        };
        // SAFETY: an fd this process owns (or AT_FDCWD) and a NUL-terminated name.
        let s = unsafe {
            libc::openat(
                dir,
                node.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        // SAFETY: the fd was just returned by the kernel and nothing else owns it.
        let s = unsafe { OwnedFd::from_raw_fd(cvt(s).map_err(fail("open node for", i))?) };
        let st = fstat(s.as_raw_fd()).map_err(fail("stat node for", i))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != rdev {
            return Err(MountFailure {
                what: "check the host's device node for",
                index: i as u32,
                errno: libc::EINVAL,
            });
        }
        // SAFETY: an fd this process owns and a NUL-terminated name.
        let f = unsafe {
            libc::openat(
                d,
                name.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o666,
            )
        };
        cvt(f).map_err(fail("create node in", i))?;
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(f) };
        // SAFETY: an fd this process owns and a NUL-terminated name.
        let f = unsafe {
            libc::openat(
                d,
                name.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        // SAFETY: the fd was just returned by the kernel and nothing else owns it.
        let f = unsafe { OwnedFd::from_raw_fd(cvt(f).map_err(fail("open node in", i))?) };
        mount(
            Some(FdPath::new(s.as_raw_fd()).as_cstr()),
            FdPath::new(f.as_raw_fd()).as_cstr(),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(fail("bind node in", i))?;
    }
    let sub =
        |name: &CStr, fstype: &CStr, flags: c_ulong, data: &CStr| -> Result<(), MountFailure> {
            // SAFETY: an fd this process owns and a NUL-terminated name.
            // (EEXIST: a retry with other options; /dev is locker's fresh tmpfs.)
            match cvt(unsafe { libc::mkdirat(d, name.as_ptr(), 0o755) }) {
                Ok(_) | Err(libc::EEXIST) => {}
                Err(e) => return Err(fail("mkdir in", i)(e)),
            }
            // SAFETY: an fd this process owns and a NUL-terminated name.
            let f = unsafe {
                libc::openat(
                    d,
                    name.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            // SAFETY: the fd was just returned by the kernel and nothing else owns it.
            let f = unsafe { OwnedFd::from_raw_fd(cvt(f).map_err(fail("open in", i))?) };
            mount(
                Some(fstype),
                FdPath::new(f.as_raw_fd()).as_cstr(),
                Some(fstype),
                flags,
                Some(data),
            )
            .map_err(fail("mount in", i))
        };
    let pts_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
    match sub(
        c"pts",
        c"devpts",
        pts_flags,
        c"newinstance,ptmxmode=0666,mode=620,gid=5",
    ) {
        // A single-id user namespace (rootless without subordinate ids) has no gid 5:
        // the ptys then belong to the user's own group.
        Err(f) if f.errno == libc::EINVAL => sub(
            c"pts",
            c"devpts",
            pts_flags,
            c"newinstance,ptmxmode=0666,mode=620",
        )?,
        r => r?,
    }
    sub(
        c"shm",
        c"tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        c"mode=1777,size=65536k",
    )?;
    sub(
        c"mqueue",
        c"mqueue",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        c"",
    )?;
    for (target, name) in [
        (c"pts/ptmx", c"ptmx"),
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
    ] {
        // SAFETY: NUL-terminated strings and an fd this process owns.
        cvt(unsafe { libc::symlinkat(target.as_ptr(), d, name.as_ptr()) })
            .map_err(fail("symlink in", i))?;
    }
    Ok(())
}

/// pivot_root into the cwd-less trick of runc/lxc: pivot_root(".", ".") stacks the old
/// root under the new one, then a lazy unmount drops it.
pub(crate) fn pivot_into(root: &OwnedFd) -> Result<(), MountFailure> {
    // SAFETY: an fd this process owns.
    cvt(unsafe { libc::fchdir(root.as_raw_fd()) }).map_err(fail("chdir to new root", NONE))?;
    // SAFETY: pivot_root with two NUL-terminated paths.
    cvt(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } as c_int)
        .map_err(fail("pivot_root", NONE))?;
    // SAFETY: a NUL-terminated path and integer flags.
    cvt(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })
        .map_err(fail("detach old root", NONE))?;
    // SAFETY: a NUL-terminated path.
    cvt(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(fail("chdir /", NONE))?;
    Ok(())
}

/// `--no-pivot`: the root moved over `/` and chroot'ed into (for a root on a ramfs,
/// where pivot_root is refused), as runc's msMoveRoot.
pub(crate) fn chroot_into(root: &OwnedFd) -> Result<(), MountFailure> {
    // SAFETY: an fd this process owns.
    cvt(unsafe { libc::fchdir(root.as_raw_fd()) }).map_err(fail("chdir to new root", NONE))?;
    mount(Some(c"."), c"/", None, libc::MS_MOVE, None).map_err(fail("move root", NONE))?;
    // SAFETY: a NUL-terminated path.
    cvt(unsafe { libc::chroot(c".".as_ptr()) }).map_err(fail("chroot", NONE))?;
    // SAFETY: a NUL-terminated path.
    cvt(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(fail("chdir /", NONE))?;
    Ok(())
}

/// After pivot_root, an OCI root's last steps: read-only (`root.readonly`, after the
/// mounts under it were made) and its propagation (`rootfsPropagation`).
pub(crate) fn finish_root(readonly: bool, propagation: c_ulong) -> Result<(), MountFailure> {
    if readonly {
        mount(
            None,
            c"/",
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )
        .map_err(fail("remount / read-only", NONE))?;
    }
    if propagation != 0 {
        mount(None, c"/", None, propagation | libc::MS_REC, None)
            .map_err(fail("set propagation of /", NONE))?;
    }
    Ok(())
}

/// The working directory after pivot_root (or after joining a container's mount
/// namespace) as an O_PATH|O_DIRECTORY fd resolved inside the root, magic links refused
/// (CVE-2024-21626): an image's `/app -> /proc/self/fd/N` cannot put the command's cwd
/// on the host. Created when missing if `create`. `path` is absolute and normalised.
pub(crate) fn open_workdir(path: &CStr, create: bool) -> SysResult<OwnedFd> {
    let root = openat2(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let bytes = path.to_bytes_with_nul();
    let rel = CStr::from_bytes_with_nul(bytes.strip_prefix(b"/").unwrap_or(bytes))
        .map_err(|_| libc::EINVAL)?;
    if rel.is_empty() {
        return open_in_root(root.as_raw_fd(), c".", libc::O_DIRECTORY);
    }
    if create {
        mkdir_all_in_root(root.as_raw_fd(), rel)
    } else {
        open_in_root(root.as_raw_fd(), rel, libc::O_DIRECTORY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_path() {
        assert_eq!(FdPath::new(0).as_cstr(), c"/proc/self/fd/0");
        assert_eq!(FdPath::new(1234).as_cstr(), c"/proc/self/fd/1234");
    }

    #[test]
    fn mkdir_and_file_stay_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = std::fs::File::open(t.path()).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../../..", t.path().join("etc")).unwrap();
        let fd = root.as_raw_fd();
        mkdir_all_in_root(fd, c"a/b/c").unwrap();
        assert!(t.path().join("a/b/c").is_dir());
        // An absolute symlink resolves inside root: creates root/<outside>/x, not outside/x.
        let _ = mkdir_all_in_root(fd, c"escape/x");
        assert!(!outside.path().join("x").exists());
        // A relative one climbing out lands in root/etc's target = root itself.
        file_in_root(fd, c"etc/hostname", true).unwrap();
        assert!(t.path().join("hostname").exists());
        assert!(std::fs::symlink_metadata(t.path().join("etc"))
            .unwrap()
            .file_type()
            .is_symlink());
        // A symlink as the last component is replaced, never followed.
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("a/resolv.conf")).unwrap();
        file_in_root(fd, c"a/resolv.conf", true).unwrap();
        assert!(std::fs::symlink_metadata(t.path().join("a/resolv.conf"))
            .unwrap()
            .is_file());
        assert_eq!(file_in_root(fd, c"escape", false).unwrap_err(), libc::ELOOP);
        assert_eq!(open_no_symlinks(fd, c"etc", 0).unwrap_err(), libc::ELOOP);
    }
}
