//! Container cgroups, v2 or v1, chosen at run time.
//!
//! v2 is used when /sys/fs/cgroup is itself cgroup2 (statfs magic), or when a hybrid
//! layout's v2 mount offers every controller the limits need; otherwise v1, one
//! directory per controller (plus `devices`, when mounted, for the device allow-list).
//! The container's cgroup is PARENT/ID under each hierarchy
//! root. Invariants: locker writes only into directories it created (PARENT, made if
//! missing, and PARENT/ID), plus the v2 root's `cgroup.subtree_control` for controllers
//! the root offers; PARENT/ID is removed once empty (`remove`, retried briefly).

use crate::fs::path_error::{io_err, PathError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("cgroup controller {0} is not available (needed for the requested limit)")]
    Missing(&'static str),
}

/// The limits `run` was asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

impl Limits {
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

/// Which hierarchy layout to use, rooted at `base` (normally /sys/fs/cgroup).
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

/// A container's cgroup: one directory (v2) or one per controller (v1).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cgroup {
    pub v2: bool,
    pub dirs: Vec<PathBuf>,
}

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
    if parent.is_empty()
        || parent.starts_with('/')
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

/// Creates PARENT/ID in `h` and writes the limits. On error, what was created is removed.
pub(crate) fn create(
    h: &Hierarchy,
    parent: &str,
    id: &str,
    limits: &Limits,
) -> Result<Cgroup, CgroupError> {
    check_parent(parent)?;
    let mut v1_ctrls = limits.controllers();
    let cg = match h {
        Hierarchy::V2 { root } => Cgroup {
            v2: true,
            dirs: vec![root.join(parent).join(id)],
        },
        Hierarchy::V1 { base } => {
            for c in &v1_ctrls {
                if !base.join(c).join("cgroup.procs").exists() {
                    return Err(CgroupError::Missing(c));
                }
            }
            // The device allow-list, whenever the host mounts the controller.
            if base.join("devices/cgroup.procs").exists() {
                v1_ctrls.push("devices");
            }
            let dirs = v1_ctrls
                .iter()
                .map(|c| base.join(c).join(parent).join(id))
                .collect();
            Cgroup { v2: false, dirs }
        }
    };
    let result = match h {
        Hierarchy::V2 { root } => setup_v2(root, parent, &cg.dirs[0], limits),
        Hierarchy::V1 { .. } => setup_v1(&v1_ctrls, &cg.dirs, limits),
    };
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
    Ok(())
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

/// Docker's default device rules, without its blanket `m`: /dev/null, zero, full,
/// random, urandom, tty, console, ptmx, and the pty slaves. Everything else (mknod,
/// open) is refused by the v1 devices controller. cgroup v2 has no such file: see
/// mounts.rs for why nodev mounts are the guard there.
const DEVICE_ALLOW: &[&str] = &[
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

fn setup_v1(ctrls: &[&str], dirs: &[PathBuf], limits: &Limits) -> Result<(), CgroupError> {
    for (ctrl, dir) in ctrls.iter().zip(dirs) {
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(io_err("create cgroup", parent))?;
        }
        fs::create_dir(dir).map_err(io_err("create cgroup", dir))?;
        match *ctrl {
            "memory" => {
                if let Some(m) = limits.memory {
                    write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                    // memsw >= limit must hold; equal means no swap at all.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &m.to_string())?;
                    }
                }
            }
            "pids" => {
                if let Some(p) = limits.pids {
                    write(&dir.join("pids.max"), &p.to_string())?;
                }
            }
            "cpu" => {
                if let Some(c) = limits.cpus {
                    write(&dir.join("cpu.cfs_period_us"), "100000")?;
                    write(&dir.join("cpu.cfs_quota_us"), &cpu_quota(c).to_string())?;
                }
            }
            "devices" => {
                write(&dir.join("devices.deny"), "a")?;
                for rule in DEVICE_ALLOW {
                    write(&dir.join("devices.allow"), rule)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Cgroup {
    /// Moves `pid` into every directory (v1, or v2 without CLONE_INTO_CGROUP).
    pub(crate) fn join(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Removes the directories; a cgroup whose last task just died can stay busy for a
    /// moment, so EBUSY is retried until `patience` runs out.
    pub(crate) fn remove(&self, patience: Duration) -> Result<(), CgroupError> {
        remove_dirs(&self.dirs, patience)
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
    fn v1_writes_limits_per_controller() {
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
        assert!(!cg.v2);
        assert_eq!(cg.dirs.len(), 3);
        let m = t.path().join("memory/locker-t/abc");
        assert_eq!(
            read(&m.join("memory.limit_in_bytes")),
            (32u64 << 20).to_string()
        );
        assert!(
            !m.join("memory.memsw.limit_in_bytes").exists(),
            "memsw only when the kernel has it"
        );
        assert_eq!(read(&t.path().join("pids/locker-t/abc/pids.max")), "20");
        assert_eq!(
            read(&t.path().join("cpu/locker-t/abc/cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(
            read(&t.path().join("cpu/locker-t/abc/cpu.cfs_period_us")),
            "100000"
        );
        cg.join(1234).unwrap();
        assert_eq!(
            read(&t.path().join("pids/locker-t/abc/cgroup.procs")),
            "1234"
        );
    }

    #[test]
    fn v1_devices_deny_all_then_allow_list() {
        let t = fake_v1();
        fs::create_dir_all(t.path().join("devices")).unwrap();
        fs::write(t.path().join("devices/cgroup.procs"), "").unwrap();
        let h = Hierarchy::V1 {
            base: t.path().to_path_buf(),
        };
        let cg = create(&h, "p", "id", &Limits::default()).unwrap();
        let d = t.path().join("devices/p/id");
        assert_eq!(cg.dirs, vec![t.path().join("pids/p/id"), d.clone()]);
        assert_eq!(read(&d.join("devices.deny")), "a");
        // The fake file keeps the last write; the kernel adds each rule.
        assert_eq!(read(&d.join("devices.allow")), "c 136:* rwm");
        cg.join(42).unwrap();
        assert_eq!(read(&d.join("cgroup.procs")), "42");
    }

    #[test]
    fn v1_only_needed_controllers_and_missing_one_fails() {
        let t = fake_v1();
        let h = Hierarchy::V1 {
            base: t.path().to_path_buf(),
        };
        let cg = create(&h, "p", "id1", &Limits::default()).unwrap();
        assert_eq!(cg.dirs, vec![t.path().join("pids/p/id1")]);
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
    fn v2_enables_controllers_and_writes_limits() {
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
        assert!(cg.v2);
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
        assert!(create(&h, "../x", "id", &Limits::default()).is_err());
        assert!(create(&h, "/abs", "id", &Limits::default()).is_err());
        let cg = create(&h, "a/b", "id", &Limits::default()).unwrap();
        assert_eq!(cg.dirs, vec![t.path().join("pids/a/b/id")]);
        let cg = create(&h, "p", "id", &Limits::default()).unwrap();
        fs::remove_file(t.path().join("pids/p/id/cgroup.procs")).ok();
        cg.remove(Duration::from_millis(10)).unwrap();
        assert!(!t.path().join("pids/p/id").exists());
        cg.remove(Duration::from_millis(10)).unwrap();
    }
}
