//! `locker export`: an image tree as a canonical tar, and the digest of that tar.
//!
//! The tar is a function of the tree's content and metadata only, so two builds of the
//! same package set (or two stores holding the same image) give the same bytes and the
//! same digest. Every choice below is fixed, because the digest covers every byte:
//! - Order: the root entry `./` first, then depth first, a directory before its
//!   children, siblings sorted by name bytes (as `tar --sort=name`).
//! - Names: relative, without a `./` prefix (the root excepted); directories end in `/`.
//! - Headers: ustar. A PAX `x` header precedes an entry only when ustar cannot hold a
//!   value: a path or link target over 100 bytes, an id over 0o7777777, a size or
//!   mtime over 0o77777777777, or xattrs (`SCHILY.xattr.NAME`, sorted by name).
//! - Metadata: numeric uid/gid (uname/gname empty: names would be the host's), mode
//!   with setuid/setgid/sticky, mtime in whole seconds clamped to `epoch`
//!   (SOURCE_DATE_EPOCH) when given, a negative mtime as 0; no atime or ctime.
//! - Hard links: the first path of an inode in this order carries the data; later
//!   paths are link entries naming it.
//! - Sockets are left out (bind(2) recreates them). A directory on another filesystem
//!   than the tree's root (a mount point) is recorded, not entered.
//!
//! Invariant: nothing outside the tree is read. The walk uses `*at()` calls on
//! directory fds with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`: a symlink is recorded as a
//! symlink, never followed.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};

use crate::fs::path_error::{io_err, PathError};
use crate::image::codec::Compression;
use crate::store::digest::{Digest, Hasher};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("write archive")]
    Write(#[source] io::Error),
    #[error("{0} changed while it was read; export again when nothing writes to the image")]
    Changed(PathBuf),
    #[error(
        "unknown output format {0}: name the file .tar, .tar.gz (.tgz), .tar.xz (.txz) or \
         .tar.zst (.tzst), or use `-o -` for a plain tar on stdout"
    )]
    Format(PathBuf),
    #[error("refusing to write a tar archive to a terminal; redirect stdout or use -o FILE")]
    Terminal,
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds since 1970")]
    BadEpoch(String),
}

/// Writes the canonical tar of `tree` (uncompressed) to `out`. Small writes: give it a
/// buffered writer.
pub(crate) fn write_tar(
    tree: &Path,
    out: &mut dyn Write,
    epoch: Option<u64>,
) -> Result<(), ExportError> {
    write_tar_as(tree, out, epoch, false)
}

/// `write_tar` of one of the store's OCI layers: overlayfs' whiteouts (0/0 character
/// devices) become `.wh.NAME` entries and `trusted.overlay.opaque=y` directories get a
/// `.wh..wh..opq` entry (image-spec layer.md); overlayfs' own xattrs are left out.
pub(crate) fn write_layer_tar(
    tree: &Path,
    out: &mut dyn Write,
    epoch: Option<u64>,
) -> Result<(), ExportError> {
    write_tar_as(tree, out, epoch, true)
}

fn write_tar_as(
    tree: &Path,
    out: &mut dyn Write,
    epoch: Option<u64>,
    oci_layer: bool,
) -> Result<(), ExportError> {
    let root = Dir::open(
        tree,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open", tree))?;
    let st = fstat(root.as_raw_fd()).map_err(io_err("stat", tree))?;
    let mut walker = Walker {
        builder: tar::Builder::new(out),
        tree,
        epoch,
        root_dev: st.st_dev,
        first_path: HashMap::new(),
        buf: vec![0; COPY_BUF],
        oci_layer,
    };
    walker.directory(root, &st, b"./".to_vec(), PathBuf::new())?;
    walker.builder.finish().map_err(ExportError::Write)
}

/// The image digest of `tree`: the sha256 of `write_tar`'s bytes, hashed as they are
/// produced (nothing is written to disk).
pub(crate) fn tree_digest(tree: &Path, epoch: Option<u64>) -> Result<Digest, ExportError> {
    let mut sink = HashSink(Hasher::default());
    write_tar(tree, &mut sink, epoch)?;
    Ok(sink.0.finish())
}

/// `locker export NAME -o FILE`: the image's canonical tar, compressed as FILE's
/// extension says, written beside FILE and renamed into place when complete (`-`:
/// plain tar on stdout).
pub(crate) fn export(
    store: &Store,
    name: &str,
    out: &Path,
    epoch: Option<u64>,
) -> anyhow::Result<()> {
    let to_stdout = out == Path::new("-");
    let format = if to_stdout {
        Compression::None
    } else {
        format_of(out)?
    };
    if to_stdout && io::stdout().is_terminal() {
        return Err(ExportError::Terminal.into());
    }
    let image = store
        .resolve(name)?
        .ok_or_else(|| StoreError::NoSuchImage(name.to_string()))?;
    let at_out = |e| match e {
        ExportError::Write(source) => {
            let shown = if to_stdout {
                Path::new("standard output")
            } else {
                out
            };
            io_err("write", shown)(source).into()
        }
        other => other,
    };
    if to_stdout {
        let mut w = BufWriter::with_capacity(COPY_BUF, io::stdout().lock());
        write_tar(&image.rootfs, &mut w, epoch).map_err(at_out)?;
        w.flush().map_err(ExportError::Write).map_err(at_out)?;
        return Ok(());
    }
    let partial = Partial::create(out)?;
    let file = partial.file.try_clone().map_err(io_err("write", out))?;
    write_compressed(&image.rootfs, file, format, epoch).map_err(at_out)?;
    partial.commit(out)?;
    Ok(())
}

/// The value of SOURCE_DATE_EPOCH (reproducible-builds.org): unset or empty is none;
/// anything but decimal seconds is an error rather than a silently different digest.
pub(crate) fn source_date_epoch(value: Option<&OsStr>) -> Result<Option<u64>, ExportError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ExportError::BadEpoch(text.into_owned()));
    }
    text.parse()
        .map(Some)
        .map_err(|_| ExportError::BadEpoch(text.into_owned()))
}

const COPY_BUF: usize = 256 * 1024;
const BLOCK: usize = 512;
/// Largest value of the 8-byte ustar id fields (7 octal digits).
const MAX_ID: u64 = 0o7777777;
/// Largest value of the 12-byte ustar size and mtime fields (11 octal digits).
const MAX_BIG: u64 = 0o77777777777;
/// What a reader without PAX support sees for an id that does not fit: nobody, as GNU
/// tar substitutes, rather than 0 (root).
const SUBSTITUTE_ID: u64 = 65534;

/// The compression `out`'s name asks for.
fn format_of(out: &Path) -> Result<Compression, ExportError> {
    let name = out.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
    Compression::of_tar_name(name).ok_or_else(|| ExportError::Format(out.to_path_buf()))
}

/// The tar through the compressor into `file`. Fixed settings, single-threaded: the
/// compressed bytes are as reproducible as the tar (gzip: no name, mtime 0).
fn write_compressed(
    tree: &Path,
    file: File,
    format: Compression,
    epoch: Option<u64>,
) -> Result<(), ExportError> {
    fn tar_into<W: Write>(tree: &Path, w: W, epoch: Option<u64>) -> Result<W, ExportError> {
        let mut buffered = BufWriter::with_capacity(COPY_BUF, w);
        write_tar(tree, &mut buffered, epoch)?;
        buffered
            .into_inner()
            .map_err(|e| ExportError::Write(e.into_error()))
    }
    let enc = format.encoder(file).map_err(ExportError::Write)?;
    tar_into(tree, enc, epoch)?
        .finish()
        .map_err(ExportError::Write)?;
    Ok(())
}

/// The output being written: a hidden sibling of the final path, removed unless
/// `commit` renames it into place.
struct Partial {
    path: PathBuf,
    file: File,
    done: bool,
}

impl Partial {
    fn create(out: &Path) -> Result<Partial, ExportError> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut name = OsStr::new(".").to_os_string();
        name.push(out.file_name().unwrap_or_default());
        name.push(format!(".{}.part", std::process::id()));
        let path = dir.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", out))?;
        Ok(Partial {
            path,
            file,
            done: false,
        })
    }

    fn commit(mut self, out: &Path) -> Result<(), ExportError> {
        self.file.sync_all().map_err(io_err("write", out))?;
        std::fs::rename(&self.path, out).map_err(io_err("rename into place", out))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A `Write` that only hashes.
struct HashSink(Hasher);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Walker<'a> {
    builder: tar::Builder<&'a mut dyn Write>,
    tree: &'a Path,
    epoch: Option<u64>,
    root_dev: u64,
    /// (st_dev, st_ino) -> archive name of the first path, for inodes with links.
    first_path: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
    /// Overlayfs whiteouts and opaque directories written as OCI's (`write_layer_tar`).
    oci_layer: bool,
}

/// What an entry is, beyond the common metadata.
enum Body<'a> {
    Directory,
    File(&'a mut File),
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    Node(tar::EntryType),
    /// An empty regular file (an OCI whiteout marker).
    Empty,
}

impl Walker<'_> {
    fn host_path(&self, rel: &Path) -> PathBuf {
        self.tree.join(rel)
    }

    /// Records the directory `dir` (archive name `name`, ending in `/`), then its
    /// children in name order.
    fn directory(
        &mut self,
        mut dir: Dir,
        st: &FileStat,
        name: Vec<u8>,
        rel: PathBuf,
    ) -> Result<(), ExportError> {
        let fd = dir.as_raw_fd();
        // SAFETY (both closures): `fd` is open for the call; the buffer pointer and
        // length come from read_xattrs, which owns the buffer.
        let xattrs = read_xattrs(
            // SAFETY: an open fd and a buffer read_xattrs owns, with its true length.
            |buf, len| unsafe { libc::flistxattr(fd, buf, len) },
            // SAFETY: an open fd, a NUL-terminated key and a buffer read_xattrs owns, with its true length.
            |key, buf, len| unsafe { libc::fgetxattr(fd, key.as_ptr(), buf, len) },
        )
        .map_err(io_err("read xattrs of", &self.host_path(&rel)))?;
        let (xattrs, opaque) = self.overlay_xattrs(xattrs);
        self.entry(&name, st, &xattrs, Body::Directory, &rel)?;
        if opaque {
            let prefix: &[u8] = if name == b"./" { b"" } else { &name };
            let mut marker = prefix.to_vec();
            marker.extend_from_slice(b".wh..wh..opq");
            self.entry(&marker, st, &[], Body::Empty, &rel)?;
        }
        if st.st_dev != self.root_dev {
            return Ok(());
        }
        let mut children = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(io_err("read directory", &self.host_path(&rel)))?;
            let child = entry.file_name();
            if !matches!(child.to_bytes(), b"." | b"..") {
                children.push(child.to_owned());
            }
        }
        children.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let prefix: &[u8] = if name == b"./" { b"" } else { &name };
        for child in children {
            let mut child_name = prefix.to_vec();
            child_name.extend_from_slice(child.as_bytes());
            let child_rel = rel.join(OsStr::from_bytes(child.as_bytes()));
            self.child(fd, &child, child_name, child_rel)?;
        }
        Ok(())
    }

    fn child(
        &mut self,
        dir: RawFd,
        child: &CStr,
        mut name: Vec<u8>,
        rel: PathBuf,
    ) -> Result<(), ExportError> {
        let path = self.host_path(&rel);
        let st = fstatat(Some(dir), child, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(io_err("stat", &path))?;
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFDIR {
            let sub = Dir::openat(
                Some(dir),
                child,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err("open", &path))?;
            let st = fstat(sub.as_raw_fd()).map_err(io_err("stat", &path))?;
            name.push(b'/');
            return self.directory(sub, &st, name, rel);
        }
        if kind == libc::S_IFSOCK {
            return Ok(());
        }
        if self.oci_layer && kind == libc::S_IFCHR && st.st_rdev == 0 {
            // overlayfs' whiteout of NAME: OCI's `.wh.NAME`.
            let cut = name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
            let mut wh = name[..cut].to_vec();
            wh.extend_from_slice(b".wh.");
            wh.extend_from_slice(&name[cut..]);
            return self.entry(&wh, &st, &[], Body::Empty, &rel);
        }
        if st.st_nlink > 1 {
            if let Some(first) = self.first_path.get(&(st.st_dev, st.st_ino)) {
                let first = first.clone();
                return self.entry(&name, &st, &[], Body::HardLink(first), &rel);
            }
            self.first_path.insert((st.st_dev, st.st_ino), name.clone());
        }
        if kind == libc::S_IFREG {
            // O_NONBLOCK: if the file was swapped for a FIFO, the open must not hang.
            let fd = nix::fcntl::openat(
                Some(dir),
                child,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err("open", &path))?;
            // SAFETY: the fd was just opened and nothing else owns it.
            let mut file = unsafe { File::from_raw_fd(fd) };
            let st = fstat(fd).map_err(io_err("stat", &path))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(ExportError::Changed(path));
            }
            // SAFETY: as in `directory`: an open fd, a buffer owned by read_xattrs.
            let xattrs = read_xattrs(
                |buf, len| unsafe { libc::flistxattr(fd, buf, len) },
                |key, buf, len| unsafe { libc::fgetxattr(fd, key.as_ptr(), buf, len) },
            )
            .map_err(io_err("read xattrs of", &path))?;
            let (xattrs, _) = self.overlay_xattrs(xattrs);
            return self.entry(&name, &st, &xattrs, Body::File(&mut file), &rel);
        }
        let body = match kind {
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(Some(dir), child)
                    .map_err(io_err("read symlink", &path))?;
                Body::Symlink(target.into_vec())
            }
            libc::S_IFCHR => Body::Node(tar::EntryType::Char),
            libc::S_IFBLK => Body::Node(tar::EntryType::Block),
            libc::S_IFIFO => Body::Node(tar::EntryType::Fifo),
            _ => return Ok(()),
        };
        // No fd for these (opening a device has side effects; a symlink cannot be
        // opened): l*xattr on the name in its parent, the parent named through its fd.
        let mut proc_path = format!("/proc/self/fd/{dir}/").into_bytes();
        proc_path.extend_from_slice(child.to_bytes());
        let proc_path = CString::new(proc_path).expect("no NUL in a file name");
        // SAFETY: a valid C string; a buffer owned by read_xattrs.
        let xattrs = read_xattrs(
            |buf, len| unsafe { libc::llistxattr(proc_path.as_ptr(), buf, len) },
            |key, buf, len| unsafe { libc::lgetxattr(proc_path.as_ptr(), key.as_ptr(), buf, len) },
        )
        .map_err(io_err("read xattrs of", &path))?;
        let (xattrs, _) = self.overlay_xattrs(xattrs);
        self.entry(&name, &st, &xattrs, body, &rel)
    }

    /// In an OCI layer, overlayfs' xattrs are not content: drop them, and say whether
    /// the entry was an opaque directory.
    fn overlay_xattrs(&self, xattrs: Vec<(CString, Vec<u8>)>) -> (Vec<(CString, Vec<u8>)>, bool) {
        if !self.oci_layer {
            return (xattrs, false);
        }
        // trusted.* from root's unpack, user.* from a rootless one (unpack::opaque_xattr).
        let overlay =
            |k: &[u8]| k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.");
        let opaque = xattrs.iter().any(|(k, v)| {
            overlay(k.as_bytes()) && k.as_bytes().ends_with(b".overlay.opaque") && v == b"y"
        });
        let kept = xattrs
            .into_iter()
            .filter(|(k, _)| !overlay(k.as_bytes()))
            .collect();
        (kept, opaque)
    }

    /// Appends one entry: a PAX header if needed, the ustar header, the file's data.
    fn entry(
        &mut self,
        name: &[u8],
        st: &FileStat,
        xattrs: &[(CString, Vec<u8>)],
        body: Body<'_>,
        rel: &Path,
    ) -> Result<(), ExportError> {
        let mut h = tar::Header::new_ustar();
        let mut pax = Vec::new();
        let (kind, size) = match &body {
            Body::Directory => (tar::EntryType::Directory, 0),
            Body::File(_) => (tar::EntryType::Regular, st.st_size as u64),
            Body::Symlink(_) => (tar::EntryType::Symlink, 0),
            Body::HardLink(_) => (tar::EntryType::Link, 0),
            Body::Node(kind) => (*kind, 0),
            Body::Empty => (tar::EntryType::Regular, 0),
        };
        h.set_entry_type(kind);
        {
            let ustar = h.as_ustar_mut().expect("a ustar header");
            if name.len() > ustar.name.len() {
                pax_record(&mut pax, "path", name);
            }
            let n = name.len().min(ustar.name.len());
            ustar.name[..n].copy_from_slice(&name[..n]);
            if let Body::Symlink(target) | Body::HardLink(target) = &body {
                if target.len() > ustar.linkname.len() {
                    pax_record(&mut pax, "linkpath", target);
                }
                let n = target.len().min(ustar.linkname.len());
                ustar.linkname[..n].copy_from_slice(&target[..n]);
            }
        }
        for (key, id) in [("uid", st.st_uid), ("gid", st.st_gid)] {
            let id = u64::from(id);
            let field = if id > MAX_ID {
                pax_record(&mut pax, key, id.to_string().as_bytes());
                SUBSTITUTE_ID
            } else {
                id
            };
            if key == "uid" {
                h.set_uid(field);
            } else {
                h.set_gid(field);
            }
        }
        if size > MAX_BIG {
            pax_record(&mut pax, "size", size.to_string().as_bytes());
            h.set_size(0);
        } else {
            h.set_size(size);
        }
        let mut mtime = u64::try_from(st.st_mtime).unwrap_or(0);
        if let Some(epoch) = self.epoch {
            mtime = mtime.min(epoch);
        }
        if mtime > MAX_BIG {
            pax_record(&mut pax, "mtime", mtime.to_string().as_bytes());
            h.set_mtime(MAX_BIG);
        } else {
            h.set_mtime(mtime);
        }
        h.set_mode(match body {
            Body::Empty => 0o644,
            _ => st.st_mode & 0o7777,
        });
        let (major, minor) = match body {
            Body::Node(_) => (libc::major(st.st_rdev), libc::minor(st.st_rdev)),
            _ => (0, 0),
        };
        let path = self.host_path(rel);
        h.set_device_major(major).map_err(io_err("record", &path))?;
        h.set_device_minor(minor).map_err(io_err("record", &path))?;
        for (key, value) in xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key.as_bytes());
            pax_record_bytes(&mut pax, &k, value);
        }
        h.set_cksum();

        if !pax.is_empty() {
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            let xname = b"././@PaxHeader";
            x.as_ustar_mut().expect("a ustar header").name[..xname.len()].copy_from_slice(xname);
            x.set_mode(0o644);
            x.set_uid(0);
            x.set_gid(0);
            x.set_mtime(0);
            x.set_size(pax.len() as u64);
            x.set_device_major(0).map_err(io_err("record", &path))?;
            x.set_device_minor(0).map_err(io_err("record", &path))?;
            x.set_cksum();
            self.builder
                .append(&x, &pax[..])
                .map_err(ExportError::Write)?;
        }
        // The header alone (no data, so no padding); the data is copied below with a
        // large buffer, telling read errors from write errors.
        self.builder
            .append(&h, io::empty())
            .map_err(ExportError::Write)?;
        if let Body::File(file) = body {
            self.copy_data(file, size, &path)?;
        }
        Ok(())
    }

    /// Exactly `size` bytes of `file` and the padding to a whole block. A file that
    /// ends early changed since it was stat'ed: the header would lie, so stop.
    fn copy_data(&mut self, file: &mut File, size: u64, path: &Path) -> Result<(), ExportError> {
        let out = self.builder.get_mut();
        let mut left = size;
        while left > 0 {
            let want = self
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => return Err(ExportError::Changed(path.to_path_buf())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read", path)(e).into()),
            };
            out.write_all(&self.buf[..n]).map_err(ExportError::Write)?;
            left -= n as u64;
        }
        let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        out.write_all(&[0; BLOCK][..pad])
            .map_err(ExportError::Write)
    }
}

/// One PAX record, "LEN KEY=VALUE\n", LEN counting the whole record including itself.
fn pax_record(pax: &mut Vec<u8>, key: &str, value: &[u8]) {
    pax_record_bytes(pax, key.as_bytes(), value);
}

fn pax_record_bytes(pax: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    pax.extend_from_slice(len.to_string().as_bytes());
    pax.push(b' ');
    pax.extend_from_slice(key);
    pax.push(b'=');
    pax.extend_from_slice(value);
    pax.push(b'\n');
}

/// The bytes a size-then-fill call returns (the xattr list or one value): sized by
/// asking first; ERANGE means it grew in between, so ask again.
fn sized(call: impl Fn(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let len = call(std::ptr::null_mut(), 0);
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; len as usize];
        let got = call(buf.as_mut_ptr().cast(), buf.len());
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}

/// All xattrs of one inode, sorted by name, through `list` (l/flistxattr) and `get`
/// (l/fgetxattr). A filesystem without xattr support has none.
fn read_xattrs(
    list: impl Fn(*mut libc::c_char, usize) -> isize,
    get: impl Fn(&CStr, *mut libc::c_void, usize) -> isize,
) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let names = match sized(|buf, len| list(buf.cast(), len)) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        other => other?,
    };
    let mut out = Vec::new();
    for key in names.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let key = CString::new(key).expect("split at NUL");
        let value = sized(|buf, len| get(&key, buf, len))?;
        out.push((key, value));
    }
    out.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// A temp dir on disk (ext4 under /var/tmp: user xattrs work there, not on every
    /// tmpfs /tmp).
    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("locker-export-")
            .tempdir_in("/var/tmp")
            .expect("temp dir")
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn tar_of(tree: &Path, epoch: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        write_tar(tree, &mut out, epoch).unwrap();
        out
    }

    /// What a reader sees of one entry.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        name: String,
        kind: tar::EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        link: Option<String>,
        data: Vec<u8>,
        xattrs: Vec<(String, Vec<u8>)>,
        dev: (u32, u32),
        uname: Vec<u8>,
    }

    fn read_back(tar: &[u8]) -> Vec<Seen> {
        let mut archive = tar::Archive::new(tar);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut e = entry.unwrap();
            let mut xattrs = Vec::new();
            if let Some(pax) = e.pax_extensions().unwrap() {
                for ext in pax {
                    let ext = ext.unwrap();
                    if let Some(k) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                        xattrs.push((k.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
            let h = e.header().clone();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push(Seen {
                name,
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: e.header().uid().unwrap(),
                gid: e.header().gid().unwrap(),
                mtime: h.mtime().unwrap(),
                link,
                data,
                xattrs,
                dev: (
                    h.device_major().unwrap().unwrap_or(0),
                    h.device_minor().unwrap().unwrap_or(0),
                ),
                uname: h.username_bytes().unwrap_or_default().to_vec(),
            });
        }
        seen
    }

    fn names(tar: &[u8]) -> Vec<String> {
        read_back(tar).into_iter().map(|s| s.name).collect()
    }

    fn find<'a>(seen: &'a [Seen], name: &str) -> &'a Seen {
        seen.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "{name} not in {:?}",
                seen.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    }

    fn set_mtime(path: &Path, secs: i64) {
        let t = nix::sys::time::TimeSpec::new(secs, 0);
        nix::sys::stat::utimensat(
            None,
            path,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    fn set_xattr(path: &Path, key: &str, value: &[u8]) -> io::Result<()> {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let k = CString::new(key).unwrap();
        // SAFETY: valid C strings and buffer.
        let r = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                k.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// A small tree with every kind of entry. `reverse` creates everything in the
    /// opposite order (different inode numbers and directory order, same content).
    /// Metadata is set explicitly, directories last, so two calls give equal trees.
    fn populate(root: &Path, reverse: bool) {
        let mut dirs = ["usr/bin", "etc", "a"];
        let mut steps: [fn(&Path); 6] = [
            |r| fs::write(r.join("etc/hostname"), b"box\n").unwrap(),
            |r| fs::write(r.join("a-b"), b"sorts after a/").unwrap(),
            |r| symlink("/etc", r.join("hostetc")).unwrap(),
            |r| symlink("usr/bin", r.join("bin")).unwrap(),
            |r| fs::write(r.join("a/z"), vec![7u8; 70_000]).unwrap(),
            |r| fs::write(r.join("a/c"), b"").unwrap(),
        ];
        if reverse {
            dirs.reverse();
            steps.reverse();
        }
        for d in dirs {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for step in &steps {
            step(root);
        }
        let files = ["etc/hostname", "a-b", "a/z", "a/c"];
        for f in files {
            fs::set_permissions(root.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        for (i, p) in ["etc/hostname", "a-b", "a/z", "a/c", "hostetc", "bin"]
            .iter()
            .enumerate()
        {
            set_mtime(&root.join(p), 1_600_000_000 + i as i64);
        }
        for d in ["usr/bin", "usr", "etc", "a", ""] {
            fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o755)).unwrap();
            set_mtime(&root.join(d), 1_500_000_000);
        }
    }

    #[test]
    fn entries_are_sorted_depth_first_after_the_root() {
        let tmp = scratch();
        let tree = tmp.path().join("t");
        fs::create_dir(&tree).unwrap();
        // A socket cannot be archived: it is left out.
        let _sock = std::os::unix::net::UnixListener::bind(tree.join("sock")).unwrap();
        populate(&tree, false);
        let tar = tar_of(&tree, None);
        assert_eq!(
            names(&tar),
            [
                "./",
                "a/",
                "a/c",
                "a/z",
                "a-b",
                "bin",
                "etc/",
                "etc/hostname",
                "hostetc",
                "usr/",
                "usr/bin/"
            ]
        );
        let seen = read_back(&tar);
        let root = find(&seen, "./");
        assert_eq!(
            (root.kind, root.mode, root.mtime),
            (tar::EntryType::Directory, 0o755, 1_500_000_000)
        );
        assert_eq!(find(&seen, "a/z").data, vec![7u8; 70_000]);
        assert_eq!(find(&seen, "a/z").mtime, 1_600_000_002);
        for s in &seen {
            assert!(s.uname.is_empty(), "{}: uname must be empty", s.name);
        }
        // The tar crate's reader agrees the archive ends properly: two zero blocks.
        assert_eq!(tar.len() % BLOCK, 0);
        assert!(tar[tar.len() - 2 * BLOCK..].iter().all(|&b| b == 0));
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes() {
        let tmp = scratch();
        let tree = tmp.path().join("t");
        fs::create_dir(&tree).unwrap();
        populate(&tree, false);
        assert_eq!(tar_of(&tree, None), tar_of(&tree, None));
        assert_eq!(tar_of(&tree, Some(5)), tar_of(&tree, Some(5)));
    }

    #[test]
    fn a_copy_made_in_another_order_has_the_same_digest() {
        let tmp = scratch();
        let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
        fs::create_dir(&one).unwrap();
        fs::create_dir(&two).unwrap();
        populate(&one, false);
        populate(&two, true);
        assert_ne!(
            fs::metadata(one.join("a/z")).unwrap().ino(),
            fs::metadata(two.join("a/z")).unwrap().ino()
        );
        let d1 = tree_digest(&one, None).unwrap();
        assert_eq!(d1, tree_digest(&two, None).unwrap());
        // The digest is that of write_tar's bytes.
        assert_eq!(d1, Digest::of(&tar_of(&one, None)));
        // And it does depend on the content.
        fs::write(two.join("a/c"), b"x").unwrap();
        set_mtime(&two.join("a/c"), 1_600_000_003);
        assert_ne!(d1, tree_digest(&two, None).unwrap());
    }

    #[test]
    fn epoch_clamps_newer_mtimes_only() {
        let tmp = scratch();
        let tree = tmp.path().join("t");
        fs::create_dir(&tree).unwrap();
        fs::write(tree.join("new"), b"").unwrap();
        fs::write(tree.join("old"), b"").unwrap();
        set_mtime(&tree.join("new"), 2_000_000_000);
        set_mtime(&tree.join("old"), 500);
        let seen = read_back(&tar_of(&tree, Some(1_000)));
        assert_eq!(find(&seen, "new").mtime, 1_000);
        assert_eq!(find(&seen, "old").mtime, 500);
        assert_eq!(find(&seen, "./").mtime, 1_000);
        let seen = read_back(&tar_of(&tree, None));
        assert_eq!(find(&seen, "new").mtime, 2_000_000_000);
    }

    #[test]
    fn symlinks_are_recorded_not_followed() {
        let tmp = scratch();
        let tree = tmp.path().join("t");
        fs::create_dir(&tree).unwrap();
        symlink("/etc", tree.join("etc")).unwrap();
        symlink("../../..", tree.join("up")).unwrap();
        let seen = read_back(&tar_of(&tree, None));
        assert_eq!(seen.len(), 3, "{seen:?}");
        let etc = find(&seen, "etc");
        assert_eq!(
            (etc.kind, etc.link.as_deref()),
            (tar::EntryType::Symlink, Some("/etc"))
        );
        assert_eq!(find(&seen, "up").link.as_deref(), Some("../../.."));
        assert!(seen
            .iter()
            .all(|s| !s.name.starts_with("etc/") && !s.name.contains("passwd")));
    }

    #[test]
    fn later_paths_of_an_inode_are_hard_links_to_the_first() {
        let tmp = scratch();
        let tree = tmp.path().join("t");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("b"), b"shared").unwrap();
        fs::hard_link(tree.join("b"), tree.join("a")).unwrap();
        fs::hard_link(tree.join("b"), tree.join("sub/c")).unwrap();
        let seen = read_back(&tar_of(&tree, None));
        let a = find(&seen, "a");
        assert_eq!(
            (a.kind, a.data.as_slice()),
            (tar::EntryType::Regular, &b"shared"[..])
        );
        for name in ["b", "sub/c"] {
            let l = find(&seen, name);
            assert_eq!(
                (l.kind, l.link.as_deref()),
                (tar::EntryType::Link, Some("a")),
                "{name}"
            );
            assert!(l.data.is_empty());
        }
    }

    #[test]
    fn owner_and_special_mode_bits_are_kept() {
        if !is_root() {
            eprintln!("SKIP owner check: chown needs root");
            return;
        }
        let tmp = scratch();
        let tree = tmp.path().join("t");
        fs::create_dir(&tree).unwrap();
        let f = tree.join("su");
        fs::write(&f, b"#!").unwrap();
        std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o4755)).unwrap();
        fs::create_dir(tree.join("tmp")).unwrap();
        fs::set_permissions(tree.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        // Beyond ustar's 7 octal digits: PAX carries it, the header has nobody.
        let big = tree.join("big");
        fs::write(&big, b"").unwrap();
        std::os::unix::fs::chown(&big, Some(3_000_000), Some(0)).unwrap();
        let tar = tar_of(&tree, None);
        let seen = read_back(&tar);
        let su = find(&seen, "su");
        assert_eq!((su.mode, su.uid, su.gid), (0o4755, 1234, 5678));
        assert!(su.uname.is_empty());
        assert_eq!(find(&seen, "tmp/").mode, 0o1777);
        assert_eq!(find(&seen, "big").uid, 3_000_000);
        let mut archive = tar::Archive::new(&tar[..]);
        // The reader applies the PAX value to its copy of the header: look at the bytes.
        let pos = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path_bytes().as_ref() == b"big")
            .map(|e| e.raw_header_position() as usize)
            .unwrap();
        let raw_uid = &tar[pos + 108..pos + 116];
        assert_eq!(raw_uid, b"0177776\0");
    }

    #[test]
    fn xattrs_are_pax_records_sorted_by_name() {
        let tmp = scratch();
        let tree = tmp.path().join("t");
        fs::create_dir_all(tree.join("d")).unwrap();
        let f = tree.join("f");
        fs::write(&f, b"data").unwrap();
        if let Err(e) = set_xattr(&f, "user.b", b"2") {
            eprintln!("SKIP xattr check: {e}");
            return;
        }
        set_xattr(&f, "user.a", b"1\0binary").unwrap();
        set_xattr(&tree.join("d"), "user.dir", b"yes").unwrap();
        let seen = read_back(&tar_of(&tree, None));
        assert_eq!(
            find(&seen, "f").xattrs,
            [
                ("user.a".to_string(), b"1\0binary".to_vec()),
                ("user.b".to_string(), b"2".to_vec())
            ]
        );
        assert_eq!(find(&seen, "f").data, b"data");
        assert_eq!(
            find(&seen, "d/").xattrs,
            [("user.dir".to_string(), b"yes".to_vec())]
        );
        assert!(find(&seen, "./").xattrs.is_empty());
    }

    #[test]
    fn fifos_and_device_nodes_are_recorded() {
        let tmp = scratch();
        let tree = tmp.path().join("t");
        fs::create_dir(&tree).unwrap();
        nix::unistd::mkfifo(&tree.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let seen = read_back(&tar_of(&tree, None));
        let fifo = find(&seen, "fifo");
        assert_eq!((fifo.kind, fifo.mode), (tar::EntryType::Fifo, 0o600));
        if !is_root() {
            eprintln!("SKIP device node check: mknod needs root");
            return;
        }
        nix::sys::stat::mknod(
            &tree.join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            libc::makedev(1, 3),
        )
        .unwrap();
        fs::set_permissions(tree.join("null"), fs::Permissions::from_mode(0o666)).unwrap();
        let seen = read_back(&tar_of(&tree, None));
        let null = find(&seen, "null");
        assert_eq!(
            (null.kind, null.mode, null.dev),
            (tar::EntryType::Char, 0o666, (1, 3))
        );
    }

    #[test]
    fn long_names_and_targets_go_into_pax_records() {
        let tmp = scratch();
        let tree = tmp.path().join("t");
        let deep = "d".repeat(60) + "/" + &"e".repeat(60);
        fs::create_dir_all(tree.join(&deep)).unwrap();
        let file = format!("{deep}/{}", "f".repeat(120));
        fs::write(tree.join(&file), b"x").unwrap();
        symlink(&file, tree.join("l")).unwrap();
        fs::hard_link(tree.join(&file), tree.join("h")).unwrap();
        let seen = read_back(&tar_of(&tree, None));
        assert_eq!(find(&seen, &file).data, b"x");
        assert_eq!(
            find(&seen, &format!("{deep}/")).kind,
            tar::EntryType::Directory
        );
        assert_eq!(find(&seen, "l").link.as_deref(), Some(file.as_str()));
        // "d…/" sorts before "h": the long path is the first one of the inode.
        assert_eq!(find(&seen, "h").link.as_deref(), Some(file.as_str()));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut pax = Vec::new();
        pax_record(&mut pax, "path", b"x");
        assert_eq!(pax, b"9 path=x\n");
        for n in 80..120 {
            let mut pax = Vec::new();
            pax_record(&mut pax, "path", "v".repeat(n).as_bytes());
            let (len, _) = std::str::from_utf8(&pax).unwrap().split_once(' ').unwrap();
            assert_eq!(
                len.parse::<usize>().unwrap(),
                pax.len(),
                "value of {n} bytes"
            );
        }
    }

    #[test]
    fn round_trip_through_unpack_keeps_the_digest() {
        let tmp = scratch();
        let tree = tmp.path().join("t");
        fs::create_dir(&tree).unwrap();
        populate(&tree, false);
        fs::hard_link(tree.join("a/z"), tree.join("usr/bin/z")).unwrap();
        nix::unistd::mkfifo(&tree.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        let long = tree.join("l".repeat(150));
        fs::write(&long, b"long").unwrap();
        if is_root() {
            std::os::unix::fs::chown(&long, Some(1234), Some(42)).unwrap();
            fs::set_permissions(&long, fs::Permissions::from_mode(0o2750)).unwrap();
            nix::sys::stat::mknod(
                &tree.join("null"),
                nix::sys::stat::SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                libc::makedev(1, 3),
            )
            .unwrap();
        }
        let _ = set_xattr(&tree.join("a-b"), "user.mime", b"text/plain");
        for p in ["fifo", "a", "usr/bin", ""] {
            set_mtime(&tree.join(p), 1_400_000_000);
        }
        let tar = tar_of(&tree, None);
        let dest = tmp.path().join("copy");
        crate::image::unpack::unpack(&tar[..], &dest).unwrap();
        assert_eq!(tar_of(&dest, None), tar);
        assert_eq!(
            tree_digest(&dest, None).unwrap(),
            tree_digest(&tree, None).unwrap()
        );
    }

    #[test]
    fn output_format_comes_from_the_extension() {
        for (name, want) in [
            ("x.tar", Compression::None),
            ("dir/x.tar.gz", Compression::Gzip),
            ("x.tgz", Compression::Gzip),
            ("x.tar.xz", Compression::Xz),
            ("x.txz", Compression::Xz),
            ("x.tar.zst", Compression::Zstd),
            ("/tmp/x.tzst", Compression::Zstd),
        ] {
            assert_eq!(format_of(Path::new(name)).unwrap(), want, "{name}");
        }
        for bad in ["x.zip", "x", ".tar", "x.tar.bz2", "x.gz"] {
            let err = format_of(Path::new(bad)).unwrap_err();
            assert!(err.to_string().contains(".tar.zst (.tzst)"), "{bad}: {err}");
        }
    }

    #[test]
    fn source_date_epoch_is_decimal_seconds() {
        assert_eq!(source_date_epoch(None).unwrap(), None);
        assert_eq!(source_date_epoch(Some(OsStr::new(""))).unwrap(), None);
        assert_eq!(
            source_date_epoch(Some(OsStr::new("1700000000"))).unwrap(),
            Some(1_700_000_000)
        );
        for bad in ["-1", "1.5", "soon", " 1", "99999999999999999999999"] {
            assert!(source_date_epoch(Some(OsStr::new(bad))).is_err(), "{bad}");
        }
    }
}
