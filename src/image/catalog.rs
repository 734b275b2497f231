//! The catalog: which images can be pulled or built, and how each is verified.
//!
//! Layers, each an images.toml with the same schema, later ones overriding earlier
//! entries by name: the default compiled in from the repository's images.toml, then
//! /etc/locker/images.toml, ~/.config/locker/images.toml, then `--catalog` /
//! `LOCKER_CATALOG`. Users write these files by hand, so unknown keys and entries that
//! could not be verified are errors naming the file, line and key: an image is never
//! fetched without a way to verify it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::image::trust::Fingerprint;
use crate::store::digest::Digest;

/// The catalog compiled into the binary.
const DEFAULT_CATALOG: &str = include_str!("../../images.toml");
const DEFAULT_NAME: &str = "<built-in images.toml>";

#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogError {
    #[error("read catalog {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog {file}, line {line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error("no image {name:?} in the catalog; `locker catalog` lists what can be pulled{hint}")]
    Unknown { name: String, hint: String },
}

/// How an image comes to be: downloaded and verified, or bootstrapped from an archive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(crate) enum Source {
    Download {
        url: String,
        verify: Verification,
    },
    Build(BuildSpec),
    /// An OCI image, pinned by digest (`oci = "REGISTRY/REPO@sha256:…"`): the digest
    /// verifies the manifest, which verifies the config and every layer.
    Oci {
        reference: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub(crate) enum Verification {
    /// The archive's sha256 is written in the catalog.
    Pinned { sha256: Digest },
    /// A SHA256SUMS file, whose detached OpenPGP signature is checked against `keyring`
    /// (or, when none is named, the built-in key with `fingerprint`: image/trust.rs),
    /// lists the archive's digest under its file name. With a `fingerprint`, only a
    /// signature by that key counts.
    Signed {
        checksums: String,
        signature: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        keyring: Option<PathBuf>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fingerprint: Option<Fingerprint>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildSpec {
    pub suite: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    #[serde(default)]
    pub mirror: Option<String>,
    #[serde(default)]
    pub include: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Entry {
    pub name: String,
    pub aliases: Vec<String>,
    pub arch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub source: Source,
    /// The layer this entry came from (a path, or the built-in marker).
    pub layer: String,
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

/// The on-disk form of one entry; `deny_unknown_fields` turns typos into errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    arch: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    checksums: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    keyring: Option<PathBuf>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    build: Option<BuildSpec>,
    #[serde(default)]
    oci: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    images: BTreeMap<String, toml::Spanned<RawEntry>>,
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    entries: BTreeMap<String, Entry>,
}

impl Catalog {
    /// The built-in catalog plus every layer that exists; `extra` (from `--catalog`)
    /// must exist.
    pub(crate) fn load(extra: Option<&Path>) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::default();
        catalog.add_layer(DEFAULT_NAME, DEFAULT_CATALOG)?;
        let mut layers = vec![PathBuf::from("/etc/locker/images.toml")];
        if let Some(home) = std::env::var_os("HOME") {
            layers.push(Path::new(&home).join(".config/locker/images.toml"));
        }
        for path in layers {
            // Root with another user's HOME (`sudo -E`) must not take that user's word
            // for what an image is: a catalog is read only from root or this user.
            if let Ok(m) = std::fs::metadata(&path) {
                use std::os::unix::fs::MetadataExt;
                let me = nix::unistd::geteuid().as_raw();
                if m.uid() != me && m.uid() != 0 {
                    let why = std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!(
                            "it belongs to uid {}, not to this user (unset HOME or fix its owner)",
                            m.uid()
                        ),
                    );
                    return Err(CatalogError::Read { path, source: why });
                }
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => catalog.add_layer(&path.display().to_string(), &text)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(CatalogError::Read { path, source }),
            }
        }
        if let Some(path) = extra {
            let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            catalog.add_layer(&path.display().to_string(), &text)?;
        }
        Ok(catalog)
    }

    /// Parses one layer and lets its entries replace earlier ones of the same name.
    pub(crate) fn add_layer(&mut self, file: &str, text: &str) -> Result<(), CatalogError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            CatalogError::Invalid {
                file: file.to_string(),
                line,
                message: e.message().to_string(),
            }
        })?;
        for (name, spanned) in raw.images {
            let line = line_of(text, spanned.span().start);
            let invalid = |message: String| CatalogError::Invalid {
                file: file.to_string(),
                line,
                message,
            };
            let entry = build_entry(&name, spanned.into_inner(), file).map_err(invalid)?;
            self.entries.insert(name, entry);
        }
        Ok(())
    }

    /// The entry called `name`, or the one that lists `name` among its aliases.
    pub(crate) fn find(&self, name: &str) -> Result<&Entry, CatalogError> {
        if let Some(entry) = self.entries.get(name) {
            return Ok(entry);
        }
        // Later layers win an alias too: the last entry claiming it by layer order is
        // the one a user most recently wrote, but BTreeMap order is by name, so prefer
        // entries from a non-default layer.
        let mut found: Option<&Entry> = None;
        for entry in self
            .entries
            .values()
            .filter(|e| e.aliases.iter().any(|a| a == name))
        {
            if found.is_none_or(|f| f.layer == DEFAULT_NAME) {
                found = Some(entry);
            }
        }
        found.ok_or_else(|| CatalogError::Unknown {
            name: name.to_string(),
            hint: self.suggest(name),
        })
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// ", did you mean …" for names sharing a prefix with `name`.
    fn suggest(&self, name: &str) -> String {
        let prefix: String = name.chars().take(3).collect();
        let close: Vec<&str> = self
            .entries
            .values()
            .flat_map(|e| std::iter::once(&e.name).chain(e.aliases.iter()))
            .filter(|n| !prefix.is_empty() && n.starts_with(&prefix))
            .map(String::as_str)
            .collect();
        if close.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", close.join(", "))
        }
    }
}

/// Validates one raw entry; the message names the offending key.
fn build_entry(name: &str, raw: RawEntry, layer: &str) -> Result<Entry, String> {
    check_name(name).map_err(|m| format!("image name {name:?}: {m}"))?;
    for alias in &raw.aliases {
        check_name(alias).map_err(|m| format!("[images.{name}] alias {alias:?}: {m}"))?;
    }
    if let Some(reference) = raw.oci {
        let others = [
            ("url", raw.url.is_some()),
            ("build", raw.build.is_some()),
            ("sha256", raw.sha256.is_some()),
            ("checksums", raw.checksums.is_some()),
            ("signature", raw.signature.is_some()),
            ("keyring", raw.keyring.is_some()),
            ("fingerprint", raw.fingerprint.is_some()),
        ];
        if let Some((key, _)) = others.iter().find(|(_, set)| *set) {
            return Err(format!(
                "[images.{name}] `oci` names the whole source; drop `{key}`"
            ));
        }
        let parsed = crate::image::reference::Reference::parse(&reference)
            .map_err(|e| format!("[images.{name}] oci: {e}"))?;
        if parsed.digest.is_none() {
            return Err(format!(
                "[images.{name}] oci: pin the image by digest (REGISTRY/REPO@sha256:…): a tag can change under the catalog"
            ));
        }
        return Ok(Entry {
            name: name.to_string(),
            aliases: raw.aliases,
            arch: raw.arch.unwrap_or_else(|| host_arch().to_string()),
            description: raw.description,
            source: Source::Oci { reference },
            layer: layer.to_string(),
        });
    }
    let source = match (raw.url, raw.build) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "[images.{name}] has both `url` and `build`; keep one"
            ))
        }
        (None, None) => {
            return Err(format!(
                "[images.{name}] needs `url` (with `sha256` or `checksums`) or `build`"
            ))
        }
        (None, Some(build)) => {
            for key in [
                ("sha256", raw.sha256.is_some()),
                ("checksums", raw.checksums.is_some()),
                ("signature", raw.signature.is_some()),
            ] {
                if key.1 {
                    return Err(format!(
                        "[images.{name}] key `{}` only applies to `url` entries",
                        key.0
                    ));
                }
            }
            if build.suite.is_empty() {
                return Err(format!("[images.{name}] build.suite is empty"));
            }
            Source::Build(BuildSpec {
                keyring: build.keyring.or(raw.keyring),
                ..build
            })
        }
        (Some(url), None) => {
            check_url(&url).map_err(|m| format!("[images.{name}] url: {m}"))?;
            let fingerprint = raw
                .fingerprint
                .map(|f| f.parse::<Fingerprint>())
                .transpose()
                .map_err(|m| format!("[images.{name}] fingerprint: {m}"))?;
            let keys = raw.keyring.is_some() || fingerprint.is_some();
            let verify = match (raw.sha256, raw.checksums, raw.signature, keys) {
                (Some(hex), None, None, false) => Verification::Pinned {
                    sha256: hex.parse().map_err(|e| format!("[images.{name}] sha256: {e}"))?,
                },
                (None, Some(checksums), Some(signature), true) => {
                    check_url(&checksums).map_err(|m| format!("[images.{name}] checksums: {m}"))?;
                    check_url(&signature).map_err(|m| format!("[images.{name}] signature: {m}"))?;
                    Verification::Signed { checksums, signature, keyring: raw.keyring, fingerprint }
                }
                (Some(_), ..) => {
                    return Err(format!("[images.{name}] `sha256` pins the digest; drop `checksums`, `signature`, `keyring` and `fingerprint`"))
                }
                (None, None, ..) => {
                    return Err(format!("[images.{name}] cannot be verified: add `sha256`, or `checksums` + `signature` + `keyring` (or `fingerprint`)"))
                }
                (None, Some(_), None, _) => {
                    return Err(format!("[images.{name}] `checksums` needs a `signature` URL (unsigned checksums prove nothing)"))
                }
                (None, Some(_), Some(_), false) => {
                    return Err(format!("[images.{name}] `signature` needs a `keyring` file or the `fingerprint` of a built-in key to check it against"))
                }
            };
            Source::Download { url, verify }
        }
    };
    Ok(Entry {
        name: name.to_string(),
        aliases: raw.aliases,
        arch: raw.arch.unwrap_or_else(|| host_arch().to_string()),
        description: raw.description,
        source,
        layer: layer.to_string(),
    })
}

/// Names become file names under the store and appear on command lines.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("use letters, digits, '.', '-' and '_', starting with a letter or digit".into())
    }
}

fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(format!("{url:?} is not an http(s) URL"))
    }
}

/// The Debian name of this machine's architecture, as catalogs and archives use it.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn layer(text: &str) -> Result<Catalog, CatalogError> {
        let mut c = Catalog::default();
        c.add_layer("test.toml", text)?;
        Ok(c)
    }

    fn invalid(text: &str) -> (usize, String) {
        match layer(text) {
            Err(CatalogError::Invalid { line, message, .. }) => (line, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn default_catalog_parses_and_has_aliases() {
        let c = Catalog::load(None).unwrap();
        assert!(c.entries().count() > 0);
        for entry in c.entries() {
            for alias in &entry.aliases {
                assert_eq!(c.find(alias).unwrap().name, entry.name);
            }
        }
    }

    #[test]
    fn oci_entries_are_pinned_by_digest() {
        let c = layer(&format!(
            "[images.d]\naliases=[\"dd\"]\noci=\"registry.example/library/debian@sha256:{HEX}\"\n"
        ))
        .unwrap();
        assert!(matches!(c.find("dd").unwrap().source, Source::Oci { .. }));
        let err = layer("[images.d]\noci=\"registry.example/library/debian:12\"\n").unwrap_err();
        assert!(err.to_string().contains("digest"), "{err}");
        let err = layer(&format!(
            "[images.d]\noci=\"r.example/x@sha256:{HEX}\"\nurl=\"https://h/x\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("`url`"), "{err}");
    }

    #[test]
    fn pinned_and_signed_entries() {
        let c = layer(&format!(
            "[images.a]\naliases=[\"x\"]\nurl=\"http://h/a.tar\"\nsha256=\"{HEX}\"\n\
             [images.b]\nurl=\"https://h/b.tar.xz\"\nchecksums=\"https://h/SUMS\"\nsignature=\"https://h/SUMS.gpg\"\nkeyring=\"/k.gpg\"\n"
        ))
        .unwrap();
        assert_eq!(c.find("x").unwrap().name, "a");
        assert!(matches!(
            c.find("a").unwrap().source,
            Source::Download {
                verify: Verification::Pinned { .. },
                ..
            }
        ));
        assert!(matches!(
            c.find("b").unwrap().source,
            Source::Download {
                verify: Verification::Signed { .. },
                ..
            }
        ));
        assert!(matches!(c.find("zzz"), Err(CatalogError::Unknown { .. })));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let (line, msg) = invalid("\n[images.a]\nurl=\"http://h/a\"\nsha265=\"x\"\n");
        assert!(msg.contains("sha265"), "{msg}");
        assert!(line == 2 || line == 4, "line {line}");
    }

    #[test]
    fn unverifiable_entries_are_rejected() {
        let (line, msg) = invalid("[images.a]\nurl=\"http://h/a\"\n");
        assert_eq!(line, 1);
        assert!(msg.contains("cannot be verified"), "{msg}");
        let (_, msg) = invalid("[images.a]\nurl=\"http://h/a\"\nchecksums=\"http://h/S\"\n");
        assert!(msg.contains("signature"), "{msg}");
        let (_, msg) = invalid("[images.a]\nurl=\"http://h/a\"\nsha256=\"abc\"\n");
        assert!(msg.contains("sha256"), "{msg}");
        let (_, msg) = invalid("[images.a]\nurl=\"ftp://h/a\"\nsha256=\"abc\"\n");
        assert!(msg.contains("http"), "{msg}");
    }

    #[test]
    fn syntax_error_has_line() {
        let (line, _) = invalid("[images.a]\nurl = \n");
        assert_eq!(line, 2);
    }

    #[test]
    fn later_layer_overrides_by_name() {
        let mut c = layer(&format!(
            "[images.a]\nurl=\"http://h/1\"\nsha256=\"{HEX}\"\n"
        ))
        .unwrap();
        c.add_layer(
            "b.toml",
            &format!("[images.a]\nurl=\"http://h/2\"\nsha256=\"{HEX}\"\n"),
        )
        .unwrap();
        match &c.find("a").unwrap().source {
            Source::Download { url, .. } => assert_eq!(url, "http://h/2"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn build_entries() {
        let c = layer("[images.debian-12]\naliases=[\"bookworm\"]\nbuild={suite=\"bookworm\",variant=\"minbase\",components=[\"main\"]}\n").unwrap();
        assert!(
            matches!(&c.find("bookworm").unwrap().source, Source::Build(b) if b.suite == "bookworm")
        );
        let (_, msg) = invalid("[images.a]\nbuild={suite=\"x\", sweet=1}\n");
        assert!(msg.contains("sweet"), "{msg}");
    }

    #[test]
    fn bad_names() {
        assert!(check_name("ubuntu-18.04").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
