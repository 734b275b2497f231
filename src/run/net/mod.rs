//! A container's network on a bridge: plan before the clone, wire up after it.
//!
//! `prepare` (before the clone, in the host's namespace): the network's bridge and NAT
//! are up, the container has a lease on an address, its published ports are reserved
//! (bound here, so a port another program holds is refused with one line, and nothing
//! can take it while the container runs), and its resolv.conf is chosen.
//! `attach` (after the clone, before the child is released): a veth pair whose peer is
//! made directly in the child's namespace as eth0, the host end on the bridge (an
//! isolated port on the default network); then, through a netlink socket opened inside
//! the child's namespace, lo and eth0 up, the address and the default route (and their
//! IPv6 twins when the bridge has an IPv6 subnet); the DNS
//! forwarder's socket when one is needed; the port map.
//! Teardown (`Attached::drop`): the ports withdrawn, the lease released. The veth goes
//! with the namespace (the kernel frees it moments after the last process), whatever
//! ends the run; what a SIGKILL leaves (a lease, map
//! elements) is recorded in the state file and undone by `release_stale`.

pub(crate) mod dns;
pub(crate) mod firewall;
pub(crate) mod netlink;
pub(crate) mod network;
pub(crate) mod proxy;
pub(crate) mod slirp;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;

pub(crate) use firewall::PortMap;
pub(crate) use network::Network;

use netlink::{NetlinkError, Rtnl};
use network::{Lease, Up};

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft: {what}: {detail}")]
    Firewall { what: String, detail: String },
    #[error("slirp4netns: {what}: {detail}")]
    Slirp { what: String, detail: String },
    #[error(
        "-p {port}: host port {host} is already in use; choose another host port (-p OTHER:{ctr})"
    )]
    PortTaken {
        port: PortMap,
        host: SocketAddr,
        ctr: u16,
    },
}

/// How many TCP connections the host-side relays serve at once, per container: DNS
/// over TCP (a resolver holds one or two), and each published port's hairpin (4
/// descriptors each, in a process whose descriptor limit is the caller's).
const DNS_TCP_LIMIT: usize = 16;
const HAIRPIN_LIMIT: usize = 128;

/// What a container on a bridge needs, made before the clone.
pub(crate) struct Prepared {
    rt: Rtnl,
    up: Up,
    lease: Lease,
    ports: Vec<PortMap>,
    /// Bound sockets holding the published host ports (TCP ones become hairpin
    /// relays once the container is attached).
    reserved: Vec<(PortMap, Reservation)>,
    pub resolvers: dns::Resolvers,
    pub resolv_conf: String,
    /// The host end of the veth (named before the clone, so the state file has it).
    host_if: String,
    /// Anti-spoofing for the bridge port, when the container could forge frames.
    pub guard: Option<firewall::PortGuard>,
}

enum Reservation {
    Tcp(TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
    /// [::]:PORT of a port published on every address, on a bridge with IPv6.
    Tcp6(TcpListener),
    Udp6(#[allow(dead_code)] UdpSocket),
}

/// The IPv6 twin of `reserve` for a port published on every address (None for one on
/// a given IPv4 address).
fn reserve6(p: &PortMap) -> Result<Option<Reservation>, NetError> {
    if p.host_ip.is_some() {
        return Ok(None);
    }
    match crate::run::sys::bind_v6only(p.host_port, p.udp) {
        Ok(fd) if p.udp => Ok(Some(Reservation::Udp6(UdpSocket::from(fd)))),
        Ok(fd) => Ok(Some(Reservation::Tcp6(TcpListener::from(fd)))),
        Err(libc::EADDRINUSE) => Err(NetError::PortTaken {
            port: *p,
            host: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, p.host_port)),
            ctr: p.ctr_port,
        }),
        Err(e) => Err(NetError::Io {
            what: format!("reserve host port {p} on IPv6"),
            source: std::io::Error::from_raw_os_error(e),
        }),
    }
}

fn reserve(p: &PortMap) -> Result<Reservation, NetError> {
    let addr = SocketAddr::from((p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port));
    let taken = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            NetError::PortTaken {
                port: *p,
                host: addr,
                ctr: p.ctr_port,
            }
        } else {
            NetError::Io {
                what: format!("reserve host port {p}"),
                source: e,
            }
        }
    };
    // A listening socket nobody accepts on: DNAT takes the connections first.
    if p.udp {
        UdpSocket::bind(addr).map(Reservation::Udp).map_err(taken)
    } else {
        TcpListener::bind(addr).map(Reservation::Tcp).map_err(taken)
    }
}

/// Everything `attach` needs, before the clone. `forges`: the container can forge
/// frames (NET_RAW or NET_ADMIN), so its bridge port is guarded (firewall.rs).
pub(crate) fn prepare(
    net: &Network,
    id: &str,
    name: Option<&str>,
    ports: &[PortMap],
    dns_servers: &[IpAddr],
    host_resolv: &str,
    forges: bool,
) -> Result<Prepared, NetError> {
    let mut rt = Rtnl::new()?;
    let up = network::ensure_up(&mut rt, net)?;
    let mut reserved = Vec::new();
    for p in ports {
        reserved.push((*p, reserve(p)?));
        if up.gateway6.is_some() {
            reserved.extend(reserve6(p)?.map(|r| (*p, r)));
        }
    }
    let lease = network::lease(&up, id, name, ports)?;
    let stub = fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
    let resolvers = dns::choose(dns_servers, host_resolv, stub.as_deref());
    let resolv_conf = dns::resolv_conf(&resolvers, host_resolv);
    // A fresh name each run: the previous run's pair (a restart, `start` of the
    // same container) may still be waiting for its namespace's teardown.
    let random = crate::run::sys::random_bytes::<12>().map_err(|e| NetError::Io {
        what: "getrandom".into(),
        source: std::io::Error::from_raw_os_error(e),
    })?;
    let host_if = format!("lk{}", hex::encode(&random[..6]));
    let guard = forges.then(|| {
        // A locally administered unicast address for the container's eth0.
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&random[6..]);
        mac[0] = (mac[0] & 0xfe) | 0x02;
        firewall::PortGuard {
            veth: host_if.clone(),
            mac,
            v4: lease.addr,
            v6: up.addr6(lease.addr),
        }
    });
    Ok(Prepared {
        rt,
        up,
        lease,
        ports: ports.to_vec(),
        reserved,
        resolvers,
        resolv_conf,
        host_if,
        guard,
    })
}

impl Prepared {
    pub(crate) fn addr(&self) -> Ipv4Addr {
        self.lease.addr
    }

    /// Its IPv6 address, when the bridge has IPv6.
    pub(crate) fn addr6(&self) -> Option<std::net::Ipv6Addr> {
        self.up.addr6(self.lease.addr)
    }

    pub(crate) fn lease_path(&self) -> &std::path::Path {
        self.lease.path()
    }

    /// The shared hosts file of a named network (refreshed with this container in it).
    pub(crate) fn shared_hosts(&self) -> Result<Option<std::path::PathBuf>, NetError> {
        if self.up.net.isolated {
            return Ok(None);
        }
        network::refresh_hosts(&self.up.net).map(Some)
    }

    /// Wires the container (PID `pid`, not yet released) to the network.
    pub(crate) fn attach(mut self, pid: i32) -> Result<Attached, NetError> {
        let host_if = self.host_if.clone();
        let mac = self.guard.as_ref().map(|g| g.mac);
        self.rt
            .add_veth(&host_if, "eth0", pid, mac, self.up.bridge_index)?;
        // Guarded before it is up: no frame of this port passes unchecked.
        let mut guarded = None;
        if let Some(g) = &self.guard {
            firewall::guard_port(g)?;
            guarded = Some(g.clone());
        }
        let guarded = Guarded(guarded);
        self.rt.port_up(&host_if, self.up.net.isolated)?;

        let ns_path = format!("/proc/{pid}/ns/net");
        let ns = fs::File::open(&ns_path).map_err(|e| NetError::Io {
            what: format!("open {ns_path}"),
            source: e,
        })?;
        let (inner, forwarder) = in_netns(&ns, || -> Result<_, NetError> {
            let mut inner = Rtnl::new()?;
            inner.set_up(1)?; // lo is always index 1 in a new namespace
                              // When eth0 comes up it announces its addresses (a gratuitous ARP, an
                              // unsolicited neighbour advertisement): an address a container that just
                              // ended had leaves the host's neighbour entry on that one's MAC, which
                              // would otherwise hold for up to 45 s (netavark sets the same).
            for (key, required) in [
                ("net/ipv4/conf/eth0/arp_notify", true),
                ("net/ipv6/conf/eth0/ndisc_notify", false),
            ] {
                let path = std::path::Path::new("/proc/sys").join(key);
                match fs::write(&path, b"1") {
                    Ok(()) => {}
                    Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(NetError::Io {
                            what: format!("write {}", path.display()),
                            source: e,
                        })
                    }
                }
            }
            let forwarder = match &self.resolvers {
                dns::Resolvers::Forward(_) => {
                    Some(dns::bind_forwarder().map_err(|e| NetError::Io {
                        what: "bind the DNS forwarder on 127.0.0.11:53".into(),
                        source: e,
                    })?)
                }
                dns::Resolvers::Direct(_) => None,
            };
            Ok((inner, forwarder))
        })??;
        let mut inner = inner;
        let eth0 = inner
            .link_index("eth0")?
            .ok_or_else(|| NetError::Usage("eth0 missing in the container".into()))?;
        inner.add_address(eth0, self.lease.addr, network::PREFIX)?;
        let v6 = self.up.addr6(self.lease.addr).zip(self.up.gateway6);
        if let Some((a6, _)) = v6 {
            inner.add_address6(eth0, a6, network::PREFIX6)?;
        }
        inner.set_up(eth0)?;
        inner.add_default_route(self.up.gateway)?;
        if let Some((_, g6)) = v6 {
            inner.add_default_route(g6)?;
        }
        let mut relays = Vec::new();
        let relay_err = |what: &str| {
            let what = what.to_string();
            move |source| NetError::Io { what, source }
        };
        if let (Some((sock, tcp)), dns::Resolvers::Forward(up)) = (forwarder, &self.resolvers) {
            dns::spawn_forwarder(sock, up[0]).map_err(relay_err("start the DNS forwarder"))?;
            relays.push(
                proxy::spawn(
                    tcp,
                    |_| true,
                    DNS_TCP_LIMIT,
                    "dns-tcp",
                    dns::tcp_queries((up[0], 53).into()),
                )
                .map_err(relay_err("start the DNS forwarder"))?,
            );
        }
        // Hairpin: locker0's containers dialling a published TCP port reach its
        // reserved socket (firewall.rs leaves their packets un-DNAT'd); relay them.
        let addr = self.lease.addr;
        let addr6 = self.up.addr6(addr);
        for (p, r) in std::mem::take(&mut self.reserved) {
            let (listener, target, allow): (_, SocketAddr, fn(IpAddr) -> bool) = match (r, addr6) {
                (Reservation::Tcp(l), _) => (l, (addr, p.ctr_port).into(), network::in_pool),
                (Reservation::Tcp6(l), Some(a6)) => (l, (a6, p.ctr_port).into(), network::is_ula),
                (udp, _) => {
                    self.reserved.push((p, udp));
                    continue;
                }
            };
            relays.push(
                proxy::spawn(listener, allow, HAIRPIN_LIMIT, "hairpin", proxy::to(target))
                    .map_err(relay_err("start the hairpin relay"))?,
            );
        }
        let mut attached = Attached {
            prepared: Some(self),
            published: false,
            _relays: relays,
            _guarded: guarded,
        };
        let p = attached.prepared.as_ref().expect("set above");
        firewall::publish(&p.ports, p.lease.addr, p.up.addr6(p.lease.addr))?;
        attached.published = true;
        Ok(attached)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.lease.release();
        if !self.up.net.isolated {
            let _ = network::refresh_hosts(&self.up.net);
        }
    }
}

/// A wired container; dropping it withdraws its ports and releases its address.
///
/// The veth pair is not deleted here: it goes with the container's network namespace
/// once its last process is gone (the kernel's cleanup_net, moments later, off this
/// process's path). An RTM_DELLINK here would wait on that same cleanup for the rtnl
/// lock: 20 ms per run, measured.
pub(crate) struct Attached {
    prepared: Option<Prepared>,
    published: bool,
    /// The hairpin and DNS-over-TCP relays (stopped on drop).
    _relays: Vec<proxy::Relay>,
    _guarded: Guarded,
}

/// A guarded bridge port's elements, deleted on drop (the veth goes with the
/// namespace; its name is never reused, but the sets should not grow).
struct Guarded(Option<firewall::PortGuard>);

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            let _ = firewall::unguard_port(&g);
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(p) = self.prepared.take() {
            if self.published {
                let _ = firewall::unpublish(&p.ports, p.up.addr6(p.lease.addr).is_some());
            }
            drop(p);
        }
    }
}

/// Runs `f` with this thread in the network namespace `ns`, then returns to its own.
fn in_netns<T>(ns: &fs::File, f: impl FnOnce() -> T) -> Result<T, NetError> {
    let home_path = "/proc/thread-self/ns/net";
    let home = fs::File::open(home_path).map_err(|e| NetError::Io {
        what: format!("open {home_path}"),
        source: e,
    })?;
    let enter = |f: &fs::File, what: &str| {
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            NetError::Io {
                what: what.into(),
                source: e.into(),
            }
        })
    };
    enter(ns, "enter the container's network namespace")?;
    let r = f();
    // Never stay in the container's namespace, whatever `f` did.
    enter(&home, "return to the host's network namespace")?;
    Ok(r)
}

/// What a killed run (container `id`) left: its published ports and its lease, only
/// while the lease is still its own. A container (of any store) that took the address
/// over has withdrawn the dead one's ports already (network::lease), and its own ports
/// lead to the same address: they are not this run's to remove.
pub(crate) fn release_stale(id: &str, n: &crate::run::state::NetState) {
    let held = fs::read_to_string(&n.lease).unwrap_or_default();
    if held.split_whitespace().nth(2) != Some(id) {
        return;
    }
    firewall::unpublish_if_to(&n.ports, n.addr, n.addr6);
    if let Some(g) = &n.guard {
        let _ = firewall::unguard_port(g);
    }
    let _ = fs::remove_file(&n.lease);
    // A named network's members list loses the dead one.
    if let Some(dir) = n.lease.parent() {
        if dir.join("hosts").exists() {
            let _ = network::refresh_hosts_at(dir);
        }
    }
}
