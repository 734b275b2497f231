//! The pull pipeline: catalog entry or import source -> fetch -> verify -> unpack ->
//! store, in one streaming pass.
//!
//! Two threads, as `curl | tee >(sha256sum) | xz -dc | tar -x` has four processes:
//! the reader thread downloads (or reads the file), hashes every byte and keeps the
//! partial download for resume; the calling thread decompresses and unpacks into a
//! private work directory. The digest is known only at the end, so the tree becomes
//! visible (one rename) only after it matches; on any failure the work directory is
//! dropped and nothing is recorded.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::image::catalog::{self, Entry, Verification};
use crate::image::fetch::{FetchError, Fetcher};
use crate::image::pipe;
use crate::image::trust;
use crate::image::unpack::{self, UnpackError};
use crate::image::verify::{self, VerifyError};
use crate::progress::Printer;
use crate::store::digest::{Digest, Hasher};
use crate::store::{Installed, Store};

/// Size limits for the small signed documents: nothing legitimate comes close.
const CHECKSUMS_LIMIT: usize = 4 << 20;
const SIGNATURE_LIMIT: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    #[error("image {name} is for {arch}; this machine is {host}")]
    WrongArch {
        name: String,
        arch: String,
        host: String,
    },
    #[error("read {path}")]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unpack {what}")]
    Unpack {
        what: String,
        #[source]
        source: UnpackError,
    },
    #[error("verify {what}")]
    Verify {
        what: String,
        #[source]
        source: VerifyError,
    },
    #[error(transparent)]
    Fetch {
        #[from]
        source: FetchError,
    },
    #[error("{0:?} is not a file path or an http(s) URL")]
    BadSource(String),
}

/// Where an archive comes from.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    Url(String),
    File(PathBuf),
}

impl Origin {
    pub(crate) fn parse(source: &str) -> Result<Origin, PullError> {
        if source.starts_with("http://") || source.starts_with("https://") {
            Ok(Origin::Url(source.to_string()))
        } else if source.contains("://") {
            Err(PullError::BadSource(source.to_string()))
        } else {
            let path = Path::new(source);
            let path = path.canonicalize().map_err(|e| PullError::ReadSource {
                path: path.to_path_buf(),
                source: e,
            })?;
            Ok(Origin::File(path))
        }
    }

    fn describe(&self) -> String {
        match self {
            Origin::Url(u) => u.clone(),
            Origin::File(p) => p.display().to_string(),
        }
    }
}

/// The store's image for `entry`, when it already has it (then nothing is fetched).
pub(crate) fn present(store: &Store, entry: &Entry) -> anyhow::Result<Option<Installed>> {
    if let Some((_, r)) = store.refs()?.find(&entry.name) {
        let digest: Digest = r.digest.parse()?;
        if let catalog::Source::Oci { reference } = &entry.source {
            let wanted = crate::image::reference::Reference::parse(reference)?.to_string();
            if r.source != wanted {
                return Ok(None);
            }
        }
        let complete = if r.layers.is_empty() {
            store.rootfs(&digest).is_dir()
        } else {
            // An OCI entry: pinned by digest, so present means every layer is there.
            r.layers
                .iter()
                .filter_map(|l| l.parse::<Digest>().ok())
                .all(|l| store.layer(&l).is_dir())
        };
        if complete {
            return Ok(Some(Installed {
                name: entry.name.clone(),
                digest,
                fetched: false,
            }));
        }
    }
    Ok(None)
}

/// An entry for another architecture is refused before anything is fetched or built.
pub(crate) fn check_arch(entry: &Entry) -> Result<(), PullError> {
    if entry.arch != catalog::host_arch() {
        return Err(PullError::WrongArch {
            name: entry.name.clone(),
            arch: entry.arch.clone(),
            host: catalog::host_arch().into(),
        });
    }
    Ok(())
}

/// `locker pull NAME` for an entry with a download source: fetch, verify, unpack.
pub(crate) fn download(
    store: &Store,
    entry: &Entry,
    url: &str,
    verification: &Verification,
    printer: &Printer,
) -> anyhow::Result<Installed> {
    let fetcher = Fetcher::new();
    let expected = match verification {
        Verification::Pinned { sha256 } => *sha256,
        Verification::Signed {
            checksums,
            signature,
            keyring,
            fingerprint,
        } => {
            let anchor = trust::resolve(keyring.as_deref(), fingerprint.as_ref())?;
            // Before any download: without the keyring nothing could be verified.
            if let trust::Anchor::Host(path) = &anchor {
                if !path.is_file() {
                    let source = VerifyError::KeyringMissing { path: path.clone() };
                    return Err(PullError::Verify {
                        what: checksums.to_string(),
                        source,
                    }
                    .into());
                }
            }
            printer.detail(&format!("verifying {checksums} with {}", anchor.describe()));
            let sums = fetcher.get_small(checksums, CHECKSUMS_LIMIT)?;
            let sig = fetcher.get_small(signature, SIGNATURE_LIMIT)?;
            let what = checksums.to_string();
            let signer = fingerprint.as_ref().map(|f| f.as_str());
            verify::check_signature_by(&sums, &sig, anchor.source(), signer).map_err(|source| {
                PullError::Verify {
                    what: what.clone(),
                    source,
                }
            })?;
            verify::lookup_sha256sums(&sums, file_name(url))
                .map_err(|source| PullError::Verify { what, source })?
        }
    };
    install(
        store,
        &Origin::Url(url.to_string()),
        Some(expected),
        &entry.name,
        &entry.aliases,
        printer,
    )
}

/// The last path segment of a URL, as SHA256SUMS lists it.
fn file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

/// Fetches, verifies and unpacks `origin` and records it as `name`.
pub(crate) fn install(
    store: &Store,
    origin: &Origin,
    expected: Option<Digest>,
    name: &str,
    aliases: &[String],
    printer: &Printer,
) -> anyhow::Result<Installed> {
    let source = origin.describe();
    // One pull of a source at a time; a second waits and then finds the image present.
    let _source_lock = store.lock_source(&source)?;
    if let Some(digest) = expected {
        if store.rootfs(&digest).is_dir() {
            store.tag(name, &digest, aliases, &source)?;
            return Ok(Installed {
                name: name.to_string(),
                digest,
                fetched: false,
            });
        }
    }
    let started = Instant::now();
    let work = store.begin()?;
    let tree = work.tree();
    let partial = match origin {
        Origin::Url(url) => Some(store.partial_download(url)),
        Origin::File(_) => None,
    };
    let reporter = printer.reporter();
    let result: anyhow::Result<(Digest, unpack::Stats)> = std::thread::scope(|scope| {
        let (tx, rx) = pipe::pipe();
        let reader = scope.spawn(|| -> anyhow::Result<Digest> {
            let mut input: Box<dyn Read + Send> = match origin {
                Origin::Url(url) => Box::new(Fetcher::new().download(
                    url,
                    partial.as_deref().expect("url has a partial"),
                    reporter.as_ref(),
                )?),
                Origin::File(path) => {
                    Box::new(File::open(path).map_err(|e| PullError::ReadSource {
                        path: path.clone(),
                        source: e,
                    })?)
                }
            };
            pump(&mut *input, tx)
        });
        let unpacked = unpack::unpack(rx, &tree);
        // The reader stops early only if the unpacker hung up; its error explains more.
        let digest = reader.join().expect("reader thread panicked");
        match (digest, unpacked) {
            (Err(e), _) => Err(e),
            (Ok(actual), unpacked) => {
                if let Some(expected) = expected.filter(|e| *e != actual) {
                    return Err(VerifyError::Mismatch {
                        what: source.clone(),
                        expected,
                        actual,
                    }
                    .into());
                }
                let stats = unpacked.map_err(|e| PullError::Unpack {
                    what: source.clone(),
                    source: e,
                })?;
                Ok((actual, stats))
            }
        }
    });
    let (digest, stats) = match result {
        Ok(ok) => ok,
        Err(e) => {
            // Bytes that failed verification must not seed the next resume.
            let bad_bytes = e.downcast_ref::<VerifyError>().is_some()
                || e.downcast_ref::<PullError>()
                    .is_some_and(|p| matches!(p, PullError::Unpack { .. }));
            if bad_bytes {
                if let Some(p) = &partial {
                    let _ = std::fs::remove_file(p);
                }
            }
            return Err(e);
        }
    };
    store.publish(work, &digest, name, aliases, &source)?;
    if let Some(p) = &partial {
        let _ = std::fs::remove_file(p);
    }
    if let Some(losses) = stats.losses() {
        printer.info(&format!("{name}: {losses}"));
    }
    printer.detail(&format!(
        "{name}: {} entries, {} MiB unpacked in {:.1}s",
        stats.entries,
        stats.bytes >> 20,
        started.elapsed().as_secs_f64()
    ));
    Ok(Installed {
        name: name.to_string(),
        digest,
        fetched: true,
    })
}

/// Reads `input` to its end, hashing every byte and handing it to the unpacker. If
/// the unpacker stops early (a bad archive), reading goes on: the digest must cover
/// every byte, and a mismatch is the better explanation of a corrupt archive.
fn pump(input: &mut dyn Read, tx: pipe::Sender) -> anyhow::Result<Digest> {
    let mut hasher = Hasher::default();
    pipe::feed(input, &tx, true, |chunk| hasher.update(chunk)).map_err(unwrap_io)?;
    Ok(hasher.finish())
}

/// A fetch error travels through `Read` as an io::Error; recover it for the message.
fn unwrap_io(e: io::Error) -> anyhow::Error {
    match FetchError::from_io(e) {
        Ok(fetch) => fetch.into(),
        Err(e) => anyhow::Error::new(e).context("read archive"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_of_url() {
        assert_eq!(file_name("https://h/a/b/root.tar.xz"), "root.tar.xz");
        assert_eq!(file_name("https://h/a/root.tar.xz?x=1"), "root.tar.xz");
    }

    #[test]
    fn pump_hashes_every_byte_even_after_consumer_leaves() {
        let data = vec![7u8; pipe::CHUNK * 3 + 5];
        let (tx, rx) = pipe::pipe();
        drop(rx);
        let digest = pump(&mut &data[..], tx).unwrap();
        assert_eq!(digest, Digest::of(&data));
    }
}
