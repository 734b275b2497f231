//! Merging unpacked OCI layers into one tree, the way overlayfs would show them, for a
//! stack one overlay mount cannot take (store::flat caches the result).
//!
//! Layers are applied bottom first. In each: a whiteout (a 0/0 character device, how
//! unpack stores `.wh.NAME`) removes the name below it; a directory marked
//! `trusted.overlay.opaque=y` (`user.overlay.opaque=y` from a rootless unpack) hides
//! everything below it; a directory over a directory merges and takes the upper one's
//! owner, mode, xattrs and times; anything else replaces what was there. Non-directories are hard links to the layer's inode (the
//! layers and the flat tree are read-only lowers of the same store), copied only where
//! a link is refused.
//!
//! Invariants: every call acts on a name inside a directory fd opened without following
//! symlinks, so a symlink a lower layer left (`etc -> /`) is an entry to replace, never
//! a way out of the tree; overlayfs' own xattrs (`trusted.overlay.*`, `user.overlay.*`)
//! are not copied, so the flat tree has no whiteouts or opaque markers left.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::at::{self, cvt};

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
const OPAQUE: &CStr = c"trusted.overlay.opaque";
/// A rootless unpack's opaque mark (overlayfs with `userxattr`).
const USER_OPAQUE: &CStr = c"user.overlay.opaque";

/// overlayfs' own attributes, root's and a user namespace's: never copied.
fn overlay_own(key: &CStr) -> bool {
    let k = key.to_bytes();
    k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.")
}

/// Merges `layers` (bottom first) into the empty directory `into`.
pub(crate) fn flatten(layers: &[&Path], into: &Path) -> io::Result<()> {
    let dst = File::open(into)?;
    let mut times = BTreeMap::new();
    for layer in layers {
        let src = File::open(layer)?;
        let st = at::fstat(&src)?;
        set_meta(&src, &dst, &st)?;
        times.insert(PathBuf::new(), st);
        merge(&src, &dst, Path::new(""), &mut times)?;
    }
    // Adding entries moved the directories' times: set them last, each through a
    // path that may no longer be a directory (a later layer replaced it), so opened
    // beneath the tree without following any symlink.
    for (rel, st) in &times {
        let fd = if rel.as_os_str().is_empty() {
            dst.try_clone()?.into()
        } else {
            let path = CString::new(rel.as_os_str().as_bytes())?;
            let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
            match super::openat2::openat2(dst.as_raw_fd(), &path, DIR_FLAGS, resolve) {
                Ok(fd) => fd,
                Err(libc::ENOENT) | Err(libc::ENOTDIR) | Err(libc::ELOOP) => continue,
                Err(e) => return Err(io::Error::from_raw_os_error(e)),
            }
        };
        set_times(&fd, st)?;
    }
    Ok(())
}

fn merge(
    src: &impl AsFd,
    dst: &impl AsFd,
    rel: &Path,
    times: &mut BTreeMap<PathBuf, libc::stat>,
) -> io::Result<()> {
    let listing = PathBuf::from(format!("/proc/self/fd/{}", src.as_fd().as_raw_fd()));
    let mut names: Vec<_> = std::fs::read_dir(&listing)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let c = CString::new(name.as_bytes())?;
        let st = at::lstatat(src, &c)?;
        let below = match at::lstatat(dst, &c) {
            Ok(b) => Some(b),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        let is_dir = |s: &libc::stat| s.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let whiteout = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0;
        if whiteout {
            if let Some(b) = below {
                remove(dst, &name, is_dir(&b))?;
            }
            continue;
        }
        if is_dir(&st) {
            let s = at::openat(src, &c, DIR_FLAGS, 0)?;
            let opaque = get_xattr(&s, OPAQUE)?.as_deref() == Some(b"y")
                || get_xattr(&s, USER_OPAQUE)?.as_deref() == Some(b"y");
            match below {
                Some(b) if is_dir(&b) && !opaque => {}
                Some(b) => {
                    remove(dst, &name, is_dir(&b))?;
                    at::mkdirat(dst, &c, 0o700)?;
                }
                None => at::mkdirat(dst, &c, 0o700)?,
            }
            let d = at::openat(dst, &c, DIR_FLAGS, 0)?;
            set_meta(&s, &d, &st)?;
            let sub = rel.join(&name);
            times.insert(sub.clone(), st);
            merge(&s, &d, &sub, times)?;
        } else {
            if let Some(b) = below {
                remove(dst, &name, is_dir(&b))?;
            }
            place(src, dst, &c, &st)?;
        }
    }
    Ok(())
}

/// Removes the entry `name` of `dir` (a whole tree when it is a directory); std's
/// remove_dir_all never follows a symlink it meets.
fn remove(dir: &impl AsFd, name: &OsStr, is_dir: bool) -> io::Result<()> {
    let path = Path::new(&format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd())).join(name);
    if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Puts the non-directory `name` of `src` into `dst`: a hard link to the same inode,
/// or a copy where the link is refused (another filesystem, a full link count, a
/// protected_hardlinks refusal for a user).
fn place(src: &impl AsFd, dst: &impl AsFd, name: &CStr, st: &libc::stat) -> io::Result<()> {
    let (s, d) = (src.as_fd().as_raw_fd(), dst.as_fd().as_raw_fd());
    // SAFETY: live fds and NUL-terminated names; flags 0 links the entry itself.
    match cvt(unsafe { libc::linkat(s, name.as_ptr(), d, name.as_ptr(), 0) }) {
        Ok(_) => return Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EXDEV | libc::EMLINK | libc::EPERM)
            ) => {}
        Err(e) => return Err(e),
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => {
            let from = at::openat(src, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
            let to = at::openat(
                dst,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )?;
            io::copy(&mut File::from(from), &mut File::from(to.try_clone()?))?;
            set_meta(
                &at::openat(src, name, libc::O_PATH | libc::O_NOFOLLOW, 0)?,
                &to,
                st,
            )?;
            set_times(&to, st)
        }
        libc::S_IFLNK => {
            let mut buf = vec![0u8; libc::PATH_MAX as usize];
            // SAFETY: a live fd, a NUL-terminated name and a buffer of the given size.
            let n =
                unsafe { libc::readlinkat(s, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            buf.truncate(n as usize);
            let target = CString::new(buf)?;
            // SAFETY: NUL-terminated strings and a live fd.
            cvt(unsafe { libc::symlinkat(target.as_ptr(), d, name.as_ptr()) })?;
            chown_at(dst, name, st)
        }
        _ => {
            // SAFETY: a live fd, a NUL-terminated name, integer mode and device.
            cvt(unsafe { libc::mknodat(d, name.as_ptr(), st.st_mode, st.st_rdev) })?;
            chown_at(dst, name, st)?;
            // SAFETY: as above; the node itself (mknod's mode was masked by umask).
            cvt(unsafe { libc::fchmodat(d, name.as_ptr(), st.st_mode & 0o7777, 0) }).map(drop)
        }
    }
}

fn chown_at(dir: &impl AsFd, name: &CStr, st: &libc::stat) -> io::Result<()> {
    let d = dir.as_fd().as_raw_fd();
    // SAFETY: a live fd and a NUL-terminated name; the entry itself, not a link target.
    cvt(unsafe {
        libc::fchownat(
            d,
            name.as_ptr(),
            st.st_uid,
            st.st_gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// Owner, mode and xattrs of `from` (whose stat is `st`) onto the fd `to`: the upper
/// one's, as overlayfs shows a merged directory. overlayfs' own attributes stay behind.
fn set_meta(from: &impl AsFd, to: &impl AsFd, st: &libc::stat) -> io::Result<()> {
    let t = to.as_fd().as_raw_fd();
    // SAFETY: a live fd and integer ids.
    cvt(unsafe { libc::fchown(t, st.st_uid, st.st_gid) })?;
    at::fchmod(to, st.st_mode & 0o7777)?;
    for old in list_xattrs(to)? {
        if !overlay_own(&old) {
            // SAFETY: a live fd and a NUL-terminated name.
            let _ = unsafe { libc::fremovexattr(t, old.as_ptr()) };
        }
    }
    for key in list_xattrs(from)? {
        if overlay_own(&key) {
            continue;
        }
        let Some(value) = get_xattr(from, &key)? else {
            continue;
        };
        // SAFETY: a live fd, a NUL-terminated name and a buffer of the given size.
        let r = unsafe { libc::fsetxattr(t, key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        match cvt(r) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            other => other.map(drop)?,
        }
    }
    Ok(())
}

fn set_times(fd: &impl AsFd, st: &libc::stat) -> io::Result<()> {
    let ts = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: a live fd and two timespecs.
    cvt(unsafe { libc::futimens(fd.as_fd().as_raw_fd(), ts.as_ptr()) }).map(drop)
}

/// The xattr names of an fd (an O_PATH fd is read through /proc/self/fd).
fn list_xattrs(fd: &impl AsFd) -> io::Result<Vec<CString>> {
    let path = CString::new(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: a NUL-terminated path and a buffer of the given size.
        let n = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            e if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
            e => return Err(e),
        }
    }
    Ok(buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| CString::new(n).expect("split at NUL"))
        .collect())
}

fn get_xattr(fd: &impl AsFd, key: &CStr) -> io::Result<Option<Vec<u8>>> {
    let path = CString::new(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: NUL-terminated strings and a buffer of the given size.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                key.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ERANGE) => buf.resize(buf.len() * 16, 0),
            e if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ENOTSUP)) => {
                return Ok(None)
            }
            e => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn whiteout(path: &Path) -> bool {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) == 0 }
    }

    fn opaque(path: &Path) -> bool {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated strings and a one-byte value.
        unsafe { libc::setxattr(c.as_ptr(), OPAQUE.as_ptr(), b"y".as_ptr().cast(), 1, 0) == 0 }
    }

    #[test]
    fn layers_merge_as_overlayfs_shows_them() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2, l3, out) = (
            t.path().join("l1"),
            t.path().join("l2"),
            t.path().join("l3"),
            t.path().join("out"),
        );
        for d in [&l1, &l2, &l3, &out] {
            fs::create_dir(d).unwrap();
        }
        // Bottom: a base with files, a dir to make opaque, a symlink that points out.
        fs::create_dir_all(l1.join("etc")).unwrap();
        fs::write(l1.join("etc/keep"), "base").unwrap();
        fs::write(l1.join("etc/gone"), "base").unwrap();
        fs::create_dir_all(l1.join("opq/deep")).unwrap();
        fs::write(l1.join("opq/old"), "old").unwrap();
        std::os::unix::fs::symlink("/", l1.join("esc")).unwrap();
        fs::write(l1.join("replaced"), "file").unwrap();
        // Middle: changes a file, removes one, replaces the symlink by a directory.
        fs::create_dir_all(l2.join("etc")).unwrap();
        fs::write(l2.join("etc/keep"), "changed").unwrap();
        fs::create_dir(l2.join("esc")).unwrap();
        fs::write(l2.join("esc/inside"), "x").unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            assert!(whiteout(&l2.join("etc/gone")));
        } else {
            fs::write(l2.join("etc/gone"), "not a whiteout without root").unwrap();
        }
        // Top: an opaque dir, a file replacing a dir and a dir replacing a file.
        fs::create_dir(l3.join("opq")).unwrap();
        fs::write(l3.join("opq/new"), "new").unwrap();
        fs::create_dir(l3.join("replaced")).unwrap();
        fs::set_permissions(l3.join("replaced"), fs::Permissions::from_mode(0o750)).unwrap();
        let opaque_set = root && opaque(&l3.join("opq"));

        flatten(&[&l1, &l2, &l3], &out).unwrap();

        assert_eq!(fs::read_to_string(out.join("etc/keep")).unwrap(), "changed");
        assert_eq!(
            fs::metadata(out.join("etc/keep")).unwrap().ino(),
            fs::metadata(l2.join("etc/keep")).unwrap().ino(),
            "a file is a link to its layer's inode"
        );
        if root {
            assert!(!out.join("etc/gone").exists(), "the whiteout removed it");
        }
        assert!(fs::symlink_metadata(out.join("esc")).unwrap().is_dir());
        assert!(out.join("esc/inside").exists());
        assert!(
            !Path::new("/inside").exists(),
            "nothing was written through the symlink"
        );
        assert!(out.join("opq/new").exists());
        if opaque_set {
            assert!(
                !out.join("opq/old").exists(),
                "the opaque dir hid the layer below"
            );
            assert!(!out.join("opq/deep").exists());
            assert_eq!(
                get_xattr(&File::open(out.join("opq")).unwrap(), OPAQUE).unwrap(),
                None
            );
        }
        let m = fs::metadata(out.join("replaced")).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, 0o750, "the upper dir's mode");
        assert_eq!(
            m.mtime(),
            fs::metadata(l3.join("replaced")).unwrap().mtime(),
            "directory times are the layer's, set after the merge"
        );
        // The layers are untouched.
        assert_eq!(fs::read_to_string(l1.join("etc/keep")).unwrap(), "base");
        assert!(l1.join("opq/old").exists());
    }
}
