//! dpkg's database for packages locker unpacked itself, as `dpkg --unpack` leaves it,
//! so that `dpkg --configure` can take over without unpacking every package a second
//! time (mmdebstrap and debootstrap extract the essential set, then let dpkg extract
//! it again).
//!
//! For each package (var/lib/dpkg/ of the tree): `info/NAME.list` (the data member's
//! paths, in archive order), every control file but `control` as `info/NAME.FILE`,
//! a status stanza of the control fields with `Status: install ok unpacked` and each
//! conffile hashed `newconffile`, its conffiles moved aside to `.dpkg-new` (dpkg's
//! configure installs them and records their md5), and its trigger interests in
//! `triggers/File` and `triggers/NAME`. NAME is `pkg:arch` for `Multi-Arch: same`.
//!
//! Invariants: a package's identity (name, version, architecture) in its control
//! file matches the signed index it was chosen from; every path written is resolved
//! beneath the tree (openat2 RESOLVE_IN_ROOT for conffiles, plain names for info
//! files); names that reach the container's shell script are checked first.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::build::deb::{ControlFile, Deb};
use crate::build::deb822::{self, Syntax};
use crate::build::resolve::{MultiArch, Package};
use crate::build::BuildError;
use crate::fs::path_error::io_err;
use crate::fs::tree::Tree;
use crate::image::unpack::Listed;

/// dpkg's administrative directory, inside the tree.
pub(crate) const ADMIN_DIR: &str = "var/lib/dpkg";

/// Where the whole control member of each package with a preinst waits, one
/// directory per package, for the build script to move it to `ADMIN_DIR/tmp.ci`:
/// dpkg runs a preinst from there, and debconf takes the package name and templates
/// from that directory.
pub(crate) const STAGED_CONTROL: &str = "var/lib/locker-ci";

/// A package whose data member is in the tree, with what dpkg needs to know of it.
#[derive(Debug)]
pub(crate) struct Unpacked {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) arch: String,
    multi_arch_same: bool,
    /// The `control` file's text.
    control: String,
    /// The other control files: maintainer scripts, conffiles, md5sums, triggers...
    files: Vec<ControlFile>,
    /// The data member's paths, in archive order, less those a later package
    /// overwrote (`disown_overwritten`).
    listing: Vec<Listed>,
}

impl Unpacked {
    /// Unpacks `deb` into `tree` and reads its control member; `expect` is the index
    /// entry it was verified against.
    pub(crate) fn unpack(
        deb: &Path,
        tree: &Path,
        expect: &Package<'_>,
    ) -> Result<Self, BuildError> {
        let malformed = |reason: String| BuildError::Malformed {
            what: format!("package {} ({})", expect.name, deb.display()),
            reason,
        };
        let deb = Deb::open(deb)?;
        let mut files = deb.control_files()?;
        let control = match files.iter().position(|f| f.name == "control") {
            Some(i) => files.remove(i),
            None => return Err(malformed("no control file".into())),
        };
        let control = String::from_utf8(control.data)
            .map_err(|_| malformed("control file is not UTF-8".into()))?;
        let paragraphs = deb822::parse(&control, Syntax::Control)
            .map_err(|e| malformed(format!("control file: {e}")))?;
        let [fields] = paragraphs.as_slice() else {
            return Err(malformed("control file is not one paragraph".into()));
        };
        let field = |name: &str| fields.get(name).unwrap_or_default().to_string();
        let (name, version, arch) = (field("Package"), field("Version"), field("Architecture"));
        if name != expect.name || version != expect.version.to_string() || arch != expect.arch {
            return Err(malformed(format!(
                "its control file says {name} {version} {arch}, the signed index {} {} {}",
                expect.name, expect.version, expect.arch
            )));
        }
        for f in &files {
            // These name files in the container's shell script and info directory,
            // where `list` is dpkg's own.
            if !is_plain_name(&f.name) || f.name == "list" {
                return Err(malformed(format!("control file name {:?}", f.name)));
            }
        }
        // deb-version(7)'s characters; the version reaches the script as dpkg's own.
        let plain_version = !version.is_empty()
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.~:".contains(&b));
        if !is_plain_name(&name) || !is_plain_name(&arch) || !plain_version {
            return Err(malformed(format!(
                "package name {name:?}, architecture {arch:?} or version {version:?}"
            )));
        }
        let listing = deb.unpack_data(tree)?;
        Ok(Unpacked {
            multi_arch_same: expect.multi_arch == MultiArch::Same,
            name,
            version,
            arch,
            control,
            files,
            listing,
        })
    }

    /// The name dpkg files this package under: `pkg:arch` for `Multi-Arch: same`.
    pub(crate) fn db_name(&self) -> String {
        if self.multi_arch_same {
            format!("{}:{}", self.name, self.arch)
        } else {
            self.name.clone()
        }
    }

    pub(crate) fn has(&self, control_file: &str) -> bool {
        self.files.iter().any(|f| f.name == control_file)
    }

    fn file(&self, name: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| std::str::from_utf8(&f.data).ok())
    }

    /// Absolute conffile paths (deb-conffiles(5)); `remove-on-upgrade` entries name
    /// files the package no longer ships and are left out.
    fn conffiles(&self) -> Vec<&str> {
        let Some(text) = self.file("conffiles") else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let (path, flags) = words.split_last()?;
                (path.starts_with('/') && !flags.contains(&"remove-on-upgrade")).then_some(*path)
            })
            .collect()
    }

    /// The status stanza `dpkg --unpack` writes: the control fields, `Status` after
    /// `Package`, and the conffiles awaiting configuration.
    fn stanza(&self) -> String {
        let mut out = String::with_capacity(self.control.len() + 64);
        for line in self.control.trim_end().lines() {
            out.push_str(line);
            out.push('\n');
            if line.starts_with("Package:") {
                out.push_str("Status: install ok unpacked\n");
            }
        }
        let conffiles = self.conffiles();
        if !conffiles.is_empty() {
            out.push_str("Conffiles:\n");
            for c in conffiles {
                out.push_str(&format!(" {c} newconffile\n"));
            }
        }
        out.push('\n');
        out
    }

    /// `.list` text: `/.` for the root, then each path with a leading `/` (as bytes:
    /// a file name need not be UTF-8).
    fn list_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.listing {
            if l.path.as_os_str().is_empty() {
                out.extend_from_slice(b"/.\n");
            } else {
                out.push(b'/');
                out.extend_from_slice(l.path.as_os_str().as_bytes());
                out.push(b'\n');
            }
        }
        out
    }

    /// Trigger interests from the `triggers` control file (deb-triggers(5)):
    /// (trigger, await). File triggers start with `/`.
    fn interests(&self) -> Result<Vec<(&str, bool)>, BuildError> {
        let Some(text) = self.file("triggers") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let mut words = line.split_whitespace();
            let (Some(directive), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            let wait = match directive {
                "interest" | "interest-await" => true,
                "interest-noawait" => false,
                "activate" | "activate-await" | "activate-noawait" => continue,
                _ => {
                    return Err(BuildError::Malformed {
                        what: format!("triggers of {}", self.name),
                        reason: format!("unknown directive {directive:?}"),
                    })
                }
            };
            // dpkg's rule: printable ASCII; explicit names also without `/` (each is
            // a file in triggers/); file triggers are absolute paths.
            let legal = name.bytes().all(|b| b.is_ascii_graphic())
                && (name.starts_with('/') || !name.contains('/'))
                && name != "."
                && name != ".."
                && !name.starts_with("/..")
                && !name.contains("/../");
            if !legal {
                return Err(BuildError::Malformed {
                    what: format!("triggers of {}", self.name),
                    reason: format!("illegal trigger name {name:?}"),
                });
            }
            out.push((name, wait));
        }
        Ok(out)
    }
}

/// Package and file names that are safe as one shell word and one file name.
fn is_plain_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._~".contains(&b))
}

/// Where two packages ship the same non-directory path, the later one's copy is on
/// disk (as with dpkg and `Replaces`), so only its `.list` keeps the path. Returns
/// (path, earlier package, later package) for each such path.
pub(crate) fn disown_overwritten(pkgs: &mut [Unpacked]) -> Vec<(PathBuf, String, String)> {
    let mut owner: HashMap<PathBuf, usize> = HashMap::new();
    let mut moved = Vec::new();
    for (i, p) in pkgs.iter().enumerate() {
        for l in p.listing.iter().filter(|l| !l.dir) {
            if let Some(prev) = owner.insert(l.path.clone(), i) {
                moved.push((l.path.clone(), prev, i));
            }
        }
    }
    let mut report = Vec::new();
    for (path, prev, later) in moved {
        pkgs[prev].listing.retain(|l| l.dir || l.path != path);
        report.push((path, pkgs[prev].name.clone(), pkgs[later].name.clone()));
    }
    report
}

/// dpkg's database before any package: an empty status, the native architecture,
/// the info format dpkg would write (1: multiarch names).
pub(crate) fn create(tree: &Path, arch: &str) -> Result<(), BuildError> {
    let admin = tree.join(ADMIN_DIR);
    for d in ["info", "updates", "triggers"] {
        let dir = admin.join(d);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    }
    for (name, content) in [
        ("status", String::new()),
        ("arch", format!("{arch}\n")),
        ("info/format", "1\n".to_string()),
    ] {
        let p = admin.join(name);
        fs::write(&p, content).map_err(io_err("write", &p))?;
    }
    Ok(())
}

/// Records `pkgs` in the tree's dpkg database as unpacked, in order. The packages
/// were unpacked into this tree, so every path goes through `Tree`: a package that
/// shipped `var/lib/dpkg/info -> /etc` writes nothing outside the tree.
pub(crate) fn register(t: &Tree, pkgs: &[Unpacked]) -> Result<(), BuildError> {
    let mut status = String::new();
    let mut file_interests = String::new();
    let mut explicit: Vec<(String, String)> = Vec::new();
    for p in pkgs {
        let db_name = p.db_name();
        let info = |file: &str| format!("{ADMIN_DIR}/info/{db_name}.{file}");
        write(t, &info("list"), &p.list_text(), false)?;
        for f in &p.files {
            write(t, &info(&f.name), &f.data, f.executable)?;
        }
        if p.has("preinst") {
            let dir = format!("{STAGED_CONTROL}/{db_name}");
            t.create_dir_all(&dir)
                .map_err(io_err("create", &t.shown(&dir)))?;
            write(t, &format!("{dir}/control"), p.control.as_bytes(), false)?;
            for f in &p.files {
                write(t, &format!("{dir}/{}", f.name), &f.data, f.executable)?;
            }
        }
        for c in p.conffiles() {
            let rel = c.trim_start_matches('/');
            t.add_suffix(rel, ".dpkg-new")
                .map_err(io_err("move aside conffile", &t.shown(rel)))?;
        }
        for (trigger, wait) in p.interests()? {
            let who = if wait {
                db_name.clone()
            } else {
                format!("{db_name}/noawait")
            };
            if trigger.starts_with('/') {
                file_interests.push_str(&format!("{trigger} {who}\n"));
            } else {
                explicit.push((trigger.to_string(), who));
            }
        }
        status.push_str(&p.stanza());
    }
    append(t, &format!("{ADMIN_DIR}/status"), &status)?;
    if !file_interests.is_empty() {
        append(t, &format!("{ADMIN_DIR}/triggers/File"), &file_interests)?;
    }
    for (trigger, who) in explicit {
        append(
            t,
            &format!("{ADMIN_DIR}/triggers/{trigger}"),
            &format!("{who}\n"),
        )?;
    }
    Ok(())
}

/// Writes a control file: maintainer scripts 0755, the rest 0644.
fn write(t: &Tree, rel: &str, data: &[u8], executable: bool) -> Result<(), BuildError> {
    let mode = if executable { 0o755 } else { 0o644 };
    t.write(rel, data, mode)
        .map_err(io_err("write", &t.shown(rel)))?;
    Ok(())
}

fn append(t: &Tree, rel: &str, text: &str) -> Result<(), BuildError> {
    t.append(rel, text.as_bytes(), 0o644)
        .map_err(io_err("write", &t.shown(rel)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn listed(paths: &[&str]) -> Vec<Listed> {
        paths
            .iter()
            .map(|p| Listed {
                path: PathBuf::from(p.trim_end_matches('/')),
                dir: p.ends_with('/') || p.is_empty(),
            })
            .collect()
    }

    fn file(name: &str, data: &str, executable: bool) -> ControlFile {
        ControlFile {
            name: name.into(),
            executable,
            data: data.as_bytes().to_vec(),
        }
    }

    fn pkg(name: &str, same: bool, files: Vec<ControlFile>, paths: &[&str]) -> Unpacked {
        Unpacked {
            name: name.into(),
            version: "1.0-1".into(),
            arch: "amd64".into(),
            multi_arch_same: same,
            control: format!(
                "Package: {name}\nVersion: 1.0-1\nArchitecture: amd64\nDescription: x\n long\n\n"
            ),
            files,
            listing: listed(paths),
        }
    }

    #[test]
    fn stanza_is_control_with_status_and_new_conffiles() {
        let p = pkg(
            "foo",
            false,
            vec![file(
                "conffiles",
                "/etc/foo.conf\nremove-on-upgrade /etc/old.conf\n\n/etc/foo.d/a\n",
                false,
            )],
            &[],
        );
        assert_eq!(
            p.stanza(),
            "Package: foo\nStatus: install ok unpacked\nVersion: 1.0-1\nArchitecture: amd64\n\
             Description: x\n long\nConffiles:\n /etc/foo.conf newconffile\n \
             /etc/foo.d/a newconffile\n\n"
        );
        let plain = pkg("bar", false, vec![], &[]);
        assert!(!plain.stanza().contains("Conffiles"));
    }

    #[test]
    fn control_identity_must_match_the_signed_index() {
        use crate::build::resolve::Universe;
        let index = format!(
            "Package: foo\nVersion: 1:2.0-1\nArchitecture: amd64\nFilename: foo.deb\n\
             Size: 1\nSHA256: {}\n\n",
            "0".repeat(64)
        );
        let universe = Universe::from_indices(&[&index], "amd64").unwrap();
        let expect = universe.get("foo").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("foo.deb");
        let unpack_with_control = |control: &str| {
            let files = [("control".to_string(), control.to_string())];
            fs::write(&deb, crate::build::deb::tests::deb_of(&files, &[])).unwrap();
            Unpacked::unpack(&deb, &dir.path().join("tree"), expect)
        };
        let ok = unpack_with_control("Package: foo\nVersion: 1:2.0-1\nArchitecture: amd64\n");
        assert_eq!(ok.unwrap().db_name(), "foo");
        for bad in [
            "Package: foo\nVersion: 1:2.0-2\nArchitecture: amd64\n",
            "Package: bar\nVersion: 1:2.0-1\nArchitecture: amd64\n",
            "Package: foo\nVersion: 1:2.0-1\nArchitecture: i386\n",
            "Package: foo\nVersion: 1:2.0-1\n",
            "Package: foo\nVersion: 1:2.0-1\nArchitecture: amd64\n\nPackage: x\n",
        ] {
            let e = unpack_with_control(bad).unwrap_err();
            assert!(matches!(e, BuildError::Malformed { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn db_names_qualify_multi_arch_same() {
        assert_eq!(pkg("libc6", true, vec![], &[]).db_name(), "libc6:amd64");
        assert_eq!(pkg("dpkg", false, vec![], &[]).db_name(), "dpkg");
    }

    #[test]
    fn list_starts_with_root_and_drops_slashes() {
        let p = pkg(
            "foo",
            false,
            vec![],
            &["", "usr/", "usr/bin/", "usr/bin/foo"],
        );
        assert_eq!(p.list_text(), b"/.\n/usr\n/usr/bin\n/usr/bin/foo\n");
    }

    #[test]
    fn trigger_interests_and_illegal_names() {
        let p = pkg(
            "libc-bin",
            false,
            vec![file(
                "triggers",
                "# comment\ninterest-await ldconfig\ninterest-noawait /usr/share/x # why\n\
                 activate-noawait ldconfig\ninterest man-db\n",
                false,
            )],
            &[],
        );
        assert_eq!(
            p.interests().unwrap(),
            [
                ("ldconfig", true),
                ("/usr/share/x", false),
                ("man-db", true)
            ]
        );
        for bad in [
            "interest ../../etc/passwd",
            "interest a/b",
            "interest /usr/../etc",
            "frobnicate x",
        ] {
            let p = pkg("p", false, vec![file("triggers", bad, false)], &[]);
            assert!(p.interests().is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_names_only() {
        for ok in [
            "libc6",
            "libstdc++6",
            "perl-modules-5.36",
            "amd64",
            "preinst",
        ] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "-rf", "~x", "+x", "a b", "a;b", "a/b", "$(x)", "ä",
        ] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn later_package_owns_a_shared_file() {
        let mut pkgs = vec![
            pkg("a", false, vec![], &["", "etc/", "etc/shared", "etc/a"]),
            pkg("b", false, vec![], &["", "etc/", "etc/shared"]),
        ];
        let moved = disown_overwritten(&mut pkgs);
        assert_eq!(
            moved,
            [(
                PathBuf::from("etc/shared"),
                "a".to_string(),
                "b".to_string()
            )]
        );
        assert_eq!(
            pkgs[0].list_text(),
            b"/.\n/etc\n/etc/a\n",
            "directories stay shared"
        );
        assert_eq!(pkgs[1].list_text(), b"/.\n/etc\n/etc/shared\n");
    }

    /// A package that shipped `var/lib/dpkg/info` and `triggers` as links to a host
    /// directory: registering writes nothing there.
    #[test]
    fn register_never_writes_through_a_planted_link() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        create(tree, "amd64").unwrap();
        for d in ["info", "triggers"] {
            let at = tree.join(ADMIN_DIR).join(d);
            fs::remove_dir_all(&at).unwrap();
            std::os::unix::fs::symlink(outside.path(), &at).unwrap();
        }
        let p = pkg(
            "foo",
            false,
            vec![file("triggers", "interest-await x\n", false)],
            &[""],
        );
        assert!(register(&Tree::open(tree).unwrap(), &[p]).is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn register_writes_what_dpkg_unpack_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        create(tree, "amd64").unwrap();
        // /etc is a symlink inside the tree: the conffile is found through it, inside.
        fs::create_dir_all(tree.join("real-etc")).unwrap();
        std::os::unix::fs::symlink("/real-etc", tree.join("etc")).unwrap();
        fs::write(tree.join("real-etc/foo.conf"), "x=1\n").unwrap();
        let pkgs = [
            pkg(
                "foo",
                true,
                vec![
                    file("conffiles", "/etc/foo.conf\n/etc/missing.conf\n", false),
                    file("preinst", "#!/bin/sh\nexit 0\n", true),
                    file("md5sums", "abc  etc/foo.conf\n", false),
                    file("triggers", "interest-noawait /usr/share/foo\n", false),
                ],
                &["", "etc/", "etc/foo.conf"],
            ),
            pkg(
                "bar",
                false,
                vec![file("triggers", "interest-await ldconfig\n", false)],
                &[""],
            ),
        ];
        register(&Tree::open(tree).unwrap(), &pkgs).unwrap();
        let admin = tree.join(ADMIN_DIR);
        let read = |p: &str| fs::read_to_string(admin.join(p)).unwrap();
        assert_eq!(read("info/format"), "1\n");
        assert_eq!(read("arch"), "amd64\n");
        assert_eq!(read("info/foo:amd64.list"), "/.\n/etc\n/etc/foo.conf\n");
        assert_eq!(read("info/foo:amd64.md5sums"), "abc  etc/foo.conf\n");
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&admin.join("info/foo:amd64.preinst")), 0o755);
        assert_eq!(mode(&admin.join("info/foo:amd64.md5sums")), 0o644);
        assert!(read("status").starts_with("Package: foo\nStatus: install ok unpacked\n"));
        assert!(read("status").contains("\n\nPackage: bar\nStatus: install ok unpacked\n"));
        assert_eq!(read("triggers/File"), "/usr/share/foo foo:amd64/noawait\n");
        assert_eq!(read("triggers/ldconfig"), "bar\n");
        // The conffile waits as .dpkg-new for dpkg --configure; the missing one is
        // left for dpkg to notice.
        assert!(!tree.join("real-etc/foo.conf").exists());
        assert_eq!(
            fs::read_to_string(tree.join("real-etc/foo.conf.dpkg-new")).unwrap(),
            "x=1\n"
        );
        // The preinst's package has its whole control member staged for tmp.ci.
        let staged = tree.join(STAGED_CONTROL).join("foo:amd64");
        assert!(fs::read_to_string(staged.join("control"))
            .unwrap()
            .starts_with("Package: foo\n"));
        assert_eq!(mode(&staged.join("preinst")), 0o755);
        assert!(!tree.join(STAGED_CONTROL).join("bar").exists());
    }
}
