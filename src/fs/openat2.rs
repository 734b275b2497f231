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

/// Opens `rel` inside `root` for reading only if it is a regular file: resolved with
/// O_PATH inside the root (no magic links), fstat'ed, and only then reopened through
/// /proc/self/fd (non-blocking, no controlling tty). A FIFO, device node or socket a
/// container left there is never opened: opening one could block locker or act on the
/// host. Ok(None): there is no such file, or it is not a regular file.
pub(crate) fn open_regular_in(root: RawFd, rel: &CStr) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let in_root = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let handle = match openat2(root, rel, libc::O_PATH, in_root) {
        Ok(fd) => std::fs::File::from(fd),
        Err(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => return Ok(None),
        Err(e) => return Err(std::io::Error::from_raw_os_error(e)),
    };
    if !handle.metadata()?.is_file() {
        return Ok(None);
    }
    // The same inode as checked: the O_PATH fd pins it.
    std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&handle)
        ))
        .map(Some)
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

    #[test]
    fn only_regular_files_are_opened() {
        let t = tempfile::tempdir().unwrap();
        let d = std::fs::File::open(t.path()).unwrap();
        std::fs::write(t.path().join("f"), "data").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", t.path().join("abs")).unwrap();
        let fifo = std::ffi::CString::new(t.path().join("p").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let root = d.as_raw_fd();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut open_regular_in(root, c"f").unwrap().unwrap(), &mut s)
            .unwrap();
        assert_eq!(s, "data");
        // A FIFO would block an open for reading: it is never opened.
        assert!(open_regular_in(root, c"p").unwrap().is_none());
        assert!(open_regular_in(root, c"missing").unwrap().is_none());
        // An absolute symlink resolves inside the tree, where there is no etc/hostname.
        assert!(open_regular_in(root, c"abs").unwrap().is_none());
    }
}
