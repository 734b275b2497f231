//! Host-side file operations inside a tree whose contents locker does not trust: a
//! build's tree after packages were unpacked into it and maintainer scripts ran in it.
//! Either could have left `etc -> /etc` or `tmp -> /`; a plain `fs::write` of
//! `tree/etc/apt/sources.list` would then write the host's file.
//!
//! Invariants: every path is resolved as inside the tree (openat2 RESOLVE_IN_ROOT,
//! the way the container will see it, so no symlink leads out); writes, renames and
//! removals never follow the final component (O_NOFOLLOW, renameat, unlinkat).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub(crate) struct Tree {
    root: File,
    path: PathBuf,
}

impl Tree {
    pub(crate) fn open(path: &Path) -> io::Result<Tree> {
        Ok(Tree {
            root: File::open(path)?,
            path: path.to_path_buf(),
        })
    }

    /// The host path of `rel`, for messages only.
    pub(crate) fn shown(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates the directories of `rel` that are missing (0755).
    pub(crate) fn create_dir_all(&self, rel: &str) -> io::Result<()> {
        let mut dir = self.root.try_clone().map(OwnedFd::from)?;
        let mut prefix = PathBuf::new();
        for comp in components(rel)? {
            prefix.push(comp);
            dir = match self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let name = cstring(comp.as_bytes())?;
                    // SAFETY: a valid fd and C string.
                    let r = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) };
                    if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                        return Err(io::Error::last_os_error());
                    }
                    self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(())
    }

    /// Replaces `rel`'s contents with `data`, mode `mode` (created if missing).
    pub(crate) fn write(&self, rel: &str, data: &[u8], mode: u32) -> io::Result<()> {
        self.write_with(rel, data, mode, libc::O_TRUNC)
    }

    /// Appends `data` to `rel` (created with `mode` if missing).
    pub(crate) fn append(&self, rel: &str, data: &[u8], mode: u32) -> io::Result<()> {
        self.write_with(rel, data, mode, libc::O_APPEND)
    }

    fn write_with(&self, rel: &str, data: &[u8], mode: u32, flag: libc::c_int) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC | flag;
        // SAFETY: a valid fd and C string; the fd returned is ours.
        let fd = unsafe { libc::openat(parent.as_raw_fd(), name.as_ptr(), flags, mode) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just opened, owned by nothing else.
        let mut file = unsafe { File::from_raw_fd(fd) };
        // The umask applied to a new file; an existing one keeps its mode otherwise.
        // SAFETY: a valid fd.
        if unsafe { libc::fchmod(file.as_raw_fd(), mode) } != 0 {
            return Err(io::Error::last_os_error());
        }
        file.write_all(data)
    }

    /// `rel`'s contents, or None if it does not exist or is not a regular file.
    /// Reading may follow symlinks: resolved inside the tree, they stay inside.
    pub(crate) fn read(&self, rel: &str) -> io::Result<Option<Vec<u8>>> {
        let path: PathBuf = components(rel)?.into_iter().collect();
        let mut file = match self.resolve(&path, libc::O_RDONLY | libc::O_NONBLOCK) {
            Ok(fd) => File::from(fd),
            Err(e) if unreachable(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !file.metadata()?.is_file() {
            // A FIFO or device a script left: reading it could block or worse.
            return Ok(None);
        }
        let mut out = Vec::new();
        file.read_to_end(&mut out)?;
        Ok(Some(out))
    }

    /// Removes `rel` (a symlink itself, never its target); a missing one is fine.
    pub(crate) fn remove_file(&self, rel: &str) -> io::Result<()> {
        let (parent, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if unreachable(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        // SAFETY: a valid fd and C string.
        if unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Renames `rel` to `rel` + `suffix` in its directory (a symlink is renamed
    /// itself); a missing `rel` is left for the caller's tool to notice.
    pub(crate) fn add_suffix(&self, rel: &str, suffix: &str) -> io::Result<()> {
        let (parent, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if unreachable(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut to = name.as_bytes().to_vec();
        to.extend_from_slice(suffix.as_bytes());
        let to = cstring(&to)?;
        let dir = parent.as_raw_fd();
        // SAFETY: a valid fd and C strings.
        if unsafe { libc::renameat(dir, name.as_ptr(), dir, to.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes everything in the directory `rel` except the names in `keep`. A `rel`
    /// that is a symlink, or missing, is left alone.
    pub(crate) fn clear_dir(&self, rel: &str, keep: &[&str]) -> io::Result<()> {
        let (parent, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if unreachable(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid fd and C string; the fd returned is ours.
        let fd = unsafe { libc::openat(parent.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENOTDIR) => Ok(()),
                _ => Err(e),
            };
        }
        // SAFETY: just opened, owned by nothing else.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        // Named through the fd: std's remove_dir_all never follows a symlink it
        // meets, and the fd pins the directory that was resolved inside the tree.
        let base = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        for entry in std::fs::read_dir(&base)? {
            let entry = entry?;
            let name = entry.file_name();
            if keep.iter().any(|k| name.as_bytes() == k.as_bytes()) {
                continue;
            }
            let path = base.join(&name);
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// The parent of `rel` resolved inside the tree, and its last component.
    fn parent(&self, rel: &str) -> io::Result<(OwnedFd, CString)> {
        let comps = components(rel)?;
        let (last, dirs) = comps
            .split_last()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))?;
        let parent: PathBuf = dirs.iter().collect();
        let fd = if parent.as_os_str().is_empty() {
            self.root.try_clone().map(OwnedFd::from)?
        } else {
            self.resolve(&parent, libc::O_PATH | libc::O_DIRECTORY)?
        };
        Ok((fd, cstring(last.as_bytes())?))
    }

    fn resolve(&self, rel: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        let path = cstring(rel.as_os_str().as_bytes())?;
        let in_root = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        crate::openat2::openat2(self.root.as_raw_fd(), &path, flags, in_root)
            .map_err(io::Error::from_raw_os_error)
    }
}

/// A parent that does not resolve to a directory inside the tree: missing, a
/// symlink loop, or a file on the way. Nothing there to read or remove.
fn unreachable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENOTDIR)
    )
}

/// The normal components of a relative path; `..`, `.` and absolute paths are refused.
fn components(rel: &str) -> io::Result<Vec<&std::ffi::OsStr>> {
    Path::new(rel)
        .components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel}: not a plain relative path"),
            )),
        })
        .collect()
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A tree whose `etc` and `tmp` lead to a directory outside it (by absolute and
    /// by relative symlink), as a hostile package could leave them.
    fn hostile() -> (tempfile::TempDir, tempfile::TempDir, Tree) {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("victim"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("etc")).unwrap();
        let up = "../".repeat(dir.path().components().count());
        symlink(
            format!("{up}{}", outside.path().display()),
            dir.path().join("tmp"),
        )
        .unwrap();
        symlink(outside.path().join("victim"), dir.path().join("link")).unwrap();
        let tree = Tree::open(dir.path()).unwrap();
        (outside, dir, tree)
    }

    #[test]
    fn writes_never_leave_the_tree() {
        let (outside, _dir, tree) = hostile();
        // Both links resolve beneath the tree, where nothing exists: refused.
        assert!(tree.write("etc/victim", b"x", 0o644).is_err());
        assert!(tree.append("tmp/victim", b"x", 0o644).is_err());
        assert!(tree.create_dir_all("etc/apt/keyrings").is_err());
        assert!(tree.create_dir_all("tmp/apt").is_err());
        // A symlink as the final component: never followed by a write; a read
        // follows it inside the tree, where `/…/victim` does not exist.
        assert!(tree.write("link", b"x", 0o644).is_err());
        assert_eq!(tree.read("link").unwrap(), None);
        assert_eq!(tree.read("etc/victim").unwrap(), None);
        assert_eq!(
            fs::read_to_string(outside.path().join("victim")).unwrap(),
            "host"
        );
        let outside_entries = fs::read_dir(outside.path()).unwrap().count();
        assert_eq!(outside_entries, 1, "nothing created outside");
    }

    #[test]
    fn suffix_renames_inside_only() {
        let (outside, dir, tree) = hostile();
        tree.add_suffix("etc/victim", ".dpkg-new").unwrap();
        assert!(
            outside.path().join("victim").exists(),
            "host file untouched"
        );
        fs::write(dir.path().join("conf"), "x").unwrap();
        tree.add_suffix("conf", ".dpkg-new").unwrap();
        assert!(dir.path().join("conf.dpkg-new").exists());
        tree.add_suffix("missing", ".dpkg-new").unwrap();
    }

    #[test]
    fn writes_read_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(dir.path()).unwrap();
        tree.create_dir_all("var/lib/dpkg").unwrap();
        tree.write("var/lib/dpkg/status", b"a\n", 0o644).unwrap();
        tree.append("var/lib/dpkg/status", b"b\n", 0o644).unwrap();
        tree.write("run.sh", b"#!", 0o755).unwrap();
        assert_eq!(
            tree.read("var/lib/dpkg/status").unwrap().unwrap(),
            b"a\nb\n"
        );
        assert_eq!(tree.read("missing/file").unwrap(), None);
        // A link inside the tree is read through, as the container would.
        symlink("/var/lib/dpkg/status", dir.path().join("status-link")).unwrap();
        assert_eq!(tree.read("status-link").unwrap().unwrap(), b"a\nb\n");
        let mode = fs::metadata(dir.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        tree.write("run.sh", b"", 0o644).unwrap();
        assert_eq!(tree.read("run.sh").unwrap().unwrap(), b"");
        assert!(tree.write("../escape", b"x", 0o644).is_err());
        assert!(tree.write("/abs", b"x", 0o644).is_err());
    }

    #[test]
    fn removals_never_follow_symlinks() {
        let (outside, dir, tree) = hostile();
        // `tmp -> outside`: clearing it must not empty the outside directory.
        tree.clear_dir("tmp", &[]).unwrap();
        assert!(outside.path().join("victim").exists());
        // Removing the link removes the link.
        tree.remove_file("link").unwrap();
        assert!(outside.path().join("victim").exists());
        assert!(fs::symlink_metadata(dir.path().join("link")).is_err());
        tree.remove_file("etc/victim").unwrap();
        assert!(outside.path().join("victim").exists());

        fs::create_dir_all(dir.path().join("run/lock")).unwrap();
        fs::create_dir_all(dir.path().join("run/sub/deep")).unwrap();
        fs::write(dir.path().join("run/file"), "x").unwrap();
        symlink(outside.path(), dir.path().join("run/sub/out")).unwrap();
        tree.clear_dir("run", &["lock"]).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path().join("run"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["lock"]);
        assert!(outside.path().join("victim").exists());
    }
}
