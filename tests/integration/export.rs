//! `locker export`: deterministic tarballs of images in the store, importable again.
//!
//! Images come in through `locker import` of the busybox fixture, as a user's would.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::harness::{fixture_tar, run_bounded, Locker, Run};

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes `tar` into the test dir and imports it as `name`.
fn import(l: &Locker, tar: &[u8], name: &str) {
    let file = l.path(&format!("{name}.input.tar"));
    fs::write(&file, tar).unwrap();
    l.ok(&["import", s(&file), "--name", name]);
}

/// `locker export NAME -o FILE` with SOURCE_DATE_EPOCH set to `epoch` (or removed).
fn export(l: &Locker, name: &str, out: &Path, epoch: Option<&str>) -> Run {
    let mut cmd = l.command(&["export", name, "-o", s(out)]);
    match epoch {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    let r = run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(r.code, Some(0), "expected success\n{}", r.dump());
    r
}

/// (name, digest hex) of each image in `images --json`.
fn images(l: &Locker) -> Vec<(String, String)> {
    let out = l.ok(&["images", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("images --json is not a list: {out}"))
        .iter()
        .map(|i| {
            let digest = i["digest"].as_str().unwrap();
            (
                i["name"].as_str().unwrap().to_string(),
                digest.trim_start_matches("sha256:").to_string(),
            )
        })
        .collect()
}

/// Everything in the test dir whose name contains `part` (leftover partial outputs).
fn files_named(dir: &Path, part: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(part))
        .collect()
}

/// The fixture with a root entry `./` first, as distribution tarballs have: the
/// unpacked tree's root then has a recorded mtime instead of the unpack time.
fn fixture_with_root_entry() -> Vec<u8> {
    let fixture = fixture_tar();
    let end = fixture.len() - 1024;
    assert!(
        fixture[end..].iter().all(|&b| b == 0),
        "fixture ends in two zero blocks"
    );
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_path("./").unwrap();
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&fixture[..end]);
    tar.extend_from_slice(&[0; 1024]);
    tar
}

#[test]
fn export_then_import_gives_the_same_image() {
    let l = Locker::new();
    import(&l, fixture_tar(), "fix");
    let zst = l.path("X.tar.zst");
    let r = export(&l, "fix", &zst, None);
    assert!(
        r.stdout.is_empty(),
        "export prints nothing on success\n{}",
        r.dump()
    );
    l.ok(&["import", s(&zst), "--name", "fix2"]);
    let listed = images(&l);
    let digest_of = |name: &str| {
        listed
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("{name} not in images --json: {listed:?}"))
    };
    let (fix, fix2) = (digest_of("fix"), digest_of("fix2"));
    assert_ne!(
        fix, fix2,
        "fix2 came from the compressed export, another archive"
    );
    assert_eq!(fix2, sha256_hex(&fs::read(&zst).unwrap()));
    let tree = l.root().join("rootfs").join(&fix2);
    let os_release = fs::read_to_string(tree.join("etc/os-release")).unwrap();
    assert!(os_release.contains("locker fixture"), "{os_release}");
    let busybox = fs::read(tree.join("bin/busybox")).unwrap();
    assert!(busybox == fs::read(crate::harness::busybox_path()).unwrap());
    // The re-imported tree exports to the very same tar.
    let (a, b) = (l.path("a.tar"), l.path("b.tar"));
    export(&l, "fix", &a, None);
    export(&l, "fix2", &b, None);
    assert!(
        fs::read(&a).unwrap() == fs::read(&b).unwrap(),
        "fix and fix2 export differently"
    );
    // And the plain tar's sha256 is what importing it names the image.
    let imported = l.ok(&["import", s(&a), "--name", "fix3"]);
    let hex = sha256_hex(&fs::read(&a).unwrap());
    assert!(imported.contains(&hex), "{imported} lacks {hex}");
}

#[test]
fn exporting_twice_gives_identical_files() {
    let l = Locker::new();
    import(&l, fixture_tar(), "fix");
    let plain = l.path("plain.tar");
    export(&l, "fix", &plain, None);
    let plain = fs::read(&plain).unwrap();
    for (ext, tool) in [
        ("tar", None),
        ("tar.gz", Some("gzip")),
        ("tgz", Some("gzip")),
        ("tar.xz", Some("xz")),
        ("txz", Some("xz")),
        ("tar.zst", Some("zstd")),
        ("tzst", Some("zstd")),
    ] {
        let (one, two) = (l.path(&format!("one.{ext}")), l.path(&format!("two.{ext}")));
        export(&l, "fix", &one, None);
        export(&l, "fix", &two, None);
        let data = fs::read(&one).unwrap();
        assert!(
            data == fs::read(&two).unwrap(),
            ".{ext}: two exports differ"
        );
        if let Some(tool) = tool {
            assert!(data != plain, ".{ext} is not compressed");
            // The standard tool reads it back to the plain tar.
            let mut cmd = std::process::Command::new(tool);
            cmd.args(["-dc", s(&one)]).stderr(Stdio::inherit());
            let out = cmd.output().unwrap_or_else(|e| panic!("{tool}: {e}"));
            assert!(out.status.success(), "{tool} -dc {ext}");
            assert!(
                out.stdout == plain,
                ".{ext} does not decompress to the plain tar"
            );
        } else {
            assert!(data == plain);
        }
    }
    // `-o -`: the plain tar on stdout.
    let out = l
        .command(&["export", "fix", "-o", "-"])
        .env_remove("SOURCE_DATE_EPOCH")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout == plain,
        "stdout export differs from the file export"
    );
    assert!(files_named(l.dir.path(), ".part").is_empty());
}

#[test]
fn the_export_digest_is_stable_across_stores() {
    let (a, b) = (Locker::new(), Locker::new());
    let rooted = fixture_with_root_entry();
    import(&a, fixture_tar(), "fix");
    import(&a, &rooted, "rooted");
    // Unpacked a second later: a root directory without a `./` entry gets a new mtime.
    std::thread::sleep(Duration::from_millis(1100));
    import(&b, fixture_tar(), "fix");
    import(&b, &rooted, "rooted");
    let digest = |l: &Locker, name: &str, epoch: Option<&str>| {
        let out = l.path(&format!("{name}-{}.tar", epoch.unwrap_or("none")));
        export(l, name, &out, epoch);
        sha256_hex(&fs::read(&out).unwrap())
    };
    // With SOURCE_DATE_EPOCH (as a build sets it) any image is stable.
    let epoch = Some("1700000000");
    assert_eq!(digest(&a, "fix", epoch), digest(&b, "fix", epoch));
    // An image whose tarball records its root is stable without it.
    assert_eq!(digest(&a, "rooted", None), digest(&b, "rooted", None));
    // The clamp is a no-op when every mtime is already older.
    assert_eq!(digest(&a, "rooted", None), digest(&a, "rooted", epoch));
}

#[test]
fn an_unknown_image_is_an_error() {
    let l = Locker::new();
    import(&l, fixture_tar(), "fix");
    let out = l.path("x.tar");
    let r = l.fails(&["export", "nosuch", "-o", s(&out)]);
    assert!(r.stderr.contains("nosuch"), "{}", r.dump());
    assert!(!out.exists());
    assert!(files_named(l.dir.path(), ".part").is_empty());
}

#[test]
fn a_bad_extension_is_an_error_and_creates_nothing() {
    let l = Locker::new();
    import(&l, fixture_tar(), "fix");
    for name in ["x.zip", "x.tar.bz2", "x"] {
        let out = l.path(name);
        let r = l.fails(&["export", "fix", "-o", s(&out)]);
        for ext in [".tar", ".tar.gz", ".tar.xz", ".tar.zst"] {
            assert!(
                r.stderr.contains(ext),
                "error must list {ext}\n{}",
                r.dump()
            );
        }
        assert!(!out.exists(), "{name} was created");
    }
    assert!(files_named(l.dir.path(), ".part").is_empty());
    // A bad SOURCE_DATE_EPOCH is refused rather than ignored.
    let mut cmd = l.command(&["export", "fix", "-o", s(&l.path("y.tar"))]);
    cmd.env("SOURCE_DATE_EPOCH", "yesterday");
    let r = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(r.stderr.contains("SOURCE_DATE_EPOCH"), "{}", r.dump());
    assert!(!l.path("y.tar").exists());
}
