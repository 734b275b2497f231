//! An OCI bundle's config.json -> `run::Spec` with a `Contract`: the same engine as
//! `locker run`, told field by field what the config says. What locker cannot honour
//! (an AppArmor profile, an SELinux label, Intel RDT, a user namespace, a cgroup
//! resource the engine does not set, ...) is refused with one error naming the field:
//! a config is a contract, and a field silently dropped would be a broken promise.
//!
//! Invariants: container paths go through `run::spec::container_path` (relative,
//! normalised, no `..`); relative bind sources and the root path are resolved against
//! the bundle; the hooks that run on the host side are returned beside the spec for
//! the lifecycle (mod.rs) to run.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Hook, LinuxNamespaceType, LinuxSeccomp, Mount as OciMount, Spec as OciSpec,
};

use super::OciError;
use crate::run::cgroups::Limits;
use crate::run::spec::{
    container_path, CapSets, Contract, Device, Mount, MountKind, Net, Rlimit, Root, Security, Spec,
    CAP_NAMES,
};
use crate::run::userns::{IdMap, IdRange};
use crate::store::Resolved;

/// The hooks (OCI `hooks`), in order per stage: on the host, but createContainer
/// and startContainer, which run in the container.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct Hooks {
    pub prestart: Vec<HookCmd>,
    pub create_runtime: Vec<HookCmd>,
    #[serde(default)]
    pub create_container: Vec<HookCmd>,
    #[serde(default)]
    pub start_container: Vec<HookCmd>,
    pub poststart: Vec<HookCmd>,
    pub poststop: Vec<HookCmd>,
}

/// One hook: path, argv (argv[0] included), environment, timeout in seconds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct HookCmd {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

/// A bundle read and translated.
pub(crate) struct Bundle {
    pub spec: Spec,
    pub hooks: Hooks,
    /// `linux.resources`, for resources.rs.
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    /// `linux.devices`: each is allowed in the device cgroup too (as runc does).
    pub devices: Vec<Device>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

fn unsupported(field: &str, why: &str) -> OciError {
    OciError::Unsupported {
        field: field.to_string(),
        why: why.to_string(),
    }
}

/// Reads BUNDLE/config.json and translates it for the container `id`.
pub(crate) fn load(bundle: &Path, id: &str) -> Result<Bundle, OciError> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| OciError::Config {
        path: path.clone(),
        why: source.to_string(),
    })?;
    let oci: OciSpec = serde_json::from_slice(&text).map_err(|e| OciError::Config {
        path: path.clone(),
        why: e.to_string(),
    })?;
    translate(&oci, bundle, id)
}

/// A capability set's names as bits (names as the kernel's, with or without CAP_).
fn cap_bits(set: Option<&Capabilities>) -> Result<u64, OciError> {
    let mut bits = 0u64;
    for c in set.into_iter().flatten() {
        let name = c.to_string().to_ascii_uppercase();
        let bare = name.strip_prefix("CAP_").unwrap_or(&name);
        let i = CAP_NAMES
            .iter()
            .position(|n| *n == bare)
            .ok_or_else(|| unsupported("process.capabilities", &format!("unknown {name}")))?;
        bits |= 1 << i;
    }
    Ok(bits)
}

/// `process.capabilities` as the five sets; None when the process names none.
pub(crate) fn cap_sets(process: &oci_spec::runtime::Process) -> Result<Option<CapSets>, OciError> {
    let Some(c) = process.capabilities() else {
        return Ok(None);
    };
    Ok(Some(CapSets {
        bounding: cap_bits(c.bounding().as_ref())?,
        effective: cap_bits(c.effective().as_ref())?,
        permitted: cap_bits(c.permitted().as_ref())?,
        inheritable: cap_bits(c.inheritable().as_ref())?,
        ambient: cap_bits(c.ambient().as_ref())?,
    }))
}

fn hook_list(hooks: Option<&Vec<Hook>>) -> Vec<HookCmd> {
    hooks
        .into_iter()
        .flatten()
        .map(|h| HookCmd {
            path: h.path().clone(),
            args: h
                .args()
                .clone()
                .unwrap_or_else(|| vec![h.path().to_string_lossy().into_owned()]),
            env: h.env().clone().unwrap_or_default(),
            timeout: h.timeout(),
        })
        .collect()
}

/// The RLIMIT_* number of an OCI rlimit type ("RLIMIT_NOFILE").
fn rlimit_number(name: &str) -> Option<u32> {
    #[allow(clippy::unnecessary_cast)] // the RLIMIT_* type differs between libcs
    let table: &[(&str, u32)] = &[
        ("RLIMIT_AS", libc::RLIMIT_AS as u32),
        ("RLIMIT_CORE", libc::RLIMIT_CORE as u32),
        ("RLIMIT_CPU", libc::RLIMIT_CPU as u32),
        ("RLIMIT_DATA", libc::RLIMIT_DATA as u32),
        ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE as u32),
        ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS as u32),
        ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK as u32),
        ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE as u32),
        ("RLIMIT_NICE", libc::RLIMIT_NICE as u32),
        ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as u32),
        ("RLIMIT_NPROC", libc::RLIMIT_NPROC as u32),
        ("RLIMIT_RSS", libc::RLIMIT_RSS as u32),
        ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO as u32),
        ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME as u32),
        ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING as u32),
        ("RLIMIT_STACK", libc::RLIMIT_STACK as u32),
    ];
    table.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// mount(8)-style options -> (MS_* flags, propagation flags, data), as runc reads
/// them; `bind`/`rbind` are reported through the flags (MS_BIND, MS_REC).
pub(crate) fn mount_options(
    opts: &[String],
    field: &str,
) -> Result<(u64, u64, Vec<String>), OciError> {
    let (mut flags, mut prop, mut data) = (0u64, 0u64, Vec::new());
    for o in opts {
        let (set, clear): (u64, u64) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                prop = propagation(o).expect("listed");
                continue;
            }
            "tmpcopyup" | "idmap" | "ridmap" | "copy-symlink" => {
                return Err(unsupported(field, &format!("mount option {o:?}")))
            }
            _ => {
                data.push(o.clone());
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    Ok((flags, prop, data))
}

/// A propagation name -> MS_* flags.
fn propagation(name: &str) -> Option<u64> {
    let rec = if name.starts_with('r') {
        libc::MS_REC
    } else {
        0
    };
    Some(
        rec | match name.trim_start_matches('r') {
            "private" => libc::MS_PRIVATE,
            "shared" => libc::MS_SHARED,
            "slave" => libc::MS_SLAVE,
            "unbindable" => libc::MS_UNBINDABLE,
            _ => return None,
        },
    )
}

fn absolute_in(bundle: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        bundle.join(p)
    }
}

fn dest(p: &Path, field: &str) -> Result<String, OciError> {
    let s = p.to_string_lossy();
    let abs = if s.starts_with('/') {
        s.into_owned()
    } else {
        format!("/{s}")
    };
    container_path(&abs).map_err(|e| unsupported(field, &e.to_string()))
}

/// The host's cgroup hierarchies under /sys/fs/cgroup, from mountinfo: (directory
/// name, fstype, the options that select the hierarchy: `cpu,cpuacct`, `name=systemd`).
fn host_hierarchies() -> Vec<(String, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Only what is visible: a later mount on the same point covers an earlier one (a
    // tmpfs hiding a hybrid host's near-empty cgroup2, as crun needs).
    let mut v: Vec<(String, String, String)> = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mp = pre.split(' ').nth(4).unwrap_or("");
        let mut post = post.split(' ');
        let (fstype, _src, opts) = (
            post.next().unwrap_or(""),
            post.next(),
            post.next().unwrap_or(""),
        );
        let Some(name) = mp.strip_prefix("/sys/fs/cgroup/") else {
            continue;
        };
        if name.contains('/') {
            continue;
        }
        v.retain(|(n, _, _)| n != name);
        if !(fstype == "cgroup" || fstype == "cgroup2") {
            continue;
        }
        let sel: Vec<&str> = opts
            .split(',')
            .filter(|o| {
                !matches!(
                    *o,
                    "rw" | "ro" | "xattr" | "noprefix" | "nsdelegate" | "memory_recursiveprot"
                )
            })
            .collect();
        v.push((name.to_string(), fstype.to_string(), sel.join(",")));
    }
    v
}

/// A `cgroup` mount on a v1 (or hybrid) host, as runc makes it: a tmpfs at the
/// destination, then each hierarchy the host has mounted under it (the cgroup
/// namespace's view), with the mount's flags (ro, nosuid, ...).
fn cgroup_v1_mounts(destination: &str, flags: u64) -> Vec<Mount> {
    let mut v = vec![Mount {
        destination: destination.to_string(),
        kind: MountKind::Fs {
            source: "tmpfs".into(),
            fstype: "tmpfs".into(),
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data: "mode=755".into(),
            propagation: 0,
        },
    }];
    for (name, fstype, sel) in host_hierarchies() {
        v.push(Mount {
            destination: format!("{destination}/{name}"),
            kind: MountKind::Fs {
                source: "cgroup".into(),
                fstype,
                flags: flags & !(libc::MS_BIND | libc::MS_REC),
                data: sel,
                propagation: 0,
            },
        });
    }
    v
}

/// One `mounts` entry (a v1 host's cgroup mount is several).
fn mount(m: &OciMount, bundle: &Path, i: usize) -> Result<Vec<Mount>, OciError> {
    let field = format!("mounts[{i}]");
    let destination = dest(m.destination(), &field)?;
    let opts = m.options().clone().unwrap_or_default();
    let (flags, propagation, data) = mount_options(&opts, &field)?;
    let typ = m.typ().clone().unwrap_or_default();
    let source = m.source().clone().unwrap_or_default();
    let kind = if typ == "bind" || flags & libc::MS_BIND != 0 {
        MountKind::OciBind {
            source: absolute_in(bundle, &source),
            recursive: flags & libc::MS_REC != 0,
            flags: flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT),
            propagation,
        }
    } else {
        if typ.is_empty() {
            return Err(unsupported(
                &field,
                "a mount that is not a bind needs a type",
            ));
        }
        if typ == "cgroup" && cgroup2_host() {
            // A v2 host has one hierarchy: the cgroup namespace's view of it.
            return Ok(vec![Mount {
                destination,
                kind: MountKind::Fs {
                    source: "cgroup2".into(),
                    fstype: "cgroup2".into(),
                    flags,
                    data: String::new(),
                    propagation,
                },
            }]);
        }
        if typ == "cgroup" {
            return Ok(cgroup_v1_mounts(&destination, flags));
        }
        MountKind::Fs {
            source: source.to_string_lossy().into_owned(),
            fstype: typ,
            flags,
            data: data.join(","),
            propagation,
        }
    };
    Ok(vec![Mount { destination, kind }])
}

fn cgroup2_host() -> bool {
    matches!(
        crate::run::cgroups::detect(&Limits {
            memory: None,
            pids: None,
            cpus: None
        }),
        crate::run::cgroups::Hierarchy::V2 { ref root } if root == Path::new("/sys/fs/cgroup")
    )
}

/// The seccomp section through locker's compiler (its JSON is Docker's profile format
/// less Docker's extensions, which the parser reads as they are).
fn seccomp(s: &LinuxSeccomp) -> Result<crate::run::seccomp::Profile, OciError> {
    let json = serde_json::to_vec(s).map_err(|e| unsupported("linux.seccomp", &e.to_string()))?;
    crate::run::seccomp::parse_profile(&json)
        .map_err(|e| unsupported("linux.seccomp", &e.to_string()))
}

/// The translation proper.
pub(crate) fn translate(oci: &OciSpec, bundle: &Path, id: &str) -> Result<Bundle, OciError> {
    let root = oci
        .root()
        .as_ref()
        .ok_or_else(|| unsupported("root", "the config has no root"))?;
    let rootfs = absolute_in(bundle, root.path());
    let process = oci
        .process()
        .as_ref()
        .ok_or_else(|| unsupported("process", "the config has no process"))?;
    let linux = oci
        .linux()
        .as_ref()
        .ok_or_else(|| unsupported("linux", "the config has no linux section"))?;

    let v = oci.version();
    let semver = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = semver.split('.').collect();
    if parts.len() != 3 || parts[0] != "1" || parts.iter().any(|p| p.parse::<u32>().is_err()) {
        return Err(unsupported(
            "ociVersion",
            &format!("{v:?} is not a 1.x runtime spec version"),
        ));
    }
    // Refused rather than ignored.
    if process
        .apparmor_profile()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(unsupported(
            "process.apparmorProfile",
            "AppArmor is not available to locker",
        ));
    }
    if process
        .selinux_label()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(unsupported(
            "process.selinuxLabel",
            "SELinux is not available to locker",
        ));
    }
    if linux
        .mount_label()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(unsupported(
            "linux.mountLabel",
            "SELinux is not available to locker",
        ));
    }
    if linux.intel_rdt().is_some() {
        return Err(unsupported("linux.intelRdt", "Intel RDT is not supported"));
    }
    if linux.personality().is_some() {
        return Err(unsupported("linux.personality", "not supported"));
    }
    if linux.time_offsets().is_some() {
        return Err(unsupported("linux.timeOffsets", "not supported"));
    }
    if process.io_priority().is_some() {
        return Err(unsupported("process.ioPriority", "not supported"));
    }
    if process.scheduler().is_some() {
        return Err(unsupported("process.scheduler", "not supported"));
    }
    if process.exec_cpu_affinity().is_some() {
        return Err(unsupported("process.execCPUAffinity", "not supported"));
    }
    if oci.domainname().as_deref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("domainname", "not supported"));
    }
    let hooks = oci.hooks().clone().unwrap_or_default();

    // Namespaces.
    let mut new_ns = 0u64;
    let mut new_userns = false;
    let mut join = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let flag = match ns.typ() {
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            LinuxNamespaceType::User => {
                if ns.path().is_some() {
                    return Err(unsupported(
                        "linux.namespaces",
                        "joining a user namespace by path is not supported (give uidMappings and gidMappings)",
                    ));
                }
                new_userns = true;
                continue;
            }
            LinuxNamespaceType::Time => {
                return Err(unsupported(
                    "linux.namespaces",
                    "time namespaces are not supported",
                ))
            }
        } as u64;
        if (new_ns | join.iter().fold(0, |a, (f, _)| a | f)) & flag != 0 {
            return Err(unsupported(
                "linux.namespaces",
                &format!("namespace {} given twice", ns.typ()),
            ));
        }
        match ns.path() {
            Some(p) => join.push((flag, p.clone())),
            None => new_ns |= flag,
        }
    }
    if (new_ns | join.iter().fold(0, |a, (f, _)| a | f)) & libc::CLONE_NEWNS as u64 == 0 {
        return Err(unsupported(
            "linux.namespaces",
            "a mount namespace (new or joined) is required: locker never builds a root in its caller's",
        ));
    }
    let userns = id_map(linux, new_userns)?;

    // Process.
    let caps = cap_sets(process)?.unwrap_or_default();
    let rlimits = rlimits(process)?;
    let env: Vec<(String, String)> = process
        .env()
        .iter()
        .flatten()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    let cwd = process.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        return Err(unsupported("process.cwd", "must be an absolute path"));
    }
    let oom_score_adj = match process.oom_score_adj() {
        Some(v) => v,
        None => std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
    };
    if process.console_size().is_some() && !process.terminal().unwrap_or(false) {
        return Err(unsupported("process.consoleSize", "only with a terminal"));
    }

    // Mounts.
    let mounts = oci
        .mounts()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| mount(m, bundle, i))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();

    // Devices.
    let mut devices = Vec::new();
    for d in linux.devices().iter().flatten() {
        let kind = match d.typ().as_str() {
            "c" | "u" => libc::S_IFCHR,
            "b" => libc::S_IFBLK,
            "p" => libc::S_IFIFO,
            t => return Err(unsupported("linux.devices", &format!("device type {t:?}"))),
        };
        devices.push(Device {
            path: dest(d.path(), "linux.devices")?,
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }

    // Resources.
    let mut limits = Limits {
        memory: None,
        pids: None,
        cpus: None,
    };
    // memory.limit and pids.limit are the engine's Limits (they choose the hierarchy
    // and are written before anything else); the rest is resources.rs's, between
    // the clone and the release.
    if let Some(r) = linux.resources() {
        if let Some(m) = r.memory() {
            limits.memory = m.limit().filter(|l| *l > 0).map(|l| l as u64);
        }
        if let Some(p) = r.pids() {
            limits.pids = (p.limit() > 0).then_some(p.limit() as u64);
        }
        if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
            return Err(unsupported("linux.resources.rdma", "not supported"));
        }
    }
    let (cgroup_parent, cgroup_id) = match linux.cgroups_path() {
        Some(p) => {
            let s = p.to_string_lossy();
            let s = s.trim_matches('/');
            if s.contains(':') {
                return Err(unsupported(
                    "linux.cgroupsPath",
                    "a systemd slice:prefix:name path needs --systemd-cgroup, which locker does not support",
                ));
            }
            // Absolute: from the hierarchy's root; relative: under locker's own
            // parent (runc takes both from the root of its own cgroup).
            let abs = p.is_absolute();
            let full = if abs {
                s.to_string()
            } else {
                format!("locker-runtime/{s}")
            };
            if full.split('/').any(|c| c == ".." || c == ".") {
                return Err(unsupported(
                    "linux.cgroupsPath",
                    "must not contain `.` or `..`",
                ));
            }
            match full.rsplit_once('/') {
                Some((parent, leaf)) => (parent.to_string(), leaf.to_string()),
                None if !full.is_empty() => (String::new(), full),
                None => ("locker-runtime".to_string(), id.to_string()),
            }
        }
        None => ("locker-runtime".to_string(), id.to_string()),
    };

    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => 0,
        Some(p) => {
            propagation(p)
                .ok_or_else(|| unsupported("linux.rootfsPropagation", &format!("unknown {p:?}")))?
                & !libc::MS_REC
        }
    };
    let sysctl = linux
        .sysctl()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let security = Security {
        capabilities: caps.bounding,
        seccomp: linux.seccomp().as_ref().map(seccomp).transpose()?,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        masked_paths: linux
            .masked_paths()
            .iter()
            .flatten()
            .map(|p| dest(Path::new(p), "linux.maskedPaths"))
            .collect::<Result<_, _>>()?,
        readonly_paths: linux
            .readonly_paths()
            .iter()
            .flatten()
            .map(|p| dest(Path::new(p), "linux.readonlyPaths"))
            .collect::<Result<_, _>>()?,
        suppress_sync: false,
    };
    let image = Resolved::tree(id.to_string(), String::new(), rootfs);
    let mut spec = Spec::new(image);
    spec.id = Some(id.to_string());
    spec.hostname = oci.hostname().clone().filter(|h| !h.is_empty());
    spec.process.args = process.args().clone().unwrap_or_default();
    spec.process.env = env;
    spec.process.cwd = Some(cwd);
    spec.process.terminal = process.terminal().unwrap_or(false);
    spec.process.stdin = true;
    spec.process.oom_score_adj = oom_score_adj;
    spec.process.rlimits = rlimits;
    spec.root = Root::Direct;
    spec.mounts = mounts;
    spec.net = Net::Host;
    spec.resources = limits;
    spec.cgroup_parent = cgroup_parent;
    spec.security = security;
    spec.contract = Some(Contract {
        new_namespaces: new_ns,
        join_namespaces: join,
        uid: process.user().uid(),
        gid: process.user().gid(),
        additional_gids: process.user().additional_gids().clone().unwrap_or_default(),
        caps,
        devices: devices.clone(),
        sysctl,
        rootfs_propagation,
        readonly_root: root.readonly().unwrap_or(false),
        exec_fifo: None,
        console_socket: None,
        no_pivot: false,
        preserve_fds: 0,
        cgroup_name: Some(cgroup_id),
        umask: process.user().umask(),
        userns,
    });
    let annotations = oci
        .annotations()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Bundle {
        spec,
        resources: linux.resources().clone(),
        devices: devices.clone(),
        hooks: Hooks {
            prestart: hook_list(hooks.prestart().as_ref()),
            create_runtime: hook_list(hooks.create_runtime().as_ref()),
            create_container: hook_list(hooks.create_container().as_ref()),
            start_container: hook_list(hooks.start_container().as_ref()),
            poststart: hook_list(hooks.poststart().as_ref()),
            poststop: hook_list(hooks.poststop().as_ref()),
        },
        annotations,
    })
}

/// `process.rlimits`, checked (known names, soft not above hard); for `create` and
/// for `exec --process`.
pub(crate) fn rlimits(process: &oci_spec::runtime::Process) -> Result<Vec<Rlimit>, OciError> {
    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        let name = r.typ().to_string();
        let resource = rlimit_number(&name)
            .ok_or_else(|| unsupported("process.rlimits", &format!("unknown {name}")))?;
        if r.soft() > r.hard() {
            return Err(unsupported(
                "process.rlimits",
                &format!("{name}: the soft limit is above the hard one"),
            ));
        }
        rlimits.push(Rlimit {
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    Ok(rlimits)
}

/// `linux.uidMappings`/`gidMappings` of a new user namespace (PID 1 joins it once the
/// container is set up, as `--userns auto` does). Both are required with a user
/// namespace and refused without one; each range is checked as the kernel will.
fn id_map(linux: &oci_spec::runtime::Linux, new_userns: bool) -> Result<Option<IdMap>, OciError> {
    let ranges = |field: &str, m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        let m = m.clone().unwrap_or_default();
        if m.len() > 340 {
            return Err(unsupported(
                field,
                "more than 340 ranges (the kernel's limit)",
            ));
        }
        m.iter()
            .map(|r| {
                let (inside, outside, count) = (r.container_id(), r.host_id(), r.size());
                let fits = |start: u32| start.checked_add(count).is_some();
                if count == 0 || !fits(inside) || !fits(outside) {
                    return Err(unsupported(
                        field,
                        &format!("the range {inside} {outside} {count} is empty or overflows"),
                    ));
                }
                Ok(IdRange {
                    inside,
                    outside,
                    count,
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let uids = ranges("linux.uidMappings", linux.uid_mappings())?;
    let gids = ranges("linux.gidMappings", linux.gid_mappings())?;
    match (new_userns, uids.is_empty() || gids.is_empty()) {
        (false, _) if !uids.is_empty() || !gids.is_empty() => Err(unsupported(
            "linux.uidMappings",
            "mappings are given without a user namespace in linux.namespaces",
        )),
        (false, _) => Ok(None),
        (true, true) => Err(unsupported(
            "linux.namespaces",
            "a user namespace needs both linux.uidMappings and linux.gidMappings",
        )),
        (true, false) => Ok(Some(IdMap { uids, gids })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(edit: impl FnOnce(&mut serde_json::Value)) -> OciSpec {
        let mut v = serde_json::to_value(OciSpec::default()).unwrap();
        edit(&mut v);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn mount_options_as_runc() {
        let o = |v: &[&str]| {
            mount_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "m").unwrap()
        };
        assert_eq!(
            o(&["ro", "nosuid", "mode=755"]),
            (
                libc::MS_RDONLY | libc::MS_NOSUID,
                0,
                vec!["mode=755".into()]
            )
        );
        assert_eq!(o(&["ro", "rw"]).0, 0);
        assert_eq!(
            o(&["rbind", "rslave"]),
            (
                libc::MS_BIND | libc::MS_REC,
                libc::MS_REC | libc::MS_SLAVE,
                vec![]
            )
        );
        assert!(mount_options(&["idmap".to_string()], "m").is_err());
    }

    #[test]
    fn the_default_config_translates() {
        let b = translate(&config(|_| {}), Path::new("/b"), "id").unwrap();
        let c = b.spec.contract.unwrap();
        assert!(c.new_namespaces & libc::CLONE_NEWNS as u64 != 0);
        assert_eq!(b.spec.image.lower_dirs(), [Path::new("/b/rootfs")]);
        assert!(c.readonly_root);
        assert_eq!(b.spec.process.args, ["sh"]);
    }

    #[test]
    fn refused_fields_name_themselves() {
        let refused = |edit: fn(&mut serde_json::Value), field: &str| {
            let e = translate(&config(edit), Path::new("/b"), "id")
                .err()
                .expect(field)
                .to_string();
            assert!(e.contains(field), "{e}");
        };
        refused(
            |v| v["process"]["apparmorProfile"] = "p".into(),
            "apparmorProfile",
        );
        refused(
            |v| v["process"]["selinuxLabel"] = "l".into(),
            "selinuxLabel",
        );
        refused(
            |v| v["linux"]["intelRdt"] = serde_json::json!({}),
            "intelRdt",
        );
        refused(|v| v["ociVersion"] = "invalid".into(), "ociVersion");
        refused(
            |v| v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]),
            "linux.namespaces",
        );
        refused(
            |v| v["linux"]["timeOffsets"] = serde_json::json!({}),
            "timeOffsets",
        );
    }

    #[test]
    fn user_namespaces_need_both_maps_and_only_with_the_namespace() {
        let with = |ns: serde_json::Value, uids: serde_json::Value, gids: serde_json::Value| {
            translate(
                &config(|v| {
                    if !ns.is_null() {
                        v["linux"]["namespaces"].as_array_mut().unwrap().push(ns);
                    }
                    v["linux"]["uidMappings"] = uids;
                    v["linux"]["gidMappings"] = gids;
                }),
                Path::new("/b"),
                "id",
            )
            .map(|b| b.spec.contract.unwrap().userns)
        };
        let m = |c: u32, h: u32, n: u32| serde_json::json!([{"containerID": c, "hostID": h, "size": n}]);
        let user = serde_json::json!({"type": "user"});
        let map = with(user.clone(), m(0, 100000, 65536), m(0, 200000, 1000))
            .unwrap()
            .unwrap();
        assert_eq!(map_text_of(&map.uids), "0 100000 65536\n");
        assert_eq!(map_text_of(&map.gids), "0 200000 1000\n");
        let err = |r: Result<Option<IdMap>, OciError>| r.unwrap_err().to_string();
        assert!(err(with(user.clone(), m(0, 1, 1), serde_json::json!([]))).contains("gidMappings"));
        assert!(err(with(user.clone(), m(0, 1, 0), m(0, 1, 1))).contains("empty"));
        assert!(err(with(user.clone(), m(u32::MAX, 1, 2), m(0, 1, 1))).contains("overflows"));
        assert!(err(with(
            serde_json::json!({"type": "user", "path": "/proc/1/ns/user"}),
            m(0, 1, 1),
            m(0, 1, 1)
        ))
        .contains("by path"));
        // Maps without the namespace: refused, not ignored.
        let none = serde_json::Value::Null;
        assert!(
            err(with(none.clone(), m(0, 1, 1), m(0, 1, 1))).contains("without a user namespace")
        );
        assert_eq!(
            with(none, serde_json::json!([]), serde_json::json!([])).unwrap(),
            None
        );
    }

    fn map_text_of(r: &[IdRange]) -> String {
        crate::run::userns::map_text(r)
    }

    #[test]
    fn cgroups_paths() {
        let path = |p: &str| {
            let b = translate(
                &config(|v| v["linux"]["cgroupsPath"] = p.into()),
                Path::new("/b"),
                "id",
            )
            .unwrap();
            (
                b.spec.cgroup_parent,
                b.spec.contract.unwrap().cgroup_name.unwrap(),
            )
        };
        assert_eq!(path("/a/b"), ("a".to_string(), "b".to_string()));
        assert_eq!(path("/top"), (String::new(), "top".to_string()));
        assert_eq!(
            path("x/y"),
            ("locker-runtime/x".to_string(), "y".to_string())
        );
    }
}
