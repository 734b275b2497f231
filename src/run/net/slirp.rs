//! A rootless container's private network: slirp4netns attached to its namespaces.
//!
//! A container in a user namespace of its own cannot have a veth into a host bridge
//! (that needs CAP_NET_ADMIN on the host), so its network is user-mode: slirp4netns
//! (Debian's `slirp4netns` package, podman's rootless network before pasta) joins the
//! container's user and network namespaces, makes `tap0` there and configures it
//! (`--configure`: 10.0.2.100/24, default route via 10.0.2.2, DNS on 10.0.2.3), and
//! carries its traffic through ordinary sockets in the namespace it was started from.
//!
//! What it must not give the container: the host's loopback. libslirp maps the gateway
//! 10.0.2.2 to the host's 127.0.0.1 unless `--disable-host-loopback`, which `start`
//! always passes (`Options::host_loopback` exists for the tests' control only). The
//! helper itself is confined (`--enable-sandbox`: an empty root in a mount namespace of
//! its own, capabilities dropped; `--enable-seccomp`).
//!
//! Run as root, that sandbox unmounts host mounts: it makes only `/` private
//! (not recursively) and `/etc` and `/run` slaves (a no-op where `/run` is no mount
//! point), then detaches its old root, and the unmount of every shared mount under it
//! propagates back to the host (seen here: `ip netns` mounts under /run/netns vanished).
//! As root the helper therefore starts in a private mount namespace of its own. As a
//! user the sandbox's namespace belongs to a user namespace, where shared mounts
//! arrive as slaves and nothing propagates back.
//!
//! Lifetime: the helper's exit fd is the read end of a pipe whose only write end this
//! process holds, so it ends when the handle is dropped and also when this process dies
//! however it dies (SIGKILL included): no slirp4netns outlives the run that started it.
//! Readiness: `start` returns once the helper has written to its ready fd, i.e. once
//! tap0 is up with its address and route, so the container can be released straight
//! after. Published ports are added through the helper's API socket (`add_hostfwd`):
//! the helper listens on the host port, in the namespace it was started from.

use std::fs;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{NetError, PortMap};

/// The container's address on tap0 (`--configure`'s default, network address + 100).
pub(crate) const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// The gateway: the host side of slirp (not the host's loopback: see the module doc).
#[cfg(test)]
pub(crate) const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// slirp's DNS forwarder, to the resolvers of the host's /etc/resolv.conf.
#[cfg(test)]
pub(crate) const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The container's resolv.conf.
pub(crate) const RESOLV_CONF: &str = "nameserver 10.0.2.3\n";
/// tap0's MTU: slirp's largest but one (podman's default); big frames, few copies.
pub(crate) const MTU: u32 = 65520;
/// How long the helper may take to configure tap0.
const READY_LIMIT: Duration = Duration::from_secs(10);
/// How long the helper may take to exit once its exit fd is closed.
const EXIT_LIMIT: Duration = Duration::from_secs(2);

/// How to start the helper.
pub(crate) struct Options<'a> {
    /// Ports to publish (HOSTIP defaults to 0.0.0.0 here too).
    pub ports: &'a [PortMap],
    /// A private directory for the API socket and the helper's log (its path must fit
    /// a unix socket address: 107 bytes with `slirp4netns.sock`).
    pub dir: &'a Path,
    /// Map the gateway to the host's loopback. Never set by locker: the tests' control.
    pub host_loopback: bool,
    /// Serve 10.0.2.3 (slirp's redirect to the host's resolv.conf servers). Off unless
    /// the host's only resolvers are loopback ones (a stub such as 127.0.0.53): then
    /// it is the container's one way to DNS, as root's forwarder is; otherwise the
    /// container names the host's upstream servers itself and 10.0.2.3 leads nowhere,
    /// so nothing it sends reaches a host loopback port.
    pub builtin_dns: bool,
    /// Run the helper as this uid and gid (the tests' ordinary user).
    #[cfg(test)]
    pub as_user: Option<(u32, u32)>,
}

/// A running slirp4netns for one container; dropping it ends the helper.
#[derive(Debug)]
pub(crate) struct Slirp {
    child: Child,
    /// The write end of the helper's exit fd: closing it ends the helper.
    exit: Option<OwnedFd>,
    api: PathBuf,
    log: PathBuf,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}

/// Starts slirp4netns for the container whose PID is `pid` (its user and network
/// namespaces already exist; it need not be released yet), with `ports` published.
/// Returns once tap0 is configured in the container.
pub(crate) fn start(
    pid: i32,
    ports: &[PortMap],
    dir: &Path,
    builtin_dns: bool,
) -> Result<Slirp, NetError> {
    start_with(
        pid,
        &Options {
            ports,
            dir,
            host_loopback: false,
            builtin_dns,
            #[cfg(test)]
            as_user: None,
        },
    )
}

/// `start` with every option.
pub(crate) fn start_with(pid: i32, o: &Options) -> Result<Slirp, NetError> {
    let api = o.dir.join("slirp4netns.sock");
    if api.as_os_str().len() > 107 {
        return Err(NetError::Usage(format!(
            "slirp4netns: the API socket path {} is longer than a unix socket address allows",
            api.display()
        )));
    }
    let log = o.dir.join("slirp4netns.log");
    let _ = fs::remove_file(&api);
    let log_file = fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| NetError::Io {
            what: "make a pipe for slirp4netns".into(),
            source: e.into(),
        })
    };
    let (ready_r, ready_w) = pipe()?;
    let (exit_r, exit_w) = pipe()?;
    let (ready_fd, exit_fd) = (ready_w.as_raw_fd(), exit_r.as_raw_fd());

    let mut cmd = Command::new("slirp4netns");
    cmd.arg("--configure")
        .arg(format!("--mtu={MTU}"))
        .arg("--enable-sandbox")
        .arg("--enable-seccomp")
        .arg(format!("--ready-fd={ready_fd}"))
        .arg(format!("--exit-fd={exit_fd}"))
        .arg("--api-socket")
        .arg(&api);
    if !o.host_loopback {
        cmd.arg("--disable-host-loopback");
    }
    if !o.builtin_dns {
        cmd.arg("--disable-dns");
    }
    cmd.arg(pid.to_string())
        .arg("tap0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    #[cfg(test)]
    if let Some((uid, gid)) = o.as_user {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl,
    // geteuid, unshare and mount (async-signal-safe), the first on two fds this process
    // keeps open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // The sandbox's unmounts must not reach the host (module doc).
            if libc::geteuid() == 0 {
                crate::run::sys::private_mount_ns().map_err(std::io::Error::from_raw_os_error)?;
            }
            // Nothing of ours but the two pipes crosses the exec (a caller's stray fd
            // would outlive the sandbox in the helper): the rest close on exec.
            // SAFETY: close_range with integer arguments only.
            libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int);
            for fd in [ready_fd, exit_fd] {
                crate::run::sys::clear_cloexec(fd).map_err(std::io::Error::from_raw_os_error)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NetError::Usage(
                "slirp4netns not found: install the slirp4netns package (apt-get install slirp4netns), or use --net none"
                    .into(),
            )
        } else {
            io("start slirp4netns")(e)
        }
    })?;
    // Only the helper holds these ends now: EOF on ready_r means it died.
    drop(ready_w);
    drop(exit_r);
    let mut slirp = Slirp {
        child,
        exit: Some(exit_w),
        api,
        log,
    };
    slirp.wait_ready(ready_r)?;
    for p in o.ports {
        slirp.add_port(p)?;
    }
    Ok(slirp)
}

impl Slirp {
    /// The helper's PID.
    #[cfg(test)]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line of the helper's log that says what went wrong.
    fn log_line(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with("WARNING:"))
            .find(|l| !l.trim().is_empty())
            .unwrap_or("it exited without saying why")
            .trim()
            .to_string()
    }

    fn wait_ready(&mut self, ready: OwnedFd) -> Result<(), NetError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = Instant::now() + READY_LIMIT;
        let mut f = fs::File::from(ready);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::Slirp {
                    what: "configure tap0".into(),
                    detail: format!("not ready after {READY_LIMIT:?}"),
                });
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&f), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io("wait for slirp4netns")(e.into())),
            }
        }
        let mut b = [0u8; 1];
        match f.read(&mut b) {
            Ok(1) => Ok(()),
            // EOF: the helper is gone; its log says why.
            _ => {
                let _ = self.child.wait();
                Err(NetError::Slirp {
                    what: "configure tap0".into(),
                    detail: self.log_line(),
                })
            }
        }
    }

    /// Publishes `p` through the API socket: the helper listens on the host port and
    /// forwards to the container's port on GUEST_ADDR.
    pub(crate) fn add_port(&self, p: &PortMap) -> Result<(), NetError> {
        // The helper binds as the user: ports below the kernel's unprivileged start
        // are refused (slirp's error would only say that it failed).
        let first = fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|v| v.trim().parse::<u16>().ok())
            .unwrap_or(1024);
        if p.host_port < first && crate::run::userns::rootless() {
            return Err(NetError::Usage(format!(
                "-p {p}: host ports below {first} need root (or sysctl net.ipv4.ip_unprivileged_port_start={})",
                p.host_port
            )));
        }
        let req = serde_json::json!({
            "execute": "add_hostfwd",
            "arguments": {
                "proto": if p.udp { "udp" } else { "tcp" },
                "host_addr": p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                "host_port": p.host_port,
                "guest_port": p.ctr_port,
            }
        });
        let reply = self.api_call(&req.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&reply).map_err(|e| NetError::Slirp {
            what: format!("publish -p {p}"),
            detail: format!("bad API reply {reply:?}: {e}"),
        })?;
        if v.get("return").is_some() {
            return Ok(());
        }
        // slirp's own error says only that it failed; a port in use is the usual cause.
        if super::reserve(p).is_err() {
            let host = std::net::SocketAddr::from((
                p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                p.host_port,
            ));
            return Err(NetError::PortTaken {
                port: *p,
                host,
                ctr: p.ctr_port,
            });
        }
        Err(NetError::Slirp {
            what: format!("publish -p {p}"),
            detail: v["error"]["desc"].as_str().unwrap_or(&reply).to_string(),
        })
    }

    fn api_call(&self, req: &str) -> Result<String, NetError> {
        let what = || format!("talk to slirp4netns on {}", self.api.display());
        let mut s = UnixStream::connect(&self.api).map_err(io(what()))?;
        s.set_read_timeout(Some(READY_LIMIT)).map_err(io(what()))?;
        s.write_all(req.as_bytes()).map_err(io(what()))?;
        s.shutdown(std::net::Shutdown::Write).map_err(io(what()))?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).map_err(io(what()))?;
        Ok(reply)
    }

    /// Ends the helper (closes its exit fd; SIGKILL if it has not gone in EXIT_LIMIT)
    /// and reaps it.
    #[cfg(test)]
    pub(crate) fn stop(mut self) -> Option<ExitStatus> {
        self.end()
    }

    fn end(&mut self) -> Option<ExitStatus> {
        self.exit.take()?;
        let deadline = Instant::now() + EXIT_LIMIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline && wait_exit(self.child.id(), deadline) => {}
                _ => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        let _ = fs::remove_file(&self.api);
        let _ = fs::remove_file(&self.log);
        status
    }
}

/// Waits (until `deadline` at most) for process `pid`, a child of ours, to exit;
/// false when it cannot wait (no pidfd).
fn wait_exit(pid: u32, deadline: Instant) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let Ok(fd) = crate::run::sys::pidfd_open(pid as libc::pid_t) else {
        return false;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&fd),
        PollFlags::POLLIN,
    )];
    let _ = poll(&mut fds, PollTimeout::from(ms));
    true
}

impl Drop for Slirp {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    //! As root (the test suite's user), each test in a "host" network namespace of its
    //! own, joined by a veth to an "outside" one (TEST-NET-2 addresses, no route
    //! anywhere else): the container is `unshare -Urn` (its own user and network
    //! namespaces, as a rootless container has), slirp4netns is started from the
    //! "host", and its traffic leaves through that veth only.
    use super::*;
    use std::io::BufRead;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const HOST_IP: &str = "198.51.100.1";
    const OUT_IP: &str = "198.51.100.2";
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

    /// The "host" and "outside" namespaces; deleted on drop.
    struct Nets {
        host: String,
        outside: String,
    }

    impl Nets {
        fn new() -> Nets {
            let tag = format!(
                "lks{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            );
            let n = Nets {
                host: format!("{tag}h"),
                outside: format!("{tag}o"),
            };
            ip(&["netns", "add", &n.host]);
            ip(&["netns", "add", &n.outside]);
            for ns in [&n.host, &n.outside] {
                ip(&["-n", ns, "link", "set", "lo", "up"]);
            }
            ip(&[
                "-n", &n.host, "link", "add", "up0", "type", "veth", "peer", "name", "down0",
                "netns", &n.outside,
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
            ip(&["-n", &n.host, "route", "add", "default", "via", OUT_IP]);
            n
        }

        fn path(name: &str) -> PathBuf {
            Path::new("/run/netns").join(name)
        }

        /// Moves this thread (the test's) into the "host" namespace: what it spawns
        /// (slirp4netns) lives there.
        fn enter_host(&self) {
            enter(&Nets::path(&self.host));
        }
    }

    impl Drop for Nets {
        fn drop(&mut self) {
            for ns in [&self.host, &self.outside] {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }

    fn enter(ns: &Path) {
        let f = fs::File::open(ns).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {}: {e}", ns.display()));
    }

    /// Runs `f` on a thread inside the network namespace at `ns` (sockets it makes
    /// stay in that namespace).
    fn in_ns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(ns);
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// A TCP server on `addr` in `ns` answering each connection with "NAME PEER\n".
    fn serve(ns: &Path, addr: &str, name: &'static str) -> TcpListener {
        let l = in_ns(ns, || TcpListener::bind(addr).unwrap());
        let l2 = l.try_clone().unwrap();
        std::thread::spawn(move || {
            for s in l2.incoming() {
                let Ok(mut s) = s else { return };
                let peer = s
                    .peer_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let _ = s.write_all(format!("{name} {peer}\n").as_bytes());
            }
        });
        l
    }

    /// Connects from `ns` to `addr`; the server's line, or the error.
    fn ask(ns: &Path, addr: &str) -> std::io::Result<String> {
        let addr: SocketAddr = addr.parse().unwrap();
        in_ns(ns, || {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut line = String::new();
            std::io::BufReader::new(s).read_line(&mut line)?;
            if line.is_empty() {
                return Err(std::io::Error::other("closed without an answer"));
            }
            Ok(line.trim().to_string())
        })
    }

    /// A stand-in rootless container: a process in a user and network namespace of its
    /// own (`unshare -Urn`), killed on drop.
    struct Ctr(Child);

    impl Ctr {
        fn new(as_user: Option<(u32, u32)>) -> Ctr {
            let mut cmd = Command::new("unshare");
            cmd.args(["-Urn", "sh", "-c", "echo ready; exec sleep 600"])
                .stdout(Stdio::piped());
            if let Some((uid, gid)) = as_user {
                cmd.uid(uid).gid(gid);
            }
            let mut c = Ctr(cmd.spawn().expect("unshare (util-linux)"));
            // Its namespaces exist once it speaks.
            let mut line = String::new();
            std::io::BufReader::new(c.0.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line, "ready\n");
            c
        }

        fn pid(&self) -> i32 {
            self.0.id() as i32
        }

        fn ns(&self) -> PathBuf {
            PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
        }
    }

    impl Drop for Ctr {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn opts<'a>(ports: &'a [PortMap], dir: &'a Path) -> Options<'a> {
        Options {
            ports,
            dir,
            host_loopback: false,
            builtin_dns: true,
            as_user: None,
        }
    }

    /// The helper's sandbox left the host's mounts alone (the `ip netns` one is the
    /// shared mount it used to take down).
    fn assert_mounted(ns: &Path) {
        let fs_type = nix::sys::statfs::statfs(ns).unwrap().filesystem_type();
        assert_eq!(
            fs_type,
            nix::sys::statfs::NSFS_MAGIC,
            "{} unmounted",
            ns.display()
        );
    }

    fn gone(pid: u32) -> bool {
        !Path::new(&format!("/proc/{pid}")).exists()
    }

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the slirp4netns tests need root (tests/run.sh runs them so)"
        );
    }

    /// What a default start gives: outbound TCP (the server sees the host's address),
    /// tap0 configured (address, route, MTU), resolv.conf for slirp's DNS, a published
    /// port answered from the container, and no host loopback through the gateway.
    #[test]
    fn outbound_ports_and_no_host_loopback() {
        require_root();
        let nets = Nets::new();
        nets.enter_host();
        let host = Nets::path(&nets.host);
        let _out = serve(
            &Nets::path(&nets.outside),
            &format!("{OUT_IP}:7000"),
            "outside",
        );
        let _lo = serve(&host, "127.0.0.1:7001", "host-loopback");
        let ctr = Ctr::new(None);
        let dir = tempfile::tempdir().unwrap();
        let ports = [PortMap::parse("127.0.0.1:7002:80").unwrap()];
        let slirp = start(ctr.pid(), &ports, dir.path(), true).unwrap();
        assert_mounted(&host);

        assert_eq!(
            ask(&ctr.ns(), &format!("{OUT_IP}:7000")).unwrap(),
            format!("outside {HOST_IP}")
        );
        let link = Command::new("nsenter")
            .args([
                &format!("--net={}", ctr.ns().display()),
                "ip",
                "-o",
                "addr",
                "show",
                "tap0",
            ])
            .output()
            .unwrap();
        let link = String::from_utf8_lossy(&link.stdout);
        assert!(link.contains(&format!("inet {GUEST_ADDR}/24")), "{link}");
        let l = Command::new("nsenter")
            .args([
                &format!("--net={}", ctr.ns().display()),
                "ip",
                "-o",
                "link",
                "show",
                "tap0",
            ])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&l.stdout).contains(&format!("mtu {MTU}")));
        let r = Command::new("nsenter")
            .args([
                &format!("--net={}", ctr.ns().display()),
                "ip",
                "route",
                "show",
                "default",
            ])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&r.stdout).contains(&format!("via {GATEWAY}")));
        assert_eq!(RESOLV_CONF, format!("nameserver {DNS}\n"));

        // The attack: the host's 127.0.0.1 through the gateway.
        let e = ask(&ctr.ns(), "10.0.2.2:7001").unwrap_err();
        assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");

        // The published port, from the host, answered in the container.
        let _inner = serve(&ctr.ns(), "0.0.0.0:80", "container");
        let a = ask(&host, "127.0.0.1:7002").unwrap();
        assert!(a.starts_with("container "), "{a}");
        // Not published on the host's other addresses.
        assert!(ask(&host, &format!("{HOST_IP}:7002")).is_err());

        let pid = slirp.pid();
        let status = slirp.stop().expect("reaped");
        assert!(
            status.success(),
            "slirp4netns ended by its exit fd: {status}"
        );
        assert!(gone(pid));
        assert!(!dir.path().join("slirp4netns.sock").exists());
    }

    /// The control: with the gateway mapped to the host's loopback (what
    /// --disable-host-loopback turns off), the same service answers.
    #[test]
    fn host_loopback_control() {
        require_root();
        let nets = Nets::new();
        nets.enter_host();
        let _lo = serve(&Nets::path(&nets.host), "127.0.0.1:7001", "host-loopback");
        let ctr = Ctr::new(None);
        let dir = tempfile::tempdir().unwrap();
        let _slirp = start_with(
            ctr.pid(),
            &Options {
                host_loopback: true,
                ..opts(&[], dir.path())
            },
        )
        .unwrap();
        let a = ask(&ctr.ns(), "10.0.2.2:7001").unwrap();
        assert!(a.starts_with("host-loopback "), "{a}");
    }

    /// The helper ends when its exit fd's write end closes, which the kernel does for
    /// whatever ends this process (SIGKILL included), not only the handle's Drop.
    #[test]
    fn ends_with_its_exit_fd() {
        require_root();
        let nets = Nets::new();
        nets.enter_host();
        let ctr = Ctr::new(None);
        let dir = tempfile::tempdir().unwrap();
        let mut slirp = start_with(ctr.pid(), &opts(&[], dir.path())).unwrap();
        drop(slirp.exit.take());
        let status = slirp.child.wait().unwrap();
        assert!(status.success(), "{status}");
        // A helper whose container is gone is gone too once its handle is dropped.
        let ctr2 = Ctr::new(None);
        let slirp2 = start_with(ctr2.pid(), &opts(&[], dir.path())).unwrap();
        let pid = slirp2.pid();
        drop(ctr2);
        drop(slirp2);
        assert!(gone(pid));
    }

    /// A host port someone holds is refused in one line; a dead container is reported.
    #[test]
    fn taken_port_and_dead_container() {
        require_root();
        let nets = Nets::new();
        nets.enter_host();
        let _holder = TcpListener::bind("127.0.0.1:7003").unwrap();
        let ctr = Ctr::new(None);
        let dir = tempfile::tempdir().unwrap();
        let ports = [PortMap::parse("127.0.0.1:7003:80").unwrap()];
        let e = start(ctr.pid(), &ports, dir.path(), true).unwrap_err();
        assert!(matches!(e, NetError::PortTaken { .. }), "{e}");
        assert!(e.to_string().contains("already in use"), "{e}");

        let mut dead = Command::new("true").spawn().unwrap();
        let pid = dead.id() as i32;
        dead.wait().unwrap();
        let e = start(pid, &[], dir.path(), true).unwrap_err().to_string();
        assert!(e.starts_with("slirp4netns: configure tap0: "), "{e}");
    }

    /// /dev/net/tun opened to everyone for one test (Debian's own mode is 0666; this
    /// machine's is 0600), its mode restored on drop.
    struct TunMode(u32);

    impl TunMode {
        fn open() -> TunMode {
            use std::os::unix::fs::PermissionsExt;
            let m = fs::metadata("/dev/net/tun").unwrap().permissions().mode() & 0o7777;
            fs::set_permissions("/dev/net/tun", fs::Permissions::from_mode(0o666)).unwrap();
            TunMode(m)
        }
    }

    impl Drop for TunMode {
        fn drop(&mut self) {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions("/dev/net/tun", fs::Permissions::from_mode(self.0));
        }
    }

    /// An ordinary user made for the test, removed on drop.
    struct User {
        name: String,
        uid: u32,
        gid: u32,
    }

    impl User {
        fn new() -> User {
            let name = format!("lkslirp{}", std::process::id());
            let ok = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--user-group",
                    "--shell",
                    "/usr/sbin/nologin",
                    &name,
                ])
                .status()
                .expect("useradd (passwd)");
            assert!(ok.success(), "useradd {name}");
            let u = nix::unistd::User::from_name(&name).unwrap().unwrap();
            User {
                name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            }
        }
    }

    impl Drop for User {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.name).status();
        }
    }

    /// The real rootless case: an ordinary user's container and helper (sandboxed,
    /// seccomp on), outbound TCP, a published port, and still no host loopback.
    #[test]
    fn as_an_ordinary_user() {
        require_root();
        let nets = Nets::new();
        nets.enter_host();
        let host = Nets::path(&nets.host);
        let user = User::new();
        let _tun = TunMode::open();
        let _out = serve(
            &Nets::path(&nets.outside),
            &format!("{OUT_IP}:7000"),
            "outside",
        );
        let _lo = serve(&host, "127.0.0.1:7001", "host-loopback");
        let ctr = Ctr::new(Some((user.uid, user.gid)));
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::chown(dir.path(), Some(user.uid.into()), Some(user.gid.into())).unwrap();
        let ports = [PortMap::parse("127.0.0.1:7002:8080").unwrap()];
        let slirp = start_with(
            ctr.pid(),
            &Options {
                as_user: Some((user.uid, user.gid)),
                ..opts(&ports, dir.path())
            },
        )
        .unwrap();
        assert_mounted(&host);
        let owner = fs::metadata(format!("/proc/{}", slirp.pid())).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&owner), user.uid);
        assert_eq!(
            ask(&ctr.ns(), &format!("{OUT_IP}:7000")).unwrap(),
            format!("outside {HOST_IP}")
        );
        assert!(ask(&ctr.ns(), "10.0.2.2:7001").is_err());
        let _inner = serve(&ctr.ns(), "0.0.0.0:8080", "container");
        assert!(ask(&host, "127.0.0.1:7002")
            .unwrap()
            .starts_with("container "));
        let pid = slirp.pid();
        drop(slirp);
        assert!(gone(pid));
    }
}
