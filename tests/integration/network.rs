//! Private networking, on real kernel networking confined to namespaces the test makes:
//! a "host" namespace (where locker runs: its bridge, NAT table and leases live and die
//! there) joined by a veth to an "outside" namespace with TCP, UDP and DNS servers.
//! Addresses are from TEST-NET-2 (198.51.100.0/24); the outside namespace has no route
//! anywhere else, so no packet can leave the machine.
//!
//! Each protection is tried from a default container and, as a control, shown to work
//! where it should (--net host, the host itself, a published port).

use std::fs;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::harness::{probe_bin, run_bounded, wait_child, Run};
use crate::run::Ctx;

const HOST_IP: &str = "198.51.100.1";
const OUT_IP: &str = "198.51.100.2";
/// The IPv6 twins (documentation prefix 2001:db8::/32), for `Nets::add_ipv6`.
const HOST_IP6: &str = "2001:db8:5::1";
const OUT_IP6: &str = "2001:db8:5::2";
static N: AtomicUsize = AtomicUsize::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The two namespaces; deleted (with everything in them) on drop.
struct Nets {
    host: String,
    outside: String,
}

impl Nets {
    /// Makes them and moves `c`'s locker commands into the host one.
    fn new(c: &mut Ctx) -> Nets {
        let tag = format!(
            "lkt{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let n = Nets {
            host: format!("{tag}h"),
            outside: format!("{tag}o"),
        };
        ip(&["netns", "add", &n.host]);
        ip(&["netns", "add", &n.outside]);
        ip(&["-n", &n.host, "link", "set", "lo", "up"]);
        ip(&["-n", &n.outside, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &n.host, "link", "add", "up0", "type", "veth", "peer", "name", "down0", "netns",
            &n.outside,
        ]);
        ip(&[
            "-n",
            &n.host,
            "addr",
            "add",
            &format!("{HOST_IP}/24"),
            "dev",
            "up0",
        ]);
        ip(&[
            "-n",
            &n.outside,
            "addr",
            "add",
            &format!("{OUT_IP}/24"),
            "dev",
            "down0",
        ]);
        ip(&["-n", &n.host, "link", "set", "up0", "up"]);
        ip(&["-n", &n.outside, "link", "set", "down0", "up"]);
        // The "host"'s way out leads only to the outside namespace.
        ip(&["-n", &n.host, "route", "add", "default", "via", OUT_IP]);
        let f = fs::File::open(n.path(&n.host)).unwrap();
        c.l.netns = Some(Arc::new(OwnedFd::from(f)));
        n
    }

    fn path(&self, name: &str) -> PathBuf {
        Path::new("/run/netns").join(name)
    }

    /// IPv6 on the link to the outside and a default route over it: a "host" with
    /// IPv6 out (before locker makes its bridge, which looks for that route).
    fn add_ipv6(&self) {
        ip(&[
            "-n",
            &self.host,
            "addr",
            "add",
            &format!("{HOST_IP6}/64"),
            "dev",
            "up0",
            "nodad",
        ]);
        ip(&[
            "-n",
            &self.outside,
            "addr",
            "add",
            &format!("{OUT_IP6}/64"),
            "dev",
            "down0",
            "nodad",
        ]);
        ip(&[
            "-n", &self.host, "-6", "route", "add", "default", "via", OUT_IP6,
        ]);
    }
}

impl Drop for Nets {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.host])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.outside])
            .status();
    }
}

/// A server thread in a namespace: TCP answers each connection with one line naming
/// the peer's address, UDP each datagram the same way, DNS answers A queries for
/// `outside.test`. Shut down (and joined) on drop.
struct Server {
    fd: i32,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Tcp,
    Udp,
    Dns,
    /// DNS over TCP (each message after its two-byte length).
    DnsTcp,
}

fn serve(ns: &Path, addr: &str, kind: Kind) -> Server {
    let ns = ns.to_path_buf();
    let addr: SocketAddr = addr.parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let f = fs::File::open(&ns).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        match kind {
            Kind::Tcp => {
                let l = TcpListener::bind(addr).unwrap();
                tx.send(l.as_raw_fd()).unwrap();
                for s in l.incoming() {
                    let Ok(mut s) = s else { return };
                    let peer = s
                        .peer_addr()
                        .map(|a| a.ip().to_string())
                        .unwrap_or_default();
                    let _ =
                        std::io::Write::write_all(&mut s, format!("tcp-from {peer}\n").as_bytes());
                }
            }
            Kind::DnsTcp => {
                let l = TcpListener::bind(addr).unwrap();
                tx.send(l.as_raw_fd()).unwrap();
                for s in l.incoming() {
                    let Ok(mut s) = s else { return };
                    use std::io::{Read, Write};
                    let mut len = [0u8; 2];
                    while s.read_exact(&mut len).is_ok() {
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut q).is_err() {
                            break;
                        }
                        let a = dns_answer(&q);
                        let mut framed = (a.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&a);
                        if s.write_all(&framed).is_err() {
                            break;
                        }
                    }
                }
            }
            Kind::Udp | Kind::Dns => {
                let u = UdpSocket::bind(addr).unwrap();
                tx.send(u.as_raw_fd()).unwrap();
                let mut buf = [0u8; 1500];
                loop {
                    let Ok((n, from)) = u.recv_from(&mut buf) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let reply = match kind {
                        Kind::Dns => dns_answer(&buf[..n]),
                        _ => format!("udp-from {}\n", from.ip()).into_bytes(),
                    };
                    let _ = u.send_to(&reply, from);
                }
            }
        }
    });
    let fd = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server bound");
    Server {
        fd,
        thread: Some(thread),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: shutdown on the server's socket, owned by its thread until it returns.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A minimal DNS answer: A 198.51.100.2 for outside.test, NXDOMAIN for anything else.
fn dns_answer(q: &[u8]) -> Vec<u8> {
    if q.len() < 12 {
        return Vec::new();
    }
    let mut end = 12;
    let mut name = Vec::new();
    while end < q.len() && q[end] != 0 {
        let l = q[end] as usize;
        name.push(String::from_utf8_lossy(&q[end + 1..(end + 1 + l).min(q.len())]).into_owned());
        end += 1 + l;
    }
    let qend = (end + 5).min(q.len());
    let qtype = q
        .get(end + 1..end + 3)
        .map(|b| u16::from_be_bytes([b[0], b[1]]));
    let known = name.join(".") == "outside.test";
    let mut r = q[..2].to_vec();
    let answer = known && qtype == Some(1);
    r.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
    r.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
    r.extend_from_slice(&q[12..qend]);
    if answer {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 2]);
    }
    r
}

fn probe_vol() -> String {
    format!("{}:/probe:ro", probe_bin().display())
}

/// `cmd` with /etc/resolv.conf replaced by `conf` (in a private mount namespace of
/// locker's own, so the host's file is untouched).
fn with_resolv(cmd: &mut Command, conf: &Path) {
    use std::os::unix::process::CommandExt;
    let src = std::ffi::CString::new(conf.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: between fork and exec only unshare and mount run, on strings made before.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                || libc::mount(
                    src.as_ptr(),
                    c"/etc/resolv.conf".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn run_with_resolv(c: &Ctx, conf: &str, opts: &[&str], cmd: &[&str]) -> Run {
    let f = c.l.path("resolv.conf");
    fs::write(&f, conf).unwrap();
    let mut command = c.l.command(&c.args(opts, cmd));
    with_resolv(&mut command, &f);
    run_bounded(command, Duration::from_secs(60))
}

/// The probe's answer line, for asserting.
fn probe(c: &Ctx, opts: &[&str], args: &[&str]) -> String {
    let vol = probe_vol();
    let mut o = vec!["-v", &vol];
    o.extend_from_slice(opts);
    let mut cmd = vec!["/probe"];
    cmd.extend_from_slice(args);
    let r = c.run(&o, &cmd);
    format!("{}{}", r.stdout.trim(), r.stderr.trim())
}

/// Connects from the test's host namespace (a thread in it).
fn host_connect(ns: &Path, addr: &str) -> Result<String, std::io::Error> {
    let ns = ns.to_path_buf();
    let addr: SocketAddr = addr.parse().unwrap();
    std::thread::spawn(move || {
        let f = fs::File::open(&ns).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out)?;
        Ok(out)
    })
    .join()
    .unwrap()
}

/// Waits (bounded) until `addr` in `ns` accepts a connection; returns what it sent.
fn wait_listening(ns: &Path, addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match host_connect(ns, addr) {
            Ok(s) if !s.is_empty() => return s,
            r => assert!(Instant::now() < deadline, "{addr} never answered: {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A background `locker run`, stopped on drop: SIGTERM to the pid we started (locker
/// passes it on and cleans up), SIGKILL if it is still there after 20 s.
struct Bg(std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn background(c: &Ctx, opts: &[&str], cmd: &[&str]) -> Bg {
    Bg(c.l
        .command(&c.args(opts, cmd))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap())
}

/// The state records of `c`'s store that have a pid and an address: (name, address).
fn addressed(c: &Ctx) -> Vec<(serde_json::Value, String)> {
    fs::read_dir(c.l.root().join("run"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
            let addr = v["net"]["addr"].as_str()?.to_string();
            (v["pid"].as_i64().unwrap_or(0) > 0).then(|| (v["name"].clone(), addr))
        })
        .collect()
}

/// The address of the one running container of `c`'s store.
fn addr_of_any(c: &Ctx) -> String {
    match addressed(c).pop() {
        Some((_, a)) => a,
        None => panic!("no running container with an address"),
    }
}

/// The container's address from its state file (the one container with this name).
fn addr_of(c: &Ctx, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((_, a)) = addressed(c).into_iter().find(|(n, _)| *n == name) {
            return a;
        }
        assert!(Instant::now() < deadline, "container {name} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn in_host_ns(n: &Nets, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &n.host])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn outbound_tcp_udp_and_dns_from_a_default_container() {
    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    let o = n.path(&n.outside);
    let _tcp = serve(&o, &format!("{OUT_IP}:7000"), Kind::Tcp);
    let _udp = serve(&o, &format!("{OUT_IP}:7001"), Kind::Udp);
    let _dns = serve(&o, &format!("{OUT_IP}:53"), Kind::Dns);
    // NAT: the outside sees the host's address, not the container's.
    assert_eq!(
        probe(&c, &[], &["tcp", OUT_IP, "7000"]),
        format!("ok tcp-from {HOST_IP}")
    );
    assert_eq!(
        probe(&c, &[], &["udp", OUT_IP, "7001"]),
        format!("ok udp-from {HOST_IP}")
    );
    // The host's resolver (reachable from the container): used as it is.
    let r = run_with_resolv(
        &c,
        &format!("nameserver {OUT_IP}\n"),
        &[],
        &["sh", "-c", "cat /etc/resolv.conf; nslookup outside.test"],
    );
    assert!(
        r.stdout.contains(&format!("nameserver {OUT_IP}")),
        "{}",
        r.dump()
    );
    assert!(
        r.stdout.contains(&format!("Address: {OUT_IP}")),
        "{}",
        r.dump()
    );
    // --dns replaces it.
    let r = run_with_resolv(
        &c,
        "nameserver 192.0.2.99\n",
        &["--dns", OUT_IP],
        &["sh", "-c", "cat /etc/resolv.conf; nslookup outside.test"],
    );
    assert!(!r.stdout.contains("192.0.2.99"), "{}", r.dump());
    assert!(
        r.stdout.contains(&format!("Address: {OUT_IP}")),
        "{}",
        r.dump()
    );
    // The container has its own interface and the default route, and the host none of
    // its state after it exits.
    let routes = c.ok(&[], &["cat", "/proc/net/route"]);
    assert!(
        routes.lines().any(|l| l.starts_with("eth0\t00000000")),
        "{routes}"
    );
    no_veth_left(&n);
}

/// The kernel deletes a container's veth with its namespace, moments after the run.
fn no_veth_left(n: &Nets) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = in_host_ns(n, &["ip", "-br", "link"]);
        if !links.lines().any(|l| l.starts_with("lk")) {
            return;
        }
        assert!(Instant::now() < deadline, "veth left behind: {links}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_loopback_stub_resolver_is_reached_through_the_forwarder() {
    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    // A stub such as systemd-resolved's, on the host's loopback only.
    let _stub = serve(&n.path(&n.host), "127.0.0.53:53", Kind::Dns);
    let r = run_with_resolv(
        &c,
        "nameserver 127.0.0.53\n",
        &[],
        &["sh", "-c", "cat /etc/resolv.conf; nslookup outside.test"],
    );
    assert!(r.stdout.contains("nameserver 127.0.0.11"), "{}", r.dump());
    assert!(
        r.stdout.contains(&format!("Address: {OUT_IP}")),
        "{}",
        r.dump()
    );
    // Attack: another protocol to the host's loopback port 53 through the forwarder's
    // TCP socket (a line-answering server there answers anything that reaches it).
    // Protection: only DNS queries pass; this connection is closed unanswered.
    let vol = probe_vol();
    {
        let _stub_tcp = serve(&n.path(&n.host), "127.0.0.53:53", Kind::Tcp);
        let r = run_with_resolv(
            &c,
            "nameserver 127.0.0.53\n",
            &["-v", &vol],
            &["/probe", "tcp", "127.0.0.11", "53"],
        );
        assert!(!r.stdout.contains("tcp-from"), "{}", r.dump());
    }
    // Control: DNS over TCP is answered through the same socket.
    let _stub_tcp = serve(&n.path(&n.host), "127.0.0.53:53", Kind::DnsTcp);
    let r = run_with_resolv(
        &c,
        "nameserver 127.0.0.53\n",
        &["-v", &vol],
        &["/probe", "dns-tcp", "127.0.0.11", "outside.test"],
    );
    assert_eq!(r.stdout.trim(), format!("ok {OUT_IP}"), "{}", r.dump());
    // Attack: hold connections to the forwarder's TCP socket until the host-side
    // process runs out of descriptors. Protection: 16 at once; the rest are closed
    // at once (the 16 held stay open: the control).
    let r = run_with_resolv(
        &c,
        "nameserver 127.0.0.53\n",
        &["-v", &vol],
        &["/probe", "hold-tcp", "127.0.0.11", "53", "24", "8"],
    );
    assert_eq!(r.stdout.trim(), "closed=8 open=16", "{}", r.dump());
    // Control: the stub itself is not reachable from the container directly.
    let r = run_with_resolv(
        &c,
        "nameserver 127.0.0.53\n",
        &["-v", &vol],
        &["/probe", "tcp", "127.0.0.53", "53"],
    );
    assert!(!r.stdout.contains("tcp-from"), "{}", r.dump());
    let r = run_with_resolv(
        &c,
        "nameserver 127.0.0.53\n",
        &[],
        &["nslookup", "outside.test", "127.0.0.53"],
    );
    assert!(
        !r.stdout.contains(&format!("Address: {OUT_IP}")),
        "{}",
        r.dump()
    );
}

#[test]
fn host_loopback_services_and_abstract_sockets_are_unreachable() {
    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    let h = n.path(&n.host);
    let _svc = serve(&h, "127.0.0.1:7100", Kind::Tcp);
    // A host abstract unix socket, made by a thread in the host namespace.
    let (tx, rx) = std::sync::mpsc::channel();
    let hp = h.clone();
    let abs = std::thread::spawn(move || {
        let f = fs::File::open(&hp).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        use std::os::linux::net::SocketAddrExt;
        let a =
            std::os::unix::net::SocketAddr::from_abstract_name(b"locker-test-abstract").unwrap();
        let l = std::os::unix::net::UnixListener::bind_addr(&a).unwrap();
        tx.send(l.as_raw_fd()).unwrap();
        while let Ok((_s, _)) = l.accept() {}
    });
    let abs_fd = rx.recv().unwrap();
    let gw = "10.89.0.1";
    // From a default container: refused, on 127.0.0.1, on the bridge address, and the
    // abstract socket is not there.
    assert_eq!(probe(&c, &[], &["tcp", "127.0.0.1", "7100"]), "errno=111");
    assert_eq!(probe(&c, &[], &["tcp", gw, "7100"]), "errno=111");
    assert_eq!(
        probe(&c, &[], &["abstract", "locker-test-abstract"]),
        "errno=111"
    );
    // Control: with --net host both answer.
    assert_eq!(
        probe(&c, &["--net", "host"], &["tcp", "127.0.0.1", "7100"]),
        "ok tcp-from 127.0.0.1"
    );
    assert_eq!(
        probe(
            &c,
            &["--net", "host"],
            &["abstract", "locker-test-abstract"]
        ),
        "ok"
    );
    // SAFETY: shutdown on the listener, owned by its thread until it returns.
    unsafe { libc::shutdown(abs_fd, libc::SHUT_RDWR) };
    let _ = abs.join();
}

#[test]
fn published_ports_answer_only_where_published() {
    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    let h = n.path(&n.host);
    let _a = background(
        &c,
        &["-p", "18080:80", "-p", "127.0.0.1:18081:81"],
        &[
            "sh",
            "-c",
            "nc -ll -p 80 -e echo on-80 & nc -ll -p 81 -e echo on-81 & nc -ll -p 82 -e echo on-82",
        ],
    );
    assert_eq!(wait_listening(&h, "127.0.0.1:18080").trim(), "on-80");
    // From outside the host: the 0.0.0.0 port answers, the 127.0.0.1 one does not.
    assert_eq!(
        wait_listening(&n.path(&n.outside), &format!("{HOST_IP}:18080")).trim(),
        "on-80"
    );
    assert!(
        host_connect(&n.path(&n.outside), &format!("{HOST_IP}:18081"))
            .map_or(true, |s| s.is_empty())
    );
    assert_eq!(host_connect(&h, "127.0.0.1:18081").unwrap().trim(), "on-81");
    // An unpublished container port is not reachable on the host.
    assert!(host_connect(&h, "127.0.0.1:82").is_err());
    // A taken host port: one line, exit 125, nothing started.
    let r = c.l.fails(&c.args(&["-p", "18080:80"], &["true"]));
    assert_eq!(r.code, Some(125), "{}", r.dump());
    assert!(
        r.stderr.contains("18080")
            && r.stderr.contains("already in use")
            && r.stderr.lines().count() == 1,
        "{}",
        r.dump()
    );
}

#[test]
fn named_networks_reach_by_name_and_no_one_else() {
    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    c.l.ok(&["network", "create", "app"]);
    let _a = background(
        &c,
        &["--name", "web", "--net", "app"],
        &["nc", "-ll", "-p", "80", "-e", "echo", "web-here"],
    );
    let web = addr_of(&c, "web");
    let vol = probe_vol();
    // Same network, by name: wait until it listens, then check once more by address.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.run(&["--net", "app"], &["sh", "-c", "nc web 80 </dev/null"]);
        if r.stdout.contains("web-here") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "web never answered by name: {}",
            r.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Not on the network: refused, from the default network and from another one.
    assert_ne!(
        probe(&c, &[], &["tcp", &web, "80"]),
        "ok web-here",
        "a default container reached a container on a named network"
    );
    c.l.ok(&["network", "create", "other"]);
    assert_ne!(
        probe(&c, &["--net", "other"], &["tcp", &web, "80"]),
        "ok web-here"
    );
    // Control: on the network, by address too.
    assert_eq!(
        probe(&c, &["--net", "app"], &["tcp", &web, "80"]),
        "ok web-here"
    );
    // --net container:web shares its namespace: its 127.0.0.1:80 is web's server.
    let r = c.run(
        &["-v", &vol, "--net", "container:web"],
        &["/probe", "tcp", "127.0.0.1", "80"],
    );
    assert_eq!(r.stdout.trim(), "ok web-here", "{}", r.dump());
    // Two default containers do not reach each other (isolated bridge ports).
    let _b = background(
        &c,
        &["--name", "lone"],
        &["nc", "-ll", "-p", "80", "-e", "echo", "lone-here"],
    );
    let lone = addr_of(&c, "lone");
    let got = probe(&c, &[], &["tcp", &lone, "80"]);
    assert!(
        !got.starts_with("ok"),
        "two default containers reached each other: {got}"
    );
    // A network in use cannot be removed; an unused one can.
    assert!(c
        .l
        .fails(&["network", "rm", "app"])
        .stderr
        .contains("running containers"));
    c.l.ok(&["network", "rm", "other"]);
    drop(n);
}

/// Attack: a neighbour on the host's LAN routes 10.89.0.0/16 through the host and
/// connects to a container's unpublished port. Control: the published one answers, and
/// the host itself reaches its containers (as with Docker).
#[test]
fn the_lan_reaches_published_ports_only() {
    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    let o = n.path(&n.outside);
    let _a = background(
        &c,
        &["-p", "18100:80"],
        &[
            "sh",
            "-c",
            "nc -ll -p 80 -e echo published & nc -ll -p 81 -e echo hidden",
        ],
    );
    assert_eq!(
        wait_listening(&o, &format!("{HOST_IP}:18100")).trim(),
        "published"
    );
    let ctr = addr_of_any(&c);
    ip(&[
        "-n",
        &n.outside,
        "route",
        "add",
        "10.89.0.0/16",
        "via",
        HOST_IP,
    ]);
    for port in ["81", "80"] {
        let got = host_connect(&o, &format!("{ctr}:{port}"));
        assert!(
            got.is_err(),
            "the LAN reached container port {port} directly: {got:?}"
        );
    }
    let got = host_connect(&n.path(&n.host), &format!("{ctr}:81")).unwrap();
    assert_eq!(got.trim(), "hidden");
}

#[test]
fn host_and_none_networks() {
    let mut c = Ctx::new();
    let _n = Nets::new(&mut c);
    let devs = |opts: &[&str]| c.ok(opts, &["cat", "/proc/net/dev"]);
    let none = devs(&["--net", "none"]);
    assert!(
        none.contains("lo:") && !none.contains("eth0") && !none.contains("up0"),
        "{none}"
    );
    let host = devs(&["--net", "host"]);
    assert!(
        host.contains("up0:"),
        "--net host sees the host's interfaces: {host}"
    );
    let private = devs(&[]);
    assert!(
        private.contains("eth0:") && !private.contains("up0"),
        "{private}"
    );
    // -p makes no sense without a network of the container's own.
    let r =
        c.l.fails(&c.args(&["--net", "host", "-p", "1:1"], &["true"]));
    assert_eq!(r.code, Some(125), "{}", r.dump());
}

#[test]
fn sigkill_of_locker_then_gc_leaves_nothing() {
    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    let h = n.path(&n.host);
    let mut bg = background(
        &c,
        &["-p", "18090:80"],
        &["sh", "-c", "nc -ll -p 80 -e echo alive"],
    );
    assert_eq!(wait_listening(&h, "127.0.0.1:18090").trim(), "alive");
    let first = addr_of_any(&c);
    bg.0.kill().unwrap();
    bg.0.wait().unwrap();
    // Attack: a new container, of another store even, is given the dead one's address;
    // the dead one's published port must not lead to it.
    let mut other = Ctx::new();
    other.l.netns = c.l.netns.clone();
    let evil = background(
        &other,
        &["--name", "evil"],
        &["nc", "-ll", "-p", "80", "-e", "echo", "evil"],
    );
    assert_eq!(
        addr_of(&other, "evil"),
        first,
        "the address was reused (what the attack needs)"
    );
    let got = host_connect(&h, "127.0.0.1:18090");
    assert!(
        !got.as_deref().unwrap_or("").contains("evil"),
        "a killed container's published port leads to the one that took its address: {got:?}"
    );
    drop(evil);
    c.l.ok(&["gc"]);
    // The port is withdrawn, the veth gone, no lease left.
    let map = in_host_ns(&n, &["nft", "list", "map", "ip", "locker", "tcp_any"]);
    assert!(!map.contains("18090"), "{map}");
    no_veth_left(&n);
    let ns = fs::File::open(&h).unwrap();
    let leases =
        crate::harness::leases_of(&format!("/proc/self/fd/{}", ns.as_raw_fd())).join("locker0");
    let left: Vec<_> = fs::read_dir(&leases)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "leases left: {left:?}");
    assert!(host_connect(&h, "127.0.0.1:18090").is_err());
}

/// A network namespace that is gone (a test's, an `ip netns` one deleted) leaves its
/// lease directory in /run/locker/net; `locker gc` removes it. Control: while the
/// namespace lives (here held by an fd, as `ip netns add` holds one by a mount) its
/// directory stays.
#[test]
fn gc_removes_the_leases_of_gone_namespaces_only() {
    let mut c = Ctx::new();
    let ns = c.l.netns.clone().expect("a test namespace");
    c.ok(&[], &["true"]);
    let dir = crate::harness::leases_of(&format!("/proc/self/fd/{}", ns.as_raw_fd()));
    assert!(dir.is_dir(), "{} was made by the run", dir.display());
    c.l.ok(&["gc"]);
    assert!(dir.is_dir(), "gc removed a live namespace's leases");
    // The last references: the Ctx's and ours (its runs have exited).
    c.l.netns = None;
    drop(ns);
    let out = c.l.ok(&["gc"]);
    assert!(!dir.exists(), "{} left after gc: {out}", dir.display());
}

/// The container's global IPv6 addresses on eth0 (from /proc/net/if_inet6: 32 hex
/// digits, then index, prefix length, scope, flags, name), as (hex, prefix).
fn global_ipv6(c: &Ctx) -> Vec<(String, String)> {
    let t = c.ok(&[], &["cat", "/proc/net/if_inet6"]);
    t.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[5] == "eth0" && f[3] == "00").then(|| (f[0].into(), f[2].into()))
        })
        .collect()
}

#[test]
fn ipv6_beside_ipv4_where_the_host_has_it() {
    // A host without IPv6 out: the bridge has none, nor the container, nor nft an ip6 table.
    let mut plain = Ctx::new();
    let n4 = Nets::new(&mut plain);
    assert_eq!(global_ipv6(&plain), vec![]);
    assert!(!in_host_ns(&n4, &["nft", "list", "tables"]).contains("ip6 locker"));

    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    n.add_ipv6();
    let o = n.path(&n.outside);
    let _tcp = serve(&o, &format!("[{OUT_IP6}]:7000"), Kind::Tcp);
    let _udp = serve(&o, &format!("[{OUT_IP6}]:7001"), Kind::Udp);
    // A unique local /64 address (fd00::/8) beside the IPv4 lease, and a default route.
    let v6 = global_ipv6(&c);
    assert!(
        v6.len() == 1 && v6[0].0.starts_with("fd") && v6[0].1 == "40",
        "{v6:?}"
    );
    let routes = c.ok(&[], &["cat", "/proc/net/ipv6_route"]);
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with(&format!("{:032x} 00", 0)) && l.ends_with("eth0")),
        "{routes}"
    );
    // Out through NAT: the outside sees the host's address, not the container's.
    assert_eq!(
        probe(&c, &[], &["tcp", OUT_IP6, "7000"]),
        format!("ok tcp-from {HOST_IP6}")
    );
    assert_eq!(
        probe(&c, &[], &["udp", OUT_IP6, "7001"]),
        format!("ok udp-from {HOST_IP6}")
    );
    // The ip6 table holds the same guard and forward rules as the ip one.
    let t = in_host_ns(&n, &["nft", "list", "table", "ip6", "locker"]);
    for rule in [
        "ip6 daddr ::1 drop",
        "oifname \"locker0\" ct state != { established, related } drop",
        "masquerade",
    ] {
        assert!(t.contains(rule), "{rule}: {t}");
    }
    // Nothing new enters the bridge from outside over IPv6 either: the outside, routed
    // to the container's address through the host, is dropped.
    let addr6 = {
        let hex = &v6[0].0;
        let groups: Vec<String> = (0..8).map(|i| hex[i * 4..i * 4 + 4].to_string()).collect();
        groups.join(":")
    };
    let srv = background(&c, &[], &["nc", "-ll", "-p", "81", "-e", "echo", "hidden"]);
    // The control: the host reaches it over IPv6.
    let host = n.path(&n.host);
    assert_eq!(
        wait_listening(&host, &format!("[{addr6}]:81")).trim(),
        "hidden"
    );
    ip(&[
        "-n",
        &n.outside,
        "-6",
        "route",
        "add",
        &format!("{addr6}/128"),
        "via",
        HOST_IP6,
    ]);
    let r = host_connect(&o, &format!("[{addr6}]:81"));
    assert!(
        r.is_err(),
        "the outside reached an unpublished port over IPv6: {r:?}"
    );
    drop(srv);
    // -p on every address answers on the host's IPv6 address too: from outside, from
    // the host, and (relayed) from a default container.
    let web = background(
        &c,
        &["-p", "18300:80"],
        &["nc", "-ll", "-p", "80", "-e", "echo", "published"],
    );
    let at = format!("[{HOST_IP6}]:18300");
    assert_eq!(wait_listening(&o, &at).trim(), "published");
    assert_eq!(host_connect(&host, &at).unwrap().trim(), "published");
    let r = c.run(
        &[],
        &["sh", "-c", &format!("nc -w 3 {HOST_IP6} 18300 </dev/null")],
    );
    assert_eq!(r.stdout.trim(), "published", "{}", r.dump());
    // Still held while it runs: a second container cannot take it.
    let r = c.l.fails(&c.args(&["-p", "18300:81"], &["true"]));
    assert!(r.stderr.contains("already in use"), "{}", r.dump());
    drop(web);
    let t = in_host_ns(&n, &["nft", "list", "map", "ip6", "locker", "tcp_any"]);
    assert!(
        !t.contains("18300"),
        "the IPv6 element outlived its container: {t}"
    );
    no_veth_left(&n);
}

/// A container reaching a published port through the host's address. On the default
/// network (isolated bridge ports) the published port's socket relays it; on a named
/// network it is DNAT'd and the leg back into the subnet masqueraded.
#[test]
fn hairpin_to_published_ports() {
    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    let o = n.path(&n.outside);
    c.l.ok(&["network", "create", "hp"]);
    let srv = background(
        &c,
        &["--name", "srv", "-p", "18200:80"],
        &["nc", "-ll", "-p", "80", "-e", "echo", "published"],
    );
    let named = background(
        &c,
        &["--net", "hp", "--name", "named", "-p", "18201:80"],
        &["nc", "-ll", "-p", "80", "-e", "echo", "named"],
    );
    for (port, answer) in [("18200", "published"), ("18201", "named")] {
        assert_eq!(
            wait_listening(&o, &format!("{HOST_IP}:{port}")).trim(),
            answer
        );
    }
    let dial = |c: &Ctx, net: &[&str], addr: &str, port: &str| {
        c.run(
            net,
            &["sh", "-c", &format!("nc -w 3 {addr} {port} </dev/null")],
        )
    };
    // The two bridges came up at once, and still took two subnets.
    let ctr = addr_of(&c, "srv");
    let subnet = |a: &str| a.rsplit_once('.').unwrap().0.to_string();
    assert_ne!(subnet(&ctr), subnet(&addr_of(&c, "named")));
    let gateway = format!("{}.1", subnet(&ctr));
    // From the default network: its neighbour's port, through the host's address and
    // the bridge's, and a named network's published port.
    for addr in [HOST_IP, gateway.as_str()] {
        let r = dial(&c, &[], addr, "18200");
        assert_eq!(r.stdout.trim(), "published", "through {addr}: {}", r.dump());
    }
    let r = dial(&c, &[], HOST_IP, "18201");
    assert_eq!(r.stdout.trim(), "named", "{}", r.dump());
    // From the named network: its own member's port, and the default network's.
    let r = dial(&c, &["--net", "hp"], HOST_IP, "18201");
    assert_eq!(r.stdout.trim(), "named", "{}", r.dump());
    let r = dial(&c, &["--net", "hp"], HOST_IP, "18200");
    assert_eq!(r.stdout.trim(), "published", "{}", r.dump());
    // Still no direct way in: the neighbour's own address is unreachable.
    let r = dial(&c, &[], &ctr, "80");
    assert!(!r.stdout.contains("published"), "{}", r.dump());
    drop(srv);
    drop(named);
    c.l.ok(&["network", "rm", "hp"]);
    no_veth_left(&n);
}

/// What a UDP socket on the host's 0.0.0.0:PORT receives first, as "SOURCE PAYLOAD"
/// (it answers each datagram, so a probe `udp` waiting for a reply returns).
fn first_datagram(ns: &Path, port: u16, run: impl FnOnce()) -> String {
    let ns = ns.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let f = fs::File::open(&ns).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let u = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tx.send(()).unwrap();
        let mut first = None;
        let mut buf = [0u8; 256];
        // Until the container's own ping (its last datagram) has come.
        while let Ok((n, from)) = u.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).trim().to_string();
            first.get_or_insert(format!("{} {text}", from.ip()));
            let _ = u.send_to(b"pong\n", from);
            if text == "ping" {
                break;
            }
        }
        first.unwrap_or_default()
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    run();
    t.join().unwrap()
}

#[test]
fn a_container_given_net_raw_cannot_forge_its_source_address() {
    let mut c = Ctx::new();
    let n = Nets::new(&mut c);
    let host = n.path(&n.host);
    let vol = probe_vol();
    // A forged datagram, then an honest one, to the host's bridge address (the only
    // container network here: 10.89.0.0/24): the host hears the honest one first.
    let script = "/probe spoof-udp 10.89.0.77 10.89.0.1 7300 && /probe udp 10.89.0.1 7300";
    let forge = || {
        let r = c.run(&["--cap-add", "NET_RAW", "-v", &vol], &["sh", "-c", script]);
        assert!(r.stdout.starts_with("ok\nok pong"), "{}", r.dump());
    };
    let got = first_datagram(&host, 7300, forge);
    assert!(got.starts_with("10.89.") && got.ends_with(" ping"), "{got}");
    assert!(!got.starts_with("10.89.0.77 "), "{got}");
    // Its port's elements are gone with it; a default container (no NET_RAW) has none.
    let sets = in_host_ns(&n, &["nft", "list", "set", "bridge", "locker", "guarded"]);
    assert!(!sets.contains("\"lk"), "{sets}");
    c.ok(&[], &["true"]);
    let sets = in_host_ns(&n, &["nft", "list", "set", "bridge", "locker", "guarded"]);
    assert!(!sets.contains("\"lk"), "{sets}");

    // The control: the same container with the IPv4 source rule deleted while it
    // waits (on stdin) to forge: the forged datagram arrives.
    let control = || {
        let mut child =
            c.l.command(&c.args(
                &["-i", "--cap-add", "NET_RAW", "-v", &vol],
                &["sh", "-c", &format!("read go && {script}")],
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Its port is guarded once its element is in the set (before it runs).
        let deadline = Instant::now() + Duration::from_secs(20);
        while !in_host_ns(&n, &["nft", "list", "set", "bridge", "locker", "guarded"])
            .contains("\"lk")
        {
            assert!(
                Instant::now() < deadline,
                "the container's port was never guarded"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let chain = in_host_ns(
            &n,
            &["nft", "-a", "list", "chain", "bridge", "locker", "guard"],
        );
        let handle = chain
            .lines()
            .find(|l| l.contains("ip saddr != @v4_ok"))
            .and_then(|l| l.rsplit("# handle ").next())
            .unwrap_or_else(|| panic!("no source rule: {chain}"))
            .trim()
            .to_string();
        in_host_ns(
            &n,
            &[
                "nft", "delete", "rule", "bridge", "locker", "guard", "handle", &handle,
            ],
        );
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
        let status = wait_child(&mut child, Duration::from_secs(30));
        assert!(status.success(), "the forging container failed: {status}");
    };
    let got = first_datagram(&host, 7300, control);
    assert_eq!(got, "10.89.0.77 spoofed");
    no_veth_left(&n);
}
