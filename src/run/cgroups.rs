//! Container cgroups, v2 or v1, chosen at run time.
//!
//! Where limits go: v2 when /sys/fs/cgroup is itself cgroup2 (statfs magic), or when a
//! hybrid layout's v2 mount offers every controller the limits need; otherwise the v1
//! controllers.
//!
//! Containment (a container must not climb out of its cgroups): the container gets a
//! cgroup in EVERY mounted hierarchy (each v1 hierarchy, named ones such as
//! name=systemd included, and a hybrid host's cgroup2), not only in those that carry
//! limits, so its cgroup namespace is rooted at its own cgroup everywhere: nothing it
//! can mount shows another process. And where a hierarchy carries limits it is one
//! level below them, as systemd delegates: limits (pids, memory, cpu, the v1 device
//! allow-list, the v2 device BPF program) are on PARENT/ID, the payload runs in
//! PARENT/ID/ctr and its namespace is rooted there, so PARENT/ID's files are outside
//! anything it can see. A hierarchy with nothing written in it (freezer, cpuset, blkio,
//! name=systemd, memory without --memory, …) has nothing to lift: the payload runs in
//! PARENT/ID itself, which saves a mkdir and an rmdir per hierarchy on every run.
//!
//! Invariants: locker writes only into directories it created (PARENT, made if
//! missing, PARENT/ID, PARENT/ID/ctr), plus the v2 root's `cgroup.subtree_control` for
//! controllers the root offers; everything is removed inner first once empty
//! (`remove`, retried briefly).

use crate::fs::path_error::{io_err, PathError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::devices::{self, DeviceError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("cgroup controller {0} is not available (needed for the requested limit)")]
    Missing(&'static str),
    #[error(transparent)]
    Devices(#[from] DeviceError),
    #[error("--memory, --cpus and --pids need, for an ordinary user, a cgroup v2 subtree delegated to that user ({0}); run locker from a session under it (systemd: `systemd-run --user --scope locker run ...` with user@.service's Delegate=yes), or run without limits, or as root")]
    NotDelegated(&'static str),
}

/// podman's default pids limit: a fork bomb stops here unless the user asks otherwise.
pub(crate) const DEFAULT_PIDS: u64 = 2048;

/// The limits `run` was asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

impl Default for Limits {
    /// No memory or cpu limit; the default pids limit.
    fn default() -> Self {
        Limits {
            memory: None,
            pids: Some(DEFAULT_PIDS),
            cpus: None,
        }
    }
}

impl Limits {
    /// No limit at all (unit tests).
    #[cfg(test)]
    pub(crate) const NONE: Limits = Limits {
        memory: None,
        pids: None,
        cpus: None,
    };

    /// Controllers these limits need; pids always (it is cheap and bounds the container).
    fn controllers(&self) -> Vec<&'static str> {
        let mut c = vec!["pids"];
        if self.memory.is_some() {
            c.push("memory");
        }
        if self.cpus.is_some() {
            c.push("cpu");
        }
        c
    }
}

/// Which hierarchy carries the limits, rooted at `base` (normally /sys/fs/cgroup).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Hierarchy {
    V1 { base: PathBuf },
    V2 { root: PathBuf },
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Detects the layout of the running system.
pub(crate) fn detect(limits: &Limits) -> Hierarchy {
    let base = Path::new("/sys/fs/cgroup");
    if let Ok(st) = nix::sys::statfs::statfs(base) {
        #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
        if st.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC {
            return Hierarchy::V2 {
                root: base.to_path_buf(),
            };
        }
    }
    let unified = base.join("unified");
    if let Ok(ctl) = fs::read_to_string(unified.join("cgroup.controllers")) {
        let offered: Vec<&str> = ctl.split_whitespace().collect();
        if limits.controllers().iter().all(|c| offered.contains(c)) {
            return Hierarchy::V2 { root: unified };
        }
    }
    Hierarchy::V1 {
        base: base.to_path_buf(),
    }
}

/// An ordinary user's cgroups (rootless): the topmost cgroup2 directory above this
/// process that the user owns, its cgroup.procs and cgroup.subtree_control too
/// (systemd's user@UID.service with Delegate=yes, or a cgroup given to the user). Only
/// there may the user create cgroups, and move a process between two of them (the
/// kernel wants write access to the common ancestor's cgroup.procs). `own` is this
/// process's cgroup2 path (the `0::` line of /proc/self/cgroup), `uid` the user as the
/// tree's owners read (in a user namespace: its uid 0).
pub(crate) fn delegation_root(mount: &Path, own: &str, uid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let owned = |d: &Path| {
        ["", "cgroup.procs", "cgroup.subtree_control"]
            .iter()
            .all(|f| fs::metadata(d.join(f)).is_ok_and(|m| m.uid() == uid))
    };
    let rel = own.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        return None;
    }
    let mut dir = mount.join(rel);
    if !owned(&dir) {
        return None;
    }
    while let Some(up) = dir.parent().filter(|p| *p != mount && p.starts_with(mount)) {
        if !owned(up) {
            break;
        }
        dir = up.to_path_buf();
    }
    Some(dir)
}

/// The hierarchy an ordinary user's container uses: the delegated subtree when there
/// is one that offers the controllers `limits` need. `asked`: the user gave limits, so
/// their absence is an error; otherwise (the default pids limit only) the container
/// runs without a cgroup of its own, as rootless podman does on cgroup v1.
pub(crate) fn detect_rootless(
    limits: &Limits,
    asked: bool,
) -> Result<Option<Hierarchy>, CgroupError> {
    let base = Path::new("/sys/fs/cgroup");
    let v2 = nix::sys::statfs::statfs(base).is_ok_and(|st| {
        #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
        let t = st.filesystem_type().0 as i64;
        t == CGROUP2_SUPER_MAGIC
    });
    let mount = if v2 {
        base.to_path_buf()
    } else {
        base.join("unified")
    };
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("");
    let uid = nix::unistd::geteuid().as_raw();
    let why = if v2 {
        "none found above this process"
    } else {
        "this host's limits are on cgroup v1, which cannot be delegated"
    };
    let Some(root) = delegation_root(&mount, own, uid) else {
        return if asked {
            Err(CgroupError::NotDelegated(why))
        } else {
            Ok(None)
        };
    };
    let offered = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if let Some(c) = limits
        .controllers()
        .into_iter()
        .find(|c| !offered.split_whitespace().any(|o| o == *c))
    {
        return if asked {
            Err(CgroupError::Missing(c))
        } else {
            Ok(None)
        };
    }
    Ok(Some(Hierarchy::V2 { root }))
}

/// A container's cgroup in each hierarchy.
///
/// How the child gets in without a migration lock: moving another process into a
/// cgroup write-locks the kernel's global cgroup_threadgroup_rwsem, which waits for an
/// RCU grace period (5-30 ms measured here, on every run). So nothing is moved: the
/// child is cloned straight into its cgroup2 directory (CLONE_INTO_CGROUP), and, being
/// single-threaded, writes "0" to each v1 hierarchy's `tasks` file itself, which moves
/// only the calling thread and takes no global lock.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cgroup {
    /// The payload's directory in the cgroup2 hierarchy (a pure v2 host's, or a hybrid
    /// host's unified mount), which the child is cloned into; one of `dirs`.
    pub clone_into: Option<PathBuf>,
    /// The payload's cgroup in each hierarchy, its namespace roots: PARENT/ID/ctr where
    /// the hierarchy carries limits, PARENT/ID where it carries none.
    pub dirs: Vec<PathBuf>,
    /// PARENT/ID in each hierarchy that carries limits: out of the container's view.
    pub limit_dirs: Vec<PathBuf>,
}

/// The payload's directory below a container's limit cgroup.
const PAYLOAD: &str = "ctr";

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("write", path))?;
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create cgroup", path)(e).into()),
    }
}

/// Checks a parent name: relative, no `..`.
fn check_parent(parent: &str) -> Result<(), CgroupError> {
    // Empty: right under each hierarchy's root (an OCI cgroupsPath of one part).
    if parent.is_empty() {
        return Ok(());
    }
    if parent.starts_with('/')
        || parent
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
    {
        let why = io::Error::new(
            io::ErrorKind::InvalidInput,
            "must be a relative path without `..`",
        );
        return Err(io_err("use cgroup parent", Path::new(parent))(why).into());
    }
    Ok(())
}

/// The mounted hierarchies under a v1 or hybrid `base`: each directory (not a
/// symlink such as cpuacct -> cpu,cpuacct) that is a cgroup root, by name.
fn hierarchies(base: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(base) else {
        return Vec::new();
    };
    let mut v: Vec<(String, PathBuf)> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.path().join("cgroup.procs").exists())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    v
}

/// Creates PARENT/ID (limits) and PARENT/ID/ctr (payload) in every hierarchy and
/// writes the limits. On error, what was created is removed.
pub(crate) fn create(
    h: &Hierarchy,
    parent: &str,
    id: &str,
    limits: &Limits,
) -> Result<Cgroup, CgroupError> {
    check_parent(parent)?;
    let v1_base = match h {
        Hierarchy::V1 { base } => Some(base.clone()),
        // A hybrid host's unified mount: its v1 siblings get the container too.
        Hierarchy::V2 { root } if root.file_name().is_some_and(|n| n == "unified") => {
            root.parent().map(Path::to_path_buf)
        }
        Hierarchy::V2 { .. } => None,
    };
    let mut roots: Vec<(String, PathBuf)> = v1_base.as_deref().map(hierarchies).unwrap_or_default();
    if let Hierarchy::V2 { root } = h {
        roots.retain(|(_, p)| p != root);
        roots.insert(0, (String::new(), root.clone()));
    }
    if let Hierarchy::V1 { base } = h {
        for c in limits.controllers() {
            if !base.join(c).join("cgroup.procs").exists() {
                return Err(CgroupError::Missing(c));
            }
        }
    }
    let carries: Vec<bool> = roots
        .iter()
        .map(|(name, r)| match h {
            Hierarchy::V2 { root } if root == r => true,
            _ => carries_limits(name, matches!(h, Hierarchy::V1 { .. }), limits),
        })
        .collect();
    let own = |(_, r): &(String, PathBuf)| r.join(parent).join(id);
    let dirs: Vec<PathBuf> = roots
        .iter()
        .zip(&carries)
        .map(|(r, &c)| if c { own(r).join(PAYLOAD) } else { own(r) })
        .collect();
    // The cgroup2 hierarchy: only it has cgroup.controllers at its root.
    let clone_into = roots
        .iter()
        .zip(&dirs)
        .find(|((_, r), _)| r.join("cgroup.controllers").exists())
        .map(|(_, d)| d.clone());
    let cg = Cgroup {
        clone_into,
        dirs,
        limit_dirs: roots
            .iter()
            .zip(&carries)
            .filter(|(_, &c)| c)
            .map(|(r, _)| own(r))
            .collect(),
    };
    let result = (|| {
        for (name, root) in &roots {
            match h {
                Hierarchy::V2 { root: r } if r == root => {
                    setup_v2(root, parent, &root.join(parent).join(id), limits)?
                }
                _ => {
                    let limits_here = matches!(h, Hierarchy::V1 { .. });
                    setup_v1_hierarchy(name, root, parent, id, limits, limits_here)?
                }
            }
        }
        for (d, _) in cg.dirs.iter().zip(&carries).filter(|(_, &c)| c) {
            fs::create_dir(d).map_err(io_err("create cgroup", d))?;
            copy_cpuset(d)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = cg.remove(Duration::from_millis(100));
        return Err(e);
    }
    Ok(cg)
}

fn setup_v2(root: &Path, parent: &str, dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let wanted = limits.controllers();
    let offered_path = root.join("cgroup.controllers");
    let offered = fs::read_to_string(&offered_path).map_err(io_err("read", &offered_path))?;
    for c in &wanted {
        if !offered.split_whitespace().any(|o| o == *c) {
            return Err(CgroupError::Missing(c));
        }
    }
    // Enable the controllers down the path: root (only what it offers, checked above),
    // then each level of PARENT (which locker owns).
    let mut level = root.to_path_buf();
    let parts: Vec<&str> = parent.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        enable(&level, &wanted)?;
        level = level.join(part);
        mkdir(&level)?;
        if i == parts.len() - 1 {
            enable(&level, &wanted)?;
        }
    }
    fs::create_dir(dir).map_err(io_err("create cgroup", dir))?;
    if let Some(m) = limits.memory {
        write(&dir.join("memory.max"), &m.to_string())?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, "0")?;
        }
    }
    if let Some(p) = limits.pids {
        write(&dir.join("pids.max"), &p.to_string())?;
    }
    if let Some(c) = limits.cpus {
        write(&dir.join("cpu.max"), &format!("{} 100000", cpu_quota(c)))?;
    }
    attach_device_filter(dir)
}

/// The v2 device filter on the limit cgroup: what the v1 devices controller's
/// allow-list does, for the whole subtree. (A fake tree in unit tests is not cgroup2.)
fn attach_device_filter(dir: &Path) -> Result<(), CgroupError> {
    // An ordinary user can load no cgroup BPF program; nor can its containers make a
    // device node (no mknod in a user namespace), only use the ones bound in.
    if super::userns::rootless() {
        return Ok(());
    }
    match devices::attach(dir, devices::DEFAULT_ALLOW) {
        Err(DeviceError::NotCgroup2 { .. }) if cfg!(test) => Ok(()),
        r => Ok(r?),
    }
}

/// Adds the controllers missing from `dir`'s subtree_control.
fn enable(dir: &Path, wanted: &[&str]) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&path).map_err(io_err("read", &path))?;
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| !current.split_whitespace().any(|o| o == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(&path, &missing.join(" "))
}

fn cpu_quota(cpus: f64) -> u64 {
    ((cpus * 100_000.0).round() as u64).max(1000)
}

/// A new v1 cpuset cgroup starts with no cpus and no memory nodes, and no task can join
/// it: give it its parent's.
fn copy_cpuset(dir: &Path) -> Result<(), CgroupError> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(f);
        if !own.exists()
            || !fs::read_to_string(&own)
                .unwrap_or_default()
                .trim()
                .is_empty()
        {
            continue;
        }
        let Some(parent) = dir.parent() else { continue };
        let from = parent.join(f);
        let value = fs::read_to_string(&from).map_err(io_err("read", &from))?;
        write(&own, value.trim())?;
    }
    Ok(())
}

/// Whether locker writes anything into a v1 hierarchy named `name` (its controllers,
/// comma-separated): the device allow-list always, a limit when `limits_here` (the
/// limits are on v1) and the hierarchy has that limit's controller.
fn carries_limits(name: &str, limits_here: bool, limits: &Limits) -> bool {
    name.split(',').any(|c| match c {
        "devices" => true,
        "pids" => limits_here && limits.pids.is_some(),
        "memory" => limits_here && limits.memory.is_some(),
        "cpu" => limits_here && limits.cpus.is_some(),
        _ => false,
    })
}

/// PARENT and PARENT/ID in one v1 hierarchy (or a hybrid host's cgroup2 when the
/// limits are elsewhere), with the limits its controllers carry when `limits_here`.
fn setup_v1_hierarchy(
    name: &str,
    root: &Path,
    parent: &str,
    id: &str,
    limits: &Limits,
    limits_here: bool,
) -> Result<(), CgroupError> {
    let mut level = root.to_path_buf();
    for part in parent.split('/') {
        level = level.join(part);
        mkdir(&level)?;
        copy_cpuset(&level)?;
    }
    let dir = level.join(id);
    fs::create_dir(&dir).map_err(io_err("create cgroup", &dir))?;
    copy_cpuset(&dir)?;
    let ctrls: Vec<&str> = name.split(',').collect();
    if ctrls.contains(&"devices") {
        // Before the payload's cgroup exists: a v1 child copies its parent's list.
        write(&dir.join("devices.deny"), "a")?;
        for rule in devices::DEFAULT_ALLOW {
            write(&dir.join("devices.allow"), &rule.v1_line())?;
        }
    }
    if !limits_here {
        return Ok(());
    }
    if ctrls.contains(&"memory") {
        if let Some(m) = limits.memory {
            write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
            // memsw >= limit must hold; equal means no swap at all.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &m.to_string())?;
            }
        }
    }
    if ctrls.contains(&"pids") {
        if let Some(p) = limits.pids {
            write(&dir.join("pids.max"), &p.to_string())?;
        }
    }
    if ctrls.contains(&"cpu") {
        if let Some(c) = limits.cpus {
            write(&dir.join("cpu.cfs_period_us"), "100000")?;
            write(&dir.join("cpu.cfs_quota_us"), &cpu_quota(c).to_string())?;
        }
    }
    Ok(())
}

impl Cgroup {
    /// No cgroup of its own: an ordinary user's container where nothing is delegated.
    pub(crate) fn none() -> Cgroup {
        Cgroup {
            clone_into: None,
            dirs: Vec::new(),
            limit_dirs: Vec::new(),
        }
    }

    /// The v1 `tasks` files the child writes "0" to (every dir but the cgroup2 one).
    pub(crate) fn v1_tasks(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .filter(|d| Some(*d) != self.clone_into.as_ref())
            .map(|d| d.join("tasks"))
            .collect()
    }

    /// The processes in the cgroup that carries the limits (no payload level below
    /// it): an OCI container's `cgroupsPath` is where its processes and limits are, by
    /// the runtime spec. The payload directories are removed.
    pub(crate) fn flatten(mut self) -> Result<Cgroup, CgroupError> {
        for d in &mut self.dirs {
            if d.file_name().is_some_and(|n| n == PAYLOAD) {
                fs::remove_dir(&*d).map_err(io_err("remove cgroup", d))?;
                d.pop();
            }
        }
        if let Some(c) = self.clone_into.as_mut() {
            if c.file_name().is_some_and(|n| n == PAYLOAD) {
                c.pop();
            }
        }
        self.limit_dirs.clear();
        Ok(self)
    }

    /// Every directory, inner first (the order they can be removed in).
    pub(crate) fn all_dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().chain(&self.limit_dirs).cloned().collect()
    }

    /// Removes the directories; a cgroup whose last task just died can stay busy for a
    /// moment, so EBUSY is retried until `patience` runs out.
    pub(crate) fn remove(&self, patience: Duration) -> Result<(), CgroupError> {
        remove_dirs(&self.all_dirs(), patience)
    }
}

pub(crate) fn remove_dirs(dirs: &[PathBuf], patience: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + patience;
    for dir in dirs {
        let mut pause = Duration::from_micros(200);
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(io_err("remove cgroup", dir)(e).into()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    fn fake_v1() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for c in ["memory", "pids", "cpu"] {
            fs::create_dir_all(t.path().join(c)).unwrap();
            fs::write(t.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        t
    }

    // A real cgroupfs creates the control files on mkdir; the fake needs them made
    // where the test expects optional files to exist.
    #[test]
    fn v1_writes_limits_on_the_parent_of_the_payload() {
        let t = fake_v1();
        let h = Hierarchy::V1 {
            base: t.path().to_path_buf(),
        };
        let limits = Limits {
            memory: Some(32 << 20),
            pids: Some(20),
            cpus: Some(0.5),
        };
        let cg = create(&h, "locker-t", "abc", &limits).unwrap();
        assert_eq!(cg.clone_into, None, "no cgroup2 hierarchy");
        let b = t.path();
        assert_eq!(
            cg.dirs,
            ["cpu", "memory", "pids"].map(|c| b.join(c).join("locker-t/abc/ctr"))
        );
        assert_eq!(
            cg.limit_dirs,
            ["cpu", "memory", "pids"].map(|c| b.join(c).join("locker-t/abc"))
        );
        let m = b.join("memory/locker-t/abc");
        assert_eq!(
            read(&m.join("memory.limit_in_bytes")),
            (32u64 << 20).to_string()
        );
        assert!(
            !m.join("memory.memsw.limit_in_bytes").exists(),
            "memsw only when the kernel has it"
        );
        assert_eq!(read(&b.join("pids/locker-t/abc/pids.max")), "20");
        assert_eq!(read(&b.join("cpu/locker-t/abc/cpu.cfs_quota_us")), "50000");
        assert_eq!(
            read(&b.join("cpu/locker-t/abc/cpu.cfs_period_us")),
            "100000"
        );
        // Nothing is written where the payload (and its cgroup namespace root) is.
        for d in &cg.dirs {
            assert_eq!(fs::read_dir(d).unwrap().count(), 0, "{d:?}");
        }
        // The child joins each payload cgroup itself, through its tasks file.
        assert_eq!(
            cg.v1_tasks(),
            ["cpu", "memory", "pids"].map(|c| b.join(c).join("locker-t/abc/ctr/tasks"))
        );
    }

    #[test]
    fn every_hierarchy_gets_the_container_even_without_limits() {
        let t = fake_v1();
        let b = t.path();
        for h in ["freezer", "systemd", "unified", "cpu,cpuacct"] {
            fs::create_dir_all(b.join(h)).unwrap();
            fs::write(b.join(h).join("cgroup.procs"), "").unwrap();
        }
        // A symlink to a hierarchy is the same hierarchy: not a second one.
        std::os::unix::fs::symlink("cpu,cpuacct", b.join("cpuacct")).unwrap();
        let cg = create(
            &Hierarchy::V1 {
                base: b.to_path_buf(),
            },
            "p",
            "id",
            &Limits::default(),
        )
        .unwrap();
        let names: Vec<String> = cg
            .dirs
            .iter()
            .map(|d| d.strip_prefix(b).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "cpu/p/id",
                "cpu,cpuacct/p/id",
                "freezer/p/id",
                "memory/p/id",
                "pids/p/id/ctr",
                "systemd/p/id",
                "unified/p/id"
            ]
        );
        // Only the hierarchy with a limit has the extra level above the payload.
        assert_eq!(cg.limit_dirs, [b.join("pids/p/id")]);
        // The default pids limit, and no other limit anywhere.
        assert_eq!(
            read(&b.join("pids/p/id/pids.max")),
            DEFAULT_PIDS.to_string()
        );
        assert!(!b.join("memory/p/id/memory.limit_in_bytes").exists());
        // A fake directory is removable only once empty (cgroupfs's control files are not).
        fs::remove_file(b.join("pids/p/id/pids.max")).unwrap();
        cg.remove(Duration::from_millis(10)).unwrap();
        for (_, root) in hierarchies(b) {
            assert!(!root.join("p/id").exists(), "{root:?}");
        }
    }

    #[test]
    fn hybrid_v2_limits_and_v1_siblings() {
        let t = fake_v1();
        let b = t.path();
        let u = b.join("unified");
        fs::create_dir_all(&u).unwrap();
        fs::write(u.join("cgroup.procs"), "").unwrap();
        fs::write(u.join("cgroup.controllers"), "pids memory\n").unwrap();
        fs::write(u.join("cgroup.subtree_control"), "").unwrap();
        fs::create_dir(u.join("locker")).unwrap();
        fs::write(u.join("locker/cgroup.subtree_control"), "").unwrap();
        let cg = create(
            &Hierarchy::V2 { root: u.clone() },
            "locker",
            "c",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            cg.clone_into.as_ref(),
            Some(&u.join("locker/c/ctr")),
            "cloned into the cgroup2 dir"
        );
        assert!(
            !cg.v1_tasks().contains(&u.join("locker/c/ctr/tasks")),
            "cgroup2 has no tasks file"
        );
        assert_eq!(cg.v1_tasks().len(), cg.dirs.len() - 1);
        assert_eq!(cg.dirs[0], u.join("locker/c/ctr"));
        assert_eq!(read(&u.join("locker/c/pids.max")), DEFAULT_PIDS.to_string());
        assert!(cg.dirs.contains(&b.join("pids/locker/c")));
        assert!(
            !b.join("pids/locker/c/pids.max").exists(),
            "limits only in the hierarchy that carries them"
        );
        assert_eq!(cg.limit_dirs, [u.join("locker/c")]);
    }

    #[test]
    fn v1_devices_deny_all_then_allow_list_on_the_parent() {
        let t = fake_v1();
        fs::create_dir_all(t.path().join("devices")).unwrap();
        fs::write(t.path().join("devices/cgroup.procs"), "").unwrap();
        let h = Hierarchy::V1 {
            base: t.path().to_path_buf(),
        };
        let cg = create(&h, "p", "id", &Limits::default()).unwrap();
        let d = t.path().join("devices/p/id");
        assert!(cg.dirs.contains(&d.join("ctr")));
        assert_eq!(read(&d.join("devices.deny")), "a");
        // The fake file keeps the last write; the kernel adds each rule.
        assert_eq!(read(&d.join("devices.allow")), "c 136:* rwm");
        assert!(cg.v1_tasks().contains(&d.join("ctr/tasks")));
    }

    #[test]
    fn v1_missing_controller_fails_and_leaves_nothing() {
        let t = fake_v1();
        let h = Hierarchy::V1 {
            base: t.path().to_path_buf(),
        };
        fs::remove_dir_all(t.path().join("cpu")).unwrap();
        let e = create(
            &h,
            "p",
            "id2",
            &Limits {
                cpus: Some(1.0),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, CgroupError::Missing("cpu")));
        assert!(
            !t.path().join("pids/p/id2").exists(),
            "nothing left behind on error"
        );
    }

    #[test]
    fn v1_cpuset_levels_get_their_parents_cpus_and_mems() {
        let t = fake_v1();
        let c = t.path().join("cpuset");
        fs::create_dir_all(&c).unwrap();
        fs::write(c.join("cgroup.procs"), "").unwrap();
        fs::write(c.join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(c.join("cpuset.mems"), "0\n").unwrap();
        // What a real cpuset cgroupfs makes on mkdir: empty files.
        let dir = c.join("p");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("cpuset.cpus"), "").unwrap();
        fs::write(dir.join("cpuset.mems"), "").unwrap();
        copy_cpuset(&dir).unwrap();
        assert_eq!(read(&dir.join("cpuset.cpus")), "0-1");
        assert_eq!(read(&dir.join("cpuset.mems")), "0");
    }

    #[test]
    fn v2_enables_controllers_and_writes_limits_on_the_parent() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        fs::write(root.join("cgroup.subtree_control"), "memory\n").unwrap();
        // The fake parent: a real kernel creates its control files on mkdir.
        fs::create_dir(root.join("locker-t")).unwrap();
        fs::write(root.join("locker-t/cgroup.subtree_control"), "").unwrap();
        let limits = Limits {
            memory: Some(1 << 30),
            pids: Some(50),
            cpus: Some(1.5),
        };
        let cg = create(
            &Hierarchy::V2 {
                root: root.to_path_buf(),
            },
            "locker-t",
            "c1",
            &limits,
        )
        .unwrap();
        assert_eq!(cg.clone_into.as_ref(), Some(&root.join("locker-t/c1/ctr")));
        assert!(cg.v1_tasks().is_empty(), "nothing to join on pure v2");
        assert_eq!(cg.dirs, [root.join("locker-t/c1/ctr")]);
        // Only what is missing is added (the fake file is overwritten, the kernel appends).
        assert_eq!(read(&root.join("cgroup.subtree_control")), "+pids +cpu");
        assert_eq!(
            read(&root.join("locker-t/cgroup.subtree_control")),
            "+pids +memory +cpu"
        );
        let d = root.join("locker-t/c1");
        assert_eq!(read(&d.join("memory.max")), (1u64 << 30).to_string());
        assert_eq!(read(&d.join("pids.max")), "50");
        assert_eq!(read(&d.join("cpu.max")), "150000 100000");
        assert_eq!(fs::read_dir(d.join("ctr")).unwrap().count(), 0);
    }

    #[test]
    fn v2_refuses_controller_the_root_lacks() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        fs::write(t.path().join("cgroup.subtree_control"), "").unwrap();
        let e = create(
            &Hierarchy::V2 {
                root: t.path().to_path_buf(),
            },
            "locker",
            "x",
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(e, CgroupError::Missing("pids")));
        assert_eq!(
            read(&t.path().join("cgroup.subtree_control")),
            "",
            "root untouched"
        );
    }

    #[test]
    fn bad_parent_and_removal() {
        let t = fake_v1();
        let h = Hierarchy::V1 {
            base: t.path().to_path_buf(),
        };
        assert!(create(&h, "../x", "id", &Limits::NONE).is_err());
        assert!(create(&h, "/abs", "id", &Limits::NONE).is_err());
        let cg = create(&h, "a/b", "id", &Limits::NONE).unwrap();
        assert!(cg.dirs.contains(&t.path().join("pids/a/b/id")));
        assert!(
            cg.limit_dirs.is_empty(),
            "no limit, no level above the payload"
        );
        let cg = create(&h, "p", "id", &Limits::NONE).unwrap();
        cg.remove(Duration::from_millis(10)).unwrap();
        assert!(!t.path().join("pids/p/id").exists());
        cg.remove(Duration::from_millis(10)).unwrap();
    }

    #[test]
    fn delegation_is_the_topmost_cgroup_the_user_owns() {
        use std::os::unix::fs::chown;
        let t = tempfile::tempdir().unwrap();
        let m = t.path();
        let user = "user.slice/user-1001.slice/user@1001.service";
        let scope = format!("{user}/app.slice/term.scope");
        for d in [
            "user.slice",
            "user.slice/user-1001.slice",
            user,
            &format!("{user}/app.slice"),
            &scope,
        ] {
            fs::create_dir_all(m.join(d)).unwrap();
            for f in [
                "cgroup.procs",
                "cgroup.subtree_control",
                "cgroup.controllers",
            ] {
                fs::write(m.join(d).join(f), "").unwrap();
            }
        }
        fs::write(m.join(user).join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        // systemd's delegation: the service's directory and its procs/subtree_control
        // files belong to the user, and everything below.
        for d in [user.to_string(), format!("{user}/app.slice"), scope.clone()] {
            for f in ["", "cgroup.procs", "cgroup.subtree_control"] {
                chown(m.join(&d).join(f), Some(4242), Some(4242)).unwrap();
            }
        }
        let own = format!("/{scope}");
        assert_eq!(delegation_root(m, &own, 4242), Some(m.join(user)));
        assert_eq!(delegation_root(m, &own, 4243), None, "another user's");
        // A session scope (ssh login) belongs to root: nothing is delegated.
        assert_eq!(
            delegation_root(m, "/user.slice/user-1001.slice", 4242),
            None
        );
        assert_eq!(delegation_root(m, "/../etc", 4242), None);
        // A cgroup.procs left to root stops the walk (the move would be refused).
        chown(m.join(user).join("cgroup.procs"), Some(0), Some(0)).unwrap();
        assert_eq!(
            delegation_root(m, &own, 4242),
            Some(m.join(user).join("app.slice"))
        );
        chown(m.join(user).join("cgroup.procs"), Some(4242), Some(4242)).unwrap();
        // The container's cgroups go below it, with the limits, as on a root v2 host
        // (the fake PARENT gets the control file a kernel would make on mkdir).
        fs::create_dir(m.join(user).join("locker")).unwrap();
        fs::write(m.join(user).join("locker/cgroup.subtree_control"), "").unwrap();
        let limits = Limits {
            memory: Some(1 << 20),
            pids: Some(10),
            cpus: None,
        };
        let cg = create(
            &Hierarchy::V2 { root: m.join(user) },
            "locker",
            "c2",
            &limits,
        )
        .unwrap();
        assert_eq!(cg.clone_into, Some(m.join(user).join("locker/c2/ctr")));
        assert_eq!(read(&m.join(user).join("locker/c2/memory.max")), "1048576");
        assert_eq!(read(&m.join(user).join("locker/c2/pids.max")), "10");
        assert!(
            !m.join("user.slice/locker").exists(),
            "nothing outside the delegation"
        );
    }
}
