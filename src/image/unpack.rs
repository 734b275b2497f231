//! Safe tar unpacking: magic bytes -> decompressor -> `tar` parser -> a private directory.
//!
//! Invariants:
//! - Nothing is created, changed or linked outside `dest`. Every filesystem operation is
//!   an `*at()` call on a directory fd beneath `dest`. Parent directories are resolved
//!   with openat2(2) `RESOLVE_IN_ROOT`, so a symlink laid down by an earlier entry
//!   (`evil -> /etc`, `evil -> ../../..`) resolves as it will inside the container,
//!   i.e. beneath `dest`, never on the host. The final component is created without
//!   following symlinks (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`).
//! - Entry paths and hard link targets with a `..` component are refused; leading `/`
//!   and `./` are stripped (root tarballs use both).
//! - Memory stays small: file data streams through one fixed buffer; only directory
//!   metadata is kept until the end.
//! - Directory modes and mtimes are applied last, deepest first, so later entries do not
//!   bump the mtimes and a 0555 directory does not block writes into it.
//! - The input is read to its end (also after the tar end marker), so a caller hashing
//!   the stream in the same pass hashes the whole download.
//!
//! The `tar` crate only parses (PAX records, GNU long names, GNU sparse); its `unpack`
//! is not used because it follows symlinks an earlier entry created.

use crate::fs::at;
use crate::image::codec::{self, Compression, XZ_MEMLIMIT};
use crate::image::pipe;
use crate::store::digest::{Digest, Hasher};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub(crate) enum UnpackError {
    #[error("not a tar archive (gzip, xz, zstd or plain)")]
    NotTar,
    #[error("read archive: {0}")]
    Read(#[source] io::Error),
    #[error("the xz stream needs more than {limit_mib} MiB of memory to decompress; refusing it (no distribution archive does)")]
    XzMemory { limit_mib: u64 },
    #[error("open destination {path}: {source}")]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unpack {entry}: {action}: {source}")]
    Entry {
        entry: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("unpack {entry}: path has a `..` component; refusing to write outside the image")]
    DotDot { entry: String },
    #[error("unpack {entry}: hard link target {target} has a `..` component")]
    LinkDotDot { entry: String, target: String },
    #[error("entry {entry} resolves outside the image")]
    Outside { entry: String },
    #[error("unpack {entry}: {what}")]
    Invalid { entry: String, what: &'static str },
    #[error("unpacking needs openat2(2): Linux 5.6 or later")]
    NoOpenat2,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    /// Entries written: files, directories, symlinks, hard links, device nodes, FIFOs.
    pub entries: u64,
    /// Bytes of regular file data written.
    pub bytes: u64,
    /// Entries left out: device nodes the kernel refused (EPERM, e.g. in a user
    /// namespace), PAX global headers and unknown entry types.
    pub skipped: u64,
    /// Of those, device nodes (rootless: a user namespace makes none, as with rootless
    /// podman; the container's /dev has its own).
    pub nodes_skipped: u64,
    /// Entries whose owner has no id in this user namespace's map (rootless, above the
    /// subordinate range, or any id but 0 with a single-id map): kept as owned by the
    /// namespace's root, the user.
    pub unmapped_owners: u64,
}

impl Stats {
    /// What a rootless unpack could not keep, for the user to read once; None when
    /// everything was kept.
    pub(crate) fn losses(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.nodes_skipped > 0 {
            parts.push(format!(
                "{} device nodes left out (a user namespace cannot make them; containers get their own /dev)",
                self.nodes_skipped
            ));
        }
        if self.unmapped_owners > 0 {
            parts.push(format!(
                "{} entries owned by ids outside this user's subordinate range stored as owned by root (add a range of 65536 ids in /etc/subuid and /etc/subgid)",
                self.unmapped_owners
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Adds another layer's counts.
    pub(crate) fn add(&mut self, o: &Stats) {
        self.entries += o.entries;
        self.bytes += o.bytes;
        self.skipped += o.skipped;
        self.nodes_skipped += o.nodes_skipped;
        self.unmapped_owners += o.unmapped_owners;
    }
}

/// Unpacks a tar stream (plain, gzip, xz or zstd) beneath `dest`, an existing empty
/// directory (created with mode 0755 if missing).
///
/// Decompression runs on its own thread, feeding the extractor through a bounded pipe,
/// as `xz -dc | tar -x` runs two processes: on a multi-core machine the two overlap.
pub(crate) fn unpack(reader: impl Read + Send, dest: &Path) -> Result<Stats, UnpackError> {
    unpack_with(reader, dest, Options::default()).map(|(stats, _)| stats)
}

/// How `unpack_with` treats what it finds and what it reports.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Options {
    /// A directory entry over a symlink that resolves (inside the tree) to a directory
    /// keeps the symlink, as dpkg does (and GNU tar's --keep-directory-symlink): a
    /// .deb shipping `./bin/` must not undo a merged /usr's `bin -> usr/bin`.
    pub keep_directory_symlinks: bool,
    /// Return every entry's path in archive order (dpkg's `.list` of a package).
    pub list: bool,
    /// An OCI layer (image-spec layer.md) that overlayfs will stack: a whiteout
    /// `.wh.NAME` becomes overlayfs' whiteout (a 0/0 character device NAME), an opaque
    /// marker `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory, and a
    /// hard link whose target is not in this layer (a file of a lower layer) is
    /// reported in `lower_links` for the caller to copy up.
    pub oci_layer: bool,
    /// Chunks in flight between decompression and extraction (0: `pipe::DEPTH`).
    pub pipe_depth: usize,
}

/// What an OCI layer left to the caller: hard links to files of lower layers.
#[derive(Debug, Clone)]
pub(crate) struct LayerReport {
    pub stats: Stats,
    /// The sha256 of the uncompressed tar stream (the config's diff_id for the layer),
    /// hashed as it was unpacked.
    pub diff_id: Digest,
    /// (link path, target path), both relative to the tree.
    pub lower_links: Vec<(PathBuf, PathBuf)>,
}

const WHITEOUT_PREFIX: &str = ".wh.";

/// overlayfs' opaque mark: trusted.* as root; in a user namespace (rootless), where
/// trusted.* is refused, user.*, which run mounts with `userxattr` to match.
pub(crate) fn opaque_xattr() -> &'static std::ffi::CStr {
    if crate::run::userns::rootless() {
        c"user.overlay.opaque"
    } else {
        c"trusted.overlay.opaque"
    }
}
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpacks one OCI layer beneath `dest` (see `Options::oci_layer`).
pub(crate) fn unpack_layer(
    reader: impl Read + Send,
    dest: &Path,
    pipe_depth: usize,
) -> Result<LayerReport, UnpackError> {
    let options = Options {
        oci_layer: true,
        pipe_depth,
        ..Options::default()
    };
    let mut lower_links = Vec::new();
    let mut hasher = Hasher::default();
    let (stats, _) = unpack_inner(
        reader,
        dest,
        options,
        Some(&mut lower_links),
        Some(&mut hasher),
    )?;
    Ok(LayerReport {
        stats,
        diff_id: hasher.finish(),
        lower_links,
    })
}

/// One archive entry as `Options::list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Relative to the tree, no leading `/` or `./`; empty for the tree's root.
    pub path: PathBuf,
    pub dir: bool,
}

/// `unpack` with options; the listing is empty unless `options.list`.
pub(crate) fn unpack_with(
    reader: impl Read + Send,
    dest: &Path,
    options: Options,
) -> Result<(Stats, Vec<Listed>), UnpackError> {
    unpack_inner(reader, dest, options, None, None)
}

fn unpack_inner(
    mut reader: impl Read + Send,
    dest: &Path,
    options: Options,
    lower_links: Option<&mut Vec<(PathBuf, PathBuf)>>,
    mut uncompressed: Option<&mut Hasher>,
) -> Result<(Stats, Vec<Listed>), UnpackError> {
    let root = open_dest(dest)?;
    let mut unpacker = Unpacker {
        root,
        buf: vec![0; COPY_BUF],
        dirs: Vec::new(),
        stats: Stats::default(),
        same_owner: nix::unistd::geteuid().is_root(),
        options,
        listing: Vec::new(),
        lower_links: Vec::new(),
    };
    std::thread::scope(|scope| {
        let (tx, rx) = match options.pipe_depth {
            0 => pipe::pipe(),
            depth => pipe::pipe_depth(depth),
        };
        let decoder = scope.spawn(move || -> Result<(), UnpackError> {
            let mut tar = open_tar(&mut reader)?;
            // Everything is read, the second zero block, record padding, the
            // compressor's trailer and checksum too, so corruption is noticed and the
            // caller's hash covers every byte. A hang-up means extraction failed:
            // stop, its error is the one to report.
            let mut hash = |chunk: &[u8]| {
                if let Some(h) = uncompressed.as_deref_mut() {
                    h.update(chunk)
                }
            };
            if pipe::feed(&mut tar, &tx, false, &mut hash).map_err(read_error)? {
                drop(tar);
                io::copy(&mut reader, &mut io::sink()).map_err(UnpackError::Read)?;
            }
            Ok(())
        });
        let extracted = (|| {
            let mut archive = tar::Archive::new(rx);
            for entry in archive.entries().map_err(UnpackError::Read)? {
                unpacker.entry(entry.map_err(UnpackError::Read)?)?;
            }
            io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(UnpackError::Read)?;
            Ok(())
        })();
        // The decoder's error (not a tar, corrupt xz) explains an extraction error.
        decoder.join().expect("decoder thread panicked")?;
        extracted
    })?;
    unpacker.finish()?;
    if let Some(out) = lower_links {
        *out = std::mem::take(&mut unpacker.lower_links);
    }
    Ok((unpacker.stats, unpacker.listing))
}

const BLOCK: usize = 512;
const COPY_BUF: usize = 256 * 1024;

/// Reads until `buf` holds `want` bytes or the stream ends. A network reader hands out
/// whatever arrived, so one read (or one `fill_buf`) may be short.
fn read_head(r: &mut dyn Read, want: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(want);
    r.take(want as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Detects the compression, then checks that what it yields starts with a tar header
/// block; returns the decompressed tar stream.
pub(crate) fn open_tar<'a>(raw: &'a mut dyn Read) -> Result<Box<dyn Read + 'a>, UnpackError> {
    let head = read_head(raw, BLOCK).map_err(UnpackError::Read)?;
    let compression = Compression::detect(&head);
    let stream = Cursor::new(head).chain(raw);
    let mut decoded = compression.decoder(stream).map_err(UnpackError::Read)?;
    let block = read_head(&mut decoded, BLOCK).map_err(read_error)?;
    if !is_tar_block(&block) {
        return Err(UnpackError::NotTar);
    }
    Ok(Box::new(Cursor::new(block).chain(decoded)))
}

/// A read error, or `XzMemory` when the xz decoder hit `XZ_MEMLIMIT`.
fn read_error(e: io::Error) -> UnpackError {
    if codec::is_memlimit(&e) {
        UnpackError::XzMemory {
            limit_mib: XZ_MEMLIMIT >> 20,
        }
    } else {
        UnpackError::Read(e)
    }
}

/// A tar header block has a valid checksum (ustar, GNU and v7 alike); an all-zero block
/// is an empty archive.
fn is_tar_block(block: &[u8]) -> bool {
    if block.len() != BLOCK {
        return false;
    }
    if block.iter().all(|&b| b == 0) {
        return true;
    }
    let field = &block[148..156];
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b.is_ascii_digit());
    let mut stored: u32 = 0;
    let mut any = false;
    for &d in digits {
        any = true;
        stored = match stored.checked_mul(8).map(|s| s + u32::from(d - b'0')) {
            Some(s) => s,
            None => return false,
        };
    }
    if !any {
        return false;
    }
    let (unsigned, signed) = block
        .iter()
        .enumerate()
        .fold((0u32, 0i32), |(u, s), (i, &b)| {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            (u + u32::from(b), s + i32::from(b as i8))
        });
    // Some old tars summed signed chars.
    stored == unsigned || i64::from(stored) == i64::from(signed)
}

fn open_dest(dest: &Path) -> Result<OwnedFd, UnpackError> {
    let err = |source| UnpackError::Dest {
        path: dest.to_path_buf(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o755).create(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    let path = CString::new(dest.as_os_str().as_bytes()).map_err(|e| err(e.into()))?;
    // SAFETY: a valid C string; the returned fd is owned by us.
    let fd = at::cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
    .map_err(err)?;
    // SAFETY: fd was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Metadata of one entry, from the header and its PAX records.
struct Meta {
    uid: u32,
    gid: u32,
    /// Permission bits including setuid, setgid and sticky.
    mode: u32,
    mtime: libc::timespec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// Directory metadata applied by `finish`.
struct DeferredDir {
    path: PathBuf,
    mode: u32,
    mtime: libc::timespec,
}

struct Unpacker {
    root: OwnedFd,
    buf: Vec<u8>,
    dirs: Vec<DeferredDir>,
    stats: Stats,
    /// As root, owners come from the archive; otherwise chown would fail (GNU tar
    /// likewise only restores owners for root).
    same_owner: bool,
    options: Options,
    listing: Vec<Listed>,
    lower_links: Vec<(PathBuf, PathBuf)>,
}

impl Unpacker {
    /// The result of a chown: EINVAL is an owner the user namespace does not map
    /// (rootless), kept as its root and counted; any other failure is an error.
    fn owned(&mut self, r: io::Result<libc::c_int>, entry: &str) -> Result<(), UnpackError> {
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.stats.unmapped_owners += 1;
                Ok(())
            }
            r => r.map(drop).map_err(entry_err(entry, "chown")),
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let mut kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            self.stats.skipped += 1;
            return Ok(());
        }
        let meta = read_meta(&mut entry, &name)?;
        let rel =
            sanitize(Path::new(OsStr::from_bytes(&raw))).ok_or_else(|| UnpackError::DotDot {
                entry: name.clone(),
            })?;
        // v7 tars mark directories only by a trailing slash.
        if matches!(kind, tar::EntryType::Regular) && raw.ends_with(b"/") {
            kind = tar::EntryType::Directory;
        }
        if self.options.list {
            self.listing.push(Listed {
                path: rel.clone(),
                dir: matches!(kind, tar::EntryType::Directory),
            });
        }
        if rel.as_os_str().is_empty() {
            // "./" or "/": the image root itself.
            if !matches!(kind, tar::EntryType::Directory) {
                return Err(UnpackError::Invalid {
                    entry: name,
                    what: "empty path",
                });
            }
            let root = self
                .root
                .try_clone()
                .map_err(entry_err(&name, "open image root"))?;
            return self.directory_meta(root, PathBuf::new(), &meta, &name);
        }
        if self.options.oci_layer {
            let file_name = rel.file_name().map(|n| n.as_bytes()).unwrap_or_default();
            if file_name == OPAQUE_MARKER.as_bytes() {
                return self.opaque(&rel, &name);
            }
            if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                let target = rel.with_file_name(OsStr::from_bytes(hidden));
                return self.whiteout(&target, &name);
            }
        }
        match kind {
            tar::EntryType::Directory => self.directory(&rel, &meta, &name),
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = entry.size();
                self.file(&mut entry, size, &rel, &meta, &name)
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                let target = target.ok_or_else(|| UnpackError::Invalid {
                    entry: name.clone(),
                    what: "symlink without a target",
                })?;
                self.symlink(&target, &rel, &meta, &name)
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                let target = target.ok_or_else(|| UnpackError::Invalid {
                    entry: name.clone(),
                    what: "hard link without a target",
                })?;
                self.hardlink(&target, &rel, &name)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let fmt = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                self.node(fmt, libc::makedev(major, minor), &rel, &meta, &name)
            }
            _ => {
                self.stats.skipped += 1;
                Ok(())
            }
        }
    }

    /// Opens (creating missing directories, 0755) the parent of `rel` beneath the image
    /// root; returns it with the final component.
    fn parent(&self, rel: &Path, entry: &str) -> Result<(OwnedFd, CString), UnpackError> {
        let file_name = rel.file_name().ok_or_else(|| UnpackError::Invalid {
            entry: entry.to_owned(),
            what: "no file name",
        })?;
        let file_name = cstring(file_name.as_bytes(), entry)?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        if parent.as_os_str().is_empty() {
            let fd = self
                .root
                .try_clone()
                .map_err(entry_err(entry, "open image root"))?;
            return Ok((fd, file_name));
        }
        let parent_c = cstring(parent.as_os_str().as_bytes(), entry)?;
        match self.resolve(&parent_c, libc::O_PATH | libc::O_DIRECTORY) {
            Err(OpenInTreeError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {}
            other => {
                return other
                    .map(|fd| (fd, file_name))
                    .map_err(|e| e.into_unpack(entry, "open parent directory"))
            }
        }
        // Slow path: create the missing directories one at a time, each resolved again
        // from the root so a symlink among them stays inside.
        let mut cur = self
            .root
            .try_clone()
            .map_err(entry_err(entry, "open image root"))?;
        let mut prefix = PathBuf::new();
        for comp in parent.components() {
            prefix.push(comp);
            let prefix_c = cstring(prefix.as_os_str().as_bytes(), entry)?;
            cur = match self.resolve(&prefix_c, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(OpenInTreeError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let comp_c = cstring(comp.as_os_str().as_bytes(), entry)?;
                    // SAFETY: valid fd and C string.
                    match at::cvt(unsafe { libc::mkdirat(cur.as_raw_fd(), comp_c.as_ptr(), 0o755) })
                    {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(entry_err(entry, "create directory")(e)),
                    }
                    let fd = self
                        .resolve(&prefix_c, libc::O_RDONLY | libc::O_DIRECTORY)
                        .map_err(|e| e.into_unpack(entry, "open parent directory"))?;
                    // mkdirat's mode is masked by the umask, which is process-wide.
                    // SAFETY: valid fd.
                    at::cvt(unsafe { libc::fchmod(fd.as_raw_fd(), 0o755) })
                        .map_err(entry_err(entry, "chmod directory"))?;
                    fd
                }
                Err(e) => return Err(e.into_unpack(entry, "open parent directory")),
            };
        }
        Ok((cur, file_name))
    }

    fn resolve(&self, path: &CStr, flags: libc::c_int) -> Result<OwnedFd, OpenInTreeError> {
        openat2_in_root(self.root.as_raw_fd(), path, flags)
    }

    fn directory(&mut self, rel: &Path, meta: &Meta, entry: &str) -> Result<(), UnpackError> {
        let (parent, name) = self.parent(rel, entry)?;
        // Created owner-writable; the archive's mode is applied in `finish`.
        // SAFETY: valid fd and C string.
        let made = at::cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o700) });
        let mut through_symlink = false;
        if let Err(e) = made {
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(entry_err(entry, "create directory")(e));
            }
            through_symlink = self.options.keep_directory_symlinks
                && at::lstatat(&parent, &name)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
                && self.resolves_to_directory(rel);
            if !through_symlink
                && !make_room(&parent, &name, true)
                    .map_err(entry_err(entry, "replace existing entry"))?
            {
                // SAFETY: valid fd and C string.
                at::cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o700) })
                    .map_err(entry_err(entry, "create directory"))?;
            }
        }
        if through_symlink {
            // dpkg leaves the directory a kept symlink leads to as it is.
            self.stats.entries += 1;
            return Ok(());
        }
        let fd = at::openat(
            &parent,
            &name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0o600,
        )
        .map_err(entry_err(entry, "open directory"))?;
        self.directory_meta(fd, rel.to_path_buf(), meta, entry)
    }

    /// Whether `rel` is a symlink that resolves, inside the tree, to a directory.
    fn resolves_to_directory(&self, rel: &Path) -> bool {
        let Ok(path) = CString::new(rel.as_os_str().as_bytes()) else {
            return false;
        };
        self.resolve(&path, libc::O_PATH | libc::O_DIRECTORY)
            .is_ok()
    }

    fn directory_meta(
        &mut self,
        fd: OwnedFd,
        path: PathBuf,
        meta: &Meta,
        entry: &str,
    ) -> Result<(), UnpackError> {
        if self.same_owner {
            // SAFETY: valid fd.
            let r = at::cvt(unsafe { libc::fchown(fd.as_raw_fd(), meta.uid, meta.gid) });
            self.owned(r, entry)?;
        }
        set_xattrs_fd(&fd, &meta.xattrs, entry)?;
        self.dirs.push(DeferredDir {
            path,
            mode: meta.mode,
            mtime: meta.mtime,
        });
        self.stats.entries += 1;
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        data: &mut R,
        size: u64,
        rel: &Path,
        meta: &Meta,
        entry: &str,
    ) -> Result<(), UnpackError> {
        let (parent, name) = self.parent(rel, entry)?;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW;
        let fd = match at::openat(&parent, &name, flags, 0o600) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                make_room(&parent, &name, false)
                    .map_err(entry_err(entry, "replace existing entry"))?;
                at::openat(&parent, &name, flags, 0o600)
            }
            other => other,
        }
        .map_err(entry_err(entry, "create file"))?;
        let mut file = File::from(fd);
        let mut copied = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(entry_err(entry, "read archive")(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(entry_err(entry, "write file"))?;
            copied += n as u64;
        }
        if copied != size {
            // The tar crate reads entry data through `take`, which stops quietly at EOF.
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside this file",
            );
            return Err(entry_err(entry, "read archive")(e));
        }
        self.stats.bytes += copied;
        let fd = OwnedFd::from(file);
        // Order matters: chown clears setuid/setgid and security.capability.
        if self.same_owner {
            // SAFETY: valid fd.
            let r = at::cvt(unsafe { libc::fchown(fd.as_raw_fd(), meta.uid, meta.gid) });
            self.owned(r, entry)?;
        }
        // SAFETY: valid fd.
        at::cvt(unsafe { libc::fchmod(fd.as_raw_fd(), meta.mode) })
            .map_err(entry_err(entry, "chmod"))?;
        set_xattrs_fd(&fd, &meta.xattrs, entry)?;
        let times = [meta.mtime, meta.mtime];
        // SAFETY: valid fd and a two-element array.
        at::cvt(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })
            .map_err(entry_err(entry, "set mtime"))?;
        self.stats.entries += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        target: &[u8],
        rel: &Path,
        meta: &Meta,
        entry: &str,
    ) -> Result<(), UnpackError> {
        let (parent, name) = self.parent(rel, entry)?;
        // The target is stored verbatim: it is data, resolved only inside the container
        // (or by RESOLVE_IN_ROOT here).
        let target = cstring(target, entry)?;
        let link = || {
            // SAFETY: valid fd and C strings.
            at::cvt(unsafe { libc::symlinkat(target.as_ptr(), parent.as_raw_fd(), name.as_ptr()) })
        };
        match link() {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                make_room(&parent, &name, false)
                    .map_err(entry_err(entry, "replace existing entry"))?;
                link()
            }
            other => other,
        }
        .map_err(entry_err(entry, "create symlink"))?;
        self.nofollow_meta(&parent, &name, meta, false, entry)?;
        self.stats.entries += 1;
        Ok(())
    }

    /// `.wh.NAME`: overlayfs' whiteout for NAME (a 0/0 character device), which hides
    /// NAME of the layers below.
    fn whiteout(&mut self, rel: &Path, entry: &str) -> Result<(), UnpackError> {
        if rel
            .file_name()
            .is_none_or(|n| n.is_empty() || n == "." || n == "..")
        {
            return Err(UnpackError::Invalid {
                entry: entry.to_owned(),
                what: "whiteout without a name",
            });
        }
        let (parent, name) = self.parent(rel, entry)?;
        let make = || {
            // SAFETY: valid fd and C string.
            at::cvt(unsafe {
                libc::mknodat(
                    parent.as_raw_fd(),
                    name.as_ptr(),
                    libc::S_IFCHR,
                    libc::makedev(0, 0),
                )
            })
        };
        match make() {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                make_room(&parent, &name, false)
                    .map_err(entry_err(entry, "replace existing entry"))?;
                make()
            }
            other => other,
        }
        .map_err(entry_err(
            entry,
            "create whiteout (overlayfs needs CAP_MKNOD)",
        ))?;
        self.stats.entries += 1;
        Ok(())
    }

    /// `DIR/.wh..wh..opq`: DIR hides everything the layers below have in it.
    fn opaque(&mut self, rel: &Path, entry: &str) -> Result<(), UnpackError> {
        let dir = rel.parent().unwrap_or(Path::new(""));
        let fd = if dir.as_os_str().is_empty() {
            self.root
                .try_clone()
                .map_err(entry_err(entry, "open image root"))?
        } else {
            // Makes DIR (and its parents) if the layer did not list it before.
            let (parent, name) = self.parent(&dir.join("x"), entry)?;
            drop(name);
            parent
        };
        let path = cstring(
            format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes(),
            entry,
        )?;
        let value = b"y";
        // SAFETY: valid C strings and buffer; the magic link names the directory fd.
        at::cvt(unsafe {
            libc::setxattr(
                path.as_ptr(),
                opaque_xattr().as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        })
        .map_err(entry_err(
            entry,
            "mark directory opaque (set its overlay.opaque xattr)",
        ))?;
        self.stats.entries += 1;
        Ok(())
    }

    fn hardlink(&mut self, target: &[u8], rel: &Path, entry: &str) -> Result<(), UnpackError> {
        let target_name = String::from_utf8_lossy(target).into_owned();
        let target_rel = sanitize(Path::new(OsStr::from_bytes(target))).ok_or_else(|| {
            UnpackError::LinkDotDot {
                entry: entry.to_owned(),
                target: target_name.clone(),
            }
        })?;
        if target_rel.as_os_str().is_empty() {
            return Err(UnpackError::Invalid {
                entry: entry.to_owned(),
                what: "hard link to the image root",
            });
        }
        let target_c = cstring(target_rel.as_os_str().as_bytes(), entry)?;
        // The target is resolved like any path in the image: it can only be a file
        // already beneath the root (a symlink on the way resolves as in the container).
        let src = match openat2_in_root(
            self.root.as_raw_fd(),
            &target_c,
            libc::O_PATH | libc::O_NOFOLLOW,
        ) {
            // In an OCI layer the target may be a file of a layer below.
            Err(OpenInTreeError::Io(e))
                if self.options.oci_layer && e.raw_os_error() == Some(libc::ENOENT) =>
            {
                self.lower_links.push((rel.to_path_buf(), target_rel));
                return Ok(());
            }
            other => other.map_err(|e| e.into_unpack(entry, "open hard link target"))?,
        };
        let src_stat = at::fstat(&src).map_err(entry_err(entry, "stat hard link target"))?;
        if src_stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(UnpackError::Invalid {
                entry: entry.to_owned(),
                what: "hard link to a directory",
            });
        }
        let (parent, name) = self.parent(rel, entry)?;
        match link_fd(&src, &parent, &name) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                if let Ok(st) = at::lstatat(&parent, &name) {
                    if st.st_dev == src_stat.st_dev && st.st_ino == src_stat.st_ino {
                        // Already that inode (a link to itself, or a repeated entry).
                        self.stats.entries += 1;
                        return Ok(());
                    }
                }
                make_room(&parent, &name, false)
                    .map_err(entry_err(entry, "replace existing entry"))?;
                link_fd(&src, &parent, &name)
            }
            other => other,
        }
        .map_err(entry_err(entry, "create hard link"))?;
        self.stats.entries += 1;
        Ok(())
    }

    fn node(
        &mut self,
        fmt: libc::mode_t,
        dev: libc::dev_t,
        rel: &Path,
        meta: &Meta,
        entry: &str,
    ) -> Result<(), UnpackError> {
        let (parent, name) = self.parent(rel, entry)?;
        let make = || {
            // SAFETY: valid fd and C string.
            at::cvt(unsafe { libc::mknodat(parent.as_raw_fd(), name.as_ptr(), fmt | 0o600, dev) })
        };
        let made = match make() {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                make_room(&parent, &name, false)
                    .map_err(entry_err(entry, "replace existing entry"))?;
                make()
            }
            other => other,
        };
        match made {
            Ok(_) => {}
            // Not root, or a user namespace: the image still works without the node
            // (the runtime mounts its own /dev).
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                self.stats.skipped += 1;
                self.stats.nodes_skipped += 1;
                return Ok(());
            }
            Err(e) => return Err(entry_err(entry, "create device node")(e)),
        }
        self.nofollow_meta(&parent, &name, meta, true, entry)?;
        self.stats.entries += 1;
        Ok(())
    }

    /// Metadata for entries that cannot be opened safely (symlinks; device nodes, whose
    /// open may have side effects): all calls name the entry in its parent without
    /// following it.
    fn nofollow_meta(
        &mut self,
        parent: &OwnedFd,
        name: &CStr,
        meta: &Meta,
        chmod: bool,
        entry: &str,
    ) -> Result<(), UnpackError> {
        let pfd = parent.as_raw_fd();
        if self.same_owner {
            // SAFETY: valid fd and C string.
            let r = at::cvt(unsafe {
                libc::fchownat(
                    pfd,
                    name.as_ptr(),
                    meta.uid,
                    meta.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            });
            self.owned(r, entry)?;
        }
        if chmod {
            // glibc and musl implement AT_SYMLINK_NOFOLLOW with fchmodat2 or O_PATH.
            // SAFETY: valid fd and C string.
            at::cvt(unsafe {
                libc::fchmodat(pfd, name.as_ptr(), meta.mode, libc::AT_SYMLINK_NOFOLLOW)
            })
            .map_err(entry_err(entry, "chmod"))?;
        }
        if !meta.xattrs.is_empty() {
            // lsetxattr has no *at form: name the parent through its fd (a magic link
            // followed as a directory) and the entry without following it.
            let mut path = format!("/proc/self/fd/{pfd}/").into_bytes();
            path.extend_from_slice(name.to_bytes());
            let path = cstring(&path, entry)?;
            for (key, value) in &meta.xattrs {
                // SAFETY: valid C strings and buffer.
                let r = at::cvt(unsafe {
                    libc::lsetxattr(
                        path.as_ptr(),
                        key.as_ptr(),
                        value.as_ptr().cast(),
                        value.len(),
                        0,
                    )
                });
                skip_enotsup(r).map_err(entry_err(entry, "set xattr"))?;
            }
        }
        let times = [meta.mtime, meta.mtime];
        // SAFETY: valid fd, C string and a two-element array.
        at::cvt(unsafe {
            libc::utimensat(
                pfd,
                name.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map_err(entry_err(entry, "set mtime"))?;
        Ok(())
    }

    /// Applies directory modes and mtimes, deepest first (a directory's own mtime is
    /// set after everything inside it is final).
    fn finish(&mut self) -> Result<(), UnpackError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        // Stable: of two entries for one directory, the later one wins.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for dir in &dirs {
            let entry = dir.path.display().to_string();
            let fd = if dir.path.as_os_str().is_empty() {
                self.root
                    .try_clone()
                    .map_err(entry_err(&entry, "open image root"))?
            } else {
                let path = cstring(dir.path.as_os_str().as_bytes(), &entry)?;
                match openat2_in_root(
                    self.root.as_raw_fd(),
                    &path,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                ) {
                    Ok(fd) => fd,
                    // A later entry replaced the directory: its metadata is gone with it.
                    Err(OpenInTreeError::Io(e))
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e.into_unpack(&entry, "open directory")),
                }
            };
            // SAFETY: valid fd.
            at::cvt(unsafe { libc::fchmod(fd.as_raw_fd(), dir.mode) })
                .map_err(entry_err(&entry, "chmod"))?;
            let times = [dir.mtime, dir.mtime];
            // SAFETY: valid fd and a two-element array.
            at::cvt(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })
                .map_err(entry_err(&entry, "set mtime"))?;
        }
        Ok(())
    }
}

/// An empty (all NUL or blank) numeric header field reads as 0, as GNU tar, busybox and
/// Python's tarfile read it; the tar crate refuses it. PAX overrides are applied by
/// the crate either way.
fn numeric(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    if parsed.is_err() && raw.iter().all(|b| *b == 0 || *b == b' ') {
        Ok(0)
    } else {
        parsed
    }
}

/// Owner, mode, mtime and xattrs of an entry. Numeric ids only: names would map to the
/// host's users, not the image's. The `tar` crate already applied PAX uid/gid/size.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, UnpackError> {
    let header = entry.header();
    let field = |r: io::Result<u64>, what| r.map_err(entry_err(name, what));
    let old = header.as_old();
    let uid = field(numeric(&old.uid, header.uid()), "read uid")?;
    let gid = field(numeric(&old.gid, header.gid()), "read gid")?;
    let mode = header.mode().map_err(entry_err(name, "read mode"))? & 0o7777;
    let secs = field(numeric(&old.mtime, header.mtime()), "read mtime")?;
    let id = |v: u64| {
        u32::try_from(v).map_err(|_| UnpackError::Invalid {
            entry: name.to_owned(),
            what: "uid or gid out of range",
        })
    };
    let (uid, gid) = (id(uid)?, id(gid)?);
    let mut mtime = libc::timespec {
        tv_sec: secs.min(i64::MAX as u64) as libc::time_t,
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = entry
        .pax_extensions()
        .map_err(entry_err(name, "read pax header"))?
    {
        for ext in pax {
            let ext = ext.map_err(entry_err(name, "read pax header"))?;
            let Ok(key) = ext.key() else { continue };
            if key == "mtime" {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    mtime = t;
                }
            } else if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                // overlayfs' own attributes (opaque, redirect, metacopy) in a lower
                // layer steer its lookups: an archive never sets them.
                if attr.starts_with("trusted.overlay.") || attr.starts_with("user.overlay.") {
                    continue;
                }
                xattrs.push((cstring(attr.as_bytes(), name)?, ext.value_bytes().to_vec()));
            } else if key.starts_with("GNU.sparse.") {
                // PAX sparse formats 0.x/1.0 keep the map in the data; the tar crate does
                // not expand them, so the file would come out wrong.
                return Err(UnpackError::Invalid {
                    entry: name.to_owned(),
                    what: "PAX sparse files are not supported",
                });
            }
        }
    }
    Ok(Meta {
        uid,
        gid,
        mode,
        mtime,
        xattrs,
    })
}

/// PAX times are decimal seconds with an optional fraction ("1700000000.25").
fn parse_pax_time(s: &str) -> Option<libc::timespec> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if secs < 0 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nsec: i64 = 0;
    for b in frac.bytes().chain(std::iter::repeat(b'0')).take(9) {
        nsec = nsec * 10 + i64::from(b - b'0');
    }
    Some(libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nsec as _,
    })
}

/// The entry path relative to the image root: leading `/` and `.` components dropped;
/// `None` if any component is `..`.
fn sanitize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    Some(out)
}

/// Makes room for a new entry at `name`. Returns true if an existing directory is kept
/// (the new entry is a directory too); non-directories are removed (a later entry
/// replaces an earlier one, as with GNU tar), a directory only if empty.
fn make_room(parent: &OwnedFd, name: &CStr, new_is_dir: bool) -> io::Result<bool> {
    let st = at::lstatat(parent, name)?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if is_dir && new_is_dir {
        return Ok(true);
    }
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid fd and C string.
    at::cvt(unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), flags) })?;
    Ok(false)
}

enum OpenInTreeError {
    Io(io::Error),
    Outside,
    NoOpenat2,
}

impl OpenInTreeError {
    fn into_unpack(self, entry: &str, action: &'static str) -> UnpackError {
        match self {
            OpenInTreeError::Io(e) => entry_err(entry, action)(e),
            OpenInTreeError::Outside => UnpackError::Outside {
                entry: entry.to_owned(),
            },
            OpenInTreeError::NoOpenat2 => UnpackError::NoOpenat2,
        }
    }
}

fn openat2_in_root(
    root: RawFd,
    path: &CStr,
    flags: libc::c_int,
) -> Result<OwnedFd, OpenInTreeError> {
    let in_root = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    crate::fs::openat2::openat2(root, path, flags, in_root).map_err(|errno| match errno {
        libc::EXDEV => OpenInTreeError::Outside,
        libc::ENOSYS => OpenInTreeError::NoOpenat2,
        _ => OpenInTreeError::Io(io::Error::from_raw_os_error(errno)),
    })
}

/// linkat(2) from an O_PATH fd. AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; without it
/// the /proc/self/fd magic link with AT_SYMLINK_FOLLOW does the same (linkat(2)).
fn link_fd(src: &OwnedFd, parent: &OwnedFd, name: &CStr) -> io::Result<()> {
    let empty = c"";
    // SAFETY: valid fds and C strings.
    let r = at::cvt(unsafe {
        libc::linkat(
            src.as_raw_fd(),
            empty.as_ptr(),
            parent.as_raw_fd(),
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    });
    match r {
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EPERM))
                && !nix::unistd::geteuid().is_root() =>
        {
            let proc = CString::new(format!("/proc/self/fd/{}", src.as_raw_fd()))
                .expect("no NUL in a number");
            // SAFETY: valid fd and C strings.
            at::cvt(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    proc.as_ptr(),
                    parent.as_raw_fd(),
                    name.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            })
            .map(drop)
        }
        other => other.map(drop),
    }
}

fn set_xattrs_fd(
    fd: &OwnedFd,
    xattrs: &[(CString, Vec<u8>)],
    entry: &str,
) -> Result<(), UnpackError> {
    for (key, value) in xattrs {
        // SAFETY: valid fd, C string and buffer.
        let r = at::cvt(unsafe {
            libc::fsetxattr(
                fd.as_raw_fd(),
                key.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        });
        skip_enotsup(r).map_err(entry_err(entry, "set xattr"))?;
    }
    Ok(())
}

/// A filesystem without xattr support (or without this namespace) loses the attribute,
/// as with GNU tar's --xattrs.
fn skip_enotsup(r: io::Result<libc::c_int>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(()),
        other => other.map(drop),
    }
}

fn cstring(bytes: &[u8], entry: &str) -> Result<CString, UnpackError> {
    CString::new(bytes).map_err(|_| UnpackError::Invalid {
        entry: entry.to_owned(),
        what: "NUL byte in a path",
    })
}

fn entry_err(entry: &str, action: &'static str) -> impl FnOnce(io::Error) -> UnpackError {
    let entry = entry.to_owned();
    move |source| UnpackError::Entry {
        entry,
        action,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    const MTIME: u64 = 1_600_000_000;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A header with any path bytes (tar::Builder refuses `..` and absolute paths).
    fn header(kind: tar::EntryType, path: &[u8], mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_cksum();
        h
    }

    fn add(b: &mut tar::Builder<Vec<u8>>, mut h: tar::Header, data: &[u8]) {
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
        add(
            b,
            header(
                tar::EntryType::Regular,
                path.as_bytes(),
                mode,
                data.len() as u64,
            ),
            data,
        );
    }

    fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) {
        add(
            b,
            header(tar::EntryType::Directory, path.as_bytes(), mode, 0),
            &[],
        );
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
        let mut h = header(kind, path.as_bytes(), 0o777, 0);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        add(b, h, &[]);
    }

    fn symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        link(b, tar::EntryType::Symlink, path, target);
    }

    fn hardlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        link(b, tar::EntryType::Link, path, target);
    }

    /// A PAX extended header for the next entry.
    fn pax(b: &mut tar::Builder<Vec<u8>>, records: &[(&str, &[u8])]) {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = [k.as_bytes(), b"=", v, b"\n"].concat();
            let mut len = body.len() + 1;
            while format!("{len} ").len() + body.len() != len {
                len = format!("{len} ").len() + body.len();
            }
            data.extend_from_slice(format!("{len} ").as_bytes());
            data.extend_from_slice(&body);
        }
        add(
            b,
            header(
                tar::EntryType::XHeader,
                b"././@PaxHeader",
                0o644,
                data.len() as u64,
            ),
            &data,
        );
    }

    fn build(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        b.into_inner().unwrap()
    }

    /// A temp dir and a destination inside it that does not exist yet.
    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("rootfs");
        (tmp, dest)
    }

    fn sample() -> Vec<u8> {
        build(|b| {
            dir(b, "./", 0o755);
            dir(b, "./etc/", 0o755);
            file(b, "./etc/hostname", b"box\n", 0o644);
            dir(b, "./usr/", 0o755);
            dir(b, "./usr/bin/", 0o755);
            file(b, "./usr/bin/tool", &[7u8; 300_000], 0o755);
            symlink(b, "./bin", "usr/bin");
            symlink(b, "./etc/tool", "/usr/bin/tool");
        })
    }

    fn check_sample(dest: &Path, stats: Stats) {
        assert_eq!(fs::read(dest.join("etc/hostname")).unwrap(), b"box\n");
        assert_eq!(
            fs::read(dest.join("usr/bin/tool")).unwrap(),
            vec![7u8; 300_000]
        );
        assert_eq!(
            fs::read_link(dest.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            fs::read_link(dest.join("etc/tool")).unwrap(),
            Path::new("/usr/bin/tool")
        );
        assert_eq!(stats.entries, 8);
        assert_eq!(stats.bytes, 300_004);
        assert_eq!(stats.skipped, 0);
    }

    /// A network-like reader: short reads of a few bytes; counts what was read.
    struct Trickle<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf
                .len()
                .min(self.data.len() - self.pos)
                .min(1 + self.pos % 7);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }

    #[test]
    fn a_layer_report_carries_the_digest_of_the_uncompressed_stream() {
        let tar = sample();
        for data in [tar.clone(), gzip(&tar), zstd(&tar)] {
            let t = tempfile::tempdir().unwrap();
            let report = unpack_layer(
                Trickle {
                    data: &data,
                    pos: 0,
                },
                &t.path().join("l"),
                0,
            )
            .unwrap();
            assert_eq!(
                report.diff_id,
                Digest::of(&tar),
                "the diff_id is the tar's own digest"
            );
        }
    }

    #[test]
    fn unpack_round_trips_every_compression() {
        let tar = sample();
        for (what, data) in [
            ("plain", tar.clone()),
            ("gzip", gzip(&tar)),
            ("xz", xz(&tar)),
            ("zstd", zstd(&tar)),
        ] {
            let (_tmp, dest) = scratch();
            let stats = unpack(&data[..], &dest).unwrap_or_else(|e| panic!("{what}: {e}"));
            check_sample(&dest, stats);
        }
    }

    #[test]
    fn unpack_detects_magic_through_short_reads_and_reads_to_the_end() {
        let tar = sample();
        for data in [tar.clone(), zstd(&tar), xz(&tar)] {
            let (_tmp, dest) = scratch();
            let mut reader = Trickle {
                data: &data,
                pos: 0,
            };
            let stats = unpack(&mut reader, &dest).unwrap();
            check_sample(&dest, stats);
            assert_eq!(
                reader.pos,
                data.len(),
                "the whole stream is consumed (the caller hashes it)"
            );
        }
    }

    #[test]
    fn unpack_reads_multi_stream_xz_and_multi_member_gzip() {
        let tar = sample();
        let (a, b) = tar.split_at(tar.len() / 3);
        for data in [[xz(a), xz(b)].concat(), [gzip(a), gzip(b)].concat()] {
            let (_tmp, dest) = scratch();
            check_sample(&dest, unpack(&data[..], &dest).unwrap());
        }
    }

    #[test]
    fn unpack_preserves_owner_and_special_modes() {
        let tar = build(|b| {
            let mut h = header(tar::EntryType::Regular, b"usr/bin/su", 0o4755, 2);
            h.set_uid(1234);
            h.set_gid(4321);
            add(b, h, b"su");
            let mut h = header(tar::EntryType::Directory, b"srv/", 0o2775, 0);
            h.set_uid(1234);
            h.set_gid(50);
            add(b, h, &[]);
            dir(b, "tmp/", 0o1777);
            file(b, "etc/shadow", b"", 0o640);
        });
        let (_tmp, dest) = scratch();
        unpack(&tar[..], &dest).unwrap();
        let su = fs::metadata(dest.join("usr/bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755);
        assert_eq!(
            fs::metadata(dest.join("srv")).unwrap().mode() & 0o7777,
            0o2775
        );
        assert_eq!(
            fs::metadata(dest.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert_eq!(
            fs::metadata(dest.join("etc/shadow")).unwrap().mode() & 0o7777,
            0o640
        );
        // Implicit parents get 0755 whatever the umask.
        assert_eq!(
            fs::metadata(dest.join("usr/bin")).unwrap().mode() & 0o7777,
            0o755
        );
        if is_root() {
            assert_eq!((su.uid(), su.gid()), (1234, 4321));
            assert_eq!(fs::metadata(dest.join("srv")).unwrap().uid(), 1234);
        } else {
            eprintln!("SKIP owner checks: not root");
        }
    }

    #[test]
    fn xz_beyond_the_memory_limit_is_refused_by_name() {
        let tar = sample();
        // Preset 6: an 8 MiB dictionary, ~9 MiB to decode.
        let mut xz = Vec::new();
        xz2::read::XzEncoder::new(&tar[..], 6)
            .read_to_end(&mut xz)
            .unwrap();
        let mut out = Vec::new();
        let err = codec::xz_decoder(&xz[..], 1 << 20)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(
            matches!(read_error(err), UnpackError::XzMemory { .. }),
            "named as the memory limit"
        );
        // Within the limit the same stream decodes.
        out.clear();
        codec::xz_decoder(&xz[..], XZ_MEMLIMIT)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, tar);
    }

    #[test]
    fn directory_symlinks_kept_only_when_asked_and_listing_in_order() {
        let data = build(|b| {
            dir(b, "./", 0o755);
            dir(b, "./bin/", 0o755);
            file(b, "./bin/sh", b"#!", 0o755);
            dir(b, "./lib/", 0o700);
        });
        let prepare = |dest: &Path| {
            fs::create_dir_all(dest.join("usr/bin")).unwrap();
            std::os::unix::fs::symlink("usr/bin", dest.join("bin")).unwrap();
            // Resolves inside the tree to nothing: not a directory, so replaced.
            std::os::unix::fs::symlink("/nowhere", dest.join("lib")).unwrap();
        };
        let (_tmp, dest) = scratch();
        prepare(&dest);
        let options = Options {
            keep_directory_symlinks: true,
            list: true,
            ..Options::default()
        };
        let (_, listing) = unpack_with(&data[..], &dest, options).unwrap();
        // dpkg's rule: a merged /usr's bin -> usr/bin survives a package's ./bin/.
        assert_eq!(
            fs::read_link(dest.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(fs::read(dest.join("usr/bin/sh")).unwrap(), b"#!");
        assert!(fs::symlink_metadata(dest.join("lib")).unwrap().is_dir());
        let shown: Vec<(String, bool)> = listing
            .iter()
            .map(|l| (l.path.display().to_string(), l.dir))
            .collect();
        assert_eq!(
            shown,
            [
                (String::new(), true),
                ("bin".into(), true),
                ("bin/sh".into(), false),
                ("lib".into(), true)
            ]
        );

        // A root tarball's semantics (GNU tar's default): the entry's directory wins.
        let (_tmp, dest) = scratch();
        prepare(&dest);
        let (_, listing) = unpack_with(&data[..], &dest, Options::default()).unwrap();
        assert!(listing.is_empty(), "listing only when asked");
        assert!(fs::symlink_metadata(dest.join("bin")).unwrap().is_dir());
        assert!(!dest.join("usr/bin/sh").exists());
    }

    #[test]
    fn unpack_preserves_mtimes_of_files_dirs_and_symlinks() {
        let tar = build(|b| {
            let mut h = header(tar::EntryType::Directory, b"d/", 0o755, 0);
            h.set_mtime(1_400_000_000);
            add(b, h, &[]);
            let mut h = header(tar::EntryType::Regular, b"d/f", 0o644, 1);
            h.set_mtime(1_500_000_000);
            add(b, h, b"x");
            let mut h = header(tar::EntryType::Symlink, b"d/l", 0o777, 0);
            h.set_link_name("f").unwrap();
            h.set_mtime(1_300_000_000);
            add(b, h, &[]);
            pax(b, &[("mtime", b"1500000000.25")]);
            file(b, "d/precise", b"", 0o644);
        });
        let (_tmp, dest) = scratch();
        unpack(&tar[..], &dest).unwrap();
        assert_eq!(
            fs::symlink_metadata(dest.join("d")).unwrap().mtime(),
            1_400_000_000
        );
        assert_eq!(
            fs::symlink_metadata(dest.join("d/f")).unwrap().mtime(),
            1_500_000_000
        );
        assert_eq!(
            fs::symlink_metadata(dest.join("d/l")).unwrap().mtime(),
            1_300_000_000
        );
        let precise = fs::symlink_metadata(dest.join("d/precise")).unwrap();
        assert_eq!(
            (precise.mtime(), precise.mtime_nsec()),
            (1_500_000_000, 250_000_000)
        );
    }

    #[test]
    fn unpack_hardlinks_share_an_inode() {
        let tar = build(|b| {
            file(b, "usr/bin/python3.11", b"py", 0o755);
            hardlink(b, "usr/bin/python3", "./usr/bin/python3.11");
            hardlink(b, "usr/bin/py", "/usr/bin/python3.11");
        });
        let (_tmp, dest) = scratch();
        let stats = unpack(&tar[..], &dest).unwrap();
        let a = fs::metadata(dest.join("usr/bin/python3.11")).unwrap();
        let b = fs::metadata(dest.join("usr/bin/python3")).unwrap();
        let c = fs::metadata(dest.join("usr/bin/py")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.ino(), c.ino());
        assert_eq!(a.nlink(), 3);
        assert_eq!((stats.entries, stats.bytes), (3, 2));
    }

    #[test]
    fn unpack_creates_device_nodes_and_fifos() {
        let tar = build(|b| {
            let mut h = header(tar::EntryType::Char, b"dev/null", 0o666, 0);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            add(b, h, &[]);
            add(
                b,
                header(tar::EntryType::Fifo, b"run/initctl", 0o600, 0),
                &[],
            );
        });
        let (_tmp, dest) = scratch();
        let stats = unpack(&tar[..], &dest).unwrap();
        let fifo = fs::symlink_metadata(dest.join("run/initctl")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o600);
        if !is_root() {
            eprintln!("SKIP device node check: not root");
            assert_eq!(stats.skipped, 1);
            return;
        }
        let null = fs::symlink_metadata(dest.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        assert_eq!(null.mtime(), MTIME as i64);
        assert_eq!(stats.entries, 2);
    }

    fn get_xattr(path: &Path, name: &str) -> io::Result<Vec<u8>> {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let n = CString::new(name).unwrap();
        let mut buf = vec![0u8; 256];
        // SAFETY: valid C strings and buffer.
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(len as usize);
        Ok(buf)
    }

    #[test]
    fn unpack_sets_xattrs_from_pax_records() {
        let tar = build(|b| {
            pax(
                b,
                &[
                    ("SCHILY.xattr.user.test", b"hello"),
                    ("comment", b"ignored"),
                ],
            );
            file(b, "f", b"data", 0o644);
            // trusted.* is the namespace symlinks may carry (user.* is not allowed on them).
            pax(b, &[("SCHILY.xattr.trusted.test", b"link")]);
            symlink(b, "l", "f");
        });
        let (_tmp, dest) = scratch();
        match unpack(&tar[..], &dest) {
            Ok(_) => {}
            Err(UnpackError::Entry { source, .. })
                if source.raw_os_error() == Some(libc::EPERM) && !is_root() =>
            {
                eprintln!("SKIP xattr check: trusted.* needs root");
                return;
            }
            Err(e) => panic!("{e}"),
        }
        match get_xattr(&dest.join("f"), "user.test") {
            Ok(v) => assert_eq!(v, b"hello"),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                eprintln!(
                    "SKIP xattr check: the temp filesystem does not support user xattrs ({e})"
                )
            }
            Err(e) => panic!("getxattr: {e}"),
        }
        match get_xattr(&dest.join("l"), "trusted.test") {
            Ok(v) => assert_eq!(v, b"link"),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                eprintln!("SKIP symlink xattr check: not supported here ({e})")
            }
            Err(e) => panic!("lgetxattr: {e}"),
        }
    }

    #[test]
    fn unpack_keeps_file_capabilities_after_chown() {
        if !is_root() {
            eprintln!("SKIP security.capability check: not root");
            return;
        }
        // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, permitted = CAP_NET_RAW (13).
        let mut cap = Vec::new();
        for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
            cap.extend_from_slice(&word.to_le_bytes());
        }
        let tar = build(|b| {
            pax(b, &[("SCHILY.xattr.security.capability", &cap)]);
            let mut h = header(tar::EntryType::Regular, b"bin/ping", 0o755, 4);
            h.set_uid(0);
            add(b, h, b"ping");
        });
        let (_tmp, dest) = scratch();
        unpack(&tar[..], &dest).unwrap();
        match get_xattr(&dest.join("bin/ping"), "security.capability") {
            Ok(v) => assert_eq!(v, cap),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                eprintln!("SKIP security.capability check: {e}")
            }
            Err(e) => panic!("getxattr: {e}"),
        }
    }

    #[test]
    fn unpack_refuses_dotdot_and_writes_nothing_outside() {
        for path in ["../escape", "a/../../escape", "./../escape"] {
            let tar = build(|b| {
                file(b, "ok", b"", 0o644);
                add(
                    b,
                    header(tar::EntryType::Regular, path.as_bytes(), 0o644, 3),
                    b"bad",
                );
            });
            let (tmp, dest) = scratch();
            let err = unpack(&tar[..], &dest).unwrap_err();
            assert!(matches!(err, UnpackError::DotDot { .. }), "{path}: {err}");
            assert_eq!(
                err.to_string(),
                format!(
                    "unpack {path}: path has a `..` component; refusing to write outside the image"
                )
            );
            assert!(!tmp.path().join("escape").exists());
            assert!(!tmp.path().parent().unwrap().join("escape").exists());
        }
    }

    #[test]
    fn unpack_puts_absolute_paths_inside() {
        let tar = build(|b| {
            add(
                b,
                header(tar::EntryType::Regular, b"/abs/file", 0o644, 2),
                b"in",
            )
        });
        let (_tmp, dest) = scratch();
        unpack(&tar[..], &dest).unwrap();
        assert_eq!(fs::read(dest.join("abs/file")).unwrap(), b"in");
    }

    #[test]
    fn unpack_resolves_symlinks_in_parents_inside_the_image() {
        let (tmp, dest) = scratch();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let outside_abs = outside.to_str().unwrap().to_owned();
        let tar = build(|b| {
            symlink(b, "evil", "/");
            file(b, "evil/owned", b"1", 0o644);
            symlink(b, "up", "../../..");
            file(b, "up/owned2", b"2", 0o644);
            // Through two links: `lib -> usr/lib`, as in merged-/usr images.
            dir(b, "usr/lib/", 0o755);
            symlink(b, "lib", "/usr/lib");
            file(b, "lib/libc.so", b"3", 0o644);
            symlink(b, "host", &outside_abs);
        });
        unpack(&tar[..], &dest).unwrap();
        assert_eq!(fs::read(dest.join("owned")).unwrap(), b"1");
        assert_eq!(fs::read(dest.join("owned2")).unwrap(), b"2");
        assert_eq!(fs::read(dest.join("usr/lib/libc.so")).unwrap(), b"3");
        assert!(!tmp.path().join("owned").exists());
        assert!(!tmp.path().join("owned2").exists());

        // A symlink to an absolute host path names a path inside the image; it does not
        // exist there, so the write fails (or would land inside), never on the host.
        let tar = build(|b| {
            symlink(b, "host", &outside_abs);
            file(b, "host/owned3", b"4", 0o644);
        });
        let (_tmp2, dest2) = scratch();
        let r = unpack(&tar[..], &dest2);
        assert!(!outside.join("owned3").exists());
        if r.is_ok() {
            assert!(dest2
                .join(outside_abs.trim_start_matches('/'))
                .join("owned3")
                .exists());
        }
    }

    #[test]
    fn unpack_keeps_hardlinks_inside() {
        let tar = build(|b| hardlink(b, "passwd", "../../etc/passwd"));
        let (_tmp, dest) = scratch();
        let err = unpack(&tar[..], &dest).unwrap_err();
        assert!(matches!(err, UnpackError::LinkDotDot { .. }), "{err}");
        assert!(!dest.join("passwd").exists());

        let (tmp, dest) = scratch();
        let secret = tmp.path().join("secret");
        fs::write(&secret, "host").unwrap();
        for target in [tmp.path().to_str().unwrap(), "../.."] {
            let tar = build(|b| {
                symlink(b, "s", target);
                hardlink(b, "h", "s/secret");
            });
            let _ = fs::remove_dir_all(&dest);
            let err = unpack(&tar[..], &dest).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("unpack h: open hard link target: "),
                "{err}"
            );
            assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
            assert!(fs::symlink_metadata(dest.join("h")).is_err());
        }

        // Through a symlink that stays inside: fine.
        let tar = build(|b| {
            file(b, "inside", b"x", 0o644);
            symlink(b, "root", "/");
            hardlink(b, "h", "root/inside");
        });
        let (_tmp, dest) = scratch();
        unpack(&tar[..], &dest).unwrap();
        assert_eq!(
            fs::metadata(dest.join("h")).unwrap().ino(),
            fs::metadata(dest.join("inside")).unwrap().ino()
        );

        let tar = build(|b| {
            dir(b, "d/", 0o755);
            hardlink(b, "h", "d");
        });
        let (_tmp, dest) = scratch();
        let err = unpack(&tar[..], &dest).unwrap_err();
        assert_eq!(err.to_string(), "unpack h: hard link to a directory");
    }

    #[test]
    fn unpack_later_entries_replace_earlier_ones() {
        let tar = build(|b| {
            file(b, "a", b"one", 0o644);
            file(b, "a", b"two", 0o600);
            file(b, "b", b"file", 0o644);
            symlink(b, "b", "a");
            // A symlink replaced by a file: the file is written, not the link's target.
            symlink(b, "c", "a");
            file(b, "c", b"own", 0o644);
            dir(b, "e/", 0o755);
            file(b, "e", b"was an empty dir", 0o644);
            file(b, "g", b"", 0o644);
            dir(b, "g/", 0o755);
            dir(b, "g/", 0o700);
        });
        let (_tmp, dest) = scratch();
        unpack(&tar[..], &dest).unwrap();
        assert_eq!(fs::read(dest.join("a")).unwrap(), b"two");
        assert_eq!(fs::metadata(dest.join("a")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_link(dest.join("b")).unwrap(), Path::new("a"));
        assert_eq!(fs::read(dest.join("c")).unwrap(), b"own");
        assert!(!fs::symlink_metadata(dest.join("c"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(dest.join("e")).unwrap(), b"was an empty dir");
        assert_eq!(fs::metadata(dest.join("g")).unwrap().mode() & 0o7777, 0o700);

        let tar = build(|b| {
            file(b, "d/x", b"", 0o644);
            file(b, "d", b"", 0o644);
        });
        let (_tmp, dest) = scratch();
        let err = unpack(&tar[..], &dest).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unpack d: replace existing entry: "),
            "{err}"
        );
    }

    #[test]
    fn unpack_fills_read_only_directories() {
        let tar = build(|b| {
            dir(b, "ro/", 0o555);
            file(b, "ro/f", b"f", 0o444);
            dir(b, "ro/sub/", 0o555);
            file(b, "ro/sub/g", b"g", 0o444);
        });
        let (_tmp, dest) = scratch();
        unpack(&tar[..], &dest).unwrap();
        assert_eq!(fs::read(dest.join("ro/sub/g")).unwrap(), b"g");
        assert_eq!(
            fs::metadata(dest.join("ro")).unwrap().mode() & 0o7777,
            0o555
        );
        assert_eq!(
            fs::metadata(dest.join("ro/sub")).unwrap().mode() & 0o7777,
            0o555
        );
        // Let the temp dir clean up.
        fs::set_permissions(dest.join("ro/sub"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dest.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn unpack_applies_the_root_entry_to_dest() {
        let tar = build(|b| {
            let mut h = header(tar::EntryType::Directory, b"./", 0o750, 0);
            h.set_mtime(1_234_567_890);
            add(b, h, &[]);
            file(b, "./f", b"", 0o644);
        });
        let (_tmp, dest) = scratch();
        unpack(&tar[..], &dest).unwrap();
        let m = fs::metadata(&dest).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o750, 1_234_567_890));
    }

    #[test]
    fn unpack_rejects_what_is_not_a_tar_archive() {
        let garbage = b"this is not a tar archive, just some text. ".repeat(40);
        for data in [
            garbage.clone(),
            gzip(&garbage),
            zstd(&garbage),
            b"short".to_vec(),
            Vec::new(),
        ] {
            let (_tmp, dest) = scratch();
            let err = unpack(&data[..], &dest).unwrap_err();
            assert_eq!(
                err.to_string(),
                "not a tar archive (gzip, xz, zstd or plain)"
            );
        }
    }

    #[test]
    fn unpack_reports_a_truncated_archive() {
        let tar = sample();
        let cut = &tar[..tar.len() / 2];
        for data in [cut.to_vec(), gzip(cut)] {
            let (_tmp, dest) = scratch();
            let err = unpack(&data[..], &dest).unwrap_err();
            assert!(
                err.to_string().contains("usr/bin/tool: read archive"),
                "{err}"
            );
        }
    }

    #[test]
    fn sanitize_strips_root_and_dots() {
        assert_eq!(
            sanitize(Path::new("/usr/./bin/")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(sanitize(Path::new("./")).unwrap(), Path::new(""));
        assert!(sanitize(Path::new("a/../b")).is_none());
    }

    #[test]
    fn is_tar_block_checks_the_checksum() {
        let h = header(tar::EntryType::Regular, b"f", 0o644, 0);
        assert!(is_tar_block(h.as_bytes()));
        let mut bad = *h.as_bytes();
        bad[0] ^= 1;
        assert!(!is_tar_block(&bad));
        assert!(is_tar_block(&[0; BLOCK]));
    }

    #[test]
    fn parse_pax_time_reads_fractions() {
        let t = parse_pax_time("1500000000.123").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_500_000_000, 123_000_000));
        assert_eq!(parse_pax_time("12").unwrap().tv_nsec, 0);
        assert!(parse_pax_time("-1").is_none());
    }
}
