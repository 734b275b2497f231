//! A `.deb` file: an ar(5) archive holding `debian-binary`, `control.tar[.gz|.xz|.zst]`
//! and `data.tar[.gz|.xz|.zst]` (deb(5)).
//!
//! Owns finding those members (pure, over a byte slice or a file) and unpacking the
//! data member beneath a tree with `crate::image::unpack` (compression detected by magic,
//! paths kept inside the tree). Invariants: member offsets and sizes are checked
//! against the file's length before use; only format version 2.x is accepted.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::image::unpack::{self, UnpackError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum DebError {
    #[error("{path}: not a .deb (no ar magic)")]
    NotAr { path: PathBuf },
    #[error("{path}: bad ar member header at byte {offset}")]
    BadHeader { path: PathBuf, offset: u64 },
    #[error("{path}: ar member {name} runs past the end of the file")]
    Truncated { path: PathBuf, name: String },
    #[error("{path}: unsupported .deb format {version:?} (want 2.x)")]
    Version { path: PathBuf, version: String },
    #[error("{path}: no {member} member")]
    Missing { path: PathBuf, member: &'static str },
    #[error("read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: control member: {what}")]
    Control { path: PathBuf, what: String },
    #[error("unpack {path}")]
    Unpack {
        path: PathBuf,
        #[source]
        source: UnpackError,
    },
}

const MAGIC: &[u8; 8] = b"!<arch>\n";
const HEADER: usize = 60;

/// One ar member: name and where its data lies in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// The members of an ar archive, from its bytes (or a prefix long enough to hold
/// every header: `read_at` gives the bytes at an offset). `len` is the file's length.
fn members_with(
    path: &Path,
    len: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> Result<Vec<Member>, DebError> {
    let mut magic = [0u8; 8];
    read_at(0, &mut magic).map_err(|_| DebError::NotAr { path: path.into() })?;
    if &magic != MAGIC {
        return Err(DebError::NotAr { path: path.into() });
    }
    let mut out = Vec::new();
    let mut offset = 8u64;
    while offset < len {
        let bad = || DebError::BadHeader {
            path: path.into(),
            offset,
        };
        let mut h = [0u8; HEADER];
        if offset + HEADER as u64 > len {
            return Err(bad());
        }
        read_at(offset, &mut h).map_err(|_| bad())?;
        if &h[58..60] != b"`\n" {
            return Err(bad());
        }
        let name = std::str::from_utf8(&h[0..16])
            .map_err(|_| bad())?
            .trim_end();
        // GNU ar ends names with '/'; dpkg-deb writes them without.
        let name = name.strip_suffix('/').unwrap_or(name).to_string();
        let size: u64 = std::str::from_utf8(&h[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(bad)?;
        let data = offset + HEADER as u64;
        if data.checked_add(size).is_none_or(|end| end > len) {
            return Err(DebError::Truncated {
                path: path.into(),
                name,
            });
        }
        out.push(Member {
            name,
            offset: data,
            size,
        });
        // Members are aligned to an even offset.
        offset = data + size + (size & 1);
    }
    Ok(out)
}

/// The members of an ar archive held in `bytes`.
#[cfg(test)]
pub(crate) fn members(path: &Path, bytes: &[u8]) -> Result<Vec<Member>, DebError> {
    members_with(path, bytes.len() as u64, &mut |off, buf| {
        let off = off as usize;
        let src = bytes
            .get(off..off + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    })
}

/// A .deb opened for reading its members.
pub(crate) struct Deb {
    path: PathBuf,
    file: File,
    members: Vec<Member>,
}

impl Deb {
    pub(crate) fn open(path: &Path) -> Result<Deb, DebError> {
        let io_err = |source| DebError::Io {
            path: path.into(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let mut f = &file;
        let members = members_with(path, len, &mut |off, buf| {
            f.seek(SeekFrom::Start(off))?;
            f.read_exact(buf)
        })?;
        let deb = Deb {
            path: path.into(),
            file,
            members,
        };
        let version = deb.read_member("debian-binary")?;
        let version = String::from_utf8_lossy(&version).trim().to_string();
        if !version.starts_with("2.") {
            return Err(DebError::Version {
                path: path.into(),
                version,
            });
        }
        Ok(deb)
    }

    fn find(&self, prefix: &'static str) -> Result<&Member, DebError> {
        self.members
            .iter()
            .find(|m| m.name == prefix || m.name.starts_with(&format!("{prefix}.")))
            .ok_or(DebError::Missing {
                path: self.path.clone(),
                member: prefix,
            })
    }

    fn reader(&self, m: &Member) -> Result<impl Read + Send + '_, DebError> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(m.offset))
            .map_err(|source| DebError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(io::BufReader::with_capacity(256 << 10, f.take(m.size)))
    }

    fn read_member(&self, name: &'static str) -> Result<Vec<u8>, DebError> {
        let m = self.find(name)?;
        let mut out = Vec::with_capacity(m.size as usize);
        self.reader(m)?
            .read_to_end(&mut out)
            .map_err(|source| DebError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(out)
    }

    /// Unpacks the data member beneath `tree` as dpkg does (existing directories and
    /// symlinks to directories are kept); returns its entries in archive order.
    pub(crate) fn unpack_data(&self, tree: &Path) -> Result<Vec<unpack::Listed>, DebError> {
        let m = self.find("data.tar")?;
        let options = unpack::Options {
            keep_directory_symlinks: true,
            list: true,
            ..unpack::Options::default()
        };
        unpack::unpack_with(self.reader(m)?, tree, options)
            .map(|(_, listing)| listing)
            .map_err(|source| DebError::Unpack {
                path: self.path.clone(),
                source,
            })
    }

    /// The regular files of the control member (`control`, maintainer scripts,
    /// `conffiles`, `md5sums`, `triggers`...), by name, in archive order.
    pub(crate) fn control_files(&self) -> Result<Vec<ControlFile>, DebError> {
        let m = self.find("control.tar")?;
        let bad = |what: String| DebError::Control {
            path: self.path.clone(),
            what,
        };
        let mut raw = self.reader(m)?;
        let tar = unpack::open_tar(&mut raw).map_err(|e| bad(e.to_string()))?;
        // A control member is a few KiB; a bomb stops here, not in memory.
        let mut tar = tar::Archive::new(tar.take(CONTROL_LIMIT));
        let mut out = Vec::new();
        for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let path = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&path);
            let name = name.trim_start_matches("./");
            match entry.header().entry_type() {
                tar::EntryType::Directory if name.is_empty() || name == "." => continue,
                tar::EntryType::Regular => {}
                _ => return Err(bad(format!("{name}: not a regular file"))),
            }
            // dpkg keeps control files flat in its info directory.
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(bad(format!("{name:?}: not a control file name")));
            }
            let mode = entry.header().mode().map_err(|e| bad(e.to_string()))?;
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| bad(e.to_string()))?;
            out.push(ControlFile {
                name: name.to_string(),
                executable: mode & 0o111 != 0,
                data,
            });
        }
        Ok(out)
    }
}

/// Ceiling on a control member's unpacked size.
const CONTROL_LIMIT: u64 = 64 << 20;

/// One file of a package's control member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlFile {
    pub(crate) name: String,
    /// Maintainer scripts are; dpkg installs them 0755, the rest 0644.
    pub(crate) executable: bool,
    pub(crate) data: Vec<u8>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ar archive of `members` as dpkg-deb writes it.
    pub(crate) fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (name, data) in members {
            let header = format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                "100644",
                data.len()
            );
            assert_eq!(header.len(), HEADER);
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    /// A .deb with `control` files in a gzip control.tar.gz (scripts 0755) and `data`
    /// files in an uncompressed data.tar.
    pub(crate) fn deb_of(control: &[(String, String)], data: &[(&str, &[u8])]) -> Vec<u8> {
        let tar_of = |files: Vec<(&str, &[u8], u32)>| {
            let mut tar = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_cksum();
            tar.append_data(&mut h, "./", &[][..]).unwrap();
            for (name, bytes, mode) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(bytes.len() as u64);
                h.set_mode(mode);
                h.set_cksum();
                tar.append_data(&mut h, format!("./{name}"), bytes).unwrap();
            }
            tar.into_inner().unwrap()
        };
        let control = tar_of(
            control
                .iter()
                .map(|(n, t)| {
                    let mode = if n.ends_with("inst") || n.ends_with("rm") {
                        0o755
                    } else {
                        0o644
                    };
                    (n.as_str(), t.as_bytes(), mode)
                })
                .collect(),
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &control).unwrap();
        let control = gz.finish().unwrap();
        let data = tar_of(data.iter().map(|(n, b)| (*n, *b, 0o644)).collect());
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control),
            ("data.tar", &data),
        ])
    }

    /// Ubuntu (since 21.10) compresses both members with zstd.
    #[test]
    fn zstd_members_as_ubuntu_ships_them() {
        let dir = tempfile::tempdir().unwrap();
        let plain = deb_of(
            &[("control".to_string(), "Package: u\n".to_string())],
            &[("usr/share/u", b"zstd")],
        );
        // Re-pack the members of a gzip/plain .deb as .zst.
        let ms = members(Path::new("x.deb"), &plain).unwrap();
        let body = |m: &Member| &plain[m.offset as usize..(m.offset + m.size) as usize];
        let mut control = Vec::new();
        io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(body(&ms[1])),
            &mut control,
        )
        .unwrap();
        let zst = |data: &[u8]| zstd::stream::encode_all(data, 3).unwrap();
        let deb = dir.path().join("u.deb");
        std::fs::write(
            &deb,
            ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.zst", &zst(&control)),
                ("data.tar.zst", &zst(body(&ms[2]))),
            ]),
        )
        .unwrap();
        let d = Deb::open(&deb).unwrap();
        assert_eq!(d.control_files().unwrap()[0].data, b"Package: u\n");
        let tree = dir.path().join("tree");
        d.unpack_data(&tree).unwrap();
        assert_eq!(std::fs::read(tree.join("usr/share/u")).unwrap(), b"zstd");
    }

    #[test]
    fn reads_control_files_flat_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("p.deb");
        let control = [
            ("control".to_string(), "Package: p\n".to_string()),
            ("postinst".to_string(), "#!/bin/sh\n".to_string()),
            ("md5sums".to_string(), "x  usr/x\n".to_string()),
        ];
        std::fs::write(&deb, deb_of(&control, &[("usr/x", b"x")])).unwrap();
        let files = Deb::open(&deb).unwrap().control_files().unwrap();
        let got: Vec<(&str, bool, &[u8])> = files
            .iter()
            .map(|f| (f.name.as_str(), f.executable, f.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("control", false, &b"Package: p\n"[..]),
                ("postinst", true, &b"#!/bin/sh\n"[..]),
                ("md5sums", false, &b"x  usr/x\n"[..]),
            ]
        );
        // A control file in a subdirectory would land outside dpkg's info directory.
        let nested = [("sub/evil".to_string(), "x".to_string())];
        std::fs::write(&deb, deb_of(&nested, &[])).unwrap();
        let e = Deb::open(&deb).unwrap().control_files().unwrap_err();
        assert!(matches!(e, DebError::Control { .. }), "{e}");
    }

    #[test]
    fn parses_members_with_padding() {
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", b"abc"),
            ("data.tar.zst/", b"defg"),
        ]);
        let ms = members(Path::new("x.deb"), &bytes).unwrap();
        let names: Vec<_> = ms.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["debian-binary", "control.tar.xz", "data.tar.zst"]);
        let d = &ms[2];
        assert_eq!(
            &bytes[d.offset as usize..(d.offset + d.size) as usize],
            b"defg"
        );
    }

    #[test]
    fn rejects_bad_archives() {
        let p = Path::new("x.deb");
        assert!(matches!(members(p, b"!<arch"), Err(DebError::NotAr { .. })));
        assert!(matches!(
            members(p, b"not an ar archive"),
            Err(DebError::NotAr { .. })
        ));
        let mut bytes = ar(&[("debian-binary", b"2.0\n")]);
        bytes.truncate(bytes.len() - 2);
        assert!(matches!(
            members(p, &bytes),
            Err(DebError::Truncated { .. })
        ));
        let mut bytes = ar(&[("debian-binary", b"2.0\n")]);
        bytes[8 + 58] = b'X';
        assert!(matches!(
            members(p, &bytes),
            Err(DebError::BadHeader { .. })
        ));
        let mut bytes = ar(&[("debian-binary", b"2.0\n")]);
        bytes[8 + 48..8 + 58].copy_from_slice(b"99999999999"[..10].as_ref());
        assert!(matches!(
            members(p, &bytes),
            Err(DebError::Truncated { .. })
        ));
    }

    #[test]
    fn unpacks_data_member() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "./usr/share/x", &b"hello"[..])
            .unwrap();
        let data = tar.into_inner().unwrap();
        let deb = dir.path().join("p.deb");
        std::fs::write(
            &deb,
            ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar", b""),
                ("data.tar", &data),
            ]),
        )
        .unwrap();
        let tree = dir.path().join("tree");
        let listing = Deb::open(&deb).unwrap().unpack_data(&tree).unwrap();
        let paths: Vec<_> = listing.iter().map(|l| l.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["usr/share/x"]);
        assert_eq!(std::fs::read(tree.join("usr/share/x")).unwrap(), b"hello");

        std::fs::write(&deb, ar(&[("debian-binary", b"3.0\n")])).unwrap();
        assert!(matches!(Deb::open(&deb), Err(DebError::Version { .. })));
    }
}
