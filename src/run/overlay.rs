//! The container root's overlay mount: its options in one place, for both ways the
//! kernel takes them.
//!
//! - The new mount API (fsopen/fsconfig/fsmount/move_mount, and overlayfs' `lowerdir+`
//!   key from Linux 6.8): one fsconfig call per lower layer, so no limit but
//!   overlayfs' own stack depth (`MAX_LOWERS`) and 255 bytes per path (fsconfig's
//!   string limit).
//! - mount(2) for older kernels: every option in one string of at most a page, which
//!   a store path of about 90 bytes fills at about 45 layers. Past that the caller
//!   flattens the stack into one tree (store::flat) instead.
//!
//! Invariants: `Overlay` is built in the parent (it allocates); `mount_at` runs in the
//! cloned child and only issues syscalls. The option list is `Overlay::options`:
//! a flag such as `userxattr` (overlayfs in a user namespace) is added there once and
//! reaches both paths.

use std::ffi::{c_int, CStr, CString};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use super::sys::{cvt, SysResult};

/// overlayfs' OVL_MAX_STACK: lower layers one mount can stack.
pub(crate) const MAX_LOWERS: usize = 500;
/// What mount(2) copies of its data argument (one page).
const PAGE: usize = 4096;
/// fsconfig(2) copies at most 256 bytes of a string value, NUL included.
const FSCONFIG_STRING_MAX: usize = 255;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// How the overlay is handed to the kernel.
#[derive(Debug)]
enum Api {
    /// fsconfig with one `lowerdir+` per layer.
    Fsconfig,
    /// mount(2) with this option string.
    Legacy(CString),
}

/// The overlay of one container root: lower layers top first, an optional upper and
/// work dir, and flags.
#[derive(Debug)]
pub(crate) struct Overlay {
    lowers: Vec<CString>,
    upper: Option<(CString, CString)>,
    flags: Vec<&'static CStr>,
    api: Api,
}

/// The stack does not fit one mount on this kernel: flatten it.
#[derive(Debug, PartialEq)]
pub(crate) struct TooDeep {
    pub layers: usize,
}

impl Overlay {
    /// The flags every overlay of this process gets: in a user namespace (rootless)
    /// overlayfs may not use trusted.* xattrs, so its whiteouts' and opaque
    /// directories' marks are user.overlay.* (as rootless unpacking writes them).
    fn options() -> Vec<&'static CStr> {
        let mut flags = Vec::new();
        if super::userns::rootless() {
            flags.push(c"userxattr");
        }
        flags
    }

    /// Plans the overlay over `lowers` (top first) with `upper` and `work` (none for a
    /// read-only stack); `fsconfig` says whether the kernel takes `lowerdir+`.
    pub(crate) fn new(
        lowers: Vec<CString>,
        upper: Option<(CString, CString)>,
        fsconfig: bool,
    ) -> Result<Overlay, TooDeep> {
        let flags = Overlay::options();
        let too_deep = TooDeep {
            layers: lowers.len(),
        };
        if lowers.len() > MAX_LOWERS {
            return Err(too_deep);
        }
        let fits_fsconfig = lowers
            .iter()
            .chain(upper.iter().flat_map(|(u, w)| [u, w]))
            .all(|p| p.as_bytes().len() <= FSCONFIG_STRING_MAX);
        let api = if fsconfig && fits_fsconfig {
            Api::Fsconfig
        } else {
            let data = legacy_data(&lowers, upper.as_ref(), &flags);
            if data.len() + 1 > PAGE {
                return Err(too_deep);
            }
            Api::Legacy(CString::new(data).expect("paths have no NUL"))
        };
        Ok(Overlay {
            lowers,
            upper,
            flags,
            api,
        })
    }

    /// True when the new mount API will be used (for tests and messages).
    #[cfg(test)]
    fn uses_fsconfig(&self) -> bool {
        matches!(self.api, Api::Fsconfig)
    }

    /// Mounts the overlay on `target` (nodev). Runs in the child: no allocation.
    pub(crate) fn mount_at(&self, target: &CStr) -> Result<(), (&'static str, i32)> {
        match &self.api {
            Api::Legacy(data) => super::sys::mount(
                Some(c"overlay"),
                target,
                Some(c"overlay"),
                libc::MS_NODEV,
                Some(data),
            )
            .map_err(|e| ("mount overlay", e)),
            Api::Fsconfig => {
                let fs = fsopen(c"overlay").map_err(|e| ("fsopen overlay", e))?;
                for l in &self.lowers {
                    fsconfig_string(&fs, c"lowerdir+", l)
                        .map_err(|e| ("fsconfig overlay lowerdir+", e))?;
                }
                if let Some((upper, work)) = &self.upper {
                    fsconfig_string(&fs, c"upperdir", upper)
                        .map_err(|e| ("fsconfig overlay upperdir", e))?;
                    fsconfig_string(&fs, c"workdir", work)
                        .map_err(|e| ("fsconfig overlay workdir", e))?;
                }
                for f in &self.flags {
                    fsconfig(&fs, FSCONFIG_SET_FLAG, Some(f), None)
                        .map_err(|e| ("fsconfig overlay flag", e))?;
                }
                fsconfig(&fs, FSCONFIG_CMD_CREATE, None, None)
                    .map_err(|e| ("create overlay", e))?;
                let mnt = fsmount(&fs, libc::MOUNT_ATTR_NODEV as libc::c_uint)
                    .map_err(|e| ("fsmount overlay", e))?;
                move_mount(&mnt, target).map_err(|e| ("move_mount overlay", e))
            }
        }
    }
}

/// mount(2)'s option string: `lowerdir=TOP:..:BOTTOM[,upperdir=U,workdir=W][,FLAG..]`.
fn legacy_data(lowers: &[CString], upper: Option<&(CString, CString)>, flags: &[&CStr]) -> String {
    let lower = lowers
        .iter()
        .map(|l| l.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let mut data = format!("lowerdir={lower}");
    if let Some((u, w)) = upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            u.to_string_lossy(),
            w.to_string_lossy()
        ));
    }
    for f in flags {
        data.push(',');
        data.push_str(&f.to_string_lossy());
    }
    data
}

/// Whether this kernel's overlayfs takes `lowerdir+` through fsconfig (Linux 6.8),
/// asked once per process: an overlay context is opened and given one lower layer.
/// EINVAL is the kernel without the key (or without fsopen, ENOSYS); where the
/// probe itself is not allowed (EPERM: no CAP_SYS_ADMIN here yet, as before a user
/// namespace), the kernel release decides. `LOCKER_TEST_OVERLAY_LEGACY=1` (debug
/// builds only) answers no, so tests can take the mount(2) path on any kernel.
pub(crate) fn fsconfig_lowerdir_plus() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        if cfg!(debug_assertions) && std::env::var_os("LOCKER_TEST_OVERLAY_LEGACY").is_some() {
            return false;
        }
        let probe = || -> SysResult<()> {
            let fs = fsopen(c"overlay")?;
            fsconfig_string(&fs, c"lowerdir+", c"/")
        };
        match probe() {
            Ok(()) => true,
            Err(libc::EPERM) | Err(libc::EACCES) => release_at_least(6, 8),
            Err(_) => false,
        }
    })
}

/// The running kernel's release is at least `major.minor`.
fn release_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: uname fills the struct it is given; all-zero is a valid utsname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a pointer to a live utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return false;
    }
    // SAFETY: the kernel NUL-terminates the release.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    parse_release(&release.to_string_lossy()) >= Some((major, minor))
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn fsopen(fstype: &CStr) -> SysResult<OwnedFd> {
    // SAFETY: a NUL-terminated name and integer flags.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    let fd = cvt(fd as c_int)?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fsconfig_string(fs: &OwnedFd, key: &CStr, value: &CStr) -> SysResult<()> {
    fsconfig(fs, FSCONFIG_SET_STRING, Some(key), Some(value))
}

fn fsconfig(
    fs: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&CStr>,
    value: Option<&CStr>,
) -> SysResult<()> {
    use std::os::fd::AsRawFd;
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: a raw syscall on an fd we own with NUL-terminated strings or nulls.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            ptr(key),
            ptr(value),
            0 as c_int,
        )
    };
    cvt(r as c_int).map(drop)
}

fn fsmount(fs: &OwnedFd, attrs: libc::c_uint) -> SysResult<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: a raw syscall with an fd we own and integer flags.
    let fd = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    let fd: RawFd = cvt(fd as c_int)?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn move_mount(mnt: &OwnedFd, target: &CStr) -> SysResult<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a raw syscall with an fd we own, an empty and a NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    cvt(r as c_int).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_paths(n: usize) -> Vec<CString> {
        (0..n)
            .map(|i| CString::new(format!("/var/lib/locker/layers/{:064x}", i)).unwrap())
            .collect()
    }

    fn upper() -> Option<(CString, CString)> {
        Some((
            CString::new("/var/lib/locker/run/0123456789ab/upper").unwrap(),
            CString::new("/var/lib/locker/run/0123456789ab/work").unwrap(),
        ))
    }

    #[test]
    fn legacy_options_name_every_layer_top_first() {
        let o = Overlay::new(
            vec![CString::new("/a").unwrap(), CString::new("/b").unwrap()],
            Some((CString::new("/u").unwrap(), CString::new("/w").unwrap())),
            false,
        )
        .unwrap();
        match o.api {
            Api::Legacy(d) => {
                assert_eq!(d.to_str().unwrap(), "lowerdir=/a:/b,upperdir=/u,workdir=/w")
            }
            Api::Fsconfig => panic!("asked for mount(2)"),
        }
    }

    #[test]
    fn legacy_mount_takes_about_45_store_layers_fsconfig_takes_500() {
        assert!(Overlay::new(store_paths(40), upper(), false).is_ok());
        assert_eq!(
            Overlay::new(store_paths(120), upper(), false).unwrap_err(),
            TooDeep { layers: 120 }
        );
        let o = Overlay::new(store_paths(120), upper(), true).unwrap();
        assert!(o.uses_fsconfig());
        assert!(Overlay::new(store_paths(MAX_LOWERS), upper(), true).is_ok());
        assert!(Overlay::new(store_paths(MAX_LOWERS + 1), upper(), true).is_err());
    }

    #[test]
    fn a_path_too_long_for_fsconfig_takes_mount2() {
        let long = vec![CString::new(format!("/{}", "x".repeat(300))).unwrap(); 2];
        let o = Overlay::new(long, None, true).unwrap();
        assert!(!o.uses_fsconfig());
    }

    #[test]
    fn kernel_release_parses() {
        assert_eq!(parse_release("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(parse_release("5.10.0-28-amd64"), Some((5, 10)));
        assert!(parse_release("6.8.0") >= Some((6, 8)));
        assert!(parse_release("6.7.12") < Some((6, 8)));
        assert_eq!(parse_release("garbage"), None);
    }
}
