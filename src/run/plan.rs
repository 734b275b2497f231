//! Pure planning: run options + what was read from the image -> everything the child
//! needs (clone flags, mount operations in order, argv, env, user), as CStrings built
//! before the clone. No I/O here, so every rule is unit tested.
//!
//! Invariants: mount targets are container paths relative to the new root (no leading
//! `/`, no `..`), resolved later only inside the root; the order of `mounts` is the
//! order they are applied (proc, sys, dev, console, /etc files, volumes, tmpfs, masks,
//! read-only paths: masks need /proc and /dev/null, volumes may cover image dirs).

use std::ffi::CString;

use super::RunError;

/// Default PATH inside the container (Docker's).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

/// One step of building the container's file tree, applied in order by the child.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MountOp {
    /// A fresh procfs for the new PID namespace; the target must be a real directory.
    Proc,
    /// sysfs, read-only.
    Sys,
    /// /dev as a small tmpfs with the standard nodes, pts, shm, mqueue and links.
    Dev,
    /// The pty slave bound over /dev/console (with -t).
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
    /// A fresh tmpfs.
    Tmpfs { target: CString },
    /// Hide a path (file: /dev/null over it; directory: empty read-only tmpfs).
    Mask { target: CString },
    /// Bind a path over itself read-only.
    ReadOnly { target: CString },
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
    /// No upper: the tree itself bound read-write as the root, so every change lands
    /// in it (`locker build` configures a tree that becomes an image).
    Direct,
}

/// The credentials the command runs with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// A bind mount requested with -v.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Volume {
    pub host: String,
    pub target: String,
    pub readonly: bool,
}

/// Everything the run options say, in parsed form (from `RunArgs` plus files read).
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub image: String,
    pub hostname: Option<String>,
    /// -e values in order, K=V or K.
    pub env: Vec<String>,
    /// Contents of --env-file files, in order.
    pub env_files: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub volumes: Vec<String>,
    pub tmpfs: Vec<String>,
    pub net_none: bool,
    pub tty: bool,
    pub interactive: bool,
    pub command: Vec<String>,
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
    pub volumes: Vec<Volume>,
    pub argv: Vec<CString>,
    /// Paths execve tries in order (PATH search done here, not in the child).
    pub exec_paths: Vec<CString>,
    pub env: Vec<CString>,
    pub user: User,
    pub workdir: CString,
    pub net_none: bool,
    /// fsync and friends return success without syncing (the build container only).
    pub suppress_sync: bool,
    pub tty: bool,
    pub stdin: bool,
    pub hosts: Vec<u8>,
    pub hostname_file: Vec<u8>,
}

fn cstr(s: &str) -> Result<CString, RunError> {
    CString::new(s).map_err(|_| RunError::Usage(format!("{s:?} contains a NUL byte")))
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

/// Parses `HOST:CTR[:ro|rw]`.
pub(crate) fn parse_volume(spec: &str) -> Result<Volume, RunError> {
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
    Ok(Volume {
        host: host.to_string(),
        target: container_path(target)?,
        readonly,
    })
}

/// The environment: defaults, then --env-file lines, then -e (later wins).
pub(crate) fn build_env(
    opts: &Options,
    user: &User,
    hostname: &str,
    host_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, RunError> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), user.home.clone()),
        ("HOSTNAME".into(), hostname.into()),
        ("container".into(), "locker".into()),
    ];
    if opts.tty {
        env.push((
            "TERM".into(),
            host_env("TERM")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "xterm".into()),
        ));
    }
    let mut set = |k: &str, v: String| {
        if let Some(e) = env.iter_mut().find(|(ek, _)| ek == k) {
            e.1 = v;
        } else {
            env.push((k.to_string(), v));
        }
    };
    let mut apply = |item: &str| -> Result<(), RunError> {
        match item.split_once('=') {
            Some(("", _)) => Err(RunError::Usage(format!(
                "bad environment variable {item:?}"
            ))),
            Some((k, v)) => {
                set(k, v.to_string());
                Ok(())
            }
            None => {
                if let Some(v) = host_env(item) {
                    set(item, v);
                }
                Ok(())
            }
        }
    };
    for file in &opts.env_files {
        for line in file.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            apply(line)?;
        }
    }
    for item in &opts.env {
        apply(item)?;
    }
    Ok(env)
}

/// The PATH search for argv[0], done before the clone.
fn exec_paths(cmd: &str, path: &str) -> Vec<String> {
    if cmd.contains('/') {
        return vec![cmd.to_string()];
    }
    path.split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
        .collect()
}

/// Builds the plan. `host_resolv` is the host's resolv.conf (used with --net host).
pub(crate) fn build(
    opts: &Options,
    facts: &ImageFacts,
    host_env: &dyn Fn(&str) -> Option<String>,
    host_resolv: &[u8],
) -> Result<(Plan, Vec<u8>), RunError> {
    let ns_flags =
        (libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC) as u64
            | if opts.net_none {
                libc::CLONE_NEWNET as u64
            } else {
                0
            };
    let hostname: String = opts.hostname.clone().unwrap_or_else(|| opts.image.clone());
    if hostname.is_empty() || hostname.len() > 64 || hostname.contains(['/', '\0']) {
        return Err(RunError::Usage(format!(
            "bad hostname {hostname:?} (1-64 characters); use --hostname"
        )));
    }
    let user = resolve_user(opts.user.as_deref(), &opts.image, facts)?;
    let env = build_env(opts, &user, &hostname, host_env)?;

    let mut mounts = vec![MountOp::Proc, MountOp::Sys, MountOp::Dev];
    if opts.tty {
        mounts.push(MountOp::Console);
    }
    for name in ["hostname", "hosts", "resolv.conf"] {
        mounts.push(MountOp::EtcFile { name });
    }
    let mut volumes = Vec::new();
    for v in &opts.volumes {
        let vol = parse_volume(v)?;
        mounts.push(MountOp::Bind {
            index: volumes.len(),
            target: cstr(&vol.target)?,
            readonly: vol.readonly,
            dir: true,
        });
        volumes.push(vol);
    }
    for t in &opts.tmpfs {
        mounts.push(MountOp::Tmpfs {
            target: cstr(&container_path(t)?)?,
        });
    }
    for m in MASKED {
        mounts.push(MountOp::Mask { target: cstr(m)? });
    }
    for r in READ_ONLY {
        mounts.push(MountOp::ReadOnly { target: cstr(r)? });
    }

    let command: Vec<String> = if opts.command.is_empty() {
        vec![if facts.has_bash {
            "/bin/bash"
        } else {
            "/bin/sh"
        }
        .to_string()]
    } else {
        opts.command.clone()
    };
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    let exec_paths = exec_paths(&command[0], path)
        .iter()
        .map(|p| cstr(p))
        .collect::<Result<_, _>>()?;
    let workdir = match &opts.workdir {
        Some(w) => format!("/{}", container_path(w)?),
        None => "/".to_string(),
    };
    let hosts = if opts.net_none {
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    } else {
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")
    };
    let resolv = if opts.net_none {
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
        env: env
            .iter()
            .map(|(k, v)| cstr(&format!("{k}={v}")))
            .collect::<Result<_, _>>()?,
        user,
        workdir: cstr(&workdir)?,
        net_none: opts.net_none,
        suppress_sync: false,
        tty: opts.tty,
        stdin: opts.interactive,
        hosts: hosts.into_bytes(),
        hostname_file: format!("{hostname}\n").into_bytes(),
    };
    Ok((plan, resolv))
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

    fn opts() -> Options {
        Options {
            image: "img".into(),
            ..Default::default()
        }
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
            &Options {
                net_none: true,
                ..opts()
            },
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
        let o = Options {
            volumes: vec!["/h:/data:ro".into()],
            tmpfs: vec!["/scratch".into()],
            tty: true,
            ..opts()
        };
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
        assert_eq!(
            p.volumes[0],
            Volume {
                host: "/h".into(),
                target: "data".into(),
                readonly: true
            }
        );
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
        let o = Options {
            env: vec![
                "A=2".into(),
                "FROMHOST".into(),
                "MISSING".into(),
                "PATH=/x".into(),
            ],
            env_files: vec!["# comment\nA=1\nB=file\n\n".into()],
            tty: true,
            ..opts()
        };
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
        let o = Options {
            command: vec!["ls".into(), "-l".into()],
            ..opts()
        };
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
    }

    #[test]
    fn caps_mask_matches_docker() {
        assert_eq!(DEFAULT_CAPS, 0xa80425fb);
    }
}
