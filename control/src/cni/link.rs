//! The pod's network device through rtnetlink: a veth pair (node end named after the pod,
//! pod end in the runtime's netns) or a TAP the node process serves, then the pod side's MAC,
//! MTU, address, routes and `gso_max_segs`. Also the one link change the node process makes on
//! its host TAP (its MAC).
//!
//! Invariants:
//! - Netlink sockets are opened on a short-lived thread, after it entered the target network
//!   namespace (a socket talks to the namespace it was created in); no other thread moves.
//! - The pod side routes everything through the gateway: its addresses (one per family) are
//!   added without the connected route (`noprefixroute`; IPv6 also `nodad`), IPv4 with a link
//!   route to the gateway and a default route via it, because the dataplane answers ARP only
//!   for the gateway on pod ports; IPv6 with a default route via the link-local gateway
//!   `fe80::1`, which the dataplane answers neighbour solicitations for.
//! - A missing link is not an error for deletion (DEL is idempotent).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteScope};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

const ENODEV: i32 = 19;

/// Runs `f` with a netlink handle in the network namespace bound at `netns` (the caller's
/// own when `None`), on a thread of its own with a single-threaded runtime.
pub fn with_netlink<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T, String>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, String>>,
{
    let run = move || -> io::Result<Result<T, String>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        Ok(runtime.block_on(async move {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
            tokio::spawn(connection);
            f(handle).await
        }))
    };
    let outcome = match netns {
        Some(ns) => crate::node::netns::run_in(ns, run),
        None => std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .map_err(|_| io::Error::other("netlink thread panicked"))?
        }),
    };
    outcome.map_err(|e| e.to_string())?
}

fn is_no_device(error: &rtnetlink::Error) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -ENODEV)
}

/// The link named `name`, if it exists.
pub async fn find_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, String> {
    match handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(e) if is_no_device(&e) => Ok(None),
        Err(e) => Err(format!("looking up link {name}: {e}")),
    }
}

pub fn link_mac(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => bytes.as_slice().try_into().ok(),
        _ => None,
    })
}

fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

/// Deletes link `name` in `netns` (the caller's namespace when `None`); false when there was
/// none.
pub fn delete_link(netns: Option<&Path>, name: &str) -> Result<bool, String> {
    delete_link_with_mac(netns, name, None)
}

/// Deletes link `name` in `netns` if it has MAC `mac` (any MAC when `None`); false when there
/// was no such link.
pub fn delete_link_with_mac(
    netns: Option<&Path>,
    name: &str,
    mac: Option<[u8; 6]>,
) -> Result<bool, String> {
    let name = name.to_owned();
    with_netlink(netns, |handle| async move {
        let Some(link) = find_link(&handle, &name).await? else {
            return Ok(false);
        };
        if mac.is_some() && link_mac(&link) != mac {
            return Ok(false);
        }
        match handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_no_device(&e) => Ok(false),
            Err(e) => Err(format!("deleting link {name}: {e}")),
        }
    })
}

/// Sets the MAC of link `name` in the caller's namespace (the node's host TAP).
pub fn set_mac(name: &str, mac: [u8; 6]) -> Result<(), String> {
    let name = name.to_owned();
    with_netlink(None, |handle| async move {
        handle
            .link()
            .set(
                LinkUnspec::new_with_name(&name)
                    .address(mac.to_vec())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| format!("setting the MAC of {name}: {e}"))
    })
}

/// Creates a veth pair: `host_name` in the caller's namespace (up), `pod_name` in the
/// namespace bound at `netns`, both with `mtu`. Returns the host end's MAC.
pub fn create_veth(
    host_name: &str,
    pod_name: &str,
    netns: &Path,
    mtu: u32,
) -> Result<[u8; 6], String> {
    let ns_file = std::fs::File::open(netns).map_err(|e| format!("{}: {e}", netns.display()))?;
    let fd = ns_file.as_raw_fd();
    let (host_name, pod_name) = (host_name.to_owned(), pod_name.to_owned());
    with_netlink(None, |handle| async move {
        let peer = LinkUnspec::new_with_name(&pod_name)
            .mtu(mtu)
            .setns_by_fd(fd)
            .build();
        let message = LinkVeth::new(&host_name, &pod_name)
            .mtu(mtu)
            .up()
            .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
                rtnetlink::packet_route::link::InfoVeth::Peer(peer),
            ))
            .build();
        handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| format!("creating veth {host_name} (pod end {pod_name}): {e}"))?;
        let link = find_link(&handle, &host_name)
            .await?
            .ok_or_else(|| format!("veth {host_name} vanished after its creation"))?;
        link_mac(&link).ok_or_else(|| format!("veth {host_name} has no MAC"))
    })
}

/// Moves link `name` of the caller's namespace into the namespace bound at `netns`.
pub fn move_link(name: &str, netns: &Path) -> Result<(), String> {
    let ns_file = std::fs::File::open(netns).map_err(|e| format!("{}: {e}", netns.display()))?;
    let fd = ns_file.as_raw_fd();
    let name = name.to_owned();
    with_netlink(None, |handle| async move {
        handle
            .link()
            .set(LinkUnspec::new_with_name(&name).setns_by_fd(fd).build())
            .execute()
            .await
            .map_err(|e| format!("moving {name} into the pod's netns: {e}"))
    })
}

/// What the pod side gets.
#[derive(Debug, Clone)]
pub struct PodSide {
    /// The link's name now, and the name it should get (`CNI_IFNAME`).
    pub current_name: String,
    pub ifname: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// One per family; each gets a default route via its gateway.
    pub addresses: Vec<super::spec::PodAddress>,
    pub gso_max_segs: Option<u32>,
}

/// Names, addresses and routes the pod's link inside the namespace bound at `netns`.
pub fn configure_pod_side(netns: &Path, pod: &PodSide) -> Result<(), String> {
    let pod = pod.clone();
    with_netlink(Some(netns), |handle| async move {
        let link = find_link(&handle, &pod.current_name)
            .await?
            .ok_or_else(|| format!("{} is not in the pod's netns", pod.current_name))?;
        let index = link.header.index;
        let mut settings = LinkUnspec::new_with_index(index)
            .name(pod.ifname.clone())
            .address(pod.mac.to_vec())
            .mtu(pod.mtu);
        if let Some(segs) = pod.gso_max_segs {
            settings = settings.append_extra_attribute(LinkAttribute::GsoMaxSegs(segs));
        }
        let fail = |what: &'static str| {
            let ifname = pod.ifname.clone();
            move |e: rtnetlink::Error| format!("{what} of {ifname}: {e}")
        };
        handle
            .link()
            .set(settings.build())
            .execute()
            .await
            .map_err(fail("setting name, MAC and MTU"))?;
        for address in &pod.addresses {
            let mut add = handle
                .address()
                .add(index, address.address, address.prefix_len);
            // No connected route; an IPv6 address is usable at once (the dataplane never
            // answers duplicate address detection, so DAD would only delay the pod).
            let flags = if address.address.is_ipv4() {
                AddressFlags::Noprefixroute
            } else {
                AddressFlags::Noprefixroute | AddressFlags::Nodad
            };
            add.message_mut()
                .attributes
                .push(AddressAttribute::Flags(flags));
            add.replace()
                .execute()
                .await
                .map_err(fail("adding an address"))?;
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(fail("bringing up"))?;
        for address in &pod.addresses {
            let routes = match address.gateway {
                IpAddr::V4(gateway) => vec![
                    (
                        RouteMessageBuilder::<Ipv4Addr>::new()
                            .destination_prefix(gateway, 32)
                            .output_interface(index)
                            .scope(RouteScope::Link)
                            .build(),
                        "adding the route to the gateway",
                    ),
                    (
                        RouteMessageBuilder::<Ipv4Addr>::new()
                            .gateway(gateway)
                            .output_interface(index)
                            .build(),
                        "adding the default route",
                    ),
                ],
                // A link-local gateway is on-link by definition: no route to it needed.
                IpAddr::V6(gateway) => vec![(
                    RouteMessageBuilder::<Ipv6Addr>::new()
                        .gateway(gateway)
                        .output_interface(index)
                        .build(),
                    "adding the IPv6 default route",
                )],
            };
            for (route, what) in routes {
                handle
                    .route()
                    .add(route)
                    .replace()
                    .execute()
                    .await
                    .map_err(fail(what))?;
            }
        }
        Ok(())
    })
}

/// What CHECK finds of the pod's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// IPv4 and IPv6 (global) addresses with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// The gateways of the namespace's default routes, both families.
    pub default_gateways: Vec<IpAddr>,
}

/// The pod link `ifname` in `netns`, if it exists.
pub fn inspect(netns: &Path, ifname: &str) -> Result<Option<Found>, String> {
    let ifname = ifname.to_owned();
    with_netlink(Some(netns), |handle| async move {
        let Some(link) = find_link(&handle, &ifname).await? else {
            return Ok(None);
        };
        let index = link.header.index;
        let mut addresses = Vec::new();
        let mut stream = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|e| format!("listing addresses of {ifname}: {e}"))?
        {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(ip) = attribute {
                    addresses.push((*ip, message.header.prefix_len));
                }
            }
        }
        let mut default_gateways = Vec::new();
        let dumps = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for dump in dumps {
            let mut routes = handle.route().get(dump).execute();
            while let Some(route) = routes
                .try_next()
                .await
                .map_err(|e| format!("listing routes: {e}"))?
            {
                if route.header.destination_prefix_length != 0 {
                    continue;
                }
                for attribute in &route.attributes {
                    if let RouteAttribute::Gateway(gw) = attribute {
                        match gw {
                            rtnetlink::packet_route::route::RouteAddress::Inet(v4) => {
                                default_gateways.push(IpAddr::V4(*v4));
                            }
                            rtnetlink::packet_route::route::RouteAddress::Inet6(v6) => {
                                default_gateways.push(IpAddr::V6(*v6));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(Some(Found {
            mac: link_mac(&link),
            mtu: link_mtu(&link),
            addresses,
            default_gateways,
        }))
    })
}

/// The MTU of link `name` in the caller's namespace.
pub fn mtu_of(name: &str) -> Result<u32, String> {
    let name = name.to_owned();
    with_netlink(None, |handle| async move {
        let link = find_link(&handle, &name)
            .await?
            .ok_or_else(|| format!("no link {name}"))?;
        link_mtu(&link).ok_or_else(|| format!("{name} reports no MTU"))
    })
}

/// Whether link `name` exists in the caller's namespace.
pub fn exists(name: &str) -> Result<bool, String> {
    let name = name.to_owned();
    with_netlink(None, |handle| async move {
        Ok(find_link(&handle, &name).await?.is_some())
    })
}
