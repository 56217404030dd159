"""Unit tests of rt.core.plan: mount options, build_plan and capability filtering."""
import copy
import json
import os

import msgspec

import pytest

from rt.core import api, plan
from rt.core.cgroups import HYBRID, V2, Cgroup, Layout
from rt.core.errors import RtError
from rt.core.plan import (CAP_NAMES, DEFAULT_DEVICES, DEFAULT_SYMLINKS, MS_PRIVATE, MS_REC, MS_SHARED, MS_SLAVE,
                          MS_UNBINDABLE, build_plan, capability_plan, cgroup_mount_binds, parse_mount_options)
from rt.spec import load_config

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND = 1, 2, 4, 8, 4096
MS_STRICTATIME, MS_RELATIME = 1 << 24, 1 << 21
ALL_CAPS = (1 << len(CAP_NAMES)) - 1
CAPS3 = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
REAL_HOST_CAPABILITIES = plan.host_capabilities
V2_CGROUP = Cgroup("/rt/c1", Layout(V2, {}, "/sys/fs/cgroup"))  # pure path arithmetic, nothing touched

# runc `spec` style, with terminal off.
BASE = {
    "ociVersion": "1.0.2",
    "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
                "env": ["PATH=/usr/bin:/bin", "TERM=xterm"], "cwd": "/",
                "capabilities": {k: list(CAPS3) for k in ("bounding", "effective", "permitted", "ambient")},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": True},
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "rt-test",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": ["/proc/kcore", "/sys/firmware"],
        "readonlyPaths": ["/proc/sys"],
    },
}


@pytest.fixture(autouse=True)
def all_caps(monkeypatch):
    """A host whose bounding set has every known capability (independent of who runs the tests)."""
    monkeypatch.setattr(plan, "host_capabilities", lambda: (ALL_CAPS, len(CAP_NAMES) - 1))


def spec_of(edit=None):
    cfg = copy.deepcopy(BASE)
    if edit:
        edit(cfg)
    return load_config(json.dumps(cfg).encode())


def make(edit=None, **kw):
    kw.setdefault("rootfs", "/bundle/rootfs")
    kw.setdefault("fifo", "/run/rt/c1/exec.fifo")
    kw.setdefault("cgroup", V2_CGROUP)
    return build_plan(spec_of(edit), **kw)


def mount_of(p, dest):
    (m,) = [m for m in p["mounts"] if m["destination"] == dest]
    return m


# --- parse_mount_options -------------------------------------------------------------------------


@pytest.mark.parametrize("opts,flags", [
    ([], 0), (["ro"], MS_RDONLY), (["rw"], 0), (["ro", "rw"], 0), (["rw", "ro"], MS_RDONLY),
    (["nosuid", "nodev", "noexec"], MS_NOSUID | MS_NODEV | MS_NOEXEC),
    (["nosuid", "suid"], 0), (["noexec", "exec", "nodev", "dev"], 0),
    (["strictatime"], MS_STRICTATIME), (["relatime", "norelatime"], 0),
    (["bind"], MS_BIND), (["rbind"], MS_BIND | MS_REC),
])
def test_mount_flags(opts, flags):
    got, prop, data, rec = parse_mount_options(opts)
    assert got == flags
    assert (prop, data) == ([], "")
    assert rec == ("rbind" in opts)


def test_rbind_is_recursive_and_bind_is_not():
    assert parse_mount_options(["rbind", "ro"]) == (MS_BIND | MS_REC | MS_RDONLY, [], "", True)
    assert parse_mount_options(["bind", "ro"]) == (MS_BIND | MS_RDONLY, [], "", False)


def test_propagation_list_keeps_order():
    flags, prop, data, rec = parse_mount_options(["rbind", "rprivate", "shared", "slave", "runbindable"])
    assert prop == [MS_PRIVATE | MS_REC, MS_SHARED, MS_SLAVE, MS_UNBINDABLE | MS_REC]
    assert flags == MS_BIND | MS_REC and rec is True
    # propagation never leaks into the mount flags (MS_REC comes only from rbind)
    assert parse_mount_options(["rshared"])[0] == 0


def test_data_string():
    flags, prop, data, rec = parse_mount_options(["nosuid", "strictatime", "mode=755", "size=65536k"])
    assert flags == MS_NOSUID | MS_STRICTATIME
    assert data == "mode=755,size=65536k"
    assert parse_mount_options(["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])[2] == \
        "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_defaults_option_is_not_data():
    assert parse_mount_options(["defaults", "ro"]) == (MS_RDONLY, [], "", False)


# --- build_plan: basics -----------------------------------------------------------------------------


def test_base_plan():
    p = make()
    assert p["rootfs"] == "/bundle/rootfs"
    assert p["fifo"] == "/run/rt/c1/exec.fifo"
    assert p["readonly"] is True
    assert p["join"] == []
    assert p["unshare"] == ["pid", "network", "ipc", "uts", "mount"]
    assert p["unshare_mount"] is True and p["loopback"] is True
    assert p["host_propagation"] == MS_SLAVE | MS_REC and p["root_propagation"] == 0
    assert p["masked_paths"] == ["/proc/kcore", "/sys/firmware"]
    assert p["readonly_paths"] == ["/proc/sys"]
    assert p["rlimits"] == [(7, 1024, 1024, "RLIMIT_NOFILE")]
    assert p["last_cap"] == len(CAP_NAMES) - 1
    assert p["preserve_fds"] == 0 and p["no_pivot"] is False
    proc = p["process"]
    assert proc["args"] == ["sh"] and proc["cwd"] == "/"
    assert (proc["uid"], proc["gid"], proc["groups"], proc["umask"]) == (0, 0, [], 0o022)
    assert proc["no_new_privs"] is True
    json.dumps(p.wire())  # plain data, ready for the stub


def test_mounts_in_plan():
    p = make()
    assert [m["destination"] for m in p["mounts"]] == [m["destination"] for m in BASE["mounts"]]
    shm = msgspec.structs.asdict(mount_of(p, "/dev/shm"))
    assert shm == {"source": "shm", "destination": "/dev/shm", "type": "tmpfs", "bind": False, "recursive": False,
                   "flags": MS_NOSUID | MS_NOEXEC | MS_NODEV, "propagation": [], "data": "mode=1777,size=65536k",
                   "idmap": None, "rattr": (0, 0)}
    assert mount_of(p, "/sys")["flags"] == MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY
    # no cgroup namespace: the container's own group is bound from the host
    assert mount_of(p, "/sys/fs/cgroup")["type"] == "cgroup-host"


def test_cgroup_mount_needs_a_cgroup():
    with pytest.raises(RtError) as e:
        make(cgroup=None)
    assert e.value.msg.startswith("config.json: $.mounts[5]: a cgroup mount needs a container cgroup")
    # without a cgroup mount, no cgroup is needed
    p = make(lambda c: c["mounts"].pop(5), cgroup=None)
    assert "/sys/fs/cgroup" not in [m["destination"] for m in p["mounts"]]


def test_bind_mounts():
    def edit(cfg):
        cfg["mounts"].append({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]})
        cfg["mounts"].append({"destination": "/etc/hosts", "source": "/etc/hosts", "options": ["bind", "rprivate"]})
    p = make(edit)
    data = mount_of(p, "/data")
    assert data["bind"] is True and data["recursive"] is True
    assert data["source"] == "/bundle/data"  # relative to the bundle
    assert data["flags"] == MS_RDONLY | MS_REC  # MS_BIND is carried by "bind", not the flags
    hosts = mount_of(p, "/etc/hosts")
    assert hosts["bind"] is True and hosts["recursive"] is False
    assert hosts["source"] == "/etc/hosts" and hosts["flags"] == 0
    assert hosts["propagation"] == [MS_PRIVATE | MS_REC]


def test_idmapped_mount_needs_both_mappings():
    def edit(cfg):
        cfg["mounts"].append({"destination": "/x", "type": "bind", "source": "/x", "options": ["bind"],
                              "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})
    with pytest.raises(RtError) as e:
        make(edit)
    assert e.value.msg.startswith("config.json: $.mounts[6].uidMappings: an idmapped mount needs")


def test_idmapped_mount_and_recursive_attrs_in_plan():
    def edit(cfg):
        cfg["mounts"].append({"destination": "/x", "type": "bind", "source": "/x", "options": ["rbind", "rro", "idmap"],
                              "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                              "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 2}]})
    m = make(edit)["mounts"][-1]
    assert m["idmap"] == {"uid_map": "0 1000 1\n", "gid_map": "0 2000 2\n"}
    assert m["rattr"] == (1, 0) and m["recursive"] and m["data"] == ""


# --- devices and symlinks ------------------------------------------------------------------------------


def test_default_devices_when_dev_is_tmpfs():
    p = make()
    assert [d.astuple() for d in p.devices] == [(path, kind, ma, mi, 0o666, 0, 0) for path, kind, ma, mi in DEFAULT_DEVICES]
    assert [d[0] for d in p["devices"]] == ["/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                            "/dev/urandom", "/dev/tty"]
    assert p["symlinks"] == list(DEFAULT_SYMLINKS) + [("/dev/ptmx", "pts/ptmx")]


def test_no_ptmx_link_without_devpts():
    p = make(lambda cfg: cfg["mounts"].pop(2))
    assert ("/dev/ptmx", "pts/ptmx") not in p["symlinks"]
    assert p["symlinks"] == list(DEFAULT_SYMLINKS)
    assert len(p["devices"]) == len(DEFAULT_DEVICES)


def test_no_default_devices_without_dev_mount():
    def edit(cfg):
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/dev"]
    p = make(edit)
    assert p["devices"] == [] and p["symlinks"] == []


def test_no_default_devices_when_dev_is_a_bind_mount():
    def edit(cfg):
        cfg["mounts"][1] = {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}
    p = make(edit)
    assert p["devices"] == [] and p["symlinks"] == []


def test_spec_devices_override_defaults():
    def edit(cfg):
        cfg["linux"]["devices"] = [
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1, "gid": 2},
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
        ]
    p = make(edit)
    paths = [d[0] for d in p["devices"]]
    assert paths.count("/dev/null") == 1
    assert ("/dev/null", "c", 1, 3, 0o600, 1, 2) in [d.astuple() for d in p.devices]
    assert ("/dev/fuse", "c", 10, 229, 0o666, 0, 0) in [d.astuple() for d in p.devices]
    assert len(p["devices"]) == len(DEFAULT_DEVICES) + 1


# --- namespaces, hostname --------------------------------------------------------------------------------


def test_hostname_only_with_uts_namespace():
    assert make()["hostname"] == "rt-test"
    def no_uts(cfg):
        cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] != "uts"]
    with pytest.raises(RtError, match="needs a private UTS namespace"):  # as runc
        make(no_uts)
    def no_uts_no_hostname(cfg):
        no_uts(cfg)
        del cfg["hostname"]
    assert make(no_uts_no_hostname)["hostname"] is None
    def domain(cfg):
        cfg["domainname"] = "example.org"
    assert make(domain)["domainname"] == "example.org"
    assert make()["domainname"] is None


def test_joins_and_unshares():
    def edit(cfg):
        cfg.pop("hostname", None)
        cfg["linux"]["namespaces"] = [{"type": "pid"}, {"type": "network", "path": "/proc/self/ns/net"},
                                      {"type": "ipc", "path": "/proc/self/ns/ipc"}, {"type": "mount"}]
    p = make(edit)
    assert p["join"] == [("network", "/proc/self/ns/net"), ("ipc", "/proc/self/ns/ipc")]
    assert p["unshare"] == ["pid", "mount"]
    assert p["loopback"] is False  # a joined network is not ours to configure
    assert p["unshare_mount"] is True


def test_no_mount_namespace():
    def edit(cfg):
        cfg.pop("hostname", None)
        cfg["linux"]["namespaces"] = [{"type": "pid"}]
        cfg["linux"]["maskedPaths"], cfg["linux"]["readonlyPaths"] = [], []
    p = make(edit)
    assert p["unshare"] == ["pid"] and p["unshare_mount"] is False and p["loopback"] is False


def test_masked_paths_need_a_mount_namespace():
    def edit(cfg):
        cfg["linux"]["namespaces"] = [{"type": "pid"}]
    with pytest.raises(RtError, match="maskedPaths: unable to restrict sys entries without a private MNT"):
        make(edit)


def test_user_namespace_is_joined_first():
    def edit(cfg):
        cfg.pop("hostname", None)
        cfg["linux"]["namespaces"] = [{"type": "network", "path": "/proc/self/ns/net"},
                                      {"type": "user", "path": "/proc/self/ns/user"}, {"type": "mount"}]
    assert make(edit)["join"] == [("user", "/proc/self/ns/user"), ("network", "/proc/self/ns/net")]


def test_new_user_namespace_needs_mappings():
    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "user"})
    with pytest.raises(RtError, match="needs uidMappings and gidMappings"):
        make(edit)


def test_new_user_namespace_maps():
    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 10},
                                       {"containerID": 10, "hostID": 300000, "size": 5}]
    plan = make(edit)
    assert plan["unshare"][0] == "user"
    assert plan["userns"] == {"uid_map": "0 100000 65536\n", "gid_map": "0 200000 10\n10 300000 5\n"}


# --- unsupported features: clear errors with JSON paths ------------------------------------------------------


@pytest.mark.parametrize("edit,path", [
    (lambda c: c["process"].__setitem__("apparmorProfile", "p"), "$.process.apparmorProfile"),
    (lambda c: c["process"].__setitem__("selinuxLabel", "l"), "$.process.selinuxLabel"),
    (lambda c: c.__delitem__("process"), "$.process"),
])
def test_unsupported_features_name_their_json_path(edit, path):
    with pytest.raises(RtError) as e:
        make(edit)
    assert e.value.msg.startswith(f"config.json: {path}: ")


def test_empty_hooks_are_fine():
    assert make(lambda c: c.__setitem__("hooks", {}))["process"]["args"] == ["sh"]


# --- process: env, rlimits, user -------------------------------------------------------------------------------


def test_home_added_for_root():
    assert make()["process"]["env"] == ["PATH=/usr/bin:/bin", "TERM=xterm", "HOME=/root"]


def test_home_added_for_other_user():
    def edit(cfg):
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 0o077}
    proc = make(edit)["process"]
    assert proc["env"][-1] == "HOME=/"
    assert (proc["uid"], proc["gid"], proc["groups"], proc["umask"]) == (1000, 1000, [5, 6], 0o077)


def test_home_kept_when_set():
    def edit(cfg):
        cfg["process"]["env"].append("HOME=/home/me")
    env = make(edit)["process"]["env"]
    assert [e for e in env if e.startswith("HOME=")] == ["HOME=/home/me"]


def test_rlimits_mapped_to_numbers():
    def edit(cfg):
        cfg["process"]["rlimits"] = [{"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
                                     {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024},
                                     {"type": "RLIMIT_NPROC", "hard": 100, "soft": 50},
                                     {"type": "RLIMIT_RTTIME", "hard": 2**64 - 1, "soft": 2**64 - 1}]
    assert make(edit)["rlimits"] == [(4, 0, 0, "RLIMIT_CORE"), (7, 1024, 4096, "RLIMIT_NOFILE"), (6, 50, 100, "RLIMIT_NPROC"),
                                    (15, 2**64 - 1, 2**64 - 1, "RLIMIT_RTTIME")]


def test_misc_process_fields():
    def edit(cfg):
        cfg["process"]["oomScoreAdj"] = -500
        cfg["process"]["cwd"] = "/work"
        cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "100"}
        cfg["linux"]["rootfsPropagation"] = "rshared"
    p = make(edit, no_pivot=True, preserve_fds=2)
    assert p["oom_score_adj"] == -500 and p["process"]["cwd"] == "/work"
    assert p["sysctl"] == [("kernel.shmmax", "100"), ("net.ipv4.ip_forward", "1")]
    assert p["host_propagation"] == MS_SHARED | MS_REC
    assert p["root_propagation"] == MS_SHARED | MS_REC
    assert p["no_pivot"] is True and p["preserve_fds"] == 2


# --- cgroup mounts -------------------------------------------------------------------------------------------------


def test_cgroup_mount_v2_with_cgroupns():
    cg = Cgroup("/rt/c1", Layout(V2, {}, "/sys/fs/cgroup"))
    p = make(lambda c: c["linux"]["namespaces"].append({"type": "cgroup"}), cgroup=cg)
    m = mount_of(p, "/sys/fs/cgroup")
    assert m["type"] == "cgroup2"
    assert m["flags"] == MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY


def test_cgroup_mount_without_cgroupns_binds_the_container_group():
    cg = Cgroup("/rt/c1", Layout(V2, {}, "/sys/fs/cgroup"))
    m = mount_of(make(cgroup=cg), "/sys/fs/cgroup")
    assert m["type"] == "cgroup-host"
    assert m["data"] == [("", "/sys/fs/cgroup/rt/c1")]


def test_cgroup_mount_binds_hybrid():
    lay = Layout(HYBRID, {"memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct",
                          "cpuacct": "/sys/fs/cgroup/cpu,cpuacct", "name=systemd": "/sys/fs/cgroup/systemd"},
                 "/sys/fs/cgroup/unified")
    cg = Cgroup("/rt/c1", lay)
    assert cgroup_mount_binds(cg) == [("memory", "/sys/fs/cgroup/memory/rt/c1"),
                                      ("cpu", "/sys/fs/cgroup/cpu,cpuacct/rt/c1"),
                                      ("systemd", "/sys/fs/cgroup/systemd/rt/c1"),
                                      ("unified", "/sys/fs/cgroup/unified/rt/c1")]
    m = mount_of(make(lambda c: c["linux"]["namespaces"].append({"type": "cgroup"}), cgroup=cg), "/sys/fs/cgroup")
    assert m["type"] == "cgroup-host"  # v1 hierarchies are bound even with a cgroup namespace
    assert m["data"] == cgroup_mount_binds(cg)


# --- capabilities ----------------------------------------------------------------------------------------------------


def _caps(**kinds):
    spec = spec_of(lambda c: c["process"].__setitem__("capabilities", kinds))
    return spec.process.capabilities


def test_capabilities_all_on_host():
    warnings = []
    p = make(warn=warnings.append)
    nums = [CAP_NAMES.index(n) for n in CAPS3]
    assert nums == [29, 5, 10]
    assert msgspec.structs.asdict(p.process.caps) == {"bounding": nums, "effective": nums, "inheritable": [], "permitted": nums,
                                    "ambient": []}
    # ambient without inheritable is dropped, with a warning
    assert warnings == ["ambient capabilities not also in permitted and inheritable are left out"]


def test_capabilities_not_in_host_bounding_set(monkeypatch):
    no_nbs = ALL_CAPS & ~(1 << CAP_NAMES.index("CAP_NET_BIND_SERVICE")) & ~(1 << CAP_NAMES.index("CAP_BPF"))
    monkeypatch.setattr(plan, "host_capabilities", lambda: (no_nbs, 40))
    warnings = []
    caps = capability_plan(_caps(bounding=CAPS3 + ["CAP_BPF"], effective=CAPS3, permitted=CAPS3,
                                 inheritable=CAPS3, ambient=["CAP_KILL"]), warnings.append)
    assert caps == {"bounding": [29, 5], "effective": [29, 5], "inheritable": [29, 5], "permitted": [29, 5],
                    "ambient": [5]}
    assert warnings == ["capabilities not in the host's bounding set, left out: CAP_BPF, CAP_NET_BIND_SERVICE"]


def test_ambient_needs_permitted_and_inheritable():
    warnings = []
    caps = capability_plan(_caps(permitted=["CAP_KILL", "CAP_CHOWN", "CAP_SETUID"],
                                 inheritable=["CAP_KILL", "CAP_SETUID", "CAP_SETGID"],
                                 ambient=["CAP_KILL", "CAP_CHOWN", "CAP_SETGID", "CAP_SETUID"]), warnings.append)
    assert caps["ambient"] == [5, 7]
    assert warnings == ["ambient capabilities not also in permitted and inheritable are left out"]


def test_no_capability_warnings_when_consistent():
    warnings = []
    caps = capability_plan(_caps(bounding=["CAP_CHOWN"], permitted=["CAP_CHOWN"], inheritable=["CAP_CHOWN"],
                                 ambient=["CAP_CHOWN"]), warnings.append)
    assert caps["ambient"] == [0] and warnings == []


def test_no_capabilities_section():
    assert make(lambda c: c["process"].__delitem__("capabilities"))["process"]["caps"] is None
    assert capability_plan(None, lambda m: pytest.fail(m)) is None


def test_host_capabilities_reads_proc():
    bnd, last = REAL_HOST_CAPABILITIES()
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert last == int(f.read())
    with open("/proc/self/status") as f:
        want = [int(line.split()[1], 16) for line in f if line.startswith("CapBnd:")][0]
    assert bnd == want


def test_lsm_labels_need_the_lsm(monkeypatch):
    def aa(cfg):
        cfg["process"]["apparmorProfile"] = "rt-default"
    def se(cfg):
        cfg["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"
    monkeypatch.setattr(plan, "host_lsms", lambda: set())
    with pytest.raises(RtError, match="AppArmor is not enabled"):
        make(aa)
    with pytest.raises(RtError, match="SELinux is not enabled"):
        make(se)
    monkeypatch.setattr(plan, "host_lsms", lambda: {"apparmor", "selinux"})
    assert make(aa)["lsm"] == {"apparmor": "rt-default", "selinux": None}
    assert make(se)["lsm"]["selinux"] == "system_u:system_r:container_t:s0"
    def label(cfg):
        cfg["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0"
    shm = mount_of(make(label), "/dev/shm")
    assert 'context="system_u:object_r:container_file_t:s0"' in shm["data"]


def test_exec_plan_joins_through_a_pidfd_when_given(monkeypatch):
    import os
    monkeypatch.setattr(plan, "namespaces_of", lambda pid: [("pid", "/proc/7/ns/pid"), ("mount", "/proc/7/ns/mnt")])
    proc = load_config(json.dumps({"ociVersion": "1.2.0", "root": {"path": "r"},
                                   "process": {"args": ["/bin/true"], "cwd": "/",
                                               "user": {"uid": 0, "gid": 0}}})).process
    by_path = plan.build_exec_plan(os.getpid(), proc)
    by_fd = plan.build_exec_plan(os.getpid(), proc, pidfd=9)
    assert by_path["join_pidfd"] is None and by_path["join"]
    assert by_fd["join"] == [] and by_fd["join_pidfd"] == 9
    assert by_fd["join_types"] == [kind for kind, _ in by_path["join"]]


def test_scheduling_fields_reach_the_plan():
    def edit(cfg):
        cfg["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}
        cfg["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 4}
        cfg["process"]["execCPUAffinity"] = {"initial": "0-2,5", "final": "1"}
        cfg["linux"]["personality"] = {"domain": "LINUX32"}
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": -5, "nanosecs": 7}, "boottime": {"secs": 9}}
    p = make(edit)
    assert p["process"]["sched"] == [1, 1, 0, 5, 0, 0, 0]
    assert p["process"]["ioprio"] == (2 << 13) | 4
    assert p["process"]["affinity"] == [[0, 1, 2, 5], [1]]
    assert p["personality"] == 8
    assert p["time_offsets"] == "boottime 9 0\nmonotonic -5 7\n"


def test_unset_scheduling_fields_are_none():
    p = make(lambda cfg: None)
    assert (p["process"]["sched"], p["process"]["ioprio"], p["process"]["affinity"], p["personality"],
            p["time_offsets"]) == (None, None, None, None, "")


# --- the typed plan (API 1.1) ----------------------------------------------------------------------
def test_the_plan_is_typed_and_still_answers_as_a_dict():
    p = make()
    assert isinstance(p, api.Plan) and isinstance(p.process, api.ProcessPlan)
    assert p["rootfs"] == p.rootfs and p.get("console_fd") is None and "hooks" in p
    p["hostname"] = "set-the-1.0-way"
    assert p.hostname == "set-the-1.0-way"
    p["process"]["env"].append("A=1")  # 1.0 plugins edit nested parts by key too
    assert "A=1" in p.process.env
    with pytest.raises(KeyError):
        p["no_such_field"] = 1
    wire = p.wire()
    assert type(wire) is dict and type(wire["process"]) is dict and type(wire["mounts"][0]) is dict
    assert wire["devices"][0] == ["/dev/null", "c", 1, 3, 0o666, 0, 0]  # what the stub unpacks


def test_plan_helpers():
    p = make()
    assert p.has_namespace("network") and p.loopback
    p.drop_namespace("network")
    assert not p.has_namespace("network") and not p.loopback
    p.unshare_namespace("user")
    assert p.unshare[0] == "user"
    with pytest.raises(ValueError):
        p.unshare_namespace("nonsense")
    m = p.bind("/srv/data", "/data")
    assert (m.source, m.destination, m.bind, m.recursive) == ("/srv/data", "/data", True, True)
    assert m.flags & MS_RDONLY and m.rattr == (1, 0)
    assert p.bind("/srv/rw", "/rw", readonly=False).flags & MS_RDONLY == 0
    p.add_device("/dev/null", "c", 1, 3, mode=0o600)
    assert [d.astuple() for d in p.devices if d.path == "/dev/null"] == [("/dev/null", "c", 1, 3, 0o600, 0, 0)]
    with pytest.raises(ValueError):
        p.add_device("/etc/passwd", "c", 1, 3)
    p.add_hook("createContainer", "/bin/true")
    assert p.hooks["createContainer"][-1]["args"] == ["/bin/true"]
    with pytest.raises(RtError):
        p.add_hook("prestart", "/bin/true")


def test_exec_plan_is_typed():
    from rt.spec.config import Process, User
    ep = plan.build_exec_plan(os.getpid(), Process(args=["true"], user=User(uid=0, gid=0), cwd="/"))
    assert isinstance(ep, api.ExecPlan) and ep.process.args == ["true"] and ep.fifo is None
    assert "HOME=/root" in ep.process.env


def test_a_sysctl_in_the_host_s_namespace_joined_by_path_is_refused():
    """runc's rule: a spec may name the host's own network namespace by path; a net.* sysctl
    would then change the host (validation sees only that a network namespace is named)."""
    def host_net(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
        cfg["linux"]["namespaces"].append({"type": "network", "path": "/proc/self/ns/net"})
        cfg["linux"]["sysctl"] = {"net.core.somaxconn": "4097"}
    with pytest.raises(RtError) as e:
        make(host_net)
    assert "not allowed in host network namespace" in e.value.msg
    p = make(lambda cfg: cfg["linux"].update(sysctl={"net.core.somaxconn": "4097"}))  # a new one: fine
    assert p.sysctl == [("net.core.somaxconn", "4097")]
