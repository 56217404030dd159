"""Faults in lxc_system networking (issue 13, item 5): many creates racing to make one new
bridge, and creates that fail after their address lease (and veth) exist.

Each test makes its own bridge (a fresh name) with a 10.213.x.0/24 subnet that no host
interface or route uses; nothing is routed off the host. Container ids are unique per run:
the veth name and the cgroup derive from the id alone, so they would clash with another
rt root that uses the same id."""
import concurrent.futures
import ipaddress
import multiprocessing
import os
import random
import secrets
import subprocess
import time

import pytest

from conftest import _snapshot, is_rt, runtime_path, shim_processes, system_config, write_bundle
from rt.core import net
from test_lxc_system import monitors

pytestmark = pytest.mark.root
if not is_rt(runtime_path()):
    pytest.skip("rt's lxc_system plugin", allow_module_level=True)

PARALLEL = 8
ROUNDS = 3


@pytest.fixture
def no_leaks(runtime):
    """conftest's no_leaks, except that a new shim counts as leaked only if it outlives a
    short wait: other rt runs on this machine start short-lived shims at any moment."""
    before, shims = _snapshot(), set(shim_processes())
    yield
    after = _snapshot(runtime.ids)
    assert after[0] - before[0] == set(), "leaked mounts"
    assert after[1] - before[1] == set(), "leaked cgroups"
    left, deadline = set(shim_processes()) - shims, time.monotonic() + 3
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left &= set(shim_processes())
    assert not left, "leaked shim processes"


def link_exists(name: str) -> bool:
    from pyroute2 import IPRoute
    with IPRoute() as ip:
        return bool(ip.link_lookup(ifname=name))


def free_subnet() -> str:
    """A 10.213.x.0/24 that no host address or route overlaps."""
    from pyroute2 import IPRoute
    with IPRoute() as ip:
        host = net._host_networks(ip, -1)
    for x in random.sample(range(100, 250), 150):
        subnet = ipaddress.ip_network(f"10.213.{x}.0/24")
        if net.overlap(subnet, host) is None:
            return str(subnet)
    pytest.skip("no free 10.213.x.0/24 on this host")


@pytest.fixture
def private_net():
    """new_bridge() -> a bridge name that does not exist yet; the subnet for it. Every bridge
    named here is deleted afterwards (only those: they are ours)."""
    made = []

    class Net:
        subnet = free_subnet()

        @staticmethod
        def new_bridge() -> str:
            name = "rtt" + secrets.token_hex(4)
            assert not link_exists(name)
            made.append(name)
            return name
    yield Net
    for name in made:
        net.delete_link(name)
    assert not [n for n in made if link_exists(n)]


@pytest.fixture
def net_bundle(tmp_path, busybox_rootfs):
    """A busybox init system container (as test_lxc_system's, on the shared read-only
    rootfs) with rt.net.* annotations."""
    def make(bridge: str, subnet: str, edit=None) -> str:
        cfg = system_config(busybox_rootfs, ["/sbin/init"], {"rt.net.bridge": bridge, "rt.net.subnet": subnet})
        cfg["root"]["readonly"] = True  # the shared rootfs
        if edit:
            edit(cfg)
        return write_bundle(tmp_path / f"bundle-{secrets.token_hex(3)}", cfg)
    return make


def in_parallel(fn, items):
    with concurrent.futures.ThreadPoolExecutor(len(items)) as ex:
        return list(ex.map(fn, items))


def run_detached(runtime, bundle):
    def run(cid):
        return runtime("run", "-d", "--bundle", bundle, cid, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return run


def assert_released(runtime, subnet: str, ids: list[str]) -> None:
    assert runtime("list", "-q").stdout.split() == []
    assert net.Ipam(runtime.root, subnet).leases() == {}
    assert [cid for cid in ids if link_exists(net.link_name("rtv", cid))] == []
    assert monitors(runtime.root) == []


def bridge_state(name: str) -> tuple[list[str], bool]:
    from pyroute2 import IPRoute
    with IPRoute() as ip:
        idx = ip.link_lookup(ifname=name)[0]
        addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ip.get_addr(index=idx, family=2)]
        return addrs, bool(ip.get_links(idx)[0]["flags"] & 1)


def test_first_use_of_a_new_bridge_by_parallel_runs(runtime, private_net, net_bundle, no_leaks):
    """PARALLEL `run -d` at once, all on one bridge that does not exist yet: each gets
    its own address and veth; delete returns all of it. Each round uses a new bridge."""
    tag = secrets.token_hex(3)
    for rnd in range(ROUNDS):
        bridge = private_net.new_bridge()
        bundle = net_bundle(bridge, private_net.subnet)
        ids = [f"fn{tag}r{rnd}c{i}" for i in range(PARALLEL)]
        results = in_parallel(run_detached(runtime, bundle), ids)
        failed = [(cid, p.stderr.strip()) for cid, p in zip(ids, results) if p.returncode != 0]
        assert failed == [], f"round {rnd}: {len(failed)}/{PARALLEL} failed"

        leases = net.Ipam(runtime.root, private_net.subnet).leases()
        assert sorted(leases.values()) == sorted(ids)  # one address each, all different
        gateway = net.Ipam(runtime.root, private_net.subnet).gateway
        assert bridge_state(bridge) == ([str(gateway)], True)
        for cid in ids:
            p = runtime("exec", cid, "ip", "-o", "-4", "addr", "show", "eth0")
            assert p.returncode == 0, p.stderr
            got = p.stdout.split()[3]
            assert leases[got.split("/")[0]] == cid and got.endswith("/24")
            assert link_exists(net.link_name("rtv", cid))

        deleted = in_parallel(lambda cid: runtime("delete", "--force", cid), ids)
        assert [p.stderr for p in deleted if p.returncode != 0] == []
        assert_released(runtime, private_net.subnet, ids)
        assert net.delete_link(bridge)


def _hook_fails(cfg):
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]}


@pytest.mark.parametrize("verb", ["run -d", "run", "create --pid-file"])
@pytest.mark.parametrize("fault", ["hook after the veth", "bridge name taken before the veth"])
def test_failed_create_leaves_no_container_lease_or_veth(runtime, private_net, net_bundle, tmp_path, no_leaks,
                                                         verb, fault):
    """A create that fails once its lease is taken: after the veth exists (a createRuntime
    hook that exits 1) or before it (rt.net.bridge names a device that is not a bridge).
    PARALLEL at once, through the monitor keeper (`run -d`) and without it (`run` in the
    foreground, --pid-file)."""
    if fault.startswith("hook"):
        bundle, expect = net_bundle(private_net.new_bridge(), private_net.subnet, _hook_fails), "createRuntime hook"
    else:
        bundle, expect = net_bundle("lo", private_net.subnet), "rt.net.bridge lo: that name is taken"
    ids = [f"ff{secrets.token_hex(3)}c{i}" for i in range(PARALLEL)]

    def attempt(cid):
        args = verb.split() + ([str(tmp_path / f"{cid}.pid")] if "--pid-file" in verb else [])
        return runtime(*args, "--bundle", bundle, cid, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    for p in in_parallel(attempt, ids):
        assert p.returncode != 0
        assert expect in p.stderr, p.stderr
        assert "No such device" not in p.stderr and "(19," not in p.stderr
    assert_released(runtime, private_net.subnet, ids)


def _ensure(args):
    name, lock_dir, gateway = args
    try:
        return net.ensure_bridge(name, ipaddress.ip_interface(gateway), lock_dir=lock_dir)
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def test_ensure_bridge_races_across_rt_roots(private_net, tmp_path):
    """Creates under different rt roots do not share the lock file: the bridge and its
    address made by whoever comes first (EEXIST) are taken as they are."""
    gateway = str(net.Ipam(str(tmp_path), private_net.subnet).gateway)
    for _ in range(ROUNDS):
        name = private_net.new_bridge()
        jobs = [(name, str(tmp_path / f"root{i}"), gateway) for i in range(2 * PARALLEL)]
        with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
            got = pool.map(_ensure, jobs)
        assert len(set(got)) == 1 and isinstance(got[0], int), got
        assert bridge_state(name) == ([gateway], True)
        assert net.delete_link(name)


def test_delete_link_of_a_veth_whose_netns_is_going(private_net, tmp_path):
    """A veth whose peer's netns is being torn down vanishes by itself; removing it then is
    not an error (the release after a failed create did this, and lost the lease: ENODEV)."""
    ipam = net.Ipam(str(tmp_path), private_net.subnet)
    bridge = private_net.new_bridge()
    net.ensure_bridge(bridge, ipam.gateway, lock_dir=ipam.dir)
    for i in range(10):
        cid = f"fd{secrets.token_hex(3)}{i}"
        host_if = net.link_name("rtv", cid)
        holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
        try:
            deadline = time.monotonic() + 5
            while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            net.add_veth(host_if, bridge, holder.pid, "eth0", ipam.lease(cid), ipam.gateway, net.mac_for(cid))
        finally:
            holder.kill()
            holder.wait()
        net.delete_link(host_if)  # the kernel may be removing it at the same moment
        ipam.release(cid)
        assert not link_exists(host_if)
    assert ipam.leases() == {}


def test_a_veth_name_in_use_is_not_taken_over(runtime, private_net, net_bundle, no_leaks):
    """The host veth's name comes from the container id alone. If that name exists (another
    rt root with the same id), create fails in words and its release leaves that link alone."""
    cid = f"fv{secrets.token_hex(3)}"
    host_if, other = net.link_name("rtv", cid), f"rtx{secrets.token_hex(4)}"
    from pyroute2 import IPRoute
    with IPRoute() as ip:
        ip.link("add", ifname=host_if, kind="veth", peer=other)
    try:
        p = runtime.create(cid, net_bundle(private_net.new_bridge(), private_net.subnet))
        assert p.returncode != 0
        assert f"network: veth {host_if}: create it: File exists" in p.stderr, p.stderr
        assert link_exists(host_if) and link_exists(other)
        assert_released(runtime, private_net.subnet, [])
    finally:
        net.delete_link(host_if)
    assert not link_exists(other)
