//! A client of the OCI distribution API (the registry HTTP API v2): manifests and blobs
//! by digest, the token handshake, credentials, uploads.
//!
//! Invariants: nothing a registry sends is trusted before its digest is checked. A
//! manifest fetched by digest must hash to it; one fetched by tag must hash to the
//! `Docker-Content-Digest` the registry names, when it names one; small blobs (configs)
//! are hashed before they are returned; layer blobs go through `Fetcher` (resume with
//! Range) and the caller hashes every byte. Authentication follows the challenge:
//! a 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` gets a token from
//! the realm (anonymous, or with the stored credentials as Basic), `Basic` gets the
//! stored credentials; the header is then sent with every request to the registry.
//! Blocking I/O only (ureq), no async runtime.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;

use crate::image::fetch::{FetchError, Fetcher};
use crate::image::reference::Reference;
use crate::store::digest::Digest;

/// Media types locker asks for and understands.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and configs are small; a larger one is refused before it is read.
pub(crate) const MANIFEST_LIMIT: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("{method} {url}: HTTP {code}{detail}")]
    Status {
        method: &'static str,
        url: String,
        code: u16,
        detail: String,
    },
    #[error("{method} {url}: {reason}")]
    Transport {
        method: &'static str,
        url: String,
        reason: String,
    },
    #[error("{registry} wants credentials for {repository}; run `locker login {registry}`")]
    NeedsLogin {
        registry: String,
        repository: String,
    },
    #[error("{registry} refused the credentials for {repository} (HTTP {code}); run `locker login {registry}` again")]
    Denied {
        registry: String,
        repository: String,
        code: u16,
    },
    #[error("token from {realm}: {reason}")]
    Token { realm: String, reason: String },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: usize },
    #[error("{what} does not match its digest: expected sha256:{expected}, got sha256:{actual}; nothing was stored")]
    Mismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("credentials file {path}")]
    AuthFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("record the upload session in {path}")]
    Session {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("credentials file {path}: {reason}")]
    BadAuthFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Helper(#[from] crate::image::cred_helper::HelperError),
}

/// Stored credentials for one registry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Credentials {
    pub user: String,
    pub password: String,
}

/// The credential files, in the order podman reads them: its own auth.json first, then
/// Docker's config.json.
pub(crate) fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(dir) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(Path::new(&dir).join("containers/auth.json"));
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        files.push(Path::new(&dir).join("config.json"));
    } else if let Some(home) = std::env::var_os("HOME") {
        files.push(Path::new(&home).join(".docker/config.json"));
    }
    files
}

/// The credentials for `registry` from the first file that has them: from the helper
/// the file names for it (Docker's order: `credHelpers`, then `credsStore`), else from
/// its `auths`. A helper with nothing for the registry passes on to the next file.
pub(crate) fn credentials_for(registry: &str) -> Result<Option<Credentials>, RegistryError> {
    for path in auth_files() {
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(RegistryError::AuthFile { path, source }),
        };
        let helper = helper_in(&text, registry).map_err(|reason| RegistryError::BadAuthFile {
            path: path.clone(),
            reason,
        })?;
        if let Some(helper) = helper {
            match crate::image::cred_helper::get(&helper, registry)? {
                Some(c) => return Ok(Some(c)),
                None => continue,
            }
        }
        if let Some(c) =
            parse_auth_file(&text, registry).map_err(|reason| RegistryError::BadAuthFile {
                path: path.clone(),
                reason,
            })?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// A credentials file key (`HOST`, or a URL `https://HOST/v1/`) names `registry`.
fn key_names(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    host.split('/').next().unwrap_or(host) == registry
}

/// The credential helper a credentials file names for `registry`: its `credHelpers`
/// entry, else `credsStore` (Docker's config.json; podman's auth.json has the same keys).
pub(crate) fn helper_in(text: &[u8], registry: &str) -> Result<Option<String>, String> {
    let v: serde_json::Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let named = v
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| key_names(k, registry)))
        .map(|(k, name)| {
            name.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("credHelpers entry {k} is not a string"))
        })
        .transpose()?;
    let store = match v.get("credsStore") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("credsStore is not a string".into()),
    };
    Ok(named.filter(|n| !n.is_empty()).or(store))
}

/// `{"auths": {"HOST": {"auth": base64("user:password")}}}` (Docker's and podman's
/// format); a key may also be written as a URL (`https://HOST/v1/`).
pub(crate) fn parse_auth_file(text: &[u8], registry: &str) -> Result<Option<Credentials>, String> {
    let v: serde_json::Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for (key, entry) in auths {
        if !key_names(key, registry) {
            continue;
        }
        let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) else {
            continue;
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("auth for {key} is not base64: {e}"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| format!("auth for {key} is not UTF-8"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| format!("auth for {key} is not user:password"))?;
        return Ok(Some(Credentials {
            user: user.into(),
            password: password.into(),
        }));
    }
    Ok(None)
}

/// `auth_text` with `registry`'s credentials set (other keys and registries kept).
pub(crate) fn set_auth(
    auth_text: Option<&[u8]>,
    registry: &str,
    c: &Credentials,
) -> Result<Vec<u8>, String> {
    let mut v: serde_json::Value = match auth_text {
        Some(t) if !t.is_empty() => serde_json::from_slice(t).map_err(|e| e.to_string())?,
        _ => serde_json::json!({}),
    };
    let obj = v.as_object_mut().ok_or("not a JSON object")?;
    let auths = obj
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or("`auths` is not an object")?;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
    auths.insert(registry.to_string(), serde_json::json!({ "auth": encoded }));
    let mut out = serde_json::to_vec_pretty(&v).expect("json");
    out.push(b'\n');
    Ok(out)
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// `Bearer realm="…",service="…",scope="…"` (RFC 7235 §4.1, quoted or token values).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// A registry repository, with the authorization it earned so far.
pub(crate) struct Registry {
    agent: ureq::Agent,
    fetcher: Fetcher,
    pub reference: Reference,
    base: String,
    creds: Option<Credentials>,
    auth: Mutex<Option<String>>,
    push: bool,
}

/// How `push_blob` put a blob into the repository.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pushed {
    /// The repository had it.
    Present,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Sent.
    Uploaded,
    /// Sent from where an earlier, interrupted upload stopped.
    Resumed,
}

/// `len` bytes of the file at `path` from `offset`, as an upload body (an error
/// opening it is the body's first read error, so the upload reports it).
fn blob_reader(path: &Path, offset: u64, len: u64) -> Box<dyn Read> {
    use std::io::Seek;
    let opened = std::fs::File::open(path).and_then(|mut f| {
        f.seek(io::SeekFrom::Start(offset))?;
        Ok(f)
    });
    match opened {
        Ok(f) => Box::new(io::BufReader::new(f).take(len)),
        Err(e) => Box::new(FailingReader(Some(e))),
    }
}

/// A reader that fails with the error opening its file gave.
struct FailingReader(Option<io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("blob unreadable")))
    }
}

/// A manifest or index as fetched, verified against its digest.
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl Registry {
    /// A client for `reference`'s repository; `push` asks tokens for push access too.
    pub(crate) fn new(reference: &Reference, push: bool) -> Result<Registry, RegistryError> {
        let creds = credentials_for(&reference.registry)?;
        let fetcher = Fetcher::new();
        Ok(Registry {
            agent: fetcher.agent().clone(),
            fetcher,
            base: reference.api_base(),
            reference: reference.clone(),
            creds,
            auth: Mutex::new(None),
            push,
        })
    }

    /// With explicit credentials (login checks them before storing them).
    pub(crate) fn with_credentials(mut self, c: Credentials) -> Self {
        self.creds = Some(c);
        self
    }

    fn header(&self) -> Option<String> {
        self.auth.lock().expect("auth lock").clone()
    }

    /// A fetcher carrying the current authorization, for resumable blob downloads.
    pub(crate) fn fetcher(&self) -> Fetcher {
        self.fetcher.clone().with_authorization(self.header())
    }

    pub(crate) fn blob_url(&self, digest: &Digest) -> String {
        format!("{}/blobs/sha256:{}", self.base, digest.hex())
    }

    /// Sends one request, answering an authentication challenge once.
    fn send(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&mut dyn FnMut() -> Box<dyn Read>>,
    ) -> Result<ureq::Response, RegistryError> {
        let mut body = body;
        for attempt in 0..2 {
            let mut req = self.agent.request(method, url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if let Some(auth) = self.header() {
                req = req.set("Authorization", &auth);
            }
            let result = match body.as_mut() {
                Some(make) => req.send(make()),
                None => req.call(),
            };
            match result {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if attempt == 0 => {
                    let challenge = resp.header("WWW-Authenticate").and_then(parse_challenge);
                    self.authenticate(challenge)?;
                }
                Err(ureq::Error::Status(code @ (401 | 403), _)) => {
                    return Err(if self.creds.is_some() {
                        RegistryError::Denied {
                            registry: self.reference.registry.clone(),
                            repository: self.reference.repository.clone(),
                            code,
                        }
                    } else {
                        RegistryError::NeedsLogin {
                            registry: self.reference.registry.clone(),
                            repository: self.reference.repository.clone(),
                        }
                    })
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(RegistryError::Status {
                        method,
                        url: url.into(),
                        code,
                        detail: error_detail(resp),
                    })
                }
                Err(ureq::Error::Transport(t)) => {
                    return Err(RegistryError::Transport {
                        method,
                        url: url.into(),
                        reason: t.to_string(),
                    })
                }
            }
        }
        unreachable!("the loop returns")
    }

    fn authenticate(&self, challenge: Option<Challenge>) -> Result<(), RegistryError> {
        let needs_login = || RegistryError::NeedsLogin {
            registry: self.reference.registry.clone(),
            repository: self.reference.repository.clone(),
        };
        let challenge = challenge.ok_or_else(needs_login)?;
        let basic = self.creds.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.user, c.password))
            )
        });
        let header = match challenge.scheme.as_str() {
            "basic" => basic.ok_or_else(needs_login)?,
            "bearer" => {
                let realm = challenge.params.get("realm").ok_or_else(needs_login)?;
                let actions = if self.push { "pull,push" } else { "pull" };
                let scope = format!("repository:{}:{actions}", self.reference.repository);
                let mut req = self.agent.get(realm).query("scope", &scope);
                if let Some(service) = challenge.params.get("service") {
                    req = req.query("service", service);
                }
                if let Some(b) = &basic {
                    req = req.set("Authorization", b);
                }
                let token_err = |reason: String| RegistryError::Token {
                    realm: realm.clone(),
                    reason,
                };
                let resp = match req.call() {
                    Ok(r) => r,
                    Err(ureq::Error::Status(401 | 403, _)) if self.creds.is_some() => {
                        return Err(RegistryError::Denied {
                            registry: self.reference.registry.clone(),
                            repository: self.reference.repository.clone(),
                            code: 401,
                        })
                    }
                    Err(ureq::Error::Status(401 | 403, _)) => return Err(needs_login()),
                    Err(e) => return Err(token_err(e.to_string())),
                };
                let mut body = Vec::new();
                resp.into_reader()
                    .take(1 << 20)
                    .read_to_end(&mut body)
                    .map_err(|e| token_err(e.to_string()))?;
                let v: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| token_err(e.to_string()))?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| token_err("the answer has no token".into()))?;
                format!("Bearer {token}")
            }
            _ => return Err(needs_login()),
        };
        *self.auth.lock().expect("auth lock") = Some(header);
        Ok(())
    }

    /// `GET /v2/`: reachable, and the credentials (if any) accepted.
    pub(crate) fn ping(&self) -> Result<(), RegistryError> {
        let url = format!("{}/tags/list", self.base);
        match self.send("GET", &url, &[], None) {
            Ok(_) => Ok(()),
            // The repository may not exist yet (a first push); the handshake passed.
            Err(RegistryError::Status { code: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The manifest or index `lookup` (a tag or `sha256:HEX`) names, verified.
    pub(crate) fn manifest(&self, lookup: &str) -> Result<Fetched, RegistryError> {
        let url = format!("{}/manifests/{lookup}", self.base);
        let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
        let resp = self.send("GET", &url, &[("Accept", &accept)], None)?;
        let media_type = resp.content_type().to_string();
        let named = resp
            .header("Docker-Content-Digest")
            .and_then(|d| d.parse::<Digest>().ok());
        let bytes = read_limited(resp, &url, MANIFEST_LIMIT)?;
        let actual = Digest::of(&bytes);
        let expected = lookup.parse::<Digest>().ok().or(named);
        if let Some(expected) = expected.filter(|e| *e != actual) {
            return Err(RegistryError::Mismatch {
                what: format!("manifest {url}"),
                expected,
                actual,
            });
        }
        let media_type = sniff_media_type(&bytes).unwrap_or(media_type);
        Ok(Fetched {
            bytes,
            media_type,
            digest: actual,
        })
    }

    /// A small blob (an image config), whole, verified.
    pub(crate) fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let url = self.blob_url(digest);
        let resp = self.send("GET", &url, &[], None)?;
        let bytes = read_limited(resp, &url, MANIFEST_LIMIT)?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(RegistryError::Mismatch {
                what: format!("blob {url}"),
                expected: *digest,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Makes sure the registry holds an authorization for blob GETs: the first request
    /// answers the challenge, so parallel downloads start with a token.
    pub(crate) fn authorize_blobs(&self, digest: &Digest) -> Result<(), RegistryError> {
        self.send("HEAD", &self.blob_url(digest), &[], None)
            .map(drop)
    }

    pub(crate) fn has_blob(&self, digest: &Digest) -> Result<bool, RegistryError> {
        match self.send("HEAD", &self.blob_url(digest), &[], None) {
            Ok(_) => Ok(true),
            Err(RegistryError::Status { code: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Puts the blob at `path` into the repository, the cheapest way first: nothing
    /// when the registry has it there already (HEAD), a cross-repository mount from
    /// `from` (a repository of the same registry that holds it: no bytes sent), else an
    /// upload. A refused or unanswered mount falls back to the upload: a registry may
    /// decline it (201 is a mount, 202 a session). A blob larger than `chunk` goes up in
    /// chunks, resumable through `session` (see `upload_chunked`); a smaller one in one
    /// PUT (POST for a session, then PUT `?digest=`).
    pub(crate) fn push_blob(
        &self,
        blob: (&Digest, u64, &Path),
        from: Option<&str>,
        (chunk, session): (u64, &Path),
    ) -> Result<Pushed, RegistryError> {
        let (digest, size, path) = blob;
        if self.has_blob(digest)? {
            let _ = std::fs::remove_file(session);
            return Ok(Pushed::Present);
        }
        let url = format!("{}/blobs/uploads/", self.base);
        if size > chunk {
            if let Some(at) = self.resume_point(session) {
                return self.upload_chunked(digest, (size, path), chunk, session, at);
            }
        }
        let mounted = from.and_then(|repo| {
            let mount = format!("{url}?mount=sha256:{}&from={repo}", digest.hex());
            self.send("POST", &mount, &[("Content-Length", "0")], None)
                .ok()
        });
        let resp = match mounted {
            Some(r) if r.status() == 201 => return Ok(Pushed::Mounted),
            Some(r) if r.header("Location").is_some() => r,
            _ => self.send("POST", &url, &[("Content-Length", "0")], None)?,
        };
        let location = resp
            .header("Location")
            .ok_or_else(|| RegistryError::Status {
                method: "POST",
                url: url.clone(),
                code: resp.status(),
                detail: ": no Location for the upload".into(),
            })?;
        let location = absolute(&url, location);
        if size > chunk {
            return self.upload_chunked(digest, (size, path), chunk, session, (location, 0));
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest=sha256:{}", digest.hex());
        let len = size.to_string();
        let mut open = || blob_reader(path, 0, size);
        self.send(
            "PUT",
            &put,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", &len),
            ],
            Some(&mut open),
        )?;
        Ok(Pushed::Uploaded)
    }

    /// Where an upload recorded in `session` stands: its current Location and the next
    /// byte the registry wants (GET on the session answers `Range: 0-LAST`). None when
    /// there is no session or the registry no longer has it (then a new one starts).
    fn resume_point(&self, session: &Path) -> Option<(String, u64)> {
        let location = std::fs::read_to_string(session).ok()?;
        let location = location.trim().to_string();
        let resp = self.send("GET", &location, &[], None).ok()?;
        let next = match resp.header("Range") {
            Some(r) => r.rsplit('-').next()?.trim().parse::<u64>().ok()? + 1,
            None => 0,
        };
        let location = resp
            .header("Location")
            .map(|l| absolute(&location, l))
            .unwrap_or(location);
        Some((location, next))
    }

    /// The chunked upload (distribution spec: PATCH with `Content-Range` per chunk,
    /// then PUT `?digest=`), from byte `at` of the session at `location`. Each answer's
    /// Location is written to `session` before the next chunk, so an upload cut off
    /// (a killed push, a dropped connection) resumes where the registry stopped; the
    /// registry still checks the whole blob against its digest at the PUT.
    fn upload_chunked(
        &self,
        digest: &Digest,
        (size, path): (u64, &Path),
        chunk: u64,
        session: &Path,
        (mut location, mut at): (String, u64),
    ) -> Result<Pushed, RegistryError> {
        let resumed = at > 0;
        let record = |location: &str| {
            std::fs::write(session, location).map_err(|source| RegistryError::Session {
                path: session.to_path_buf(),
                source,
            })
        };
        record(&location)?;
        while at < size {
            let len = chunk.min(size - at);
            let range = format!("{at}-{}", at + len - 1);
            let length = len.to_string();
            let mut open = || blob_reader(path, at, len);
            let resp = self.send(
                "PATCH",
                &location,
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", &range),
                    ("Content-Length", &length),
                ],
                Some(&mut open),
            )?;
            if let Some(l) = resp.header("Location") {
                location = absolute(&location, l);
            }
            record(&location)?;
            at += len;
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest=sha256:{}", digest.hex());
        self.send("PUT", &put, &[("Content-Length", "0")], None)?;
        let _ = std::fs::remove_file(session);
        Ok(if resumed {
            Pushed::Resumed
        } else {
            Pushed::Uploaded
        })
    }

    pub(crate) fn push_manifest(
        &self,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let url = format!("{}/manifests/{tag}", self.base);
        let body = bytes.to_vec();
        let len = body.len().to_string();
        let mut open = move || -> Box<dyn Read> { Box::new(io::Cursor::new(body.clone())) };
        // A known length, not chunked transfer: some registries and proxies refuse that
        // for manifests.
        self.send(
            "PUT",
            &url,
            &[("Content-Type", media_type), ("Content-Length", &len)],
            Some(&mut open),
        )?;
        Ok(())
    }
}

/// A Location header relative to the request URL made absolute.
fn absolute(request: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = request.find("://").map_or(0, |i| i + 3);
    let host_end = request[scheme_end..]
        .find('/')
        .map_or(request.len(), |i| scheme_end + i);
    format!("{}{location}", &request[..host_end])
}

/// The media type a manifest declares in its body, which is what its digest covers.
fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Some(m.to_string());
    }
    if v.get("manifests").is_some() {
        Some(OCI_INDEX.into())
    } else if v.get("layers").is_some() {
        Some(OCI_MANIFEST.into())
    } else {
        None
    }
}

fn read_limited(resp: ureq::Response, url: &str, limit: usize) -> Result<Vec<u8>, RegistryError> {
    let mut body = Vec::new();
    resp.into_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| RegistryError::Transport {
            method: "GET",
            url: url.into(),
            reason: e.to_string(),
        })?;
    if body.len() > limit {
        return Err(RegistryError::TooLarge {
            what: url.into(),
            limit,
        });
    }
    Ok(body)
}

/// `: message` from a registry's `{"errors":[{"code","message"}]}` body.
fn error_detail(resp: ureq::Response) -> String {
    let mut body = Vec::new();
    let _ = resp.into_reader().take(64 << 10).read_to_end(&mut body);
    let v: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    v.as_ref()
        .and_then(|v| {
            v.get("errors")?
                .get(0)?
                .get("message")?
                .as_str()
                .map(str::to_string)
        })
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:9/token",service="reg \"x\"",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "http://127.0.0.1:9/token");
        assert_eq!(c.params["service"], "reg \"x\"");
        assert_eq!(c.params["scope"], "repository:a/b:pull");
        let c = parse_challenge("Basic realm=Registry").unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry");
    }

    #[test]
    fn auth_files_round_trip() {
        let c = Credentials {
            user: "u".into(),
            password: "p:w".into(),
        };
        let text = set_auth(
            Some(br#"{"auths":{"other":{"auth":"eDp5"}},"credsStore":"x"}"#),
            "127.0.0.1:5000",
            &c,
        )
        .unwrap();
        assert_eq!(parse_auth_file(&text, "127.0.0.1:5000").unwrap(), Some(c));
        assert_eq!(parse_auth_file(&text, "other").unwrap().unwrap().user, "x");
        assert!(String::from_utf8_lossy(&text).contains("credsStore"));
        assert_eq!(
            parse_auth_file(br#"{"auths":{"https://h:1/v1/":{"auth":"YTpi"}}}"#, "h:1")
                .unwrap()
                .unwrap()
                .password,
            "b"
        );
        assert!(parse_auth_file(br#"{"auths":{"h":{"auth":"!!"}}}"#, "h").is_err());
    }

    #[test]
    fn cred_helpers_name_a_registry_before_creds_store() {
        let text = br#"{"credsStore":"every","credHelpers":{"127.0.0.1:5000":"one","https://h:1/v1/":"url"}}"#;
        assert_eq!(
            helper_in(text, "127.0.0.1:5000").unwrap().as_deref(),
            Some("one")
        );
        assert_eq!(helper_in(text, "h:1").unwrap().as_deref(), Some("url"));
        assert_eq!(helper_in(text, "other").unwrap().as_deref(), Some("every"));
        assert_eq!(helper_in(br#"{"auths":{}}"#, "other").unwrap(), None);
        assert_eq!(helper_in(br#"{"credsStore":""}"#, "other").unwrap(), None);
        assert!(helper_in(br#"{"credsStore":1}"#, "other").is_err());
    }

    #[test]
    fn relative_locations() {
        assert_eq!(
            absolute(
                "http://127.0.0.1:5000/v2/a/blobs/uploads/",
                "/v2/a/blobs/uploads/x?s=1"
            ),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x?s=1"
        );
    }
}
