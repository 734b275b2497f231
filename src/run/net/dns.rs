//! The container's /etc/resolv.conf on a private network, and the forwarder it needs
//! when the host's only resolvers are loopback addresses.
//!
//! Docker's rules: the host's name servers when they are reachable from another network
//! namespace (not 127.0.0.0/8 or ::1); for a loopback stub (systemd-resolved's
//! 127.0.0.53) its upstream list in /run/systemd/resolve/resolv.conf; failing both, a
//! forwarder: a UDP socket on the container's own 127.0.0.11:53 (Docker's embedded DNS
//! address), served by a thread of the `locker run` process, which passes each query to
//! the host's resolver and the answer back; and a TCP socket on the same address whose
//! connections pass queries to the host's resolver's port 53 (proxy.rs serves them).
//! Only DNS queries pass, each checked (`is_query`), one answer back for each: the
//! resolver is a service on the host's loopback, and the container reaches it for
//! names, not as a byte pipe. `search` and `options` lines are kept.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
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
        if !is_query(&buf[..n]) || out.send(&buf[..n]).is_err() {
            continue;
        }
        // Skip stale answers (an earlier query that timed out) by id.
        for _ in 0..4 {
            match out.recv(&mut ans) {
                Ok(m) if answers(&buf[..n], &ans[..m]) => {
                    let _ = inside.send_to(&ans[..m], from);
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
}

/// A DNS query and nothing else (RFC 1035 4.1): a header with QR clear (a question,
/// not an answer), opcode QUERY, one question, no answer or authority records, at most
/// one additional record and that an EDNS OPT (RFC 6891) with at most
/// `MAX_EDNS_OPTIONS` bytes of options; the question's name is labels of at most 63
/// bytes ending at the root; the message ends where they do. No byte rides along.
pub(crate) fn is_query(m: &[u8]) -> bool {
    let u16_at = |i: usize| m.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    if m.len() < 12 || m[2] & 0x80 != 0 || (m[2] >> 3) & 0x0f != 0 {
        return false;
    }
    let (qd, an, ns, ar) = (u16_at(4), u16_at(6), u16_at(8), u16_at(10));
    if qd != Some(1) || an != Some(0) || ns != Some(0) || ar.is_none_or(|a| a > 1) {
        return false;
    }
    // QNAME: labels (no compression pointers in a question), then QTYPE and QCLASS.
    let mut i = 12;
    loop {
        let Some(&l) = m.get(i) else { return false };
        i += 1;
        if l == 0 {
            break;
        }
        if l > 63 || i + l as usize > m.len() {
            return false;
        }
        i += l as usize;
    }
    i += 4;
    if ar == Some(1) {
        // OPT: root name, TYPE 41, CLASS, TTL, RDLENGTH, then the options.
        if m.get(i) != Some(&0) || u16_at(i + 1) != Some(41) {
            return false;
        }
        let Some(rdlen) = u16_at(i + 9) else {
            return false;
        };
        if rdlen as usize > MAX_EDNS_OPTIONS {
            return false;
        }
        i += 11 + rdlen as usize;
    }
    i == m.len()
}

/// EDNS options a query may carry (a cookie is at most 40 bytes, padding a few).
const MAX_EDNS_OPTIONS: usize = 64;

/// How long a TCP client may sit between queries, and the resolver on an answer.
const TCP_IDLE: Duration = Duration::from_secs(30);

/// A `serve` for proxy::spawn: DNS over TCP (RFC 7766: each message after its two-byte
/// length) with `upstream`, a query at a time; anything but a query ends the
/// connection, and nothing reaches the resolver before the first query has passed.
pub(crate) fn tcp_queries(upstream: SocketAddr) -> impl Fn(TcpStream) + Clone + Send + 'static {
    move |mut conn| {
        let _ = conn.set_read_timeout(Some(TCP_IDLE));
        let mut up: Option<TcpStream> = None;
        while let Some(q) = read_message(&mut conn).filter(|q| is_query(q)) {
            if up.is_none() {
                let Ok(s) = TcpStream::connect_timeout(&upstream, super::proxy::CONNECT_LIMIT)
                else {
                    return;
                };
                let _ = s.set_read_timeout(Some(TCP_IDLE));
                up = Some(s);
            }
            let s = up.as_mut().expect("connected above");
            let Some(answer) = write_message(s, &q)
                .and_then(|()| read_message(s))
                .filter(|a| answers(&q, a))
            else {
                return;
            };
            if write_message(&mut conn, &answer).is_none() {
                return;
            }
        }
    }
}

/// Whether `a` is an answer to the query `q`: QR set, the same id and opcode.
fn answers(q: &[u8], a: &[u8]) -> bool {
    a.len() >= 12 && a[..2] == q[..2] && a[2] & 0x80 != 0 && (a[2] >> 3) & 0x0f == 0
}

fn read_message(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut m).ok()?;
    Some(m)
}

fn write_message(s: &mut TcpStream, m: &[u8]) -> Option<()> {
    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(m);
    s.write_all(&framed).ok()
}

/// The forwarder's socket, bound on 127.0.0.11:53 in the current network namespace.
pub(crate) fn bind_forwarder() -> std::io::Result<(UdpSocket, std::net::TcpListener)> {
    let s = UdpSocket::bind((FORWARDER, 53))?;
    // Not inherited by the container: only this process serves it.
    debug_assert!(s.as_raw_fd() > 2);
    // TCP too (answers too big for UDP, resolvers set to use-vc): queries only.
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

    /// A query for `example.test` A, id 0x1234.
    fn query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x04test\x00\x00\x01\x00\x01");
        q
    }

    #[test]
    fn only_queries_are_queries() {
        assert!(is_query(&query()));
        let mut answer = query();
        answer[2] |= 0x80;
        assert!(!is_query(&answer), "QR set: an answer");
        let mut update = query();
        update[2] = 5 << 3;
        assert!(!is_query(&update), "opcode UPDATE");
        let mut two = query();
        two[5] = 2;
        assert!(!is_query(&two), "two questions");
        assert!(!is_query(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(!is_query(&query()[..11]));
        assert!(!is_query(&query()[..query().len() - 1]), "cut short");
        // A payload riding after the question, or in records a query has no use for.
        let mut trailing = query();
        trailing.extend_from_slice(b"GET /admin HTTP/1.0\r\n\r\n");
        assert!(!is_query(&trailing));
        let mut answers = query();
        answers[7] = 5;
        assert!(!is_query(&answers), "answer records in a query");
        // EDNS: an OPT record with a cookie passes; with a big payload it does not.
        let opt = |len: u16| {
            let mut q = query();
            q[11] = 1;
            q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
            q.extend_from_slice(&len.to_be_bytes());
            q.extend(std::iter::repeat_n(0u8, len as usize));
            q
        };
        assert!(is_query(&opt(12)));
        assert!(!is_query(&opt(1000)));
        let mut opt_trailing = opt(12);
        opt_trailing.push(b'x');
        assert!(!is_query(&opt_trailing));
    }

    /// A TCP "resolver" on 127.0.0.1 and the served relay's address.
    fn served() -> (
        std::net::TcpListener,
        SocketAddr,
        super::super::proxy::Relay,
    ) {
        let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let relay = super::super::proxy::spawn(
            l,
            |_| true,
            4,
            "test-dns",
            tcp_queries(up.local_addr().unwrap()),
        )
        .unwrap();
        (up, addr, relay)
    }

    #[test]
    fn tcp_queries_pass_and_answers_return() {
        let (up, addr, _relay) = served();
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write_message(&mut c, &query()).unwrap();
        let (mut s, _) = up.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(read_message(&mut s).unwrap(), query());
        let mut answer = query();
        answer[2] |= 0x80;
        write_message(&mut s, &answer).unwrap();
        assert_eq!(read_message(&mut c).unwrap(), answer);
    }

    /// Attack: the container speaks another protocol to the host's loopback resolver
    /// port through the forwarder. Control: tcp_queries_pass_and_answers_return.
    #[test]
    fn tcp_non_queries_never_reach_the_resolver() {
        let (up, addr, _relay) = served();
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /admin HTTP/1.0\r\n\r\n").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        assert!(
            matches!(c.read_to_end(&mut rest), Ok(0)),
            "closed, nothing back"
        );
        // A framed message that is an answer, not a query: closed too.
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = query();
        answer[2] |= 0x80;
        write_message(&mut c, &answer).unwrap();
        assert!(matches!(c.read_to_end(&mut rest), Ok(0)));
        up.set_nonblocking(true).unwrap();
        assert!(up.accept().is_err(), "the resolver was dialled");
    }
}
