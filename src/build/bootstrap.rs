//! The build pipeline, step by step: pick mirror and keyring → verified Release →
//! verified Packages → resolve → fill the package cache (parallel, verified) →
//! unpack every package once into a private work tree and record it in dpkg's
//! database as `dpkg --unpack` would (`dpkg_db`) → preinst scripts and
//! `dpkg --configure` inside a locker container that writes into the tree (the
//! essential set, then the rest, as mmdebstrap orders them) → clean for
//! reproducibility → digest → publish.
//!
//! Invariants: the tree lives in a `Store::begin` work directory until the one
//! publishing rename, so an interrupted or failed build leaves nothing visible (and
//! a killed one only a tmp/work-* that `locker gc` removes); every .deb used was
//! verified before it entered the cache; the container has no network.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::build::archive::{Archive, Cache, DebJob};
use crate::build::dpkg_db::{self, Unpacked, ADMIN_DIR, STAGED_CONTROL};
use crate::build::release::{Release, UnixTime};
use crate::build::resolve::{Universe, Variant};
use crate::build::sources;
use crate::build::BuildError;
use crate::fs::path_error::io_err;
use crate::fs::tree::Tree;
use crate::image::catalog::{BuildSpec, Entry};
use crate::image::export;
use crate::image::fetch::Fetcher;
use crate::image::verify::VerifyError;
use crate::progress::Printer;
use crate::run;
use crate::store::{Installed, Resolved, Store};

/// Debian's archive keyring (debian-archive-keyring), the default for Debian suites.
pub(crate) const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Ubuntu's archive keyring (ubuntu-keyring), the default for Ubuntu suites.
pub(crate) const UBUNTU_KEYRING: &str = "/usr/share/keyrings/ubuntu-archive-keyring.gpg";

/// invoke-rc.d's policy hook, present only while the build container runs.
const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";

/// dpkg's output in the tree unless `--verbose`; shown when configuring fails.
const BUILD_LOG: &str = "tmp/locker-build.log";

/// Parallel downloads: enough to hide per-request latency, few enough to be polite.
const DOWNLOAD_THREADS: usize = 6;

/// Everything a build needs to know, from the command line or a catalog entry.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub name: String,
    pub aliases: Vec<String>,
    pub suite: String,
    pub mirror: Option<String>,
    pub keyring: Option<PathBuf>,
    pub variant: String,
    pub include: Vec<String>,
    pub components: Vec<String>,
    pub arch: String,
    pub check_valid_until: bool,
    /// The package cache directory (ROOT/cache/debs unless overridden).
    pub deb_cache: PathBuf,
}

impl Request {
    /// The request a catalog entry's `build = {...}` makes.
    pub(crate) fn from_entry(entry: &Entry, spec: &BuildSpec, deb_cache: PathBuf) -> Request {
        Request {
            name: entry.name.clone(),
            aliases: entry.aliases.clone(),
            suite: spec.suite.clone(),
            mirror: spec.mirror.clone(),
            keyring: spec.keyring.clone(),
            variant: spec.variant.clone().unwrap_or_else(|| "minbase".into()),
            include: spec.include.clone(),
            components: spec.components.clone(),
            arch: entry.arch.clone(),
            check_valid_until: true,
            deb_cache,
        }
    }
}

/// The package cache: `LOCKER_DEB_CACHE`, else the store's.
pub(crate) fn deb_cache(store: &Store) -> PathBuf {
    std::env::var_os("LOCKER_DEB_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| store.deb_cache(), PathBuf::from)
}

/// The keyring a suite's archive is signed with, when locker knows it: Debian's and
/// Ubuntu's codenames and Debian's suite names.
fn default_keyring(suite: &str) -> Option<&'static str> {
    if is_debian_suite(suite) {
        Some(DEBIAN_KEYRING)
    } else if is_ubuntu_suite(suite) {
        Some(UBUNTU_KEYRING)
    } else {
        None
    }
}

/// Ubuntu's codenames since 14.04 (pockets such as `noble-updates` included).
fn is_ubuntu_suite(suite: &str) -> bool {
    let base = suite.split('-').next().unwrap_or(suite);
    [
        "trusty", "xenial", "bionic", "focal", "jammy", "kinetic", "lunar", "mantic", "noble",
        "oracular", "plucky", "questing",
    ]
    .contains(&base)
}

/// Debian's suite names and codenames; these default to Debian's keyring.
fn is_debian_suite(suite: &str) -> bool {
    let base = suite.split('-').next().unwrap_or(suite);
    [
        "buster",
        "bullseye",
        "bookworm",
        "trixie",
        "forky",
        "duke",
        "sid",
        "oldoldstable",
        "oldstable",
        "stable",
        "testing",
        "unstable",
        "experimental",
    ]
    .contains(&base)
}

/// Wall time of each step, for `--verbose`.
#[derive(Default)]
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn since(&mut self, step: &'static str, start: &mut Instant) {
        let now = Instant::now();
        self.0.push((step, now - *start));
        *start = now;
    }

    fn line(&self) -> String {
        let total: Duration = self.0.iter().map(|(_, d)| *d).sum();
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(s, d)| format!("{s} {:.2}s", d.as_secs_f64()))
            .collect();
        format!(
            "timings: {} (total {:.2}s)",
            parts.join(", "),
            total.as_secs_f64()
        )
    }
}

/// Builds `req.name` into the store.
pub(crate) fn build(store: &Store, req: &Request, printer: &Printer) -> anyhow::Result<Installed> {
    let mut t = Timings::default();
    let mut clock = Instant::now();
    let variant: Variant = req.variant.parse()?;
    if req.arch != crate::image::catalog::host_arch() {
        // Maintainer scripts run in the build container, natively.
        return Err(BuildError::Usage(format!(
            "cannot build for {} on this {} machine: maintainer scripts run natively",
            req.arch,
            crate::image::catalog::host_arch()
        ))
        .into());
    }
    let keyring = match (&req.keyring, default_keyring(&req.suite)) {
        (Some(k), _) => k.clone(),
        (None, Some(k)) => PathBuf::from(k),
        (None, None) => {
            return Err(BuildError::Usage(format!(
                "suite {} is neither Debian's nor Ubuntu's: pass --keyring FILE with the archive's signing keys",
                req.suite
            ))
            .into())
        }
    };
    // Before any download: a missing keyring fails the same way after it.
    if !keyring.exists() {
        return Err(BuildError::Verify {
            what: format!("the Release of {}", req.suite),
            source: VerifyError::KeyringMissing { path: keyring },
        }
        .into());
    }
    let (uri, host_components) = match &req.mirror {
        Some(m) => (m.clone(), Vec::new()),
        None => {
            let entries = sources::host_sources()?;
            let m =
                sources::pick_mirror(&entries, &req.suite, Some(&keyring)).ok_or_else(|| {
                    BuildError::Usage(format!(
                        "the host's apt sources do not serve {}: pass --mirror URL",
                        req.suite
                    ))
                })?;
            printer.detail(&format!("mirror {} (from {})", m.uri, m.origin));
            (m.uri, m.components)
        }
    };
    let uri = uri.trim_end_matches('/').to_string();
    let components = if !req.components.is_empty() {
        req.components.clone()
    } else if !host_components.is_empty() {
        host_components
    } else {
        vec!["main".to_string()]
    };
    let source = format!("build {} from {uri}", req.suite);
    // One build of a name at a time; the package cache is shared safely (renames).
    let _lock = store.lock_source(&format!("build {}", req.name))?;

    // 1. The signed Release, then the Packages indices it lists.
    let archive = Archive {
        uri: uri.clone(),
        suite: req.suite.clone(),
        keyring: keyring.clone(),
        fetcher: Fetcher::new(),
    };
    let release_text = archive.release_text()?;
    let release = Release::parse(&release_text).with_context(|| format!("Release of {source}"))?;
    release.check_suite(&req.suite)?;
    printer.detail(&format!(
        "Release of {} {} verified with {}",
        release.origin.unwrap_or("?"),
        release.codename.or(release.suite).unwrap_or("?"),
        keyring.display()
    ));
    if req.check_valid_until {
        release.check_fresh(UnixTime::now())?;
    }
    let indices = std::thread::scope(|scope| -> Result<Vec<String>, BuildError> {
        let mut handles = Vec::new();
        for c in &components {
            let index = release
                .packages_index(c, &req.arch)
                .map_err(|e| BuildError::Usage(e.to_string()))?;
            let (archive, release) = (&archive, &release);
            handles.push(
                scope.spawn(move || archive.packages(release, index.entry, index.compression)),
            );
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("index thread panicked"))
            .collect()
    })?;
    t.since("indices", &mut clock);

    // 2. Which packages, in which order.
    let texts: Vec<&str> = indices.iter().map(String::as_str).collect();
    let universe = Universe::from_indices(&texts, &req.arch)?;
    let include: Vec<&str> = req.include.iter().map(String::as_str).collect();
    let selection = universe.resolve(variant, &include)?;
    let order = selection.configure_order()?;
    // mmdebstrap's essential set: Essential: yes and what it depends on (libc6 holds
    // the dynamic loader every maintainer script needs).
    let base: std::collections::HashSet<&str> = universe
        .resolve(Variant::Essential, &[])?
        .packages()
        .map(|p| p.name)
        .collect();
    let (essential, rest): (Vec<_>, Vec<_>) = order
        .order
        .iter()
        .copied()
        .partition(|p| base.contains(p.name));
    printer.info(&format!(
        "{}: {} packages ({} essential), {} MiB to fetch from {uri}",
        req.name,
        selection.len(),
        essential.len(),
        selection.download_size() >> 20
    ));
    printer.detail(&format!(
        "packages: {}",
        order
            .order
            .iter()
            .map(|p| format!("{}:{}={}", p.name, p.arch, p.version))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    for b in &order.broken {
        printer.detail(&format!(
            "dependency cycle: {} configured before {} ({:?})",
            b.package, b.needs, b.kind
        ));
    }
    t.since("resolve", &mut clock);

    // 3. Every .deb, verified, into the shared cache.
    let cache = Cache {
        dir: req.deb_cache.clone(),
    };
    let jobs: Vec<DebJob> = selection
        .packages()
        .map(|p| DebJob {
            url: format!("{uri}/{}", p.filename),
            sha256: p.sha256,
            size: p.size,
        })
        .collect();
    let reporter = printer.reporter();
    let fetched = cache.fill(&archive.fetcher, &jobs, DOWNLOAD_THREADS, reporter.as_ref())?;
    drop(reporter);
    printer.detail(&format!(
        "downloaded {} packages ({} MiB), {} from the cache {}",
        fetched.downloaded,
        fetched.bytes >> 20,
        fetched.cached,
        cache.dir.display()
    ));
    t.since("download", &mut clock);

    // 4. Every package unpacked into a private tree and recorded in dpkg's database
    // as `dpkg --unpack` leaves it: the essential set first, then the rest.
    let work = store.begin()?;
    let tree = work.tree();
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&tree)
        .map_err(io_err("create", &tree))?;
    prepare_tree(&tree)?;
    dpkg_db::create(&tree, &req.arch)?;
    let mut unpacked = Vec::with_capacity(essential.len() + rest.len());
    for p in essential.iter().chain(&rest) {
        unpacked.push(Unpacked::unpack(&cache.path(&p.sha256), &tree, p)?);
    }
    for (path, earlier, later) in dpkg_db::disown_overwritten(&mut unpacked) {
        printer.detail(&format!(
            "/{} is in {earlier} and {later}: {later}'s copy is installed",
            path.display()
        ));
    }
    // From here on the tree holds what packages put there: host-side file work in
    // it goes through `Tree`.
    let inside = Tree::open(&tree).map_err(io_err("open", &tree))?;
    dpkg_db::register(&inside, &unpacked)?;
    // As apt leaves it after mmdebstrap's `apt-get install` of the non-essential
    // packages: those only pulled in as dependencies are marked automatic.
    let auto: Vec<&Unpacked> = unpacked[essential.len()..]
        .iter()
        .filter(|p| !selection.requested(&p.name))
        .collect();
    write_extended_states(&inside, &auto)?;
    t.since("unpack", &mut clock);

    // 5. Configure inside a container writing into the tree.
    let mut rest_pre_depends = HashMap::new();
    for p in &rest {
        rest_pre_depends.insert(p.name, selection.pre_depends(p)?);
    }
    let (essential, rest) = unpacked.split_at(essential.len());
    configure(
        store,
        &inside,
        req,
        essential,
        rest,
        &rest_pre_depends,
        printer,
    )?;
    t.since("configure", &mut clock);

    // 6. Clean, point apt at the mirror, digest, publish.
    let epoch = export::source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())?;
    finish_tree(&inside, &uri, &req.suite, &components, &keyring)?;
    if let Some(epoch) = epoch {
        clamp_mtimes(&tree, epoch).map_err(io_err("clamp mtimes in", &tree))?;
    }
    // The image is named by the sha256 of its canonical tar (what `locker export` writes).
    let digest = export::tree_digest(&tree, epoch)?;
    store.publish(work, &digest, &req.name, &req.aliases, &source)?;
    t.since("finish", &mut clock);
    printer.detail(&format!(
        "{}; verify {:.2}s (summed over threads) within download",
        t.line(),
        fetched.verify.as_secs_f64()
    ));
    Ok(Installed {
        name: req.name.clone(),
        digest,
        fetched: true,
    })
}

/// The directories apt and dpkg expect before the first package (mmdebstrap's setup).
fn prepare_tree(tree: &Path) -> Result<(), BuildError> {
    for d in [
        "etc/apt/apt.conf.d",
        "etc/apt/sources.list.d",
        "etc/apt/preferences.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/log/apt",
        "tmp",
    ] {
        let d = tree.join(d);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&d)
            .map_err(io_err("create", &d))?;
    }
    fs::set_permissions(tree.join("tmp"), fs::Permissions::from_mode(0o1777))
        .map_err(io_err("chmod", &tree.join("tmp")))?;
    Ok(())
}

/// apt's record of automatically installed packages (`apt-mark showauto`).
fn write_extended_states(t: &Tree, auto: &[&Unpacked]) -> Result<(), BuildError> {
    if auto.is_empty() {
        return Ok(());
    }
    let text: String = auto
        .iter()
        .map(|p| {
            format!(
                "Package: {}\nArchitecture: {}\nAuto-Installed: 1\n\n",
                p.name, p.arch
            )
        })
        .collect();
    let rel = "var/lib/apt/extended_states";
    t.write(rel, text.as_bytes(), 0o644)
        .map_err(io_err("write", &t.shown(rel)))?;
    Ok(())
}

/// Runs the preinst scripts and `dpkg --configure`, the essential set first, then the
/// rest, in a container with no network, services blocked (policy-rc.d) and no
/// questions asked.
fn configure(
    store: &Store,
    t: &Tree,
    req: &Request,
    essential: &[Unpacked],
    rest: &[Unpacked],
    rest_pre_depends: &HashMap<&str, Vec<&str>>,
    printer: &Printer,
) -> Result<(), BuildError> {
    // invoke-rc.d(8): 101 means "action not allowed"; no daemon starts in the build.
    // The script removes it when done.
    t.create_dir_all("usr/sbin")
        .map_err(io_err("create", &t.shown("usr/sbin")))?;
    t.write(POLICY_RC_D, b"#!/bin/sh\nexit 101\n", 0o755)
        .map_err(io_err("write", &t.shown(POLICY_RC_D)))?;
    let log = format!("/{BUILD_LOG}");
    let output = if printer.is_verbose() {
        "exec 1>&2".to_string()
    } else {
        format!("exec >{log} 2>&1")
    };
    let dpkg_version = essential
        .iter()
        .chain(rest)
        .find(|p| p.name == "dpkg")
        .map_or("", |p| p.version.as_str());
    let script = configure_script(&output, dpkg_version, essential, rest, rest_pre_depends);
    let mut env: Vec<(String, String)> = [
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
        ("LC_ALL", "C"),
        ("LANGUAGE", "C"),
        ("LANG", "C"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        env.push(("SOURCE_DATE_EPOCH".into(), epoch));
    }
    // The tree itself is the container's root: what dpkg writes stays in it. No
    // network: everything was downloaded and verified before.
    let mut spec = run::Spec::new(Resolved::tree(
        req.name.clone(),
        String::new(),
        t.path().to_path_buf(),
    ));
    spec.root = run::Root::Direct;
    spec.net = run::Net::None;
    spec.process.args = vec!["/bin/sh".to_string(), "-c".to_string(), script];
    spec.process.env = env;
    spec.process.cwd = Some("/".into());
    spec.security.suppress_sync = true;
    let code = run::run(store.root(), &spec).map_err(BuildError::Container)?;
    if code != 0 {
        let text = t.read(BUILD_LOG).ok().flatten().unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        for line in tail.iter().rev() {
            printer.info(&format!("  dpkg: {line}"));
        }
        return Err(BuildError::Configure {
            code,
            log: if tail.is_empty() {
                String::new()
            } else {
                "; its last lines are above".to_string()
            },
        });
    }
    Ok(())
}

/// The build container's script, as mmdebstrap orders it: every preinst of the
/// essential set as dpkg calls it for a new install (`preinst install`, from tmp.ci,
/// dpkg's environment, cwd /), then `dpkg --configure` of the set; then the rest the
/// way apt installs it, where a preinst runs only once its Pre-Depends are configured
/// (a batch is configured before a preinst that needs one of its packages); last,
/// whatever triggers are pending. dpkg checks each package's dependencies before
/// configuring it and breaks cycles itself. Names were checked to be plain words
/// (`Unpacked::unpack`).
fn configure_script(
    output: &str,
    dpkg_version: &str,
    essential: &[Unpacked],
    rest: &[Unpacked],
    rest_pre_depends: &HashMap<&str, Vec<&str>>,
) -> String {
    // --force-unsafe-io: no fsync per file; the tree is synced as a whole or lost.
    let dpkg = "dpkg --force-unsafe-io";
    let mut s = format!("set -e\n{output}\ncd /\n");
    let ci = format!("/{ADMIN_DIR}/tmp.ci");
    let preinst = |s: &mut String, p: &Unpacked| {
        s.push_str(&format!(
            "rm -rf {ci}\nmv /{STAGED_CONTROL}/{} {ci}\n\
             PERL_DL_NONLAZY=1 DPKG_ADMINDIR=/{ADMIN_DIR} DPKG_ROOT= \
             DPKG_RUNNING_VERSION='{dpkg_version}' DPKG_MAINTSCRIPT_PACKAGE={} \
             DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 DPKG_MAINTSCRIPT_ARCH={} \
             DPKG_MAINTSCRIPT_NAME=preinst DPKG_MAINTSCRIPT_DEBUG=0 {ci}/preinst install\n\
             rm -rf {ci}\n",
            p.db_name(),
            p.name,
            p.arch,
        ));
    };
    let configure = |s: &mut String, batch: &mut Vec<&Unpacked>| {
        if !batch.is_empty() {
            let names: Vec<String> = batch.iter().map(|p| p.db_name()).collect();
            s.push_str(&format!("{dpkg} --configure {}\n", names.join(" ")));
            batch.clear();
        }
    };
    let mut batch: Vec<&Unpacked> = Vec::new();
    for p in essential {
        if p.has("preinst") {
            preinst(&mut s, p);
        }
        batch.push(p);
    }
    configure(&mut s, &mut batch);
    for p in rest {
        if p.has("preinst") {
            let needs = rest_pre_depends.get(p.name.as_str());
            let waits = needs.is_some_and(|n| batch.iter().any(|q| n.contains(&q.name.as_str())));
            if waits {
                configure(&mut s, &mut batch);
            }
            preinst(&mut s, p);
        }
        batch.push(p);
    }
    configure(&mut s, &mut batch);
    s.push_str(&format!("{dpkg} --configure --pending\n"));
    // Inside the container, where no symlink a script left can lead to the host.
    s.push_str(&format!(
        "rm -rf /{POLICY_RC_D} /{STAGED_CONTROL} /{BUILD_LOG}\n"
    ));
    s
}

/// Points apt at the mirror used, trusting the keyring used, and removes what makes
/// two builds differ (mmdebstrap's cleanup/reproducible and cleanup/run).
fn finish_tree(
    t: &Tree,
    uri: &str,
    suite: &str,
    components: &[String],
    keyring: &Path,
) -> Result<(), BuildError> {
    let err = |action: &'static str, rel: &str| io_err(action, &t.shown(rel));
    let host_key = fs::read(keyring).map_err(io_err("read", keyring))?;
    // The image's own keyring package usually ships the same file at the same path
    // (anything unreadable there, or a relative --keyring, is simply not the same).
    let key_rel = keyring.to_string_lossy();
    let same_key = keyring.is_absolute()
        && t.read(key_rel.trim_start_matches('/'))
            .ok()
            .flatten()
            .as_deref()
            == Some(&host_key[..]);
    let signed_by = if same_key {
        keyring.to_path_buf()
    } else {
        let name = keyring
            .file_name()
            .map_or("archive.gpg".into(), |n| n.to_string_lossy().into_owned());
        t.create_dir_all("etc/apt/keyrings")
            .map_err(err("create", "etc/apt/keyrings"))?;
        let rel = format!("etc/apt/keyrings/{name}");
        t.write(&rel, &host_key, 0o644)
            .map_err(err("write", &rel))?;
        PathBuf::from("/").join(rel)
    };
    let line = format!(
        "deb [signed-by={}] {uri} {suite} {}\n",
        signed_by.display(),
        components.join(" ")
    );
    t.write("etc/apt/sources.list", line.as_bytes(), 0o644)
        .map_err(err("write", "etc/apt/sources.list"))?;

    for rel in [
        "var/log/dpkg.log",
        "var/log/apt/history.log",
        "var/log/apt/term.log",
        "var/log/alternatives.log",
        "var/cache/ldconfig/aux-cache",
        "var/log/apt/eipp.log.xz",
        "var/lib/dbus/machine-id",
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        t.remove_file(rel).map_err(err("remove", rel))?;
    }
    // machine-id(5): an empty file in a generic image, 0644 as mmdebstrap leaves it
    // (systemd-machine-id-setup made it 0444).
    let mid = "etc/machine-id";
    if t.read(mid).map_err(err("read", mid))?.is_some() {
        t.write(mid, b"", 0o644).map_err(err("write", mid))?;
    }
    for dir in ["tmp", "run", "var/cache/apt/archives", "var/lib/apt/lists"] {
        // /var/lock links to /run/lock (Debian policy 9.1.4); partial/ is apt's.
        t.clear_dir(dir, &["lock", "partial"])
            .map_err(err("empty", dir))?;
    }
    Ok(())
}

/// Clamps every mtime in `tree` newer than `epoch` to it (SOURCE_DATE_EPOCH), as
/// the canonical tar does, so the tree on disk and `locker export` agree. Symlinks
/// are changed themselves, never followed.
fn clamp_mtimes(dir: &Path, epoch: u64) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_dir() {
            clamp_mtimes(&path, epoch)?;
        }
        if meta.mtime() > epoch as i64 {
            set_mtime(&path, epoch)?;
        }
    }
    // Children first: clamping them does not touch the directory's own mtime.
    if fs::symlink_metadata(dir)?.mtime() > epoch as i64 {
        set_mtime(dir, epoch)?;
    }
    Ok(())
}

fn set_mtime(path: &Path, epoch: u64) -> io::Result<()> {
    let ts = nix::sys::time::TimeSpec::new(epoch as i64, 0);
    nix::sys::stat::utimensat(
        None,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_default_to_their_distributions_keyring() {
        for s in ["bookworm", "trixie", "bookworm-updates", "sid", "stable"] {
            assert_eq!(default_keyring(s), Some(DEBIAN_KEYRING), "{s}");
        }
        for s in ["jammy", "noble", "focal-updates", "noble-security"] {
            assert_eq!(default_keyring(s), Some(UBUNTU_KEYRING), "{s}");
        }
        for s in ["stretchy", "xenial2", "", "kali-rolling"] {
            assert_eq!(default_keyring(s), None, "{s}");
        }
    }

    #[test]
    fn configure_script_runs_preinsts_from_tmp_ci_then_configures_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        dpkg_db::create(tree, "amd64").unwrap();
        let essential = test_packages(tree, &[("libc6", true), ("dpkg", false)]);
        let rest = test_packages(
            tree,
            &[
                ("libapt", false),
                ("gpgv", false),
                ("apt", true),
                ("adduser", true),
            ],
        );
        // apt Pre-Depends on libapt (a rest package), adduser on nothing of the rest.
        let pre_depends = HashMap::from([("apt", vec!["libapt", "libc6"])]);
        let s = configure_script(
            "exec >/log 2>&1",
            "1.21.23",
            &essential,
            &rest,
            &pre_depends,
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[..3], ["set -e", "exec >/log 2>&1", "cd /"]);
        let at = |needle: &str| {
            s.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not in\n{s}"))
        };
        // Each preinst runs from tmp.ci with dpkg's environment, as dpkg runs it.
        assert!(s.contains(
            "DPKG_RUNNING_VERSION='1.21.23' DPKG_MAINTSCRIPT_PACKAGE=libc6 \
             DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 DPKG_MAINTSCRIPT_ARCH=amd64 \
             DPKG_MAINTSCRIPT_NAME=preinst DPKG_MAINTSCRIPT_DEBUG=0 /var/lib/dpkg/tmp.ci/preinst install"
        ), "{s}");
        assert!(
            !s.contains("export"),
            "dpkg's variables reach the preinsts only"
        );
        assert!(!s.contains("locker-ci/dpkg"), "dpkg has no preinst");
        // The essential set: every preinst, then one configure (mmdebstrap's step).
        assert!(at("locker-ci/libc6 ") < at("--configure libc6 dpkg\n"));
        // The rest: apt's preinst waits until libapt, which it Pre-Depends on, is
        // configured; adduser's needs nothing from its batch.
        assert!(at("--configure libc6 dpkg\n") < at("--configure libapt gpgv\n"));
        assert!(at("--configure libapt gpgv\n") < at("locker-ci/apt "));
        assert!(at("locker-ci/apt ") < at("locker-ci/adduser "));
        assert!(at("locker-ci/adduser ") < at("--configure apt adduser\n"));
        assert!(at("--configure apt adduser\n") < at("--configure --pending\n"));
        // The build's own files go last, removed from inside the container.
        assert!(
            s.ends_with("rm -rf /usr/sbin/policy-rc.d /var/lib/locker-ci /tmp/locker-build.log\n"),
            "{s}"
        );
    }

    /// Packages as `Unpacked::unpack` returns them, from .debs written for the test.
    fn test_packages(tree: &Path, specs: &[(&str, bool)]) -> Vec<Unpacked> {
        use crate::build::resolve::Universe;
        let index: String = specs
            .iter()
            .map(|(name, _)| {
                format!(
                    "Package: {name}\nVersion: 1.0\nArchitecture: amd64\nFilename: {name}.deb\n\
                     Size: 1\nSHA256: {}\n\n",
                    "0".repeat(64)
                )
            })
            .collect();
        let universe = Universe::from_indices(&[&index], "amd64").unwrap();
        specs
            .iter()
            .map(|(name, preinst)| {
                let deb = tree.join(format!("{name}.deb"));
                let mut control = vec![(
                    "control".to_string(),
                    format!("Package: {name}\nVersion: 1.0\nArchitecture: amd64\n"),
                )];
                if *preinst {
                    control.push(("preinst".to_string(), "#!/bin/sh\n".to_string()));
                }
                fs::write(&deb, crate::build::deb::tests::deb_of(&control, &[])).unwrap();
                Unpacked::unpack(&deb, tree, universe.get(name).unwrap()).unwrap()
            })
            .collect()
    }

    /// What packages and maintainer scripts can leave in a tree: links to a host
    /// directory where locker later writes, reads or empties. Nothing outside changes.
    #[test]
    fn finishing_a_hostile_tree_touches_nothing_outside() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        let link = |to: &Path, at: &str| {
            let at = tree.join(at);
            fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(to, at).unwrap();
        };
        for d in ["tmp", "run", "var/lib/apt/lists"] {
            link(outside.path(), d);
        }
        link(&victim, "var/log/dpkg.log");
        link(&victim, "var/lib/apt/extended_states");
        let keyring = outside.path().join("archive.gpg");
        fs::write(&keyring, "key").unwrap();
        let outside_names = || {
            let mut names: Vec<_> = fs::read_dir(outside.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };

        // Links to empty: skipped. A link where a file is removed: the link goes.
        let inside = Tree::open(tree).unwrap();
        let finish = || {
            finish_tree(
                &inside,
                "http://mirror",
                "bookworm",
                &["main".into()],
                &keyring,
            )
        };
        finish().unwrap();
        assert!(fs::symlink_metadata(tree.join("var/log/dpkg.log")).is_err());
        assert!(fs::symlink_metadata(tree.join("tmp")).unwrap().is_symlink());
        // A link where a file is written: the link is replaced, not followed.
        let auto = test_packages(tree, &[("dep", false)]);
        write_extended_states(&inside, &auto.iter().collect::<Vec<_>>()).unwrap();
        let states = tree.join("var/lib/apt/extended_states");
        assert!(fs::symlink_metadata(&states).unwrap().is_file());
        // A link on the way to a written file resolves inside the tree: refused.
        fs::remove_dir_all(tree.join("etc")).unwrap();
        link(outside.path(), "etc");
        finish().unwrap_err();

        assert_eq!(fs::read_to_string(&victim).unwrap(), "host");
        assert_eq!(
            outside_names(),
            ["archive.gpg", "victim"],
            "nothing removed or added"
        );
    }

    #[test]
    fn clamps_newer_mtimes_only() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        fs::create_dir(t.join("etc")).unwrap();
        fs::write(t.join("etc/a"), "x").unwrap();
        std::os::unix::fs::symlink("a", t.join("etc/l")).unwrap();
        set_mtime(&t.join("etc/a"), 500).unwrap();
        clamp_mtimes(t, 1_000).unwrap();
        let mtime = |p: &str| fs::symlink_metadata(t.join(p)).unwrap().mtime();
        assert_eq!(mtime("etc/a"), 500, "older mtimes stay");
        assert_eq!(mtime("etc/l"), 1_000);
        assert_eq!(mtime("etc"), 1_000);
        assert_eq!(mtime(""), 1_000);
    }
}
