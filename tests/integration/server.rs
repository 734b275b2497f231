//! A test HTTP/1.1 server on 127.0.0.1 (std only): serves an in-memory map path ->
//! bytes, one thread per connection, `Connection: close` after every response. Each
//! path has switchable misbehaviour (ignore Range, cut the connection, corrupt a byte,
//! be slow, fail with a status) and every request is logged, so tests can assert what
//! the client asked for. The server stops when dropped: the accept loop ends and
//! connection threads give up at their next chunk or socket timeout.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// When a response body is cut short (the connection dropped after `cut_after` bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    Never,
    /// Only the first GET of the path.
    Once,
    /// Every GET of the path.
    Always,
    /// Every GET without a Range header (a fresh download); resumed ones complete.
    WithoutRange,
}

/// How one path is served.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Honour `Range: bytes=N-[M]` with 206; false: always 200 with the whole body.
    pub ranges: bool,
    pub cut: Cut,
    /// Body bytes sent before a cut.
    pub cut_after: u64,
    /// Serve the byte in the middle of the file inverted.
    pub corrupt: bool,
    /// Bytes written per chunk; `delay` is slept before each chunk (throttling).
    pub chunk: usize,
    pub delay: Option<Duration>,
    /// Answer with this status (and a short text body) instead of the file.
    pub status: Option<u16>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            ranges: true,
            cut: Cut::Never,
            cut_after: 0,
            corrupt: false,
            chunk: 16 * 1024,
            delay: None,
            status: None,
        }
    }
}

/// One logged request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

struct Resource {
    data: Arc<Vec<u8>>,
    behaviour: Behaviour,
    gets: u64,
}

struct Shared {
    files: Mutex<HashMap<String, Resource>>,
    log: Mutex<Vec<Request>>,
    served: AtomicU64,
    stop: AtomicBool,
}

pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            files: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            served: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &s);
                });
            }
        });
        Server {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/path` (`path` starts with '/').
    pub fn url(&self, path: &str) -> String {
        assert!(path.starts_with('/'), "path must start with '/': {path}");
        format!("http://{}{}", self.addr, path)
    }

    /// Serves `data` at `path` normally; returns its URL.
    pub fn serve(&self, path: &str, data: Vec<u8>) -> String {
        self.serve_with(path, data, Behaviour::default())
    }

    pub fn serve_with(&self, path: &str, data: Vec<u8>, behaviour: Behaviour) -> String {
        let url = self.url(path);
        self.shared.files.lock().unwrap().insert(
            path.to_string(),
            Resource {
                data: Arc::new(data),
                behaviour,
                gets: 0,
            },
        );
        url
    }

    /// Changes how `path` is served from the next request on.
    pub fn configure(&self, path: &str, change: impl FnOnce(&mut Behaviour)) {
        let mut files = self.shared.files.lock().unwrap();
        change(
            &mut files
                .get_mut(path)
                .unwrap_or_else(|| panic!("not served: {path}"))
                .behaviour,
        );
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Body bytes written to clients so far, over all paths.
    pub fn bytes_served(&self) -> u64 {
        self.shared.served.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn handle(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let path = target.split('?').next().unwrap_or("").to_string();
    let range = header("range");
    shared.log.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
    });

    let mut out = stream;
    let found = {
        let mut files = shared.files.lock().unwrap();
        files.get_mut(&path).map(|r| {
            let first = r.gets == 0;
            if method == "GET" {
                r.gets += 1;
            }
            (r.data.clone(), r.behaviour.clone(), first)
        })
    };
    let Some((data, b, first)) = found else {
        return simple(&mut out, 404, "Not Found");
    };
    if let Some(status) = b.status {
        return simple(&mut out, status, "Injected failure");
    }
    let len = data.len() as u64;
    let etag = format!(
        "\"{len:x}-{:x}\"",
        data.iter()
            .fold(0u64, |h, &c| h.wrapping_mul(31).wrapping_add(c as u64))
    );
    let wanted = if b.ranges {
        range.as_deref().and_then(parse_range)
    } else {
        None
    };
    // If-Range with a validator that does not match means "send it all".
    let wanted = match header("if-range") {
        Some(v) if v != etag && v != LAST_MODIFIED => None,
        _ => wanted,
    };
    let mut head = String::new();
    let (start, end) = match wanted {
        Some((start, _)) if start >= len => {
            head.push_str(&format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n"
            ));
            head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
            out.write_all(head.as_bytes())?;
            return Ok(());
        }
        Some((start, end)) => {
            let end = end.map_or(len, |e| (e + 1).min(len));
            head.push_str(&format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\n",
                end - 1
            ));
            (start, end)
        }
        None => {
            head.push_str("HTTP/1.1 200 OK\r\n");
            (0, len)
        }
    };
    if b.ranges {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nContent-Type: application/octet-stream\r\nETag: {etag}\r\nLast-Modified: {LAST_MODIFIED}\r\nConnection: close\r\n\r\n",
        end - start
    ));
    out.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    let cut = match b.cut {
        Cut::Never => false,
        Cut::Once => first,
        Cut::Always => true,
        Cut::WithoutRange => range.is_none(),
    };
    let limit = if cut {
        start + b.cut_after.min(end - start)
    } else {
        end
    };
    let middle = len / 2;
    let mut pos = start;
    while pos < limit {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if let Some(d) = b.delay {
            std::thread::sleep(d);
        }
        let n = (b.chunk.max(1) as u64).min(limit - pos);
        let mut chunk = data[pos as usize..(pos + n) as usize].to_vec();
        if b.corrupt && (pos..pos + n).contains(&middle) {
            chunk[(middle - pos) as usize] ^= 0xff;
        }
        out.write_all(&chunk)?;
        out.flush()?;
        shared.served.fetch_add(n, Ordering::SeqCst);
        pos += n;
    }
    if cut || pos < end {
        // An abrupt end: the client sees fewer bytes than Content-Length promised.
        let _ = out.shutdown(Shutdown::Both);
    }
    Ok(())
}

const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

fn simple(out: &mut TcpStream, status: u16, text: &str) -> std::io::Result<()> {
    let body = format!("{status} {text}\n");
    write!(
        out,
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `bytes=START-` or `bytes=START-END` (one range; suffix ranges are not used by clients here).
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = if b.trim().is_empty() {
        None
    } else {
        Some(b.trim().parse().ok()?)
    };
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// One raw request; returns (status line + headers, body).
    fn get(server: &Server, path: &str, extra: &str) -> (String, Vec<u8>) {
        let mut c = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all);
        let split = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers")
            + 4;
        (
            String::from_utf8_lossy(&all[..split]).into_owned(),
            all[split..].to_vec(),
        )
    }

    #[test]
    fn server_ranges_cuts_corruption_and_log() {
        let server = Server::start();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        server.serve("/a", data.clone());
        let (h, body) = get(&server, "/a", "");
        assert!(
            h.starts_with("HTTP/1.1 200") && h.contains("Accept-Ranges: bytes"),
            "{h}"
        );
        assert_eq!(body, data);
        let (h, body) = get(&server, "/a", "Range: bytes=1000-\r\n");
        assert!(
            h.starts_with("HTTP/1.1 206") && h.contains("Content-Range: bytes 1000-99999/100000"),
            "{h}"
        );
        assert_eq!(body, &data[1000..]);
        assert_eq!(
            server.requests_for("/a")[1].range.as_deref(),
            Some("bytes=1000-")
        );

        server.configure("/a", |b| {
            b.ranges = false;
            b.cut = Cut::Always;
            b.cut_after = 5000;
        });
        let (h, body) = get(&server, "/a", "Range: bytes=1000-\r\n");
        assert!(
            h.starts_with("HTTP/1.1 200") && h.contains("Content-Length: 100000"),
            "{h}"
        );
        assert_eq!(body, &data[..5000]);

        server.serve_with(
            "/b",
            data.clone(),
            Behaviour {
                cut: Cut::WithoutRange,
                cut_after: 10,
                corrupt: true,
                ..Default::default()
            },
        );
        assert_eq!(get(&server, "/b", "").1.len(), 10);
        let body = get(&server, "/b", "Range: bytes=0-\r\n").1;
        assert_eq!(body.len(), data.len());
        assert_ne!(body, data);
        assert_eq!(body[50_000], !data[50_000]);

        server.serve_with(
            "/c",
            data.clone(),
            Behaviour {
                cut: Cut::Once,
                cut_after: 10,
                ..Default::default()
            },
        );
        assert_eq!(get(&server, "/c", "").1.len(), 10);
        assert_eq!(get(&server, "/c", "").1, data);

        assert!(get(&server, "/missing", "").0.starts_with("HTTP/1.1 404"));
        server.configure("/c", |b| b.status = Some(500));
        assert!(get(&server, "/c", "").0.starts_with("HTTP/1.1 500"));
        assert!(server.bytes_served() > 0);
    }
}
