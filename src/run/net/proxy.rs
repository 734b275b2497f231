//! TCP relays served by threads of the `locker run` process, for the two paths the
//! kernel's NAT cannot serve:
//! - hairpin on the default network: a container dialling a published port through a
//!   host address. DNAT would turn that into a bridged frame from one isolated bridge
//!   port to another (br_netfilter bridges a DNAT'd packet whose new destination is on
//!   the bridge it came from), which port isolation drops; so the `ports` chain leaves
//!   locker0's packets alone, they reach the published port's reserved socket, and its
//!   relay dials the container from the host (as Docker's userland proxy does).
//! - DNS over TCP through the forwarder (dns.rs): the container's 127.0.0.11:53 TCP
//!   socket relays to the host's resolver (the framing is the same on both sides).
//!
//! A relay accepts on its listener until dropped (shutdown wakes the accept), each
//! connection copied both ways by two threads until either side closes.

use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a relay waits for its target to answer a connect.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// A listener's relay to `target`; dropping it stops accepting (connections already
/// relayed run until either side closes).
pub(crate) struct Relay {
    fd: RawFd,
    thread: Option<JoinHandle<()>>,
}

/// Relays what `listener` accepts from peers `allow` admits to `target`.
pub(crate) fn spawn(
    listener: TcpListener,
    target: SocketAddr,
    allow: fn(IpAddr) -> bool,
    name: &str,
) -> io::Result<Relay> {
    let fd = listener.as_raw_fd();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else {
                    // Shut down (Relay::drop), or the descriptor table is full: stop.
                    return;
                };
                if conn.peer_addr().is_ok_and(|p| allow(p.ip())) {
                    let _ = std::thread::Builder::new()
                        .name("relay".into())
                        .spawn(move || {
                            if let Ok(up) = TcpStream::connect_timeout(&target, CONNECT_LIMIT) {
                                relay(conn, up);
                            }
                        });
                }
            }
        })?;
    Ok(Relay {
        fd,
        thread: Some(thread),
    })
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
        let r = spawn(l, taddr, |ip| ip.is_loopback(), "test-relay").unwrap();
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
    fn refused_peers_get_nothing() {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let taddr = target.local_addr().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let laddr = l.local_addr().unwrap();
        let _r = spawn(l, taddr, |_| false, "test-relay").unwrap();
        let mut c = TcpStream::connect(laddr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        target.set_nonblocking(true).unwrap();
        assert!(target.accept().is_err(), "nothing was relayed");
    }
}
