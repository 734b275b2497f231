//! The `*at` calls on directory fds, as `io::Result`s: the one copy the unpacker and
//! `Tree` share. Every call acts on a name inside an fd locker resolved itself (with
//! openat2), never on a path string the tree could redirect; none follows a symlink in
//! the last component unless it says so.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// A libc return value as an io::Result (errno on -1).
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// openat(2), always O_CLOEXEC; `mode` is used only with O_CREAT/O_TMPFILE.
pub(crate) fn openat(
    dir: impl AsFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: a live fd and a NUL-terminated name; the kernel reads nothing else.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fstat(2).
pub(crate) fn fstat(fd: impl AsFd) -> io::Result<libc::stat> {
    // SAFETY: all-zero is a valid `stat` for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live fd and a pointer to a stat we own.
    cvt(unsafe { libc::fstat(fd.as_fd().as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// fstatat(2) of `name` itself (AT_SYMLINK_NOFOLLOW).
pub(crate) fn lstatat(dir: impl AsFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: all-zero is a valid `stat` for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live fd, a NUL-terminated name and a pointer to a stat we own.
    cvt(unsafe {
        libc::fstatat(
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// mkdirat(2).
pub(crate) fn mkdirat(dir: impl AsFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: a live fd and a NUL-terminated name.
    cvt(unsafe { libc::mkdirat(dir.as_fd().as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// unlinkat(2): the entry itself, a directory when `dir_entry` (AT_REMOVEDIR).
pub(crate) fn unlinkat(dir: impl AsFd, name: &CStr, dir_entry: bool) -> io::Result<()> {
    let flags = if dir_entry { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: a live fd and a NUL-terminated name.
    cvt(unsafe { libc::unlinkat(dir.as_fd().as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// renameat(2) within one directory: the entry `from` itself becomes `to`.
pub(crate) fn renameat(dir: impl AsFd, from: &CStr, to: &CStr) -> io::Result<()> {
    let dir = dir.as_fd().as_raw_fd();
    // SAFETY: a live fd and two NUL-terminated names.
    cvt(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) }).map(drop)
}

/// fchmod(2).
pub(crate) fn fchmod(fd: impl AsFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: a live fd and an integer mode.
    cvt(unsafe { libc::fchmod(fd.as_fd().as_raw_fd(), mode) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_act_on_the_named_entry() {
        let t = tempfile::tempdir().unwrap();
        let d = std::fs::File::open(t.path()).unwrap();
        let dir = &d;
        mkdirat(dir, c"sub", 0o700).unwrap();
        assert!(lstatat(dir, c"sub").unwrap().st_mode & libc::S_IFMT == libc::S_IFDIR);
        let f = openat(
            dir,
            c"f",
            libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL,
            0o600,
        )
        .unwrap();
        fchmod(&f, 0o640).unwrap();
        assert_eq!(fstat(&f).unwrap().st_mode & 0o777, 0o640);
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("l")).unwrap();
        // The link itself, never its target.
        assert!(lstatat(dir, c"l").unwrap().st_mode & libc::S_IFMT == libc::S_IFLNK);
        renameat(dir, c"l", c"m").unwrap();
        unlinkat(dir, c"m", false).unwrap();
        unlinkat(dir, c"sub", true).unwrap();
        assert_eq!(
            unlinkat(dir, c"sub", true).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
    }
}
