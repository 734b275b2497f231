//! Images in and out of the store: `import`, `pull`, `images`, `rmi`, `catalog`, `gc`,
//! against the test HTTP server on 127.0.0.1. Each test has its own store and server.
//! Assertions are on exit codes, store state (rootfs/, refs.json, tmp/) and key words
//! (digests, names, URLs), not on exact phrasing.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::harness::{busybox_path, compress, fixture_tar, names_in, run_bounded, Locker, Run};
use crate::server::{Behaviour, Cut, Server};

// ---------------------------------------------------------------- helpers

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Output of a run, both streams, for key-word checks.
fn said(r: &Run) -> String {
    format!("{}\n{}", r.stdout, r.stderr)
}

fn expect_code(r: &Run, codes: &[i32]) {
    assert!(
        r.code.is_some_and(|c| codes.contains(&c)),
        "expected exit in {codes:?}\n{}",
        r.dump()
    );
}

fn expect_ok(r: &Run) {
    assert_eq!(r.code, Some(0), "expected success\n{}", r.dump());
}

/// Expects locker's own error (125, `locker: ` line), as `Locker::fails` does.
fn expect_fail(r: &Run) {
    assert_eq!(r.code, Some(125), "expected exit 125\n{}", r.dump());
    let last = r.stderr.lines().rfind(|l| !l.trim().is_empty());
    assert!(
        last.is_some_and(|l| l.starts_with("locker: ")),
        "error line must start with `locker: `\n{}",
        r.dump()
    );
}

/// Bounded polling of a condition owned by another process or thread (no fixed sleeps).
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Digests under ROOT/rootfs.
fn trees(l: &Locker) -> Vec<String> {
    names_in(&l.root().join("rootfs"))
}

/// Names in ROOT/refs.json (absent file: none).
fn ref_names(l: &Locker) -> Vec<String> {
    let path = l.root().join("refs.json");
    let Ok(bytes) = fs::read(&path) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut names: Vec<String> = v["images"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Work directories (and their locks) left under ROOT/tmp.
fn work_leftovers(l: &Locker) -> Vec<String> {
    names_in(&l.root().join("tmp"))
        .into_iter()
        .filter(|n| n.starts_with("work-"))
        .collect()
}

fn partial_downloads(l: &Locker) -> Vec<String> {
    names_in(&l.root().join("tmp/downloads"))
}

/// The store as `images` shows it, for "nothing changed" checks.
#[derive(Debug, PartialEq)]
struct Snapshot {
    trees: Vec<String>,
    refs: Option<Vec<u8>>,
}

fn snapshot(l: &Locker) -> Snapshot {
    Snapshot {
        trees: trees(l),
        refs: fs::read(l.root().join("refs.json")).ok(),
    }
}

/// A failed command left no image, no name and no work directory.
fn assert_nothing_installed(l: &Locker, r: &Run) {
    assert!(
        trees(l).is_empty(),
        "no rootfs may appear: {:?}\n{}",
        trees(l),
        r.dump()
    );
    assert!(
        ref_names(l).is_empty(),
        "no name may appear: {:?}\n{}",
        ref_names(l),
        r.dump()
    );
    assert!(
        work_leftovers(l).is_empty(),
        "work dirs left in tmp/: {:?}\n{}",
        work_leftovers(l),
        r.dump()
    );
}

/// A list from `images --json` / `catalog --json`: a JSON array, `{"<key>": [...]}`, or
/// a map name -> object.
fn as_list(v: Value, key: &str) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Object(mut m) => match m.remove(key) {
            Some(Value::Array(a)) => a,
            Some(Value::Object(inner)) => named(inner),
            Some(other) => panic!("unexpected {key}: {other}"),
            None => named(m),
        },
        other => panic!("expected a JSON list, got {other}"),
    }
}

fn named(m: serde_json::Map<String, Value>) -> Vec<Value> {
    m.into_iter()
        .map(|(k, mut v)| {
            if let Value::Object(o) = &mut v {
                o.entry("name").or_insert(Value::String(k));
            }
            v
        })
        .collect()
}

fn image_list(l: &Locker) -> Vec<Value> {
    let out = l.ok(&["images", "--json"]);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("images --json is not JSON ({e}):\n{out}"));
    as_list(v, "images")
}

fn image(l: &Locker, name: &str) -> Option<Value> {
    image_list(l).into_iter().find(|i| i["name"] == name)
}

fn digest_field(v: &Value) -> String {
    let d = v["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest string in {v}"));
    d.trim_start_matches("sha256:").to_string()
}

/// `name` is in the store as `hex`, and its tree holds the fixture's busybox.
fn assert_installed(l: &Locker, name: &str, hex: &str) {
    let listed = image_list(l);
    let img = listed
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in images --json: {listed:?}"));
    assert_eq!(digest_field(img), hex, "digest of {name}: {img}");
    let busybox = l.root().join("rootfs").join(hex).join("bin/busybox");
    let meta = fs::metadata(&busybox).unwrap_or_else(|e| panic!("{}: {e}", busybox.display()));
    assert_eq!(
        meta.len(),
        fs::metadata(busybox_path()).unwrap().len(),
        "{} is not the fixture's busybox",
        busybox.display()
    );
    let human = l.ok(&["images"]);
    assert!(human.contains(name), "images must list {name}:\n{human}");
}

fn write_catalog(l: &Locker, text: &str) -> String {
    let path = l.path("catalog.toml");
    fs::write(&path, text).unwrap();
    s(&path).to_string()
}

fn pinned(name: &str, aliases: &[&str], url: &str, hex: &str) -> String {
    let aliases: Vec<String> = aliases.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[images.{name}]\naliases = [{}]\nurl = \"{url}\"\nsha256 = \"{hex}\"\n",
        aliases.join(", ")
    )
}

/// `pull NAME` with `catalog` as the extra layer.
fn pull(l: &Locker, catalog: &str, name: &str) -> Run {
    l.run(&["--catalog", catalog, "pull", name])
}

fn import_file(l: &Locker, data: &[u8], file: &str, name: &str, extra: &[&str]) -> Run {
    let path = l.path(file);
    fs::write(&path, data).unwrap();
    let mut args = vec!["import", s(&path), "--name", name];
    args.extend_from_slice(extra);
    l.run(&args)
}

// ---------------------------------------------------------------- import

fn import_compressed(tool: &str) {
    let l = Locker::new();
    let data = compress(fixture_tar(), tool);
    let hex = sha256_hex(&data);
    let file = format!("fixture.tar.{tool}");
    let r = import_file(&l, &data, &file, "fx", &[]);
    expect_ok(&r);
    assert!(
        said(&r).contains(&hex),
        "import must print the archive's sha256 {hex}\n{}",
        r.dump()
    );
    assert_installed(&l, "fx", &hex);
    let img = image(&l, "fx").unwrap();
    for field in ["name", "digest", "size", "source", "created"] {
        assert!(
            !img[field].is_null(),
            "images --json entry lacks {field}: {img}"
        );
    }
    assert!(
        img["size"].as_u64().is_some_and(|n| n > 0),
        "size must be a positive number: {img}"
    );
    assert!(
        img["source"]
            .as_str()
            .is_some_and(|src| src.contains(&file)),
        "source must name the file: {img}"
    );
    assert_eq!(trees(&l), vec![hex]);
    assert!(work_leftovers(&l).is_empty(), "{:?}", work_leftovers(&l));
}

#[test]
fn import_plain_tar() {
    import_compressed("none");
}

#[test]
fn import_gzip() {
    import_compressed("gzip");
}

#[test]
fn import_xz() {
    import_compressed("xz");
}

#[test]
fn import_zstd() {
    import_compressed("zstd");
}

#[test]
fn import_with_matching_sha256() {
    let l = Locker::new();
    let data = compress(fixture_tar(), "gzip");
    let hex = sha256_hex(&data);
    let r = import_file(&l, &data, "f.tar.gz", "pinned", &["--sha256", &hex]);
    expect_ok(&r);
    assert_installed(&l, "pinned", &hex);
}

#[test]
fn import_with_wrong_sha256_installs_nothing() {
    let l = Locker::new();
    let data = compress(fixture_tar(), "gzip");
    let actual = sha256_hex(&data);
    let expected = sha256_hex(b"something else");
    let r = import_file(&l, &data, "f.tar.gz", "pinned", &["--sha256", &expected]);
    expect_fail(&r);
    assert!(
        r.stderr.contains(&expected),
        "stderr must show the expected digest\n{}",
        r.dump()
    );
    assert!(
        r.stderr.contains(&actual),
        "stderr must show the actual digest\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);
    assert!(l
        .ok(&["images"])
        .lines()
        .all(|line| !line.contains("pinned")));
}

#[test]
fn import_with_malformed_sha256_is_an_error() {
    let l = Locker::new();
    let data = compress(fixture_tar(), "gzip");
    let r = import_file(&l, &data, "f.tar.gz", "pinned", &["--sha256", "abc"]);
    expect_fail(&r);
    assert_nothing_installed(&l, &r);
}

#[test]
fn import_from_url() {
    let l = Locker::new();
    let server = Server::start();
    let data = compress(fixture_tar(), "xz");
    let hex = sha256_hex(&data);
    let url = server.serve("/dl/fixture.tar.xz", data);
    let r = l.run(&["import", &url, "--name", "web"]);
    expect_ok(&r);
    assert!(
        said(&r).contains(&hex),
        "import must print the digest {hex}\n{}",
        r.dump()
    );
    assert_installed(&l, "web", &hex);
    let img = image(&l, "web").unwrap();
    assert!(
        img["source"].as_str().is_some_and(|src| src.contains(&url)),
        "source must be the URL: {img}"
    );
    assert!(server
        .requests_for("/dl/fixture.tar.xz")
        .iter()
        .any(|r| r.method == "GET"));
}

#[test]
fn import_missing_file_is_an_error() {
    let l = Locker::new();
    let missing = l.path("no-such.tar");
    let r = l.run(&["import", s(&missing), "--name", "x"]);
    expect_fail(&r);
    assert!(
        r.stderr.contains(s(&missing)),
        "error must name the file\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);
}

// ---------------------------------------------------------------- pull, pinned

#[test]
fn pull_by_alias_then_name_is_a_no_op_without_requests() {
    let l = Locker::new();
    let server = Server::start();
    let data = compress(fixture_tar(), "xz");
    let hex = sha256_hex(&data);
    let url = server.serve("/images/fixture.tar.xz", data);
    let cat = write_catalog(&l, &pinned("fixture", &["fx"], &url, &hex));

    let r = pull(&l, &cat, "fx");
    expect_ok(&r);
    assert_installed(&l, "fixture", &hex);
    assert!(server
        .requests_for("/images/fixture.tar.xz")
        .iter()
        .any(|r| r.method == "GET"));

    let before = server.requests().len();
    for name in ["fixture", "fx"] {
        let again = pull(&l, &cat, name);
        expect_ok(&again);
        let text = said(&again).to_lowercase();
        assert!(
            text.contains("already") || text.contains("present") || text.contains("up to date"),
            "a second pull must say the image is already present\n{}",
            again.dump()
        );
        assert_eq!(
            server.requests().len(),
            before,
            "a present image must not be fetched again: {:?}\n{}",
            server.requests(),
            again.dump()
        );
    }
    assert_eq!(trees(&l), vec![hex]);
    assert_eq!(ref_names(&l), vec!["fixture".to_string()]);
}

#[test]
fn pull_by_name() {
    let l = Locker::new();
    let server = Server::start();
    let data = compress(fixture_tar(), "zstd");
    let hex = sha256_hex(&data);
    let url = server.serve("/fixture.tar.zst", data);
    let cat = write_catalog(&l, &pinned("fixture", &["fx"], &url, &hex));
    expect_ok(&pull(&l, &cat, "fixture"));
    assert_installed(&l, "fixture", &hex);
    assert!(work_leftovers(&l).is_empty());
    assert!(
        partial_downloads(&l).is_empty(),
        "a finished download leaves no partial file: {:?}",
        partial_downloads(&l)
    );
}

#[test]
fn wrong_bytes_served_fail_the_digest_and_install_nothing() {
    let l = Locker::new();
    let server = Server::start();
    // Uncompressed: the flipped byte lands in busybox's data, so only the digest can tell.
    let data = fixture_tar().to_vec();
    let hex = sha256_hex(&data);
    let url = server.serve_with(
        "/fixture.tar",
        data,
        Behaviour {
            corrupt: true,
            ..Default::default()
        },
    );
    let cat = write_catalog(&l, &pinned("fixture", &[], &url, &hex));
    let r = pull(&l, &cat, "fixture");
    expect_fail(&r);
    assert!(
        r.stderr.contains(&hex) || r.stderr.contains(&hex[..12]),
        "error must name the expected digest\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);
    assert!(
        partial_downloads(&l).is_empty(),
        "bytes that failed verification must not be kept for resume: {:?}\n{}",
        partial_downloads(&l),
        r.dump()
    );
    l.ok(&["images"]);

    // Once the server is fixed, the next pull succeeds (nothing bad was kept).
    server.configure("/fixture.tar", |b| b.corrupt = false);
    expect_ok(&pull(&l, &cat, "fixture"));
    assert_installed(&l, "fixture", &hex);
}

#[test]
fn corrupt_compressed_download_fails_cleanly() {
    let l = Locker::new();
    let server = Server::start();
    let data = compress(fixture_tar(), "xz");
    let hex = sha256_hex(&data);
    let url = server.serve_with(
        "/fixture.tar.xz",
        data,
        Behaviour {
            corrupt: true,
            ..Default::default()
        },
    );
    let cat = write_catalog(&l, &pinned("fixture", &[], &url, &hex));
    let r = pull(&l, &cat, "fixture");
    expect_fail(&r);
    assert_nothing_installed(&l, &r);
}

// ---------------------------------------------------------------- pull, signed

/// A throw-away OpenPGP key in its own GNUPGHOME; the agent is stopped on drop.
struct Gpg {
    home: PathBuf,
}

impl Gpg {
    fn new(home: PathBuf, uid: &str) -> Gpg {
        fs::create_dir_all(&home).unwrap();
        fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let key = Gpg { home };
        key.gpg(&[
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ]);
        key
    }

    fn gpg(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("gpg");
        cmd.arg("--batch")
            .arg("--quiet")
            .arg("--homedir")
            .arg(&self.home)
            .args(args)
            .stdin(Stdio::null());
        let r = run_bounded(cmd, Duration::from_secs(60));
        assert_eq!(r.code, Some(0), "gpg failed\n{}", r.dump());
        r
    }

    fn fingerprint(&self) -> String {
        let r = self.gpg(&["--with-colons", "--list-keys"]);
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .expect("fpr line");
        line.split(':').nth(9).unwrap().to_string()
    }

    /// The public key as a binary keyring file (what gpgv --keyring takes).
    fn export(&self, to: &Path) {
        let mut cmd = Command::new("gpg");
        cmd.arg("--batch")
            .arg("--homedir")
            .arg(&self.home)
            .arg("--output")
            .arg(to)
            .arg("--export");
        let r2 = run_bounded(cmd, Duration::from_secs(60));
        assert_eq!(r2.code, Some(0), "gpg --export\n{}", r2.dump());
        assert!(fs::metadata(to).unwrap().len() > 0, "empty keyring export");
    }

    fn sign(&self, file: &Path, sig: &Path) {
        self.gpg(&["--yes", "--output", s(sig), "--detach-sign", s(file)]);
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum SignedCase {
    Good,
    /// SHA256SUMS changed after signing.
    Tampered,
    /// Signed by a key the catalog's keyring does not hold.
    UnknownKey,
    /// SHA256SUMS is signed but has no line for the archive.
    MissingName,
}

struct SignedSetup {
    l: Locker,
    server: Server,
    key: Gpg,
    _other: Option<Gpg>,
    hex: String,
    catalog: String,
}

fn signed_setup(case: SignedCase) -> SignedSetup {
    let l = Locker::new();
    let server = Server::start();
    let key = Gpg::new(l.path("gnupg"), "locker test <t@example.invalid>");
    let data = compress(fixture_tar(), "xz");
    let hex = sha256_hex(&data);
    let url = server.serve("/rel/fixture.tar.xz", data);

    let other_hex = sha256_hex(b"another archive");
    let sums = match case {
        SignedCase::MissingName => format!("{other_hex}  other.tar.xz\n"),
        _ => format!("{other_hex}  other.tar.xz\n{hex}  fixture.tar.xz\n"),
    };
    let sums_path = l.path("SHA256SUMS");
    let sig_path = l.path("SHA256SUMS.gpg");
    fs::write(&sums_path, &sums).unwrap();
    key.sign(&sums_path, &sig_path);
    let served_sums = match case {
        // The archive's own line is still right: only the signature can catch this.
        SignedCase::Tampered => format!("{sums}{}  extra.tar.xz\n", "0".repeat(64)),
        _ => sums,
    };
    let served_path = l.path("served-SHA256SUMS");
    fs::write(&served_path, &served_sums).unwrap();
    let checksums = server.serve("/rel/SHA256SUMS", served_sums.into_bytes());
    let signature = server.serve("/rel/SHA256SUMS.gpg", fs::read(&sig_path).unwrap());

    let keyring = l.path("keyring.gpg");
    let other = if case == SignedCase::UnknownKey {
        let other = Gpg::new(l.path("gnupg-other"), "someone else <o@example.invalid>");
        other.export(&keyring);
        Some(other)
    } else {
        key.export(&keyring);
        None
    };
    // The fixture itself: gpgv accepts what is served with the signer's keyring unless
    // it was tampered with, so a failure below is locker's.
    let own = l.path("own-keyring.gpg");
    key.export(&own);
    let mut gpgv = Command::new("gpgv");
    gpgv.arg("--keyring")
        .arg(&own)
        .arg(&sig_path)
        .arg(&served_path);
    let check = run_bounded(gpgv, Duration::from_secs(60));
    assert_eq!(
        check.code == Some(0),
        case != SignedCase::Tampered,
        "fixture signature check\n{}",
        check.dump()
    );
    let catalog = write_catalog(
        &l,
        &format!(
            "[images.signed]\naliases = [\"sg\"]\nurl = \"{url}\"\nchecksums = \"{checksums}\"\nsignature = \"{signature}\"\nkeyring = \"{}\"\n",
            s(&keyring)
        ),
    );
    SignedSetup {
        l,
        server,
        key,
        _other: other,
        hex,
        catalog,
    }
}

#[test]
fn signed_pull_succeeds() {
    let t = signed_setup(SignedCase::Good);
    let r = pull(&t.l, &t.catalog, "sg");
    expect_ok(&r);
    assert_installed(&t.l, "signed", &t.hex);
    for path in [
        "/rel/SHA256SUMS",
        "/rel/SHA256SUMS.gpg",
        "/rel/fixture.tar.xz",
    ] {
        assert!(
            !t.server.requests_for(path).is_empty(),
            "{path} was never fetched: {:?}",
            t.server.requests()
        );
    }
}

#[test]
fn signed_pull_rejects_tampered_checksums() {
    let t = signed_setup(SignedCase::Tampered);
    let r = pull(&t.l, &t.catalog, "signed");
    expect_fail(&r);
    assert!(
        r.stderr.to_lowercase().contains("signature"),
        "error must say the signature failed\n{}",
        r.dump()
    );
    assert_nothing_installed(&t.l, &r);
}

#[test]
fn signed_pull_rejects_unknown_key() {
    let t = signed_setup(SignedCase::UnknownKey);
    let r = pull(&t.l, &t.catalog, "signed");
    expect_fail(&r);
    let fpr = t.key.fingerprint().to_lowercase();
    let err = r.stderr.to_lowercase();
    assert!(
        err.contains(&fpr) || err.contains(&fpr[fpr.len() - 16..]),
        "error must name the signing key ({fpr} or its long id)\n{}",
        r.dump()
    );
    assert_nothing_installed(&t.l, &r);
}

#[test]
fn signed_pull_rejects_checksums_without_the_file() {
    let t = signed_setup(SignedCase::MissingName);
    let r = pull(&t.l, &t.catalog, "signed");
    expect_fail(&r);
    assert!(
        r.stderr.contains("fixture.tar.xz"),
        "error must name the file missing from SHA256SUMS\n{}",
        r.dump()
    );
    assert_nothing_installed(&t.l, &r);
}

// ---------------------------------------------------------------- built-in trust anchors

/// The cloud-image key locker ships (keys/README.md); the built-in catalog pins it.
const UBUNTU_CLOUDIMAGE_FPR: &str = "D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81";

/// A loopback copy of Ubuntu's cloud-image release layout
/// (`minimal/releases/bionic/release/{root.tar.xz,SHA256SUMS,SHA256SUMS.gpg}`), its
/// SHA256SUMS signed by a fresh test key, and a catalog entry shaped like the built-in
/// one: `fingerprint` pinned, no `keyring`.
struct UbuntuLayout {
    l: Locker,
    _server: Server,
    key: Gpg,
    hex: String,
    url: String,
    checksums: String,
    signature: String,
}

fn ubuntu_layout() -> UbuntuLayout {
    let l = Locker::new();
    let server = Server::start();
    let key = Gpg::new(l.path("gnupg"), "not ubuntu <n@example.invalid>");
    let dir = "/minimal/releases/bionic/release";
    let file = "ubuntu-18.04-minimal-cloudimg-amd64-root.tar.xz";
    let data = compress(fixture_tar(), "xz");
    let hex = sha256_hex(&data);
    let url = server.serve(&format!("{dir}/{file}"), data);
    let sums = format!("{hex} *{file}\n");
    let sums_path = l.path("SHA256SUMS");
    let sig_path = l.path("SHA256SUMS.gpg");
    fs::write(&sums_path, &sums).unwrap();
    key.sign(&sums_path, &sig_path);
    let checksums = server.serve(&format!("{dir}/SHA256SUMS"), sums.into_bytes());
    let signature = server.serve(
        &format!("{dir}/SHA256SUMS.gpg"),
        fs::read(&sig_path).unwrap(),
    );
    UbuntuLayout {
        l,
        _server: server,
        key,
        hex,
        url,
        checksums,
        signature,
    }
}

impl UbuntuLayout {
    fn catalog(&self, fingerprint: &str, keyring: Option<&Path>) -> String {
        let keyring = keyring.map_or(String::new(), |k| format!("keyring = \"{}\"\n", s(k)));
        write_catalog(
            &self.l,
            &format!(
                "[images.\"ubuntu-18.04\"]\naliases = [\"bionic\"]\narch = \"amd64\"\nurl = \"{}\"\nchecksums = \"{}\"\nsignature = \"{}\"\nfingerprint = \"{fingerprint}\"\n{keyring}",
                self.url, self.checksums, self.signature
            ),
        )
    }
}

#[test]
fn builtin_key_refuses_sums_signed_by_an_unknown_key() {
    let t = ubuntu_layout();
    let catalog = t.catalog(UBUNTU_CLOUDIMAGE_FPR, None);
    let r = pull(&t.l, &catalog, "bionic");
    expect_fail(&r);
    let fpr = t.key.fingerprint().to_lowercase();
    let err = r.stderr.to_lowercase();
    assert!(
        err.contains(&fpr[fpr.len() - 16..]) || err.contains(&fpr),
        "error must name the signing key\n{}",
        r.dump()
    );
    assert!(
        !err.contains("not found"),
        "the built-in key is used, not a missing keyring\n{}",
        r.dump()
    );
    assert_nothing_installed(&t.l, &r);
}

#[test]
fn builtin_key_injected_for_tests_verifies_the_layout() {
    let t = ubuntu_layout();
    let fpr = t.key.fingerprint();
    let key = t.l.path("injected.gpg");
    t.key.export(&key);
    let catalog = t.catalog(&fpr, None);
    let mut cmd = t.l.command(&["--catalog", &catalog, "pull", "bionic"]);
    cmd.env("LOCKER_TEST_BUILTIN_KEY", format!("{fpr}:{}", s(&key)));
    let r = run_bounded(cmd, Duration::from_secs(120));
    expect_ok(&r);
    assert_installed(&t.l, "ubuntu-18.04", &t.hex);
    // Without the injected key the same fingerprint has no keyring at all.
    let l2 = Locker::new();
    let catalog2 = write_catalog(&l2, &fs::read_to_string(&catalog).unwrap());
    let r = pull(&l2, &catalog2, "bionic");
    expect_fail(&r);
    assert!(
        r.stderr.contains(&fpr),
        "names the key with no keyring\n{}",
        r.dump()
    );
    assert_nothing_installed(&l2, &r);
}

#[test]
fn pinned_fingerprint_refuses_another_key_of_the_keyring() {
    let t = ubuntu_layout();
    // The named keyring holds the signer, but the entry pins another key.
    let keyring = t.l.path("keyring.gpg");
    t.key.export(&keyring);
    let catalog = t.catalog(UBUNTU_CLOUDIMAGE_FPR, Some(&keyring));
    let r = pull(&t.l, &catalog, "bionic");
    expect_fail(&r);
    assert!(
        r.stderr.contains(UBUNTU_CLOUDIMAGE_FPR),
        "names the pinned key\n{}",
        r.dump()
    );
    assert_nothing_installed(&t.l, &r);
    // The same keyring with the signer's fingerprint pinned passes.
    let catalog = t.catalog(&t.key.fingerprint(), Some(&keyring));
    expect_ok(&pull(&t.l, &catalog, "bionic"));
    assert_installed(&t.l, "ubuntu-18.04", &t.hex);
}

#[test]
fn builtin_catalog_ubuntu_entries_need_no_host_keyring() {
    let l = Locker::new();
    let out = l.ok(&["catalog", "--json"]);
    for (name, fpr) in [
        ("ubuntu-18.04", UBUNTU_CLOUDIMAGE_FPR),
        ("ubuntu-14.04", UBUNTU_CLOUDIMAGE_FPR),
        (
            "ubuntu-base-24.04",
            "843938DF228D22F7B3742BC0D94AA3F0EFE21092",
        ),
    ] {
        let entry = catalog_entry(&out, name);
        let text = entry.to_string();
        assert!(text.contains(fpr), "{name} pins {fpr}: {text}");
        assert!(
            !text.contains("keyring"),
            "{name} names no host keyring: {text}"
        );
    }
}

fn catalog_entry(json: &str, name: &str) -> Value {
    let v: Value = serde_json::from_str(json).unwrap();
    as_list(v, "images")
        .into_iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the catalog: {json}"))
}

// ---------------------------------------------------------------- bad catalogs, names, URLs

#[test]
fn malformed_catalog_names_file_line_and_key() {
    let l = Locker::new();
    let hex = sha256_hex(b"x");
    let cat = write_catalog(&l, &format!("# a hand-written catalog\n[images.fixture]\nurl = \"http://127.0.0.1:9/f.tar\"\nsha265 = \"{hex}\"\n"));
    for args in [
        vec!["--catalog", &cat, "catalog"],
        vec!["--catalog", &cat, "pull", "fixture"],
    ] {
        let r = l.run(&args);
        expect_fail(&r);
        assert!(
            r.stderr.contains(&cat),
            "error must name the file\n{}",
            r.dump()
        );
        assert!(
            r.stderr.contains("sha265"),
            "error must name the key\n{}",
            r.dump()
        );
        assert!(
            ["line 4", "line 2", ":4:", ":2:"]
                .iter()
                .any(|p| r.stderr.contains(p)),
            "error must name the line (4, or the entry's 2)\n{}",
            r.dump()
        );
        assert_nothing_installed(&l, &r);
    }
}

#[test]
fn catalog_entry_without_verification_is_an_error() {
    let l = Locker::new();
    let server = Server::start();
    let url = server.serve("/f.tar", fixture_tar().to_vec());
    let cat = write_catalog(&l, &format!("[images.nover]\nurl = \"{url}\"\n"));
    for args in [
        vec!["--catalog", &cat, "catalog"],
        vec!["--catalog", &cat, "pull", "nover"],
    ] {
        let r = l.run(&args);
        expect_fail(&r);
        assert!(
            r.stderr.contains(&cat),
            "error must name the file\n{}",
            r.dump()
        );
        assert!(
            r.stderr.contains("nover"),
            "error must name the entry\n{}",
            r.dump()
        );
        assert_nothing_installed(&l, &r);
    }
    assert!(
        server.requests().is_empty(),
        "an unverifiable image must never be fetched: {:?}",
        server.requests()
    );
}

#[test]
fn unknown_image_name_has_a_hint() {
    let l = Locker::new();
    let hex = sha256_hex(b"x");
    let cat = write_catalog(
        &l,
        &pinned("fixture-one", &["fone"], "http://127.0.0.1:9/f.tar", &hex),
    );
    let r = pull(&l, &cat, "fixture-on");
    expect_fail(&r);
    assert!(
        r.stderr.contains("fixture-on"),
        "error must name what was asked for\n{}",
        r.dump()
    );
    assert!(
        r.stderr.contains("locker catalog") || r.stderr.contains("fixture-one"),
        "error must point at `locker catalog` or a close name\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);
}

#[test]
fn not_found_url_is_named() {
    let l = Locker::new();
    let server = Server::start();
    let missing = server.url("/nope/fixture.tar.xz");
    let r = l.run(&["import", &missing, "--name", "x"]);
    expect_fail(&r);
    assert!(
        r.stderr.contains(&missing),
        "error must name the URL\n{}",
        r.dump()
    );
    assert!(
        r.stderr.contains("404"),
        "error must give the status\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);

    let cat = write_catalog(&l, &pinned("fixture", &[], &missing, &sha256_hex(b"x")));
    let r = pull(&l, &cat, "fixture");
    expect_fail(&r);
    assert!(
        r.stderr.contains(&missing),
        "error must name the URL\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);
}

#[test]
fn server_error_status_is_an_error() {
    let l = Locker::new();
    let server = Server::start();
    let data = fixture_tar().to_vec();
    let hex = sha256_hex(&data);
    let url = server.serve_with(
        "/f.tar",
        data,
        Behaviour {
            status: Some(500),
            ..Default::default()
        },
    );
    let cat = write_catalog(&l, &pinned("fixture", &[], &url, &hex));
    let r = pull(&l, &cat, "fixture");
    expect_fail(&r);
    assert!(
        r.stderr.contains(&url),
        "error must name the URL\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);
}

#[test]
fn malformed_url_is_an_error() {
    let l = Locker::new();
    let r = l.run(&["import", "http://127.0.0.1:notaport/f.tar", "--name", "x"]);
    expect_fail(&r);
    assert_nothing_installed(&l, &r);
}

#[test]
fn connection_refused_is_an_error() {
    let l = Locker::new();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let url = format!("http://127.0.0.1:{port}/fixture.tar");
    let r = l.run(&["import", &url, "--name", "x"]);
    expect_fail(&r);
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{port}")),
        "error must name the URL\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);
}

// ---------------------------------------------------------------- hostile archives

/// Raw tar entries, written as ustar headers by hand: `tar::Builder` refuses `..`.
enum Raw<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn raw_tar(entries: &[Raw]) -> Vec<u8> {
    fn put(h: &mut [u8; 512], at: usize, len: usize, v: &[u8]) {
        assert!(
            v.len() <= len,
            "tar field too long: {}",
            String::from_utf8_lossy(v)
        );
        h[at..at + v.len()].copy_from_slice(v);
    }
    fn octal(h: &mut [u8; 512], at: usize, len: usize, n: u64) {
        let text = format!("{n:0width$o}\0", width = len - 1);
        put(h, at, len, text.as_bytes());
    }
    let mut out = Vec::new();
    for e in entries {
        let (name, kind, link, data, mode): (&str, u8, &str, &[u8], u64) = match e {
            Raw::File(n, d) => (n, b'0', "", d, 0o644),
            Raw::Dir(n) => (n, b'5', "", &[], 0o755),
            Raw::Symlink(n, t) => (n, b'2', t, &[], 0o777),
            Raw::Hardlink(n, t) => (n, b'1', t, &[], 0o644),
        };
        let mut h = [0u8; 512];
        put(&mut h, 0, 100, name.as_bytes());
        octal(&mut h, 100, 8, mode);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, data.len() as u64);
        octal(&mut h, 136, 12, 1_700_000_000);
        h[156] = kind;
        put(&mut h, 157, 100, link.as_bytes());
        put(&mut h, 257, 6, b"ustar\0");
        put(&mut h, 263, 2, b"00");
        put(&mut h, 265, 32, b"root");
        put(&mut h, 297, 32, b"root");
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Host paths a hostile archive aims at; removed on drop whatever happened.
struct Targets {
    tag: String,
    paths: Vec<PathBuf>,
}

impl Targets {
    fn new(kind: &str) -> Targets {
        Targets {
            tag: format!("locker-escape-{}-{kind}", std::process::id()),
            paths: Vec::new(),
        }
    }

    fn host(&mut self, dir: &str, suffix: &str) -> PathBuf {
        let p = Path::new(dir).join(format!("{}-{suffix}", self.tag));
        let _ = fs::remove_file(&p);
        let _ = fs::remove_dir_all(&p);
        self.paths.push(p.clone());
        p
    }

    /// An existing host file the archive tries to overwrite or link to.
    fn victim(&mut self, dir: &str, suffix: &str) -> PathBuf {
        let p = self.host(dir, suffix);
        fs::write(&p, b"original\n").unwrap();
        p
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = fs::remove_file(p);
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Imports `tar`; locker may refuse (125, nothing installed) or unpack it with every
/// entry kept inside the image. Either way no name containing `tag` may exist outside
/// ROOT/rootfs, and `absent` host paths must not exist.
fn import_hostile(l: &Locker, tar: &[u8], t: &Targets, absent: &[&Path]) -> Run {
    let r = import_file(l, tar, "hostile.tar", "hostile", &[]);
    expect_code(&r, &[0, 125]);
    eprintln!("{}: import exit {:?}: {}", t.tag, r.code, r.stderr.trim());
    if r.code == Some(125) {
        expect_fail(&r);
        assert_nothing_installed(l, &r);
    } else {
        assert_eq!(trees(l).len(), 1, "{}", r.dump());
    }
    for p in absent {
        assert!(
            fs::symlink_metadata(p).is_err(),
            "archive escaped the store: {} exists\n{}",
            p.display(),
            r.dump()
        );
    }
    let rootfs = l.root().join("rootfs");
    let mut stack = vec![l.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p == rootfs {
                continue;
            }
            assert!(
                !e.file_name().to_string_lossy().contains(&t.tag),
                "archive entry escaped the image: {}\n{}",
                p.display(),
                r.dump()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    assert!(
        work_leftovers(l).is_empty(),
        "{:?}\n{}",
        work_leftovers(l),
        r.dump()
    );
    r
}

/// Imports each archive into its own fresh store, so every vector is tried even though
/// locker may refuse a whole archive at its first bad entry.
fn each_alone(t: &Targets, cases: &[(Vec<Raw>, Vec<&Path>)]) {
    for (entries, absent) in cases {
        let l = Locker::new();
        import_hostile(&l, &raw_tar(entries), t, absent);
    }
}

#[test]
fn dotdot_entries_stay_inside() {
    let mut t = Targets::new("dotdot");
    let in_tmp = t.host("/tmp", "tmp");
    let in_var_tmp = t.host("/var/tmp", "vartmp");
    let at_root = t.host("/", "root");
    let tag = t.tag.clone();
    let up = "../".repeat(16);
    let names = [
        format!("../{tag}-1"),
        format!("../../{tag}-2"),
        format!("../../../{tag}-3"),
        format!("../../../../{tag}-4"),
        format!("etc/../../{tag}-mid"),
        format!("./../{tag}-dot"),
        format!("{up}tmp/{tag}-tmp"),
        format!("{up}var/tmp/{tag}-vartmp"),
        format!("{up}{tag}-root"),
    ];
    let dir = format!("../{tag}-dir/");
    let in_dir = format!("../{tag}-dir/x");
    let absent: Vec<&Path> = vec![&in_tmp, &in_var_tmp, &at_root];
    let mut cases: Vec<(Vec<Raw>, Vec<&Path>)> = names
        .iter()
        .map(|n| {
            let entries = vec![
                Raw::Dir("etc/"),
                Raw::File("etc/hostname", b"hostile\n"),
                Raw::File(n, b"escaped\n"),
            ];
            (entries, absent.clone())
        })
        .collect();
    cases.push((
        vec![Raw::Dir(&dir), Raw::File(&in_dir, b"x")],
        absent.clone(),
    ));
    each_alone(&t, &cases);
}

#[test]
fn absolute_entries_stay_inside() {
    let l = Locker::new();
    let mut t = Targets::new("abs");
    let in_tmp = t.host("/tmp", "abs");
    let dir = t.host("/tmp", "absdir");
    let file = format!("{}/f", s(&dir));
    let in_locker = l.path(&format!("{}-locker", t.tag));
    let tar = raw_tar(&[
        Raw::File(s(&in_tmp), b"escaped\n"),
        Raw::Dir(s(&dir)),
        Raw::File(&file, b"x"),
        Raw::File(s(&in_locker), b"x"),
    ]);
    import_hostile(&l, &tar, &t, &[&in_tmp, &dir, &in_locker]);
}

#[test]
fn symlink_escapes_stay_inside() {
    let mut t = Targets::new("sym");
    let tag = t.tag.clone();
    let via_root = t.host("/tmp", "sym");
    let via_tmp_dir = t.host("/tmp", "symdir");
    let via_chain = t.host("/tmp", "chain");
    let victim = t.victim("/tmp", "victim");
    let through_root = format!("evil/tmp/{tag}-sym");
    let through_tmp = format!("tmpl/{tag}-symdir/");
    let through_up = format!("up/{tag}-up");
    let through_chain = format!("b/{tag}-chain");
    let victim_target = s(&victim).to_string();
    let deep_up = "../".repeat(16) + "tmp";
    each_alone(
        &t,
        &[
            (
                vec![
                    Raw::Symlink("evil", "/"),
                    Raw::File(&through_root, b"escaped\n"),
                ],
                vec![&via_root],
            ),
            (
                vec![Raw::Symlink("tmpl", "/tmp"), Raw::Dir(&through_tmp)],
                vec![&via_tmp_dir],
            ),
            // Relative: four levels up from the unpack dir is the test's temp dir,
            // which import_hostile searches for the tag.
            (
                vec![
                    Raw::Symlink("up", "../../../.."),
                    Raw::File(&through_up, b"escaped\n"),
                ],
                vec![],
            ),
            // A chain: b -> a -> ../../.../tmp.
            (
                vec![
                    Raw::Symlink("a", &deep_up),
                    Raw::Symlink("b", "a"),
                    Raw::File(&through_chain, b"escaped\n"),
                ],
                vec![&via_chain],
            ),
            // Write through a symlink to an existing host file.
            (
                vec![
                    Raw::Symlink("victim", &victim_target),
                    Raw::File("victim", b"pwned\n"),
                ],
                vec![],
            ),
        ],
    );
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"original\n",
        "host file overwritten through a symlink"
    );
}

#[test]
fn hardlink_escapes_stay_inside() {
    let mut t = Targets::new("hard");
    let tag = t.tag.clone();
    let victim = t.victim("/tmp", "victim");
    let outside = tempfile::Builder::new()
        .prefix("locker-victims-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let victim2 = outside.path().join("victim2");
    fs::write(&victim2, b"original\n").unwrap();
    let victim3 = t.victim("/tmp", "victim3");
    let rel = format!("{}tmp/{tag}-victim", "../".repeat(16));
    let through_sym = format!("tmpl/{tag}-victim3");
    let (v1, v2) = (s(&victim).to_string(), s(&victim2).to_string());
    each_alone(
        &t,
        &[
            (
                vec![Raw::Hardlink("hl", &v1), Raw::File("hl", b"pwned\n")],
                vec![],
            ),
            (vec![Raw::Hardlink("hl2", &v2)], vec![]),
            (
                vec![Raw::Hardlink("hl3", &rel), Raw::File("hl3", b"pwned\n")],
                vec![],
            ),
            (
                vec![
                    Raw::Symlink("tmpl", "/tmp"),
                    Raw::Hardlink("hl4", &through_sym),
                    Raw::File("hl4", b"pwned\n"),
                ],
                vec![],
            ),
        ],
    );
    for v in [&victim, &victim2, &victim3] {
        let meta = fs::metadata(v).unwrap();
        assert_eq!(
            fs::read(v).unwrap(),
            b"original\n",
            "{} overwritten through a hard link",
            v.display()
        );
        assert_eq!(
            meta.nlink(),
            1,
            "{} got a hard link from an image",
            v.display()
        );
    }
}

/// The escape checks must not cost legitimate archives their links.
#[test]
fn links_inside_the_image_are_kept() {
    let l = Locker::new();
    let tar = raw_tar(&[
        Raw::Dir("bin/"),
        Raw::File("bin/real", b"#!/bin/sh\n"),
        Raw::Hardlink("bin/hard", "bin/real"),
        Raw::Symlink("bin/soft", "real"),
        Raw::Symlink("abs", "/bin/real"),
        Raw::Symlink("dotdot", "../bin/real"),
    ]);
    let r = import_file(&l, &tar, "links.tar", "links", &[]);
    expect_ok(&r);
    let hex = sha256_hex(&tar);
    let tree = l.root().join("rootfs").join(&hex);
    let real = fs::metadata(tree.join("bin/real")).unwrap();
    let hard = fs::metadata(tree.join("bin/hard")).unwrap();
    assert_eq!(
        real.ino(),
        hard.ino(),
        "bin/hard must be a hard link to bin/real"
    );
    assert_eq!(
        fs::read_link(tree.join("bin/soft")).unwrap(),
        Path::new("real")
    );
    // Symlink targets are data for the container's view; they are kept verbatim.
    assert_eq!(
        fs::read_link(tree.join("abs")).unwrap(),
        Path::new("/bin/real")
    );
    assert_eq!(
        fs::read_link(tree.join("dotdot")).unwrap(),
        Path::new("../bin/real")
    );
}

// ---------------------------------------------------------------- interrupted downloads

fn range_start(r: &crate::server::Request) -> Option<u64> {
    r.range
        .as_deref()?
        .trim()
        .strip_prefix("bytes=")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn cut_download_resumes_with_range() {
    let l = Locker::new();
    let server = Server::start();
    let data = fixture_tar().to_vec();
    let hex = sha256_hex(&data);
    let half = data.len() as u64 / 2;
    let url = server.serve_with(
        "/f.tar",
        data,
        Behaviour {
            cut: Cut::WithoutRange,
            cut_after: half,
            ..Default::default()
        },
    );
    let cat = write_catalog(&l, &pinned("fixture", &[], &url, &hex));

    let first = pull(&l, &cat, "fixture");
    expect_code(&first, &[0, 125]);
    let mut dumps = first.dump();
    if first.code == Some(125) {
        expect_fail(&first);
        assert!(
            trees(&l).is_empty() && ref_names(&l).is_empty(),
            "a failed pull installs nothing\n{dumps}"
        );
        l.ok(&["images"]);
        let second = pull(&l, &cat, "fixture");
        dumps = format!("{dumps}\n{}", second.dump());
        expect_ok(&second);
    }
    let gets = server.requests_for("/f.tar");
    eprintln!(
        "resume: first pull exit {:?}; requests {gets:?}",
        first.code
    );
    assert!(
        gets.iter()
            .any(|r| r.method == "GET" && range_start(r).is_some_and(|n| n > 0)),
        "the retry must resume with a Range request: {gets:?}\n{dumps}"
    );
    assert_installed(&l, "fixture", &hex);
    assert!(work_leftovers(&l).is_empty(), "{:?}", work_leftovers(&l));
    assert!(
        partial_downloads(&l).is_empty(),
        "{:?}",
        partial_downloads(&l)
    );
}

#[test]
fn cut_download_restarts_when_range_is_ignored() {
    let l = Locker::new();
    let server = Server::start();
    let data = compress(fixture_tar(), "gzip");
    let hex = sha256_hex(&data);
    let half = data.len() as u64 / 2;
    let url = server.serve_with(
        "/f.tar.gz",
        data,
        Behaviour {
            ranges: false,
            cut: Cut::Once,
            cut_after: half,
            ..Default::default()
        },
    );
    let cat = write_catalog(&l, &pinned("fixture", &[], &url, &hex));

    let first = pull(&l, &cat, "fixture");
    expect_code(&first, &[0, 125]);
    let mut dumps = first.dump();
    if first.code == Some(125) {
        expect_fail(&first);
        assert!(
            trees(&l).is_empty() && ref_names(&l).is_empty(),
            "a failed pull installs nothing\n{dumps}"
        );
        let second = pull(&l, &cat, "fixture");
        dumps = format!("{dumps}\n{}", second.dump());
        expect_ok(&second);
    }
    let gets: Vec<_> = server
        .requests_for("/f.tar.gz")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(
        gets.len() >= 2,
        "the cut download must be fetched again: {gets:?}\n{dumps}"
    );
    assert_installed(&l, "fixture", &hex);
    assert!(work_leftovers(&l).is_empty(), "{:?}", work_leftovers(&l));
}

#[test]
fn kill_during_pull_then_pull_and_gc() {
    let l = Locker::new();
    let server = Server::start();
    let data = fixture_tar().to_vec();
    let hex = sha256_hex(&data);
    let url = server.serve_with(
        "/slow.tar",
        data,
        Behaviour {
            chunk: 16 * 1024,
            delay: Some(Duration::from_millis(50)),
            ..Default::default()
        },
    );
    let cat = write_catalog(&l, &pinned("slow", &[], &url, &hex));

    let log = l.path("killed-pull.log");
    let mut cmd = l.command(&["--catalog", &cat, "pull", "slow"]);
    cmd.stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(l.path("killed-pull.err")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while server.bytes_served() < 256 * 1024 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "pull ended ({status}) before it could be killed\n{}{}",
                fs::read_to_string(&log).unwrap_or_default(),
                fs::read_to_string(l.path("killed-pull.err")).unwrap_or_default()
            );
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server served {} bytes in 60 s", server.bytes_served());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    server.configure("/slow.tar", |b| b.delay = None);

    // The store is usable and shows no half image.
    let images = l.run(&["images"]);
    expect_ok(&images);
    assert!(
        !images.stdout.contains("slow"),
        "a killed pull must not show an image\n{}",
        images.dump()
    );
    assert!(image_list(&l).is_empty(), "{:?}", image_list(&l));
    assert!(trees(&l).is_empty(), "{:?}", trees(&l));
    let leftovers = work_leftovers(&l);
    eprintln!(
        "after kill: tmp has {leftovers:?}, downloads {:?}",
        partial_downloads(&l)
    );

    let r = pull(&l, &cat, "slow");
    expect_ok(&r);
    assert_installed(&l, "slow", &hex);

    let gc = l.run(&["gc"]);
    expect_ok(&gc);
    eprintln!("gc after kill:\n{}", gc.stdout);
    assert!(
        work_leftovers(&l).is_empty(),
        "gc must remove work dirs: {:?}\n{}",
        work_leftovers(&l),
        gc.dump()
    );
    assert!(
        partial_downloads(&l).is_empty(),
        "gc must remove partial downloads: {:?}\n{}",
        partial_downloads(&l),
        gc.dump()
    );
    if !leftovers.is_empty() {
        let text = said(&gc).to_lowercase();
        assert!(
            ["work-", "leftover", "freed", "removed"]
                .iter()
                .any(|w| text.contains(w)),
            "gc must report what it freed ({leftovers:?})\n{}",
            gc.dump()
        );
    }
    // gc leaves the named image alone.
    assert_installed(&l, "slow", &hex);
}

#[test]
fn concurrent_pulls_share_one_tree() {
    let l = Locker::new();
    let server = Server::start();
    let data = fixture_tar().to_vec();
    let hex = sha256_hex(&data);
    let url = server.serve_with(
        "/f.tar",
        data,
        Behaviour {
            chunk: 32 * 1024,
            delay: Some(Duration::from_millis(15)),
            ..Default::default()
        },
    );
    let cat = write_catalog(&l, &pinned("fixture", &["fx"], &url, &hex));
    let (a, b, during) = std::thread::scope(|scope| {
        let a = scope.spawn(|| pull(&l, &cat, "fixture"));
        let b = scope.spawn(|| pull(&l, &cat, "fx"));
        wait_for(Duration::from_secs(60), "the first bytes of a pull", || {
            server.bytes_served() > 0 || (a.is_finished() && b.is_finished())
        });
        let during = l.run(&["images"]);
        (a.join().unwrap(), b.join().unwrap(), during)
    });
    expect_ok(&during);
    expect_ok(&a);
    expect_ok(&b);
    assert_eq!(
        trees(&l),
        vec![hex.clone()],
        "exactly one tree\n{}\n{}",
        a.dump(),
        b.dump()
    );
    assert_eq!(ref_names(&l), vec!["fixture".to_string()]);
    assert_installed(&l, "fixture", &hex);
    assert!(work_leftovers(&l).is_empty(), "{:?}", work_leftovers(&l));
}

// ---------------------------------------------------------------- rmi, catalog, gc

#[test]
fn rmi_frees_a_tree_with_its_last_name() {
    let l = Locker::new();
    let data = compress(fixture_tar(), "gzip");
    let hex = sha256_hex(&data);
    expect_ok(&import_file(&l, &data, "f.tar.gz", "one", &[]));
    expect_ok(&import_file(&l, &data, "f.tar.gz", "two", &[]));
    assert_eq!(
        trees(&l),
        vec![hex.clone()],
        "two names for one archive share one tree"
    );
    assert_eq!(ref_names(&l), vec!["one".to_string(), "two".to_string()]);

    l.ok(&["rmi", "one"]);
    assert_eq!(
        trees(&l),
        vec![hex.clone()],
        "the tree stays while `two` refers to it"
    );
    assert_eq!(ref_names(&l), vec!["two".to_string()]);
    assert_installed(&l, "two", &hex);

    let before = snapshot(&l);
    for args in [vec!["rmi", "ghost"], vec!["rmi", "two", "ghost"]] {
        let r = l.run(&args);
        expect_fail(&r);
        assert!(
            r.stderr.contains("ghost"),
            "error must name the unknown image\n{}",
            r.dump()
        );
        assert_eq!(
            snapshot(&l),
            before,
            "a failed rmi changes nothing\n{}",
            r.dump()
        );
    }

    l.ok(&["rmi", "two"]);
    assert!(
        trees(&l).is_empty(),
        "the last name's tree is freed: {:?}",
        trees(&l)
    );
    assert!(ref_names(&l).is_empty());
    assert!(image_list(&l).is_empty());
    assert!(
        names_in(&l.root().join("tmp"))
            .iter()
            .all(|n| !n.starts_with("trash-")),
        "{:?}",
        names_in(&l.root().join("tmp"))
    );
}

#[test]
fn catalog_lists_the_extra_layer_with_aliases() {
    let l = Locker::new();
    let hex = sha256_hex(b"x");
    let text = format!(
        "{}\n[images.signed-one]\naliases = [\"so\"]\nurl = \"http://127.0.0.1:9/s.tar.xz\"\nchecksums = \"http://127.0.0.1:9/SHA256SUMS\"\nsignature = \"http://127.0.0.1:9/SHA256SUMS.gpg\"\nkeyring = \"/nonexistent/k.gpg\"\n",
        pinned("fixture", &["fx", "fixture-latest"], "http://127.0.0.1:9/f.tar", &hex)
    );
    let cat = write_catalog(&l, &text);
    let out = l.ok(&["--catalog", &cat, "catalog"]);
    for word in ["fixture", "fx", "fixture-latest", "signed-one", "so"] {
        assert!(
            out.split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| w == word),
            "catalog must list {word}:\n{out}"
        );
    }
    let json = l.ok(&["--catalog", &cat, "catalog", "--json"]);
    let v: Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("catalog --json is not JSON ({e}):\n{json}"));
    let entries = as_list(v, "images");
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in catalog --json:\n{json}"))
    };
    let aliases = |e: &Value| -> Vec<String> {
        e["aliases"]
            .as_array()
            .unwrap_or_else(|| panic!("no aliases array: {e}"))
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        aliases(find("fixture")),
        vec!["fx".to_string(), "fixture-latest".to_string()]
    );
    assert_eq!(aliases(find("signed-one")), vec!["so".to_string()]);
    assert!(
        json.contains(&hex),
        "the pinned digest belongs in catalog --json:\n{json}"
    );
    // Listing the catalog touches no store.
    assert!(trees(&l).is_empty() && ref_names(&l).is_empty());
}

#[test]
fn gc_on_a_clean_store_frees_nothing() {
    let l = Locker::new();
    let r = l.run(&["gc"]);
    expect_ok(&r);

    let data = compress(fixture_tar(), "gzip");
    let hex = sha256_hex(&data);
    expect_ok(&import_file(&l, &data, "f.tar.gz", "kept", &[]));
    let before = snapshot(&l);
    let r = l.run(&["gc"]);
    expect_ok(&r);
    assert!(
        !said(&r).contains(&hex[..12]),
        "gc must not touch a named image\n{}",
        r.dump()
    );
    assert_eq!(
        snapshot(&l),
        before,
        "gc changed a clean store\n{}",
        r.dump()
    );
    assert_installed(&l, "kept", &hex);
}

/// `tar::Builder` leaves uid/gid NUL-filled unless they are set, as some other writers
/// do; GNU tar, busybox tar and Python's tarfile read such fields as 0.
#[test]
fn archives_with_empty_owner_fields_import() {
    let l = Locker::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "hello", &b"hi\n"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    assert!(
        tar[108..124].iter().all(|&c| c == 0),
        "fixture must have empty uid/gid fields"
    );
    let r = import_file(&l, &tar, "nul-owner.tar", "nul", &[]);
    expect_ok(&r);
    let tree = l.root().join("rootfs").join(sha256_hex(&tar));
    assert_eq!(fs::read(tree.join("hello")).unwrap(), b"hi\n");
    assert_eq!(fs::metadata(tree.join("hello")).unwrap().uid(), 0);
}

/// A tmpfs this test mounts (and always unmounts) to play a full disk.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn new(at: PathBuf, size: &str) -> SmallDisk {
        fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs on {}", at.display());
        SmallDisk(at)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_a_clear_error_and_installs_nothing() {
    let l = Locker::new();
    // The store on a 1 MiB filesystem: the fixture's busybox alone is larger.
    let _disk = SmallDisk::new(l.root(), "1m");
    let data = compress(fixture_tar(), "gzip");
    let r = import_file(&l, &data, "f.tar.gz", "full", &[]);
    expect_fail(&r);
    assert!(r.stderr.contains("No space left on device"), "{}", r.dump());
    assert!(
        r.stderr.contains("free some disk space"),
        "the error says what to do\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);
    // The store is still readable.
    l.ok(&["images"]);
}

#[test]
fn missing_keyring_is_named_before_any_download() {
    let l = Locker::new();
    let server = Server::start();
    let url = server.serve("/f.tar", fixture_tar().to_vec());
    let sums = server.serve("/SHA256SUMS", b"00  f.tar\n".to_vec());
    let sig = server.serve("/SHA256SUMS.gpg", b"sig".to_vec());
    let keyring = l.path("no-such-keyring.gpg");
    let cat = write_catalog(
        &l,
        &format!(
            "[images.k]\nurl = \"{url}\"\nchecksums = \"{sums}\"\nsignature = \"{sig}\"\nkeyring = \"{}\"\n",
            keyring.display()
        ),
    );
    let r = l.run(&["--catalog", &cat, "pull", "k"]);
    expect_fail(&r);
    assert!(
        r.stderr.contains(&keyring.display().to_string()),
        "names the keyring\n{}",
        r.dump()
    );
    assert_nothing_installed(&l, &r);
    assert!(
        server.requests().is_empty(),
        "nothing fetched: {:?}",
        server.requests()
    );
}
