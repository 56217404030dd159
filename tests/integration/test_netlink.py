"""rt.core.net against the kernel: a private bridge and a veth into a namespace made here.
Addresses come from 203.0.113.0/24 (TEST-NET-3); no packet is sent anywhere."""
import ipaddress
import os
import subprocess
import time

import pytest

from rt.core import net
from rt.core.errors import RtError

pytestmark = pytest.mark.root


@pytest.fixture
def netns_holder():
    p = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    time.sleep(0.2)
    yield p.pid
    p.kill()
    p.wait()


def links():
    from pyroute2 import IPRoute
    with IPRoute() as ip:
        return {link.get_attr("IFLA_IFNAME") for link in ip.get_links()}


def test_bridge_and_veth(tmp_path, netns_holder):
    from pyroute2 import NetNS
    ipam = net.Ipam(str(tmp_path), "203.0.113.0/24")
    bridge, host_if = "rt-test-br0", net.link_name("rt-test", "c1")
    before = links()
    try:
        net.ensure_bridge(bridge, ipam.gateway)
        net.ensure_bridge(bridge, ipam.gateway)  # idempotent
        addr = ipam.lease("c1")
        net.add_veth(host_if, bridge, netns_holder, "eth0", addr, ipam.gateway, net.mac_for("c1"))
        assert host_if in links()
        ns = NetNS(f"/proc/{netns_holder}/ns/net")
        try:
            idx = ns.link_lookup(ifname="eth0")[0]
            link = ns.get_links(idx)[0]
            assert link.get_attr("IFLA_ADDRESS") == net.mac_for("c1")
            assert link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN", "LOWERLAYERDOWN") or link["flags"] & 1
            got = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ns.get_addr(index=idx, family=2)]
            assert got == [("203.0.113.2", 24)]
            routes = [r.get_attr("RTA_GATEWAY") for r in ns.get_routes(family=2) if r["dst_len"] == 0]
            assert routes == ["203.0.113.1"]
        finally:
            ns.close()
    finally:
        assert net.delete_link(host_if) in (True, False)
        net.delete_link(bridge)
        ipam.release("c1")
    assert links() - before == set()
    assert ipam.leases() == {}


def test_tap_on_bridge(tmp_path):
    bridge, tap = "rt-test-br1", "rt-test-tap0"
    try:
        net.ensure_bridge(bridge, ipaddress.ip_interface("203.0.113.129/25"))
        net.add_tap(tap, bridge)
        from pyroute2 import IPRoute
        with IPRoute() as ip:
            tidx = ip.link_lookup(ifname=tap)[0]
            assert ip.get_links(tidx)[0].get_attr("IFLA_MASTER") == ip.link_lookup(ifname=bridge)[0]
    finally:
        net.delete_link(tap)
        net.delete_link(bridge)
    assert not {bridge, tap} & links()


def test_a_subnet_that_overlaps_the_host_is_refused(tmp_path):
    """A range the host already uses (here: the network of its own default route's
    interface) would send the containers' traffic out of it."""
    routes = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                            text=True).stdout.split("\n")
    used = next(ipaddress.ip_interface(line.split()[3]) for line in routes if line.strip())
    bridge = "rt-test-clash"
    with pytest.raises(RtError, match=rf"overlaps {used.network}"):
        net.ensure_bridge(bridge, ipaddress.ip_interface(f"{used.network[1]}/{used.network.prefixlen}"))
    assert not os.path.exists(f"/sys/class/net/{bridge}")  # nothing half-made left


def test_a_bridge_name_taken_by_another_device_is_refused(tmp_path):
    from pyroute2 import IPRoute
    name = "rt-test-notbr"
    with IPRoute() as ip:
        ip.link("add", ifname=name, kind="veth", peer="rt-test-notbr1")
    try:
        with pytest.raises(RtError, match="not a bridge \\(veth\\)"):
            net.ensure_bridge(name, net.Ipam(str(tmp_path), "203.0.113.0/24").gateway)
        with IPRoute() as ip:  # left as it was: no address added, not brought up
            idx = ip.link_lookup(ifname=name)[0]
            assert not list(ip.get_addr(index=idx, family=2))
    finally:
        net.delete_link(name)
