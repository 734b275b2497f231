//! Pure planning: the typed spec + what was read from the image -> everything the child
//! needs (clone flags, mount operations in order, argv, env, user), as CStrings built
//! before the clone. No I/O here, so every rule is unit tested.
//!
//! Invariants: mount targets are container paths relative to the new root (no leading
//! `/`, no `..`), resolved later only inside the root; the order of `mounts` is the
//! order they are applied (proc, sys, dev, console, /etc files, volumes, tmpfs, masks,
//! read-only paths: masks need /proc and /dev/null, volumes may cover image dirs).

use std::ffi::CString;
use std::path::PathBuf;

use super::seccomp;
use super::spec::{CapSets, Contract, MountKind, Net, Process, Rlimit, Root, Security, Spec};
use super::RunError;

/// Default PATH inside the container (Docker's).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One step of building the container's file tree, applied in order by the child.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MountOp {
    /// A fresh procfs for the new PID namespace; the target must be a real directory.
    Proc,
    /// sysfs, read-only.
    Sys,
    /// /dev as a small tmpfs with the standard nodes, pts, shm, mqueue and links.
    Dev,
    /// With -t: a pty from the container's own devpts (tty.rs), its slave bound over
    /// /dev/console.
    Console,
    /// A file locker wrote (hostname, hosts, resolv.conf) bound over /etc/NAME.
    EtcFile { name: &'static str },
    /// A host path (opened before the clone; `index` into the volume fds) bound at target.
    Bind {
        index: usize,
        target: CString,
        readonly: bool,
        dir: bool,
    },
    /// A fresh tmpfs (nosuid, nodev; `flags` adds ro/noexec), `data` its size and mode.
    Tmpfs {
        target: CString,
        data: CString,
        flags: libc::c_ulong,
    },
    /// Hide a path (file: /dev/null over it; directory: empty read-only tmpfs).
    Mask { target: CString },
    /// Bind a path over itself read-only.
    ReadOnly { target: CString },
    /// An OCI config's filesystem mount (proc, sysfs, tmpfs, devpts, mqueue, cgroup,
    /// ...): the target made a directory when missing, then propagation applied.
    Fs {
        target: CString,
        source: CString,
        fstype: CString,
        flags: libc::c_ulong,
        data: CString,
        propagation: libc::c_ulong,
    },
    /// An OCI config's bind mount (source opened in the child: `index` into volumes).
    OciBind {
        index: usize,
        target: CString,
        recursive: bool,
        flags: libc::c_ulong,
        propagation: libc::c_ulong,
    },
    /// Device nodes made in the base tmpfs and bound over files under the root (the
    /// OCI default devices, then `linux.devices`), and /dev's standard symlinks.
    DevNodes { nodes: Vec<DevNode> },
}

/// One node for `MountOp::DevNodes`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DevNode {
    /// Relative to the root.
    pub target: CString,
    /// Its name in the base tmpfs's nodes directory.
    pub name: CString,
    /// S_IF* | permission bits.
    pub mode: u32,
    pub dev: u64,
    pub uid: u32,
    pub gid: u32,
}

/// Where the writable layer lives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Layers {
    /// upper + work on a tmpfs mounted inside the container's mount namespace.
    Tmpfs,
    /// upper + work on disk (a named container).
    Disk { upper: CString, work: CString },
    /// No upper: the lower bound read-only.
    ReadOnly,
    /// No upper: an OCI image's layers stacked by overlayfs (read-only without an
    /// upper), then made read-only per mount too.
    ReadOnlyStack,
    /// No upper: the tree itself bound read-write as the root, so every change lands
    /// in it (`locker build` configures a tree that becomes an image).
    Direct,
    /// An OCI bundle's root: the tree bound as it is (read-only when `readonly`);
    /// its flags are the config's business.
    Bundle { readonly: bool },
}

/// The credentials the command runs with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// What was read from the image before planning.
#[derive(Debug, Clone, Default)]
pub(crate) struct ImageFacts {
    pub passwd: String,
    pub group: String,
    pub has_bash: bool,
}

/// The plan the child executes.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Namespace flags for the clone (CLONE_NEW*).
    pub ns_flags: u64,
    pub hostname: CString,
    pub mounts: Vec<MountOp>,
    /// Host sources of the `Bind` ops, by their `index`.
    pub volumes: Vec<PathBuf>,
    pub argv: Vec<CString>,
    /// Paths execve tries in order (PATH search done here, not in the child).
    pub exec_paths: Vec<CString>,
    pub env: Vec<CString>,
    pub user: User,
    pub workdir: CString,
    /// A network namespace of its own: PID 1 brings `lo` up.
    pub new_netns: bool,
    /// Options of the base tmpfs (it holds an anonymous container's upper layer).
    pub base_tmpfs: CString,
    /// Bounding = effective = permitted set.
    pub capabilities: u64,
    /// The compiled seccomp filter; None: unconfined. (It also suppresses the sync
    /// calls when the spec asks for that.)
    pub seccomp: Option<seccomp::Program>,
    pub rlimits: Vec<Rlimit>,
    /// Written to /proc/self/oom_score_adj by the exec tail.
    pub oom_score_adj: CString,
    pub no_new_privileges: bool,
    pub tty: bool,
    pub stdin: bool,
    pub hosts: Vec<u8>,
    pub hostname_file: Vec<u8>,
    /// PID 1 is the command itself (an OCI contract), not locker's reaping init.
    pub direct: bool,
    /// sethostname in the child.
    pub set_hostname: bool,
    /// The child gets a cgroup namespace.
    pub cgroupns: bool,
    /// The OCI capability sets; None: `capabilities` as bounding, effective and
    /// permitted, nothing inheritable or ambient.
    pub cap_sets: Option<CapSets>,
    /// /proc/sys files and the values written to them before pivot_root.
    pub sysctl: Vec<(CString, CString)>,
    /// MS_PRIVATE, MS_SLAVE or MS_SHARED for the root after pivot_root (0: none).
    pub root_propagation: libc::c_ulong,
    pub no_pivot: bool,
    /// The caller's fds 3..3+N stay open into the command (`--preserve-fds`).
    pub preserve_fds: u32,
    /// The command's umask.
    pub umask: libc::mode_t,
}

pub(crate) fn cstr(s: &str) -> Result<CString, RunError> {
    CString::new(s).map_err(|_| RunError::Usage(format!("{s:?} contains a NUL byte")))
}

/// A passwd line's fields we use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// A group line's fields we use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub(crate) fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

pub(crate) fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let members = f[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members,
            })
        })
        .collect()
}

/// `-u USER[:GROUP]` resolved against the image's passwd and group (Docker's rules: a
/// numeric uid need not exist; its gid is then 0 and HOME is /).
pub(crate) fn resolve_user(
    spec: Option<&str>,
    image: &str,
    facts: &ImageFacts,
) -> Result<User, RunError> {
    let passwd = parse_passwd(&facts.passwd);
    let groups = parse_group(&facts.group);
    let spec = spec.unwrap_or("0");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| p.uid == uid).cloned(),
        Err(_) => Some(
            passwd
                .iter()
                .find(|p| p.name == u)
                .cloned()
                .ok_or_else(|| RunError::NoUser {
                    what: "user",
                    name: u.to_string(),
                    image: image.to_string(),
                    file: "/etc/passwd",
                })?,
        ),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => u.parse().expect("numeric"),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| RunError::NoUser {
                    what: "group",
                    name: g.to_string(),
                    image: image.to_string(),
                    file: "/etc/group",
                })?,
        },
        None => entry.as_ref().map_or(0, |e| e.gid),
    };
    let mut sup = vec![gid];
    if g.is_none() {
        if let Some(e) = &entry {
            for grp in &groups {
                if grp.members.contains(&e.name) && !sup.contains(&grp.gid) {
                    sup.push(grp.gid);
                }
            }
        }
    }
    let home = entry
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() });
    Ok(User {
        uid,
        gid,
        groups: sup,
        home,
    })
}

/// The environment: defaults, then the spec's pairs (a later pair replaces an earlier
/// one of the same name, in its place).
pub(crate) fn build_env(
    process: &Process,
    user: &User,
    hostname: &str,
    host_env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), user.home.clone()),
        ("HOSTNAME".into(), hostname.into()),
        ("container".into(), "locker".into()),
    ];
    if process.terminal {
        env.push((
            "TERM".into(),
            host_env("TERM")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "xterm".into()),
        ));
    }
    for (k, v) in &process.env {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

/// The PATH search for argv[0] over the container's PATH, done before the clone or
/// fork: the paths execve tries in order (an empty PATH element is `.`, as execvp).
pub(crate) fn exec_paths(cmd: &str, env: &[(String, String)]) -> Result<Vec<CString>, RunError> {
    if cmd.contains('/') {
        return Ok(vec![cstr(cmd)?]);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    path.split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| cstr(&format!("{}/{cmd}", d.trim_end_matches('/'))))
        .collect()
}

/// /etc/hosts: localhost, the container's own name (on loopback with --net none, at
/// `own` on a bridge, else 127.0.1.1 as Debian does), then `--add-host` lines.
pub(crate) fn hosts_file(
    hostname: &str,
    net_none: bool,
    own: Option<std::net::Ipv4Addr>,
    add_hosts: &[(String, std::net::IpAddr)],
) -> Vec<u8> {
    let mut s = if net_none {
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    } else {
        let me = own.map_or("127.0.1.1".to_string(), |a| a.to_string());
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{me}\t{hostname}\n"
        )
    };
    for (name, ip) in add_hosts {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s.into_bytes()
}

/// Builds the plan. `host_resolv` is the host's resolv.conf (used with --net host);
/// `host_env` gives TERM for a terminal.
pub(crate) fn build(
    spec: &Spec,
    facts: &ImageFacts,
    host_env: &dyn Fn(&str) -> Option<String>,
    host_resolv: &[u8],
) -> Result<(Plan, Vec<u8>), RunError> {
    if let Some(c) = &spec.contract {
        return Ok((build_contract(spec, c)?, Vec::new()));
    }
    let net_none = spec.net == Net::None;
    let new_netns = spec.net.is_new();
    let ns_flags =
        (libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC) as u64
            | if new_netns {
                libc::CLONE_NEWNET as u64
            } else {
                0
            };
    let image = &spec.image.name;
    let hostname: String = spec.hostname.clone().unwrap_or_else(|| image.clone());
    if hostname.is_empty() || hostname.len() > 64 || hostname.contains(['/', '\0']) {
        return Err(RunError::Usage(format!(
            "bad hostname {hostname:?} (1-64 characters); use --hostname"
        )));
    }
    let process = &spec.process;
    let user = resolve_user(process.user.as_deref(), image, facts)?;
    let env = build_env(process, &user, &hostname, host_env);

    let mut mounts = vec![MountOp::Proc, MountOp::Sys, MountOp::Dev];
    if process.terminal {
        mounts.push(MountOp::Console);
    }
    // Bound /etc files would become empty files in a Direct tree once unmounted.
    if spec.root != Root::Direct {
        for name in ["hostname", "hosts", "resolv.conf"] {
            mounts.push(MountOp::EtcFile { name });
        }
    }
    let mut volumes = Vec::new();
    for m in &spec.mounts {
        let target = cstr(&m.destination)?;
        match &m.kind {
            MountKind::Bind { source, readonly } => {
                mounts.push(MountOp::Bind {
                    index: volumes.len(),
                    target,
                    readonly: *readonly,
                    dir: true,
                });
                volumes.push(source.clone());
            }
            MountKind::Tmpfs {
                size,
                mode,
                readonly,
                noexec,
            } => mounts.push(MountOp::Tmpfs {
                target,
                data: cstr(&format!("mode={mode:o},size={size}"))?,
                flags: if *readonly { libc::MS_RDONLY } else { 0 }
                    | if *noexec { libc::MS_NOEXEC } else { 0 },
            }),
            MountKind::Fs { .. } | MountKind::OciBind { .. } => {
                return Err(RunError::Usage(format!(
                    "mount on /{}: OCI mounts need an OCI contract",
                    m.destination
                )))
            }
        }
    }
    for m in &spec.security.masked_paths {
        mounts.push(MountOp::Mask { target: cstr(m)? });
    }
    for r in &spec.security.readonly_paths {
        mounts.push(MountOp::ReadOnly { target: cstr(r)? });
    }

    let command: Vec<String> = if process.args.is_empty() {
        vec![if facts.has_bash {
            "/bin/bash"
        } else {
            "/bin/sh"
        }
        .to_string()]
    } else {
        process.args.clone()
    };
    let exec_paths = exec_paths(&command[0], &env)?;
    let workdir = process.cwd.clone().unwrap_or_else(|| "/".to_string());
    let hosts = hosts_file(&hostname, spec.net == Net::None, None, &spec.add_hosts);
    let resolv = if net_none {
        b"# --net none: no name servers\n".to_vec()
    } else {
        host_resolv.to_vec()
    };
    let plan = Plan {
        ns_flags,
        hostname: cstr(&hostname)?,
        mounts,
        volumes,
        argv: command.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
        exec_paths,
        env: env_cstrings(&env)?,
        user,
        workdir: cstr(&workdir)?,
        new_netns,
        base_tmpfs: cstr(&format!("mode=700,size={}", spec.upper_size))?,
        capabilities: spec.security.capabilities,
        seccomp: seccomp_program(&spec.security)?,
        rlimits: process.rlimits.clone(),
        oom_score_adj: cstr(&process.oom_score_adj.to_string())?,
        no_new_privileges: spec.security.no_new_privileges,
        tty: process.terminal,
        stdin: process.stdin,
        hosts,
        hostname_file: format!("{hostname}\n").into_bytes(),
        direct: false,
        set_hostname: true,
        cgroupns: true,
        cap_sets: None,
        sysctl: Vec::new(),
        root_propagation: 0,
        no_pivot: false,
        preserve_fds: 0,
        umask: 0o022,
    };
    Ok((plan, resolv))
}

/// The OCI default devices (runtime spec, "Default Devices"), as (name, major, minor).
const OCI_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The plan for an OCI contract: the config's mounts in order, then the default
/// devices and `linux.devices`, the console, masked and read-only paths; the
/// environment and ids exactly as given; PID 1 the command.
fn build_contract(spec: &Spec, c: &Contract) -> Result<Plan, RunError> {
    let process = &spec.process;
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    for m in &spec.mounts {
        let target = cstr(&m.destination)?;
        match &m.kind {
            MountKind::Fs {
                source,
                fstype,
                flags,
                data,
                propagation,
            } => mounts.push(MountOp::Fs {
                target,
                source: cstr(source)?,
                fstype: cstr(fstype)?,
                flags: *flags as libc::c_ulong,
                data: cstr(data)?,
                propagation: *propagation as libc::c_ulong,
            }),
            MountKind::OciBind {
                source,
                recursive,
                flags,
                propagation,
            } => {
                mounts.push(MountOp::OciBind {
                    index: volumes.len(),
                    target,
                    recursive: *recursive,
                    flags: *flags as libc::c_ulong,
                    propagation: *propagation as libc::c_ulong,
                });
                volumes.push(source.clone());
            }
            MountKind::Bind { .. } | MountKind::Tmpfs { .. } => {
                return Err(RunError::Usage(format!(
                    "mount on /{}: an OCI contract takes OCI mounts only",
                    m.destination
                )))
            }
        }
    }
    let mut nodes = Vec::new();
    let defaults = OCI_DEVICES.iter().map(|(n, ma, mi)| super::spec::Device {
        path: format!("dev/{n}"),
        kind: libc::S_IFCHR,
        major: *ma,
        minor: *mi,
        mode: 0o666,
        uid: 0,
        gid: 0,
    });
    for (i, d) in defaults.chain(c.devices.iter().cloned()).enumerate() {
        // A device of the config replaces a default one of the same path.
        if i < OCI_DEVICES.len() && c.devices.iter().any(|x| x.path == d.path) {
            continue;
        }
        nodes.push(DevNode {
            target: cstr(&d.path)?,
            name: cstr(&format!("n{i}"))?,
            mode: d.kind | (d.mode & 0o7777),
            dev: libc::makedev(d.major as u32, d.minor as u32),
            uid: d.uid,
            gid: d.gid,
        });
    }
    mounts.push(MountOp::DevNodes { nodes });
    if process.terminal {
        mounts.push(MountOp::Console);
    }
    for m in &spec.security.masked_paths {
        mounts.push(MountOp::Mask { target: cstr(m)? });
    }
    for r in &spec.security.readonly_paths {
        mounts.push(MountOp::ReadOnly { target: cstr(r)? });
    }
    if process.args.is_empty() {
        return Err(RunError::Usage(
            "process.args is empty: the config must name the command".into(),
        ));
    }
    let env = process.env.clone();
    let exec_paths = exec_paths(&process.args[0], &env)?;
    let hostname = spec.hostname.clone().unwrap_or_default();
    let uts = (c.new_namespaces | c.join_namespaces.iter().fold(0, |a, (f, _)| a | f))
        & libc::CLONE_NEWUTS as u64
        != 0;
    if !hostname.is_empty() && !uts {
        return Err(RunError::Usage(
            "hostname is set but the config has no uts namespace to set it in".into(),
        ));
    }
    let sysctl = c
        .sysctl
        .iter()
        .map(|(k, v)| {
            if k.is_empty() || k.contains('/') || k.split('.').any(str::is_empty) {
                return Err(RunError::Usage(format!("bad sysctl name {k:?}")));
            }
            Ok((
                cstr(&format!("/proc/sys/{}", k.replace('.', "/")))?,
                cstr(v)?,
            ))
        })
        .collect::<Result<_, _>>()?;
    // The seccomp compiler decides includes/excludes on what the command holds.
    let held = c.caps.effective | c.caps.permitted;
    let security = Security {
        capabilities: held,
        ..spec.security.clone()
    };
    let seccomp = seccomp_program(&security)?;
    Ok(Plan {
        ns_flags: c.new_namespaces & !(libc::CLONE_NEWCGROUP as u64),
        hostname: cstr(&hostname)?,
        mounts,
        volumes,
        argv: process
            .args
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<_, _>>()?,
        exec_paths,
        env: env_cstrings(&env)?,
        user: User {
            uid: c.uid,
            gid: c.gid,
            groups: c.additional_gids.clone(),
            home: String::new(),
        },
        workdir: cstr(process.cwd.as_deref().unwrap_or("/"))?,
        new_netns: c.new_namespaces & libc::CLONE_NEWNET as u64 != 0,
        base_tmpfs: cstr(&format!("mode=700,size={}", spec.upper_size))?,
        capabilities: c.caps.bounding,
        seccomp,
        rlimits: process.rlimits.clone(),
        oom_score_adj: cstr(&process.oom_score_adj.to_string())?,
        no_new_privileges: spec.security.no_new_privileges,
        tty: process.terminal,
        stdin: true,
        hosts: Vec::new(),
        hostname_file: Vec::new(),
        direct: true,
        set_hostname: !hostname.is_empty(),
        cgroupns: c.new_namespaces & libc::CLONE_NEWCGROUP as u64 != 0,
        cap_sets: Some(c.caps),
        sysctl,
        root_propagation: c.rootfs_propagation as libc::c_ulong,
        no_pivot: c.no_pivot,
        preserve_fds: c.preserve_fds,
        umask: c.umask.unwrap_or(0o022) as libc::mode_t,
    })
}

/// The filter for `security`: its profile for its capabilities; unconfined but with
/// the sync calls suppressed when only that is asked for.
pub(crate) fn seccomp_program(security: &Security) -> Result<Option<seccomp::Program>, RunError> {
    let profile = match (&security.seccomp, security.suppress_sync) {
        (Some(p), _) => p.clone(),
        (None, true) => seccomp::allow_all(),
        (None, false) => return Ok(None),
    };
    Ok(Some(seccomp::compile(
        &profile,
        security.capabilities,
        security.suppress_sync,
    )?))
}

/// argv/envp pointer arrays (NULL-terminated) over CStrings that outlive them.
pub(crate) fn pointers(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The environment as the K=V strings execve takes.
pub(crate) fn env_cstrings(env: &[(String, String)]) -> Result<Vec<CString>, RunError> {
    env.iter().map(|(k, v)| cstr(&format!("{k}={v}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ImageFacts {
        ImageFacts {
            passwd:
                "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:Tester:/home/tester:/bin/sh\n"
                    .into(),
            group: "root:x:0:\ntester:x:1000:\nwheel:x:10:tester\naudio:x:29:tester,other\n".into(),
            has_bash: false,
        }
    }

    fn opts() -> Spec {
        Spec::new(crate::store::Resolved::tree(
            "img".into(),
            String::new(),
            "/nonexistent".into(),
        ))
    }

    fn with(f: impl FnOnce(&mut Spec)) -> Spec {
        let mut s = opts();
        f(&mut s);
        s
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn net_none_adds_netns_only_then() {
        let (p, _) = build(&opts(), &facts(), &no_env, b"").unwrap();
        assert_eq!(p.ns_flags & libc::CLONE_NEWNET as u64, 0);
        assert_ne!(p.ns_flags & libc::CLONE_NEWPID as u64, 0);
        let (p, resolv) = build(
            &with(|s| s.net = Net::None),
            &facts(),
            &no_env,
            b"nameserver 1.1.1.1\n",
        )
        .unwrap();
        assert_ne!(p.ns_flags & libc::CLONE_NEWNET as u64, 0);
        assert!(!String::from_utf8(resolv).unwrap().contains("nameserver"));
        assert!(String::from_utf8(p.hosts)
            .unwrap()
            .contains("localhost img"));
    }

    #[test]
    fn mount_order() {
        let o = with(|s| {
            s.mounts = vec![
                super::super::spec::parse_volume("/h:/data:ro").unwrap(),
                super::super::spec::Mount {
                    destination: "scratch".into(),
                    kind: MountKind::Tmpfs {
                        size: 1 << 20,
                        mode: 0o1777,
                        readonly: false,
                        noexec: false,
                    },
                },
            ];
            s.process.terminal = true;
        });
        let (p, _) = build(&o, &facts(), &no_env, b"").unwrap();
        let kinds: Vec<&str> = p
            .mounts
            .iter()
            .map(|m| match m {
                MountOp::Proc => "proc",
                MountOp::Sys => "sys",
                MountOp::Dev => "dev",
                MountOp::Console => "console",
                MountOp::EtcFile { .. } => "etc",
                MountOp::Bind { .. } => "bind",
                MountOp::Tmpfs { .. } => "tmpfs",
                MountOp::Mask { .. } => "mask",
                MountOp::ReadOnly { .. } => "ro",
                MountOp::Fs { .. } | MountOp::OciBind { .. } | MountOp::DevNodes { .. } => "oci",
            })
            .collect();
        let first_mask = kinds.iter().position(|k| *k == "mask").unwrap();
        assert_eq!(
            &kinds[..first_mask],
            &["proc", "sys", "dev", "console", "etc", "etc", "etc", "bind", "tmpfs"]
        );
        assert!(kinds[first_mask..]
            .iter()
            .all(|k| *k == "mask" || *k == "ro"));
        assert_eq!(p.volumes, [PathBuf::from("/h")]);
        assert!(
            matches!(&p.mounts[7], MountOp::Bind { target, readonly: true, .. } if target.as_bytes() == b"data")
        );
        // A build's tree gets no /etc files (they would stay behind in it).
        let (p, _) = build(&with(|s| s.root = Root::Direct), &facts(), &no_env, b"").unwrap();
        assert!(!p
            .mounts
            .iter()
            .any(|m| matches!(m, MountOp::EtcFile { .. })));
    }

    #[test]
    fn env_merging() {
        let host = |k: &str| {
            if k == "FROMHOST" {
                Some("h".to_string())
            } else if k == "TERM" {
                Some("vt100".into())
            } else {
                None
            }
        };
        let o = with(|s| {
            s.process.env = super::super::spec::parse_env(
                &["# comment\nA=1\nB=file\n\n".into()],
                &[
                    "A=2".into(),
                    "FROMHOST".into(),
                    "MISSING".into(),
                    "PATH=/x".into(),
                ],
                &host,
            )
            .unwrap();
            s.process.terminal = true;
        });
        let (p, _) = build(&o, &facts(), &host, b"").unwrap();
        let env: Vec<String> = p
            .env
            .iter()
            .map(|c| c.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            env,
            [
                "PATH=/x",
                "HOME=/root",
                "HOSTNAME=img",
                "container=locker",
                "TERM=vt100",
                "A=2",
                "B=file",
                "FROMHOST=h"
            ]
        );
        assert_eq!(p.exec_paths.len(), 1); // default /bin/sh has a slash
        let (p, _) = build(&opts(), &facts(), &no_env, b"").unwrap();
        assert!(!p
            .env
            .iter()
            .any(|e| e.to_str().unwrap().starts_with("TERM=")));
    }

    #[test]
    fn path_search_and_default_command() {
        let o = with(|s| s.process.args = vec!["ls".into(), "-l".into()]);
        let (p, _) = build(&o, &facts(), &no_env, b"").unwrap();
        assert_eq!(p.exec_paths[0].to_str().unwrap(), "/usr/local/sbin/ls");
        assert_eq!(p.exec_paths.len(), 6);
        let (p, _) = build(
            &opts(),
            &ImageFacts {
                has_bash: true,
                ..facts()
            },
            &no_env,
            b"",
        )
        .unwrap();
        assert_eq!(p.argv[0].to_str().unwrap(), "/bin/bash");
    }

    #[test]
    fn users() {
        let f = facts();
        assert_eq!(
            resolve_user(None, "i", &f).unwrap(),
            User {
                uid: 0,
                gid: 0,
                groups: vec![0],
                home: "/root".into()
            }
        );
        assert_eq!(
            resolve_user(Some("1000"), "i", &f).unwrap(),
            User {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10, 29],
                home: "/home/tester".into()
            }
        );
        assert_eq!(
            resolve_user(Some("tester:wheel"), "i", &f).unwrap(),
            User {
                uid: 1000,
                gid: 10,
                groups: vec![10],
                home: "/home/tester".into()
            }
        );
        assert_eq!(
            resolve_user(Some("4242:7"), "i", &f).unwrap(),
            User {
                uid: 4242,
                gid: 7,
                groups: vec![7],
                home: "/".into()
            }
        );
        let e = resolve_user(Some("bob"), "img", &f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bob") && e.contains("img"), "{e}");
        assert!(resolve_user(Some("tester:nogrp"), "img", &f)
            .unwrap_err()
            .to_string()
            .contains("nogrp"));
    }

    #[test]
    fn passwd_group_parsing() {
        let p =
            parse_passwd("# c\nbad line\nroot:x:0:0:root:/root:/bin/sh\nx:x:notnum:0::/:/bin/sh\n");
        assert_eq!(p.len(), 1);
        let g = parse_group("wheel:x:10:a,b\nempty:x:11:\n");
        assert_eq!(g[0].members, ["a", "b"]);
        assert!(g[1].members.is_empty());
    }

    #[test]
    fn path_search_maps_empty_elements_to_dot() {
        let env = vec![("PATH".to_string(), "/a::/b/".to_string())];
        let paths: Vec<String> = exec_paths("ls", &env)
            .unwrap()
            .iter()
            .map(|c| c.to_str().unwrap().to_string())
            .collect();
        assert_eq!(paths, ["/a/ls", "./ls", "/b/ls"]);
        assert_eq!(exec_paths("./x", &env).unwrap().len(), 1);
    }

    #[test]
    fn a_contract_is_the_config_alone() {
        let mut s = opts();
        s.process.args = vec!["sh".into()];
        s.process.env = vec![("A".into(), "1".into())];
        s.hostname = Some("h".into());
        s.mounts = vec![crate::run::spec::Mount {
            destination: "proc".into(),
            kind: MountKind::Fs {
                source: "proc".into(),
                fstype: "proc".into(),
                flags: libc::MS_NOSUID,
                data: String::new(),
                propagation: 0,
            },
        }];
        s.security.masked_paths = vec!["proc/kcore".into()];
        s.security.readonly_paths = vec![];
        s.contract = Some(Contract {
            new_namespaces: (libc::CLONE_NEWNS | libc::CLONE_NEWPID) as u64,
            uid: 7,
            gid: 8,
            additional_gids: vec![9],
            ..Contract::default()
        });
        // A hostname needs a uts namespace of the config's.
        assert!(build(&s, &facts(), &no_env, b"").is_err());
        s.hostname = None;
        let (p, _) = build(&s, &facts(), &no_env, b"").unwrap();
        assert!(p.direct && !p.set_hostname && !p.cgroupns);
        assert_eq!(p.ns_flags, (libc::CLONE_NEWNS | libc::CLONE_NEWPID) as u64);
        assert_eq!(p.env, [c"A=1".to_owned()]);
        assert_eq!(
            (p.user.uid, p.user.gid, p.user.groups.clone()),
            (7, 8, vec![9])
        );
        assert!(matches!(p.mounts[0], MountOp::Fs { .. }));
        match &p.mounts[1] {
            MountOp::DevNodes { nodes } => assert_eq!(nodes.len(), 6),
            m => panic!("{m:?}"),
        }
        assert!(matches!(p.mounts[2], MountOp::Mask { .. }));
        assert_eq!(p.mounts.len(), 3);
    }
}
