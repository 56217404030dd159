"""Tests of rt.spec: decoding, round trips, validation errors and State encoding."""

import copy
import json
import os
import pickle
import shutil
import subprocess
from typing import Any, Callable

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rt.spec import Features, Spec, SpecError, State, load_bundle, load_config, validate
from rt.spec.state import rfc3339nano
from rt.spec.validate import CAPABILITIES, NAMESPACE_TYPES, RLIMITS

# Every config.json field rt models, with non-default values so all are re-encoded.
FULL_CONFIG: dict[str, Any] = {
    "ociVersion": "1.2.0",
    "process": {
        "terminal": True,
        "consoleSize": {"height": 25, "width": 80},
        "user": {"uid": 1, "gid": 1, "umask": 18, "additionalGids": [5, 6], "username": "u"},
        "args": ["sh", "-c", "true"],
        "commandLine": "sh -c true",
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", "EMPTY="],
        "cwd": "/root",
        "capabilities": {
            "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_AUDIT_WRITE", "CAP_KILL"],
            "inheritable": ["CAP_CHECKPOINT_RESTORE"],
            "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL"],
            "ambient": ["CAP_CHOWN"],
        },
        "rlimits": [
            {"type": "RLIMIT_CORE", "hard": 1024, "soft": 1024},
            {"type": "RLIMIT_NOFILE", "hard": 18446744073709551615, "soft": 1024},
        ],
        "noNewPrivileges": True,
        "apparmorProfile": "acme_secure_profile",
        "oomScoreAdj": 0,
        "scheduler": {
            "policy": "SCHED_DEADLINE",
            "nice": -5,
            "priority": 3,
            "flags": ["SCHED_FLAG_RESET_ON_FORK"],
            "runtime": 10000000,
            "deadline": 20000000,
            "period": 30000000,
        },
        "selinuxLabel": "system_u:system_r:svirt_lxc_net_t:s0:c124,c675",
        "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 4},
        "execCPUAffinity": {"initial": "7", "final": "0-3,7"},
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "slartibartfast",
    "domainname": "example.org",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/data",
            "type": "bind",
            "source": "/volumes/testing",
            "options": ["rbind", "rw", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
        },
    ],
    "hooks": {
        "prestart": [{"path": "/usr/bin/fix-mounts", "args": ["fix-mounts", "arg1"], "env": ["key1=value1"]}],
        "createRuntime": [{"path": "/usr/bin/setup-network"}],
        "createContainer": [{"path": "/usr/bin/mount-hook", "args": ["-mount"], "timeout": 5}],
        "startContainer": [{"path": "/usr/bin/refresh-ldcache"}],
        "poststart": [{"path": "/usr/bin/notify-start", "timeout": 5}],
        "poststop": [{"path": "/usr/sbin/cleanup.sh", "args": ["cleanup.sh", "-f"]}],
    },
    "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"},
    "linux": {
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
        "sysctl": {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "256"},
        "resources": {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
            ],
            "memory": {
                "limit": 536870912,
                "reservation": 536870912,
                "swap": 536870912,
                "kernel": -1,
                "kernelTCP": -1,
                "swappiness": 0,
                "disableOOMKiller": False,
                "useHierarchy": True,
                "checkBeforeUpdate": True,
            },
            "cpu": {
                "shares": 1024,
                "quota": 1000000,
                "burst": 1000000,
                "period": 500000,
                "realtimeRuntime": 950000,
                "realtimePeriod": 1000000,
                "cpus": "2-3",
                "mems": "0-7",
                "idle": 0,
            },
            "pids": {"limit": 32771},
            "blockIO": {
                "weight": 10,
                "leafWeight": 10,
                "weightDevice": [
                    {"major": 8, "minor": 0, "weight": 500, "leafWeight": 300},
                    {"major": 8, "minor": 16, "weight": 500},
                ],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 700}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 200}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}],
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}, {"pageSize": "64KB", "limit": 1000000}],
            "network": {
                "classID": 1048577,
                "priorities": [{"name": "eth0", "priority": 500}, {"name": "eth1", "priority": 1000}],
            },
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "mlx4_0": {"hcaObjects": 1000}},
            "unified": {"io.max": "259:0 rbps=2097152 wiops=120", "hugetlb.1GB.max": "1073741824"},
        },
        "cgroupsPath": "/myRuntime/myContainer",
        "namespaces": [
            {"type": "pid"},
            {"type": "network", "path": "/proc/self/ns/net"},
            {"type": "mount"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "user"},
            {"type": "cgroup"},
            {"type": "time"},
        ],
        "devices": [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0},
            {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 432, "uid": 0, "gid": 0},
            {"path": "/dev/myfifo", "type": "p"},
        ],
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "listenerPath": "/run/seccomp-agent.socket",
            "listenerMetadata": "metadata",
            "syscalls": [
                {"names": ["getcwd", "chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 8, "valueTwo": 9, "op": "SCMP_CMP_MASKED_EQ"}],
                },
            ],
        },
        "rootfsPropagation": "slave",
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "mountLabel": "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811",
        "intelRdt": {
            "closID": "guaranteed_group",
            "schemata": "L2:0=f",
            "l3CacheSchema": "L3:0=7f0;1=1f",
            "memBwSchema": "MB:0=20;1=70",
            "enableCMT": True,
            "enableMBM": True,
        },
        "personality": {"domain": "LINUX32"},
        "timeOffsets": {"monotonic": {"secs": 86400, "nanosecs": 5}, "boottime": {"secs": -1}},
    },
    "vm": {
        "hypervisor": {"path": "/path/to/vmm", "parameters": ["opts1=foo", "opts2=bar"]},
        "kernel": {"path": "/path/to/vmlinuz", "parameters": ["foo=bar", "hello world"], "initrd": "/path/to/initrd.img"},
        "image": {"path": "/path/to/vm/rootfs.img", "format": "raw"},
    },
}

# A minimal valid config, the base that error cases mutate.
BASE_CONFIG: dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {
            name: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            for name in ("bounding", "effective", "inheritable", "permitted", "ambient")
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    },
    "root": {"path": "rootfs"},
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
    "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
}


def encode(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


def load(doc: dict[str, Any]) -> Spec:
    return load_config(json.dumps(doc).encode())


def roundtrip(doc: dict[str, Any]) -> dict[str, Any]:
    return json.loads(encode(load(doc)))


def spec_error(doc: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(doc)
    return info.value


# --- decoding and round trips -------------------------------------------------------


def test_full_config_roundtrips_with_oci_names() -> None:
    assert roundtrip(FULL_CONFIG) == FULL_CONFIG


def test_full_config_python_names() -> None:
    spec = load(FULL_CONFIG)
    assert spec.oci_version == "1.2.0"
    assert spec.process.user.additional_gids == [5, 6]
    assert spec.process.oom_score_adj == 0
    assert spec.process.io_priority.class_ == "IOPRIO_CLASS_IDLE"
    assert spec.process.exec_cpu_affinity.final == "0-3,7"
    assert spec.mounts[1].uid_mappings[0].host_id == 1000
    assert spec.hooks.create_container[0].timeout == 5
    res = spec.linux.resources
    assert res.memory.disable_oom_killer is False
    assert res.memory.kernel_tcp == -1
    assert res.block_io.throttle_read_iops_device[0].rate == 200
    assert res.network.class_id == 1048577
    assert res.rdma["mlx4_0"].hca_handles is None
    assert spec.linux.seccomp.syscalls[1].args[0].value_two == 9
    assert spec.linux.intel_rdt.enable_cmt is True
    assert spec.linux.time_offsets["boottime"].nanosecs == 0
    assert spec.vm.kernel.initrd == "/path/to/initrd.img"


def test_defaults_are_not_encoded() -> None:
    doc = {"ociVersion": "1.0.0", "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"}}
    assert roundtrip(doc) == doc
    assert encode(Spec(oci_version="1.0.0")) == b'{"ociVersion":"1.0.0"}'


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc not on PATH")
@pytest.mark.parametrize("args", [[], ["--rootless"]])
def test_runc_spec_roundtrips_in_go_key_order(tmp_path: Any, args: list[str]) -> None:
    subprocess.run(["runc", "spec", *args], cwd=tmp_path, check=True)
    raw = (tmp_path / "config.json").read_bytes()
    spec = load_bundle(str(tmp_path))
    # Same names, values and key order as the Go encoder.
    assert json.dumps(json.loads(encode(spec))) == json.dumps(json.loads(raw))


def test_unknown_fields_are_ignored() -> None:
    doc = copy.deepcopy(BASE_CONFIG)
    doc["solaris"] = {"milestone": "svc:/milestone/container:default"}
    doc["windows"] = {"layerFolders": ["C:\\layers"]}
    doc["com.example.extension"] = [1, 2, {"x": None}]
    doc["process"]["futureField"] = {"nested": True}
    doc["linux"]["netDevices"] = {"eth0": {"name": "ctr0"}}
    doc["linux"]["namespaces"][0]["extra"] = 1
    assert roundtrip(doc) == BASE_CONFIG


def test_features_encode_with_oci_names() -> None:
    doc = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime"],
        "mountOptions": ["ro", "rbind"],
        "linux": {
            "namespaces": ["pid", "network"],
            "capabilities": ["CAP_CHOWN"],
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False, "rdma": True},
            "seccomp": {
                "enabled": True,
                "actions": ["SCMP_ACT_ALLOW"],
                "operators": ["SCMP_CMP_EQ"],
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG"],
                "supportedFlags": [],
            },
            "apparmor": {"enabled": True},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": True},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {"org.opencontainers.runc.version": "1.1.5"},
        "potentiallyUnsafeConfigAnnotations": ["com.example."],
    }
    features = msgspec.json.decode(json.dumps(doc), type=Features)
    assert features.linux.cgroup.systemd_user is False
    assert features.linux.seccomp.supported_flags == []
    assert json.loads(encode(features)) == doc
    assert encode(Features()) == b"{}"


# --- State ---------------------------------------------------------------------------


def make_state(**kw: Any) -> State:
    fields: dict[str, Any] = dict(
        oci_version="1.0.2-dev",
        id="t1",
        pid=5157,
        status="created",
        bundle="/b",
        rootfs="/b/rootfs",
        created="2026-11-26T23:07:49.315749226Z",
        owner="",
    )
    return State(**(fields | kw))


def test_state_encodes_in_runc_key_order() -> None:
    assert list(json.loads(encode(make_state()))) == [
        "ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner",
    ]
    # runc prints annotations, when there are any, between created and owner.
    assert encode(make_state(annotations={"a": "b"})) == (
        b'{"ociVersion":"1.0.2-dev","id":"t1","pid":5157,"status":"created","bundle":"/b",'
        b'"rootfs":"/b/rootfs","created":"2026-11-26T23:07:49.315749226Z","annotations":{"a":"b"},"owner":""}'
    )


def test_state_keeps_zero_pid_and_rejects_unknown_status() -> None:
    assert b'"pid":0' in encode(make_state(pid=0, status="stopped"))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(encode(make_state()).replace(b"created\",\"bundle", b"bogus\",\"bundle"), type=State)
    assert msgspec.json.decode(encode(make_state(status="paused")), type=State).status == "paused"


def test_rfc3339nano_trims_like_go() -> None:
    assert rfc3339nano(1_700_000_000_123_400_000) == "2023-11-14T22:13:20.1234Z"
    assert rfc3339nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert rfc3339nano(5) == "1970-01-01T00:00:00.000000005Z"


# --- errors --------------------------------------------------------------------------


def test_spec_error_str_and_pickle() -> None:
    err = SpecError("$.process.args", "args must contain at least one entry", "process.json")
    assert str(err) == "process.json: $.process.args: args must contain at least one entry"
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.reason, again.source) == (err.path, err.reason, err.source)


def test_unknown_capability_message() -> None:
    doc = copy.deepcopy(BASE_CONFIG)
    doc["process"]["capabilities"]["bounding"][2] = "CAP_TEST"
    assert str(spec_error(doc)) == 'config.json: $.process.capabilities.bounding[2]: unknown capability "CAP_TEST"'


@pytest.mark.parametrize("capset", ["bounding", "effective", "inheritable", "permitted", "ambient"])
def test_unknown_capability_in_each_set(capset: str) -> None:
    doc = copy.deepcopy(BASE_CONFIG)
    doc["process"]["capabilities"][capset].append("CAP_NOPE")
    err = spec_error(doc)
    assert err.path == f"$.process.capabilities.{capset}[3]"
    assert err.reason == 'unknown capability "CAP_NOPE"'


def test_source_names_the_file() -> None:
    doc = copy.deepcopy(BASE_CONFIG)
    doc["process"]["args"] = []
    with pytest.raises(SpecError) as info:
        load_config(json.dumps(doc).encode(), source="/run/b/config.json")
    assert str(info.value) == "/run/b/config.json: $.process.args: args must contain at least one entry"
    spec = load(BASE_CONFIG)
    spec.process.args = []
    with pytest.raises(SpecError, match="^process.json: [$].process.args: "):
        validate(spec, source="process.json")


@pytest.mark.parametrize("version", ["1.0.0", "1.0.2-dev", "1.2.0", "1.1.0-rc.1", "1.2.0+build.5"])
def test_good_oci_versions(version: str) -> None:
    assert load(BASE_CONFIG | {"ociVersion": version}).oci_version == version


@pytest.mark.parametrize("version", ["", "2.0.0", "0.5.0", "abc", "1.0", "v1.0.0", "1.0.0\n", "01.0.0"])
def test_bad_oci_versions(version: str) -> None:
    err = spec_error(BASE_CONFIG | {"ociVersion": version})
    assert err.path == "$.ociVersion"
    assert "1.x.y" in err.reason


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets the value at a dotted path ("a.b.0.c") of a config dict."""

    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


# (mutation, expected JSON path, expected text in the reason)
ERROR_CASES: list[tuple[Callable[[dict[str, Any]], None], str, str]] = [
    (_set("root.path", ""), "$.root.path", "must not be empty"),
    (_set("process.args", []), "$.process.args", "at least one entry"),
    (_set("process.args.0", "s\0h"), "$.process.args[0]", "NUL"),
    (_set("process.cwd", "root"), "$.process.cwd", 'cwd "root" is not an absolute path'),
    (_set("process.env.1", "TERM"), "$.process.env[1]", "expected KEY=value"),
    (_set("process.env.0", "=x"), "$.process.env[0]", "expected KEY=value"),
    (_set("process.rlimits.0.type", "RLIMIT_BOGUS"), "$.process.rlimits[0].type", 'unknown rlimit type "RLIMIT_BOGUS"'),
    (_set("process.rlimits.0.soft", 2048), "$.process.rlimits[0].soft", "soft limit 2048 is greater than hard limit 1024"),
    (
        _set("process.rlimits", [{"type": "RLIMIT_AS", "hard": 1, "soft": 1}] * 2),
        "$.process.rlimits[1].type",
        'duplicate rlimit type "RLIMIT_AS"',
    ),
    (_set("process.rlimits.0.hard", 2**64), "$.process.rlimits[0].hard", "does not fit in uint64"),
    (_set("process.oomScoreAdj", 1001), "$.process.oomScoreAdj", "-1000..1000"),
    (_set("process.ioPriority", {"class": "IOPRIO_CLASS_X", "priority": 0}), "$.process.ioPriority.class", "unknown"),
    (_set("process.ioPriority", {"class": "IOPRIO_CLASS_BE", "priority": 8}), "$.process.ioPriority.priority", "0..7"),
    (_set("process.scheduler", {"policy": "SCHED_FAST"}), "$.process.scheduler.policy", "unknown scheduler policy"),
    (_set("process.execCPUAffinity", {"initial": "0-"}), "$.process.execCPUAffinity.initial", "invalid CPU list"),
    (_set("mounts.0.destination", "proc"), "$.mounts[0].destination", 'mount destination "proc" is not an absolute path'),
    (
        _set("mounts.0.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 0}]),
        "$.mounts[0].uidMappings[0].size",
        "greater than 0",
    ),
    (_set("hooks.createRuntime", [{"path": "hook"}]), "$.hooks.createRuntime[0].path", "not an absolute path"),
    (_set("hooks.poststop", [{"path": "/bin/true", "timeout": 0}]), "$.hooks.poststop[0].timeout", "greater than 0"),
    (_set("annotations", {"": "x"}), '$.annotations[""]', "must not be empty"),
    (_set("linux.namespaces.0.type", "net"), "$.linux.namespaces[0].type", 'unknown namespace type "net"'),
    (_set("linux.namespaces.1.type", "pid"), "$.linux.namespaces[1].type", 'duplicate namespace type "pid"'),
    (_set("linux.namespaces.0.path", "proc/1/ns/pid"), "$.linux.namespaces[0].path", "not an absolute path"),
    (
        _set("linux.namespaces.0.path", "/nonexistent/ns/pid"),
        "$.linux.namespaces[0].path",
        'cannot open namespace path "/nonexistent/ns/pid": No such file or directory',
    ),
    (
        _set("linux.namespaces.0.path", "/proc/self/ns/net"),
        "$.linux.namespaces[0].path",
        '"/proc/self/ns/net" is a "net" namespace, expected "pid"',
    ),
    (_set("linux.namespaces.0.path", "/"), "$.linux.namespaces[0].path", "is not a namespace"),
    (_set("linux.namespaces.0.path", "/a\0b"), "$.linux.namespaces[0].path", "must not contain a NUL byte"),
    (
        _set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 0}]),
        "$.linux.uidMappings[0].size",
        "greater than 0",
    ),
    (
        _set("linux.gidMappings", [{"containerID": 0, "hostID": 1000, "size": 0}]),
        "$.linux.gidMappings[0].size",
        "greater than 0",
    ),
    (_set("linux.timeOffsets", {"realtime": {"secs": 1}}), '$.linux.timeOffsets["realtime"]', "unknown clock"),
    (
        _set("linux.devices", [{"path": "/dev/x", "type": "x", "major": 1, "minor": 1}]),
        "$.linux.devices[0].type",
        'unknown device type "x"',
    ),
    (
        _set("linux.devices", [{"path": "dev/x", "type": "c", "major": 1, "minor": 1}]),
        "$.linux.devices[0].path",
        "not an absolute path",
    ),
    (_set("linux.devices", [{"path": "/dev/x", "type": "b"}]), "$.linux.devices[0].major", "required"),
    (_set("linux.devices", [{"path": "/dev/x", "type": "c", "major": 4096, "minor": 0}]), "$.linux.devices[0].major",
     "expected 0..4095, got 4096"),
    (_set("linux.devices", [{"path": "/dev/x", "type": "c", "major": 1, "minor": -1}]), "$.linux.devices[0].minor",
     "expected 0..1048575, got -1"),
    (_set("linux.resources.devices", [{"allow": True, "major": -2}]), "$.linux.resources.devices[0].major",
     "expected 0..4294967295 or -1 (any), got -2"),
    (_set("linux.resources.devices", [{"allow": True, "minor": 2**32}]), "$.linux.resources.devices[0].minor",
     "got 4294967296"),
    (_set("process.user", {"uid": 0, "gid": 0, "additionalGids": [1] * 65537}), "$.process.user.additionalGids",
     "65537 groups: the kernel takes at most 65536"),
    (_set("linux.sysctl", {"": "1"}), '$.linux.sysctl[""]', "sysctl key must not be empty"),
    (_set("linux.sysctl", {"net/../../x": "1"}), '$.linux.sysctl["net/../../x"]', "invalid sysctl key"),
    (_set("linux.sysctl", {"net..x": "1"}), '$.linux.sysctl["net..x"]', "invalid sysctl key"),
    (_set("linux.sysctl", {"net.ipv4.": "1"}), '$.linux.sysctl["net.ipv4."]', "invalid sysctl key"),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_NOPE"}), "$.linux.seccomp.defaultAction", "unknown seccomp action"),
    (
        _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "ALLOW"}]}),
        "$.linux.seccomp.syscalls[0].action",
        'unknown seccomp action "ALLOW"',
    ),
    (
        _set(
            "linux.seccomp",
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["x"], "action": "SCMP_ACT_KILL", "args": [{"index": 0, "value": 1, "op": "EQ"}]}],
            },
        ),
        "$.linux.seccomp.syscalls[0].args[0].op",
        'unknown seccomp operator "EQ"',
    ),
    (
        _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_LOG"}]}),
        "$.linux.seccomp.syscalls[0].names",
        "at least one entry",
    ),
    (
        _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}),
        "$.linux.seccomp.architectures[0]",
        "unknown seccomp architecture",
    ),
    (
        _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
        "$.linux.seccomp.defaultErrnoRet",
        "does not take an errno",
    ),
    (_set("linux.rootfsPropagation", "everywhere"), "$.linux.rootfsPropagation", "unknown propagation"),
    (_set("linux.maskedPaths", ["proc/kcore"]), "$.linux.maskedPaths[0]", "not an absolute path"),
    (_set("linux.resources.memory", {"limit": 0}), "$.linux.resources.memory.limit", "got 0"),
    (_set("linux.resources.memory", {"limit": -2}), "$.linux.resources.memory.limit", "got -2"),
    (_set("linux.resources.cpu", {"cpus": "0-3,"}), "$.linux.resources.cpu.cpus", "invalid list"),
    (_set("linux.resources.cpu", {"quota": 10, "burst": 20}), "$.linux.resources.cpu.burst", "greater than quota"),
    (_set("linux.resources.devices", [{"allow": True, "type": "x"}]), "$.linux.resources.devices[0].type", "unknown"),
    (_set("linux.resources.devices", [{"allow": True, "access": "rx"}]), "$.linux.resources.devices[0].access", "invalid"),
    (
        _set("linux.resources.blockIO", {"weightDevice": [{"major": 8, "minor": 0}]}),
        "$.linux.resources.blockIO.weightDevice[0]",
        "weight or leafWeight",
    ),
    (
        _set("linux.resources.hugepageLimits", [{"pageSize": "2M", "limit": 1}]),
        "$.linux.resources.hugepageLimits[0].pageSize",
        "invalid page size",
    ),
    (_set("linux.resources.rdma", {"mlx": {}}), '$.linux.resources.rdma["mlx"]', "hcaHandles or hcaObjects"),
    (_set("linux.resources.unified", {"../cgroup.procs": "1"}), '$.linux.resources.unified["../cgroup.procs"]', "invalid"),
    (_set("linux.intelRdt", {"memBwSchema": "L3:0=1"}), "$.linux.intelRdt.memBwSchema", "MB:"),
    (_set("linux.personality", {"domain": "LINUX64"}), "$.linux.personality.domain", "unknown personality domain"),
    (_set("vm", {"kernel": {"path": "vmlinuz"}}), "$.vm.kernel.path", "not an absolute path"),
    # what the kernel would refuse (or a C string would cut short) is refused here, by name
    (_set("root.path", "root\0fs"), "$.root.path", "must not contain a NUL byte"),
    (_set("root.path", "r" * 256), "$.root.path", "longer than 255 bytes"),
    (_set("hostname", "h" * 65), "$.hostname", "hostname is 65 bytes long: the kernel takes at most 64"),
    (_set("hostname", "a\0b"), "$.hostname", "must not contain a NUL byte"),
    (_set("domainname", "é" * 33), "$.domainname", "domainname is 66 bytes long"),
    (_set("mounts.0.destination", "/" + "d" * 256), "$.mounts[0].destination", "longer than 255 bytes"),
    (_set("mounts.0.destination", "/d" * 2048), "$.mounts[0].destination", "4096 bytes long: the kernel takes at most 4095"),
    (_set("mounts.0.source", "pr\0c"), "$.mounts[0].source", "must not contain a NUL byte"),
    (_set("mounts.0.options", ["ro", "x\0"]), "$.mounts[0].options[1]", "must not contain a NUL byte"),
    (_set("process.cwd", "/" + "c" * 300), "$.process.cwd", "longer than 255 bytes"),
    (_set("process.selinuxLabel", "a\0"), "$.process.selinuxLabel", "must not contain a NUL byte"),
    (_set("hooks.poststop", [{"path": "/bin/true"}, {"path": "/bin/true", "env": ["A=\0"]}]), "$.hooks.poststop[1].env[0]",
     "must not contain a NUL byte"),
    (_set("hooks.poststop", [{"path": "/bin/true", "args": ["x"]}, {"path": "x"}]), "$.hooks.poststop[1].path",
     "not an absolute path"),
    (_set("linux.cgroupsPath", "/a\0b"), "$.linux.cgroupsPath", "must not contain a NUL byte"),
    (_set("linux.cgroupsPath", "/a\nb"), "$.linux.cgroupsPath", "must not contain a newline"),
    (_set("linux.mountLabel", "a\0b"), "$.linux.mountLabel", "must not contain a NUL byte"),
    (_set("linux.maskedPaths", ["/proc/\0"]), "$.linux.maskedPaths[0]", "must not contain a NUL byte"),
    (_set("linux.resources.unified", {"pids.max": "1\0"}), '$.linux.resources.unified["pids.max"]', "NUL"),
    (_set("linux.devices", [{"path": "/dev/" + "x" * 256, "type": "c", "major": 1, "minor": 1}]),
     "$.linux.devices[0].path", "longer than 255 bytes"),
    (_set("vm", {"kernel": {"path": "/k"}, "image": {"path": "/i", "format": "iso"}}), "$.vm.image.format", "unknown"),
]


@pytest.mark.parametrize(("mutate", "path", "reason"), ERROR_CASES, ids=[c[1] for c in ERROR_CASES])
def test_semantic_errors_name_the_path(mutate: Callable[[dict[str, Any]], None], path: str, reason: str) -> None:
    doc = copy.deepcopy(BASE_CONFIG)
    mutate(doc)
    err = spec_error(doc)
    assert err.path == path
    assert reason in err.reason
    assert str(err) == f"config.json: {path}: {err.reason}"


def test_namespace_path_via_plain_symlink(tmp_path: Any) -> None:
    # Not a /proc magic link, so the type comes from the NS_GET_NSTYPE ioctl.
    link = tmp_path / "netns"
    link.symlink_to("/proc/self/ns/net")
    doc = copy.deepcopy(BASE_CONFIG)
    doc["linux"]["namespaces"].append({"type": "network", "path": str(link)})
    load(doc)
    doc["linux"]["namespaces"][-1]["type"] = "ipc"
    err = spec_error(doc)
    assert err.reason == f'"{link}" is a "net" namespace, expected "ipc"'


def test_namespace_path_regular_file_is_not_a_namespace(tmp_path: Any) -> None:
    path = tmp_path / "ns"
    path.write_text("")
    doc = copy.deepcopy(BASE_CONFIG)
    doc["linux"]["namespaces"][0]["path"] = str(path)
    assert spec_error(doc).reason == f'"{path}" is not a namespace'


def test_limits_that_are_allowed() -> None:
    doc = copy.deepcopy(BASE_CONFIG)
    doc["linux"]["resources"] = {
        "memory": {"limit": -1, "swap": -1, "swappiness": 18446744073709551615},
        "cpu": {"shares": 0, "quota": -1, "burst": 5},
        "pids": {"limit": -1},
    }
    load(doc)


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [
        (_set("process.args.0", 1), "$.process.args[0]", "Expected `str`, got `int`"),
        (_set("linux.resources.cpu", {"shares": -1}), "$.linux.resources.cpu.shares", "Expected `int` >= 0"),
        (_set("linux.resources.pids", {"limit": "max"}), "$.linux.resources.pids.limit", "Expected `int`, got `str`"),
        (_set("linux.resources.pids", {"limit": 1.5}), "$.linux.resources.pids.limit", "Expected `int`, got `float`"),
        (_set("process.user", {"uid": 0}), "$.process.user", "missing required field `gid`"),
        (_set("process.user.uid", -1), "$.process.user.uid", "Expected `int` >= 0"),
        (_set("linux.uidMappings", [{"containerID": 0, "hostID": 2**32, "size": 1}]), "$.linux.uidMappings[0].hostID", "<="),
        (_set("linux.sysctl", {"a": 1}), "$.linux.sysctl[...]", "Expected `str`, got `int`"),
        (_set("linux", []), "$.linux", "Expected `object | null`, got `array`"),
    ],
)
def test_wrong_types_give_msgspec_path(mutate: Callable[[dict[str, Any]], None], path: str, reason: str) -> None:
    doc = copy.deepcopy(BASE_CONFIG)
    mutate(doc)
    err = spec_error(doc)
    assert err.path == path
    assert reason in err.reason


def test_missing_oci_version_and_non_object() -> None:
    err = spec_error({"process": BASE_CONFIG["process"]})
    assert (err.path, err.reason) == ("$", "Object missing required field `ociVersion`")
    with pytest.raises(SpecError) as info:
        load_config(b"[]")
    assert (info.value.path, info.value.reason) == ("$", "Expected `object`, got `array`")


DEEP = b'{"ociVersion": "1.0.0", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b'{"ociVersion": "1.0.0"} x', b'{"ociVersion": "1.0.0",}', b'{"ociVersion": "\xff"}', DEEP],
    ids=["empty", "truncated", "trailing", "comma", "utf8", "deep"],
)
def test_invalid_json(data: bytes) -> None:
    with pytest.raises(SpecError) as info:
        load_config(data)
    assert info.value.path == "$"
    assert info.value.reason.startswith("invalid JSON: ")


def test_load_bundle(tmp_path: Any) -> None:
    with pytest.raises(SpecError) as info:
        load_bundle(str(tmp_path))
    assert str(info.value) == "config.json: $: cannot read config.json: No such file or directory"
    (tmp_path / "config.json").write_text(json.dumps(BASE_CONFIG))
    assert load_bundle(str(tmp_path)).process.args == ["sh"]
    if os.geteuid() != 0:
        (tmp_path / "config.json").chmod(0)
        with pytest.raises(SpecError, match="Permission denied"):
            load_bundle(str(tmp_path))


def test_public_name_tables() -> None:
    assert len(CAPABILITIES) == 41
    assert CAPABILITIES["CAP_CHOWN"] == 0 and CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert len(RLIMITS) == 16
    assert RLIMITS["RLIMIT_AS"] == 9 and RLIMITS["RLIMIT_RTTIME"] == 15
    assert set(NAMESPACE_TYPES) == {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}


# --- property: only SpecError escapes load_config ---------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, prefix + (i,))
    return out


KNOWN_PATHS = _paths(FULL_CONFIG)[1:]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "/", "/proc/self/ns/net", "/dev/null", "1.0.0", "CAP_KILL", "SCMP_ACT_ALLOW", "a=b"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str)
    return isinstance(node, list) and isinstance(part, int) and part < len(node)


def _substitute(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    """Set ``value`` at ``path`` if earlier substitutions left that path in place."""
    node: Any = doc
    for part in path[:-1]:
        if not _has(node, part) or (isinstance(node, dict) and part not in node):
            return
        node = node[part]
    if _has(node, path[-1]):
        node[path[-1]] = value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KNOWN_PATHS), json_values), min_size=1, max_size=3))
def test_random_values_only_raise_spec_error(substitutions: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc = copy.deepcopy(FULL_CONFIG)
    for path, value in substitutions:
        _substitute(doc, path, value)
    try:
        spec = load(doc)
    except SpecError as e:
        assert str(e).startswith("config.json: $")
    else:
        assert isinstance(spec, Spec)
        encode(spec)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_spec_error(data: bytes) -> None:
    try:
        load_config(data)
    except SpecError:
        pass


def test_long_values_are_cut_short_in_messages() -> None:
    doc = copy.deepcopy(BASE_CONFIG)
    doc["process"]["capabilities"]["bounding"] = ["C" * 70_000]
    err = spec_error(doc)
    assert err.path == "$.process.capabilities.bounding[0]"
    assert err.reason == f'unknown capability "{"C" * 100}..." (70000 characters)'
