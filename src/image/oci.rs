//! `locker pull REF` for OCI images: registry -> index (platform) -> manifest -> config
//! -> layers, each layer downloaded, hashed and unpacked in one streaming pass, several
//! layers at once on their own threads, into the store's shared layers/.
//!
//! Invariants: every byte is checked against a digest before it counts (manifests and
//! the config by `registry`, each layer blob while it streams); a layer the store has
//! is never fetched again (layers are named by blob digest and shared between images);
//! the unpacked layers and the image's name appear together under the store lock, only
//! when every layer matched (`Store::publish_layers`); an interrupted blob keeps its
//! partial download, so the next pull resumes it with a Range request.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::image::fetch::{FetchError, Reporter};
use crate::image::pipe;
use crate::image::reference::Reference;
use crate::image::registry::{self, Registry, RegistryError};
use crate::image::unpack::{self, LayerReport, UnpackError};
use crate::progress::Printer;
use crate::store::digest::{Digest, Hasher};
use crate::store::{ImageConfig, Installed, Store, Work};

/// Layers downloaded at once (Docker's default is 3, podman's 6).
const PARALLEL: usize = 3;
/// The fewest chunks in flight in each layer's two pipes: layers pulled at once share
/// one catalog pull's budget (`pipe::DEPTH`), so peak memory stays near one pull's.
const MIN_PIPE_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub(crate) enum OciError {
    #[error("{what}: {reason}")]
    Bad { what: String, reason: String },
    #[error(
        "{reference} has no image for {wanted}; it has: {available}; choose one with --platform"
    )]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("bad --platform {0:?}: use OS/ARCH[/VARIANT], e.g. linux/arm64")]
    BadPlatform(String),
    #[error("layer {digest} of {reference}: media type {media_type} is not a tar layer locker can unpack")]
    LayerType {
        reference: String,
        digest: String,
        media_type: String,
    },
    #[error("layer sha256:{digest}")]
    Unpack {
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("layer blob {url} does not match its digest: expected sha256:{expected}, got sha256:{actual}; nothing was stored")]
    Mismatch {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer blob sha256:{layer} unpacks to sha256:{actual}, but the config of {reference} says its diff_id is sha256:{expected}; nothing was stored")]
    DiffId {
        reference: String,
        layer: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer sha256:{layer}: hard link {link} to {target}, which no layer below has")]
    LowerLink {
        layer: String,
        link: String,
        target: String,
    },
    #[error("copy {target} up into layer sha256:{layer}")]
    CopyUp {
        layer: String,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// `os/arch[/variant]`, in OCI's spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub(crate) fn parse(s: &str) -> Result<Platform, OciError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: normalize_arch(arch).0,
                variant: normalize_arch(arch).1,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: normalize_arch(arch).0,
                variant: Some(variant.to_string()),
            }),
            _ => Err(OciError::BadPlatform(s.to_string())),
        }
    }

    /// This machine, as Go names it (GOOS/GOARCH, GOARM).
    pub(crate) fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != arch {
            return false;
        }
        match (&self.variant, variant) {
            (Some(want), Some(have)) => want == have,
            // arm64's variant is v8 whether written or not.
            _ => true,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Debian's names for what Go calls the architecture, so `--platform linux/armhf` works.
fn normalize_arch(arch: &str) -> (String, Option<String>) {
    match arch {
        "x86_64" => ("amd64".into(), None),
        "aarch64" => ("arm64".into(), None),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "i386" | "i686" => ("386".into(), None),
        "ppc64el" => ("ppc64le".into(), None),
        other => (other.into(), None),
    }
}

fn bad(what: impl Into<String>, reason: impl std::fmt::Display) -> OciError {
    OciError::Bad {
        what: what.into(),
        reason: reason.to_string(),
    }
}

fn oci_digest(d: &Descriptor, what: &str) -> Result<Digest, OciError> {
    let text = d.digest().to_string();
    text.strip_prefix("sha256:")
        .and_then(|h| h.parse().ok())
        .ok_or_else(|| {
            bad(
                what,
                format!("digest {text} is not sha256 (the only one locker checks)"),
            )
        })
}

/// The parts of an image config (image-spec config.md) locker reads. Its own type, not
/// oci-spec's `ImageConfiguration`: that one requires `history`, which many images
/// (umoci's, for one) leave out.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct ImageConfiguration {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// What a resolved reference names: the manifest for the platform and its image.
pub(crate) struct Resolved {
    pub manifest_digest: Digest,
    pub config: ImageConfiguration,
    pub config_digest: Digest,
    pub layers: Vec<(Digest, u64, String)>,
    /// The config's rootfs.diff_ids: each layer's uncompressed digest, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// Fetches (and verifies) the manifest `reference` names for `platform`, and its config.
pub(crate) fn resolve(
    reg: &Registry,
    reference: &Reference,
    platform: &Platform,
) -> Result<Resolved, OciError> {
    let mut fetched = reg.manifest(&reference.lookup())?;
    let what = reference.to_string();
    if fetched.media_type == registry::OCI_INDEX || fetched.media_type == registry::DOCKER_LIST {
        let index: ImageIndex = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| bad(format!("index of {what}"), e))?;
        let mut available = Vec::new();
        let mut chosen = None;
        for m in index.manifests() {
            let Some(p) = m.platform() else { continue };
            let (os, arch) = (p.os().to_string(), p.architecture().to_string());
            available.push(match p.variant() {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            });
            if chosen.is_none() && platform.matches(&os, &arch, p.variant().as_deref()) {
                chosen = Some(oci_digest(m, &what)?);
            }
        }
        let digest = chosen.ok_or_else(|| OciError::NoPlatform {
            reference: what.clone(),
            wanted: platform.to_string(),
            available: if available.is_empty() {
                "nothing".into()
            } else {
                available.join(", ")
            },
        })?;
        fetched = reg.manifest(&format!("sha256:{}", digest.hex()))?;
    }
    if fetched.media_type != registry::OCI_MANIFEST
        && fetched.media_type != registry::DOCKER_MANIFEST
    {
        return Err(bad(
            format!("manifest of {what}"),
            format!(
                "media type {} is neither an OCI nor a Docker schema 2 image",
                fetched.media_type
            ),
        ));
    }
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| bad(format!("manifest of {what}"), e))?;
    let config_digest = oci_digest(manifest.config(), &what)?;
    let config_bytes = reg.small_blob(&config_digest)?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| bad(format!("config of {what}"), e))?;
    let mut layers = Vec::new();
    for l in manifest.layers() {
        let media_type = l.media_type().to_string();
        if !is_tar_layer(&media_type) {
            return Err(OciError::LayerType {
                reference: what.clone(),
                digest: l.digest().to_string(),
                media_type,
            });
        }
        layers.push((oci_digest(l, &what)?, l.size(), media_type));
    }
    let diff_ids = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| {
            d.strip_prefix("sha256:")
                .and_then(|h| h.parse().ok())
                .ok_or_else(|| {
                    bad(
                        format!("config of {what}"),
                        format!("diff_id {d} is not sha256 (the only one locker checks)"),
                    )
                })
        })
        .collect::<Result<Vec<Digest>, _>>()?;
    if diff_ids.len() != layers.len() {
        return Err(bad(
            format!("image {what}"),
            format!(
                "the manifest lists {} layers, the config {}",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let (os, arch) = (config.os.clone(), config.architecture.clone());
    if !platform.matches(&os, &arch, config.variant.as_deref()) {
        return Err(OciError::NoPlatform {
            reference: what,
            wanted: platform.to_string(),
            available: format!("{os}/{arch}"),
        });
    }
    Ok(Resolved {
        manifest_digest: fetched.digest,
        config,
        config_digest,
        layers,
        diff_ids,
    })
}

fn is_tar_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// The run-time part of the config, as the store keeps it.
pub(crate) fn run_config(config: &ImageConfiguration, digest: &Digest) -> ImageConfig {
    let c = config.config.clone().unwrap_or_default();
    ImageConfig {
        digest: digest.hex(),
        entrypoint: c.entrypoint,
        cmd: c.cmd,
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        user: c.user.filter(|u| !u.is_empty()),
        stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
        os: config.os.clone(),
        architecture: config.architecture.clone(),
    }
}

/// The key a blob's partial download and its lock are named by (shared by registries).
fn blob_key(digest: &Digest) -> String {
    format!("oci-blob:sha256:{}", digest.hex())
}

/// `locker pull REF`; `named` records it under a catalog entry's name and aliases
/// instead of the reference.
pub(crate) fn pull(
    store: &Store,
    reference: &Reference,
    platform: Option<&Platform>,
    named: Option<(&str, &[String])>,
    printer: &Printer,
) -> anyhow::Result<Installed> {
    let host = Platform::host();
    let platform = platform.unwrap_or(&host);
    let (name, aliases) = match named {
        Some((n, a)) => (n.to_string(), a.to_vec()),
        None => (reference.to_string(), Vec::new()),
    };
    let _source_lock = store.lock_source(&name)?;
    let reg = Registry::new(reference, false)?;
    let started = Instant::now();
    let image = resolve(&reg, reference, platform)?;
    let layers: Vec<Digest> = image.layers.iter().map(|(d, _, _)| *d).collect();
    let config = run_config(&image.config, &image.config_digest);

    if let Some((_, r)) = store.refs()?.find(&name) {
        let same = r.digest == image.manifest_digest.hex()
            && layers.iter().all(|l| store.layer(l).is_dir());
        if same {
            return Ok(Installed {
                name,
                digest: image.manifest_digest,
                fetched: false,
            });
        }
    }

    // A layer the store has was checked against its diff_id when it was unpacked:
    // this image's config must name the same one.
    let refs = store.refs()?;
    for (layer, diff_id) in layers.iter().zip(&image.diff_ids) {
        let recorded = refs
            .diff_id_of(&layer.hex())
            .and_then(|d| d.parse::<Digest>().ok());
        if let Some(recorded) = recorded.filter(|r| r != diff_id) {
            return Err(OciError::DiffId {
                reference: name.clone(),
                layer: layer.hex(),
                expected: *diff_id,
                actual: recorded,
            }
            .into());
        }
    }
    let missing: Vec<usize> = (0..layers.len())
        .filter(|&i| !store.layer(&layers[i]).is_dir())
        // One download of a layer listed twice.
        .filter(|&i| !layers[..i].contains(&layers[i]))
        .collect();
    printer.detail(&format!(
        "{name}: manifest sha256:{}, {} layers, {} to fetch",
        image.manifest_digest.short(),
        layers.len(),
        missing.len()
    ));
    if let Some(&first) = missing.first() {
        // One request answers the token challenge before the threads start.
        reg.authorize_blobs(&layers[first])?;
    }
    let reporter = printer.reporter();
    let results: Mutex<Vec<Option<LayerResult>>> =
        Mutex::new((0..layers.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = PARALLEL.min(missing.len());
    let depth = (pipe::DEPTH / workers.max(1)).max(MIN_PIPE_DEPTH);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= missing.len() || failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = missing[k];
                let want = (&layers[i], &image.diff_ids[i]);
                let r = fetch_layer(store, &reg, want, &name, depth, reporter.as_ref());
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                results.lock().expect("results")[i] = Some(r);
            });
        }
    });
    let mut works: Vec<Option<(Work, LayerReport)>> = Vec::new();
    for r in results.into_inner().expect("results") {
        works.push(r.transpose()?);
    }
    copy_up_lower_links(store, &layers, &mut works)?;
    let mut stats = crate::image::unpack::Stats::default();
    for (_, rep) in works.iter().flatten() {
        stats.add(&rep.stats);
    }
    let bytes = stats.bytes;
    let works: Vec<(Work, Digest)> = works
        .into_iter()
        .zip(&layers)
        .filter_map(|(w, d)| w.map(|(w, _)| (w, *d)))
        .collect();
    let fetched = !works.is_empty();
    store.publish_layers(
        works,
        (&name, &aliases),
        &image.manifest_digest,
        (&layers, &image.diff_ids),
        config,
        &reference.to_string(),
    )?;
    if let Some(losses) = stats.losses() {
        printer.info(&format!("{name}: {losses}"));
    }
    printer.detail(&format!(
        "{name}: {} MiB unpacked in {:.1}s",
        bytes >> 20,
        started.elapsed().as_secs_f64()
    ));
    Ok(Installed {
        name,
        digest: image.manifest_digest,
        fetched,
    })
}

/// One layer's outcome: its unpacked work directory, or why not.
type LayerResult = anyhow::Result<(Work, LayerReport)>;

/// Downloads blob `digest` (resuming a partial download), hashing every byte, and
/// unpacks it into a fresh work directory in the same pass.
fn fetch_layer(
    store: &Store,
    reg: &Registry,
    (digest, diff_id): (&Digest, &Digest),
    reference: &str,
    depth: usize,
    reporter: &dyn Reporter,
) -> LayerResult {
    let key = blob_key(digest);
    // Two pulls sharing a layer: the second waits, then finds it (or resumes it).
    let _lock = store.lock_source(&key)?;
    let url = reg.blob_url(digest);
    let partial = store.partial_download(&key);
    let work = store.begin()?;
    let tree = work.tree();
    let fetcher = reg.fetcher();
    let result: anyhow::Result<(Digest, LayerReport)> = std::thread::scope(|scope| {
        let (tx, rx) = pipe::pipe_depth(depth);
        let (fetcher, url, partial) = (&fetcher, &url, &partial);
        let reader = scope.spawn(move || -> anyhow::Result<Digest> {
            let mut input = fetcher.download(url, partial, reporter)?;
            let mut hasher = Hasher::default();
            pipe::feed(&mut input, &tx, true, |chunk| hasher.update(chunk)).map_err(unwrap_io)?;
            Ok(hasher.finish())
        });
        let unpacked = unpack::unpack_layer(rx, &tree, depth);
        let actual = reader.join().expect("reader thread panicked")?;
        if actual != *digest {
            return Err(OciError::Mismatch {
                url: url.clone(),
                expected: *digest,
                actual,
            }
            .into());
        }
        let report = unpacked.map_err(|source| OciError::Unpack {
            digest: digest.hex(),
            source,
        })?;
        if report.diff_id != *diff_id {
            return Err(OciError::DiffId {
                reference: reference.to_string(),
                layer: digest.hex(),
                expected: *diff_id,
                actual: report.diff_id,
            }
            .into());
        }
        Ok((actual, report))
    });
    match result {
        Ok((_, report)) => {
            let _ = std::fs::remove_file(&partial);
            Ok((work, report))
        }
        Err(e) => {
            // Bytes that failed verification must not seed the next resume.
            if e.downcast_ref::<OciError>().is_some_and(|o| {
                matches!(
                    o,
                    OciError::Mismatch { .. } | OciError::Unpack { .. } | OciError::DiffId { .. }
                )
            }) {
                let _ = std::fs::remove_file(&partial);
            }
            Err(e)
        }
    }
}

fn unwrap_io(e: io::Error) -> anyhow::Error {
    match FetchError::from_io(e) {
        Ok(fetch) => fetch.into(),
        Err(e) => anyhow::Error::new(e).context("read layer"),
    }
}

/// A hard link in layer N to a file only a lower layer has: overlayfs cannot link
/// across layers, so the file is copied up into layer N (as containerd's overlay
/// applier ends up doing through its mount). Sources are resolved inside each layer.
fn copy_up_lower_links(
    store: &Store,
    layers: &[Digest],
    works: &mut [Option<(Work, LayerReport)>],
) -> Result<(), OciError> {
    let trees: Vec<PathBuf> = layers
        .iter()
        .zip(works.iter())
        .map(|(d, w)| match w {
            Some((work, _)) => work.tree(),
            None => store.layer(d),
        })
        .collect();
    for i in 0..works.len() {
        let links = match &works[i] {
            Some((_, report)) if !report.lower_links.is_empty() => report.lower_links.clone(),
            _ => continue,
        };
        let dest = crate::fs::tree::Tree::open(&trees[i]).map_err(|source| OciError::CopyUp {
            layer: layers[i].hex(),
            target: trees[i].display().to_string(),
            source,
        })?;
        for (link, target) in links {
            let err = |source| OciError::CopyUp {
                layer: layers[i].hex(),
                target: target.display().to_string(),
                source,
            };
            let found = (0..i)
                .rev()
                .find_map(|j| open_in(&trees[j], &target).transpose());
            let mut file = match found {
                Some(f) => f.map_err(err)?,
                None => {
                    return Err(OciError::LowerLink {
                        layer: layers[i].hex(),
                        link: link.display().to_string(),
                        target: target.display().to_string(),
                    })
                }
            };
            let meta = file.metadata().map_err(err)?;
            let mut data = Vec::new();
            file.read_to_end(&mut data).map_err(err)?;
            let rel = link.to_string_lossy().into_owned();
            if let Some(parent) = link.parent().filter(|p| !p.as_os_str().is_empty()) {
                dest.create_dir_all(&parent.to_string_lossy())
                    .map_err(err)?;
            }
            use std::os::unix::fs::MetadataExt;
            dest.write(&rel, &data, meta.mode() & 0o7777).map_err(err)?;
            if let Some(copy) = open_in(&trees[i], &link).map_err(err)? {
                use std::os::fd::AsRawFd;
                // SAFETY: a valid fd owned by `copy`.
                let r = unsafe { libc::fchown(copy.as_raw_fd(), meta.uid(), meta.gid()) };
                crate::fs::at::cvt(r).map_err(err)?;
                crate::fs::at::fchmod(&copy, meta.mode() & 0o7777).map_err(err)?;
            }
        }
    }
    Ok(())
}

fn open_in(root: &Path, rel: &Path) -> io::Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let dir = std::fs::File::open(root)?;
    let rel = std::ffi::CString::new(rel.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    crate::fs::openat2::open_regular_in(dir.as_raw_fd(), &rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(p.matches("linux", "arm64", None));
        assert!(!p.matches("linux", "amd64", None));
        let p = Platform::parse("linux/arm/v6").unwrap();
        assert!(!p.matches("linux", "arm", Some("v7")));
        assert_eq!(
            Platform::parse("linux/armhf").unwrap().variant.as_deref(),
            Some("v7")
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/../x").is_err());
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn layer_types() {
        assert!(is_tar_layer("application/vnd.oci.image.layer.v1.tar+zstd"));
        assert!(is_tar_layer(
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ));
        assert!(!is_tar_layer(
            "application/vnd.oci.image.layer.v1.tar+encrypted"
        ));
        assert!(!is_tar_layer("application/octet-stream"));
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn config_without_history_and_docker_keys() {
        let c: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/e"],"Cmd":["c"],"Env":["A=1"],"WorkingDir":"/w","User":"1","StopSignal":"SIGQUIT","ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:00"]}}"#,
        )
        .unwrap();
        let r = run_config(&c, &Digest::of(b"x"));
        assert_eq!(r.entrypoint.unwrap(), ["/e"]);
        assert_eq!(r.cmd.unwrap(), ["c"]);
        assert_eq!(r.working_dir.as_deref(), Some("/w"));
        assert_eq!(r.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.rootfs.diff_ids.len(), 1);
    }
}
