//! The typed run spec: what a container is to be, built by the command layer (from
//! `locker run`'s flags), by `locker build` (its configure container) and, later, from
//! an OCI bundle's config.json. Its sections and names follow the OCI runtime spec
//! (`process`, `root`, `mounts`, `linux`: namespaces, resources, security), so a
//! config.json maps onto it field by field without a second engine.
//!
//! Invariants: container paths are relative and normalised (no leading `/`, no `..`:
//! `container_path`); host paths are absolute; environment entries are final K=V pairs
//! (a bare `-e K` was looked up on the host by the command layer). What depends on the
//! image (HOME, the user's ids, the default command) is resolved by `plan`.

use std::path::PathBuf;

use super::cgroups::Limits;
use super::RunError;
use crate::store::Resolved;

/// A container to run.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The image whose tree is the lower layer (or, for `Root::Direct`, the root).
    pub image: Resolved,
    /// A named container keeps its upper layer on disk under this name.
    pub name: Option<String>,
    /// Default: the image's name.
    pub hostname: Option<String>,
    pub process: Process,
    pub root: Root,
    /// In order, after /proc, /sys, /dev and the /etc files.
    pub mounts: Vec<Mount>,
    pub net: Net,
    pub resources: Limits,
    /// Parent of the container's cgroup in every hierarchy (relative).
    pub cgroup_parent: String,
    pub security: Security,
}

/// The command and how it runs (OCI `process`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Process {
    /// Empty: the image's default (/bin/bash, else /bin/sh).
    pub args: Vec<String>,
    /// K=V pairs over the defaults (PATH, HOME, HOSTNAME, container, TERM); later wins.
    pub env: Vec<(String, String)>,
    /// Absolute, normalised; default `/`.
    pub cwd: Option<String>,
    /// USER[:GROUP] by name or number, resolved against the image's /etc files.
    pub user: Option<String>,
    /// A pty as the command's controlling terminal and stdio.
    pub terminal: bool,
    /// Keep stdin open (else /dev/null).
    pub stdin: bool,
}

/// The root filesystem (OCI `root`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Root {
    /// The image read-only under a writable overlay upper (tmpfs, or on disk when named).
    Overlay,
    /// The image itself, read-only, no upper layer.
    ReadOnly,
    /// The image's tree itself, read-write: every change lands in it (`locker build`
    /// configures a tree that becomes an image). No /etc files are bound in, so none
    /// are left behind in the tree.
    Direct,
}

/// One mount requested by the user (OCI `mounts`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mount {
    /// Relative, normalised container path.
    pub destination: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MountKind {
    /// A host path bound in (recursively; nodev, nosuid; read-only down every submount
    /// when `readonly`).
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs.
    Tmpfs,
}

/// The network namespace (OCI `linux.namespaces` for `network`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Net {
    /// The host's network namespace.
    Host,
    /// A new one with only `lo`, up.
    None,
}

/// What the container may do (OCI `process.capabilities`, `noNewPrivileges`,
/// `linux.maskedPaths`, `linux.readonlyPaths`, `linux.seccomp`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Security {
    /// Bounding = effective = permitted; inheritable and ambient empty. Bit N is
    /// capability N.
    pub capabilities: u64,
    pub no_new_privileges: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// fsync and friends succeed without syncing (the build container: its tree is
    /// renamed into the store whole or thrown away).
    pub suppress_sync: bool,
}

/// Docker's default capability set, as the 64-bit mask CapEff shows (0xa80425fb).
pub(crate) const DEFAULT_CAPS: u64 = (1 << 0) // CHOWN
    | (1 << 1) // DAC_OVERRIDE
    | (1 << 3) // FOWNER
    | (1 << 4) // FSETID
    | (1 << 5) // KILL
    | (1 << 6) // SETGID
    | (1 << 7) // SETUID
    | (1 << 8) // SETPCAP
    | (1 << 10) // NET_BIND_SERVICE
    | (1 << 13) // NET_RAW
    | (1 << 18) // SYS_CHROOT
    | (1 << 27) // MKNOD
    | (1 << 29) // AUDIT_WRITE
    | (1 << 31); // SETFCAP

/// runc's masked paths: files get /dev/null bound over them, directories an empty
/// read-only tmpfs.
pub(crate) const MASKED: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// runc's read-only paths.
pub(crate) const READ_ONLY: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

impl Default for Security {
    /// locker's defaults for a container.
    fn default() -> Self {
        Security {
            capabilities: DEFAULT_CAPS,
            no_new_privileges: true,
            masked_paths: MASKED.iter().map(|s| s.to_string()).collect(),
            readonly_paths: READ_ONLY.iter().map(|s| s.to_string()).collect(),
            suppress_sync: false,
        }
    }
}

impl Spec {
    /// A container of `image` with locker's defaults: overlay root, no mounts, host
    /// network, no limits, default security; the caller fills in the rest.
    pub(crate) fn new(image: Resolved) -> Spec {
        Spec {
            image,
            name: None,
            hostname: None,
            process: Process::default(),
            root: Root::Overlay,
            mounts: Vec::new(),
            net: Net::Host,
            resources: Limits::default(),
            cgroup_parent: "locker".into(),
            security: Security::default(),
        }
    }
}

/// A container path as a relative, normalised path ("/a/./b/" -> "a/b"); `..` refused.
pub(crate) fn container_path(p: &str) -> Result<String, RunError> {
    if !p.starts_with('/') {
        return Err(RunError::Usage(format!(
            "container path {p:?} must be absolute"
        )));
    }
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(RunError::Usage(format!(
                    "container path {p:?} must not contain `..`"
                )))
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// "512m" -> bytes; k, m, g (and t) suffixes, case-insensitive, optional trailing "b".
pub(crate) fn parse_size(s: &str) -> Result<u64, RunError> {
    let bad = || {
        RunError::Usage(format!(
            "bad size {s:?}: use a number with an optional k, m or g suffix"
        ))
    };
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some(_) => (t, 1),
        None => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).filter(|&v| v > 0).ok_or_else(bad)
}

/// Parses `-v HOST:CTR[:ro|rw]`.
pub(crate) fn parse_volume(spec: &str) -> Result<Mount, RunError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, readonly) = match parts.as_slice() {
        [h, t] => (*h, *t, false),
        [h, t, "ro"] => (*h, *t, true),
        [h, t, "rw"] => (*h, *t, false),
        _ => {
            return Err(RunError::Usage(format!(
                "bad volume {spec:?}: use HOST:CTR[:ro]"
            )))
        }
    };
    if !host.starts_with('/') {
        return Err(RunError::Usage(format!(
            "bad volume {spec:?}: the host path must be absolute"
        )));
    }
    Ok(Mount {
        destination: container_path(target)?,
        kind: MountKind::Bind {
            source: PathBuf::from(host),
            readonly,
        },
    })
}

/// `-e` items and --env-file contents as K=V pairs, in order (files first, then the
/// items; the plan lets a later pair win). `K` alone takes the host's value, or is
/// dropped when the host has none.
pub(crate) fn parse_env(
    files: &[String],
    items: &[String],
    host_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, RunError> {
    let mut env = Vec::new();
    let lines = files
        .iter()
        .flat_map(|f| f.lines())
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    for item in lines.chain(items.iter().map(String::as_str)) {
        match item.split_once('=') {
            Some(("", _)) => {
                return Err(RunError::Usage(format!(
                    "bad environment variable {item:?}"
                )))
            }
            Some((k, v)) => env.push((k.to_string(), v.to_string())),
            None => {
                if let Some(v) = host_env(item) {
                    env.push((item.to_string(), v));
                }
            }
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32m").unwrap(), 32 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2gb").unwrap(), 2 << 30);
        for bad in ["", "m", "x1", "-1m", "0", "1.5g"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_and_volumes() {
        assert_eq!(container_path("/a/./b//c/").unwrap(), "a/b/c");
        assert!(container_path("/a/../b").is_err());
        assert!(container_path("rel").is_err());
        assert!(parse_volume("/h:/c:rw").is_ok());
        assert!(parse_volume("/h").is_err());
        assert!(parse_volume("h:/c").is_err());
        assert!(parse_volume("/h:/c:xx").is_err());
        assert_eq!(
            parse_volume("/h:/data:ro").unwrap(),
            Mount {
                destination: "data".into(),
                kind: MountKind::Bind {
                    source: "/h".into(),
                    readonly: true
                }
            }
        );
    }

    #[test]
    fn env_items() {
        let host = |k: &str| (k == "FROMHOST").then(|| "h".to_string());
        let env = parse_env(
            &["# comment\nA=1\nB=file\n\n".into()],
            &["A=2".into(), "FROMHOST".into(), "MISSING".into()],
            &host,
        )
        .unwrap();
        let pairs: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(pairs, ["A=1", "B=file", "A=2", "FROMHOST=h"]);
        assert!(parse_env(&[], &["=x".into()], &host).is_err());
    }

    #[test]
    fn caps_mask_matches_docker() {
        assert_eq!(DEFAULT_CAPS, 0xa80425fb);
    }
}
