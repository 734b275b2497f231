//! The apt archive side of a build: the signed Release of a suite, its Packages
//! indices and the .deb files, each checked against what signs it:
//! keyring → InRelease (or Release + Release.gpg) → SHA256 of each Packages index →
//! SHA256 and size of each .deb.
//!
//! Invariants: nothing is parsed before its signature or checksum holds (the Release
//! text is the plaintext gpgv verified); a .deb enters the cache (ROOT/cache/debs,
//! named by its sha256) only by a rename after its digest and size matched, so the
//! cache holds only verified files and is shared by every build; a flock on its
//! `lock` file serialises downloads into it.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::build::release::{Compression, FileEntry, Release};
use crate::build::BuildError;
use crate::fs::path_error::io_err;
use crate::image::fetch::{FetchError, Fetcher, Reporter};
use crate::image::verify::{self, VerifyError};
use crate::store::digest::{Digest, Hasher};

/// InRelease of a large suite is about 150 KiB.
const RELEASE_LIMIT: usize = 16 << 20;
const SIGNATURE_LIMIT: usize = 64 << 10;

/// One suite of one archive, trusted through `keyring`.
pub(crate) struct Archive {
    pub(crate) uri: String,
    pub(crate) suite: String,
    pub(crate) keyring: PathBuf,
    pub(crate) fetcher: Fetcher,
}

impl Archive {
    fn dists(&self, rel: &str) -> String {
        format!("{}/dists/{}/{rel}", self.uri, self.suite)
    }

    /// Reads a small file from an http(s) or `file:` URL.
    fn get(&self, url: &str, limit: usize) -> Result<Vec<u8>, BuildError> {
        match url.strip_prefix("file:") {
            Some(path) => read_local(path, limit),
            None => Ok(self.fetcher.get_small(url, limit)?),
        }
    }

    /// The Release text, verified: InRelease if the archive has one, else Release
    /// with its detached Release.gpg.
    pub(crate) fn release_text(&self) -> Result<String, BuildError> {
        let url = self.dists("InRelease");
        let verified = match self.get(&url, RELEASE_LIMIT) {
            Ok(signed) => verify_inrelease(&signed, &self.keyring, &url)?,
            Err(e) if e.is_not_found() => {
                let url = self.dists("Release");
                let data = self.get(&url, RELEASE_LIMIT)?;
                let sig = self.get(&self.dists("Release.gpg"), SIGNATURE_LIMIT)?;
                verify::check_signature(&data, &sig, &self.keyring).map_err(|source| {
                    BuildError::Verify {
                        what: format!("{url} with {}", self.keyring.display()),
                        source,
                    }
                })?;
                data
            }
            Err(e) => return Err(e),
        };
        String::from_utf8(verified).map_err(|_| BuildError::Malformed {
            what: url,
            reason: "not UTF-8".into(),
        })
    }

    /// The Packages index `entry` names, checked against the Release and decompressed.
    pub(crate) fn packages(
        &self,
        release: &Release<'_>,
        entry: &FileEntry<'_>,
        compression: Compression,
    ) -> Result<String, BuildError> {
        let limit = entry.size as usize;
        let by_hash = self.dists(&release.download_path(entry));
        let plain = self.dists(entry.path);
        // A mirror mid-sync may lack the by-hash file; the plain path is checked the same.
        let bytes = match self.get(&by_hash, limit) {
            Err(e) if by_hash != plain && e.is_not_found() => self.get(&plain, limit)?,
            r => r?,
        };
        check_index(&bytes, entry, &plain)?;
        decompress(&bytes, compression).map_err(|reason| BuildError::Malformed {
            what: plain,
            reason,
        })
    }
}

/// The content of a signed InRelease, as gpgv extracted it.
pub(crate) fn verify_inrelease(
    signed: &[u8],
    keyring: &Path,
    what: &str,
) -> Result<Vec<u8>, BuildError> {
    verify::verify_cleartext(signed, keyring).map_err(|source| BuildError::Verify {
        what: format!("{what} with {}", keyring.display()),
        source,
    })
}

/// A Packages index must be exactly the bytes the Release lists.
pub(crate) fn check_index(
    bytes: &[u8],
    entry: &FileEntry<'_>,
    what: &str,
) -> Result<(), BuildError> {
    check_bytes(
        Digest::of(bytes),
        bytes.len() as u64,
        entry.sha256,
        entry.size,
        what,
    )
}

fn check_bytes(
    actual: Digest,
    size: u64,
    expected: Digest,
    expected_size: u64,
    what: &str,
) -> Result<(), BuildError> {
    if actual != expected {
        return Err(BuildError::Verify {
            what: what.to_string(),
            source: VerifyError::Mismatch {
                what: what.to_string(),
                expected,
                actual,
            },
        });
    }
    if size != expected_size {
        return Err(BuildError::Malformed {
            what: what.to_string(),
            reason: format!("size {size}, the signed index says {expected_size}"),
        });
    }
    Ok(())
}

fn decompress(bytes: &[u8], compression: Compression) -> Result<String, String> {
    let mut out = Vec::with_capacity(bytes.len() * 5);
    compression
        .decoder(bytes)
        .and_then(|mut d| d.read_to_end(&mut out))
        .map_err(|e| format!("decompress: {e}"))?;
    String::from_utf8(out).map_err(|_| "not UTF-8".to_string())
}

fn read_local(path: &str, limit: usize) -> Result<Vec<u8>, BuildError> {
    // file:/srv/repo and file:///srv/repo both name /srv/repo.
    let path = Path::new(path.trim_start_matches("//"));
    let mut out = Vec::new();
    File::open(path)
        .map_err(io_err("read", path))?
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(io_err("read", path))?;
    if out.len() > limit {
        return Err(BuildError::Malformed {
            what: path.display().to_string(),
            reason: format!("larger than {limit} bytes"),
        });
    }
    Ok(out)
}

/// One .deb to have in the cache.
#[derive(Debug, Clone)]
pub(crate) struct DebJob {
    pub(crate) url: String,
    pub(crate) sha256: Digest,
    pub(crate) size: u64,
}

/// The package cache: `<dir>/<sha256>.deb`, partial downloads in `<dir>/partial/`.
pub(crate) struct Cache {
    pub(crate) dir: PathBuf,
}

/// What filling the cache did.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub(crate) downloaded: usize,
    pub(crate) bytes: u64,
    pub(crate) cached: usize,
    /// Time spent hashing, summed over threads.
    pub(crate) verify: Duration,
}

impl Cache {
    pub(crate) fn path(&self, sha256: &Digest) -> PathBuf {
        self.dir.join(format!("{}.deb", sha256.hex()))
    }

    fn partial(&self, sha256: &Digest) -> PathBuf {
        self.dir
            .join("partial")
            .join(format!("{}.part", sha256.hex()))
    }

    /// Makes every job's file present and verified, downloading the missing ones on
    /// up to `threads` threads; one reporter shows the bytes of the whole selection.
    pub(crate) fn fill(
        &self,
        fetcher: &Fetcher,
        jobs: &[DebJob],
        threads: usize,
        reporter: &dyn Reporter,
    ) -> Result<Fetched, BuildError> {
        let partial_dir = self.dir.join("partial");
        fs::create_dir_all(&partial_dir).map_err(io_err("create package cache", &partial_dir))?;
        // Two builds at once would append to the same partial files: one fills at a time
        // (the other then finds its packages present).
        let lock_path = self.dir.join("lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("lock", &lock_path)(e))?;
        let missing: Vec<&DebJob> = jobs
            .iter()
            .filter(|j| fs::metadata(self.path(&j.sha256)).map_or(true, |m| m.len() != j.size))
            .collect();
        let mut fetched = Fetched {
            cached: jobs.len() - missing.len(),
            ..Fetched::default()
        };
        if missing.is_empty() {
            return Ok(fetched);
        }
        let total: u64 = missing.iter().map(|j| j.size).sum();
        reporter.begin(&format!("{} packages", missing.len()), Some(total), 0);
        let next = AtomicUsize::new(0);
        let hashing = AtomicU64::new(0);
        let failure: Mutex<Option<BuildError>> = Mutex::new(None);
        let shared = Forward(reporter);
        std::thread::scope(|scope| {
            for _ in 0..threads.min(missing.len()).max(1) {
                scope.spawn(|| loop {
                    if failure.lock().expect("lock").is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = missing.get(i) else { return };
                    match self.fetch_one(fetcher, job, &shared) {
                        Ok(spent) => {
                            hashing.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failure.lock().expect("lock").get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().expect("lock") {
            return Err(e);
        }
        reporter.finish();
        fetched.downloaded = missing.len();
        fetched.bytes = total;
        fetched.verify = Duration::from_nanos(hashing.into_inner());
        Ok(fetched)
    }

    /// Downloads one .deb (resuming a partial one), hashes it, and renames it into
    /// the cache only if digest and size match. Returns the time spent hashing.
    fn fetch_one(
        &self,
        fetcher: &Fetcher,
        job: &DebJob,
        reporter: &dyn Reporter,
    ) -> Result<Duration, BuildError> {
        let partial = self.partial(&job.sha256);
        let mut hasher = Hasher::default();
        let mut size = 0u64;
        let mut spent = Duration::ZERO;
        let mut buf = vec![0u8; 128 << 10];
        let mut consume = |reader: &mut dyn Read| -> io::Result<()> {
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                let t = Instant::now();
                hasher.update(&buf[..n]);
                spent += t.elapsed();
                size += n as u64;
                // A server sending more than the index promised is wrong; stop early.
                if size > job.size {
                    return Ok(());
                }
            }
        };
        if let Some(path) = job.url.strip_prefix("file:") {
            let path = Path::new(path.trim_start_matches("//"));
            let mut copy = || -> io::Result<()> {
                let mut src = File::open(path)?;
                consume(&mut src)?;
                fs::copy(path, &partial)?;
                Ok(())
            };
            copy().map_err(io_err("read", path))?;
            reporter.advance(job.size);
        } else {
            let mut dl = fetcher.download(&job.url, &partial, reporter)?;
            consume(&mut dl).map_err(|e| match FetchError::from_io(e) {
                Ok(fetch) => BuildError::Fetch(fetch),
                Err(source) => io_err("download to", &partial)(source).into(),
            })?;
        }
        let checked = check_bytes(hasher.finish(), size, job.sha256, job.size, &job.url);
        if let Err(e) = checked {
            // Bytes that failed verification must not seed the next resume.
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
        let target = self.path(&job.sha256);
        fs::rename(&partial, &target).map_err(io_err("add to package cache", &target))?;
        Ok(spent)
    }
}

/// Forwards only the byte counts of each transfer to the selection's one reporter.
struct Forward<'r>(&'r dyn Reporter);

impl Reporter for Forward<'_> {
    fn begin(&self, _what: &str, _total: Option<u64>, already: u64) {
        self.0.advance(already);
    }
    fn advance(&self, bytes: u64) {
        self.0.advance(bytes);
    }
    fn finish(&self) {}
    fn note(&self, msg: &str) {
        self.0.note(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::verify::tests::Gpg;

    const RELEASE: &str = "Origin: Test\nSuite: stable\nCodename: testy\n";

    #[test]
    fn inrelease_must_be_signed_by_the_keyring() {
        let signer = Gpg::new("archive <a@example.invalid>");
        let keyring = signer.keyring(false);
        let signed = signer.sign(RELEASE.as_bytes(), &["--clearsign"]);
        let text = verify_inrelease(&signed, &keyring, "InRelease").unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), RELEASE);

        // Tampered: one byte of the signed text changed.
        let s = String::from_utf8(signed.clone()).unwrap();
        let tampered = s.replace("Codename: testy", "Codename: tasty");
        assert_ne!(s, tampered);
        let err = verify_inrelease(tampered.as_bytes(), &keyring, "InRelease").unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::Verify {
                    source: VerifyError::BadSignature { .. },
                    ..
                }
            ),
            "{err}"
        );

        // Signed by a key not in the keyring.
        let other = Gpg::new("other <o@example.invalid>");
        let err = verify_inrelease(&signed, &other.keyring(false), "InRelease").unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::Verify {
                    source: VerifyError::UnknownKey { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("InRelease with "), "{err}");
    }

    #[test]
    fn packages_index_must_match_the_release() {
        let index = b"Package: a\nVersion: 1\n";
        let entry = FileEntry {
            sha256: Digest::of(index),
            size: index.len() as u64,
            path: "main/binary-amd64/Packages",
        };
        check_index(index, &entry, "Packages").unwrap();
        let err = check_index(b"Package: b\nVersion: 1\n", &entry, "Packages").unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::Verify {
                    source: VerifyError::Mismatch { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            decompress(index, Compression::None).unwrap(),
            String::from_utf8_lossy(index)
        );
    }

    /// A `file:` archive with Release + Release.gpg (no InRelease) and a gzip Packages.
    #[test]
    fn release_gpg_fallback_and_packages_over_a_file_mirror() {
        use std::io::Write as _;
        let signer = Gpg::new("archive <a@example.invalid>");
        let keyring = signer.keyring(false);
        let dir = tempfile::tempdir().unwrap();
        let dists = dir.path().join("dists/testy");
        fs::create_dir_all(dists.join("main/binary-amd64")).unwrap();
        let packages = "Package: a\nVersion: 1\nArchitecture: all\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(packages.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        fs::write(dists.join("main/binary-amd64/Packages.gz"), &gz).unwrap();
        let release = format!(
            "Suite: testy\nCodename: testy\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages.gz\n",
            Digest::of(&gz).hex(),
            gz.len()
        );
        fs::write(dists.join("Release"), &release).unwrap();
        let sig = signer.sign(release.as_bytes(), &["--detach-sign"]);
        fs::write(dists.join("Release.gpg"), &sig).unwrap();

        let archive = Archive {
            uri: format!("file:{}", dir.path().display()),
            suite: "testy".into(),
            keyring: keyring.clone(),
            fetcher: Fetcher::new(),
        };
        let text = archive.release_text().unwrap();
        assert_eq!(text, release);
        let parsed = Release::parse(&text).unwrap();
        let index = parsed.packages_index("main", "amd64").unwrap();
        assert_eq!(index.compression, Compression::Gzip);
        assert_eq!(
            archive
                .packages(&parsed, index.entry, index.compression)
                .unwrap(),
            packages
        );

        // The index changed after the Release was signed: refused.
        fs::write(dists.join("main/binary-amd64/Packages.gz"), b"garbage").unwrap();
        let err = archive
            .packages(&parsed, index.entry, index.compression)
            .unwrap_err();
        assert!(matches!(err, BuildError::Verify { .. }), "{err}");

        // The Release changed after it was signed: refused.
        fs::write(dists.join("Release"), release.replace("testy", "tasty")).unwrap();
        let err = archive.release_text().unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::Verify {
                    source: VerifyError::BadSignature { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    /// A reporter that counts.
    #[derive(Default)]
    struct Count(AtomicU64);
    impl Reporter for Count {
        fn begin(&self, _: &str, _: Option<u64>, _: u64) {}
        fn advance(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
        fn finish(&self) {}
        fn note(&self, _: &str) {}
    }

    #[test]
    fn debs_enter_the_cache_only_when_verified() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.deb");
        fs::write(&good, b"a good deb").unwrap();
        let cache = Cache {
            dir: dir.path().join("cache"),
        };
        let job = DebJob {
            url: format!("file:{}", good.display()),
            sha256: Digest::of(b"a good deb"),
            size: 10,
        };
        let count = Count::default();
        let f = cache
            .fill(&Fetcher::new(), std::slice::from_ref(&job), 4, &count)
            .unwrap();
        assert_eq!((f.downloaded, f.cached), (1, 0));
        assert_eq!(fs::read(cache.path(&job.sha256)).unwrap(), b"a good deb");
        let f = cache
            .fill(&Fetcher::new(), std::slice::from_ref(&job), 4, &count)
            .unwrap();
        assert_eq!((f.downloaded, f.cached), (0, 1), "reused from the cache");

        // The file no longer matches its index entry: refused, nothing cached.
        fs::write(&good, b"a tampered").unwrap();
        let bad = DebJob {
            sha256: Digest::of(b"what the index says"),
            ..job
        };
        let err = cache
            .fill(&Fetcher::new(), std::slice::from_ref(&bad), 4, &count)
            .unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::Verify {
                    source: VerifyError::Mismatch { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(!cache.path(&bad.sha256).exists());
        assert!(!cache.partial(&bad.sha256).exists());
    }
}
