"""The IP allocator and naming helpers of rt.core.net (no root, no netlink)."""
import ipaddress
import multiprocessing
import os

import pytest

from rt.core.errors import RtError
from rt.core.net import Ipam, link_name, mac_for


def test_mac_is_stable_local_unicast():
    m = mac_for("web-1")
    assert m == mac_for("web-1") and m != mac_for("web-2")
    first = int(m.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast
    assert len(m.split(":")) == 6


def test_link_names_fit_ifnamsiz():
    assert len(link_name("rtv", "x" * 300)) == 15
    assert link_name("rtv", "a") != link_name("rtv", "b")


def test_lease_skips_gateway_and_is_idempotent(tmp_path):
    ipam = Ipam(str(tmp_path), "192.0.2.0/29")
    assert ipam.gateway == ipaddress.ip_interface("192.0.2.1/29")
    a = ipam.lease("c1")
    assert a == ipaddress.ip_interface("192.0.2.2/29")
    assert ipam.lease("c1") == a  # a retry gets the same address
    assert ipam.lease("c2").ip == ipaddress.ip_address("192.0.2.3")
    ipam.release("c1")
    assert ipam.lease("c3").ip == ipaddress.ip_address("192.0.2.2")


def test_requested_address_and_exhaustion(tmp_path):
    ipam = Ipam(str(tmp_path), "192.0.2.0/29")  # hosts .1-.6, .1 is the gateway
    assert str(ipam.lease("a", "192.0.2.6").ip) == "192.0.2.6"
    with pytest.raises(RtError, match="already in use"):
        ipam.lease("b", "192.0.2.6/29")
    with pytest.raises(RtError, match="not a host address"):
        ipam.lease("b", "198.51.100.1")
    for i in range(4):
        ipam.lease(f"n{i}")
    with pytest.raises(RtError, match="no free address"):
        ipam.lease("one-too-many")


def test_bad_subnets(tmp_path):
    with pytest.raises(RtError, match="invalid subnet"):
        Ipam(str(tmp_path), "192.0.2.1/24")
    with pytest.raises(RtError, match="too small"):
        Ipam(str(tmp_path), "192.0.2.0/31")


def _lease_many(root, prefix, out):
    ipam = Ipam(root, "192.0.2.0/24")
    out.extend([str(ipam.lease(f"{prefix}{i}").ip) for i in range(20)])


def test_concurrent_leases_never_collide(tmp_path):
    with multiprocessing.Manager() as m:
        out = m.list()
        procs = [multiprocessing.Process(target=_lease_many, args=(str(tmp_path), p, out)) for p in "abc"]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        addrs = list(out)
    assert len(addrs) == 60 and len(set(addrs)) == 60


def test_netlink_errors_read_as_words():
    """A netlink failure names its step and says what went wrong, never a bare errno tuple."""
    from pyroute2 import NetlinkError
    from rt.core.net import _netlink
    with pytest.raises(RtError) as e:
        with _netlink("bridge rt9: create it"):
            raise NetlinkError(19)
    assert e.value.msg == "network: bridge rt9: create it: No such device"
    with pytest.raises(RtError, match=r"^network: veth x: setns: Invalid argument$"):
        with _netlink("veth x"):
            raise OSError(22, "setns: Invalid argument")


def _take_lock(path, out):
    from rt.core.net import _Flock
    import time
    out.put("trying")
    with _Flock(path):
        out.put(time.monotonic())


def test_bridge_lock_serializes(tmp_path):
    """ensure_bridge's lock file in the rt root: a second holder waits for the first."""
    import time
    from rt.core.net import _Flock
    path = str(tmp_path / "ipam" / "bridges.lock")
    ctx = multiprocessing.get_context("spawn")  # a forked child would share our lock's open file
    q = ctx.Queue()
    with _Flock(path):
        p = ctx.Process(target=_take_lock, args=(path, q))
        p.start()
        assert q.get(timeout=30) == "trying"
        time.sleep(0.3)
        released = time.monotonic()
    p.join(10)
    assert q.get(timeout=5) >= released


class _Gone:
    """What release() gets after a failed create: the id, the state dir and the saved extra."""

    def __init__(self, root, cid, extra):
        self.id, self.dir, self.pid, self.record, self.extra = cid, os.path.join(root, cid), 0, {}, extra


def test_release_returns_the_lease_whatever_failed_before(tmp_path):
    """lxc_system's release after a create that failed before its veth existed (no host_if
    saved), and one whose other steps fail: the lease goes back, the failure is in words."""
    from rt.plugins.lxc_system.backend import SystemBackend
    root = str(tmp_path)
    ipam = Ipam(root, "192.0.2.0/24")
    ipam.lease("early")
    SystemBackend().release(_Gone(root, "early", {"net": {"subnet": "192.0.2.0/24", "bridge": "rt0"}}))
    assert ipam.leases() == {}

    ipam.lease("broken")
    os.mkdir(os.path.join(root, "idranges.json"))  # the id-range step cannot read its file
    extra = {"idrange": 1 << 20, "net": {"subnet": "192.0.2.0/24", "bridge": "rt0"}}
    with pytest.raises(RtError, match=r"^broken: could not release id range: .*Is a directory"):
        SystemBackend().release(_Gone(root, "broken", extra))
    assert ipam.leases() == {}
