//! HTTP(S) downloads: resume with Range, timeouts, retries; progress through `Reporter`.
//!
//! Invariants of a `Download`: the partial file always holds exactly the bytes the reader
//! has been given so far (plus, before they are replayed, bytes of an earlier attempt),
//! in order from byte 0; so a killed process leaves a partial file another attempt can
//! continue. Nothing here trusts those bytes: the caller hashes every byte from the
//! start and checks the digest. Blocking I/O only (ureq), no async runtime.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::progress::Reporter;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest time with no byte received before a read gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pauses before each retry; their number is the number of retries.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("bad URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("GET {url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("GET {url}: TLS failure: {reason}")]
    Tls { url: String, reason: String },
    #[error("GET {url}: timed out: {what}")]
    Timeout { url: String, what: String },
    #[error("GET {url}: HTTP {code}{}{reason}", if reason.is_empty() { "" } else { " " })]
    Status {
        url: String,
        code: u16,
        reason: String,
    },
    #[error("GET {url}: bad response: {reason}")]
    Protocol { url: String, reason: String },
    #[error("GET {url}: response is larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("GET {url}: connection lost after {offset} bytes{detail}")]
    Dropped {
        url: String,
        offset: u64,
        /// Why it could not be resumed, as "; ..." (empty for one-shot requests).
        detail: String,
        #[source]
        source: io::Error,
    },
    #[error("partial download {} of {url}", path.display())]
    Partial {
        url: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FetchError {
    /// Worth another try: the network or the server may do better in a moment.
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Connect { .. }
            | FetchError::Timeout { .. }
            | FetchError::Dropped { .. } => true,
            FetchError::Status { code, .. } => *code >= 500,
            _ => false,
        }
    }

    /// The `FetchError` inside an error returned by `Download::read`, if there is one.
    pub(crate) fn from_io(err: io::Error) -> Result<FetchError, io::Error> {
        if err.get_ref().is_some_and(|inner| inner.is::<FetchError>()) {
            let inner = err.into_inner().expect("checked above");
            return Ok(*inner.downcast::<FetchError>().expect("checked above"));
        }
        Err(err)
    }

    fn into_io(self) -> io::Error {
        let kind = match self {
            FetchError::Timeout { .. } => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
}

#[derive(Clone)]
pub(crate) struct Fetcher {
    agent: ureq::Agent,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// An `Authorization` header for every request (a registry's token); ureq drops it
    /// on a redirect to another host (a blob store's signed URL needs none).
    authorization: Option<String>,
}

impl Fetcher {
    pub(crate) fn new() -> Self {
        Self::with_timeouts(CONNECT_TIMEOUT, READ_TIMEOUT)
    }

    /// `read`: the longest silence (no byte) tolerated, not a limit on the whole transfer.
    pub(crate) fn with_timeouts(connect: Duration, read: Duration) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(connect)
            .timeout_read(read)
            .timeout_write(read)
            .user_agent(concat!("locker/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent,
            connect_timeout: connect,
            read_timeout: read,
            authorization: None,
        }
    }

    /// This fetcher, sending `Authorization: value` with each request.
    pub(crate) fn with_authorization(mut self, value: Option<String>) -> Self {
        self.authorization = value;
        self
    }

    /// The underlying agent, for the registry client's own requests.
    pub(crate) fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// A small document (SHA256SUMS, a signature), whole, at most `limit` bytes.
    pub(crate) fn get_small(&self, url: &str, limit: usize) -> Result<Vec<u8>, FetchError> {
        let limit = limit as u64;
        let once = || -> Result<Vec<u8>, FetchError> {
            let resp = self.get(url, 0, None)?;
            if content_length(&resp).is_some_and(|len| len > limit) {
                return Err(FetchError::TooLarge {
                    url: url.into(),
                    limit,
                });
            }
            let mut body = Vec::new();
            let read = resp.into_reader().take(limit + 1).read_to_end(&mut body);
            read.map_err(|e| self.lost(url, body.len() as u64, String::new(), e))?;
            if body.len() as u64 > limit {
                return Err(FetchError::TooLarge {
                    url: url.into(),
                    limit,
                });
            }
            Ok(body)
        };
        retrying(None, once)
    }

    /// A resumable download of `url`; bytes already in `partial` are replayed first,
    /// new bytes are appended to `partial` as they are read.
    ///
    /// The `Download` borrows `reporter`: read it on this thread or a scoped one, or use
    /// `download_shared` to move it into a `'static` thread.
    pub(crate) fn download<'r>(
        &self,
        url: &str,
        partial: &Path,
        reporter: &'r dyn Reporter,
    ) -> Result<Download<'r>, FetchError> {
        self.start(url, partial, Shared::Borrowed(reporter))
    }

    /// `download`, owning its reporter.
    #[allow(dead_code)] // for callers that read on a `std::thread::spawn` thread
    pub(crate) fn download_shared(
        &self,
        url: &str,
        partial: &Path,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Download<'static>, FetchError> {
        self.start(url, partial, Shared::Owned(reporter))
    }

    fn start<'r>(
        &self,
        url: &str,
        partial: &Path,
        reporter: Shared<'r>,
    ) -> Result<Download<'r>, FetchError> {
        let file_err = |source| FetchError::Partial {
            url: url.into(),
            path: partial.into(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .map_err(file_err)?;
        let mut have = file.metadata().map_err(file_err)?.len();
        let what = display_name(url);
        let rep = reporter.get();
        let mut range_requests = 0;
        let restart = |file: &File, why: &str| -> Result<u64, FetchError> {
            rep.note(&format!("{what}: {why}; starting over"));
            file.set_len(0).map_err(file_err)?;
            Ok(0)
        };
        let (resp, total) = loop {
            if have > 0 {
                range_requests += 1;
            }
            let resp = retrying(Some(rep), || self.get(url, have, None))?;
            let range = resp.header("Content-Range").and_then(ContentRange::parse);
            match resp.status() {
                206 if have > 0 => match range {
                    Some(r) if r.start == Some(have) => {
                        let total = r
                            .total
                            .or_else(|| content_length(&resp).map(|len| have + len));
                        break (Some(resp), total);
                    }
                    _ => have = restart(&file, "the server sent another range than asked for")?,
                },
                // The partial file may be the whole file already (killed before the
                // caller finished with it): replay it, the digest will tell.
                416 if range.as_ref().and_then(|r| r.total) == Some(have) => {
                    break (None, Some(have))
                }
                416 => {
                    have = restart(
                        &file,
                        "the partial download does not fit the file on the server",
                    )?
                }
                _ => {
                    if have > 0 {
                        have = restart(&file, "the server does not resume downloads")?;
                    }
                    let total = content_length(&resp);
                    break (Some(resp), total);
                }
            }
        };

        let replay = if have > 0 {
            Some(File::open(partial).map_err(file_err)?)
        } else {
            None
        };
        let (ranges, validator) = match &resp {
            Some(r) => (
                r.status() == 206
                    || r.header("Accept-Ranges")
                        .is_some_and(|v| v.trim().eq_ignore_ascii_case("bytes")),
                r.header("ETag")
                    .filter(|tag| !tag.starts_with("W/"))
                    .map(str::to_string),
            ),
            None => (false, None),
        };
        if have > 0 {
            rep.note(&format!("{what}: resuming after {have} bytes"));
        }
        rep.begin(&what, total, have);
        Ok(Download {
            fetcher: self.clone(),
            url: url.into(),
            path: partial.into(),
            file,
            replay,
            replay_left: have,
            body: resp.map(|r| r.into_reader()),
            offset: have,
            total,
            resumed_from: have,
            range_requests,
            ranges,
            validator,
            retries: 0,
            state: State::Reading,
            reporter,
        })
    }

    /// One GET, from byte `from`. Statuses >= 400 are errors, except 416 to a Range
    /// request, which the caller interprets.
    fn get(
        &self,
        url: &str,
        from: u64,
        if_range: Option<&str>,
    ) -> Result<ureq::Response, FetchError> {
        let mut req = self.agent.get(url);
        if let Some(auth) = &self.authorization {
            req = req.set("Authorization", auth);
        }
        if from > 0 {
            req = req.set("Range", &format!("bytes={from}-"));
            if let Some(tag) = if_range {
                req = req.set("If-Range", tag);
            }
        }
        match req.call() {
            Ok(resp) => Ok(resp),
            // ureq 2 reports every status >= 400 as an error carrying the response.
            Err(ureq::Error::Status(416, resp)) if from > 0 => Ok(resp),
            Err(ureq::Error::Status(code, resp)) => Err(FetchError::Status {
                url: url.into(),
                code,
                reason: resp.status_text().trim().to_string(),
            }),
            Err(ureq::Error::Transport(t)) => Err(self.transport_error(url, &t)),
        }
    }

    fn transport_error(&self, url: &str, t: &ureq::Transport) -> FetchError {
        use ureq::ErrorKind as K;
        let url = url.to_string();
        let innermost = {
            let mut cause: Option<&(dyn std::error::Error + 'static)> =
                std::error::Error::source(t);
            while let Some(next) = cause.and_then(|c| c.source()) {
                cause = Some(next);
            }
            cause.map(|c| c.to_string())
        };
        let reason = innermost
            .or_else(|| t.message().map(str::to_string))
            .unwrap_or_else(|| t.kind().to_string());
        let timed_out = {
            let mut cause = std::error::Error::source(t);
            let mut found = false;
            while let Some(c) = cause {
                if let Some(io) = c.downcast_ref::<io::Error>() {
                    found |= matches!(
                        io.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    );
                }
                cause = c.source();
            }
            found
        };
        match t.kind() {
            K::InvalidUrl | K::UnknownScheme | K::InsecureRequestHttpsOnly => {
                FetchError::BadUrl { url, reason }
            }
            K::ConnectionFailed if timed_out => FetchError::Timeout {
                url,
                what: format!(
                    "no connection within {} s",
                    self.connect_timeout.as_secs_f32()
                ),
            },
            _ if timed_out => FetchError::Timeout {
                url,
                what: self.silence(),
            },
            // ureq's rustls glue labels handshake failures (certificates included) so.
            K::ConnectionFailed if t.message().is_some_and(|m| m.contains("tls")) => {
                FetchError::Tls { url, reason }
            }
            K::Dns => FetchError::Connect {
                url,
                reason: format!("cannot resolve the host name: {reason}"),
            },
            K::ConnectionFailed | K::Io | K::ProxyConnect => FetchError::Connect { url, reason },
            _ => FetchError::Protocol {
                url,
                reason: format!("{}: {reason}", t.kind()),
            },
        }
    }

    fn silence(&self) -> String {
        format!("no data for {} s", self.read_timeout.as_secs_f32())
    }

    /// The error for a body that broke off after `offset` bytes.
    fn lost(&self, url: &str, offset: u64, detail: String, source: io::Error) -> FetchError {
        match source.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FetchError::Timeout {
                url: url.into(),
                what: format!("{} after {offset} bytes", self.silence()),
            },
            _ => FetchError::Dropped {
                url: url.into(),
                offset,
                detail,
                source,
            },
        }
    }
}

/// Runs `once` until it succeeds, fails for good, or the retries are used up.
fn retrying<T>(
    reporter: Option<&dyn Reporter>,
    mut once: impl FnMut() -> Result<T, FetchError>,
) -> Result<T, FetchError> {
    let mut pauses = BACKOFF.iter();
    loop {
        match once() {
            Err(e) if e.is_transient() => match pauses.next() {
                Some(pause) => {
                    if let Some(r) = reporter {
                        r.note(&format!("{e}; retrying"));
                    }
                    std::thread::sleep(*pause);
                }
                None => return Err(e),
            },
            other => return other,
        }
    }
}

/// The last path segment of a URL, for progress lines.
fn display_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => url.to_string(),
    }
}

fn content_length(resp: &ureq::Response) -> Option<u64> {
    resp.header("Content-Length")?.trim().parse().ok()
}

/// `Content-Range: bytes START-END/TOTAL` (RFC 9110 §14.4); `*` parts are unknown.
#[derive(Debug, PartialEq)]
struct ContentRange {
    start: Option<u64>,
    total: Option<u64>,
}

impl ContentRange {
    fn parse(value: &str) -> Option<ContentRange> {
        let rest = value.trim().strip_prefix("bytes")?.trim_start();
        let (range, total) = rest.split_once('/')?;
        let start = match range.trim() {
            "*" => None,
            r => Some(r.split_once('-')?.0.trim().parse().ok()?),
        };
        Some(ContentRange {
            start,
            total: total.trim().parse().ok(),
        })
    }
}

enum Shared<'r> {
    Borrowed(&'r dyn Reporter),
    Owned(Arc<dyn Reporter>),
}

impl Shared<'_> {
    fn get(&self) -> &dyn Reporter {
        match self {
            Shared::Borrowed(r) => *r,
            Shared::Owned(r) => r.as_ref(),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Reading,
    Done,
    Failed,
}

/// A download in progress; `Read` yields the whole file from byte 0.
pub(crate) struct Download<'r> {
    fetcher: Fetcher,
    url: String,
    path: PathBuf,
    /// Append-only handle on the partial file.
    file: File,
    /// Read handle for replaying the bytes an earlier attempt left.
    replay: Option<File>,
    replay_left: u64,
    body: Option<Box<dyn Read + Send + Sync + 'static>>,
    /// Length of the partial file: where the next network byte belongs.
    offset: u64,
    total: Option<u64>,
    #[cfg_attr(not(test), allow(dead_code))] // read by tests; the reporter tells users
    resumed_from: u64,
    range_requests: u32,
    /// The server takes Range requests, so a lost connection can be resumed.
    ranges: bool,
    /// A strong ETag, sent as If-Range so a changed file is not spliced onto the old one.
    validator: Option<String>,
    /// Retries since the last byte arrived.
    retries: usize,
    state: State,
    reporter: Shared<'r>,
}

impl Download<'_> {
    /// The file's size, when the server told it.
    #[cfg(test)]
    pub(crate) fn total(&self) -> Option<u64> {
        self.total
    }

    /// Bytes taken from the partial file of an earlier attempt.
    #[cfg(test)]
    pub(crate) fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// Requests sent with a Range header (initial resume and reconnects).
    #[allow(dead_code)] // tests and -v
    pub(crate) fn range_requests(&self) -> u32 {
        self.range_requests
    }

    fn partial_error(&self, source: io::Error) -> io::Error {
        FetchError::Partial {
            url: self.url.clone(),
            path: self.path.clone(),
            source,
        }
        .into_io()
    }

    fn fail(&mut self, err: FetchError) -> io::Error {
        self.state = State::Failed;
        self.body = None;
        err.into_io()
    }

    /// After the body broke off (`cause`): continue from `offset` with a Range request.
    fn resume(&mut self, cause: io::Error) -> Result<(), FetchError> {
        if !self.ranges {
            let detail = "; the server does not support resuming (no Accept-Ranges)".to_string();
            return Err(self.fetcher.lost(&self.url, self.offset, detail, cause));
        }
        loop {
            let Some(pause) = BACKOFF.get(self.retries) else {
                let detail = format!("; gave up after {} retries", BACKOFF.len());
                return Err(self.fetcher.lost(&self.url, self.offset, detail, cause));
            };
            self.retries += 1;
            let rep = self.reporter.get();
            rep.note(&format!(
                "connection lost after {} bytes ({cause}); resuming",
                self.offset
            ));
            std::thread::sleep(*pause);
            self.range_requests += 1;
            let resp = match self
                .fetcher
                .get(&self.url, self.offset, self.validator.as_deref())
            {
                Ok(resp) => resp,
                Err(e) if e.is_transient() => continue,
                Err(e) => return Err(e),
            };
            let range = resp.header("Content-Range").and_then(ContentRange::parse);
            let fits = resp.status() == 206
                && range.as_ref().is_some_and(|r| {
                    r.start == Some(self.offset)
                        && (r.total.is_none() || self.total.is_none() || r.total == self.total)
                });
            if !fits {
                let detail = format!(
                    "; the server answered {} to a Range request (file changed?)",
                    resp.status()
                );
                return Err(FetchError::Dropped {
                    url: self.url.clone(),
                    offset: self.offset,
                    detail,
                    source: cause,
                });
            }
            self.body = Some(resp.into_reader());
            return Ok(());
        }
    }
}

impl Read for Download<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.replay_left > 0 {
            let want = buf
                .len()
                .min(usize::try_from(self.replay_left).unwrap_or(usize::MAX));
            let replay = self
                .replay
                .as_mut()
                .expect("replay handle while bytes are left");
            let n = match replay.read(&mut buf[..want]) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the partial file shrank while in use",
                )),
                other => other,
            }
            .map_err(|e| self.partial_error(e))?;
            self.replay_left -= n as u64;
            if self.replay_left == 0 {
                self.replay = None;
            }
            return Ok(n);
        }
        loop {
            match self.state {
                State::Reading => {}
                State::Done => return Ok(0),
                State::Failed => {
                    return Err(io::Error::other(format!(
                        "download of {} failed earlier",
                        self.url
                    )))
                }
            }
            let Some(body) = self.body.as_mut() else {
                self.state = State::Done;
                self.reporter.get().finish();
                return Ok(0);
            };
            let cause = match body.read(buf) {
                Ok(0) if self.total.is_some_and(|t| self.offset < t) => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection early",
                ),
                Ok(0) => {
                    self.body = None;
                    continue;
                }
                Ok(n) => {
                    if let Err(e) = self.file.write_all(&buf[..n]) {
                        let err = self.partial_error(e);
                        self.state = State::Failed;
                        self.body = None;
                        return Err(err);
                    }
                    self.offset += n as u64;
                    self.retries = 0;
                    self.reporter.get().advance(n as u64);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            self.body = None;
            if let Err(e) = self.resume(cause) {
                return Err(self.fail(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Mutex;
    use std::time::Instant;

    /// A one-thread HTTP/1.1 server on 127.0.0.1 that hands each connection, with its
    /// request head, to `handle`; every request head is logged.
    struct Server {
        base: String,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Server {
        fn start(handle: impl Fn(usize, &str, &mut TcpStream) + Send + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let log = Arc::new(Mutex::new(Vec::new()));
            let seen = log.clone();
            std::thread::spawn(move || {
                for (i, conn) in listener.incoming().enumerate() {
                    let mut conn = conn.unwrap();
                    let head = read_head(&mut conn);
                    seen.lock().unwrap().push(head.clone());
                    handle(i, &head, &mut conn);
                }
            });
            Server { base, log }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        fn requests(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    fn read_head(conn: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).to_lowercase()
    }

    /// `bytes=N-` from a lowercased request head.
    fn range_start(head: &str) -> Option<usize> {
        let line = head.lines().find_map(|l| l.strip_prefix("range: bytes="))?;
        line.trim().trim_end_matches('-').parse().ok()
    }

    fn respond(conn: &mut TcpStream, status: &str, headers: &[String], body: &[u8]) {
        let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for h in headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let _ = conn.write_all(out.as_bytes());
        let _ = conn.write_all(body);
        let _ = conn.flush();
    }

    /// Serves `body` honouring `Range: bytes=N-` with 206.
    fn serve_ranges(body: &[u8], head: &str, conn: &mut TcpStream) {
        match range_start(head) {
            Some(start) => {
                let len = body.len();
                respond(
                    conn,
                    "206 Partial Content",
                    &[
                        format!("Content-Range: bytes {start}-{}/{len}", len - 1),
                        format!("Content-Length: {}", len - start),
                    ],
                    &body[start..],
                );
            }
            None => respond(
                conn,
                "200 OK",
                &[
                    "Accept-Ranges: bytes".into(),
                    format!("Content-Length: {}", body.len()),
                ],
                body,
            ),
        }
    }

    fn body() -> Vec<u8> {
        (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[derive(Default)]
    struct Recorder {
        begun: Mutex<Vec<(String, Option<u64>, u64)>>,
        advanced: Mutex<u64>,
        finished: Mutex<u32>,
        notes: Mutex<Vec<String>>,
    }

    impl Reporter for Recorder {
        fn begin(&self, what: &str, total: Option<u64>, already: u64) {
            self.begun
                .lock()
                .unwrap()
                .push((what.into(), total, already));
        }
        fn advance(&self, bytes: u64) {
            *self.advanced.lock().unwrap() += bytes;
        }
        fn finish(&self) {
            *self.finished.lock().unwrap() += 1;
        }
        fn note(&self, msg: &str) {
            self.notes.lock().unwrap().push(msg.into());
        }
    }

    fn quick() -> Fetcher {
        Fetcher::with_timeouts(Duration::from_secs(2), Duration::from_secs(2))
    }

    fn read_all(mut dl: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        dl.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn download_is_send() {
        fn send<T: Send>() {}
        send::<Download<'static>>();
    }

    #[test]
    fn full_download() {
        let data = body();
        let d = data.clone();
        let server = Server::start(move |_, head, conn| serve_ranges(&d, head, conn));
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("part");
        let rec = Recorder::default();
        let dl = quick()
            .download(&server.url("/dir/root.tar.xz"), &partial, &rec)
            .unwrap();
        assert_eq!(
            (dl.total(), dl.resumed_from(), dl.range_requests()),
            (Some(data.len() as u64), 0, 0)
        );
        assert_eq!(read_all(dl).unwrap(), data);
        assert_eq!(std::fs::read(&partial).unwrap(), data);
        assert_eq!(
            *rec.begun.lock().unwrap(),
            vec![("root.tar.xz".into(), Some(data.len() as u64), 0)]
        );
        assert_eq!(*rec.advanced.lock().unwrap(), data.len() as u64);
        assert_eq!(*rec.finished.lock().unwrap(), 1);
        assert_eq!(server.requests().len(), 1);
        assert!(range_start(&server.requests()[0]).is_none());
    }

    #[test]
    fn resume_from_partial_with_range() {
        let data = body();
        let half = data.len() / 2;
        let d = data.clone();
        let server = Server::start(move |_, head, conn| serve_ranges(&d, head, conn));
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("part");
        std::fs::write(&partial, &data[..half]).unwrap();
        let rec = Recorder::default();
        let dl = quick().download(&server.url("/f"), &partial, &rec).unwrap();
        assert_eq!((dl.resumed_from(), dl.range_requests()), (half as u64, 1));
        assert_eq!(read_all(dl).unwrap(), data);
        assert_eq!(std::fs::read(&partial).unwrap(), data);
        assert_eq!(range_start(&server.requests()[0]), Some(half));
        assert_eq!(
            rec.begun.lock().unwrap()[0],
            ("f".into(), Some(data.len() as u64), half as u64)
        );
        assert_eq!(*rec.advanced.lock().unwrap(), (data.len() - half) as u64);
    }

    #[test]
    fn server_ignoring_range_restarts_from_zero() {
        let data = body();
        let d = data.clone();
        let server = Server::start(move |_, _, conn| {
            respond(
                conn,
                "200 OK",
                &[format!("Content-Length: {}", d.len())],
                &d,
            );
        });
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("part");
        std::fs::write(&partial, vec![0xAA; 1000]).unwrap();
        let rec = Recorder::default();
        let dl = quick().download(&server.url("/f"), &partial, &rec).unwrap();
        assert_eq!(dl.resumed_from(), 0);
        assert_eq!(read_all(dl).unwrap(), data);
        assert_eq!(std::fs::read(&partial).unwrap(), data);
        assert_eq!(range_start(&server.requests()[0]), Some(1000));
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn complete_partial_answered_416_is_replayed() {
        let data = body();
        let len = data.len();
        let server = Server::start(move |_, _, conn| {
            respond(
                conn,
                "416 Range Not Satisfiable",
                &[format!("Content-Range: bytes */{len}")],
                b"",
            );
        });
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("part");
        std::fs::write(&partial, &data).unwrap();
        let rec = Recorder::default();
        let dl = quick().download(&server.url("/f"), &partial, &rec).unwrap();
        assert_eq!(read_all(dl).unwrap(), data);
        assert_eq!(*rec.finished.lock().unwrap(), 1);
    }

    #[test]
    fn bad_partial_answered_416_restarts_without_range() {
        let data = body();
        let d = data.clone();
        let server = Server::start(move |_, head, conn| match range_start(head) {
            Some(_) => respond(
                conn,
                "416 Range Not Satisfiable",
                &[format!("Content-Range: bytes */{}", d.len())],
                b"",
            ),
            None => serve_ranges(&d, head, conn),
        });
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("part");
        std::fs::write(&partial, vec![1; data.len() + 5]).unwrap();
        let rec = Recorder::default();
        let dl = quick().download(&server.url("/f"), &partial, &rec).unwrap();
        assert_eq!(read_all(dl).unwrap(), data);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert!(range_start(&reqs[0]).is_some() && range_start(&reqs[1]).is_none());
    }

    #[test]
    fn dropped_connection_resumes_within_the_download() {
        let data = body();
        let cut = 70_000;
        let d = data.clone();
        let server = Server::start(move |i, head, conn| {
            if i == 0 {
                let headers = [
                    "Accept-Ranges: bytes".into(),
                    format!("Content-Length: {}", d.len()),
                    "ETag: \"v1\"".into(),
                ];
                respond(conn, "200 OK", &headers, &d[..cut]);
                let _ = conn.shutdown(std::net::Shutdown::Both);
            } else {
                serve_ranges(&d, head, conn);
            }
        });
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("part");
        let rec = Recorder::default();
        let mut dl = quick().download(&server.url("/f"), &partial, &rec).unwrap();
        let mut got = Vec::new();
        dl.read_to_end(&mut got).unwrap();
        assert_eq!(dl.range_requests(), 1);
        assert_eq!(got, data);
        assert_eq!(std::fs::read(&partial).unwrap(), data);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(range_start(&reqs[1]), Some(cut));
        assert!(reqs[1].contains("if-range: \"v1\""), "{}", reqs[1]);
        assert_eq!(*rec.advanced.lock().unwrap(), data.len() as u64);
        assert_eq!(*rec.finished.lock().unwrap(), 1);
    }

    #[test]
    fn dropped_connection_without_range_support_fails() {
        let data = body();
        let server = Server::start(move |_, _, conn| {
            respond(
                conn,
                "200 OK",
                &[format!("Content-Length: {}", data.len())],
                &data[..1000],
            );
        });
        let tmp = tempfile::tempdir().unwrap();
        let url = server.url("/f");
        // Owned reporter: the download moves to a 'static thread.
        let dl = quick()
            .download_shared(
                &url,
                &tmp.path().join("part"),
                Arc::new(Recorder::default()),
            )
            .unwrap();
        let err = std::thread::spawn(move || read_all(dl))
            .join()
            .unwrap()
            .unwrap_err();
        let err = FetchError::from_io(err).unwrap();
        assert!(
            matches!(err, FetchError::Dropped { offset: 1000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&url), "{err}");
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn not_found_is_not_retried() {
        let server = Server::start(|_, _, conn| {
            respond(conn, "404 Not Found", &["Content-Length: 0".into()], b"")
        });
        let tmp = tempfile::tempdir().unwrap();
        let url = server.url("/missing.tar.xz");
        let err = quick()
            .download(&url, &tmp.path().join("part"), &Recorder::default())
            .err()
            .unwrap();
        assert!(matches!(err, FetchError::Status { code: 404, .. }));
        assert_eq!(err.to_string(), format!("GET {url}: HTTP 404 Not Found"));
        let err = quick().get_small(&url, 100).unwrap_err();
        assert!(matches!(err, FetchError::Status { code: 404, .. }));
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn server_errors_are_retried() {
        let data = body();
        let server = Server::start(move |i, head, conn| {
            if i < 2 {
                respond(
                    conn,
                    "503 Service Unavailable",
                    &["Content-Length: 0".into()],
                    b"",
                );
            } else {
                serve_ranges(&data, head, conn);
            }
        });
        let tmp = tempfile::tempdir().unwrap();
        let rec = Recorder::default();
        let dl = quick()
            .download(&server.url("/f"), &tmp.path().join("part"), &rec)
            .unwrap();
        assert_eq!(read_all(dl).unwrap(), body());
        assert_eq!(server.requests().len(), 3);
        assert_eq!(rec.notes.lock().unwrap().len(), 2);

        // Four 503s in a row: the last one is the error.
        let server = Server::start(|_, _, conn| {
            respond(
                conn,
                "503 Service Unavailable",
                &["Content-Length: 0".into()],
                b"",
            )
        });
        let err = quick().get_small(&server.url("/s"), 100).unwrap_err();
        assert!(
            err.to_string().ends_with("HTTP 503 Service Unavailable"),
            "{err}"
        );
        assert_eq!(server.requests().len(), 4);
    }

    #[test]
    fn stalled_body_times_out() {
        let server = Server::start(|_, _, conn| {
            respond(conn, "200 OK", &["Content-Length: 1000".into()], b"partly");
            std::thread::sleep(Duration::from_secs(3));
        });
        let tmp = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::with_timeouts(Duration::from_secs(1), Duration::from_millis(300));
        let started = Instant::now();
        let rec = Recorder::default();
        let dl = fetcher
            .download(&server.url("/slow"), &tmp.path().join("part"), &rec)
            .unwrap();
        let err = read_all(dl).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let err = FetchError::from_io(err).unwrap();
        assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("/slow"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn get_small_reads_and_limits() {
        let server = Server::start(|i, _, conn| match i {
            0 => respond(conn, "200 OK", &["Content-Length: 5".into()], b"hello"),
            1 => respond(
                conn,
                "200 OK",
                &["Content-Length: 1000".into()],
                &[b'x'; 1000],
            ),
            // No length: read until close, stop at the limit.
            _ => respond(conn, "200 OK", &[], &[b'y'; 1000]),
        });
        let fetcher = quick();
        assert_eq!(
            fetcher.get_small(&server.url("/SHA256SUMS"), 5).unwrap(),
            b"hello"
        );
        for _ in 0..2 {
            let err = fetcher.get_small(&server.url("/big"), 100).unwrap_err();
            assert!(
                matches!(err, FetchError::TooLarge { limit: 100, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("/big"));
        }
    }

    #[test]
    fn refused_connection_and_bad_urls() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/x");
        let err = quick().get_small(&url, 10).unwrap_err();
        assert!(matches!(err, FetchError::Connect { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("GET {url}: cannot connect: ")),
            "{err}"
        );

        let err = quick().get_small("ftp://127.0.0.1/x", 10).unwrap_err();
        assert!(matches!(err, FetchError::BadUrl { .. }), "{err}");
        let err = quick().get_small("not a url", 10).unwrap_err();
        assert!(matches!(err, FetchError::BadUrl { .. }), "{err}");
    }

    #[test]
    fn unwritable_partial_is_a_file_error() {
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("no-such-dir/part");
        let err = quick()
            .download("http://127.0.0.1:9/x", &partial, &Recorder::default())
            .err()
            .unwrap();
        assert!(matches!(err, FetchError::Partial { .. }), "{err}");
        assert!(err.to_string().contains("no-such-dir/part"));
    }

    #[test]
    fn content_range_and_names() {
        assert_eq!(
            ContentRange::parse("bytes 5-9/10"),
            Some(ContentRange {
                start: Some(5),
                total: Some(10)
            })
        );
        assert_eq!(
            ContentRange::parse("bytes 5-9/*"),
            Some(ContentRange {
                start: Some(5),
                total: None
            })
        );
        assert_eq!(
            ContentRange::parse("bytes */10"),
            Some(ContentRange {
                start: None,
                total: Some(10)
            })
        );
        assert_eq!(ContentRange::parse("items 1-2/3"), None);
        assert_eq!(display_name("https://h/a/b.tar.xz?x=1"), "b.tar.xz");
        assert_eq!(display_name("https://h/a/"), "a");
    }
}
