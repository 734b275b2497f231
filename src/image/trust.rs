//! Trust anchors: the OpenPGP keys that sign the catalog's sources, compiled into
//! locker, and the rule that picks the keyring a signature is checked against.
//!
//! Invariants: a built-in key is only ever used through its full fingerprint, which the
//! catalog entry pins (`fingerprint = "…"`); the signature must then be made by that key
//! whichever keyring checks it. A keyring the entry names (`keyring =`) always wins, then
//! the host's copy of the built-in key's keyring (Debian's `ubuntu-keyring` package),
//! then the compiled-in copy. The keys and how they were obtained: keys/README.md.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::image::verify::KeySource;

/// A full (v4, 40 hex digits) OpenPGP fingerprint, upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint(String);

impl std::str::FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hex: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{s:?} is not a full OpenPGP fingerprint (40 hex digits; a short or long key id is not enough)"
            ));
        }
        Ok(Fingerprint(hex.to_ascii_uppercase()))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Fingerprint {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// One compiled-in public key.
pub(crate) struct BuiltinKey {
    pub fingerprint: &'static str,
    pub name: &'static str,
    /// Where Debian's and Ubuntu's `ubuntu-keyring` package installs the keyring that
    /// holds this key; used instead of the built-in copy when present.
    pub host_keyring: &'static str,
    /// The key, exported alone (`gpg --export --export-options export-minimal`).
    pub bytes: &'static [u8],
}

/// The keys that sign the built-in catalog's sources (keys/README.md says how they were
/// obtained and checked).
pub(crate) const BUILTIN: &[BuiltinKey] = &[
    BuiltinKey {
        fingerprint: "D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81",
        name: "UEC Image Automatic Signing Key (Ubuntu cloud images)",
        host_keyring: "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
        bytes: include_bytes!("../../keys/ubuntu-cloudimage-7DB87C81.gpg"),
    },
    BuiltinKey {
        fingerprint: "843938DF228D22F7B3742BC0D94AA3F0EFE21092",
        name: "Ubuntu CD Image Automatic Signing Key (2012)",
        host_keyring: "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
        bytes: include_bytes!("../../keys/ubuntu-cdimage-2012-EFE21092.gpg"),
    },
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum TrustError {
    #[error(
        "no keyring for key {fingerprint}: it is not built into locker and no `keyring` is named; add `keyring = \"FILE\"` to the catalog entry"
    )]
    NoKeyring { fingerprint: Fingerprint },
    #[error("test key {path} (LOCKER_TEST_BUILTIN_KEY)")]
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    TestKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The keyring a signature is checked against, owned so an injected test key fits too.
#[derive(Debug)]
pub(crate) enum Anchor {
    Host(PathBuf),
    Builtin { name: String, bytes: Vec<u8> },
}

impl Anchor {
    pub(crate) fn source(&self) -> KeySource<'_> {
        match self {
            Anchor::Host(path) => KeySource::File(path),
            Anchor::Builtin { name, bytes } => KeySource::Builtin { name, bytes },
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Anchor::Host(path) => path.display().to_string(),
            Anchor::Builtin { name, .. } => format!("locker's built-in key ({name})"),
        }
    }
}

/// Picks the keyring for an entry: `keyring` if named, else the host copy of the built-in
/// key with `fingerprint`, else the built-in key itself.
pub(crate) fn resolve(
    keyring: Option<&Path>,
    fingerprint: Option<&Fingerprint>,
) -> Result<Anchor, TrustError> {
    if let Some(path) = keyring {
        return Ok(Anchor::Host(path.to_path_buf()));
    }
    let fingerprint = fingerprint.expect("the catalog requires a keyring or a fingerprint");
    if let Some(anchor) = test_key(fingerprint)? {
        return Ok(anchor);
    }
    let key = BUILTIN
        .iter()
        .find(|k| k.fingerprint == fingerprint.as_str())
        .ok_or_else(|| TrustError::NoKeyring {
            fingerprint: fingerprint.clone(),
        })?;
    let host = Path::new(key.host_keyring);
    if host.is_file() {
        return Ok(Anchor::Host(host.to_path_buf()));
    }
    Ok(Anchor::Builtin {
        name: key.name.to_string(),
        bytes: key.bytes.to_vec(),
    })
}

/// The test-only injection point: in debug builds (what `cargo test` runs),
/// `LOCKER_TEST_BUILTIN_KEY=FINGERPRINT:FILE` adds one key to the built-in set. Release
/// builds do not read it.
#[cfg(debug_assertions)]
fn test_key(fingerprint: &Fingerprint) -> Result<Option<Anchor>, TrustError> {
    let Some(value) = std::env::var_os("LOCKER_TEST_BUILTIN_KEY") else {
        return Ok(None);
    };
    let value = value.to_string_lossy();
    let Some((fpr, path)) = value.split_once(':') else {
        return Ok(None);
    };
    if fpr.parse::<Fingerprint>().ok().as_ref() != Some(fingerprint) {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|source| TrustError::TestKey {
        path: path.into(),
        source,
    })?;
    Ok(Some(Anchor::Builtin {
        name: format!("test key {fpr}"),
        bytes,
    }))
}

#[cfg(not(debug_assertions))]
fn test_key(_: &Fingerprint) -> Result<Option<Anchor>, TrustError> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// v4 fingerprints (RFC 4880 §12.2) of every primary key packet in `bytes`: SHA-1 of
    /// 0x99, the two-byte length and the packet body. Computed here, not by gpg.
    fn fingerprints(mut bytes: &[u8]) -> Vec<String> {
        use sha1::Digest as _;
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let tag = bytes[0];
            assert!(tag & 0x80 != 0, "not an OpenPGP packet");
            let (kind, len, header) = if tag & 0x40 != 0 {
                let kind = tag & 0x3f;
                let l0 = bytes[1] as usize;
                match l0 {
                    0..=191 => (kind, l0, 2),
                    192..=223 => (kind, ((l0 - 192) << 8) + bytes[2] as usize + 192, 3),
                    255 => (
                        kind,
                        u32::from_be_bytes(bytes[2..6].try_into().unwrap()) as usize,
                        6,
                    ),
                    _ => panic!("partial lengths do not occur in keys"),
                }
            } else {
                let kind = (tag >> 2) & 0x0f;
                match tag & 3 {
                    0 => (kind, bytes[1] as usize, 2),
                    1 => (kind, u16::from_be_bytes([bytes[1], bytes[2]]) as usize, 3),
                    2 => (
                        kind,
                        u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize,
                        5,
                    ),
                    _ => panic!("indeterminate length"),
                }
            };
            let body = &bytes[header..header + len];
            if kind == 6 {
                assert_eq!(body[0], 4, "v4 key");
                let mut h = sha1::Sha1::new();
                h.update([0x99]);
                h.update((len as u16).to_be_bytes());
                h.update(body);
                out.push(hex::encode_upper(h.finalize()));
            }
            bytes = &bytes[header + len..];
        }
        out
    }

    #[test]
    fn shipped_keys_have_the_pinned_fingerprints() {
        let want = [
            "D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81",
            "843938DF228D22F7B3742BC0D94AA3F0EFE21092",
        ];
        assert_eq!(BUILTIN.len(), want.len());
        for (key, want) in BUILTIN.iter().zip(want) {
            assert_eq!(key.fingerprint, want);
            assert_eq!(
                fingerprints(key.bytes),
                vec![want.to_string()],
                "{}",
                key.name
            );
        }
    }

    #[test]
    fn catalog_pins_only_shipped_keys() {
        let catalog = include_str!("../../images.toml");
        let mut pinned = 0;
        for line in catalog.lines() {
            if let Some(v) = line.strip_prefix("fingerprint = ") {
                let f: Fingerprint = v.trim_matches('"').parse().unwrap();
                assert!(BUILTIN.iter().any(|k| k.fingerprint == f.as_str()), "{f}");
                pinned += 1;
            }
        }
        assert!(pinned >= 9, "every Ubuntu entry pins its key");
    }

    #[test]
    fn fingerprint_parsing() {
        let f: Fingerprint = "d2eb 4462 6fdd c30b 513d  5bb7 1a5d 6c4c 7db8 7c81"
            .parse()
            .unwrap();
        assert_eq!(f.as_str(), BUILTIN[0].fingerprint);
        assert!("7DB87C81".parse::<Fingerprint>().is_err());
        assert!("1A5D6C4C7DB87C81".parse::<Fingerprint>().is_err());
        assert!("Z".repeat(40).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn named_keyring_wins_then_builtin() {
        let named = resolve(Some(Path::new("/k.gpg")), None).unwrap();
        assert!(matches!(named, Anchor::Host(p) if p == Path::new("/k.gpg")));
        let unknown: Fingerprint = "0".repeat(40).parse().unwrap();
        assert!(matches!(
            resolve(None, Some(&unknown)),
            Err(TrustError::NoKeyring { .. })
        ));
        let cloud: Fingerprint = BUILTIN[0].fingerprint.parse().unwrap();
        match resolve(None, Some(&cloud)).unwrap() {
            Anchor::Host(p) => assert_eq!(p, Path::new(BUILTIN[0].host_keyring)),
            Anchor::Builtin { bytes, .. } => assert_eq!(bytes, BUILTIN[0].bytes),
        }
    }
}
