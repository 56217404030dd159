"""Container networking shared by the plugins that give a container its own interface
(lxc_system's veth, hypervisor_kvm's tap): an IP allocator kept in the rt root, bridges,
veth pairs and taps, configured with pyroute2 (netlink), never by running `ip`.

pyroute2 is imported on first use: it costs ~100 ms, and only these plugins need it.
"""
import ipaddress
import json
import os
from errno import EEXIST, ENODEV

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


def _reason(e) -> str:
    return os.strerror(e.code) if getattr(e, "code", 0) else str(e)


def _netlink(what: str):
    """Turn a netlink failure into a one-line RtError naming the step."""
    from pyroute2 import NetlinkError

    class Guard:
        def __enter__(self):
            return self

        def __exit__(self, kind, e, tb):
            if isinstance(e, NetlinkError):
                raise RtError(f"network: {what}: {_reason(e)}") from None
            if isinstance(e, OSError):
                raise RtError(f"network: {what}: {e.strerror or e}") from None
    return Guard()


class _Flock:
    """An exclusive flock on `path` (nothing when path is None)."""

    def __init__(self, path: str | None):
        self.path, self.fd = path, None

    def __enter__(self):
        if self.path:
            import fcntl
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)


class _Vanished(Exception):
    """The bridge went away while we set it up (deleted by someone else)."""


def ensure_bridge(name: str, gateway: ipaddress.IPv4Interface, lock_dir: str | None = None) -> int:
    """The bridge `name`, made (with the gateway address) and up if it is missing.

    Safe to run from many creates at once: with `lock_dir` (the rt root's ipam dir) rt's
    own creates take turns, and a bridge or address that another process made first
    (EEXIST) is taken as it is.
    """
    lock = _Flock(os.path.join(lock_dir, "bridges.lock") if lock_dir else None)
    with _netlink(f"bridge {name}"), lock, _ipr() as ip:
        for _ in range(5):
            try:
                return _bridge_once(ip, name, gateway)
            except _Vanished:
                continue
    raise RtError(f"network: bridge {name}: it kept disappearing while being set up "
                  "(another program deletes it)")


def _bridge_once(ip, name: str, gateway: ipaddress.IPv4Interface) -> int:
    from pyroute2 import NetlinkError

    def step(what, fn, *args, ok=(), **kw):
        try:
            return fn(*args, **kw)
        except NetlinkError as e:
            if e.code in ok:
                return None
            if e.code == ENODEV:
                raise _Vanished() from None
            raise RtError(f"network: bridge {name}: {what}: {_reason(e)}") from None

    made = False
    found = ip.link_lookup(ifname=name)
    if not found:
        # EEXIST: another create made it since the lookup
        made = step("create it", ip.link, "add", ifname=name, kind="bridge", ok=(EEXIST,)) is not None
        found = ip.link_lookup(ifname=name)
        if not found:
            raise _Vanished()
    idx = found[0]
    info = step("read it", ip.get_links, idx)[0].get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    if kind != "bridge":
        raise RtError(f"rt.net.bridge {name}: that name is taken by a device that is not a bridge "
                      f"({kind or 'a physical or loopback device'})")
    have = {a.get_attr("IFA_ADDRESS") for a in ip.get_addr(index=idx, family=2)}
    if str(gateway.ip) not in have:
        clash = overlap(gateway.network, _host_networks(ip, idx))
        if clash:
            if made:
                step("remove it again", ip.link, "del", index=idx, ok=(ENODEV,))
            raise RtError(f"rt.net.subnet {gateway.network} overlaps {clash} on this host; choose a "
                          "range that no interface or route uses (traffic would leave through it)")
        step(f"add address {gateway}", ip.addr, "add", index=idx, address=str(gateway.ip),
             prefixlen=gateway.network.prefixlen, ok=(EEXIST,))
    step("set it up", ip.link, "set", index=idx, state="up")
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
             gateway: ipaddress.IPv4Interface | None, mac: str, on_made=None) -> None:
    """A veth pair: `host_if` on `bridge`, the peer moved into the network namespace of
    `pid`, renamed `inside_if`, with `mac`, `address` and a default route via `gateway`.

    on_made() runs as soon as the pair exists, so the caller records it for its release;
    a `host_if` that exists already is not touched (it is not ours to delete).
    """
    from pyroute2 import NetlinkError
    peer = host_if + "p" if len(host_if) < 15 else host_if[:14] + "p"
    with _ipr() as ip:
        try:
            ip.link("add", ifname=host_if, kind="veth", peer=peer)
        except NetlinkError as e:
            hint = (" (left by an earlier container of the same id, or one of that id in another rt root)"
                    if e.code == EEXIST else "")
            raise RtError(f"network: veth {host_if}: create it: {_reason(e)}{hint}") from None
        try:
            if on_made:
                on_made()
            with _netlink(f"veth {host_if}: attach it to bridge {bridge} and move {peer} into the namespace of {pid}"):
                ip.link("set", index=_index(ip, host_if), master=_index(ip, bridge, "bridge "), state="up")
                ip.link("set", index=_index(ip, peer), net_ns_pid=pid)
        except BaseException:
            _delete(ip, host_if)
            raise
    with _netlink(f"configure {inside_if} in the namespace of {pid}"):
        _configure_peer(pid, peer, inside_if, address, gateway, mac)


def _index(ip, name: str, what: str = "") -> int:
    found = ip.link_lookup(ifname=name)
    if not found:
        raise RtError(f"network: {what}{name}: no such interface (deleted meanwhile?)")
    return found[0]


def _delete(ip, name: str) -> bool:
    """Delete `name`; False if it is not there (or went meanwhile, as a veth does with its netns)."""
    from pyroute2 import NetlinkError
    found = ip.link_lookup(ifname=name)
    if not found:
        return False
    try:
        ip.link("del", index=found[0])
    except NetlinkError as e:
        if e.code == ENODEV:
            return False
        raise RtError(f"network: remove {name}: {_reason(e)}") from None
    return True


def _configure_peer(pid, peer, inside_if, address, gateway, mac):
    def configure(ip):
        idx = _index(ip, peer)
        ip.link("set", index=idx, ifname=inside_if, address=mac)
        ip.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
        ip.link("set", index=idx, state="up")
        lo = ip.link_lookup(ifname="lo")
        if lo:
            ip.link("set", index=lo[0], state="up")
        if gateway is not None:
            ip.route("add", dst="default", gateway=str(gateway.ip))
    in_netns(pid, configure)


def in_netns(pid: int, work):
    """work(ip) with an IPRoute inside the network namespace of `pid`.

    It runs on a thread of its own that joins the namespace (setns of a netns affects only
    the calling thread, and the thread's netns ends with it). Not pyroute2's NetNS: that
    forks a Python child which then gets SIGTERM, so it would run the caller's signal
    handlers and could unwind into the caller's frames.
    """
    import ctypes
    import threading
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    out = {}

    def run():  # owns fd
        try:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into the network namespace of {pid}: {os.strerror(err)}")
            finally:
                os.close(fd)
            with _ipr() as ip:
                out["result"] = work(ip)
        except BaseException as e:
            out["error"] = e
    t = threading.Thread(target=run, name=f"netns-{pid}", daemon=True)
    try:
        t.start()
    except BaseException:
        os.close(fd)
        raise
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("result")


def add_tap(name: str, bridge: str, on_made=None) -> None:
    """A tap device on `bridge`, for a VM's virtio-net (on_made() as in add_veth)."""
    with _netlink(f"tap {name} on bridge {bridge}"), _ipr() as ip:
        ip.link("add", ifname=name, kind="tuntap", mode="tap")
        try:
            if on_made:
                on_made()
            ip.link("set", index=_index(ip, name), master=_index(ip, bridge, "bridge "), state="up")
        except BaseException:
            _delete(ip, name)
            raise


def delete_link(name: str) -> bool:
    """Remove an interface if it exists (a veth takes its peer with it). One that vanishes
    meanwhile counts as removed: a veth goes by itself once its peer's netns is gone."""
    with _ipr() as ip:
        return _delete(ip, name)


# --- the whole attach/release, as every kind with its own interface does it -------------------
def attach(req, net, *, kind: str, prefix: str, pid: int | None = None) -> dict:
    """Give container req.id an interface on net.bridge (net: api.net_settings): lease an
    address, make sure the bridge exists, and make a veth whose peer goes into the network
    namespace of `pid` (kind "veth"), or a tap for a VM (kind "tap"). Each step is recorded
    with req.save_extra(net=...) before the next, so `release` undoes just what was done, also
    after a failure half-way. Returns {"link", "address", "gateway", "mac", "ifname"}."""
    root = os.path.dirname(req.state_dir)
    ipam = Ipam(root, net.subnet)
    link = link_name(prefix, req.id)
    saved = {"subnet": net.subnet, "bridge": net.bridge}
    req.save_extra(net=saved)
    address = ipam.lease(req.id, net.address)
    ensure_bridge(net.bridge, ipam.gateway, lock_dir=ipam.dir)
    mac = mac_for(req.id)

    def made():  # the link once it is ours: one that existed before is not
        req.save_extra(net=dict(saved, link=link))
    if kind == "veth":
        add_veth(link, net.bridge, pid, net.ifname, address, ipam.gateway, mac, on_made=made)
    elif kind == "tap":
        add_tap(link, net.bridge, on_made=made)
    else:
        raise ValueError(f"unknown link kind {kind!r}")
    req.save_extra(net=dict(saved, link=link, address=str(address)))
    return {"link": link, "address": address, "gateway": ipam.gateway, "mac": mac, "ifname": net.ifname}


def release(root: str, cid: str, saved: dict | None) -> None:
    """Undo `attach` from what it recorded (the container's extra["net"]): delete the link,
    and return the address lease whatever happened to the link."""
    if not saved:
        return
    link = saved.get("link") or saved.get("host_if") or saved.get("tap")  # the latter two: records of rt 0.1
    try:
        if link:
            delete_link(link)
    finally:
        Ipam(root, saved["subnet"]).release(cid)
