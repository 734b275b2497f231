//! The container's /etc/resolv.conf on a private network, and the forwarder it needs
//! when the host's only resolvers are loopback addresses.
//!
//! Docker's rules: the host's name servers when they are reachable from another network
//! namespace (not 127.0.0.0/8 or ::1); for a loopback stub (systemd-resolved's
//! 127.0.0.53) its upstream list in /run/systemd/resolve/resolv.conf; failing both, a
//! forwarder: a UDP socket on the container's own 127.0.0.11:53 (Docker's embedded DNS
//! address), served by a thread of the `locker run` process, which passes each query to
//! the host's resolver and the answer back; and a TCP socket on the same address whose
//! connections are relayed to the host's resolver's port 53 (proxy.rs). `search` and
//! `options` lines are kept.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Where the container sends its queries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resolvers {
    /// Name servers the container reaches through its network.
    Direct(Vec<IpAddr>),
    /// Only loopback resolvers on the host: forward from 127.0.0.11 to these.
    Forward(Vec<IpAddr>),
}

/// The forwarder's address inside the container.
pub(crate) const FORWARDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

fn nameservers(conf: &str) -> Vec<IpAddr> {
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// Chooses the resolvers: `dns` (from --dns) wins; then the host's non-loopback ones;
/// then `stub_upstream` (systemd-resolved's list); then a forwarder to the host's.
pub(crate) fn choose(dns: &[IpAddr], host: &str, stub_upstream: Option<&str>) -> Resolvers {
    if !dns.is_empty() {
        return Resolvers::Direct(dns.to_vec());
    }
    let all = nameservers(host);
    let direct: Vec<IpAddr> = all.iter().copied().filter(|a| !a.is_loopback()).collect();
    if !direct.is_empty() {
        return Resolvers::Direct(direct);
    }
    if let Some(up) = stub_upstream {
        let up: Vec<IpAddr> = nameservers(up)
            .into_iter()
            .filter(|a| !a.is_loopback())
            .collect();
        if !up.is_empty() {
            return Resolvers::Direct(up);
        }
    }
    if all.is_empty() {
        // glibc's default with no resolv.conf: the local host.
        return Resolvers::Forward(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    }
    Resolvers::Forward(all)
}

/// The resolv.conf text for `r`, with the host's search and options lines.
pub(crate) fn resolv_conf(r: &Resolvers, host: &str) -> String {
    let mut out = String::new();
    for l in host.lines() {
        let t = l.trim_start();
        if t.starts_with("search") || t.starts_with("domain") || t.starts_with("options") {
            out.push_str(l);
            out.push('\n');
        }
    }
    match r {
        Resolvers::Direct(v) => {
            for a in v {
                out.push_str(&format!("nameserver {a}\n"));
            }
        }
        Resolvers::Forward(_) => out.push_str(&format!("nameserver {FORWARDER}\n")),
    }
    out
}

/// Serves the container's 127.0.0.11:53 (the socket `inside`, made in its namespace)
/// from a thread: each query goes to the first upstream from a host-side socket, the
/// answer back to whoever asked. Ends when the process does.
pub(crate) fn spawn_forwarder(inside: UdpSocket, upstream: IpAddr) -> std::io::Result<()> {
    let bind: SocketAddr = match upstream {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let out = UdpSocket::bind(bind)?;
    out.connect((upstream, 53))?;
    out.set_read_timeout(Some(Duration::from_secs(5)))?;
    std::thread::Builder::new()
        .name("dns-forwarder".into())
        .spawn(move || forward(&inside, &out))?;
    Ok(())
}

/// One query at a time: a container's resolver retries, and a stub answers in
/// microseconds. The query id maps each answer to its asker.
fn forward(inside: &UdpSocket, out: &UdpSocket) {
    let mut buf = [0u8; 4096];
    let mut ans = [0u8; 4096];
    loop {
        let Ok((n, from)) = inside.recv_from(&mut buf) else {
            return;
        };
        if n < 12 || out.send(&buf[..n]).is_err() {
            continue;
        }
        // Skip stale answers (an earlier query that timed out) by id.
        for _ in 0..4 {
            match out.recv(&mut ans) {
                Ok(m) if m >= 2 && ans[..2] == buf[..2] => {
                    let _ = inside.send_to(&ans[..m], from);
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
}

/// The forwarder's socket, bound on 127.0.0.11:53 in the current network namespace.
pub(crate) fn bind_forwarder() -> std::io::Result<(UdpSocket, std::net::TcpListener)> {
    let s = UdpSocket::bind((FORWARDER, 53))?;
    // Not inherited by the container: only this process serves it.
    debug_assert!(s.as_raw_fd() > 2);
    // TCP too (answers too big for UDP, resolvers set to use-vc): relayed as it is.
    let t = std::net::TcpListener::bind((FORWARDER, 53))?;
    Ok((s, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_servers_when_reachable() {
        let host =
            "search example.test\nnameserver 127.0.0.53\nnameserver 10.255.255.53\noptions edns0\n";
        let r = choose(&[], host, None);
        assert_eq!(r, Resolvers::Direct(vec![ip("10.255.255.53")]));
        assert_eq!(
            resolv_conf(&r, host),
            "search example.test\noptions edns0\nnameserver 10.255.255.53\n"
        );
    }

    #[test]
    fn dns_flag_wins() {
        let r = choose(&[ip("192.0.2.9")], "nameserver 10.0.0.1\n", None);
        assert_eq!(r, Resolvers::Direct(vec![ip("192.0.2.9")]));
    }

    #[test]
    fn loopback_stub_uses_upstream_list_or_forwards() {
        let host = "nameserver 127.0.0.53\n";
        assert_eq!(
            choose(&[], host, Some("nameserver 198.51.100.1\n")),
            Resolvers::Direct(vec![ip("198.51.100.1")])
        );
        let r = choose(&[], host, None);
        assert_eq!(r, Resolvers::Forward(vec![ip("127.0.0.53")]));
        assert_eq!(resolv_conf(&r, host), "nameserver 127.0.0.11\n");
        assert_eq!(
            choose(&[], "", None),
            Resolvers::Forward(vec![ip("127.0.0.1")])
        );
    }
}
