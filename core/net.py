"""Container networking shared by the plugins that give a container its own interface
(lxc_system's veth, hypervisor_kvm's tap): an IP allocator kept in the rt root, bridges,
veth pairs and taps, configured with pyroute2 (netlink), never by running `ip`.

pyroute2 is imported on first use: it costs ~100 ms, and only these plugins need it.
"""
import ipaddress
import json
import os

from .chelper import sha256
from .errors import RtError


def mac_for(cid: str) -> str:
    """A stable, locally administered unicast MAC derived from the container id."""
    h = sha256(cid.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


def link_name(prefix: str, cid: str) -> str:
    """An interface name (at most 15 bytes) unique to the container id."""
    return f"{prefix}{sha256(cid.encode()).hexdigest()[:15 - len(prefix)]}"


class Ipam:
    """Leases in one subnet, kept in <root>/ipam/<subnet>.json under a file lock.

    The gateway (first host address) is never leased; leasing twice for the same id
    returns the same address, so a retried create does not use up the range.
    """

    def __init__(self, root: str, subnet: str):
        try:
            self.net = ipaddress.ip_network(subnet, strict=True)
        except ValueError as e:
            raise RtError(f"invalid subnet {subnet!r}: {e}")
        if self.net.num_addresses < 4:
            raise RtError(f"subnet {subnet} is too small for a gateway and containers")
        self.dir = os.path.join(root, "ipam")
        self.path = os.path.join(self.dir, str(self.net).replace("/", "_") + ".json")

    @property
    def gateway(self) -> ipaddress.IPv4Interface:
        return ipaddress.ip_interface(f"{next(self.net.hosts())}/{self.net.prefixlen}")

    def _locked(self, change):
        from .lockedjson import update
        return update(self.path, change, 0o700)

    def lease(self, cid: str, want: str | None = None) -> ipaddress.IPv4Interface:
        """An address for `cid` (`want` if given and free)."""
        def change(leases):
            for addr, owner in leases.items():
                if owner == cid:
                    return addr
            taken = set(leases) | {str(self.gateway.ip)}
            if want:
                ip = ipaddress.ip_address(want.split("/")[0])
                if ip not in self.net or ip in (self.net.network_address, self.net.broadcast_address):
                    raise RtError(f"address {want} is not a host address of {self.net}")
                if str(ip) in taken:
                    raise RtError(f"address {ip} is already in use")
                leases[str(ip)] = cid
                return str(ip)
            for ip in self.net.hosts():
                if str(ip) not in taken:
                    leases[str(ip)] = cid
                    return str(ip)
            raise RtError(f"no free address left in {self.net}")
        return ipaddress.ip_interface(f"{self._locked(change)}/{self.net.prefixlen}")

    def release(self, cid: str) -> None:
        def change(leases):
            for addr in [a for a, owner in leases.items() if owner == cid]:
                del leases[addr]
        self._locked(change)

    def leases(self) -> dict[str, str]:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}


def _ipr():
    from pyroute2 import IPRoute
    return IPRoute()


def _netlink(what: str):
    """Turn a netlink failure into a one-line RtError naming the step."""
    from pyroute2 import NetlinkError

    class Guard:
        def __enter__(self):
            return self

        def __exit__(self, kind, e, tb):
            if isinstance(e, NetlinkError):
                raise RtError(f"network: {what}: {os.strerror(e.code) if e.code else e}") from None
    return Guard()


def ensure_bridge(name: str, gateway: ipaddress.IPv4Interface) -> int:
    """The bridge `name`, made (with the gateway address) and up if it is missing."""
    with _netlink(f"bridge {name}"), _ipr() as ip:
        found = ip.link_lookup(ifname=name)
        if not found:
            ip.link("add", ifname=name, kind="bridge")
            found = ip.link_lookup(ifname=name)
        idx = found[0]
        info = ip.get_links(idx)[0].get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        if kind != "bridge":
            raise RtError(f"rt.net.bridge {name}: that name is taken by a device that is not a bridge "
                          f"({kind or 'a physical or loopback device'})")
        have = {a.get_attr("IFA_ADDRESS") for a in ip.get_addr(index=idx, family=2)}
        if str(gateway.ip) not in have:
            clash = overlap(gateway.network, _host_networks(ip, idx))
            if clash:
                if not have:  # we made it just now
                    ip.link("del", index=idx)
                raise RtError(f"rt.net.subnet {gateway.network} overlaps {clash} on this host; choose a "
                              "range that no interface or route uses (traffic would leave through it)")
            ip.addr("add", index=idx, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
        ip.link("set", index=idx, state="up")
        return idx


def overlap(subnet: ipaddress.IPv4Network, host: list[tuple[str, ipaddress.IPv4Network]]) -> str | None:
    """The first host network that shares addresses with `subnet`, as `net (ifname)`."""
    for ifname, netw in host:
        if netw.prefixlen and netw.overlaps(subnet):
            return f"{netw} ({ifname})"
    return None


def _host_networks(ip, skip: int) -> list[tuple[str, ipaddress.IPv4Network]]:
    """IPv4 networks of the host's other interfaces: their addresses and main-table routes."""
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
    found = []
    for a in ip.get_addr(family=2):
        if a["index"] != skip:
            found.append((names.get(a["index"], "?"), ipaddress.ip_interface(
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network))
    for r in ip.get_routes(family=2, table=254):
        dst, oif = r.get_attr("RTA_DST"), r.get_attr("RTA_OIF")
        if dst and oif != skip:
            found.append((names.get(oif, "?"), ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)))
    return found


def add_veth(host_if: str, bridge: str, pid: int, inside_if: str, address: ipaddress.IPv4Interface,
             gateway: ipaddress.IPv4Interface | None, mac: str) -> None:
    """A veth pair: `host_if` on `bridge`, the peer moved into the network namespace of
    `pid`, renamed `inside_if`, with `mac`, `address` and a default route via `gateway`."""
    peer = host_if + "p" if len(host_if) < 15 else host_if[:14] + "p"
    with _netlink(f"veth {host_if} into the namespace of {pid}"), _ipr() as ip:
        ip.link("add", ifname=host_if, kind="veth", peer=peer)
        try:
            host_idx = ip.link_lookup(ifname=host_if)[0]
            ip.link("set", index=host_idx, master=ip.link_lookup(ifname=bridge)[0], state="up")
            ip.link("set", index=ip.link_lookup(ifname=peer)[0], net_ns_pid=pid)
        except Exception:
            ip.link("del", index=ip.link_lookup(ifname=host_if)[0])
            raise
    with _netlink(f"configure {inside_if} in the namespace of {pid}"):
        _configure_peer(pid, peer, inside_if, address, gateway, mac)


def _configure_peer(pid, peer, inside_if, address, gateway, mac):
    from pyroute2 import NetNS
    netns = NetNS(f"/proc/{pid}/ns/net")
    try:
        idx = netns.link_lookup(ifname=peer)[0]
        netns.link("set", index=idx, ifname=inside_if, address=mac)
        netns.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
        netns.link("set", index=idx, state="up")
        lo = netns.link_lookup(ifname="lo")
        if lo:
            netns.link("set", index=lo[0], state="up")
        if gateway is not None:
            netns.route("add", dst="default", gateway=str(gateway.ip))
    finally:
        netns.close()


def add_tap(name: str, bridge: str) -> None:
    """A tap device on `bridge`, for a VM's virtio-net."""
    with _ipr() as ip:
        ip.link("add", ifname=name, kind="tuntap", mode="tap")
        idx = ip.link_lookup(ifname=name)[0]
        ip.link("set", index=idx, master=ip.link_lookup(ifname=bridge)[0], state="up")


def delete_link(name: str) -> bool:
    """Remove an interface if it exists (a veth takes its peer with it)."""
    with _ipr() as ip:
        found = ip.link_lookup(ifname=name)
        if found:
            ip.link("del", index=found[0])
        return bool(found)
