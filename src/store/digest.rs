//! `Digest`: a sha256 as the store uses it to name images. Parsed once from hex,
//! compared as bytes, printed as lowercase hex (full, or 12 characters for humans).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest([u8; 32]);

#[derive(Debug, thiserror::Error)]
#[error("not a sha256 digest (want 64 hex characters): {0:?}")]
pub(crate) struct BadDigest(pub String);

impl Digest {
    pub(crate) fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    pub(crate) fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The 12-character prefix `images` shows, as Docker does.
    pub(crate) fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl FromStr for Digest {
    type Err = BadDigest;

    /// Accepts 64 hex digits, optionally prefixed `sha256:`, any case.
    fn from_str(s: &str) -> Result<Self, BadDigest> {
        let hex_part = s.trim().strip_prefix("sha256:").unwrap_or(s.trim());
        let mut out = [0u8; 32];
        if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut out).is_err() {
            return Err(BadDigest(s.to_string()));
        }
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// A `Write` sink that hashes everything written to it.
#[derive(Default)]
pub(crate) struct Hasher(Sha256);

impl Hasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(crate) fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_hex() {
        let d = Digest::of(b"abc");
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(d.hex(), hex);
        assert_eq!(d.short(), "ba7816bf8f01");
        assert_eq!(hex.parse::<Digest>().unwrap(), d);
        assert_eq!(
            format!("sha256:{}", hex.to_uppercase())
                .parse::<Digest>()
                .unwrap(),
            d
        );
    }

    #[test]
    fn rejects_bad_hex() {
        assert!("abc".parse::<Digest>().is_err());
        assert!("zz".repeat(32).parse::<Digest>().is_err());
    }

    #[test]
    fn hasher_matches_one_shot() {
        let mut h = Hasher::default();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), Digest::of(b"abc"));
    }
}
