//! Real registries for the OCI tests: Debian's `docker-registry` (the distribution
//! registry) started by the test on 127.0.0.1 only, with its own config file and
//! storage in the test's temp dir (never the packaged service or its config, which
//! listens on every interface), optionally with htpasswd Basic auth. Images are made
//! with `umoci` and copied in with `skopeo`. Every process started here is killed by
//! PID and reaped on drop.

#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{run_bounded, Run};

/// Fails loudly when a tool is missing (tests/run.sh installs them).
pub fn tool(name: &str) -> &'static str {
    for dir in ["/usr/bin", "/usr/sbin", "/bin"] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return Box::leak(p.into_boxed_str());
        }
    }
    panic!("{name} not found: bash tests/run.sh installs it (docker-registry, skopeo, umoci, apache2-utils)");
}

pub fn must(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null());
    let r = run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(r.code, Some(0), "command failed\n{}", r.dump());
    r
}

/// A free port on 127.0.0.1 (bound and released; the registry binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Registry {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
    pub auth: Option<(String, String)>,
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        Self::start_with(dir, None)
    }

    /// With `auth`, the registry wants these Basic credentials (htpasswd, bcrypt).
    pub fn start_with(dir: &Path, auth: Option<(&str, &str)>) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let auth_yaml = match auth {
            Some((user, password)) => {
                let htpasswd = dir.join("htpasswd");
                let mut cmd = Command::new(tool("htpasswd"));
                cmd.args(["-B", "-b", "-c"])
                    .arg(&htpasswd)
                    .args([user, password]);
                must(cmd);
                format!(
                    "auth:\n  htpasswd:\n    realm: locker-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
                    storage.display()
                ),
            )
            .unwrap();
            // Its access log goes to stderr, a line per request: into a file, since a
            // pipe nobody reads stops the registry once 64 KiB are written.
            // The access log (stdout) goes there too: tests count requests in it.
            let log = dir.join("registry.log");
            let file = std::fs::File::create(&log).unwrap();
            let child = Command::new(tool("docker-registry"))
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("start docker-registry");
            let mut reg = Registry {
                child,
                dir: dir.to_path_buf(),
                port,
                auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            };
            if reg.wait_ready(Duration::from_secs(20)) {
                return reg;
            }
            let _ = reg.child.kill();
            let _ = reg.child.wait();
            last = std::fs::read_to_string(&log).unwrap_or_default();
            // Drop kills nothing more: the child was reaped.
            std::mem::forget(reg);
        }
        panic!("docker-registry did not start:\n{last}");
    }

    /// Bounded wait for the port to accept while the child lives.
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/REPO:TAG`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host())
    }

    /// `skopeo copy SRC docker://HOST/REPO_TAG` (plain HTTP to the loopback registry).
    pub fn skopeo_push(&self, src: &str, repo_tag: &str, extra: &[&str]) {
        let mut cmd = Command::new(tool("skopeo"));
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.auth {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.args(extra)
            .arg(src)
            .arg(format!("docker://{}", self.reference(repo_tag)));
        cmd.env("HOME", self.dir.join("skopeo-home"));
        must(cmd);
    }

    /// `skopeo inspect --raw` of a reference in this registry.
    pub fn skopeo(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(tool("skopeo"));
        cmd.args(args);
        cmd.env("HOME", self.dir.join("skopeo-home"));
        must(cmd)
    }

    /// The file the filesystem driver keeps blob `hex` in.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI image layout made with umoci, one tag at a time.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn init(dir: &Path) -> Layout {
        let mut cmd = Command::new(tool("umoci"));
        cmd.args(["init", "--layout"]).arg(dir);
        must(cmd);
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.dir.display())
    }

    pub fn umoci(&self, args: &[&str]) {
        let mut cmd = Command::new(tool("umoci"));
        cmd.args(args);
        must(cmd);
    }

    /// A new tag whose first layer is `tar` (uncompressed; umoci gzips it).
    pub fn new_from_tar(&self, tag: &str, tar: &Path) {
        self.umoci(&["new", "--image", &self.image(tag)]);
        self.add_layer(tag, tar);
    }

    pub fn add_layer(&self, tag: &str, tar: &Path) {
        self.umoci(&[
            "raw",
            "add-layer",
            "--no-history",
            "--image",
            &self.image(tag),
            tar.to_str().unwrap(),
        ]);
    }

    pub fn config(&self, tag: &str, args: &[&str]) {
        let mut all = vec!["config", "--no-history", "--image"];
        let image = self.image(tag);
        all.push(&image);
        all.extend_from_slice(args);
        self.umoci(&all);
    }

    /// `oci:DIR:TAG` for skopeo.
    pub fn skopeo_src(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }
}

/// A token server and gate in front of a registry, for the Bearer flow (the
/// distribution spec's token authentication): a request without the token gets 401 and
/// `WWW-Authenticate: Bearer realm="http://127.0.0.1:P/token",service=…,scope=…`;
/// `GET /token?service=…&scope=…` answers `{"token": …}` (with `creds`, only to Basic
/// credentials); a request with the token is forwarded to the registry unchanged.
pub struct TokenGate {
    pub port: u16,
    /// Query strings of token requests and whether they carried Basic credentials.
    pub token_requests: std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>,
    _serving: Serving,
}

const TOKEN: &str = "locker-test-token-7f3a";

/// A loopback listener whose accept loop hands each connection to `handle` on a thread
/// of its own; on drop the loop is stopped (a last connection wakes it) and joined.
struct Serving {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    fn start(handle: impl Fn(TcpStream, u16) + Send + Sync + 'static) -> Serving {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let handle = std::sync::Arc::new(handle);
        let s = stop.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let handle = handle.clone();
                std::thread::spawn(move || handle(stream, port));
            }
        });
        Serving {
            port,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

impl TokenGate {
    pub fn start(backend: u16, creds: Option<(&str, &str)>) -> TokenGate {
        use std::sync::{Arc, Mutex};
        let log = Arc::new(Mutex::new(Vec::new()));
        let basic = creds.map(|(u, p)| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let l = log.clone();
        let serving = Serving::start(move |stream, port| {
            let _ = gate(stream, port, backend, basic.as_deref(), &l);
        });
        TokenGate {
            port: serving.port,
            token_requests: log,
            _serving: serving,
        }
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("127.0.0.1:{}/{repo_tag}", self.port)
    }
}

fn gate(
    mut client: TcpStream,
    port: u16,
    backend: u16,
    basic: Option<&str>,
    log: &std::sync::Mutex<Vec<(String, bool)>>,
) -> std::io::Result<()> {
    use std::io::Write;
    let Some(Request { head, auth, body }) = read_request(&client)? else {
        return Ok(());
    };
    let target = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let respond = |c: &mut TcpStream, status: &str, extra: &str, body: &str| {
        write!(c, "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    };
    if let Some(query) = target.strip_prefix("/token?") {
        let with_basic = auth.as_deref().is_some_and(|a| a.starts_with("Basic "));
        log.lock().unwrap().push((query.to_string(), with_basic));
        if basic.is_some() && auth.as_deref() != basic {
            return respond(
                &mut client,
                "401 Unauthorized",
                "",
                r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            );
        }
        return respond(
            &mut client,
            "200 OK",
            "",
            &format!(r#"{{"token":"{TOKEN}"}}"#),
        );
    }
    if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        let repo = target
            .strip_prefix("/v2/")
            .and_then(|p| p.split("/manifests/").next())
            .map(|p| p.split("/blobs/").next().unwrap_or(p).to_string())
            .unwrap_or_default();
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"locker-test\",scope=\"repository:{repo}:pull\"\r\n"
        );
        return respond(
            &mut client,
            "401 Unauthorized",
            &challenge,
            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
        );
    }
    forward(&Request { head, auth, body }, backend, &mut client)
}

/// One HTTP request as the test proxies read it: the head lines (without Connection
/// and Authorization), the Authorization value, the body (Content-Length bytes).
struct Request {
    head: Vec<String>,
    auth: Option<String>,
    body: Vec<u8>,
}

fn read_request(client: &TcpStream) -> std::io::Result<Option<Request>> {
    use std::io::{BufRead, BufReader};
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut line = String::new();
    let mut auth = None;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("authorization:") {
            auth = Some(line[line.len() - v.len()..].trim().to_string());
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") && !lower.starts_with("authorization:") {
            head.push(line.clone());
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request { head, auth, body }))
}

/// Sends `req` to the registry on `backend` (one request per connection) and its
/// answer back to `client`.
fn forward(req: &Request, backend: u16, client: &mut TcpStream) -> std::io::Result<()> {
    use std::io::Write;
    let mut upstream = TcpStream::connect(("127.0.0.1", backend))?;
    for h in &req.head {
        upstream.write_all(h.as_bytes())?;
    }
    upstream.write_all(b"Connection: close\r\n\r\n")?;
    upstream.write_all(&req.body)?;
    std::io::copy(&mut upstream, client)?;
    Ok(())
}

/// A forwarding proxy in front of a registry that, once, reads the `nth` PATCH request
/// (1-based) and closes the connection without forwarding it or answering: a push cut
/// off midway, at a known chunk. Every other request passes unchanged.
pub struct CutProxy {
    pub port: u16,
    pub patches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _serving: Serving,
}

impl CutProxy {
    pub fn start(backend: u16, nth: usize) -> CutProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let patches = std::sync::Arc::new(AtomicUsize::new(0));
        let p = patches.clone();
        let serving = Serving::start(move |mut stream, _| {
            let Ok(Some(req)) = read_request(&stream) else {
                return;
            };
            let patch = req.head.first().is_some_and(|l| l.starts_with("PATCH "));
            if patch && p.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            let _ = forward(&req, backend, &mut stream);
        });
        CutProxy {
            port: serving.port,
            patches,
            _serving: serving,
        }
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("127.0.0.1:{}/{repo_tag}", self.port)
    }
}

/// An OCI image layout written by hand (no tool): for images umoci makes slowly (over
/// a hundred layers) or not at all (a config whose diff_ids lie).
pub struct HandImage {
    /// Uncompressed layer tars, bottom first.
    pub layers: Vec<Vec<u8>>,
    /// Gzip the layer blobs (the diff_ids stay the digests of the tars).
    pub gzip: bool,
    /// The config's diff_ids; None: the layers' true ones.
    pub diff_ids: Option<Vec<String>>,
    pub cmd: Vec<String>,
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

impl HandImage {
    /// Writes the layout into `dir` with the image tagged `tag`; returns `oci:DIR:TAG`.
    pub fn write(&self, dir: &Path, tag: &str) -> String {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| -> String {
            let hex = sha256_hex(data);
            std::fs::write(blobs.join(&hex), data).unwrap();
            format!("sha256:{hex}")
        };
        let mut descriptors = Vec::new();
        let mut true_ids = Vec::new();
        for tar in &self.layers {
            true_ids.push(format!("sha256:{}", sha256_hex(tar)));
            let (blob, media) = if self.gzip {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut e, tar).unwrap();
                (
                    e.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            } else {
                (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
            };
            descriptors.push(serde_json::json!({
                "mediaType": media, "digest": put(&blob), "size": blob.len(),
            }));
        }
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": self.cmd, "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": self.diff_ids.clone().unwrap_or(true_ids)},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put(&config), "size": config.len(),
            },
            "layers": descriptors,
        }))
        .unwrap();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put(&manifest), "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        format!("oci:{}:{tag}", dir.display())
    }
}
