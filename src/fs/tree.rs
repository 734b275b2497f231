//! Host-side file operations inside a tree whose contents locker does not trust: a
//! build's tree after packages were unpacked into it and maintainer scripts ran in it.
//! Either could have left `etc -> /etc` or `tmp -> /`; a plain `fs::write` of
//! `tree/etc/apt/sources.list` would then write the host's file.
//!
//! Invariants: every path is resolved as inside the tree (openat2 RESOLVE_IN_ROOT,
//! the way the container will see it, so no symlink leads out); a write never opens
//! what is there (a new file is renamed over it), renames and removals act on the
//! entry itself (renameat, unlinkat), and only regular files are opened for reading,
//! so a device node or FIFO left in the tree is never opened on the host.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::at;

/// What `Tree::read` reads at most: keyrings, logs and dpkg's small files.
const READ_LIMIT: u64 = 16 << 20;

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

    /// The tree's host path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
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
                    match at::mkdirat(&dir, &name, 0o755) {
                        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                        _ => {}
                    }
                    let made = self.resolve(&prefix, libc::O_RDONLY | libc::O_DIRECTORY)?;
                    // mkdirat's mode went through the process-wide umask.
                    at::fchmod(&made, 0o755)?;
                    made
                }
                Err(e) => return Err(e),
            };
        }
        Ok(())
    }

    /// Replaces `rel` with a new regular file holding `data`, mode `mode`. The new
    /// file is written under a temporary name and renamed over `rel`, so whatever
    /// `rel` was (a symlink, a FIFO, a device node a script made) is never opened.
    pub(crate) fn write(&self, rel: &str, data: &[u8], mode: u32) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        let mut tmp = b".locker-new.".to_vec();
        tmp.extend_from_slice(name.as_bytes());
        let tmp = cstring(&tmp)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let fd = match at::openat(&parent, &tmp, flags, mode) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // Left by an interrupted write, or planted: remove the entry itself.
                let _ = at::unlinkat(&parent, &tmp, false);
                at::openat(&parent, &tmp, flags, mode)?
            }
            r => r?,
        };
        let mut file = File::from(fd);
        let written = (|| {
            // The umask applied to the new file.
            at::fchmod(&file, mode)?;
            file.write_all(data)?;
            at::renameat(&parent, &tmp, &name)
        })();
        if written.is_err() {
            let _ = at::unlinkat(&parent, &tmp, false);
        }
        written
    }

    /// Appends `data` to the regular file `rel` (created with `mode` if missing), by
    /// writing the whole file anew (see `write`): these are small files.
    pub(crate) fn append(&self, rel: &str, data: &[u8], mode: u32) -> io::Result<()> {
        let mut all = match self.entry_kind(rel)? {
            None => Vec::new(),
            Some(libc::S_IFREG) => self.read(rel)?.unwrap_or_default(),
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{rel} is not a regular file"),
                ))
            }
        };
        all.extend_from_slice(data);
        self.write(rel, &all, mode)
    }

    /// The file type (`S_IFMT` bits) of `rel` itself, not following a final
    /// symlink; None if it does not exist.
    fn entry_kind(&self, rel: &str) -> io::Result<Option<libc::mode_t>> {
        let Some((parent, name)) = self.existing_parent(rel)? else {
            return Ok(None);
        };
        match at::lstatat(&parent, &name) {
            Ok(st) => Ok(Some(st.st_mode & libc::S_IFMT)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `rel`'s contents, or None if it does not exist or is not a regular file; at
    /// most `READ_LIMIT` bytes. Symlinks are followed as resolved inside the tree.
    /// Only a regular file is ever opened for reading: a device node or FIFO left in
    /// the tree could block, or act on the host, when opened.
    pub(crate) fn read(&self, rel: &str) -> io::Result<Option<Vec<u8>>> {
        let path: PathBuf = components(rel)?.into_iter().collect();
        let path = cstring(path.as_os_str().as_bytes())?;
        let mut file = match super::openat2::open_regular_in(self.root.as_raw_fd(), &path) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) if unreachable(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        (&mut file).take(READ_LIMIT + 1).read_to_end(&mut out)?;
        if out.len() as u64 > READ_LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{rel} is larger than {} MiB", READ_LIMIT >> 20),
            ));
        }
        Ok(Some(out))
    }

    /// Removes `rel` (a symlink itself, never its target); a missing one is fine.
    pub(crate) fn remove_file(&self, rel: &str) -> io::Result<()> {
        let Some((parent, name)) = self.existing_parent(rel)? else {
            return Ok(());
        };
        match at::unlinkat(&parent, &name, false) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
            _ => Ok(()),
        }
    }

    /// Renames `rel` to `rel` + `suffix` in its directory (a symlink is renamed
    /// itself); a missing `rel` is left for the caller's tool to notice.
    pub(crate) fn add_suffix(&self, rel: &str, suffix: &str) -> io::Result<()> {
        let Some((parent, name)) = self.existing_parent(rel)? else {
            return Ok(());
        };
        let mut to = name.as_bytes().to_vec();
        to.extend_from_slice(suffix.as_bytes());
        let to = cstring(&to)?;
        match at::renameat(&parent, &name, &to) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes everything in the directory `rel` except the names in `keep`. A `rel`
    /// that is a symlink, or missing, is left alone.
    pub(crate) fn clear_dir(&self, rel: &str, keep: &[&str]) -> io::Result<()> {
        let Some((parent, name)) = self.existing_parent(rel)? else {
            return Ok(());
        };
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let dir = match at::openat(&parent, &name, flags, 0) {
            Ok(dir) => dir,
            Err(e) if unreachable(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
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

    /// `parent`, or None when `rel`'s parent does not resolve to a directory inside
    /// the tree (then there is nothing there to read, rename or remove).
    fn existing_parent(&self, rel: &str) -> io::Result<Option<(OwnedFd, CString)>> {
        match self.parent(rel) {
            Ok(p) => Ok(Some(p)),
            Err(e) if unreachable(&e) => Ok(None),
            Err(e) => Err(e),
        }
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
        crate::fs::openat2::openat2(self.root.as_raw_fd(), &path, flags, in_root)
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
        // A symlink as the final component: a read follows it inside the tree, where
        // `/…/victim` does not exist; a write replaces the link itself.
        assert_eq!(tree.read("link").unwrap(), None);
        tree.write("link", b"x", 0o644).unwrap();
        assert_eq!(tree.read("link").unwrap().unwrap(), b"x");
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
    fn device_nodes_and_fifos_are_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(dir.path()).unwrap();
        let fifo = CString::new(dir.path().join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        // Opening a FIFO for reading or writing would block: none of these may.
        assert_eq!(tree.read("fifo").unwrap(), None);
        assert!(tree.append("fifo", b"x", 0o644).is_err());
        tree.write("fifo", b"now a file", 0o644).unwrap();
        assert_eq!(tree.read("fifo").unwrap().unwrap(), b"now a file");
        // A file too large to be one locker reads is refused, not slurped.
        let big = fs::File::create(dir.path().join("big")).unwrap();
        big.set_len(READ_LIMIT + 1).unwrap();
        assert!(tree.read("big").is_err());
        // No temporary file is left behind.
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["big", "fifo"]);
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
