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
    /// The container's id (state file, cgroups); None: a random one. A detached
    /// container keeps its id across restarts (monitor.rs).
    pub id: Option<String>,
    /// The pty's first window size (rows, cols) with -t; None: the host terminal's.
    pub winsize: Option<(u16, u16)>,
    /// Default: the image's name.
    pub hostname: Option<String>,
    pub process: Process,
    pub root: Root,
    /// In order, after /proc, /sys, /dev and the /etc files.
    pub mounts: Vec<Mount>,
    pub net: Net,
    /// `--dns`: name servers for a new network namespace's resolv.conf.
    pub dns: Vec<std::net::IpAddr>,
    /// `--add-host NAME:IP`: extra /etc/hosts lines.
    pub add_hosts: Vec<(String, std::net::IpAddr)>,
    pub resources: Limits,
    /// The user asked for limits (not only the default pids limit): where they cannot
    /// be applied (an ordinary user without a delegated cgroup), that is an error.
    pub limits_asked: bool,
    /// Size of the tmpfs holding an anonymous container's upper layer.
    pub upper_size: u64,
    /// Parent of the container's cgroup in every hierarchy (relative).
    pub cgroup_parent: String,
    /// `--userns auto` (root only): the container's ids are a range of its own.
    pub userns_auto: bool,
    pub security: Security,
    /// An OCI bundle's config.json (`locker oci`): what it says replaces locker's
    /// defaults (None: `locker run`'s container).
    pub contract: Option<Contract>,
}

/// What an OCI config.json decides that `locker run` decides itself. With a contract
/// the tree is the config's `mounts` alone (no /proc, /sys, /dev or /etc files of
/// locker's; the default device nodes are made), the environment is `process.env`
/// exactly, the ids are numbers, the command is PID 1 (no reaping init of locker's),
/// and the container waits in the "created" state until `start`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Contract {
    /// CLONE_NEW* flags of the namespaces made new.
    pub new_namespaces: u64,
    /// Namespaces joined by path (CLONE_NEW* type, host path), in this order.
    pub join_namespaces: Vec<(u64, PathBuf)>,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The five capability sets (bit N = capability N).
    pub caps: CapSets,
    /// Device nodes to make in /dev after the mounts (the default ones first).
    pub devices: Vec<Device>,
    /// /proc/sys keys (dotted, as sysctl names them) and values.
    pub sysctl: Vec<(String, String)>,
    /// Propagation of the root mount after setup (MS_PRIVATE, MS_SLAVE, MS_SHARED;
    /// 0: locker's private root).
    pub rootfs_propagation: u64,
    /// The root bound read-only.
    pub readonly_root: bool,
    /// The FIFO (opened by the parent, read by PID 1 before the exec) that `start`
    /// writes: until then the container is "created".
    pub exec_fifo: Option<PathBuf>,
    /// With a terminal: the pty's master goes to this socket (runc's console socket
    /// protocol: SCM_RIGHTS), not to locker.
    pub console_socket: Option<PathBuf>,
    /// Skip pivot_root (chroot instead): `--no-pivot`, for a root on a ramfs.
    pub no_pivot: bool,
    /// `--preserve-fds N`: the caller's fds 3..3+N stay open into the command.
    pub preserve_fds: u32,
    /// The cgroup's own name under `cgroup_parent` (`linux.cgroupsPath`'s last part);
    /// None: the container's id.
    pub cgroup_name: Option<String>,
    /// `process.user.umask`; None: 022.
    pub umask: Option<u32>,
    /// A new user namespace with these maps (`linux.uidMappings`/`gidMappings`): PID 1
    /// joins it once the container is set up, as with `--userns auto`, so the
    /// container's other namespaces stay owned by the host's.
    pub userns: Option<super::userns::IdMap>,
}

/// What an OCI `exec` (a process.json, runc's exec options) decides that `locker exec`
/// decides itself: the ids are numbers, the environment is `process.env` exactly, the
/// capability sets are the process's, and the command's stdio is the caller's fds 0-2
/// as they are (a shim passes FIFOs or a pty there).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ExecContract {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// None: the container's (from its state).
    pub caps: Option<CapSets>,
    /// None: the container's.
    pub no_new_privileges: Option<bool>,
    /// `process.rlimits` of a process.json; None: the container's.
    pub rlimits: Option<Vec<Rlimit>>,
    /// Return once the command runs, leaving it to the caller's subreaper (a shim).
    pub detach: bool,
    /// The command's host pid is written here (by rename) once it runs.
    pub pid_file: Option<PathBuf>,
    /// With a terminal: the pty's master goes to this socket (SCM_RIGHTS), not to
    /// locker's relay.
    pub console_socket: Option<PathBuf>,
    /// The caller's fds 3..3+N stay open into the command (`--preserve-fds`).
    pub preserve_fds: u32,
}

/// OCI `process.capabilities`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// One device node (OCI `linux.devices`): a relative, normalised path under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    pub path: String,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: u32,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
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
    /// The command's oom_score_adj (the caller's is not inherited).
    pub oom_score_adj: i32,
    /// Resource limits set for the command (the caller's are not inherited).
    pub rlimits: Vec<Rlimit>,
}

/// One resource limit (OCI `process.rlimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rlimit {
    /// RLIMIT_* number.
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
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
    /// Any filesystem as mount(2) takes it (an OCI config's mount that is not a bind):
    /// source, type, MS_* flags, data, then MS_* propagation flags applied after.
    Fs {
        source: String,
        fstype: String,
        flags: u64,
        data: String,
        propagation: u64,
    },
    /// An OCI bind mount: the source bound (recursively when `recursive`), then
    /// remounted with `flags` (MS_RDONLY, MS_NOSUID, ...) when any, then `propagation`.
    OciBind {
        source: PathBuf,
        recursive: bool,
        flags: u64,
        propagation: u64,
    },
    /// A fresh tmpfs of at most `size` bytes, mode `mode`.
    Tmpfs {
        size: u64,
        mode: u32,
        readonly: bool,
        noexec: bool,
    },
}

/// The anonymous upper layer's tmpfs (`--storage-opt size=` changes it) and a
/// `--tmpfs` without `size=`: bounded, where the kernel's default is half of RAM each.
pub(crate) const DEFAULT_UPPER_SIZE: u64 = 4 << 30;
pub(crate) const DEFAULT_TMPFS_SIZE: u64 = 1 << 30;

/// The network namespace (OCI `linux.namespaces` for `network`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Net {
    /// The host's network namespace.
    Host,
    /// A new one with only `lo`, up.
    None,
    /// A new one on a locker network's bridge (the default network, or a named one),
    /// with published ports.
    Bridge {
        network: super::net::Network,
        ports: Vec<super::net::PortMap>,
    },
    /// The network namespace of the running container with this name or id.
    Container(String),
}

impl Net {
    /// A new network namespace of its own.
    pub(crate) fn is_new(&self) -> bool {
        matches!(self, Net::None | Net::Bridge { .. })
    }
}

/// What the container may do (OCI `process.capabilities`, `noNewPrivileges`,
/// `linux.maskedPaths`, `linux.readonlyPaths`, `linux.seccomp`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Security {
    /// Bounding = effective = permitted; inheritable and ambient empty. Bit N is
    /// capability N.
    pub capabilities: u64,
    /// The seccomp profile; None: unconfined.
    pub seccomp: Option<super::seccomp::Profile>,
    pub no_new_privileges: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// fsync and friends succeed without syncing (the build container: its tree is
    /// renamed into the store whole or thrown away).
    pub suppress_sync: bool,
}

/// Capability names as the kernel numbers them (capability.h), without `CAP_`.
pub(crate) const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Every capability this table knows.
pub(crate) const ALL_CAPS: u64 = (1 << CAP_NAMES.len()) - 1;

/// podman's default capability set (CapEff 0x800405fb): Docker's without NET_RAW
/// (raw sockets sniff and spoof on a shared network), MKNOD and AUDIT_WRITE.
pub(crate) const DEFAULT_CAPS: u64 = (1 << 0) // CHOWN
    | (1 << 1) // DAC_OVERRIDE
    | (1 << 3) // FOWNER
    | (1 << 4) // FSETID
    | (1 << 5) // KILL
    | (1 << 6) // SETGID
    | (1 << 7) // SETUID
    | (1 << 8) // SETPCAP
    | (1 << 10) // NET_BIND_SERVICE
    | (1 << 18) // SYS_CHROOT
    | (1 << 31); // SETFCAP

/// A capability by Docker's spelling (`NET_RAW`, `CAP_NET_RAW`, any case); None for ALL.
fn parse_cap(name: &str) -> Result<Option<u32>, RunError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if bare == "ALL" {
        return Ok(None);
    }
    CAP_NAMES
        .iter()
        .position(|c| *c == bare)
        .map(|i| Some(i as u32))
        .ok_or_else(|| {
            RunError::Usage(format!(
                "unknown capability {name:?}: use a name such as NET_RAW or SYS_PTRACE, or ALL"
            ))
        })
}

/// `--cap-add`/`--cap-drop` over `base`, as Docker applies them: ALL in add starts
/// from every capability, ALL in drop from none; then the named ones are added, then
/// the named ones dropped.
pub(crate) fn apply_caps(base: u64, add: &[String], drop: &[String]) -> Result<u64, RunError> {
    let add = add
        .iter()
        .map(|n| parse_cap(n))
        .collect::<Result<Vec<_>, _>>()?;
    let drop = drop
        .iter()
        .map(|n| parse_cap(n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut caps = base;
    if add.contains(&None) {
        caps = ALL_CAPS;
    }
    if drop.contains(&None) {
        caps = 0;
    }
    for c in add.iter().flatten() {
        caps |= 1 << c;
    }
    for c in drop.iter().flatten() {
        caps &= !(1u64 << c);
    }
    Ok(caps)
}

/// `--ulimit NAME=SOFT[:HARD]` (Docker's names: nofile, nproc, core, ...; -1 or
/// `unlimited` for no limit).
pub(crate) fn parse_ulimit(spec: &str) -> Result<Rlimit, RunError> {
    let bad = |why: &str| RunError::Usage(format!("bad --ulimit {spec:?}: {why}"));
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| bad("use NAME=SOFT[:HARD], e.g. nofile=1024:4096"))?;
    let resource = RLIMIT_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| *r)
        .ok_or_else(|| bad("unknown name; use nofile, nproc, core, memlock, stack, ..."))?;
    let value = |v: &str| -> Result<u64, RunError> {
        match v {
            "-1" | "unlimited" => Ok(libc::RLIM_INFINITY),
            v => v
                .parse()
                .map_err(|_| bad("limits are numbers, -1 or unlimited")),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    Ok(Rlimit {
        resource,
        soft,
        hard,
    })
}

/// Docker's `--ulimit` names.
#[allow(clippy::unnecessary_cast)] // the RLIMIT_* type differs between libcs
const RLIMIT_NAMES: &[(&str, u32)] = &[
    ("core", libc::RLIMIT_CORE as u32),
    ("cpu", libc::RLIMIT_CPU as u32),
    ("data", libc::RLIMIT_DATA as u32),
    ("fsize", libc::RLIMIT_FSIZE as u32),
    ("locks", libc::RLIMIT_LOCKS as u32),
    ("memlock", libc::RLIMIT_MEMLOCK as u32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as u32),
    ("nice", libc::RLIMIT_NICE as u32),
    ("nofile", libc::RLIMIT_NOFILE as u32),
    ("nproc", libc::RLIMIT_NPROC as u32),
    ("rss", libc::RLIMIT_RSS as u32),
    ("rtprio", libc::RLIMIT_RTPRIO as u32),
    ("sigpending", libc::RLIMIT_SIGPENDING as u32),
    ("stack", libc::RLIMIT_STACK as u32),
];

/// The limits a container gets unless `--ulimit` says otherwise: 1024 open files
/// (soft; hard 1048576, or the caller's hard limit when locker may not raise it) and
/// no core files (soft 0), whatever the caller had.
pub(crate) fn default_rlimits(caller_hard_nofile: u64) -> Vec<Rlimit> {
    let nofile_hard = caller_hard_nofile.clamp(1024, 1 << 20);
    vec![
        Rlimit {
            resource: libc::RLIMIT_NOFILE,
            soft: 1024,
            hard: nofile_hard,
        },
        // 0:0 as Docker's core=0: a soft 0 the container could raise would let it dump
        // core at will (a pipe core_pattern runs the host's root handler).
        Rlimit {
            resource: libc::RLIMIT_CORE,
            soft: 0,
            hard: 0,
        },
    ]
}

/// The caller's hard limit on open files (a container's may not exceed it unless
/// locker can raise it, which needs CAP_SYS_RESOURCE).
pub(crate) fn caller_nofile_hard() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, hard)| hard)
}

/// `--tmpfs PATH[:OPTS]`, OPTS as Docker takes them (comma-separated `size=`, `mode=`,
/// `ro`/`rw`, `noexec`/`exec`; nosuid and nodev always).
pub(crate) fn parse_tmpfs(spec: &str) -> Result<Mount, RunError> {
    let (path, opts) = spec.split_once(':').unwrap_or((spec, ""));
    // locker itself needs the container's /proc (the command's own oom_score_adj, fds).
    let clean = path.trim_end_matches('/');
    if clean == "/proc" || clean.starts_with("/proc/") && !clean.starts_with("/proc/sys") {
        return Err(RunError::Usage(format!(
            "bad --tmpfs {spec:?}: a tmpfs over /proc would hide the container's own (mask files with --security-opt or use another path)"
        )));
    }
    let (mut size, mut mode, mut readonly, mut noexec) = (DEFAULT_TMPFS_SIZE, 0o1777, false, false);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => size = parse_size(v)?,
            Some(("mode", v)) => {
                mode = u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        RunError::Usage(format!("bad --tmpfs {spec:?}: mode is octal, e.g. 1777"))
                    })?
            }
            None if o == "ro" => readonly = true,
            None if o == "rw" => readonly = false,
            None if o == "noexec" => noexec = true,
            None if o == "exec" => noexec = false,
            None if ["nosuid", "nodev"].contains(&o) => {}
            _ => {
                return Err(RunError::Usage(format!(
                    "bad --tmpfs {spec:?}: options are size=, mode=, ro, rw, noexec, exec"
                )))
            }
        }
    }
    Ok(Mount {
        destination: container_path(path)?,
        kind: MountKind::Tmpfs {
            size,
            mode,
            readonly,
            noexec,
        },
    })
}

/// runc's masked paths, and what else the host's kernel tells its root there (the
/// host's physical page map, slab (also per cache in /sys/kernel/slab) and vmalloc layout, the crash dump's kernel address,
/// other users' key counts): files get /dev/null bound over them, directories an
/// empty read-only tmpfs. A path this kernel lacks is skipped.
pub(crate) const MASKED: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/key-users",
    "proc/kpagecgroup",
    "proc/kpagecount",
    "proc/kpageflags",
    "proc/latency_stats",
    "proc/slabinfo",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "proc/vmallocinfo",
    "sys/firmware",
    "sys/devices/virtual/powercap",
    "sys/kernel/slab",
    "sys/kernel/vmcoreinfo",
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
            seccomp: Some(super::seccomp::default_profile()),
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
            id: None,
            winsize: None,
            hostname: None,
            process: Process {
                rlimits: default_rlimits(caller_nofile_hard()),
                ..Process::default()
            },
            root: Root::Overlay,
            mounts: Vec::new(),
            net: Net::Host,
            dns: Vec::new(),
            add_hosts: Vec::new(),
            resources: Limits::default(),
            limits_asked: false,
            upper_size: DEFAULT_UPPER_SIZE,
            cgroup_parent: "locker".into(),
            userns_auto: false,
            security: Security::default(),
            contract: None,
        }
    }
}

/// An OCI image's config as the defaults of `process`, by Docker's rules
/// (Dockerfile reference, "Understand how CMD and ENTRYPOINT interact"): the command is
/// Entrypoint + (the given arguments, else Cmd); `--entrypoint` replaces Entrypoint and
/// drops Cmd (an empty one clears Entrypoint); Env comes before `-e` (later wins);
/// WorkingDir and User apply unless `-w` / `-u` were given. No command at all leaves
/// the args empty: the image's shell, as for a catalog image.
pub(crate) fn apply_image_config(
    process: &mut Process,
    config: &crate::store::ImageConfig,
    entrypoint: Option<&str>,
) -> Result<(), RunError> {
    let entry: Vec<String> = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => config.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if !process.args.is_empty() {
        std::mem::take(&mut process.args)
    } else if entrypoint.is_some() {
        Vec::new()
    } else {
        config.cmd.clone().unwrap_or_default()
    };
    process.args = entry.into_iter().chain(cmd).collect();
    let mut env: Vec<(String, String)> = config
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.append(&mut process.env);
    process.env = env;
    if process.cwd.is_none() {
        if let Some(w) = &config.working_dir {
            // A relative WorkingDir is relative to `/` (Docker does the same).
            let abs = if w.starts_with('/') {
                w.clone()
            } else {
                format!("/{w}")
            };
            process.cwd = Some(format!("/{}", container_path(&abs)?));
        }
    }
    if process.user.is_none() {
        process.user = config.user.clone();
    }
    Ok(())
}

/// A signal as an image's StopSignal names it: `SIGQUIT`, `QUIT` or `3`.
pub(crate) fn parse_signal(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
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
mod image_config_tests {
    use super::*;
    use crate::store::ImageConfig;

    fn config() -> ImageConfig {
        ImageConfig {
            entrypoint: Some(vec!["/bin/ep".into(), "-x".into()]),
            cmd: Some(vec!["default".into()]),
            env: vec!["PATH=/img/bin".into(), "A=image".into()],
            working_dir: Some("/srv/app".into()),
            user: Some("1000:1000".into()),
            stop_signal: Some("SIGQUIT".into()),
            ..ImageConfig::default()
        }
    }

    fn apply(args: &[&str], entrypoint: Option<&str>) -> Process {
        let mut p = Process {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![("A".into(), "flag".into())],
            ..Process::default()
        };
        apply_image_config(&mut p, &config(), entrypoint).unwrap();
        p
    }

    #[test]
    fn docker_rules_for_entrypoint_and_cmd() {
        assert_eq!(apply(&[], None).args, ["/bin/ep", "-x", "default"]);
        assert_eq!(apply(&["a", "b"], None).args, ["/bin/ep", "-x", "a", "b"]);
        assert_eq!(apply(&[], Some("/bin/sh")).args, ["/bin/sh"]);
        assert_eq!(
            apply(&["-c", "id"], Some("/bin/sh")).args,
            ["/bin/sh", "-c", "id"]
        );
        assert_eq!(apply(&["ls"], Some("")).args, ["ls"]);
        assert!(apply(&[], Some("")).args.is_empty());
    }

    #[test]
    fn env_workdir_user() {
        let p = apply(&[], None);
        assert_eq!(p.env[0], ("PATH".into(), "/img/bin".into()));
        // -e comes later, so it wins.
        assert_eq!(
            p.env.last().unwrap(),
            &("A".to_string(), "flag".to_string())
        );
        assert_eq!(p.cwd.as_deref(), Some("/srv/app"));
        assert_eq!(p.user.as_deref(), Some("1000:1000"));
        let mut q = Process {
            cwd: Some("/tmp".into()),
            user: Some("0".into()),
            ..Process::default()
        };
        apply_image_config(&mut q, &config(), None).unwrap();
        assert_eq!(q.cwd.as_deref(), Some("/tmp"));
        assert_eq!(q.user.as_deref(), Some("0"));
    }

    #[test]
    fn stop_signals() {
        assert_eq!(parse_signal("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("quit"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }
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
    fn caps_mask_matches_podman() {
        assert_eq!(DEFAULT_CAPS, 0x800405fb);
        assert_eq!(CAP_NAMES[13], "NET_RAW");
        assert_eq!(CAP_NAMES[40], "CHECKPOINT_RESTORE");
    }

    #[test]
    fn cap_add_and_drop_as_docker() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let raw = 1u64 << 13;
        assert_eq!(
            apply_caps(DEFAULT_CAPS, &s(&["NET_RAW"]), &[]).unwrap(),
            DEFAULT_CAPS | raw
        );
        assert_eq!(
            apply_caps(DEFAULT_CAPS, &s(&["cap_net_raw"]), &[]).unwrap(),
            DEFAULT_CAPS | raw
        );
        assert_eq!(apply_caps(DEFAULT_CAPS, &[], &s(&["ALL"])).unwrap(), 0);
        assert_eq!(
            apply_caps(DEFAULT_CAPS, &s(&["NET_RAW"]), &s(&["ALL"])).unwrap(),
            raw
        );
        assert_eq!(
            apply_caps(DEFAULT_CAPS, &s(&["ALL"]), &s(&["NET_RAW"])).unwrap(),
            ALL_CAPS & !raw
        );
        assert_eq!(
            apply_caps(DEFAULT_CAPS, &[], &s(&["CHOWN"])).unwrap(),
            DEFAULT_CAPS & !1
        );
        let e = apply_caps(DEFAULT_CAPS, &s(&["NET_RAWW"]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NET_RAWW"), "{e}");
    }

    #[test]
    fn ulimits_and_tmpfs_options() {
        let r = parse_ulimit("nofile=100:200").unwrap();
        assert_eq!(
            (r.resource, r.soft, r.hard),
            (libc::RLIMIT_NOFILE, 100, 200)
        );
        assert_eq!(parse_ulimit("core=-1").unwrap().soft, libc::RLIM_INFINITY);
        for bad in ["nofile", "nofile=2:1", "bogus=1", "nofile=x"] {
            assert!(parse_ulimit(bad).is_err(), "{bad}");
        }
        let d = default_rlimits(4096);
        assert_eq!((d[0].soft, d[0].hard), (1024, 4096));
        assert_eq!(default_rlimits(u64::MAX)[0].hard, 1 << 20);
        assert_eq!(
            parse_tmpfs("/t").unwrap().kind,
            MountKind::Tmpfs {
                size: DEFAULT_TMPFS_SIZE,
                mode: 0o1777,
                readonly: false,
                noexec: false
            }
        );
        assert_eq!(
            parse_tmpfs("/t:size=8m,mode=700,ro,noexec").unwrap().kind,
            MountKind::Tmpfs {
                size: 8 << 20,
                mode: 0o700,
                readonly: true,
                noexec: true
            }
        );
        assert!(parse_tmpfs("/t:size=x").is_err());
        assert!(parse_tmpfs("/t:mode=999").is_err());
        assert!(parse_tmpfs("/t:suid").is_err());
    }
}
