"""Pure cgroup v2 under systemd, as most hosts run: limits in the v2 files, pause through
cgroup.freeze, `kill --all` through cgroup.kill, the cgroup namespace with nsdelegate, and
the systemd cgroup driver (--systemd-cgroup). They need systemd as PID 1 on a pure v2
host, which this development machine is not: scripts/test-in-vm runs them in a guest."""
import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import system_config, write_bundle
from rt.core.cgroups import V2, Layout, shares_to_weight

SYSTEMD = os.path.isdir("/run/systemd/system")
PURE_V2 = Layout.detect().mode == V2 and Layout.detect().unified == "/sys/fs/cgroup"
pytestmark = [pytest.mark.root, pytest.mark.skipif(
    not (SYSTEMD and PURE_V2), reason="needs systemd as PID 1 on pure cgroup v2 (scripts/test-in-vm runs these)")]
MiB = 1024 * 1024


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def cgroup_of(pid: int) -> str:
    return read(f"/proc/{pid}/cgroup").removeprefix("0::")


def unit_show(unit: str, *props: str) -> dict:
    out = subprocess.run(["systemctl", "show", unit, *(f"-p{p}" for p in props)], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def sleeper(cfg):
    cfg["process"]["args"] = ["sleep", "1000"]


def test_the_host_is_pure_v2_with_nsdelegate():
    with open("/proc/self/mountinfo") as f:
        cg = [line.split(" - ")[1].split() for line in f if line.split()[4] == "/sys/fs/cgroup"]
    assert cg and cg[-1][0] == "cgroup2", cg
    assert "nsdelegate" in cg[-1][2].split(","), cg
    assert {"cpu", "io", "memory", "pids"} <= set(read("/sys/fs/cgroup/cgroup.controllers").split())
    assert read("/proc/1/comm") == "systemd"


def test_limits_land_in_the_v2_files_and_update_changes_them(runtime, make_bundle, no_leaks):
    dev = os.stat("/").st_dev
    major, minor = os.major(dev), os.minor(dev)

    def limits(cfg):
        sleeper(cfg)
        cfg["linux"]["resources"] = {
            "memory": {"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 96 * MiB},
            "pids": {"limit": 50}, "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": MiB}]}}
    cid = "v2lim-" + uuid.uuid4().hex[:6]
    runtime.create(cid, make_bundle(edit=limits), check=True)
    d = "/sys/fs/cgroup" + cgroup_of(runtime.state(cid)["pid"])
    assert d == f"/sys/fs/cgroup/rt/{cid}"
    assert read(f"{d}/memory.max") == str(64 * MiB)
    assert read(f"{d}/memory.low") == str(32 * MiB)
    assert read(f"{d}/memory.swap.max") == str(32 * MiB)  # OCI swap is memory+swap
    assert read(f"{d}/pids.max") == "50"
    assert read(f"{d}/cpu.max") == "50000 100000"
    assert read(f"{d}/cpu.weight") == str(shares_to_weight(512))
    assert read(f"{d}/cpuset.cpus") == "0"
    assert f"{major}:{minor} rbps={MiB} " in read(f"{d}/io.max") + " "
    runtime("update", "--memory", "128M", "--memory-swap", "256M", "--pids-limit", "80", "--cpu-quota", "20000",
            cid, check=True)
    assert read(f"{d}/memory.max") == str(128 * MiB)
    assert read(f"{d}/memory.swap.max") == str(128 * MiB)
    assert read(f"{d}/pids.max") == "80"
    assert read(f"{d}/cpu.max") == "20000 100000"
    runtime("delete", "-f", cid, check=True)
    assert not os.path.exists(d)


def test_pause_and_resume_go_through_cgroup_freeze(runtime, make_bundle, no_leaks):
    cid = "v2frz-" + uuid.uuid4().hex[:6]
    runtime.create(cid, make_bundle(edit=sleeper), check=True)
    runtime("start", cid, check=True)
    d = "/sys/fs/cgroup" + cgroup_of(runtime.state(cid)["pid"])
    runtime("pause", cid, check=True)
    assert read(f"{d}/cgroup.freeze") == "1"
    assert "frozen 1" in read(f"{d}/cgroup.events").splitlines()
    assert runtime.state(cid)["status"] == "paused"
    runtime("resume", cid, check=True)
    assert read(f"{d}/cgroup.freeze") == "0"
    assert "frozen 0" in read(f"{d}/cgroup.events").splitlines()
    assert runtime.state(cid)["status"] == "running"
    runtime("pause", cid, check=True)
    runtime("delete", "-f", cid, check=True)  # a frozen container is removed too
    assert not os.path.exists(d)


def test_kill_all_reaches_processes_outside_the_init_s_reach(runtime, make_bundle, no_leaks):
    """No pid namespace: killing the init would leave its children; cgroup.kill takes them all."""
    def shared_pids(cfg):
        cfg["process"]["args"] = ["sh", "-c", "setsid sleep 1001 & setsid sleep 1002 & exec sleep 1000"]
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]
    cid = "v2kill-" + uuid.uuid4().hex[:6]
    runtime.create(cid, make_bundle(edit=shared_pids), check=True)
    runtime("start", cid, check=True)
    d = "/sys/fs/cgroup" + cgroup_of(runtime.state(cid)["pid"])
    deadline = time.monotonic() + 10
    while len(read(f"{d}/cgroup.procs").split()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p) for p in read(f"{d}/cgroup.procs").split()]
    assert len(pids) == 3, pids
    runtime("kill", "--all", cid, "KILL", check=True)
    deadline = time.monotonic() + 10
    while read(f"{d}/cgroup.procs") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read(f"{d}/cgroup.procs") == ""
    assert "populated 0" in read(f"{d}/cgroup.events").splitlines()
    runtime("delete", cid, check=True)


NSDELEGATE = """
echo "cgroup=$(cat /proc/self/cgroup)"
(echo 1000000 > /sys/fs/cgroup/memory.max) 2>/dev/null && echo "WROTE memory.max" || echo "memory.max refused"
mkdir /sys/fs/cgroup/inner && echo "mkdir ok"
echo $$ > /sys/fs/cgroup/inner/cgroup.procs && echo "moved: $(cat /proc/self/cgroup)"
echo "limit=$(cat /sys/fs/cgroup/memory.max)"
"""


def test_cgroup_namespace_with_nsdelegate_keeps_the_limits(runtime, make_bundle, no_leaks):
    """A container with its own cgroup namespace and a writable cgroup2 mount sees its cgroup as
    the root and may make groups below it, but nsdelegate keeps its own limits out of reach."""
    def own_ns_rw(cfg):
        cfg["process"]["args"] = ["sh", "-c", NSDELEGATE]
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
        cfg["linux"]["resources"] = {"memory": {"limit": 64 * MiB}}
        for m in cfg["mounts"]:
            if m["destination"] == "/sys/fs/cgroup":
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    cid = "v2ns-" + uuid.uuid4().hex[:6]
    p = runtime("run", "--bundle", make_bundle(edit=own_ns_rw), cid)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert "cgroup=0::/" in out, out
    assert "memory.max refused" in out and "WROTE memory.max" not in out, out
    assert "mkdir ok" in out and "moved: 0::/inner" in out, out
    assert f"limit={64 * MiB}" in out, out
    assert not os.path.exists(f"/sys/fs/cgroup/rt/{cid}")


def sd_bundle(make_bundle, cid, args=("sleep", "1000"), cgroups_path=None):
    def edit(cfg):
        cfg["process"]["args"] = list(args)
        cfg["linux"]["cgroupsPath"] = cgroups_path or f"system.slice:rt-test:{cid}"
        cfg["linux"]["resources"] = {"memory": {"limit": 64 * MiB}, "pids": {"limit": 40},
                                     "cpu": {"quota": 50000, "period": 100000},
                                     "unified": {"memory.high": str(48 * MiB)}}
    return make_bundle(edit=edit)


def test_systemd_driver_runs_the_container_in_a_transient_scope(runtime, make_bundle, no_leaks):
    cid = "sd-" + uuid.uuid4().hex[:6]
    unit, path = f"rt-test-{cid}.scope", f"/system.slice/rt-test-{cid}.scope"
    runtime("--systemd-cgroup", "create", "--bundle", sd_bundle(make_bundle, cid), cid, check=True,
            stdout=subprocess.DEVNULL)
    pid = runtime.state(cid)["pid"]
    assert cgroup_of(pid) == path
    props = unit_show(unit, "ActiveState", "ControlGroup", "Delegate", "MemoryMax", "MemoryHigh", "TasksMax",
                      "CPUQuotaPerSecUSec")
    assert props == {"ActiveState": "active", "ControlGroup": path, "Delegate": "yes", "MemoryMax": str(64 * MiB),
                     "MemoryHigh": str(48 * MiB), "TasksMax": "40", "CPUQuotaPerSecUSec": "500ms"}, props
    assert read(f"/sys/fs/cgroup{path}/memory.high") == str(48 * MiB)
    assert read(f"/sys/fs/cgroup{path}/memory.max") == str(64 * MiB)
    assert read(f"/sys/fs/cgroup{path}/cpu.max") == "50000 100000"
    runtime("start", cid, check=True)
    runtime("update", "--memory", "100M", "--pids-limit", "60", cid, check=True)
    assert unit_show(unit, "MemoryMax", "TasksMax") == {"MemoryMax": str(100 * MiB), "TasksMax": "60"}
    assert read(f"/sys/fs/cgroup{path}/memory.max") == str(100 * MiB)
    runtime("pause", cid, check=True)
    assert read(f"/sys/fs/cgroup{path}/cgroup.freeze") == "1"
    runtime("resume", cid, check=True)
    runtime("delete", "-f", cid, check=True)
    assert unit_show(unit, "LoadState")["LoadState"] == "not-found"
    assert not os.path.exists(f"/sys/fs/cgroup{path}")


def test_systemd_driver_failed_create_leaves_no_unit(runtime, make_bundle, no_leaks):
    cid = "sdf-" + uuid.uuid4().hex[:6]
    p = runtime("--systemd-cgroup", "create", "--bundle", sd_bundle(make_bundle, cid, args=["/no/such/binary"]), cid)
    assert p.returncode != 0
    assert "/no/such/binary" in p.stderr
    assert unit_show(f"rt-test-{cid}.scope", "LoadState")["LoadState"] == "not-found"
    assert not os.path.exists(f"/sys/fs/cgroup/system.slice/rt-test-{cid}.scope")
    assert runtime("state", cid).returncode != 0


def test_systemd_driver_delete_leaves_a_later_unit_of_the_same_name_alone(runtime, make_bundle, no_leaks):
    """The init exits, systemd removes its empty scope, and someone else starts a unit of that
    name: delete must not kill in that cgroup or stop that unit."""
    cid = "sdr-" + uuid.uuid4().hex[:6]
    unit = f"rt-test-{cid}.scope"
    runtime("--systemd-cgroup", "create", "--bundle", sd_bundle(make_bundle, cid, args=["true"]), cid, check=True,
            stdout=subprocess.DEVNULL)
    runtime("start", cid, check=True)
    deadline = time.monotonic() + 20
    while unit_show(unit, "LoadState")["LoadState"] != "not-found" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert unit_show(unit, "LoadState")["LoadState"] == "not-found"
    other = subprocess.Popen(["systemd-run", "--quiet", "--scope", f"--unit={unit}", "sleep", "100"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while unit_show(unit, "ActiveState")["ActiveState"] != "active" and time.monotonic() < deadline:
            time.sleep(0.1)
        runtime("delete", "-f", cid, check=True)
        assert other.poll() is None, "delete killed another unit's process"
        assert unit_show(unit, "ActiveState")["ActiveState"] == "active"
    finally:
        other.kill()
        other.wait()
        subprocess.run(["systemctl", "stop", unit], capture_output=True)


def test_systemd_driver_wants_slice_prefix_name(runtime, make_bundle, no_leaks):
    cid = "sdp-" + uuid.uuid4().hex[:6]
    p = runtime("--systemd-cgroup", "create", "--bundle", sd_bundle(make_bundle, cid, cgroups_path="/rt-test/x"), cid)
    assert p.returncode != 0
    assert "expected cgroupsPath to be of format" in p.stderr and "slice:prefix:name" in p.stderr, p.stderr
    assert not os.path.exists("/sys/fs/cgroup/rt-test")


def test_systemd_driver_system_container_gets_a_delegated_subtree(runtime, busybox_rootfs, tmp_path, no_leaks):
    """lxc_system under the systemd driver: its init sits in the payload group below the scope,
    with the controllers enabled for it to hand on, and `update` changes the scope's limits."""
    cid = "sdsys-" + uuid.uuid4().hex[:6]
    cfg = system_config(busybox_rootfs, ["/sbin/init"])
    cfg["linux"]["cgroupsPath"] = f"machine.slice:rt-test:{cid}"
    cfg["linux"]["resources"] = {"memory": {"limit": 128 * MiB}, "pids": {"limit": 100}}
    runtime("--systemd-cgroup", "create", "--bundle", write_bundle(tmp_path / "b", cfg), cid, check=True,
            stdout=subprocess.DEVNULL)
    scope = f"/sys/fs/cgroup/machine.slice/rt-test-{cid}.scope"
    try:
        runtime("start", cid, check=True)
        pid = runtime.state(cid)["pid"]
        inner = "/sys/fs/cgroup" + cgroup_of(pid)
        assert os.path.dirname(inner) == scope, inner
        assert {"memory", "pids"} <= set(read(f"{inner}/cgroup.controllers").split())
        assert read(f"{scope}/memory.max") == str(128 * MiB)
        runtime("update", "--memory", "256M", cid, check=True)
        assert unit_show(f"rt-test-{cid}.scope", "MemoryMax")["MemoryMax"] == str(256 * MiB)
        assert read(f"{scope}/memory.max") == str(256 * MiB)
    finally:
        runtime("delete", "-f", cid)
    assert not os.path.exists(scope)
    assert unit_show(f"rt-test-{cid}.scope", "LoadState")["LoadState"] == "not-found"


def test_features_and_state_json_on_this_host(runtime):
    feats = json.loads(runtime("features", check=True).stdout)
    assert feats["linux"]["cgroup"]["v2"] is True and feats["linux"]["cgroup"]["systemd"] is True
