"""Unit tests of rt.core.cgroups on fake mountinfo files and fake cgroup trees in tmp_path."""
import os
import signal
import subprocess

import pytest

from rt.core.cgroups import HYBRID, V1, V2, Cgroup, Layout, normalize_path, shares_to_weight

PURE_V2 = """\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/root rw
25 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
27 22 0:25 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
"""

# The lines of a real hybrid host (`grep cgroup /proc/self/mountinfo` on the dev machine).
HYBRID_REAL = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

# systemd's hybrid layout (Ubuntu 20.04 style): combined mounts, shared: tags, xattr, release_agent.
HYBRID_SYSTEMD = """\
25 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
29 25 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
30 29 0:28 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
31 29 0:29 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
34 29 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
35 29 0:33 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
36 29 0:34 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,net_cls,net_prio
37 29 0:35 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids
38 29 0:36 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,cpuset,clone_children
39 29 0:37 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,freezer,release_agent=/x
"""

PURE_V1 = "".join(line + "\n" for line in HYBRID_REAL.splitlines() if "cgroup2" not in line)

COMBINED_V1 = """\
29 25 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 29 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
35 29 0:33 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
37 29 0:35 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids
"""


def detect(tmp_path, text) -> Layout:
    f = tmp_path / "mountinfo"
    f.write_text(text)
    return Layout.detect(str(f), mounted_at=lambda path, dev: True)


def touch(d, *names, content=""):
    os.makedirs(d, exist_ok=True)
    for n in names:
        with open(os.path.join(d, n), "w") as f:
            f.write(content)


def read(d, name):
    with open(os.path.join(d, name)) as f:
        return f.read()


# --- Layout.detect ------------------------------------------------------------------------------


def test_detect_pure_v2(tmp_path):
    lay = detect(tmp_path, PURE_V2)
    assert (lay.mode, lay.v1, lay.unified) == (V2, {}, "/sys/fs/cgroup")


def test_detect_hybrid_real_host(tmp_path):
    lay = detect(tmp_path, HYBRID_REAL)
    assert lay.mode == HYBRID
    assert lay.unified == "/sys/fs/cgroup/unified"
    assert lay.v1 == {c: f"/sys/fs/cgroup/{c}" for c in
                      ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")} | \
        {"name=systemd": "/sys/fs/cgroup/systemd"}
    assert lay.controllers() == {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"}


def test_detect_skips_a_hierarchy_that_another_filesystem_covers(tmp_path):
    """A tmpfs over /sys/fs/cgroup/unified: mountinfo still lists the cgroup2 line, but the
    path shows the tmpfs (statfs would say TMPFS_MAGIC), so the host is v1."""
    f = tmp_path / "mountinfo"
    f.write_text(HYBRID_REAL + "99 40 0:77 / /sys/fs/cgroup/unified rw - tmpfs none rw\n")
    shown = {}
    for line in f.read_text().splitlines():  # the last mount at each path is what it shows
        shown[line.split()[4]] = line.split()[2]
    lay = Layout.detect(str(f), mounted_at=lambda path, dev: shown[path] == dev)
    assert lay.mode == V1 and lay.unified is None
    assert "memory" in lay.v1


def test_detect_checks_the_real_filesystem():
    """The default check, on this machine: every hierarchy found is what its path shows."""
    lay = Layout.detect()
    for path in [*lay.v1.values(), lay.unified]:
        if path:
            assert os.path.exists(os.path.join(path, "cgroup.procs"))


def test_detect_hybrid_systemd_style(tmp_path):
    lay = detect(tmp_path, HYBRID_SYSTEMD)
    assert lay.mode == HYBRID
    assert lay.unified == "/sys/fs/cgroup/unified"
    assert lay.v1 == {
        "name=systemd": "/sys/fs/cgroup/systemd",
        "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "memory": "/sys/fs/cgroup/memory",
        "net_cls": "/sys/fs/cgroup/net_cls,net_prio", "net_prio": "/sys/fs/cgroup/net_cls,net_prio",
        "pids": "/sys/fs/cgroup/pids", "cpuset": "/sys/fs/cgroup/cpuset", "freezer": "/sys/fs/cgroup/freezer",
    }  # rw, xattr, clone_children and release_agent=... are options, not controllers


def test_detect_pure_v1(tmp_path):
    lay = detect(tmp_path, PURE_V1)
    assert lay.mode == V1
    assert lay.unified is None
    assert lay.v1["memory"] == "/sys/fs/cgroup/memory"
    assert lay.v1["pids"] == "/sys/fs/cgroup/pids"
    assert len(lay.v1) == 9


def test_detect_v1_combined_cpu_cpuacct(tmp_path):
    lay = detect(tmp_path, COMBINED_V1)
    assert lay.mode == V1
    assert lay.v1 == {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                      "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}
    # one directory per hierarchy, not per controller
    dirs = Cgroup("/rt/c1", lay).dirs()
    assert dirs == {"cpu": "/sys/fs/cgroup/cpu,cpuacct/rt/c1", "memory": "/sys/fs/cgroup/memory/rt/c1",
                    "pids": "/sys/fs/cgroup/pids/rt/c1"}
    cg = Cgroup("/rt/c1", lay)
    assert cg._dir("cpuacct") == "/sys/fs/cgroup/cpu,cpuacct/rt/c1"
    assert cg._dir("freezer") is None
    assert cg.main_dir == "/sys/fs/cgroup/pids/rt/c1"


def test_detect_first_mount_of_a_controller_wins(tmp_path):
    text = PURE_V1 + "90 22 0:29 / /mnt/other-cpu rw,relatime - cgroup cgroup rw,cpu\n"
    assert detect(tmp_path, text).v1["cpu"] == "/sys/fs/cgroup/cpu"


def test_detect_no_cgroups(tmp_path):
    lay = detect(tmp_path, "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/root rw\n")
    assert (lay.mode, lay.v1, lay.unified) == (V1, {}, None)


def test_detect_v2_with_stray_named_v1_hierarchy(tmp_path):
    text = PURE_V2 + "90 22 0:40 / /run/cgroup-compat rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    assert detect(tmp_path, text).mode == V2


def test_v2_controllers_read_from_unified_root(tmp_path):
    touch(tmp_path, "cgroup.controllers", content="cpuset cpu io memory pids\n")
    assert Layout(V2, {}, str(tmp_path)).controllers() == {"cpuset", "cpu", "io", "memory", "pids"}
    assert Layout(V2, {}, str(tmp_path / "missing")).controllers() == set()


def test_hybrid_dirs_include_unified():
    lay = Layout(HYBRID, {"memory": "/m", "name=systemd": "/s"}, "/u")
    assert Cgroup("/rt/c1", lay).dirs() == {"memory": "/m/rt/c1", "name=systemd": "/s/rt/c1", "": "/u/rt/c1"}
    assert Cgroup("/rt/c1", lay).main_dir == "/m/rt/c1"
    assert Cgroup("rel/c1", Layout(V2, {}, "/u")).main_dir == "/u/rel/c1"


# --- normalize_path -------------------------------------------------------------------------------


@pytest.mark.parametrize("path,want", [
    ("", "/rt/c1"),
    (None, "/rt/c1"),
    ("/a/b/c", "/a/b/c"),
    ("a/b", "/a/b"),
    ("system.slice:docker:abc", "/system.slice/docker-abc.scope"),
    ("a-b.slice:pfx:name", "/a.slice/a-b.slice/pfx-name.scope"),
    ("a-b-c.slice:pfx:name", "/a.slice/a-b.slice/a-b-c.slice/pfx-name.scope"),
    (":pfx:name", "/system.slice/pfx-name.scope"),
    ("user.slice::name", "/user.slice/name.scope"),
    ("-.slice:pfx:name", "/pfx-name.scope"),
])
def test_normalize_path(path, want):
    assert normalize_path(path, "c1") == want


# --- shares_to_weight --------------------------------------------------------------------------------


@pytest.mark.parametrize("shares,weight", [(2, 1), (1024, 39), (262144, 10000), (0, 0)])
def test_shares_to_weight(shares, weight):
    # runc: cpuWeight = 1 + ((cpuShares-2)*9999)/262142
    assert shares_to_weight(shares) == weight


def test_shares_to_weight_monotonic_in_range():
    ws = [shares_to_weight(s) for s in range(2, 262145, 97)]
    assert ws == sorted(ws) and 1 <= min(ws) and max(ws) <= 10000


# --- apply: v2 ---------------------------------------------------------------------------------------

V2_FILES = ("memory.max", "memory.low", "memory.swap.max", "memory.high", "cpu.weight", "cpu.max",
            "cpuset.cpus", "cpuset.mems", "pids.max", "io.weight")


@pytest.fixture
def v2(tmp_path):
    cg = Cgroup("/rt/c1", Layout(V2, {}, str(tmp_path)))
    d = str(tmp_path / "rt" / "c1")
    touch(d, *V2_FILES)
    return cg, d


def test_apply_v2_all(v2):
    cg, d = v2
    skipped = cg.apply({
        "memory": {"limit": 1048576, "reservation": 524288, "swap": 3145728},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 100},
        "unified": {"memory.high": "900000", "io.weight": "default 50"},
    })
    assert skipped == []
    assert {f: read(d, f) for f in V2_FILES} == {
        "memory.max": "1048576", "memory.low": "524288",
        "memory.swap.max": "2097152",  # v2 swap excludes memory: 3 MiB - 1 MiB
        "memory.high": "900000", "io.weight": "default 50",
        "cpu.weight": "39", "cpu.max": "50000 100000", "cpuset.cpus": "0-1", "cpuset.mems": "0",
        "pids.max": "100",
    }


@pytest.mark.parametrize("limit,want", [(-1, "max"), (0, "max"), (1, "1"), (32768, "32768")])
def test_apply_v2_pids(v2, limit, want):
    cg, d = v2
    assert cg.apply({"pids": {"limit": limit}}) == []
    assert read(d, "pids.max") == want


def test_apply_v2_unlimited_memory_and_swap(v2):
    cg, d = v2
    cg.apply({"memory": {"limit": -1, "swap": -1}})
    assert read(d, "memory.max") == "max"
    assert read(d, "memory.swap.max") == "max"


def test_apply_v2_swap_without_limit(v2):
    # runc: "unable to set swap limit without memory limit" (v2 has no memory+swap knob)
    cg, d = v2
    with pytest.raises(ValueError, match="needs memory.limit"):
        cg.apply({"memory": {"swap": 4096}})
    cg.apply({"memory": {"swap": 0}})
    assert read(d, "memory.swap.max") == "0"


def test_apply_v2_swap_below_limit_is_rejected_not_negative(v2):
    cg, d = v2
    with pytest.raises(ValueError, match="must be >= memory.limit"):
        cg.apply({"memory": {"limit": 2000000, "swap": 1000000}})
    assert not read(d, "memory.swap.max").startswith("-")


@pytest.mark.parametrize("cpu,want", [
    ({"quota": -1, "period": 100000}, "max 100000"),
    ({"quota": 20000}, "20000 100000"),
    ({"period": 250000}, "max 250000"),
])
def test_apply_v2_cpu_max(v2, cpu, want):
    cg, d = v2
    cg.apply({"cpu": cpu})
    assert read(d, "cpu.max") == want
    assert read(d, "cpu.weight") == ""


def test_apply_nothing(v2):
    cg, d = v2
    assert cg.apply(None) == []
    assert cg.apply({}) == []
    assert cg.apply({"memory": {}, "cpu": {"shares": 0, "cpus": "", "mems": ""}, "pids": None}) == []
    assert all(read(d, f) == "" for f in V2_FILES)


# --- apply: v1 ----------------------------------------------------------------------------------------

V1_FILES = {
    "memory": ("memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.memsw.limit_in_bytes",
               "memory.swappiness", "memory.oom_control"),
    "cpu,cpuacct": ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"),
    "cpuset": ("cpuset.cpus", "cpuset.mems"),
    "pids": ("pids.max",),
}


@pytest.fixture
def v1(tmp_path):
    mnt = {name: str(tmp_path / name) for name in V1_FILES}
    layout = Layout(V1, {"memory": mnt["memory"], "cpu": mnt["cpu,cpuacct"], "cpuacct": mnt["cpu,cpuacct"],
                         "cpuset": mnt["cpuset"], "pids": mnt["pids"]}, None)
    dirs = {}
    for name, files in V1_FILES.items():
        dirs[name] = os.path.join(mnt[name], "rt", "c1")
        touch(dirs[name], *files)
    return Cgroup("/rt/c1", layout), dirs


def test_apply_v1_all(v1):
    cg, dirs = v1
    skipped = cg.apply({
        "memory": {"limit": 1048576, "reservation": 524288, "swap": 3145728, "swappiness": 10,
                   "disableOOMKiller": True},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 64},
    })
    assert skipped == []
    got = {f: read(dirs[h], f) for h, files in V1_FILES.items() for f in files}
    assert got == {
        "memory.limit_in_bytes": "1048576", "memory.soft_limit_in_bytes": "524288",
        "memory.memsw.limit_in_bytes": "3145728",  # v1 memsw includes memory
        "memory.swappiness": "10", "memory.oom_control": "1",
        "cpu.shares": "512", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000",
        "cpuset.cpus": "0", "cpuset.mems": "0", "pids.max": "64",
    }


@pytest.mark.parametrize("limit,want", [(-1, "max"), (0, "max"), (10, "10")])
def test_apply_v1_pids(v1, limit, want):
    cg, dirs = v1
    cg.apply({"pids": {"limit": limit}})
    assert read(dirs["pids"], "pids.max") == want


def test_apply_v1_unlimited_memory_and_quota(v1):
    cg, dirs = v1
    cg.apply({"memory": {"limit": -1}, "cpu": {"quota": -1}})
    assert read(dirs["memory"], "memory.limit_in_bytes") == "-1"
    assert read(dirs["cpu,cpuacct"], "cpu.cfs_quota_us") == "-1"
    assert read(dirs["cpu,cpuacct"], "cpu.cfs_period_us") == ""


def test_apply_v1_unified_is_skipped_with_message(v1):
    cg, dirs = v1
    skipped = cg.apply({"unified": {"memory.high": "100"}, "pids": {"limit": 5}})
    assert skipped == ["linux.resources.unified needs cgroup v2 (this host is v1)"]
    assert not os.path.exists(os.path.join(dirs["memory"], "memory.high"))
    assert read(dirs["pids"], "pids.max") == "5"


def test_apply_hybrid_unified_is_skipped(tmp_path):
    touch(tmp_path / "pids" / "c1", "pids.max")
    touch(tmp_path / "unified" / "c1")
    cg = Cgroup("/c1", Layout(HYBRID, {"pids": str(tmp_path / "pids")}, str(tmp_path / "unified")))
    assert cg.apply({"unified": {"pids.max": "3"}}) == [
        "linux.resources.unified needs cgroup v2 (this host is hybrid)"]
    assert read(tmp_path / "pids" / "c1", "pids.max") == ""
    assert os.listdir(tmp_path / "unified" / "c1") == []


def test_apply_v1_missing_controller_fails_loudly(tmp_path):
    """A limit whose controller is not mounted (hidden, or absent) is an error, not a log line:
    the container would run without it."""
    touch(tmp_path / "memory" / "c1", "memory.limit_in_bytes")
    cg = Cgroup("/c1", Layout(V1, {"memory": str(tmp_path / "memory")}, None))
    assert cg.apply({"memory": {"limit": 4096}}) == []
    assert read(tmp_path / "memory" / "c1", "memory.limit_in_bytes") == "4096"
    with pytest.raises(ValueError, match="pids.max needs the pids cgroup controller, which is not mounted"):
        cg.apply({"memory": {"limit": 4096}, "pids": {"limit": 5}})
    with pytest.raises(ValueError, match="devices cgroup controller is not mounted"):
        cg.apply_devices([{"allow": False, "type": "a"}])


# --- create / join / procs / freezer / kill on fake trees -----------------------------------------------


def test_create_v2_enables_missing_controllers_in_ancestors(tmp_path):
    touch(tmp_path, "cgroup.controllers", content="cpuset cpu io memory pids misc\n")
    touch(tmp_path, "cgroup.subtree_control", content="")
    touch(tmp_path / "rt", "cgroup.controllers", content="cpu io memory pids\n")
    touch(tmp_path / "rt", "cgroup.subtree_control", content="cpu")
    cg = Cgroup("/rt/c1", Layout(V2, {}, str(tmp_path)))
    cg.create()
    assert os.path.isdir(tmp_path / "rt" / "c1")
    assert read(tmp_path, "cgroup.subtree_control") == "+cpu +cpuset +io +memory +misc +pids"
    assert read(tmp_path / "rt", "cgroup.subtree_control") == "+io +memory +pids"
    assert cg.exists()


def test_create_v1_makes_every_hierarchy_dir(tmp_path):
    lay = Layout(V1, {"memory": str(tmp_path / "memory"), "cpu": str(tmp_path / "cc"),
                      "cpuacct": str(tmp_path / "cc")}, None)
    cg = Cgroup("/rt/c1", lay)
    assert not cg.exists()
    cg.create()
    assert os.path.isdir(tmp_path / "memory" / "rt" / "c1")
    assert os.path.isdir(tmp_path / "cc" / "rt" / "c1")
    assert cg.exists()


def test_join_writes_pid_to_every_hierarchy(tmp_path):
    lay = Layout(HYBRID, {"memory": str(tmp_path / "memory"), "pids": str(tmp_path / "pids")},
                 str(tmp_path / "unified"))
    cg = Cgroup("/c1", lay)
    for d in cg.dirs().values():
        touch(d, "cgroup.procs")
    cg.join(4242)
    assert sorted(read(d, "cgroup.procs") for d in cg.dirs().values()) == ["4242"] * 3


def test_procs(tmp_path):
    cg = Cgroup("/c1", Layout(V2, {}, str(tmp_path)))
    assert cg.procs() == []  # no group yet
    touch(tmp_path / "c1", "cgroup.procs", content="30\n10\n20\n10\n")
    assert cg.procs() == [10, 20, 30]


def test_kill_all_signals_listed_processes(tmp_path):
    p = subprocess.Popen(["sleep", "10"])
    try:
        cg = Cgroup("/c1", Layout(V1, {"pids": str(tmp_path)}, None))
        touch(tmp_path / "c1", "cgroup.procs", content=f"{p.pid}\n")
        cg.kill_all(signal.SIGTERM)
        assert p.wait(5) == -signal.SIGTERM
        cg.kill_all(signal.SIGTERM)  # a gone pid is not an error
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_kill_all_v2_uses_cgroup_kill(tmp_path):
    p = subprocess.Popen(["sleep", "10"])
    try:
        cg = Cgroup("/c1", Layout(V2, {}, str(tmp_path)))
        touch(tmp_path / "c1", "cgroup.kill", "cgroup.procs")
        with open(tmp_path / "c1" / "cgroup.procs", "w") as f:
            f.write(f"{p.pid}\n")
        cg.kill_all()
        assert read(tmp_path / "c1", "cgroup.kill") == "1"
        assert p.poll() is None  # the kernel does the killing, not a signal from us
    finally:
        p.kill()
        p.wait()


def test_freezer_v1(tmp_path):
    cg = Cgroup("/c1", Layout(V1, {"freezer": str(tmp_path)}, None))
    touch(tmp_path / "c1", "freezer.state", content="THAWED")
    assert not cg.frozen()
    cg.set_frozen(True)
    assert read(tmp_path / "c1", "freezer.state") == "FROZEN"
    assert cg.frozen()
    cg.set_frozen(False)
    assert read(tmp_path / "c1", "freezer.state") == "THAWED"
    assert not cg.frozen()


def test_freezer_v2(tmp_path):
    cg = Cgroup("/c1", Layout(V2, {}, str(tmp_path)))
    touch(tmp_path / "c1", "cgroup.freeze", content="0")
    cg.set_frozen(True)
    assert read(tmp_path / "c1", "cgroup.freeze") == "1"
    assert cg.frozen()
    cg.set_frozen(False)
    assert read(tmp_path / "c1", "cgroup.freeze") == "0"


def test_freezer_hybrid_keeps_both_hierarchies_in_step(tmp_path):
    cg = Cgroup("/c1", Layout(HYBRID, {"freezer": str(tmp_path / "freezer")}, str(tmp_path / "unified")))
    touch(tmp_path / "unified" / "c1", "cgroup.freeze", content="0")
    touch(tmp_path / "freezer" / "c1", "freezer.state", content="THAWED")
    cg.set_frozen(True)
    assert read(tmp_path / "unified" / "c1", "cgroup.freeze") == "1"
    assert read(tmp_path / "freezer" / "c1", "freezer.state") == "FROZEN"
    assert cg.frozen()
    cg.set_frozen(False)
    assert read(tmp_path / "unified" / "c1", "cgroup.freeze") == "0"
    assert read(tmp_path / "freezer" / "c1", "freezer.state") == "THAWED"
    assert not cg.frozen()


def test_no_freezer(tmp_path):
    cg = Cgroup("/c1", Layout(V1, {"memory": str(tmp_path)}, None))
    assert not cg.frozen()
    with pytest.raises(OSError) as e:
        cg.set_frozen(True)
    assert "no freezer" in str(e.value)


def test_destroy_removes_group_and_empty_rt_parent(tmp_path):
    cg = Cgroup("/rt/c1", Layout(V2, {}, str(tmp_path)))
    os.makedirs(tmp_path / "rt" / "c1" / "sub")
    cg.destroy()
    assert not os.path.exists(tmp_path / "rt")
    cg.destroy()  # already gone: no error


def test_apply_rdma_and_network_v1(tmp_path):
    layout = Layout(V1, {"rdma": str(tmp_path / "rdma"), "net_cls": str(tmp_path / "nc"),
                         "net_prio": str(tmp_path / "nc")}, None)
    cg = Cgroup("/c", layout)
    for d in cg.dirs().values():
        os.makedirs(d, exist_ok=True)
    for f in ("rdma/c/rdma.max", "nc/c/net_cls.classid", "nc/c/net_prio.ifpriomap"):
        (tmp_path / f).write_text("")
    skipped = cg.apply({"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
                        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}})
    assert skipped == []
    assert (tmp_path / "rdma/c/rdma.max").read_text() == "mlx5_1 hca_handle=3 hca_object=10000"
    assert (tmp_path / "nc/c/net_cls.classid").read_text() == "1048577"
    assert (tmp_path / "nc/c/net_prio.ifpriomap").read_text() == "eth0 5"


def test_detect_prefers_the_hierarchies_under_sys_fs_cgroup(tmp_path):
    """A chroot's rbind of /sys lists the same hierarchies first; /sys/fs/cgroup's win, and a
    cgroup2 mounted over /sys/fs/cgroup (hiding v1) makes the host v2."""
    chroot = HYBRID_REAL.replace(" /sys/fs/cgroup", " /tmp/chroot/sys/fs/cgroup")
    chroot = "\n".join("1" + line for line in chroot.splitlines()) + "\n"  # other mount ids
    lay = detect(tmp_path, chroot + HYBRID_REAL)
    assert lay.mode == HYBRID and lay.unified == "/sys/fs/cgroup/unified"
    assert lay.v1["memory"] == "/sys/fs/cgroup/memory"
    f = tmp_path / "mountinfo2"
    f.write_text(chroot + HYBRID_REAL + "300 23 0:99 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    hidden = {line.split()[4] for line in HYBRID_REAL.splitlines() if line.split()[4] != "/sys/fs/cgroup"}
    lay = Layout.detect(str(f), mounted_at=lambda path, dev: path not in hidden)
    assert lay.mode == V2 and lay.unified == "/sys/fs/cgroup"
