"""The systemd cgroup driver's translations (no D-Bus here: tests/integration/test_systemd_v2.py
drives a real systemd in scripts/test-in-vm)."""
import pytest

from rt.core.cgroups import normalize_path, unit_path
from rt.core.systemd_cgroups import INFINITY, _bitmask, properties, unit_of


@pytest.mark.parametrize("path, want", [
    ("system.slice:rt:abc", ("system.slice", "rt-abc.scope")),
    (":libpod:abc", ("system.slice", "libpod-abc.scope")),
    ("machine.slice::abc", ("machine.slice", "abc.scope")),
    ("kubepods-burstable.slice:cri-containerd:abc", ("kubepods-burstable.slice", "cri-containerd-abc.scope")),
    ("", ("system.slice", "rt-CID.scope")),
])
def test_unit_of(path, want):
    assert unit_of(path, "CID") == want


@pytest.mark.parametrize("path", ["/a/b", "a:b", "a:b:c:d", "system.slice:x:", "system.slice:x:../y", "foo:x:y",
                                  "machine.slice:x:pod-1.slice"])
def test_unit_of_rejects(path):
    with pytest.raises(ValueError):
        unit_of(path, "CID")


def test_unit_path_nests_dashed_slices_as_systemd_does():
    assert unit_path("kubepods-burstable-pod1.slice", "x.scope") == \
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/x.scope"
    assert unit_path("-.slice", "x.scope") == "/x.scope"
    assert normalize_path("system.slice:rt:abc", "abc") == "/system.slice/rt-abc.scope"


def test_bitmask():
    assert _bitmask("0") == b"\x01"
    assert _bitmask("0-3,9") == bytes([0x0f, 0x02])
    assert _bitmask("8") == bytes([0x00, 0x01])
    assert _bitmask("0-8191") == b"\xff" * 1024


@pytest.mark.parametrize("cpus", ["0-99999999", "99999999999", "3-1", "8192"])
def test_bitmask_refuses_what_no_kernel_has(cpus):
    with pytest.raises(ValueError):
        _bitmask(cpus)


def test_properties_map_resources_as_runc_does():
    res = {"memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20}, "pids": {"limit": -1},
           "cpu": {"shares": 1024, "quota": 33333, "period": 100000, "cpus": "1"}, "blockIO": {"weight": 10}}
    props = dict(properties(res))
    assert props["MemoryMax"] == ("t", 64 << 20)
    assert props["MemoryLow"] == ("t", 32 << 20)
    assert props["MemorySwapMax"] == ("t", 32 << 20)
    assert props["TasksMax"] == ("t", INFINITY)
    assert props["CPUWeight"] == ("t", 39)
    assert props["CPUQuotaPerSecUSec"] == ("t", 340000)  # 333330 rounded up to 10 ms
    assert props["CPUQuotaPeriodUSec"] == ("t", 100000)
    assert props["AllowedCPUs"] == ("ay", b"\x02")
    assert props["IOWeight"] == ("t", 1)
    assert properties(None) == []
    assert dict(properties({"memory": {"limit": -1}}))["MemoryMax"] == ("t", INFINITY)


def test_unified_keys_become_properties_and_tasks_default_to_infinity_at_start():
    props = dict(properties({"unified": {"memory.high": "1048576", "memory.max": "max", "cpu.max": "20000 50000",
                                         "pids.max": "7", "cpu.idle": "1"}}, start=True))
    assert props["MemoryHigh"] == ("t", 1 << 20)
    assert props["MemoryMax"] == ("t", INFINITY)
    assert props["CPUQuotaPerSecUSec"] == ("t", 400000) and props["CPUQuotaPeriodUSec"] == ("t", 50000)
    assert props["TasksMax"] == ("t", 7)
    assert dict(properties({}, start=True))["TasksMax"] == ("t", INFINITY)  # not systemd's DefaultTasksMax
    assert "TasksMax" not in dict(properties({"memory": {"limit": 1 << 30}}))  # an update leaves it

