//! A small synchronous rtnetlink client: the few link, address and route requests a
//! container's network needs, each sent with NLM_F_ACK and answered before the next.
//!
//! Messages are the `netlink-packet-route` types (no hand-packed attributes); the
//! socket is `netlink-sys`'s blocking one (no async runtime on the run path). A socket
//! belongs to the network namespace its creator was in when it was made, which is how
//! the parent configures a container's namespace (net/mod.rs `in_netns`).

use std::net::{Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A failed request: what was asked, and the kernel's errno.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub(crate) struct NetlinkError {
    pub what: String,
    #[source]
    pub source: std::io::Error,
}

fn err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError { what, source }
}

pub(crate) struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// A socket in the caller's network namespace.
    pub(crate) fn new() -> Result<Rtnl, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(err("open a netlink socket"))?;
        sock.bind_auto().map_err(err("bind a netlink socket"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(err("connect a netlink socket"))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// Sends one request and waits for its ACK (or the replies, for a GET).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(err(what))?;
        let mut replies = Vec::new();
        let mut rx = vec![0u8; 32 * 1024];
        loop {
            let n = self.sock.recv(&mut &mut rx[..], 0).map_err(err(what))?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| err(what)(std::io::Error::other(e.to_string())))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(err(what)(std::io::Error::other("empty netlink reply")));
                }
                off += len;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => {
                                Err(err(what)(std::io::Error::from_raw_os_error(-code.get())))
                            }
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        // A plain GET (no dump) is answered by one message, then the ACK.
                    }
                    _ => {}
                }
            }
        }
    }

    fn ack(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<(), NetlinkError> {
        self.request(msg, NLM_F_ACK | flags, what).map(|_| ())
    }

    /// The index of the link named `name`, None when there is none.
    pub(crate) fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            RouteNetlinkMessage::GetLink(m),
            NLM_F_ACK,
            &format!("look up link {name}"),
        ) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.source.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge named `name` (EEXIST is an error: the caller checked first).
    pub(crate) fn add_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.ack(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create bridge {name}"),
        )
    }

    /// Creates the veth pair `host` / `peer`, the peer made directly in the network
    /// namespace of process `pid` (so it never exists on the host side).
    /// `mac`: the peer's address (else the kernel's random one). The host end is made
    /// a port of bridge `master` (index) in the same request, and left down.
    pub(crate) fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        pid: i32,
        mac: Option<[u8; 6]>,
        master: u32,
    ) -> Result<(), NetlinkError> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        p.attributes.push(LinkAttribute::NetNsPid(pid as u32));
        if let Some(m) = mac {
            p.attributes.push(LinkAttribute::Address(m.to_vec()));
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(host.to_string()));
        m.attributes.push(LinkAttribute::Controller(master));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.ack(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create veth {host}"),
        )
    }

    /// Sets the bridge port named `name` up, isolated first when `isolated` (isolated
    /// ports forward only to non-isolated ones, the bridge itself, never to each
    /// other): one request, the kernel applies the port's options before the flags.
    pub(crate) fn port_up(&mut self, name: &str, isolated: bool) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if isolated {
            m.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
                    true,
                )])),
            ]));
        }
        self.ack(
            RouteNetlinkMessage::NewLink(m),
            0,
            &format!("set bridge port {name} up"),
        )
    }

    /// Sets link `index` up.
    pub(crate) fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.ack(RouteNetlinkMessage::SetLink(m), 0, "set link up")
    }

    /// Deletes link `index` (a veth takes its peer with it).
    pub(crate) fn del_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.ack(RouteNetlinkMessage::DelLink(m), 0, "delete link")
    }

    /// Adds `addr/prefix` to link `index`.
    pub(crate) fn add_address(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr.into()));
        m.attributes.push(AddressAttribute::Address(addr.into()));
        let bits = u32::from(addr) | (u32::MAX >> prefix.min(32));
        m.attributes
            .push(AddressAttribute::Broadcast(Ipv4Addr::from(bits)));
        self.ack(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add address {addr}/{prefix}"),
        )
    }

    /// Adds `addr/prefix` to link `index`, usable at once (no duplicate address
    /// detection: locker hands out each address once, and DAD would hold it a second).
    pub(crate) fn add_address6(
        &mut self,
        index: u32,
        addr: Ipv6Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.header.flags = AddressHeaderFlags::Nodad;
        m.attributes.push(AddressAttribute::Address(addr.into()));
        self.ack(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add address {addr}/{prefix}"),
        )
    }

    /// Whether the main table has an IPv6 default route (the host has IPv6 out).
    pub(crate) fn has_default_route6(&mut self) -> Result<bool, NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        let replies = self.request(
            RouteNetlinkMessage::GetRoute(m),
            netlink_packet_core::NLM_F_DUMP,
            "list routes",
        )?;
        Ok(replies.into_iter().any(|r| {
            matches!(r, RouteNetlinkMessage::NewRoute(rt)
                if rt.header.table == RouteHeader::RT_TABLE_MAIN
                    && rt.header.destination_prefix_length == 0
                    && rt.header.kind == RouteType::Unicast)
        }))
    }

    /// The default route (IPv4 or IPv6, as `gateway` is) via `gateway`.
    pub(crate) fn add_default_route(
        &mut self,
        gateway: impl Into<std::net::IpAddr>,
    ) -> Result<(), NetlinkError> {
        let gateway = gateway.into();
        let mut m = RouteMessage::default();
        m.header.address_family = match gateway {
            std::net::IpAddr::V4(_) => AddressFamily::Inet,
            std::net::IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        self.ack(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add default route via {gateway}"),
        )
    }

    /// Every IPv4 and IPv6 address on this namespace's links, as (link index, address,
    /// prefix): one dump for both families.
    pub(crate) fn addresses(&mut self) -> Result<Vec<(u32, std::net::IpAddr, u8)>, NetlinkError> {
        let m = AddressMessage::default(); // AF_UNSPEC: every family
        let replies = self.request(
            RouteNetlinkMessage::GetAddress(m),
            netlink_packet_core::NLM_F_DUMP,
            "list addresses",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) => a.attributes.iter().find_map(|at| match at {
                    AddressAttribute::Address(ip) => {
                        Some((a.header.index, *ip, a.header.prefix_len))
                    }
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }

    /// Every IPv4 route destination in the main table, as (network, prefix).
    pub(crate) fn routes(&mut self) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        let replies = self.request(
            RouteNetlinkMessage::GetRoute(m),
            netlink_packet_core::NLM_F_DUMP,
            "list routes",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(rt)
                    if rt.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    let dst = rt.attributes.iter().find_map(|at| match at {
                        RouteAttribute::Destination(RouteAddress::Inet(v)) => Some(*v),
                        _ => None,
                    });
                    dst.map(|d| (d, rt.header.destination_prefix_length))
                }
                _ => None,
            })
            .collect())
    }
}
