//! Networks: a bridge with a /24 from 10.89.0.0/16 (and, where the host has IPv6, a ULA
//! /64), NAT out of it, and leases.
//!
//! The default network (bridge `locker0`) isolates its ports: a container there reaches
//! the outside world and the host's bridge address, never another container (the
//! kernel's bridge port isolation). A named network (`locker network create NAME`) has
//! a bridge of its own, not isolated, and a shared hosts file that names its containers.
//!
//! The kernel is the source of truth: a network's subnet is its bridge's address, read
//! back on every run; a new bridge takes the first /24 of 10.89.0.0/16 that no address
//! or route on the host overlaps. Where the host has an IPv6 default route when the bridge
//! is made, the bridge also gets a random ULA /64 (RFC 4193: fd00::/8 and a random
//! 40-bit global ID, so no two bridges anywhere are likely to share one) and each
//! container the address of that /64 whose last bits are its IPv4 host number, beside
//! its IPv4 lease (one lease holds both). Leases (one file per address, created O_EXCL) live in
//! /run/locker/net/NETNS/BRIDGE, which, like the bridge, is gone after a reboot; a lease
//! whose owner (the `locker run` process) is dead is taken over.
//!
//! Invariants: locker creates, and only ever changes, its own bridges (`locker0`,
//! `lkn-*`), its own nftables table (firewall.rs) and the sysctls of its own bridges,
//! plus `net.ipv4.ip_forward` and, with IPv6, `net.ipv6.conf.all.forwarding`, which NAT
//! needs (Docker and podman set them too). A host that takes its IPv6 route from router
//! advertisements stops accepting them once forwarding is on unless its interface has
//! accept_ra=2; locker leaves host interfaces alone (the README says so).

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::firewall;
use super::netlink::Rtnl;
use super::NetError;

/// The default network's name and bridge.
pub(crate) const DEFAULT: &str = "locker";
const DEFAULT_BRIDGE: &str = "locker0";
/// Where subnets come from: 10.89.N.0/24.
const POOL: [u8; 2] = [10, 89];
pub(crate) const PREFIX: u8 = 24;
/// A bridge's IPv6 subnet: one /64.
pub(crate) const PREFIX6: u8 = 64;
const LEASES: &str = "/run/locker/net";

/// A network as `run` uses it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Network {
    pub name: String,
    pub bridge: String,
    /// Ports on the bridge cannot reach each other (the default network).
    pub isolated: bool,
}

impl Network {
    pub(crate) fn default_network() -> Network {
        Network {
            name: DEFAULT.into(),
            bridge: DEFAULT_BRIDGE.into(),
            isolated: true,
        }
    }

    /// A named network's record: ROOT/networks/NAME.json.
    fn record(root: &Path, name: &str) -> PathBuf {
        root.join("networks").join(format!("{name}.json"))
    }

    /// LEASES/NETNS/BRIDGE: a bridge is per network namespace (NETNS: its inode).
    fn lease_dir(&self) -> PathBuf {
        use std::os::unix::fs::MetadataExt;
        let ns = fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino());
        Path::new(LEASES).join(ns.to_string()).join(&self.bridge)
    }
}

/// A network that is up: its bridge's index and subnet.
#[derive(Debug, Clone)]
pub(crate) struct Up {
    pub net: Network,
    pub bridge_index: u32,
    pub gateway: Ipv4Addr,
    /// The bridge's IPv6 address (PREFIX::1) when it has an IPv6 subnet.
    pub gateway6: Option<Ipv6Addr>,
}

impl Up {
    fn subnet(&self) -> Ipv4Addr {
        mask(self.gateway)
    }

    fn subnet6(&self) -> Option<Ipv6Addr> {
        self.gateway6.map(mask6)
    }

    /// The IPv6 address beside the IPv4 lease `addr`: the same host number in the /64.
    pub(crate) fn addr6(&self, addr: Ipv4Addr) -> Option<Ipv6Addr> {
        let host = u32::from(addr) & !(u32::MAX << (32 - PREFIX));
        self.subnet6()
            .map(|s| Ipv6Addr::from(u128::from(s) | u128::from(host)))
    }
}

fn mask6(a: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(a) & (u128::MAX << (128 - PREFIX6)))
}

/// A locker bridge's IPv6 address: unique local (fc00::/7) with a /64.
fn is_bridge6(a: Ipv6Addr, prefix: u8) -> bool {
    prefix == PREFIX6 && (a.segments()[0] & 0xfe00) == 0xfc00
}

/// A fresh ULA /64's first address (RFC 4193 section 3.2: fd, a random 40-bit global
/// ID, subnet 0; ::1 is the bridge).
fn new_gateway6() -> Result<Ipv6Addr, NetError> {
    let r = crate::run::sys::random_bytes::<5>().map_err(|e| NetError::Io {
        what: "getrandom".into(),
        source: io::Error::from_raw_os_error(e),
    })?;
    let mut b = [0u8; 16];
    b[0] = 0xfd;
    b[1..6].copy_from_slice(&r);
    b[15] = 1;
    Ok(Ipv6Addr::from(b))
}

/// Whether the host (this namespace) has IPv6 out: enabled, with a default route.
fn host_has_ipv6(rt: &mut Rtnl) -> bool {
    let enabled = fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .is_ok_and(|v| v.trim() == "0");
    enabled && rt.has_default_route6().unwrap_or(false)
}

/// Whether `a` is a unique local IPv6 address (fc00::/7), as locker's bridges have.
pub(crate) fn is_ula(a: std::net::IpAddr) -> bool {
    matches!(a, std::net::IpAddr::V6(v) if (v.segments()[0] & 0xfe00) == 0xfc00)
}

/// Whether `a` is a locker network's address (10.89.0.0/16).
pub(crate) fn in_pool(a: std::net::IpAddr) -> bool {
    matches!(a, std::net::IpAddr::V4(v) if v.octets()[..2] == POOL)
}

fn mask(a: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) & (u32::MAX << (32 - PREFIX)))
}

pub(crate) fn check_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['.', '-']);
    if !ok || matches!(name, "host" | "none" | "private" | "bridge") {
        return Err(NetError::Usage(format!(
            "bad network name {name:?}: use letters, digits, '-', '_' or '.', and not host, none, private or bridge"
        )));
    }
    Ok(())
}

/// Looks up a named network (or the default one for "locker").
pub(crate) fn find(root: &Path, name: &str) -> Result<Network, NetError> {
    if name == DEFAULT {
        return Ok(Network::default_network());
    }
    let path = Network::record(root, name);
    match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            NetError::Usage(format!(
                "network record {} is damaged ({e}); remove it with `locker network rm {name}`",
                path.display()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NetError::Usage(format!(
            "no network {name:?}: create it with `locker network create {name}`"
        ))),
        Err(e) => Err(NetError::Io {
            what: format!("read {}", path.display()),
            source: e,
        }),
    }
}

/// `locker network create NAME`: records it; its bridge comes up with its first container.
pub(crate) fn create(root: &Path, name: &str) -> Result<Network, NetError> {
    check_name(name)?;
    if name == DEFAULT {
        return Err(NetError::Usage(format!(
            "network {name:?} exists (it is the default)"
        )));
    }
    let dir = root.join("networks");
    fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    // Bridge names are global and 15 bytes at most: a hash of root and name.
    let h = sha2::Sha256::digest(format!("{}\0{name}", root.display()));
    let net = Network {
        name: name.into(),
        bridge: format!("lkn-{}", &hex::encode(h)[..10]),
        isolated: false,
    };
    let path = Network::record(root, name);
    let tmp = dir.join(format!(".{name}.json.tmp"));
    fs::write(&tmp, serde_json::to_vec(&net).expect("serializable")).map_err(io("write", &tmp))?;
    // Publish without replacing: a second create of the same name fails.
    match fs::hard_link(&tmp, &path) {
        Ok(()) => {
            let _ = fs::remove_file(&tmp);
            Ok(net)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&tmp);
            Err(NetError::Usage(format!("network {name:?} exists")))
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io("create", &path)(e))
        }
    }
}

/// Named networks, sorted by name.
pub(crate) fn list(root: &Path) -> Vec<Network> {
    let mut v: Vec<Network> = fs::read_dir(root.join("networks"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = n.strip_suffix(".json")?;
            if name.starts_with('.') {
                return None;
            }
            find(root, name).ok()
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `locker network rm NAME`: refused while a container uses it; takes the bridge down.
pub(crate) fn remove(root: &Path, name: &str) -> Result<(), NetError> {
    let net = find(root, name)?;
    if name == DEFAULT {
        return Err(NetError::Usage(
            "the default network cannot be removed".into(),
        ));
    }
    if live_leases(&net) > 0 {
        return Err(NetError::Usage(format!(
            "network {name:?} has running containers; stop them first"
        )));
    }
    let mut rt = Rtnl::new()?;
    if let Some(up) = read_up(&mut rt, &net)? {
        firewall::remove_network(up.subnet(), up.subnet6(), &net.bridge)?;
        rt.del_link(up.bridge_index)?;
    }
    let _ = fs::remove_dir_all(net.lease_dir());
    let path = Network::record(root, name);
    fs::remove_file(&path).map_err(io("remove", &path))
}

fn io(what: &str, path: &Path) -> impl FnOnce(io::Error) -> NetError {
    let what = format!("{what} {}", path.display());
    move |source| NetError::Io { what, source }
}

/// The bridge of `net` if it exists, with its gateway address.
fn read_up(rt: &mut Rtnl, net: &Network) -> Result<Option<Up>, NetError> {
    let Some(index) = rt.link_index(&net.bridge)? else {
        return Ok(None);
    };
    let addrs = rt.addresses()?;
    let on_bridge = || addrs.iter().filter(|a| a.0 == index);
    let gateway = on_bridge().find_map(|a| match a.1 {
        std::net::IpAddr::V4(v) if a.2 == PREFIX => Some(v),
        _ => None,
    });
    let Some(gateway) = gateway else {
        return Ok(None);
    };
    let gateway6 = on_bridge().find_map(|a| match a.1 {
        std::net::IpAddr::V6(v) if is_bridge6(v, a.2) => Some(v),
        _ => None,
    });
    Ok(Some(Up {
        net: net.clone(),
        bridge_index: index,
        gateway,
        gateway6,
    }))
}

/// Brings `net` up if it is not: the bridge with its gateway address, NAT, forwarding.
pub(crate) fn ensure_up(rt: &mut Rtnl, net: &Network) -> Result<Up, NetError> {
    if let Some(up) = read_up(rt, net)? {
        return Ok(up);
    }
    // One bridge made at a time in this namespace: two runs bringing up two networks
    // at once would otherwise both pick the same free /24.
    let _lock = lock_bridges(net)?;
    if let Some(up) = read_up(rt, net)? {
        return Ok(up);
    }
    let taken: Vec<(Ipv4Addr, u8)> = rt
        .addresses()?
        .into_iter()
        .filter_map(|a| match a.1 {
            std::net::IpAddr::V4(v) => Some((v, a.2)),
            std::net::IpAddr::V6(_) => None,
        })
        // The default route (prefix 0) is no destination a subnet could clash with.
        .chain(rt.routes()?.into_iter().filter(|r| r.1 > 0))
        .collect();
    let subnet = free_subnet(&taken).ok_or_else(|| {
        NetError::Usage("no free /24 left in 10.89.0.0/16 for a locker network".into())
    })?;
    let gateway = Ipv4Addr::from(u32::from(subnet) + 1);
    let gateway6 = if host_has_ipv6(rt) {
        Some(new_gateway6()?)
    } else {
        None
    };
    match rt.add_bridge(&net.bridge) {
        Ok(()) => {}
        // Another run made it first: wait (bounded) for its address.
        Err(e) if e.source.raw_os_error() == Some(libc::EEXIST) => {
            for _ in 0..200 {
                if let Some(up) = read_up(rt, net)? {
                    return Ok(up);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            return Err(NetError::Usage(format!(
                "bridge {} exists without a locker address; delete it (ip link del {})",
                net.bridge, net.bridge
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let index = rt
        .link_index(&net.bridge)?
        .ok_or_else(|| NetError::Usage(format!("bridge {} vanished", net.bridge)))?;
    let setup = (|| -> Result<(), NetError> {
        // IPv6 first: a concurrent run that sees the IPv4 address (read_up) sees both.
        if let Some(g6) = gateway6 {
            rt.add_address6(index, g6, PREFIX6)?;
        }
        rt.add_address(index, gateway, PREFIX)?;
        // Published ports answer on the host's 127.0.0.1 (DNAT to the container).
        sysctl(&format!("net/ipv4/conf/{}/route_localnet", net.bridge), "1")?;
        if fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap_or_default()
            .trim()
            != "1"
        {
            sysctl("net/ipv4/ip_forward", "1")?;
        }
        if gateway6.is_some()
            && fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")
                .unwrap_or_default()
                .trim()
                != "1"
        {
            sysctl("net/ipv6/conf/all/forwarding", "1")?;
        }
        firewall::add_network(subnet, gateway6.map(mask6), &net.bridge, net.isolated)?;
        rt.set_up(index)?;
        Ok(())
    })();
    if let Err(e) = setup {
        let _ = rt.del_link(index);
        return Err(e);
    }
    Ok(Up {
        net: net.clone(),
        bridge_index: index,
        gateway,
        gateway6,
    })
}

/// An exclusive flock on LEASES/NETNS/bridges.lock, held while a bridge is made.
fn lock_bridges(net: &Network) -> Result<nix::fcntl::Flock<fs::File>, NetError> {
    let dir = net
        .lease_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(LEASES));
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(&dir)
        .map_err(io("create", &dir))?;
    let path = dir.join("bridges.lock");
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io("open", &path))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io("lock", &path)(e.into()))
}

fn sysctl(key: &str, value: &str) -> Result<(), NetError> {
    let p = Path::new("/proc/sys").join(key);
    fs::write(&p, value).map_err(io("write", &p))
}

/// The first 10.89.N.0/24 that overlaps none of `taken` (addresses and routes).
fn free_subnet(taken: &[(Ipv4Addr, u8)]) -> Option<Ipv4Addr> {
    (0..=255u8)
        .map(|n| Ipv4Addr::new(POOL[0], POOL[1], n, 0))
        .find(|s| {
            taken.iter().all(|&(a, p)| {
                // Two prefixes overlap when they agree on the shorter one's bits.
                let p = p.min(PREFIX);
                let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                (u32::from(*s) & m) != (u32::from(a) & m)
            })
        })
}

/// An address of a network, held while its file exists.
#[derive(Debug)]
pub(crate) struct Lease {
    pub addr: Ipv4Addr,
    path: PathBuf,
}

impl Lease {
    pub(crate) fn release(&self) {
        let _ = fs::remove_file(&self.path);
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn owner_alive(content: &str) -> bool {
    // A lease taken in another PID namespace: its owner's pid means nothing here.
    let pidns = content
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pidns="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if crate::run::state::other_pid_namespace(pidns) {
        return true;
    }
    let mut it = content.split_whitespace();
    let (Some(pid), Some(start)) = (it.next(), it.next()) else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else {
        return false;
    };
    crate::run::state::alive(pid, start)
}

/// Removes the lease directories (LEASES/NETNS) of network namespaces no process is
/// in any more (a test's or an `ip netns` namespace that is gone: its bridges, tables
/// and ports went with it), and returns them. A namespace some thread is in keeps its
/// own; the inode of a dead one can be reused by a new namespace, whose leases would
/// then look taken.
pub(crate) fn forget_dead_namespaces() -> Vec<PathBuf> {
    let Ok(dirs) = fs::read_dir(LEASES) else {
        return Vec::new();
    };
    let live = live_netns();
    let mut gone = Vec::new();
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        let Ok(ino) = name.parse::<u64>() else {
            continue;
        };
        if live.contains(&ino) {
            continue;
        }
        if fs::remove_dir_all(d.path()).is_ok() {
            gone.push(d.path());
        }
    }
    gone
}

/// The network namespaces alive on the machine, by inode: those of every thread, of
/// every open descriptor, and those bound on a path (`ip netns add`).
fn live_netns() -> std::collections::HashSet<u64> {
    use std::os::unix::fs::MetadataExt;
    let ino_of = |link: &Path| -> Option<u64> {
        fs::read_link(link)
            .ok()?
            .to_str()?
            .strip_prefix("net:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    };
    let mut live = std::collections::HashSet::new();
    for p in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        for t in fs::read_dir(p.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            live.extend(ino_of(&t.path().join("ns/net")));
        }
        for fd in fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            live.extend(ino_of(&fd.path()));
        }
    }
    // A bound namespace: an nsfs mount (mountinfo field 5: the mount point; the field
    // after " - ": the type), whose inode is the namespace's.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mounts.lines() {
        let Some((head, tail)) = l.split_once(" - ") else {
            continue;
        };
        if tail.split_whitespace().next() != Some("nsfs") {
            continue;
        }
        if let Some(at) = head.split_whitespace().nth(4) {
            let at = at.replace("\\040", " ");
            live.extend(fs::metadata(&at).ok().map(|m| m.ino()));
        }
    }
    live
}

/// The published ports a lease records (its fields after pid, start, id and name).
pub(crate) fn lease_ports(held: &str) -> Vec<firewall::PortMap> {
    held.split_whitespace()
        .skip(4)
        .filter_map(|p| firewall::PortMap::parse(p).ok())
        .collect()
}

fn live_leases(net: &Network) -> usize {
    fs::read_dir(net.lease_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<Ipv4Addr>().is_ok())
        .filter(|e| owner_alive(&fs::read_to_string(e.path()).unwrap_or_default()))
        .count()
}

/// Takes the lowest free address of `up` for container `id` (owned by this process).
///
/// The lease records its owner (pid, start time), the container (id, name) and its
/// published ports: whoever takes over a dead owner's address first withdraws the
/// ports still leading to it, so a new container never receives a killed one's
/// published traffic, whichever store it belongs to.
pub(crate) fn lease(
    up: &Up,
    id: &str,
    name: Option<&str>,
    ports: &[firewall::PortMap],
) -> Result<Lease, NetError> {
    let dir = up.net.lease_dir();
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(&dir)
        .map_err(io("create", &dir))?;
    let me = std::process::id() as i32;
    let mut content = format!(
        "{me} {} {id} {}",
        crate::run::state::start_time(me).unwrap_or(0),
        name.unwrap_or("-")
    );
    for p in ports {
        content.push_str(&format!(" {p}"));
    }
    content.push_str(&format!(" pidns={}\n", crate::run::state::pid_namespace()));
    let base = u32::from(up.subnet());
    for host in 2..255u32 {
        let addr = Ipv4Addr::from(base + host);
        let path = dir.join(addr.to_string());
        for _attempt in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(content.as_bytes())
                        .map_err(io("write", &path))?;
                    return Ok(Lease { addr, path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // A lease whose owner died (SIGKILL) is free again.
                    let held = fs::read_to_string(&path).unwrap_or_default();
                    if !held.is_empty() && !owner_alive(&held) {
                        firewall::unpublish_if_to(&lease_ports(&held), addr, up.addr6(addr));
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    break;
                }
                Err(e) => return Err(io("create", &path)(e)),
            }
        }
    }
    Err(NetError::Usage(format!(
        "network {} has no free address left",
        up.net.name
    )))
}

/// Rewrites a named network's shared hosts file in place (the containers have it bound
/// over /etc/hosts, so the inode must stay): every live lease with a name.
pub(crate) fn refresh_hosts(net: &Network) -> Result<PathBuf, NetError> {
    refresh_hosts_at(&net.lease_dir())
}

/// The same for the lease directory `dir` (its `hosts` file).
pub(crate) fn refresh_hosts_at(dir: &Path) -> Result<PathBuf, NetError> {
    let path = dir.join("hosts");
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut entries: Vec<(Ipv4Addr, String)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let addr: Ipv4Addr = e.file_name().to_string_lossy().parse().ok()?;
            let held = fs::read_to_string(e.path()).ok()?;
            if !owner_alive(&held) {
                return None;
            }
            let mut it = held.split_whitespace().skip(2);
            let id = it.next()?.to_string();
            let name = it.next().filter(|n| *n != "-").map(str::to_string);
            Some((addr, name.map_or(id.clone(), |n| format!("{n} {id}"))))
        })
        .collect();
    entries.sort();
    for (a, names) in entries {
        text.push_str(&format!("{a}\t{names}\n"));
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(io("open", &path))?;
    f.set_len(0).map_err(io("truncate", &path))?;
    f.write_all(text.as_bytes()).map_err(io("write", &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_subnet_skips_overlaps() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(free_subnet(&[]), Some(a("10.89.0.0")));
        assert_eq!(
            free_subnet(&[(a("10.89.0.1"), 24), (a("192.0.2.0"), 24)]),
            Some(a("10.89.1.0"))
        );
        // A /16 route over the whole pool leaves nothing.
        assert_eq!(free_subnet(&[(a("10.89.0.0"), 16)]), None);
        assert_eq!(
            free_subnet(&[(a("10.255.255.53"), 32), (a("10.89.0.128"), 25)]),
            Some(a("10.89.1.0"))
        );
        // Prefix 0 overlaps everything: ensure_up leaves the default route out.
        assert_eq!(free_subnet(&[(a("0.0.0.0"), 0)]), None);
    }

    #[test]
    fn ipv6_beside_ipv4() {
        let g6 = new_gateway6().unwrap();
        assert!(is_bridge6(g6, 64), "{g6}");
        assert!(!is_bridge6(g6, 128));
        assert!(!is_bridge6("2001:db8::1".parse().unwrap(), 64));
        assert_eq!(g6.segments()[3..7], [0, 0, 0, 0]);
        let up = Up {
            net: Network::default_network(),
            bridge_index: 1,
            gateway: Ipv4Addr::new(10, 89, 3, 1),
            gateway6: Some(g6),
        };
        let a = up.addr6(Ipv4Addr::new(10, 89, 3, 7)).unwrap();
        assert_eq!(mask6(a), mask6(g6));
        assert_eq!(a.segments()[7], 7);
        assert_eq!(
            Up {
                gateway6: None,
                ..up
            }
            .addr6(Ipv4Addr::new(10, 89, 3, 7)),
            None
        );
    }

    #[test]
    fn names() {
        assert!(check_name("dev-net_1").is_ok());
        for bad in ["", "host", "none", "a/b", "-x", ".x", "private"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_list_find() {
        let t = tempfile::tempdir().unwrap();
        let n = create(t.path(), "dev").unwrap();
        assert!(n.bridge.starts_with("lkn-") && n.bridge.len() <= 15);
        assert!(!n.isolated);
        assert!(create(t.path(), "dev").is_err(), "no second create");
        assert_eq!(find(t.path(), "dev").unwrap(), n);
        assert_eq!(list(t.path()), vec![n]);
        assert!(find(t.path(), "nope").is_err());
        assert!(find(t.path(), DEFAULT).unwrap().isolated);
    }
}
