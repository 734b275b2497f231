//! HTTP(S) downloads: resume with Range, timeouts, retries; progress through `Reporter`.
//! (Being written: see the fetch helper's brief.)

use std::io::{self, Read};
use std::path::Path;

/// Progress callbacks; the fetcher calls them from whatever thread reads the download.
pub(crate) trait Reporter: Send + Sync {
    /// A transfer starts: `total` bytes if known, `already` bytes replayed from a partial file.
    fn begin(&self, what: &str, total: Option<u64>, already: u64);
    fn advance(&self, bytes: u64);
    fn finish(&self);
    /// A one-line remark shown with -v (e.g. "resuming at 12 MiB").
    fn note(&self, msg: &str);
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("download {url}: {message}")]
    Other { url: String, message: String },
}

pub(crate) struct Fetcher;

pub(crate) struct Download;

impl Fetcher {
    pub(crate) fn new() -> Self {
        Fetcher
    }

    /// A small document (SHA256SUMS, a signature), whole, at most `limit` bytes.
    pub(crate) fn get_small(&self, url: &str, _limit: usize) -> Result<Vec<u8>, FetchError> {
        Err(FetchError::Other { url: url.into(), message: "not implemented".into() })
    }

    /// A resumable download of `url`; bytes already in `partial` are replayed first,
    /// new bytes are appended to `partial` as they are read.
    pub(crate) fn download(
        &self,
        url: &str,
        _partial: &Path,
        _reporter: &dyn Reporter,
    ) -> Result<Download, FetchError> {
        Err(FetchError::Other { url: url.into(), message: "not implemented".into() })
    }
}

impl Read for Download {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}
