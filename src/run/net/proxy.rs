//! TCP relays served by threads of the `locker run` process, for the two paths the
//! kernel's NAT cannot serve:
//! - hairpin on the default network: a container dialling a published port through a
//!   host address. DNAT would turn that into a bridged frame from one isolated bridge
//!   port to another (br_netfilter bridges a DNAT'd packet whose new destination is on
//!   the bridge it came from), which port isolation drops; so the `ports` chain leaves
//!   locker0's packets alone, they reach the published port's reserved socket, and its
//!   relay dials the container from the host (as Docker's userland proxy does).
//! - DNS over TCP through the forwarder (dns.rs): the container's 127.0.0.11:53 TCP
//!   socket, whose connections pass DNS queries, and nothing else, to the host's
//!   resolver.
//!
//! A relay accepts on its listener until dropped (shutdown wakes the accept), and
//! serves each connection from a thread of its own. It serves at most `limit` at once
//! and closes the rest at once: the relay's descriptors and threads are the host-side
//! process's, outside the container's limits, so the container must not be able to
//! use them up.

use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a relay waits for its target to answer a connect.
pub(crate) const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// A listener's relay; dropping it stops accepting (connections already served run
/// until either side closes).
pub(crate) struct Relay {
    fd: RawFd,
    thread: Option<JoinHandle<()>>,
}

/// Serves what `listener` accepts from peers `allow` admits with `serve`, at most
/// `limit` connections at once.
pub(crate) fn spawn(
    listener: TcpListener,
    allow: fn(IpAddr) -> bool,
    limit: usize,
    name: &str,
    serve: impl Fn(TcpStream) + Clone + Send + 'static,
) -> io::Result<Relay> {
    let fd = listener.as_raw_fd();
    let busy = Arc::new(AtomicUsize::new(0));
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else {
                    // Shut down (Relay::drop), or the descriptor table is full: stop.
                    return;
                };
                if !conn.peer_addr().is_ok_and(|p| allow(p.ip())) {
                    continue;
                }
                if busy.fetch_add(1, Ordering::AcqRel) >= limit {
                    busy.fetch_sub(1, Ordering::AcqRel);
                    continue; // dropped: closed at once
                }
                let (slot, serve) = (busy.clone(), serve.clone());
                let started = std::thread::Builder::new()
                    .name("relay".into())
                    .spawn(move || {
                        serve(conn);
                        slot.fetch_sub(1, Ordering::AcqRel);
                    });
                if started.is_err() {
                    // Never ran (the connection is closed): its slot is free again.
                    busy.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(Relay {
        fd,
        thread: Some(thread),
    })
}

/// A `serve` for `spawn`: connects to `target` and copies both ways.
pub(crate) fn to(target: SocketAddr) -> impl Fn(TcpStream) + Clone + Send + 'static {
    move |conn| {
        if let Ok(up) = TcpStream::connect_timeout(&target, CONNECT_LIMIT) {
            relay(conn, up);
        }
    }
}

/// Copies `a` to `b` and `b` to `a` until both directions have ended.
fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || one_way(b2, a2));
    one_way(a, b);
    if let Ok(t) = back {
        let _ = t.join();
    }
}

fn one_way(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    // Pass the end of this direction on; the other may still be talking.
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SAFETY: shutdown on the listener's fd, owned by the accept thread until it
        // returns (which it does once accept fails, and is joined here).
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn relays_both_ways_and_stops_on_drop() {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let taddr = target.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = target.accept().unwrap();
            let mut b = String::new();
            s.read_to_string(&mut b).unwrap();
            s.write_all(format!("echo {b}").as_bytes()).unwrap();
        });
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let laddr = l.local_addr().unwrap();
        let r = spawn(l, |ip| ip.is_loopback(), 4, "test-relay", to(taddr)).unwrap();
        let mut c = TcpStream::connect(laddr).unwrap();
        c.write_all(b"hi").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "echo hi");
        echo.join().unwrap();
        drop(r);
        // The listener is shut: nothing accepts any more.
        let mut c = TcpStream::connect(laddr);
        if let Ok(c) = c.as_mut() {
            let mut b = [0u8; 1];
            assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        }
    }

    #[test]
    fn at_most_limit_connections_at_once() {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let taddr = target.local_addr().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let laddr = l.local_addr().unwrap();
        let _r = spawn(l, |ip| ip.is_loopback(), 2, "test-relay", to(taddr)).unwrap();
        // Two connections are relayed (the target sees them) and held open.
        let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(laddr).unwrap()).collect();
        let ups: Vec<TcpStream> = (0..2).map(|_| target.accept().unwrap().0).collect();
        // The third is closed at once, and never reaches the target.
        let mut third = TcpStream::connect(laddr).unwrap();
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(third.read(&mut b), Ok(0) | Err(_)));
        target.set_nonblocking(true).unwrap();
        assert!(target.accept().is_err(), "a third connection was relayed");
        target.set_nonblocking(false).unwrap();
        // One ends: its slot serves a new connection (bounded wait for the relay's
        // threads to see both ends close).
        drop(held);
        drop(ups);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Refused: closed at once (read gives 0). Relayed: held open (the read
            // times out), and the target has it.
            let mut c = TcpStream::connect(laddr).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut b = [0u8; 1];
            if c.read(&mut b).is_err() {
                target.accept().unwrap();
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no slot came free");
        }
    }

    #[test]
    fn refused_peers_get_nothing() {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let taddr = target.local_addr().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let laddr = l.local_addr().unwrap();
        let _r = spawn(l, |_| false, 4, "test-relay", to(taddr)).unwrap();
        let mut c = TcpStream::connect(laddr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        target.set_nonblocking(true).unwrap();
        assert!(target.accept().is_err(), "nothing was relayed");
    }
}
