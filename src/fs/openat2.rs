//! openat2(2): the one way locker resolves a path inside a tree it does not trust (an
//! archive being unpacked, a container's root). With RESOLVE_IN_ROOT, symlinks and
//! `..` resolve as if the tree were `/`, so nothing on the way can lead out of it.
//! libc has `open_how` but no wrapper, hence the raw syscall. No allocation: the
//! container's child calls this between clone and exec.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use libc::c_int;

/// openat2 with the given RESOLVE_* flags and O_CLOEXEC; the error is the errno.
/// EAGAIN (a concurrent rename on the way) and EINTR are retried, as the man page asks.
pub(crate) fn openat2(dir: RawFd, path: &CStr, flags: c_int, resolve: u64) -> Result<OwnedFd, i32> {
    // SAFETY: open_how is plain data; zeroed is its documented initial state.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    let mut errno = libc::EAGAIN;
    for _ in 0..16 {
        // SAFETY: a C string and an open_how of the size passed; the fd is the caller's.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
        }
        errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        if errno != libc::EAGAIN && errno != libc::EINTR {
            break;
        }
    }
    Err(errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn in_root_keeps_symlinks_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/marker"), b"inside").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("evil")).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let in_root = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        // `evil -> /etc` resolves to the tree's own etc/, never the host's.
        let fd = openat2(root.as_raw_fd(), c"evil/marker", libc::O_RDONLY, in_root).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s).unwrap();
        assert_eq!(s, "inside");
        assert_eq!(
            openat2(root.as_raw_fd(), c"evil/passwd", libc::O_RDONLY, in_root).err(),
            Some(libc::ENOENT)
        );
        // RESOLVE_BENEATH refuses the escape outright.
        assert_eq!(
            openat2(
                root.as_raw_fd(),
                c"evil/marker",
                libc::O_RDONLY,
                libc::RESOLVE_BENEATH
            )
            .err(),
            Some(libc::EXDEV)
        );
    }
}
