//! Host-side work in trees locker does not trust (image layers, build trees,
//! containers' upper layers): every path resolved inside its tree with openat2, the
//! `*at` calls on fds, and the one error type for a failed operation on a path.

pub(crate) mod at;
pub(crate) mod flatten;
pub(crate) mod openat2;
pub(crate) mod path_error;
pub(crate) mod tree;

/// A file written later through a temporary beside it and a rename (a reader that
/// polls for it, as for a pid file, never sees it half-written); its directory is
/// opened now, so a caller about to enter a container's mount namespace can write it
/// after.
pub(crate) struct LaterFile {
    dir: std::os::fd::OwnedFd,
    name: std::ffi::CString,
    tmp: std::ffi::CString,
}

impl LaterFile {
    pub(crate) fn open(path: &std::path::Path) -> std::io::Result<LaterFile> {
        use std::os::unix::ffi::OsStrExt;
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EISDIR))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        let dir = std::fs::File::open(parent)?.into();
        let cstr = |b: &[u8]| {
            std::ffi::CString::new(b).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
        };
        let mut tmp = name.as_bytes().to_vec();
        tmp.extend_from_slice(b".locker-tmp");
        Ok(LaterFile {
            dir,
            name: cstr(name.as_bytes())?,
            tmp: cstr(&tmp)?,
        })
    }

    pub(crate) fn write(&self, data: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::fd::{AsRawFd, FromRawFd};
        let d = self.dir.as_raw_fd();
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: openat on a directory fd we own with a NUL-terminated name.
        let fd = unsafe { libc::openat(d, self.tmp.as_ptr(), flags, 0o644) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new fd nothing else owns.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        f.write_all(data)?;
        drop(f);
        // SAFETY: renameat within a directory fd we own, NUL-terminated names.
        if unsafe { libc::renameat(d, self.tmp.as_ptr(), d, self.name.as_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Writes `data` to `path` by rename (`LaterFile`), now.
pub(crate) fn write_by_rename(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    LaterFile::open(path)?.write(data)
}
