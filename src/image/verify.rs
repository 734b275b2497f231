//! Verification: sha256 lines from SHA256SUMS-style files, and OpenPGP signatures
//! checked by the system's `gpgv` against one keyring.
//!
//! Invariants: a signature is good only if gpgv reports a `VALIDSIG` from a key in the
//! given keyring and no `BADSIG`; gpgv runs with an empty private `--homedir`, so keys
//! from the user's own `trustedkeys.kbx` are never consulted. The parsers are pure.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;

use crate::store::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    #[error("the checksums file lists no sha256 for {file}")]
    NotListed { file: String },
    #[error("the checksums file lists two different sha256 for {file}: {first} and {second}")]
    Conflicting {
        file: String,
        first: Digest,
        second: Digest,
    },
    #[error(
        "sha256 mismatch for {what}: expected {expected}, got {actual}; the download was discarded"
    )]
    Mismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "keyring {path} not found; install the package that ships it (Debian's: debian-archive-keyring; Ubuntu's: ubuntu-keyring, in trixie and bookworm-backports) or name another (`keyring` in the catalog, or `locker build --keyring`)"
    )]
    KeyringMissing { path: PathBuf },
    #[error("keyring {path}: {reason}")]
    BadKeyring { path: PathBuf, reason: String },
    #[error("gpgv is not installed; it checks signatures: apt-get install gpgv")]
    GpgvMissing,
    #[error("signed by unknown key {key}; not in {keyring}")]
    UnknownKey { key: String, keyring: PathBuf },
    #[error(
        "signed by {got}, not by the key the catalog pins ({expected}); the download was discarded"
    )]
    WrongSigner { expected: String, got: String },
    #[error("BAD signature by key {key}: the data does not match its signature (corrupted or tampered with)")]
    BadSignature { key: String },
    #[error("no valid signature ({detail})")]
    NotValid { detail: String },
    #[error("run gpgv")]
    Gpgv {
        #[source]
        source: io::Error,
    },
    #[error("temporary file {path} for gpgv")]
    TempFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The digest a checksums file lists for `file_name`.
///
/// Accepts GNU coreutils lines (`HEX  name`, `HEX *name`, `./name`, `\`-escaped names),
/// BSD lines (`SHA256 (name) = HEX`), and a file holding one bare digest and no names
/// (`rootfs.tar.xz.sha256`). Other lines (PGP armor, other algorithms) are ignored.
pub(crate) fn lookup_sha256sums(sums: &[u8], file_name: &str) -> Result<Digest, VerifyError> {
    let text = String::from_utf8_lossy(sums);
    let entries: Vec<(Digest, Option<String>)> = text.lines().filter_map(parse_sums_line).collect();
    let wanted = file_name.strip_prefix("./").unwrap_or(file_name);

    let exact: Vec<Digest> = entries
        .iter()
        .filter(|(_, n)| n.as_deref() == Some(wanted))
        .map(|(d, _)| *d)
        .collect();
    // A list made from a parent directory names `dir/file`; accept that when the bare
    // name is not listed itself.
    let found = if exact.is_empty() {
        entries
            .iter()
            .filter(|(_, n)| n.as_deref().and_then(|n| n.rsplit('/').next()) == Some(wanted))
            .map(|(d, _)| *d)
            .collect()
    } else {
        exact
    };
    if let Some(first) = found.first() {
        return match found.iter().find(|d| *d != first) {
            Some(second) => Err(VerifyError::Conflicting {
                file: file_name.into(),
                first: *first,
                second: *second,
            }),
            None => Ok(*first),
        };
    }

    let bare: BTreeSet<Digest> = entries.iter().map(|(d, _)| *d).collect();
    if entries.iter().all(|(_, n)| n.is_none()) && bare.len() == 1 {
        return Ok(*bare.first().expect("one digest"));
    }
    Err(VerifyError::NotListed {
        file: file_name.into(),
    })
}

/// One checksums line: its digest and the file name, if it has one.
fn parse_sums_line(line: &str) -> Option<(Digest, Option<String>)> {
    let line = line.trim_end_matches('\r');
    if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (name, hex) = rest.rsplit_once(") = ")?;
        return Some((hex.trim().parse().ok()?, Some(clean_name(name))));
    }
    // coreutils prefixes the line with `\` when the name holds `\` or a newline.
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let line = line.trim_start();
    let (hex, rest) = line
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((line, ""));
    if hex.len() != 64 {
        return None;
    }
    let digest = hex.parse().ok()?;
    let name = rest.trim_start_matches([' ', '\t']);
    let name = name.strip_prefix('*').unwrap_or(name);
    if name.is_empty() {
        return Some((digest, None));
    }
    let name = if escaped {
        name.replace("\\n", "\n").replace("\\\\", "\\")
    } else {
        name.to_string()
    };
    Some((digest, Some(clean_name(&name))))
}

fn clean_name(name: &str) -> String {
    name.strip_prefix("./").unwrap_or(name).to_string()
}

/// Where the keys gpgv trusts come from: a keyring file, or bytes compiled into locker.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeySource<'a> {
    File(&'a Path),
    Builtin { name: &'a str, bytes: &'a [u8] },
}

/// Checks a detached OpenPGP `signature` (binary or armored) over `data` against `keyring`.
pub(crate) fn check_signature(
    data: &[u8],
    signature: &[u8],
    keyring: &Path,
) -> Result<(), VerifyError> {
    check_signature_by(data, signature, KeySource::File(keyring), None)
}

/// [`check_signature`] with the keys from `keys`, and, when `signer` is given, only a
/// signature by that key (primary or subkey fingerprint) counts.
pub(crate) fn check_signature_by(
    data: &[u8],
    signature: &[u8],
    keys: KeySource<'_>,
    signer: Option<&str>,
) -> Result<(), VerifyError> {
    let tmp = TempDir::new()?;
    let sig = tmp.write("data.sig", signature)?;
    let dat = tmp.write("data", data)?;
    let signers = run_gpgv(&tmp, keys, &[sig.as_os_str(), dat.as_os_str()])?;
    match signer {
        Some(want) if !signers.iter().any(|s| s.eq_ignore_ascii_case(want)) => {
            Err(VerifyError::WrongSigner {
                expected: want.to_string(),
                got: signers.join(", "),
            })
        }
        _ => Ok(()),
    }
}

/// Checks an inline-signed document (apt's InRelease, `gpg --clearsign`) against `keyring`
/// and returns only the signed content, exactly as gpgv extracts it: text around the
/// signed block is never returned.
pub(crate) fn verify_cleartext(signed: &[u8], keyring: &Path) -> Result<Vec<u8>, VerifyError> {
    let tmp = TempDir::new()?;
    let input = tmp.write("signed.asc", signed)?;
    let output = tmp.path.join("content");
    run_gpgv(
        &tmp,
        KeySource::File(keyring),
        &[
            OsStr::new("--output"),
            output.as_os_str(),
            input.as_os_str(),
        ],
    )?;
    fs::read(&output).map_err(|source| VerifyError::TempFile {
        path: output,
        source,
    })
}

const ARMORED_KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// Runs gpgv; on a good signature returns the fingerprints (key and primary) it was made by.
fn run_gpgv(
    tmp: &TempDir,
    keyring: KeySource<'_>,
    args: &[&OsStr],
) -> Result<Vec<String>, VerifyError> {
    let keyring = usable_keyring(tmp, keyring)?;
    let out = Command::new("gpgv")
        // An empty home: only `--keyring` is trusted, never ~/.gnupg/trustedkeys.kbx.
        .arg("--homedir")
        .arg(&tmp.path)
        .args(["--status-fd", "1", "--keyring"])
        .arg(&keyring.used)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => VerifyError::GpgvMissing,
            _ => VerifyError::Gpgv { source },
        })?;
    judge_status(
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
        &keyring.named,
    )
}

/// Decides from gpgv's status lines (doc/DETAILS in GnuPG), not its exit code: gpgv
/// exits 2 when one of several signatures is from a key we do not have (Debian signs
/// InRelease with more than one key), and 0 for a good signature by an expired key.
fn judge_status(status: &str, stderr: &str, keyring: &Path) -> Result<Vec<String>, VerifyError> {
    let mut valid = false;
    let mut signers = Vec::new();
    let mut unknown = None;
    let mut refused = Vec::new();
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let keyword = words.next().unwrap_or("");
        let key = words.next().unwrap_or("?").to_string();
        match keyword {
            "VALIDSIG" => {
                valid = true;
                // VALIDSIG <fpr> <date> <ts> <expire> <ver> <reserved> <algo> <hash>
                // <class> <primary fpr>
                signers.push(key.clone());
                signers.extend(words.nth(8).map(str::to_string));
            }
            "BADSIG" => return Err(VerifyError::BadSignature { key: who(rest) }),
            "NO_PUBKEY" => unknown = Some(key),
            // A revoked key or an expired signature is refused even if the maths holds.
            // An expired *key* (EXPKEYSIG + VALIDSIG) is accepted: old release keys still
            // sign old, immutable images.
            "REVKEYSIG" => refused.push(format!("key {} was revoked", who(rest))),
            "EXPSIG" => refused.push(format!("signature by {} has expired", who(rest))),
            "NODATA" => refused.push("no OpenPGP signature found in the input".into()),
            _ => {}
        }
    }
    if !refused.is_empty() {
        return Err(VerifyError::NotValid {
            detail: refused.join("; "),
        });
    }
    if valid {
        return Ok(signers);
    }
    if let Some(key) = unknown {
        return Err(VerifyError::UnknownKey {
            key,
            keyring: keyring.to_path_buf(),
        });
    }
    let last = stderr.lines().map(str::trim).rfind(|l| !l.is_empty());
    let detail = last.map(|l| l.trim_start_matches("gpgv: ").to_string());
    Err(VerifyError::NotValid {
        detail: detail.unwrap_or_else(|| "gpgv reported no good signature".into()),
    })
}

/// `KEYID user id` from a status line's arguments, for messages.
fn who(rest: &str) -> String {
    rest.split_once(' ').map_or("?", |(_, who)| who).to_string()
}

struct Keyring {
    /// What gpgv reads: absolute, and binary.
    used: PathBuf,
    /// What the user named, for messages.
    named: PathBuf,
}

/// gpgv resolves a relative `--keyring` against its home directory and (2.2) cannot read
/// armored keys, so make the path absolute and dearmor `.asc` keyrings into `tmp`.
fn usable_keyring(tmp: &TempDir, keys: KeySource<'_>) -> Result<Keyring, VerifyError> {
    let keyring = match keys {
        KeySource::File(path) => path,
        KeySource::Builtin { name, bytes } => {
            let used = tmp.write("builtin.gpg", bytes)?;
            let named = PathBuf::from(format!("<built-in key: {name}>"));
            return Ok(Keyring { used, named });
        }
    };
    let named = keyring.to_path_buf();
    let missing = || VerifyError::KeyringMissing {
        path: named.clone(),
    };
    let bytes = fs::read(keyring).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => missing(),
        _ => VerifyError::BadKeyring {
            path: named.clone(),
            reason: e.to_string(),
        },
    })?;
    if bytes.is_empty() {
        return Err(VerifyError::BadKeyring {
            path: named,
            reason: "the file is empty".into(),
        });
    }
    if bytes
        .windows(ARMORED_KEY.len())
        .any(|w| w == ARMORED_KEY.as_bytes())
    {
        let binary = dearmor(&String::from_utf8_lossy(&bytes)).map_err(|reason| {
            VerifyError::BadKeyring {
                path: named.clone(),
                reason,
            }
        })?;
        let used = tmp.write("keyring.gpg", &binary)?;
        return Ok(Keyring { used, named });
    }
    let used = std::path::absolute(keyring).map_err(|e| VerifyError::BadKeyring {
        path: named.clone(),
        reason: e.to_string(),
    })?;
    Ok(Keyring { used, named })
}

/// The binary packets of every `PUBLIC KEY BLOCK` in ASCII armor (RFC 4880 §6.2).
/// The CRC line is skipped: gpgv rejects malformed packets itself.
fn dearmor(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(|l| l.trim_end());
    let mut blocks = 0;
    while lines.by_ref().any(|l| l == ARMORED_KEY) {
        // Armor headers (`Comment: ...`) run up to the first empty line.
        let mut b64 = String::new();
        let mut in_headers = true;
        let mut ended = false;
        for line in lines.by_ref() {
            if line.starts_with("-----END PGP PUBLIC KEY BLOCK") {
                ended = true;
                break;
            }
            if in_headers {
                in_headers = false;
                if line.contains(": ") {
                    in_headers = true;
                    continue;
                }
                if line.is_empty() {
                    continue;
                }
            }
            if line.starts_with('=') {
                continue;
            }
            b64.push_str(line.trim());
        }
        if !ended {
            return Err("armored key block has no END line".into());
        }
        let packets = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("armored key block is not valid base64: {e}"))?;
        out.extend(packets);
        blocks += 1;
    }
    if blocks == 0 {
        return Err("no PGP PUBLIC KEY BLOCK in the armored keyring".into());
    }
    Ok(out)
}

/// A private (0700) directory under the system temp dir, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<Self, VerifyError> {
        use std::os::unix::fs::DirBuilderExt;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut last = None;
        for _ in 0..8 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("locker-gpgv-{}-{n}-{nanos:x}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(source) => return Err(VerifyError::TempFile { path, source }),
            }
        }
        let (path, source) = last.expect("tried at least once");
        Err(VerifyError::TempFile { path, source })
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, VerifyError> {
        let path = self.path.join(name);
        fs::write(&path, bytes).map_err(|source| VerifyError::TempFile {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const B: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn d(hex: &str) -> Digest {
        hex.parse().unwrap()
    }

    #[test]
    fn sums_gnu_lines() {
        let sums = format!("{B}  other.tar.xz\n{A}  rootfs.tar.xz\n");
        assert_eq!(
            lookup_sha256sums(sums.as_bytes(), "rootfs.tar.xz").unwrap(),
            d(A)
        );
        assert_eq!(
            lookup_sha256sums(sums.as_bytes(), "other.tar.xz").unwrap(),
            d(B)
        );
    }

    #[test]
    fn sums_binary_marker_dot_slash_crlf_and_uppercase() {
        let sums = format!("{B} *bin.img\r\n{}  ./rootfs.tar.xz\r\n", A.to_uppercase());
        assert_eq!(lookup_sha256sums(sums.as_bytes(), "bin.img").unwrap(), d(B));
        assert_eq!(
            lookup_sha256sums(sums.as_bytes(), "rootfs.tar.xz").unwrap(),
            d(A)
        );
        assert_eq!(
            lookup_sha256sums(sums.as_bytes(), "./rootfs.tar.xz").unwrap(),
            d(A)
        );
    }

    #[test]
    fn sums_bsd_lines() {
        let sums = format!("SHA256 (rootfs.tar.xz) = {A}\nSHA256 (./b) = {B}\nMD5 (x) = 00\n");
        assert_eq!(
            lookup_sha256sums(sums.as_bytes(), "rootfs.tar.xz").unwrap(),
            d(A)
        );
        assert_eq!(lookup_sha256sums(sums.as_bytes(), "b").unwrap(), d(B));
    }

    #[test]
    fn sums_subdirectory_and_escaped_names() {
        let sums = format!("{A}  images/rootfs.tar.xz\n\\{B}  we\\\\ird\n");
        assert_eq!(
            lookup_sha256sums(sums.as_bytes(), "rootfs.tar.xz").unwrap(),
            d(A)
        );
        assert_eq!(lookup_sha256sums(sums.as_bytes(), "we\\ird").unwrap(), d(B));
    }

    #[test]
    fn sums_ignore_armor_and_other_lines() {
        let sums = format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{A}  r.tar\n# c\n");
        assert_eq!(lookup_sha256sums(sums.as_bytes(), "r.tar").unwrap(), d(A));
    }

    #[test]
    fn sums_missing_name_is_an_error_naming_the_file() {
        let sums = format!("{A}  rootfs.tar.xz\n");
        let err = lookup_sha256sums(sums.as_bytes(), "missing.tar.xz").unwrap_err();
        assert!(matches!(err, VerifyError::NotListed { .. }));
        assert!(err.to_string().contains("missing.tar.xz"), "{err}");
        assert!(matches!(
            lookup_sha256sums(b"", "x").unwrap_err(),
            VerifyError::NotListed { .. }
        ));
    }

    #[test]
    fn sums_conflicting_duplicates() {
        let sums = format!("{A}  r.tar\n{B}  ./r.tar\n");
        let err = lookup_sha256sums(sums.as_bytes(), "r.tar").unwrap_err();
        assert!(matches!(err, VerifyError::Conflicting { .. }), "{err}");
        assert!(err.to_string().contains("r.tar"));
        // The same digest twice is fine.
        let sums = format!("{A}  r.tar\n{A} *./r.tar\n");
        assert_eq!(lookup_sha256sums(sums.as_bytes(), "r.tar").unwrap(), d(A));
    }

    #[test]
    fn sums_single_bare_digest() {
        assert_eq!(
            lookup_sha256sums(format!("{A}\n").as_bytes(), "anything.tar").unwrap(),
            d(A)
        );
        // Two bare digests, or a bare digest beside named ones, name nothing.
        let two = format!("{A}\n{B}\n");
        assert!(lookup_sha256sums(two.as_bytes(), "x").is_err());
        let mixed = format!("{A}\n{B}  other\n");
        assert!(lookup_sha256sums(mixed.as_bytes(), "x").is_err());
    }

    #[test]
    fn mismatch_message() {
        let e = VerifyError::Mismatch {
            what: "ubuntu-18.04".into(),
            expected: d(A),
            actual: d(B),
        };
        assert_eq!(
            e.to_string(),
            format!("sha256 mismatch for ubuntu-18.04: expected {A}, got {B}; the download was discarded")
        );
    }

    #[test]
    fn dearmor_skips_headers_and_crc() {
        let armored =
            format!("junk\n{ARMORED_KEY}\nComment: x\n\naGVs\nbG8=\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n");
        assert_eq!(dearmor(&armored).unwrap(), b"hello");
        assert!(dearmor("nothing").is_err());
        assert!(dearmor(&format!("{ARMORED_KEY}\n\naGVs\n")).is_err());
    }

    /// A throw-away GnuPG home with one signing key; gpg must be installed.
    pub(crate) struct Gpg {
        dir: tempfile::TempDir,
    }

    impl Gpg {
        pub(crate) fn new(uid: &str) -> Gpg {
            Gpg::generate(uid, "never", &[])
        }

        /// A key with lifetime `expire`, made at a faked time given as `pre` options.
        fn generate(uid: &str, expire: &str, pre: &[&str]) -> Gpg {
            let g = Gpg {
                dir: tempfile::tempdir().unwrap(),
            };
            g.run_with(
                pre,
                &[
                    "--batch",
                    "--passphrase",
                    "",
                    "--quick-gen-key",
                    uid,
                    "ed25519",
                    "sign",
                    expire,
                ],
            );
            g
        }

        fn home(&self) -> &Path {
            self.dir.path()
        }

        fn run_with(&self, pre: &[&str], args: &[&str]) -> Vec<u8> {
            let out = Command::new("gpg")
                .arg("--homedir")
                .arg(self.home())
                .args(pre)
                .args(args)
                .output()
                .unwrap_or_else(|e| {
                    panic!("gpg is needed for these tests ({e}): install gnupg (apt-get install gnupg)")
                });
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }

        fn run(&self, args: &[&str]) -> Vec<u8> {
            self.run_with(&[], args)
        }

        pub(crate) fn keyring(&self, armor: bool) -> PathBuf {
            let path = self
                .home()
                .join(if armor { "keyring.asc" } else { "keyring.gpg" });
            let key = if armor {
                self.run(&["--armor", "--export"])
            } else {
                self.run(&["--export"])
            };
            fs::write(&path, key).unwrap();
            path
        }

        pub(crate) fn sign(&self, data: &[u8], how: &[&str]) -> Vec<u8> {
            let input = self.home().join("input");
            let output = self.home().join("output");
            let _ = fs::remove_file(&output);
            fs::write(&input, data).unwrap();
            let mut args = vec!["--batch", "--yes"];
            args.extend(how);
            args.extend(["-o", output.to_str().unwrap(), input.to_str().unwrap()]);
            self.run(&args);
            fs::read(output).unwrap()
        }
    }

    impl Drop for Gpg {
        /// gpg starts a gpg-agent per home; stop ours rather than leave it running.
        fn drop(&mut self) {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(self.home())
                .args(["--kill", "all"])
                .stderr(Stdio::null())
                .status();
        }
    }

    const UID: &str = "locker test <t@example.invalid>";

    #[test]
    fn signatures_with_a_real_key() {
        let signer = Gpg::new(UID);
        let keyring = signer.keyring(false);
        let data = b"ba78  rootfs.tar.xz\n".to_vec();
        let sig = signer.sign(&data, &["--detach-sign"]);

        check_signature(&data, &sig, &keyring).expect("good signature");

        let mut tampered = data.clone();
        tampered[0] ^= 1;
        let err = check_signature(&tampered, &sig, &keyring).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");

        let other = Gpg::new("someone else <o@example.invalid>");
        let other_keyring = other.keyring(false);
        let err = check_signature(&data, &sig, &other_keyring).unwrap_err();
        assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("signed by unknown key "), "{msg}");
        assert!(msg.contains(other_keyring.to_str().unwrap()), "{msg}");

        let missing = signer.home().join("nope.gpg");
        let err = check_signature(&data, &sig, &missing).unwrap_err();
        assert!(matches!(err, VerifyError::KeyringMissing { .. }), "{err}");
        assert!(
            err.to_string().contains("nope.gpg")
                && err.to_string().contains("`keyring` in the catalog")
        );

        let armored = signer.keyring(true);
        check_signature(&data, &sig, &armored).expect("armored keyring is dearmored");
        let armored_sig = signer.sign(&data, &["--detach-sign", "--armor"]);
        check_signature(&data, &armored_sig, &keyring).expect("armored signature");

        let err = check_signature(&data, b"not a signature", &keyring).unwrap_err();
        assert!(matches!(err, VerifyError::NotValid { .. }), "{err}");
    }

    #[test]
    fn relative_keyring_path_is_made_absolute() {
        let signer = Gpg::new(UID);
        let keyring = signer.keyring(false);
        let data = b"data".to_vec();
        let sig = signer.sign(&data, &["--detach-sign"]);
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(&keyring, &cwd);
        check_signature(&data, &sig, &rel).expect("relative keyring");
    }

    /// `to` relative to `from` via `..`s (both absolute).
    fn pathdiff(to: &Path, from: &Path) -> PathBuf {
        let mut rel = PathBuf::new();
        for _ in from.components().skip(1) {
            rel.push("..");
        }
        rel.join(to.strip_prefix("/").unwrap())
    }

    #[test]
    fn cleartext_signed_documents() {
        let signer = Gpg::new(UID);
        let keyring = signer.keyring(false);
        let content = b"Origin: Test\nSuite: stable\nSHA256:\n abc 12 main/Packages\n".to_vec();
        let signed = signer.sign(&content, &["--clearsign"]);
        assert_eq!(verify_cleartext(&signed, &keyring).unwrap(), content);

        // Text outside the signed block is not returned.
        let mut wrapped = b"Injected: yes\n".to_vec();
        wrapped.extend(&signed);
        wrapped.extend(b"Injected: after\n");
        assert_eq!(verify_cleartext(&wrapped, &keyring).unwrap(), content);

        let text = String::from_utf8(signed.clone()).unwrap();
        let tampered = text.replace("Suite: stable", "Suite: evil!");
        let err = verify_cleartext(tampered.as_bytes(), &keyring).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");

        let err = verify_cleartext(&content, &keyring).unwrap_err();
        assert!(matches!(err, VerifyError::NotValid { .. }), "{err}");
    }

    #[test]
    fn expired_key_with_valid_signature_is_accepted() {
        // Key and signature made "in 2020" with a one-day lifetime: EXPKEYSIG + VALIDSIG.
        let signer = Gpg::generate(UID, "1d", &["--faked-system-time", "20200101T000000"]);
        let keyring = signer.keyring(false);
        let input = signer.home().join("old");
        fs::write(&input, b"old release").unwrap();
        let sig = signer.home().join("old.sig");
        signer.run_with(
            &["--faked-system-time", "20200101T010000"],
            &[
                "--batch",
                "--detach-sign",
                "-o",
                sig.to_str().unwrap(),
                input.to_str().unwrap(),
            ],
        );
        check_signature(b"old release", &fs::read(sig).unwrap(), &keyring)
            .expect("expired key, valid sig");
    }

    #[test]
    fn status_lines_decide() {
        let k = Path::new("/k.gpg");
        let good = "[GNUPG:] GOODSIG AB x\n[GNUPG:] VALIDSIG FPR 2020\n";
        assert!(judge_status(good, "", k).is_ok());
        // One good signature beside one from a key we lack (multi-signed InRelease).
        let multi = format!("{good}[GNUPG:] ERRSIG CD 22\n[GNUPG:] NO_PUBKEY CD\n");
        assert!(judge_status(&multi, "", k).is_ok());
        let unknown = "[GNUPG:] ERRSIG CD 22\n[GNUPG:] NO_PUBKEY CD\n";
        let err = judge_status(unknown, "", k).unwrap_err();
        assert_eq!(err.to_string(), "signed by unknown key CD; not in /k.gpg");
        let revoked = "[GNUPG:] REVKEYSIG AB x\n[GNUPG:] VALIDSIG FPR\n";
        assert!(matches!(
            judge_status(revoked, "", k),
            Err(VerifyError::NotValid { .. })
        ));
        let bad = "[GNUPG:] BADSIG AB x <y>\n";
        assert_eq!(
            judge_status(bad, "", k).unwrap_err().to_string(),
            "BAD signature by key AB x <y>: the data does not match its signature (corrupted or tampered with)"
        );
        let err = judge_status("", "gpgv: something odd\n", k).unwrap_err();
        assert_eq!(err.to_string(), "no valid signature (something odd)");
    }
}
