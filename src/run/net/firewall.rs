//! NAT and published ports, in locker's own nftables table `ip locker`, through the
//! `nft` tool (Debian's nftables package; a documented dependency).
//!
//! The table's rules are fixed; what changes are set and map elements, so nothing ever
//! needs a rule handle and removal is by key:
//! - set `subnets`: every locker network; its containers are masqueraded on the way out;
//! - maps `tcp_any`/`udp_any` (host port -> container address . port) for `-p PORT:…`
//!   and `-p 0.0.0.0:PORT:…`, and `tcp_at`/`udp_at` (host address . port -> …) for
//!   `-p IP:PORT:…`, looked up in prerouting (from outside) and output (from the host
//!   itself, 127.0.0.1 included) for packets addressed to the host.
//!
//! - chain `guard` (prerouting, before conntrack and DNAT): nothing addressed to
//!   127.0.0.0/8 enters from anywhere but `lo`. Without it a neighbour on the LAN
//!   could reach ports published on 127.0.0.1 (DNAT runs before the kernel's martian
//!   check), and a container with NET_RAW the host's loopback services (the bridges
//!   have route_localnet, which loopback-published ports need).
//! - chain `forward`: nothing new enters a bridge unless it was DNAT'd to a published
//!   port (a neighbour routing to 10.89.0.0/16 through the host reaches no unpublished
//!   port); no routing between locker networks (a container reaches another
//!   network's containers only through ports they publish: DNAT'd traffic passes).
//!   With br_netfilter (Docker's hosts, this one) bridged packets come through here
//!   too, with the bridge as both interfaces: a named network's own traffic passes by
//!   the set `same_bridge` (one element per named network); the default network's
//!   bridge is not in it (its ports are isolated anyway).
//!
//! - hairpin: a container reaching a published port through a host address (another
//!   container's, or its own). From a named network it is DNAT'd back into a locker
//!   subnet, and that leg is masqueraded to the bridge's address, so the reply comes
//!   back through the host and un-NATs there (without br_netfilter the neighbour would
//!   answer straight over the bridge, from an address the client never dialled). From
//!   the default network it is not DNAT'd at all (`ports` returns for locker0): the
//!   DNAT'd frame would be bridged between two isolated ports and dropped; the
//!   published port's own socket relays it instead (proxy.rs).
//!
//! `nft` is run only when a network comes up, and twice for a run with `-p` (add, then
//! delete its elements); a plain run never calls it.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use super::NetError;

const TABLE: &str = "\
add table ip locker
add chain ip locker prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain ip locker output { type nat hook output priority -100; policy accept; }
add chain ip locker postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip locker ports
add chain ip locker guard { type filter hook prerouting priority raw; policy accept; }
add chain ip locker forward { type filter hook forward priority filter; policy accept; }
add set ip locker subnets { type ipv4_addr; flags interval; }
add set ip locker same_bridge { type ifname . ifname; }
add map ip locker tcp_any { type inet_service : ipv4_addr . inet_service; }
add map ip locker udp_any { type inet_service : ipv4_addr . inet_service; }
add map ip locker tcp_at { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
add map ip locker udp_at { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
flush chain ip locker prerouting
flush chain ip locker output
flush chain ip locker postrouting
flush chain ip locker ports
flush chain ip locker guard
flush chain ip locker forward
add rule ip locker prerouting fib daddr type local jump ports
add rule ip locker guard iifname != \"lo\" ip daddr 127.0.0.0/8 drop
add rule ip locker output fib daddr type local jump ports
add rule ip locker ports iifname \"locker0\" return
add rule ip locker ports meta l4proto tcp dnat ip to ip daddr . tcp dport map @tcp_at
add rule ip locker ports meta l4proto tcp dnat ip to tcp dport map @tcp_any
add rule ip locker ports meta l4proto udp dnat ip to ip daddr . udp dport map @udp_at
add rule ip locker ports meta l4proto udp dnat ip to udp dport map @udp_any
add rule ip locker postrouting ip saddr @subnets ip daddr != @subnets masquerade
add rule ip locker postrouting ip saddr 127.0.0.0/8 ip daddr @subnets masquerade
add rule ip locker postrouting ct status dnat ip saddr @subnets ip daddr @subnets masquerade
";

/// The forward chain's rules, the same in `ip locker` and `ip6 locker` (FAMILY).
fn forward_rules(family: &str) -> String {
    [
        "ct status dnat accept",
        "iifname . oifname @same_bridge accept",
        "iifname \"locker0\" oifname \"locker0\" drop",
        "iifname \"locker0\" oifname \"lkn-*\" drop",
        "iifname \"lkn-*\" oifname \"locker0\" drop",
        "iifname \"lkn-*\" oifname \"lkn-*\" drop",
        "oifname \"locker0\" ct state != { established, related } drop",
        "oifname \"lkn-*\" ct state != { established, related } drop",
    ]
    .iter()
    .map(|r| format!("add rule {family} locker forward {r}\n"))
    .collect()
}

/// The IPv6 twin (`ip6 locker`), for bridges with an IPv6 subnet: masquerade out of
/// them, the same guard (nothing addressed to ::1 enters but from lo) and the same
/// forward rules (nothing new enters a bridge, no routing between locker networks).
/// Ports published on every address (`-p PORT:…`) answer on the host's IPv6 addresses
/// too (maps `tcp_any`/`udp_any` to the container's IPv6 address), except ::1: the
/// kernel routes no DNAT'd loopback packet out of lo in IPv6 (no route_localnet).
const TABLE6: &str = "\
add table ip6 locker
add chain ip6 locker prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain ip6 locker output { type nat hook output priority -100; policy accept; }
add chain ip6 locker postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip6 locker ports
add chain ip6 locker guard { type filter hook prerouting priority raw; policy accept; }
add chain ip6 locker forward { type filter hook forward priority filter; policy accept; }
add set ip6 locker subnets { type ipv6_addr; flags interval; }
add set ip6 locker same_bridge { type ifname . ifname; }
add map ip6 locker tcp_any { type inet_service : ipv6_addr . inet_service; }
add map ip6 locker udp_any { type inet_service : ipv6_addr . inet_service; }
flush chain ip6 locker prerouting
flush chain ip6 locker output
flush chain ip6 locker postrouting
flush chain ip6 locker ports
flush chain ip6 locker guard
flush chain ip6 locker forward
add rule ip6 locker prerouting fib daddr type local jump ports
add rule ip6 locker output ip6 daddr != ::1 fib daddr type local jump ports
add rule ip6 locker ports iifname \"locker0\" return
add rule ip6 locker ports meta l4proto tcp dnat ip6 to tcp dport map @tcp_any
add rule ip6 locker ports meta l4proto udp dnat ip6 to udp dport map @udp_any
add rule ip6 locker guard iifname != \"lo\" ip6 daddr ::1 drop
add rule ip6 locker postrouting ip6 saddr @subnets ip6 daddr != @subnets masquerade
";

/// Anti-spoofing on bridge ports (`bridge locker`), for containers that could forge
/// frames (given NET_RAW or NET_ADMIN; without them the kernel sends only from the
/// container's own addresses): a guarded port's frames must carry its container's MAC,
/// its ARP the same MAC and its IPv4 address, its IPv4 packets that address, its IPv6
/// packets its address or a link-local (or the unspecified) one. One element per
/// guarded port in each set; nothing for a container without those capabilities.
const BRIDGE_TABLE: &str = "\
add table bridge locker
add chain bridge locker guard { type filter hook prerouting priority filter; policy accept; }
add set bridge locker guarded { type ifname; }
add set bridge locker mac_ok { type ifname . ether_addr; }
add set bridge locker v4_ok { type ifname . ipv4_addr; }
add set bridge locker v6_ok { type ifname . ipv6_addr; }
flush chain bridge locker guard
add rule bridge locker guard iifname @guarded iifname . ether saddr != @mac_ok drop
add rule bridge locker guard iifname @guarded ether type arp iifname . arp saddr ether != @mac_ok drop
add rule bridge locker guard iifname @guarded ether type arp iifname . arp saddr ip != @v4_ok drop
add rule bridge locker guard iifname @guarded ether type ip iifname . ip saddr != @v4_ok drop
add rule bridge locker guard iifname @guarded ether type ip6 ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @v6_ok drop
";

/// One guarded bridge port: the host end of a container's veth and what may come in
/// through it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PortGuard {
    pub veth: String,
    pub mac: [u8; 6],
    pub v4: Ipv4Addr,
    pub v6: Option<Ipv6Addr>,
}

impl PortGuard {
    fn elements(&self, verb: &str) -> String {
        let v = &self.veth;
        let m = self.mac.map(|b| format!("{b:02x}")).join(":");
        let mut s = format!(
            "{verb} element bridge locker guarded {{ \"{v}\" }}\n\
             {verb} element bridge locker mac_ok {{ \"{v}\" . {m} }}\n\
             {verb} element bridge locker v4_ok {{ \"{v}\" . {} }}\n",
            self.v4
        );
        if let Some(a6) = self.v6 {
            s.push_str(&format!(
                "{verb} element bridge locker v6_ok {{ \"{v}\" . {a6} }}\n"
            ));
        }
        s
    }
}

/// Guards `g`'s port (before its veth is up: no frame passes unchecked).
pub(crate) fn guard_port(g: &PortGuard) -> Result<(), NetError> {
    nft(
        &format!("{BRIDGE_TABLE}{}", g.elements("add")),
        &format!("guard bridge port {}", g.veth),
    )
}

/// Forgets `g`'s port (its veth is gone or going).
pub(crate) fn unguard_port(g: &PortGuard) -> Result<(), NetError> {
    nft(
        &g.elements("delete"),
        &format!("forget bridge port {}", g.veth),
    )
}

/// A published port: `-p [HOSTIP:]HOSTPORT:CTRPORT[/tcp|/udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PortMap {
    /// None: every host address (0.0.0.0).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub ctr_port: u16,
    pub udp: bool,
}

impl PortMap {
    pub(crate) fn parse(s: &str) -> Result<PortMap, NetError> {
        let bad = |why: &str| {
            NetError::Usage(format!(
                "bad -p {s:?}: {why}; use [HOSTIP:]HOSTPORT:CTRPORT[/tcp|/udp], e.g. 8080:80 or 127.0.0.1:8080:80"
            ))
        };
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, "tcp")) => (a, false),
            Some((a, "udp")) => (a, true),
            Some(_) => return Err(bad("the protocol is tcp or udp")),
            None => (s, false),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (ip, hp, cp) = match parts.as_slice() {
            [hp, cp] => (None, *hp, *cp),
            [ip, hp, cp] => (Some(*ip), *hp, *cp),
            _ => return Err(bad("wrong number of fields")),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p > 0);
        let host_ip = match ip {
            None | Some("") | Some("0.0.0.0") => None,
            Some(ip) => Some(
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| bad("the host address is an IPv4 address"))?,
            ),
        };
        Ok(PortMap {
            host_ip,
            host_port: port(hp).ok_or_else(|| bad("ports are 1-65535"))?,
            ctr_port: port(cp).ok_or_else(|| bad("ports are 1-65535"))?,
            udp: proto,
        })
    }

    fn proto(&self) -> &'static str {
        if self.udp {
            "udp"
        } else {
            "tcp"
        }
    }

    /// The map this port lives in and its key there: `tcp_any`/`udp_any` keyed by
    /// the host port, `tcp_at`/`udp_at` by host address . port.
    fn map_key(&self) -> (String, String) {
        match self.host_ip {
            None => (format!("{}_any", self.proto()), self.host_port.to_string()),
            Some(ip) => (
                format!("{}_at", self.proto()),
                format!("{ip} . {}", self.host_port),
            ),
        }
    }

    /// The map element (key : value) for a container at `ctr`.
    fn element(&self, ctr: Ipv4Addr) -> String {
        let (map, key) = self.map_key();
        format!(
            "add element ip locker {map} {{ {key} : {ctr} . {} }}\n",
            self.ctr_port
        )
    }

    fn key(&self) -> String {
        let (map, key) = self.map_key();
        format!("delete element ip locker {map} {{ {key} }}\n")
    }

    /// The IPv6 map element for a container at `ctr6`: only a port published on every
    /// address has one (an IPv4 host address says which address it is published on).
    fn element6(&self, ctr6: Ipv6Addr) -> Option<String> {
        self.host_ip.is_none().then(|| {
            format!(
                "add element ip6 locker {}_any {{ {} : {ctr6} . {} }}\n",
                self.proto(),
                self.host_port,
                self.ctr_port
            )
        })
    }

    fn key6(&self) -> Option<String> {
        self.host_ip.is_none().then(|| {
            format!(
                "delete element ip6 locker {}_any {{ {} }}\n",
                self.proto(),
                self.host_port
            )
        })
    }
}

impl std::fmt::Display for PortMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(
            f,
            "{ip}:{}:{}/{}",
            self.host_port,
            self.ctr_port,
            self.proto()
        )
    }
}

fn nft(script: &str, what: &str) -> Result<(), NetError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                NetError::Usage(
                    "nft not found: install the nftables package (apt-get install nftables), or use --net none/host"
                        .into(),
                )
            } else {
                NetError::Io {
                    what: "run nft".into(),
                    source: e,
                }
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| NetError::Io {
        what: "run nft".into(),
        source: e,
    })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let first = msg
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return Err(NetError::Firewall {
            what: what.into(),
            detail: first.to_string(),
        });
    }
    Ok(())
}

/// The tables (idempotent) and NAT for `subnet` (and the IPv6 `/64` `subnet6`) on
/// `bridge`; `isolated`: no traffic between the bridge's own ports either.
pub(crate) fn add_network(
    subnet: Ipv4Addr,
    subnet6: Option<Ipv6Addr>,
    bridge: &str,
    isolated: bool,
) -> Result<(), NetError> {
    nft(
        &network_script(subnet, subnet6, bridge, isolated),
        &format!("set up NAT for {subnet}/24"),
    )
}

fn network_script(
    subnet: Ipv4Addr,
    subnet6: Option<Ipv6Addr>,
    bridge: &str,
    isolated: bool,
) -> String {
    let mut s = format!(
        "{TABLE}{}add element ip locker subnets {{ {subnet}/24 }}\n",
        forward_rules("ip")
    );
    if !isolated {
        s.push_str(&format!(
            "add element ip locker same_bridge {{ \"{bridge}\" . \"{bridge}\" }}\n"
        ));
    }
    if let Some(s6) = subnet6 {
        s.push_str(TABLE6);
        s.push_str(&forward_rules("ip6"));
        s.push_str(&format!("add element ip6 locker subnets {{ {s6}/64 }}\n"));
        if !isolated {
            s.push_str(&format!(
                "add element ip6 locker same_bridge {{ \"{bridge}\" . \"{bridge}\" }}\n"
            ));
        }
    }
    s
}

pub(crate) fn remove_network(
    subnet: Ipv4Addr,
    subnet6: Option<Ipv6Addr>,
    bridge: &str,
) -> Result<(), NetError> {
    if let Some(s6) = subnet6 {
        let _ = nft(
            &format!("delete element ip6 locker same_bridge {{ \"{bridge}\" . \"{bridge}\" }}\n"),
            "forget the bridge",
        );
        let _ = nft(
            &format!("delete element ip6 locker subnets {{ {s6}/64 }}\n"),
            &format!("remove NAT for {s6}/64"),
        );
    }
    let _ = nft(
        &format!("delete element ip locker same_bridge {{ \"{bridge}\" . \"{bridge}\" }}\n"),
        "forget the bridge",
    );
    nft(
        &format!("delete element ip locker subnets {{ {subnet}/24 }}\n"),
        &format!("remove NAT for {subnet}/24"),
    )
}

/// Publishes `ports` to the container at `ctr` (and `ctr6`, its IPv6 address when it
/// has one), all or nothing.
pub(crate) fn publish(
    ports: &[PortMap],
    ctr: Ipv4Addr,
    ctr6: Option<Ipv6Addr>,
) -> Result<(), NetError> {
    if ports.is_empty() {
        return Ok(());
    }
    let script: String = ports
        .iter()
        .flat_map(|p| [Some(p.element(ctr)), ctr6.and_then(|a| p.element6(a))])
        .flatten()
        .collect();
    nft(&script, "publish ports")
}

/// Withdraws `ports` (each on its own: one already gone does not keep the rest), with
/// their IPv6 elements when `v6` (publish made both in one transaction).
pub(crate) fn unpublish(ports: &[PortMap], v6: bool) -> Result<(), NetError> {
    let mut first_err = None;
    for p in ports {
        let mut script = p.key();
        if v6 {
            script.extend(p.key6());
        }
        if let Err(e) = nft(&script, &format!("withdraw port {p}")) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Whether `nft get element FAMILY locker MAP { KEY }` shows the value `ours`.
fn element_is(family: &str, map: &str, key: &str, ours: &str) -> bool {
    Command::new("nft")
        .args([
            "get",
            "element",
            family,
            "locker",
            map,
            &format!("{{ {key} }}"),
        ])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(ours))
}

/// Withdraws those of `ports` that still lead to `ctr` (or `ctr6`): a killed run's
/// ports, which a later container may have published again.
pub(crate) fn unpublish_if_to(ports: &[PortMap], ctr: Ipv4Addr, ctr6: Option<Ipv6Addr>) {
    for p in ports {
        let (map, key) = p.map_key();
        if element_is("ip", &map, &key, &format!("{ctr} . {}", p.ctr_port)) {
            let _ = nft(&p.key(), "withdraw a stale port");
        }
        if let (Some(a6), Some(del)) = (ctr6, p.key6()) {
            let map = format!("{}_any", p.proto());
            let ours = format!("{a6} . {}", p.ctr_port);
            if element_is("ip6", &map, &p.host_port.to_string(), &ours) {
                let _ = nft(&del, "withdraw a stale port");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ports() {
        let p = PortMap::parse("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.ctr_port, p.udp),
            (None, 8080, 80, false)
        );
        let p = PortMap::parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert!(p.udp);
        assert_eq!(PortMap::parse("0.0.0.0:1:2/tcp").unwrap().host_ip, None);
        for bad in [
            "80",
            "a:80",
            "0:80",
            "70000:80",
            "1.2.3:80:80",
            "80:80/sctp",
            "1:2:3:4",
        ] {
            let e = PortMap::parse(bad).unwrap_err().to_string();
            assert!(e.contains("HOSTPORT:CTRPORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn ipv6_table_only_with_an_ipv6_subnet() {
        let v4 = Ipv4Addr::new(10, 89, 0, 0);
        let s = network_script(v4, None, "locker0", true);
        assert!(!s.contains("ip6"), "{s}");
        let s6: Ipv6Addr = "fd12:3456:789a:1::".parse().unwrap();
        let s = network_script(v4, Some(s6), "lkn-1", false);
        assert!(s.contains("add element ip6 locker subnets { fd12:3456:789a:1::/64 }"));
        assert!(s.contains("add element ip6 locker same_bridge { \"lkn-1\" . \"lkn-1\" }"));
        assert!(s.contains("ip6 daddr ::1 drop"));
        for fam in ["ip", "ip6"] {
            assert!(s.contains(&format!(
                "add rule {fam} locker forward oifname \"locker0\" ct state != {{ established, related }} drop\n"
            )));
        }
    }

    #[test]
    fn port_guard_elements() {
        let mut g = PortGuard {
            veth: "lk0123456789ab".into(),
            mac: [0x02, 0, 0, 0, 0xab, 1],
            v4: Ipv4Addr::new(10, 89, 0, 2),
            v6: None,
        };
        let add = g.elements("add");
        assert!(add.contains(
            "add element bridge locker mac_ok { \"lk0123456789ab\" . 02:00:00:00:ab:01 }"
        ));
        assert!(add.contains("add element bridge locker v4_ok { \"lk0123456789ab\" . 10.89.0.2 }"));
        assert!(!add.contains("v6_ok"));
        g.v6 = Some("fd00:1:2:3::2".parse().unwrap());
        let del = g.elements("delete");
        assert!(del
            .contains("delete element bridge locker v6_ok { \"lk0123456789ab\" . fd00:1:2:3::2 }"));
        assert_eq!(del.lines().count(), 4);
    }

    #[test]
    fn elements_and_keys() {
        let ctr = Ipv4Addr::new(10, 89, 0, 2);
        let p = PortMap::parse("8080:80").unwrap();
        assert_eq!(
            p.element(ctr),
            "add element ip locker tcp_any { 8080 : 10.89.0.2 . 80 }\n"
        );
        assert_eq!(p.key(), "delete element ip locker tcp_any { 8080 }\n");
        let p = PortMap::parse("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(
            p.element(ctr),
            "add element ip locker udp_at { 127.0.0.1 . 53 : 10.89.0.2 . 53 }\n"
        );
        assert_eq!(p.to_string(), "127.0.0.1:53:53/udp");
        // IPv6: only a port published on every address, in the ip6 table.
        let a6: Ipv6Addr = "fd00:1:2:3::2".parse().unwrap();
        assert_eq!(p.element6(a6), None);
        let p = PortMap::parse("8080:80").unwrap();
        assert_eq!(
            p.element6(a6).unwrap(),
            "add element ip6 locker tcp_any { 8080 : fd00:1:2:3::2 . 80 }\n"
        );
        assert_eq!(
            p.key6().unwrap(),
            "delete element ip6 locker tcp_any { 8080 }\n"
        );
    }
}
