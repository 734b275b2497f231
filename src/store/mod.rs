//! The store under `--root`: content-addressed root filesystems and the names that
//! refer to them.
//!
//! Layout (documented in README.md):
//!   rootfs/HEX/        an unpacked image; HEX is the sha256 of the verified archive
//!   layers/HEX/        one unpacked OCI layer (HEX: its blob digest), whiteouts as
//!                      overlayfs ones; shared by every image that lists it
//!   flat/HEX/          the layers of an OCI image merged into one tree, made by `run`
//!                      only where one overlay mount cannot stack them (HEX: the
//!                      sha256 of the layer list); kept while a name lists those layers
//!   refs.json          name -> digest index; replaced whole by rename, never edited
//!   tmp/               work in progress: `work-*` dirs (each locked by its owner while
//!                      alive), `downloads/*.part` (kept across runs for resume) and
//!                      `downloads/*.upload` (a chunked push's session, for resume)
//!   lock               flock held exclusively while refs or rootfs/ change
//!   cache/pushed.json  per registry, the repository each blob was last pushed to (the
//!                      source of a cross-repository mount; a hint, never trusted)
//!   cache/debs/HEX.deb `locker build`'s package cache: verified .debs named by their
//!                      sha256 (partial/ holds downloads in progress), kept across builds
//!
//! Invariants: an image is visible only once complete (one rename of its finished
//! tree into rootfs/ or of each layer into layers/); a name exists only for a
//! published rootfs or a complete list of published layers; a layer lives as long as
//! one name lists it (reference-counted by `rmi` and `gc`); everything a killed
//! process leaves lies under tmp/ and `gc` removes it. `run` resolves a name with one
//! read of refs.json and no lock.

pub(crate) mod digest;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::fs::path_error::{io_err, PathError};
use crate::store::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("store index {path} is corrupt; move it away and pull again")]
    CorruptRefs {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no image {0:?} in the store; `locker images` lists them")]
    NoSuchImage(String),
}

/// One name in refs.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ImageRef {
    pub digest: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Where the archive came from (URL or path).
    pub source: String,
    /// Unix seconds when the name was recorded.
    pub created: u64,
    /// Bytes the unpacked tree uses on disk.
    pub size: u64,
    /// An OCI image: its layers (digests, bottom first) under layers/; `digest` is then
    /// the manifest's digest and there is no rootfs/ tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// The uncompressed digest (diff_id) of each of `layers`, as checked when the layer
    /// was unpacked; empty for an image recorded before locker kept them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff_ids: Vec<String>,
    /// An OCI image's config: what `run` does by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ImageConfig>,
}

/// The part of an OCI image config that drives `run` (image-spec config.md), kept in
/// refs.json so `run` reads one file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ImageConfig {
    /// The config blob's digest.
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Refs {
    pub images: BTreeMap<String, ImageRef>,
}

impl Refs {
    /// The diff_id some image recorded for `layer` (blob hex) when it was unpacked.
    pub(crate) fn diff_id_of(&self, layer: &str) -> Option<&str> {
        self.images.values().find_map(|r| {
            let i = r.layers.iter().position(|l| l == layer)?;
            r.diff_ids.get(i).map(String::as_str)
        })
    }

    /// The name `name`, else the one listing it as an alias.
    pub(crate) fn find(&self, name: &str) -> Option<(&str, &ImageRef)> {
        self.images
            .get_key_value(name)
            .or_else(|| {
                self.images
                    .iter()
                    .find(|(_, r)| r.aliases.iter().any(|a| a == name))
            })
            .map(|(n, r)| (n.as_str(), r))
    }
}

/// A refs.json entry for a plain tree, recorded now.
fn new_ref(digest: &Digest, aliases: &[String], source: &str, size: u64) -> ImageRef {
    ImageRef {
        digest: digest.hex(),
        aliases: aliases.to_vec(),
        source: source.to_string(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        size,
        layers: Vec::new(),
        diff_ids: Vec::new(),
        config: None,
    }
}

/// What a successful install (pull, import, build) produced.
#[derive(Debug)]
pub(crate) struct Installed {
    pub name: String,
    pub digest: Digest,
    /// False when the store already had it and nothing was downloaded.
    pub fetched: bool,
}

/// An image resolved to its tree, as `run` needs it.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub name: String,
    pub digest: String,
    /// The tree (a catalog image), or an OCI image's top layer.
    pub rootfs: PathBuf,
    /// An OCI image's layers, top first (overlayfs' lowerdir order); empty for a tree.
    pub lowers: Vec<PathBuf>,
    pub config: Option<ImageConfig>,
}

impl Resolved {
    /// A plain tree, no layers and no config.
    pub(crate) fn tree(name: String, digest: String, rootfs: PathBuf) -> Resolved {
        Resolved {
            name,
            digest,
            rootfs,
            lowers: Vec::new(),
            config: None,
        }
    }

    /// The read-only layers the container's overlay stacks, top first.
    pub(crate) fn lower_dirs(&self) -> Vec<&Path> {
        if self.lowers.is_empty() {
            vec![self.rootfs.as_path()]
        } else {
            self.lowers.iter().map(PathBuf::as_path).collect()
        }
    }
}

pub(crate) struct Store {
    root: PathBuf,
}

/// A private directory under tmp/ for one piece of work. Removed on drop unless its
/// content was published; the held flock tells `gc` it is alive.
pub(crate) struct Work {
    dir: PathBuf,
    _lock: Flock<File>,
    lock_path: PathBuf,
}

impl Work {
    /// Where the tree being built goes (does not exist yet; create it).
    pub(crate) fn tree(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// What `gc` removed.
#[derive(Debug, Default)]
pub(crate) struct GcReport {
    pub items: Vec<String>,
    pub bytes: u64,
}

impl Store {
    /// Opens the store at `root`, creating its skeleton if needed.
    pub(crate) fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        root_dir(&store.root).map_err(io_err("use store directory", &store.root))?;
        for dir in [
            store.rootfs_dir(),
            store.layers_dir(),
            store.tmp_dir(),
            store.downloads_dir(),
        ] {
            private_dir(&dir).map_err(io_err("create store directory", &dir))?;
        }
        // A store made before ROOT was private: narrow what `run` made in it too.
        for dir in [store.root.join("containers"), store.root.join("run")] {
            if dir.is_dir() {
                private_dir(&dir).map_err(io_err("create store directory", &dir))?;
            }
        }
        Ok(store)
    }

    /// Opens the store only if it exists: readers never create it.
    pub(crate) fn existing(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    /// The store's root directory (`--root`).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The package cache of `locker build`: verified .debs named by their sha256,
    /// shared by every build (cache/debs/).
    pub(crate) fn deb_cache(&self) -> PathBuf {
        self.root.join("cache/debs")
    }

    fn rootfs_dir(&self) -> PathBuf {
        self.root.join("rootfs")
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// One unpacked OCI layer, named by its blob digest.
    pub(crate) fn layer(&self, digest: &Digest) -> PathBuf {
        self.layers_dir().join(digest.hex())
    }

    fn flat_dir(&self) -> PathBuf {
        self.root.join("flat")
    }

    /// The layers `lowers` (top first, as `Resolved::lowers`) merged into one cached
    /// tree, made now if the store lacks it. Serialised per layer list; published by one
    /// rename like a layer, and removed with the last name that lists those layers.
    pub(crate) fn flatten(&self, lowers: &[PathBuf]) -> Result<PathBuf, StoreError> {
        let names: Vec<String> = lowers
            .iter()
            .rev()
            .map(|l| {
                l.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let target = self.flat_dir().join(flat_key(&names));
        if target.is_dir() {
            return Ok(target);
        }
        let _source = self.lock_source(&format!("flat {}", flat_key(&names)))?;
        if target.is_dir() {
            return Ok(target);
        }
        let work = self.begin()?;
        let tree = work.tree();
        fs::create_dir(&tree).map_err(io_err("create", &tree))?;
        let bottom_first: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
        crate::fs::flatten::flatten(&bottom_first, &tree).map_err(io_err("flatten into", &tree))?;
        let _lock = self.lock()?;
        let flat = self.flat_dir();
        private_dir(&flat).map_err(io_err("create store directory", &flat))?;
        fs::rename(&tree, &target).map_err(io_err("publish", &target))?;
        Ok(target)
    }

    fn pushed_path(&self) -> PathBuf {
        self.root.join("cache/pushed.json")
    }

    /// Blob hex -> the repository of `registry` locker last pushed it to.
    pub(crate) fn pushed_blobs(
        &self,
        registry: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let path = self.pushed_path();
        let all: BTreeMap<String, BTreeMap<String, String>> = match fs::read(&path) {
            // A damaged hint is no hint: the push uploads.
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_err("read", &path)(e).into()),
        };
        Ok(all.get(registry).cloned().unwrap_or_default())
    }

    /// Records that `repository` of `registry` holds `blobs`.
    pub(crate) fn record_pushed(
        &self,
        registry: &str,
        repository: &str,
        blobs: &[Digest],
    ) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let path = self.pushed_path();
        let mut all: BTreeMap<String, BTreeMap<String, String>> = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_err("read", &path)(e).into()),
        };
        let entry = all.entry(registry.to_string()).or_default();
        for b in blobs {
            entry.insert(b.hex(), repository.to_string());
        }
        let dir = self.root.join("cache");
        private_dir(&dir).map_err(io_err("create store directory", &dir))?;
        let tmp = dir.join(format!("pushed.json.{}", unique_id()));
        let write = || -> io::Result<()> {
            fs::write(&tmp, serde_json::to_vec(&all).expect("json"))?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("write", &path)(e).into()
        })
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn downloads_dir(&self) -> PathBuf {
        self.root.join("tmp/downloads")
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    pub(crate) fn rootfs(&self, digest: &Digest) -> PathBuf {
        self.rootfs_dir().join(digest.hex())
    }

    /// The partial-download file for `url`, stable across runs so a retry resumes.
    pub(crate) fn partial_download(&self, url: &str) -> PathBuf {
        self.downloads_dir()
            .join(format!("{}.part", Digest::of(url.as_bytes()).short()))
    }

    /// The session record of a chunked upload for `key`, kept across runs so the next
    /// push resumes it (beside the partial downloads; `gc` drops unlocked ones).
    pub(crate) fn partial_upload(&self, key: &str) -> PathBuf {
        self.downloads_dir()
            .join(format!("{}.upload", Digest::of(key.as_bytes()).short()))
    }

    /// The name index; an absent file is an empty store.
    pub(crate) fn refs(&self) -> Result<Refs, StoreError> {
        let path = self.refs_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::CorruptRefs { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Refs::default()),
            Err(e) => Err(io_err("read", &path)(e).into()),
        }
    }

    /// `name` (or an alias) to its tree; `None` when the store does not have it.
    pub(crate) fn resolve(&self, name: &str) -> Result<Option<Resolved>, StoreError> {
        let refs = self.refs()?;
        Ok(refs.find(name).map(|(name, r)| {
            let lowers: Vec<PathBuf> = r
                .layers
                .iter()
                .rev()
                .map(|l| self.layers_dir().join(l))
                .collect();
            Resolved {
                name: name.to_string(),
                digest: r.digest.clone(),
                rootfs: lowers
                    .first()
                    .cloned()
                    .unwrap_or_else(|| self.rootfs_dir().join(&r.digest)),
                lowers,
                config: r.config.clone(),
            }
        }))
    }

    /// Exclusive lock over refs.json and rootfs/; held briefly, around changes.
    pub(crate) fn lock(&self) -> Result<Flock<File>, StoreError> {
        self.lock_file(&self.root.join("lock"))
    }

    /// Exclusive lock serialising all work on one source (URL or name), so two pulls
    /// of one image download it once.
    pub(crate) fn lock_source(&self, key: &str) -> Result<Flock<File>, StoreError> {
        self.lock_file(&self.tmp_dir().join(format!(
            "source-{}.lock",
            Digest::of(key.as_bytes()).short()
        )))
    }

    fn lock_file(&self, path: &Path) -> Result<Flock<File>, StoreError> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("open lock", path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io_err("lock", path)(e).into())
    }

    /// A fresh private work directory under tmp/.
    pub(crate) fn begin(&self) -> Result<Work, StoreError> {
        let tmp = self.tmp_dir();
        let id = unique_id();
        let lock_path = tmp.join(format!("work-{id}.lock"));
        let lock = self.lock_file(&lock_path)?;
        let dir = tmp.join(format!("work-{id}"));
        fs::create_dir(&dir).map_err(io_err("create work directory", &dir))?;
        Ok(Work {
            dir,
            _lock: lock,
            lock_path,
        })
    }

    /// Makes the finished tree of `work` the image `digest` (unless an identical one is
    /// already there) and points `name` at it. The rename is the commit point.
    pub(crate) fn publish(
        &self,
        work: Work,
        digest: &Digest,
        name: &str,
        aliases: &[String],
        source: &str,
    ) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let target = self.rootfs(digest);
        if !target.exists() {
            let tree = work.tree();
            fs::rename(&tree, &target).map_err(io_err("publish", &target))?;
        }
        drop(work);
        self.tag_locked(name, digest, aliases, source)
    }

    /// Publishes the unpacked layers in `works` (those the store lacks) and names the
    /// OCI image `manifest` with `layers` (bottom first), under one lock: a layer never
    /// appears without the name that keeps it, so `gc` cannot take it in between.
    pub(crate) fn publish_layers(
        &self,
        works: Vec<(Work, Digest)>,
        (name, aliases): (&str, &[String]),
        manifest: &Digest,
        (layers, diff_ids): (&[Digest], &[Digest]),
        config: ImageConfig,
        source: &str,
    ) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        for (work, digest) in works {
            let target = self.layer(&digest);
            if !target.exists() {
                fs::rename(work.tree(), &target).map_err(io_err("publish", &target))?;
            }
        }
        let missing = layers.iter().find(|l| !self.layer(l).is_dir());
        if let Some(l) = missing {
            return Err(StoreError::NoSuchImage(format!("layer {}", l.hex())));
        }
        let mut refs = self.refs()?;
        let size = layers.iter().map(|l| disk_usage(&self.layer(l))).sum();
        let mut r = new_ref(manifest, aliases, source, size);
        r.layers = layers.iter().map(Digest::hex).collect();
        r.diff_ids = diff_ids.iter().map(Digest::hex).collect();
        r.config = Some(config);
        self.record(&mut refs, name, r)
    }

    /// Points `name` at an already published `digest`.
    pub(crate) fn tag(
        &self,
        name: &str,
        digest: &Digest,
        aliases: &[String],
        source: &str,
    ) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        self.tag_locked(name, digest, aliases, source)
    }

    fn tag_locked(
        &self,
        name: &str,
        digest: &Digest,
        aliases: &[String],
        source: &str,
    ) -> Result<(), StoreError> {
        let mut refs = self.refs()?;
        let size = match refs.images.values().find(|r| r.digest == digest.hex()) {
            Some(r) => r.size,
            None => disk_usage(&self.rootfs(digest)),
        };
        let r = new_ref(digest, aliases, source, size);
        self.record(&mut refs, name, r)
    }

    /// Records `name` as `r` and writes refs.json. An alias belongs to one name: a newer
    /// name claiming it takes it over.
    fn record(&self, refs: &mut Refs, name: &str, r: ImageRef) -> Result<(), StoreError> {
        for other in refs.images.values_mut() {
            other
                .aliases
                .retain(|a| !r.aliases.contains(a) && a != name);
        }
        refs.images.insert(name.to_string(), r);
        self.write_refs(refs)
    }

    fn write_refs(&self, refs: &Refs) -> Result<(), StoreError> {
        let path = self.refs_path();
        let tmp = self.root.join(format!("refs.json.{}", unique_id()));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(refs).expect("refs serialise"))?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("write", &path)(e).into()
        })
    }

    /// Drops `names`; rootfs trees no remaining name refers to are deleted. Nothing is
    /// changed unless every name exists. Returns the digests freed.
    pub(crate) fn remove_names(
        &self,
        names: &[String],
        in_use: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, RemoveError> {
        let _lock = self.lock()?;
        let mut refs = self.refs()?;
        let mut keys = Vec::new();
        for name in names {
            let key = match refs.find(name) {
                Some((key, _)) => key.to_string(),
                None => return Err(StoreError::NoSuchImage(name.clone()).into()),
            };
            keys.push(key);
        }
        let mut freed = Vec::new();
        let mut removed = Vec::new();
        let mut removed_layers = Vec::new();
        let mut removed_lists = Vec::new();
        for key in &keys {
            if let Some(r) = refs.images.remove(key) {
                removed.push(r.digest);
                if !r.layers.is_empty() {
                    removed_lists.push(r.layers.clone());
                }
                removed_layers.extend(r.layers);
            }
        }
        for digest in removed {
            if refs.images.values().any(|r| r.digest == digest) || freed.contains(&digest) {
                continue;
            }
            if let Some(container) = in_use(&digest) {
                return Err(RemoveError::InUse {
                    image: digest[..12].to_string(),
                    container,
                });
            }
            freed.push(digest);
        }
        self.write_refs(&refs)?;
        for digest in &freed {
            let tree = self.rootfs_dir().join(digest);
            if tree.exists() {
                self.discard(&tree)?;
            }
        }
        // A flat tree goes with the last name that lists its layers.
        for list in &removed_lists {
            let key = flat_key(list);
            if refs.images.values().any(|r| flat_key(&r.layers) == key) {
                continue;
            }
            let dir = self.flat_dir().join(&key);
            if dir.exists() {
                self.discard(&dir)?;
            }
        }
        // A layer goes with the last name that lists it.
        removed_layers.sort();
        removed_layers.dedup();
        for layer in removed_layers {
            if refs.images.values().any(|r| r.layers.contains(&layer)) {
                continue;
            }
            let dir = self.layers_dir().join(&layer);
            if dir.exists() {
                self.discard(&dir)?;
            }
        }
        Ok(freed)
    }

    /// Removes a tree by first renaming it under tmp/, so it vanishes from rootfs/ at
    /// once and an interrupted delete is finished by `gc`.
    fn discard(&self, path: &Path) -> Result<(), StoreError> {
        // A store made by an older locker (or by hand) may lack tmp/.
        let tmp = self.tmp_dir();
        private_dir(&tmp).map_err(io_err("create", &tmp))?;
        let trash = tmp.join(format!("trash-{}", unique_id()));
        fs::rename(path, &trash).map_err(io_err("move away", path))?;
        Ok(remove_tree(&trash).map_err(io_err("delete", &trash))?)
    }

    /// Removes unreferenced trees, stale work directories, interrupted deletes and
    /// partial downloads.
    pub(crate) fn gc(
        &self,
        in_use: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GcReport, StoreError> {
        let _lock = self.lock()?;
        let mut report = GcReport::default();
        let refs = self.refs()?;
        let rootfs = self.rootfs_dir();
        for entry in read_dir(&rootfs)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if refs.images.values().any(|r| r.digest == name) || in_use(&name).is_some() {
                continue;
            }
            report.bytes += disk_usage(&entry.path());
            self.discard(&entry.path())?;
            report
                .items
                .push(format!("image {}", &name[..name.len().min(12)]));
        }
        let layers = self.layers_dir();
        if layers.is_dir() {
            for entry in read_dir(&layers)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if refs.images.values().any(|r| r.layers.contains(&name)) {
                    continue;
                }
                report.bytes += disk_usage(&entry.path());
                self.discard(&entry.path())?;
                report
                    .items
                    .push(format!("layer {}", &name[..name.len().min(12)]));
            }
        }
        for entry in read_dir(&self.flat_dir())? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if refs.images.values().any(|r| flat_key(&r.layers) == name) {
                continue;
            }
            report.bytes += disk_usage(&entry.path());
            self.discard(&entry.path())?;
            report
                .items
                .push(format!("flat tree {}", &name[..name.len().min(12)]));
        }
        let tmp = self.tmp_dir();
        for entry in read_dir(&tmp)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let stale =
                if let Some(id) = name.strip_prefix("work-").filter(|n| !n.ends_with(".lock")) {
                    self.try_claim(&tmp.join(format!("work-{id}.lock")))
                } else {
                    name.starts_with("trash-")
                };
            if stale {
                report.bytes += disk_usage(&path);
                remove_tree(&path).map_err(io_err("delete", &path))?;
                let _ = fs::remove_file(tmp.join(format!("{name}.lock")));
                report.items.push(format!("leftover {name}"));
            }
        }
        for entry in read_dir(&self.downloads_dir())? {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // A partial download in use is locked through its source lock; an unlocked
            // one is only kept to resume, and gc is the request to let it go.
            if let Some(lock) = self.source_lock_for_partial(&name) {
                if !self.try_claim(&lock) {
                    continue;
                }
            }
            report.bytes += entry.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
            fs::remove_file(&path).map_err(io_err("delete", &path))?;
            report.items.push(format!("partial download {name}"));
        }
        // Leftover temporary refs files from a killed writer.
        for entry in read_dir(&self.root)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("refs.json.") {
                let _ = fs::remove_file(entry.path());
                report.items.push(format!("leftover {name}"));
            }
        }
        Ok(report)
    }

    /// The source lock guarding a partial download (or an upload session): both are
    /// named after the same key.
    fn source_lock_for_partial(&self, partial: &str) -> Option<PathBuf> {
        let stem = partial
            .strip_suffix(".part")
            .or_else(|| partial.strip_suffix(".upload"))?;
        Some(self.tmp_dir().join(format!("source-{stem}.lock")))
    }

    /// True when nobody holds the lock at `path` (so what it guards is abandoned).
    fn try_claim(&self, path: &Path) -> bool {
        let Ok(file) = File::options().write(true).open(path) else {
            return true; // no lock file: its owner is gone
        };
        Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image {image} is used by container {container}; `locker rm {container}` first")]
    InUse { image: String, container: String },
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    match fs::read_dir(dir) {
        Ok(it) => Ok(it
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err("list", dir))?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir)(e).into()),
    }
}

/// The store when no `--root`/LOCKER_ROOT is given: /var/lib/locker for root; for an
/// ordinary user $XDG_DATA_HOME/locker, by default ~/.local/share/locker (each user's
/// own, 0700, as rootless podman's ~/.local/share/containers).
pub(crate) fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/locker");
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        });
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
    user_store(home.as_deref(), xdg.as_deref()).unwrap_or_else(|| PathBuf::from(".locker"))
}

/// An ordinary user's store: $XDG_DATA_HOME/locker, else HOME/.local/share/locker.
fn user_store(home: Option<&Path>, xdg_data_home: Option<&Path>) -> Option<PathBuf> {
    match xdg_data_home.filter(|p| p.is_absolute()) {
        Some(d) => Some(d.join("locker")),
        None => home.map(|h| h.join(".local/share/locker")),
    }
}

/// Deletes a tree whether or not it exists; directories made read-only are still removed
/// because we run as root.
/// ROOT itself: created 0700 when missing; an existing one is never changed (`--root
/// DIR` may be any directory), and one that another user owns or may write into is
/// refused, since they could swap what locker trusts under it.
pub(crate) fn root_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => check_private(dir, &m),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => private_dir(dir),
        Err(e) => Err(e),
    }
}

/// One of locker's own directories in ROOT (rootfs/, tmp/, run/, containers/...):
/// created with mode 0700 (missing parents as usual), or narrowed to 0700. Images'
/// setuid binaries and device nodes under rootfs/, containers' upper layers, must not
/// be reachable by local users through a searchable path.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            if m.mode() & 0o7777 != 0o700 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        }
        Ok(_) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)?;
            }
            match fs::DirBuilder::new().mode(0o700).create(dir) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => private_dir(dir),
                r => r,
            }
        }
        Err(e) => Err(e),
    }
}

/// An existing ROOT must be ours and not writable by group or others, for every
/// command, reads included: the records in it (state files naming pids to signal,
/// catalogs, trees) are trusted only from the user who runs locker. A missing one
/// is fine (a command that writes creates it with `root_dir`).
pub(crate) fn check_owned(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => check_private(dir, &m),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// An existing store directory must be ours and not writable by group or others.
fn check_private(dir: &Path, m: &fs::Metadata) -> io::Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {}, not to this user; use a directory you own",
                dir.display(),
                m.uid()
            ),
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by other users (mode {:o}); `chmod go-w` it or use another directory",
                dir.display(),
                m.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Bytes allocated under `path`, each hard-linked inode counted once (like `du`).
pub(crate) fn disk_usage(path: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// The name of the flat tree of an image with `layers` (digests, bottom first).
fn flat_key(layers: &[String]) -> String {
    Digest::of(layers.join("\n").as_bytes()).hex()
}

/// Unique enough for names under tmp/: pid plus nanoseconds.
fn unique_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:09}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_store_follows_xdg() {
        let home = Path::new("/home/a");
        assert_eq!(
            user_store(Some(home), None),
            Some(PathBuf::from("/home/a/.local/share/locker"))
        );
        assert_eq!(
            user_store(Some(home), Some(Path::new("/data"))),
            Some(PathBuf::from("/data/locker"))
        );
        // A relative XDG_DATA_HOME is ignored, as the XDG base directory spec says.
        assert_eq!(
            user_store(Some(home), Some(Path::new("rel"))),
            Some(PathBuf::from("/home/a/.local/share/locker"))
        );
        assert_eq!(user_store(None, None), None);
    }
}
