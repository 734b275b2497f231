//! Rootless: an ordinary user's locker runs in a user namespace of its own, as rootless
//! podman does. `enter` is called once, first thing, by the commands that touch the
//! store or start containers: the process unshares a user namespace in which it is
//! root, with container uid 0 mapped onto the user and container uids 1.. onto the
//! user's subordinate range from /etc/subuid (written by the setuid `newuidmap` and
//! `newgidmap` of Debian's `uidmap` package; the same for gids). From then on the rest
//! of locker runs as it does for root: unpacking chowns to container ids (which land as
//! mapped ids on disk), containers are cloned into new namespaces owned by this one,
//! overlayfs and tmpfs are mounted inside it. What the host still refuses (cgroups it
//! did not delegate, device nodes, bridges) each layer asks through `rootless()`.
//!
//! Without a subordinate range the map is the single id: container root is the user,
//! and every other id is unmapped (one warning says what that breaks).

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One line of a uid_map or gid_map: `count` ids from `inside` map onto `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid maps of a user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl IdMap {
    /// Container 0 is `uid`/`gid`; container 1.. the subordinate ranges, when given.
    pub(crate) fn for_user(
        uid: u32,
        gid: u32,
        subuid: Option<(u32, u32)>,
        subgid: Option<(u32, u32)>,
    ) -> IdMap {
        let map = |own: u32, sub: Option<(u32, u32)>| {
            let mut v = vec![IdRange {
                inside: 0,
                outside: own,
                count: 1,
            }];
            if let Some((start, count)) = sub {
                v.push(IdRange {
                    inside: 1,
                    outside: start,
                    count,
                });
            }
            v
        };
        IdMap {
            uids: map(uid, subuid),
            gids: map(gid, subgid),
        }
    }

    /// Only the user's own ids: no subordinate range.
    pub(crate) fn is_single(&self) -> bool {
        self.uids.len() == 1 && self.gids.len() == 1
    }
}

/// The /proc/PID/uid_map text of `ranges`.
pub(crate) fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

/// newuidmap's arguments after the pid: `inside outside count` triples.
fn map_args(ranges: &[IdRange]) -> Vec<String> {
    ranges
        .iter()
        .flat_map(|r| [r.inside, r.outside, r.count])
        .map(|n| n.to_string())
        .collect()
}

/// The first subordinate range of the user (`name` or numeric `id`) in an /etc/subuid
/// or /etc/subgid text: `(start, count)`. At most 65536 ids are used, as podman does.
pub(crate) fn subordinate(text: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != name && who != id {
                return None;
            }
            let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
            (count > 0 && start.checked_add(count).is_some()).then_some((start, count.min(65536)))
        })
        .next()
}

/// Whether this process runs in a user namespace other than the initial one (its uid
/// map is not the identity over all ids): what root may do on the host, it may not.
pub(crate) fn rootless() -> bool {
    // Not cached: `enter` changes the answer.
    fs::read_to_string("/proc/self/uid_map")
        .map(|m| !is_identity(&m))
        .unwrap_or(false)
}

fn is_identity(uid_map: &str) -> bool {
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum UsernsError {
    #[error("create a user namespace (unshare): {0}; the kernel must allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)")]
    Unshare(#[source] nix::Error),
    #[error("{tool} {args} failed ({status}); check the ranges for this user in /etc/subuid and /etc/subgid")]
    MapTool {
        tool: String,
        args: String,
        status: String,
    },
    #[error("write {file}: {source}")]
    Write {
        file: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Sys(&'static str, #[source] nix::Error),
    #[error("--userns auto needs an id range for `locker` in /etc/subuid and /etc/subgid, 65536 ids per container (as root, add the line locker:2000000:1048576 to both files)")]
    NoAutoRange,
    #[error("--userns auto: {0}; give `locker` ids no one else has (e.g. locker:2000000:1048576)")]
    BadAutoRange(String),
    #[error("--userns auto: all {0} id blocks of the `locker` range in /etc/subuid are in use by running containers; add ids to the range")]
    AutoExhausted(u32),
}

/// What `enter` did: nothing (root), or the map this process now runs under.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entered {
    /// Host root, or already in a user namespace: nothing was done.
    AsIs,
    Mapped(IdMap),
}

/// The user's name and ids, and the map `enter` would write.
pub(crate) fn planned_map() -> IdMap {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let subuid = subordinate(&read("/etc/subuid"), &name, uid);
    let subgid = subordinate(&read("/etc/subgid"), &name, uid);
    let tools = find_tool("newuidmap").zip(find_tool("newgidmap"));
    match (subuid, subgid, tools) {
        (Some(_), Some(_), Some(_)) => IdMap::for_user(uid, gid, subuid, subgid),
        _ => IdMap::for_user(uid, gid, None, None),
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The warning a single-id map earns, once per command.
pub(crate) fn single_id_warning(user: &str) -> String {
    format!(
        "locker: warning: no subordinate ids for {user} in /etc/subuid and /etc/subgid (or newuidmap missing: Debian's uidmap package), so the container has one id: files owned by other ids are stored as the user and apt-get cannot drop privileges; as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"
    )
}

/// Makes this process root of a new user namespace mapped for the calling user (see
/// the module doc). Host root, or a process already in a user namespace, is left as
/// it is. Must run while the process has one thread.
pub(crate) fn enter() -> Result<Entered, UsernsError> {
    if nix::unistd::geteuid().is_root() || rootless() {
        return Ok(Entered::AsIs);
    }
    let map = planned_map();
    if map.is_single() {
        unshare()?;
        write_self("/proc/self/setgroups", "deny")?;
        write_self("/proc/self/uid_map", &map_text(&map.uids))?;
        write_self("/proc/self/gid_map", &map_text(&map.gids))?;
    } else {
        map_with_tools(&map)?;
    }
    // The process is now uid 0 of the namespace, with every capability in it. The
    // credential change left it non-dumpable, which gives its /proc files to host root:
    // the containers it forks could not write their own oom_score_adj.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } != 0 {
        return Err(UsernsError::Sys(
            "prctl(PR_SET_DUMPABLE)",
            nix::Error::last(),
        ));
    }
    Ok(Entered::Mapped(map))
}

fn unshare() -> Result<(), UsernsError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(UsernsError::Unshare)
}

fn write_self(file: &'static str, text: &str) -> Result<(), UsernsError> {
    fs::write(file, text).map_err(|source| UsernsError::Write { file, source })
}

/// newuidmap and newgidmap must run outside the namespace and after it exists: both
/// are forked first and wait on a pipe, this process unshares, then releases them and
/// waits for both (they run side by side).
fn map_with_tools(map: &IdMap) -> Result<(), UsernsError> {
    use nix::unistd::{fork, ForkResult};
    let pid = std::process::id().to_string();
    let jobs = [
        ("newuidmap", map_args(&map.uids)),
        ("newgidmap", map_args(&map.gids)),
    ];
    let mut prepared = Vec::new();
    for (tool, args) in &jobs {
        let path = find_tool(tool).expect("planned_map checked the tools");
        let mut argv = vec![cstring(path.as_os_str()), cstring(pid.as_ref())];
        argv.extend(args.iter().map(|a| cstring(a.as_ref())));
        prepared.push((tool, args, path, argv));
    }
    let (rd, wr) = nix::unistd::pipe().map_err(|e| UsernsError::Sys("pipe", e))?;
    let mut children = Vec::new();
    for (tool, args, path, argv) in &prepared {
        // SAFETY: the process has one thread; the child only reads a pipe and execs.
        match unsafe { fork() }.map_err(|e| UsernsError::Sys("fork", e))? {
            ForkResult::Child => {
                drop(wr);
                let mut b = [0u8; 1];
                let _ = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&rd), &mut b);
                let exe = cstring(path.as_os_str());
                let _ = nix::unistd::execv(&exe, argv);
                // SAFETY: _exit ends the forked child without running the parent's
                // destructors or atexit handlers.
                unsafe { libc::_exit(127) };
            }
            ForkResult::Parent { child } => children.push((child, *tool, args.join(" "))),
        }
    }
    drop(rd);
    let unshared = unshare();
    // EOF releases both (on failure too, so they exit instead of hanging).
    if unshared.is_ok() {
        let _ = nix::unistd::write(&wr, b"xx");
    }
    drop(wr);
    let mut failed = None;
    for (child, tool, args) in children {
        let status = nix::sys::wait::waitpid(child, None);
        let ok = matches!(status, Ok(nix::sys::wait::WaitStatus::Exited(_, 0)));
        if !ok && failed.is_none() {
            failed = Some(UsernsError::MapTool {
                tool: tool.to_string(),
                args: format!("{pid} {args}"),
                status: match status {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => format!("exit {c}"),
                    other => format!("{other:?}"),
                },
            });
        }
    }
    unshared?;
    failed.map_or(Ok(()), Err)
}

fn cstring(s: &std::ffi::OsStr) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(s.as_bytes()).unwrap_or_default()
}

/// The user namespace of process `pid` when it is not ours: a rootless container's,
/// or a root-run `--userns auto` container's.
pub(crate) fn other_of(pid: i32) -> Result<Option<fs::File>, UsernsError> {
    let theirs = PathBuf::from(format!("/proc/{pid}/ns/user"));
    let same = match (fs::metadata(&theirs), fs::metadata("/proc/self/ns/user")) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.ino() == b.ino() && a.dev() == b.dev()
        }
        _ => true,
    };
    if same {
        return Ok(None);
    }
    fs::File::open(&theirs)
        .map(Some)
        .map_err(|source| UsernsError::Write {
            file: "open the container's user namespace",
            source,
        })
}

/// Joins the user namespace of process `pid` when it is not ours (`exec` in a
/// rootless container: its other namespaces belong to it). Single-threaded callers.
pub(crate) fn join_of(pid: i32) -> Result<(), UsernsError> {
    match other_of(pid)? {
        Some(f) => nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| UsernsError::Sys("join the container's user namespace", e)),
        None => Ok(()),
    }
}

/// `--userns auto`: where the blocks come from and are leased.
const AUTO_OWNER: &str = "locker";
const AUTO_LEASES: &str = "/run/locker/userns";
/// Ids per container, as podman's --userns=auto default.
const AUTO_SIZE: u32 = 65536;

/// A root-run container's own id range (`--userns auto`): a block of AUTO_SIZE uids
/// and gids from the `locker` entries of /etc/subuid and /etc/subgid, leased under
/// /run/locker/userns while the container runs, and the user namespace mapping it
/// (held by an fd; the process that made it is gone). Dropping it ends the lease.
///
/// An OCI bundle's user namespace is the same without a lease: its maps are the
/// config's (`mapped`).
#[derive(Debug)]
pub(crate) struct Auto {
    pub map: IdMap,
    pub userns: std::os::fd::OwnedFd,
    lease: Option<PathBuf>,
}

impl Drop for Auto {
    fn drop(&mut self) {
        if let Some(lease) = &self.lease {
            let _ = fs::remove_file(lease);
        }
    }
}

/// A user namespace with the maps an OCI config gives (host root writes them, so any
/// host ids may be mapped, as with runc).
pub(crate) fn mapped(map: IdMap) -> Result<Auto, UsernsError> {
    Ok(Auto {
        userns: make_userns(&map)?,
        map,
        lease: None,
    })
}

/// Leases the first free block and makes its user namespace.
pub(crate) fn auto() -> Result<Auto, UsernsError> {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let (uids, gids) = (
        subordinate_all(&read("/etc/subuid"), AUTO_OWNER),
        subordinate_all(&read("/etc/subgid"), AUTO_OWNER),
    );
    let (Some(uids), Some(gids)) = (uids, gids) else {
        return Err(UsernsError::NoAutoRange);
    };
    for (what, range, subs, ids) in [
        ("uid", uids, "/etc/subuid", "/etc/passwd"),
        ("gid", gids, "/etc/subgid", "/etc/group"),
    ] {
        check_auto_range(range, &read(subs), &read(ids)).map_err(|why| {
            UsernsError::BadAutoRange(format!("the `locker` {what} range of {subs} {why}"))
        })?;
    }
    let blocks = (uids.1 / AUTO_SIZE).min(gids.1 / AUTO_SIZE);
    if blocks == 0 {
        return Err(UsernsError::NoAutoRange);
    }
    crate::store::private_dir(Path::new(AUTO_LEASES)).map_err(|source| UsernsError::Write {
        file: AUTO_LEASES,
        source,
    })?;
    let me = std::process::id() as i32;
    let owner = format!("{me} {}\n", super::state::start_time(me).unwrap_or(0));
    for i in 0..blocks {
        let (u, g) = (uids.0 + i * AUTO_SIZE, gids.0 + i * AUTO_SIZE);
        let lease = Path::new(AUTO_LEASES).join(u.to_string());
        if !take_lease(&lease, &owner) {
            continue;
        }
        let map = IdMap {
            uids: vec![IdRange {
                inside: 0,
                outside: u,
                count: AUTO_SIZE,
            }],
            gids: vec![IdRange {
                inside: 0,
                outside: g,
                count: AUTO_SIZE,
            }],
        };
        let auto = Auto {
            userns: make_userns(&map)?,
            map,
            lease: Some(lease),
        };
        return Ok(auto);
    }
    Err(UsernsError::AutoExhausted(blocks))
}

/// A `locker` range must hold no id of the host's: not 0 (the container's root would
/// be host root), no id another /etc/subuid (subgid) entry gives a user, no id of a
/// passwd (group) entry.
fn check_auto_range((start, count): (u32, u32), subids: &str, ids: &str) -> Result<(), String> {
    let end = start as u64 + count as u64;
    let inside = |id: u64| id >= start as u64 && id < end;
    if start == 0 {
        return Err("starts at 0: the container's root would be host root".into());
    }
    for l in subids
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
    {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || f[0] == AUTO_OWNER {
            continue;
        }
        let (Ok(s), Ok(c)) = (f[1].parse::<u64>(), f[2].parse::<u64>()) else {
            continue;
        };
        if s < end && start as u64 <= s + c.saturating_sub(1) && c > 0 {
            return Err(format!("overlaps {}'s range {}:{}", f[0], s, c));
        }
    }
    for l in ids.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if let Some(id) = f.get(2).and_then(|x| x.parse::<u64>().ok()) {
            if inside(id) {
                return Err(format!("holds the id {id} of {}", f[0]));
            }
        }
    }
    Ok(())
}

/// Removes `--userns auto` leases whose locker is gone (`gc`; a new run also takes
/// them over).
pub(crate) fn reap_leases() {
    let Ok(rd) = fs::read_dir(AUTO_LEASES) else {
        return;
    };
    for e in rd.flatten() {
        let text = fs::read_to_string(e.path()).unwrap_or_default();
        let mut w = text.split_whitespace().map(|w| w.parse::<u64>().ok());
        if let (Some(Some(pid)), Some(Some(start))) = (w.next(), w.next()) {
            if !super::state::alive(pid as i32, start) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Creates `lease` for us, or takes it over from an owner that is gone.
fn take_lease(lease: &Path, owner: &str) -> bool {
    use std::io::Write;
    for _ in 0..2 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(lease)
        {
            Ok(mut f) => return f.write_all(owner.as_bytes()).is_ok(),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(lease).unwrap_or_default();
                let mut w = text.split_whitespace().map(|w| w.parse::<u64>().ok());
                let alive = match (w.next().flatten(), w.next().flatten()) {
                    (Some(pid), Some(start)) => super::state::alive(pid as i32, start),
                    // Half written: its writer is between create and write.
                    _ => true,
                };
                if alive {
                    return false;
                }
                let _ = fs::remove_file(lease);
            }
            Err(_) => return false,
        }
    }
    false
}

/// Every `locker` range of a subuid/subgid text, merged into the first one's extent.
fn subordinate_all(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let mut f = l.split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            (who == name).then_some(())?;
            Some((start.parse::<u32>().ok()?, count.parse::<u32>().ok()?))
        })
        .find(|&(start, count)| count > 0 && start.checked_add(count).is_some())
}

/// A user namespace with `map`, made by a short-lived child cloned into it: it waits
/// until the maps are written and the namespace is open, then exits.
fn make_userns(map: &IdMap) -> Result<std::os::fd::OwnedFd, UsernsError> {
    let (rd, wr) = nix::unistd::pipe().map_err(|e| UsernsError::Sys("pipe", e))?;
    let pid = super::sys::clone3(libc::CLONE_NEWUSER as u64, None, false)
        .map_err(|e| UsernsError::Sys("clone a user namespace", nix::Error::from_raw(e)))?;
    if pid == 0 {
        drop(wr);
        let mut b = [0u8; 1];
        // SAFETY: a buffer this frame owns; then _exit, running no destructors.
        unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&rd),
                b.as_mut_ptr().cast(),
                1,
            );
            libc::_exit(0)
        }
    }
    drop(rd);
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let result = (|| {
        let write = |f: &'static str, text: String| {
            fs::write(proc.join(f), text).map_err(|source| UsernsError::Write { file: f, source })
        };
        write("uid_map", map_text(&map.uids))?;
        write("gid_map", map_text(&map.gids))?;
        fs::File::open(proc.join("ns/user"))
            .map(std::os::fd::OwnedFd::from)
            .map_err(|source| UsernsError::Write {
                file: "open the new user namespace",
                source,
            })
    })();
    drop(wr);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    result
}

/// A detached copy of the mount at `path` whose owners read through `userns`'s map
/// (an idmapped mount): host uid U shows as the container's U, so one lower layer on
/// disk serves every container, with no chowned copy.
pub(crate) fn idmapped_mount(
    path: &Path,
    userns: &std::os::fd::OwnedFd,
) -> Result<std::os::fd::OwnedFd, UsernsError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let p = cstring(path.as_os_str());
    // SAFETY: a raw syscall with a NUL-terminated path and integer flags.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(UsernsError::Sys(
            "open_tree of a lower layer",
            nix::Error::last(),
        ));
    }
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = libc::MOUNT_ATTR_IDMAP;
    attr.userns_fd = userns.as_raw_fd() as u64;
    // SAFETY: a raw syscall whose pointer arguments point at live values of the sizes
    // the kernel expects.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(UsernsError::Sys(
            "make an idmapped mount of a lower layer (the file system must support idmapped mounts)",
            nix::Error::last(),
        ));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1003:231072:1000\n";
        assert_eq!(subordinate(text, "alice", 1001), Some((100000, 65536)));
        assert_eq!(subordinate(text, "bob", 1002), Some((165536, 65536)));
        assert_eq!(subordinate(text, "carol", 1003), Some((231072, 1000)));
        assert_eq!(subordinate(text, "dave", 1004), None);
        // Podman's 65536 at most; garbage and empty ranges are skipped.
        assert_eq!(
            subordinate("eve:x:1\neve:200000:0\neve:300000:1000000\n", "eve", 1),
            Some((300000, 65536))
        );
        assert_eq!(subordinate("eve:4294967295:2\n", "eve", 1), None);
    }

    #[test]
    fn the_map_puts_root_on_the_user_and_the_rest_on_the_range() {
        let m = IdMap::for_user(1000, 1000, Some((100000, 65536)), Some((200000, 65536)));
        assert!(!m.is_single());
        assert_eq!(map_text(&m.uids), "0 1000 1\n1 100000 65536\n");
        assert_eq!(
            map_args(&m.gids),
            ["0", "1000", "1", "1", "200000", "65536"]
        );
        let single = IdMap::for_user(1000, 1001, None, None);
        assert!(single.is_single());
        assert_eq!(map_text(&single.gids), "0 1001 1\n");
    }

    #[test]
    fn the_auto_range_holds_no_host_id() {
        let subs = "alice:100000:65536\nlocker:2000000:1048576\n";
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
        assert_eq!(
            check_auto_range((2_000_000, 1_048_576), subs, passwd),
            Ok(())
        );
        assert!(check_auto_range((0, 1_048_576), subs, passwd)
            .unwrap_err()
            .contains("host root"));
        assert!(check_auto_range((1000, 65536), subs, passwd)
            .unwrap_err()
            .contains("1000 of alice"));
        assert!(check_auto_range((150_000, 65536), subs, passwd)
            .unwrap_err()
            .contains("alice's range"));
        // Touching ends do not overlap.
        assert_eq!(check_auto_range((165_536, 65536), subs, passwd), Ok(()));
        assert!(check_auto_range((34_465, 65536), subs, passwd)
            .unwrap_err()
            .contains("alice's range"));
        assert_eq!(
            check_auto_range((34_464, 65536), subs, "root:x:0:0::/:/bin/sh\n"),
            Ok(())
        );
    }

    #[test]
    fn identity_map_is_the_initial_namespace() {
        assert!(is_identity("         0          0 4294967295\n"));
        assert!(!is_identity("0 1000 1\n1 100000 65536\n"));
        assert!(!is_identity("0 0 1\n"));
    }
}
