//! Images out of the store as OCI: `locker export NAME --format oci` (an OCI image
//! layout, a directory or a tar of one) and `locker push NAME REF` (the same blobs
//! uploaded to a registry), so podman, Docker or Kubernetes can run what `locker build`
//! made.
//!
//! Invariants: the output is a function of the image and SOURCE_DATE_EPOCH only. Each
//! layer is the canonical tar of `export` (OCI whiteouts for an OCI image's layers),
//! gzip with fixed settings; JSON has sorted keys and no timestamps unless
//! SOURCE_DATE_EPOCH gives one; the layout tar has sorted entries, fixed owners and
//! modes. A directory or file appears only when complete (written beside, renamed).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::fs::path_error::io_err;
use crate::image::codec::Compression;
use crate::image::export::{self, ExportError};
use crate::image::oci::Platform;
use crate::image::reference::Reference;
use crate::image::registry::{Pushed, Registry, OCI_INDEX, OCI_MANIFEST};
use crate::store::digest::{Digest, Hasher};
use crate::store::{ImageConfig, Resolved, Store, StoreError};

const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A plain root tree has no config: run a shell, as `locker run` does.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One blob of the layout.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: &'static str,
}

/// A layout written under `dir`: its blobs and the manifest that ties them.
pub(crate) struct Written {
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: Blob,
    pub manifest_bytes: Vec<u8>,
}

/// A writer that hashes and counts what passes through.
struct Counting<W: Write> {
    inner: W,
    hasher: Hasher,
    size: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn blobs_dir(dir: &Path) -> PathBuf {
    dir.join("blobs/sha256")
}

pub(crate) fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    blobs_dir(dir).join(digest.hex())
}

/// Stores `bytes` as a blob of the layout at `dir`.
fn put_blob(dir: &Path, bytes: &[u8], media_type: &'static str) -> anyhow::Result<Blob> {
    let digest = Digest::of(bytes);
    let path = blob_path(dir, &digest);
    fs::write(&path, bytes).map_err(io_err("write", &path))?;
    Ok(Blob {
        digest,
        size: bytes.len() as u64,
        media_type,
    })
}

/// One layer: the canonical tar of `tree`, gzip'd into a blob; returns it and the
/// uncompressed digest (the config's diff_id).
fn put_layer(
    dir: &Path,
    tree: &Path,
    oci_layer: bool,
    epoch: Option<u64>,
) -> anyhow::Result<(Blob, Digest)> {
    let tmp = blobs_dir(dir).join(".layer.partial");
    let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    let compressed = Counting {
        inner: BufWriter::new(file),
        hasher: Hasher::default(),
        size: 0,
    };
    let encoder = Compression::Gzip
        .encoder(compressed)
        .map_err(io_err("write", &tmp))?;
    let mut plain = Counting {
        inner: encoder,
        hasher: Hasher::default(),
        size: 0,
    };
    {
        let mut w = BufWriter::with_capacity(256 << 10, &mut plain);
        let r = if oci_layer {
            export::write_layer_tar(tree, &mut w, epoch)
        } else {
            export::write_tar(tree, &mut w, epoch)
        };
        r?;
        w.flush().map_err(ExportError::Write)?;
    }
    let diff_id = plain.hasher.finish();
    let mut compressed = plain.inner.finish().map_err(io_err("write", &tmp))?;
    compressed.flush().map_err(io_err("write", &tmp))?;
    let Counting {
        inner,
        hasher,
        size,
    } = compressed;
    inner
        .into_inner()
        .map_err(|e| io_err("write", &tmp)(e.into_error()))?;
    let digest = hasher.finish();
    let path = blob_path(dir, &digest);
    fs::rename(&tmp, &path).map_err(io_err("write", &path))?;
    Ok((
        Blob {
            digest,
            size,
            media_type: LAYER_GZIP,
        },
        diff_id,
    ))
}

fn descriptor(b: &Blob) -> serde_json::Value {
    serde_json::json!({
        "mediaType": b.media_type,
        "digest": format!("sha256:{}", b.digest.hex()),
        "size": b.size,
    })
}

fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch))
        .to_string()
}

/// The image config JSON of `image`.
fn config_json(image: &Resolved, diff_ids: &[Digest], epoch: Option<u64>) -> Vec<u8> {
    let host = Platform::host();
    let default = ImageConfig {
        env: vec![DEFAULT_PATH.into()],
        cmd: Some(vec!["/bin/sh".into()]),
        ..ImageConfig::default()
    };
    let c = image.config.as_ref().unwrap_or(&default);
    let mut run = serde_json::Map::new();
    if !c.env.is_empty() {
        run.insert("Env".into(), serde_json::json!(c.env));
    }
    if let Some(e) = &c.entrypoint {
        run.insert("Entrypoint".into(), serde_json::json!(e));
    }
    if let Some(cmd) = &c.cmd {
        run.insert("Cmd".into(), serde_json::json!(cmd));
    }
    if let Some(w) = &c.working_dir {
        run.insert("WorkingDir".into(), serde_json::json!(w));
    }
    if let Some(u) = &c.user {
        run.insert("User".into(), serde_json::json!(u));
    }
    if let Some(s) = &c.stop_signal {
        run.insert("StopSignal".into(), serde_json::json!(s));
    }
    let arch = if c.architecture.is_empty() {
        host.architecture.clone()
    } else {
        c.architecture.clone()
    };
    let mut v = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": run,
        "rootfs": {
            "type": "layers",
            "diff_ids": diff_ids.iter().map(|d| format!("sha256:{}", d.hex())).collect::<Vec<_>>(),
        },
    });
    if let Some(e) = epoch {
        v["created"] = serde_json::json!(rfc3339(e));
    }
    serde_json::to_vec(&v).expect("json")
}

/// Writes the OCI image layout of store image `name` into the empty directory `dir`,
/// tagged `tag` in index.json.
pub(crate) fn write_layout(
    store: &Store,
    name: &str,
    dir: &Path,
    tag: &str,
    epoch: Option<u64>,
) -> anyhow::Result<Written> {
    let image = store
        .resolve(name)?
        .ok_or_else(|| StoreError::NoSuchImage(name.to_string()))?;
    let blobs = blobs_dir(dir);
    fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    if image.lowers.is_empty() {
        let (b, d) = put_layer(dir, &image.rootfs, false, epoch)?;
        layers.push(b);
        diff_ids.push(d);
    } else {
        // Bottom first, as the manifest lists them.
        for tree in image.lowers.iter().rev() {
            let (b, d) = put_layer(dir, tree, true, epoch)?;
            layers.push(b);
            diff_ids.push(d);
        }
    }
    let config = put_blob(dir, &config_json(&image, &diff_ids, epoch), CONFIG)?;
    let manifest_json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(&config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest_json).expect("json");
    let manifest = put_blob(dir, &manifest_bytes, OCI_MANIFEST)?;
    let mut entry = descriptor(&manifest);
    entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry],
    });
    let write = |file: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let p = dir.join(file);
        fs::write(&p, bytes).map_err(io_err("write", &p))?;
        Ok(())
    };
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write("index.json", &serde_json::to_vec(&index).expect("json"))?;
    Ok(Written {
        layers,
        config,
        manifest,
        manifest_bytes,
    })
}

/// The tag index.json gives an exported image: a reference's tag, a catalog name as is.
fn tag_for(name: &str) -> String {
    match Reference::parse(name) {
        Ok(r) if name.contains(['/', ':', '@']) => r.tag.unwrap_or_else(|| "latest".into()),
        _ => name.to_string(),
    }
}

/// `locker export NAME --format oci -o DIR|FILE.tar`.
pub(crate) fn export(
    store: &Store,
    name: &str,
    out: &Path,
    epoch: Option<u64>,
) -> anyhow::Result<()> {
    let image = store
        .resolve(name)?
        .ok_or_else(|| StoreError::NoSuchImage(name.to_string()))?;
    let tag = tag_for(&image.name);
    let as_tar = out.extension().is_some_and(|e| e == "tar");
    if out.exists() && !(as_tar && out.is_file()) {
        anyhow::bail!(
            "{} exists; name a new directory (or FILE.tar) for the OCI layout",
            out.display()
        );
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let work = parent.join(format!(".{stem}.partial-{}", std::process::id()));
    let _guard = RemoveOnDrop(work.clone());
    fs::create_dir(&work).map_err(io_err("create", &work))?;
    write_layout(store, &image.name, &work, &tag, epoch)?;
    if as_tar {
        let tmp = parent.join(format!(".{stem}.tar-partial-{}", std::process::id()));
        let _tar_guard = RemoveOnDrop(tmp.clone());
        tar_layout(&work, &tmp, epoch)?;
        fs::rename(&tmp, out).map_err(io_err("write", out))?;
    } else {
        fs::rename(&work, out).map_err(io_err("write", out))?;
    }
    Ok(())
}

/// The layout directory as a tar (as `skopeo copy oci-archive:` reads it): sorted
/// entries, root owner, fixed modes, mtime SOURCE_DATE_EPOCH or 0.
fn tar_layout(dir: &Path, out: &Path, epoch: Option<u64>) -> anyhow::Result<()> {
    let file = File::create(out).map_err(io_err("create", out))?;
    let mut b = tar::Builder::new(BufWriter::new(file));
    let mut entries = vec![
        ("blobs/".to_string(), None),
        ("blobs/sha256/".to_string(), None),
    ];
    let mut names: Vec<String> = fs::read_dir(blobs_dir(dir))
        .map_err(io_err("read", &blobs_dir(dir)))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        entries.push((format!("blobs/sha256/{n}"), Some(blobs_dir(dir).join(&n))));
    }
    entries.push(("index.json".into(), Some(dir.join("index.json"))));
    entries.push(("oci-layout".into(), Some(dir.join("oci-layout"))));
    for (name, path) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(epoch.unwrap_or(0));
        match path {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_cksum();
                b.append_data(&mut h, &name, io::empty())
                    .map_err(io_err("write", out))?;
            }
            Some(p) => {
                let f = File::open(&p).map_err(io_err("read", &p))?;
                let len = f.metadata().map_err(io_err("stat", &p))?.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(len);
                h.set_cksum();
                b.append_data(&mut h, &name, f)
                    .map_err(io_err("write", out))?;
            }
        }
    }
    let mut w = b.into_inner().map_err(io_err("write", out))?;
    w.flush().map_err(io_err("write", out))?;
    w.into_inner()
        .map_err(|e| io_err("write", out)(e.into_error()))?
        .sync_all()
        .map_err(io_err("write", out))?;
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = crate::store::remove_tree(&self.0);
        } else {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// What a push sent: blobs the repository had, blobs mounted from another repository
/// of the registry, blobs uploaded.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PushReport {
    pub present: usize,
    pub mounted: usize,
    pub uploaded: usize,
    /// Of `uploaded`, those that went on from where an interrupted push stopped.
    pub resumed: usize,
}

/// `locker push NAME REF`: the image's layout built in the store's tmp/ (the same
/// blobs every time: the layout is a function of the image), each blob put into the
/// repository unless it has it (mounted from a repository of the same registry locker
/// pushed it to before, else uploaded), then the manifest under REF's tag. A push that
/// was interrupted is resumed by pushing again: what arrived is not sent twice.
/// Returns the manifest digest.
pub(crate) fn push(
    store: &Store,
    name: &str,
    reference: &Reference,
    epoch: Option<u64>,
) -> anyhow::Result<(Digest, PushReport)> {
    let tag = match (&reference.tag, &reference.digest) {
        (Some(t), _) => t.clone(),
        (None, _) => {
            anyhow::bail!("push to {reference}: name a tag (REGISTRY/REPO:TAG), not a digest")
        }
    };
    let work = store.begin()?;
    let dir = work.tree();
    fs::create_dir(&dir).map_err(io_err("create", &dir))?;
    let written = write_layout(store, name, &dir, &tag, epoch)?;
    let reg = Registry::new(reference, true)?;
    let homes = store.pushed_blobs(&reference.registry)?;
    let chunk = push_chunk();
    let mut report = PushReport::default();
    for blob in written
        .layers
        .iter()
        .chain(std::iter::once(&written.config))
    {
        let path = blob_path(&dir, &blob.digest);
        let from = homes
            .get(&blob.digest.hex())
            .filter(|repo| **repo != reference.repository);
        // One push of a blob to a repository at a time: they would share the session.
        let key = format!(
            "oci-upload:{}/{}@sha256:{}",
            reference.registry,
            reference.repository,
            blob.digest.hex()
        );
        let _lock = store.lock_source(&key)?;
        let session = store.partial_upload(&key);
        let blob_ref = (&blob.digest, blob.size, path.as_path());
        match reg.push_blob(blob_ref, from.map(String::as_str), (chunk, &session))? {
            Pushed::Present => report.present += 1,
            Pushed::Mounted => report.mounted += 1,
            Pushed::Uploaded => report.uploaded += 1,
            Pushed::Resumed => {
                report.uploaded += 1;
                report.resumed += 1;
            }
        }
        // Recorded as each lands, so a push killed midway still tells the next one.
        store.record_pushed(&reference.registry, &reference.repository, &[blob.digest])?;
    }
    reg.push_manifest(&tag, &written.manifest_bytes, OCI_MANIFEST)?;
    Ok((written.manifest.digest, report))
}

/// Blobs larger than this go up in chunks of it, each a point to resume from.
const PUSH_CHUNK: u64 = 16 << 20;

/// `PUSH_CHUNK`, or in debug builds (what `cargo test` runs) `LOCKER_TEST_PUSH_CHUNK`
/// bytes, so a test can cut an upload of a small blob midway.
fn push_chunk() -> u64 {
    if cfg!(debug_assertions) {
        if let Some(n) = std::env::var("LOCKER_TEST_PUSH_CHUNK")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            return n;
        }
    }
    PUSH_CHUNK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(tag_for("debian-12"), "debian-12");
        assert_eq!(tag_for("127.0.0.1:5000/a/b:v1"), "v1");
    }

    #[test]
    fn config_for_a_plain_tree_is_deterministic() {
        let image = Resolved::tree("x".into(), String::new(), "/nonexistent".into());
        let d = Digest::of(b"layer");
        let a = config_json(&image, &[d], Some(1_700_000_000));
        assert_eq!(a, config_json(&image, &[d], Some(1_700_000_000)));
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["config"]["Cmd"][0], "/bin/sh");
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["rootfs"]["diff_ids"][0], format!("sha256:{}", d.hex()));
    }
}
