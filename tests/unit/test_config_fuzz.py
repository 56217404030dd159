"""Fuzzing config.json: generated configs through decoding, validation and plan building.

A config either loads or fails with a SpecError that names a JSON path; one that loads
becomes a plan or an RtError, never another exception. The strategies here also feed
tests/integration/test_faults_config.py, which runs them through a real `rt create`.
"""
import copy
import json
import os
import re

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import base_config
from rt.core import api
from rt.core.errors import RtError
from rt.spec import Spec, SpecError, load_config
from rt.spec.validate import CAPABILITIES, NAMESPACE_TYPES, RLIMITS, SECCOMP_ACTIONS

# CI explores a fixed set (a green main stays green); elsewhere each run explores anew
CI = bool(os.environ.get("CI"))

# Stands for a JSON value nested too deeply for json.dumps; dumps() splices the text in.
DEEP = "\x00rt-fuzz-deep\x00"
DEEP_TEXT = "[" * 100_000 + "]" * 100_000
# A Python exception type or repr in a message means something crashed instead of failing cleanly.
CRASH = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b: |object at 0x|\[Errno \d+\]")

ODD_TEXT = ["", " ", "\x00", "a\x00b", "\n", "=", "==", "a=b", "..", ".", "/", "//", "/..", "/../..",
            "../../../etc/passwd", "/proc/self/exe", "/dev/null", "/sys/fs/cgroup", "/proc", "/dev",
            "é", "🙂", "\u202e", "\ud800", "$HOME", "%s%n", "a" * 300, "/" + "a" * 5000, "x" * 70_000]
ODD_INTS = [-(2**100), -(2**64), -(2**63) - 1, -(2**63), -(2**31) - 1, -4097, -2, -1, 0, 1, 2, 7, 4095, 4096,
            65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**100]

text = st.text(max_size=40) | st.sampled_from(ODD_TEXT)
ints = st.integers(-3, 70_000) | st.sampled_from(ODD_INTS) | st.integers()
paths = st.sampled_from(ODD_TEXT) | st.lists(st.sampled_from(["a", "..", ".", "", "dev", "proc", "é", "x" * 256]),
                                             max_size=6).map(lambda p: "/" + "/".join(p))
scalars = st.none() | st.booleans() | ints | st.floats() | text
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(text, kids, max_size=5),
    max_leaves=15,
) | st.sampled_from([DEEP, [0] * 100_000, ["x"] * 5000, {"k": [[[[[[[[[[{}]]]]]]]]]]}]).map(copy.deepcopy)
# (a copy each time: a mutation that sets a key in a shared sample once made it contain itself)


def dumps(cfg) -> bytes:
    """JSON for a generated config (lone surrogates escaped, DEEP spliced in)."""
    return json.dumps(cfg).replace(json.dumps(DEEP), DEEP_TEXT).encode()


def _set(node, path, value):
    """Put value at path (keys and indexes), making dicts on the way; false if it cannot."""
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {}) if not isinstance(node.get(part), (dict, list)) else node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    if isinstance(node, dict):
        node[path[-1]] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value
    else:
        return False
    return True


# --- mutations of one part of a valid config -------------------------------------------------------
cap_names = st.sampled_from(sorted(CAPABILITIES)) | text
rlimit = st.fixed_dictionaries({"type": st.sampled_from(sorted(RLIMITS)) | text, "hard": ints, "soft": ints})
mount = st.fixed_dictionaries(
    {"destination": paths},
    optional={"type": st.sampled_from(["tmpfs", "bind", "proc", "sysfs", "mqueue", "devpts", "cgroup", "nofs", ""])
              | text,
              "source": st.sampled_from(["tmpfs", "none", "/tmp", "/", "/dev/null", "/nonexistent", "rootfs", ""])
              | paths,
              "options": st.lists(st.sampled_from(["ro", "rw", "bind", "rbind", "nosuid", "noexec", "nodev",
                                                   "mode=755", "size=1k", "size=-1", "uid=99999999999", "rro",
                                                   "idmap", "private", "rshared", "remount", "x" * 300]) | text,
                                  max_size=6)})
# No host network, IPC or UTS namespace: a container joining one would set the host's sysctls and hostname.
namespace = st.fixed_dictionaries({"type": st.sampled_from(sorted(NAMESPACE_TYPES)) | text},
                                  optional={"path": st.sampled_from(["/proc/self/ns/pid", "/proc/self/ns/cgroup",
                                                                     "/proc/self/ns/mnt", "/dev/null",
                                                                     "/nonexistent"]) | paths})
memory = st.fixed_dictionaries({}, optional={k: ints for k in ("limit", "reservation", "swap", "swappiness")}
                               | {"disableOOMKiller": st.booleans()})
cpu = st.fixed_dictionaries({}, optional={"shares": ints, "quota": ints, "period": ints, "burst": ints,
                                          "cpus": st.sampled_from(["0", "0-1", "99999", "1-0", "0,,1"]) | text,
                                          "mems": st.sampled_from(["0", "1", "99999"]) | text, "idle": ints})
throttle = st.fixed_dictionaries({"major": ints, "minor": ints, "rate": ints})
resources = st.fixed_dictionaries({}, optional={
    "memory": memory, "cpu": cpu, "pids": st.fixed_dictionaries({"limit": ints}),
    "blockIO": st.fixed_dictionaries({}, optional={"weight": ints, "leafWeight": ints,
                                                   "weightDevice": st.lists(st.fixed_dictionaries(
                                                       {"major": ints, "minor": ints}, optional={"weight": ints}),
                                                       max_size=2),
                                                   "throttleReadBpsDevice": st.lists(throttle, max_size=2),
                                                   "throttleWriteIOPSDevice": st.lists(throttle, max_size=2)}),
    "hugepageLimits": st.lists(st.fixed_dictionaries({"pageSize": st.sampled_from(["2MB", "1GB", "3KB"]) | text,
                                                      "limit": ints}), max_size=2),
    "devices": st.lists(st.fixed_dictionaries({"allow": st.booleans()}, optional={
        "type": st.sampled_from(["a", "c", "b", "", "x"]), "major": ints, "minor": ints,
        "access": st.sampled_from(["rwm", "r", "", "q"])}), max_size=3),
    "network": st.fixed_dictionaries({}, optional={"classID": ints}),
    "unified": st.dictionaries(st.sampled_from(["memory.max", "pids.max", "cpu.weight", "x", ".."]) | text, text,
                               max_size=2),
})
sysctl = st.dictionaries(st.sampled_from(["net.ipv4.ip_forward", "net.core.somaxconn", "kernel.shmmax",
                                          "kernel.msgmax", "fs.mqueue.queues_max", "kernel.hostname",
                                          "net/ipv4/ping_group_range", "net.ipv4.nosuch", "fs.file-max",
                                          "net..x", "net.ipv4.ip_forward/../../../kernel/x"]) | text,
                         st.sampled_from(["1", "0", "-1", "99999999999999999999", "", "a b", "\x00"]) | text,
                         max_size=3)

mapping = st.fixed_dictionaries({"containerID": ints, "hostID": ints, "size": ints})
syscall = st.fixed_dictionaries(
    {"names": st.lists(st.sampled_from(["read", "write", "getpid", "mkdir", "execve", "nosuchcall", ""]) | text,
                       max_size=3),
     "action": st.sampled_from(sorted(SECCOMP_ACTIONS)) | text},
    optional={"errnoRet": ints, "args": st.lists(st.fixed_dictionaries(
        {"index": ints, "value": ints, "op": st.sampled_from(["SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ", "EQ"])},
        optional={"valueTwo": ints}), max_size=2)})
# Never SCMP_ACT_NOTIFY with a listener on the host: a fuzzed one could name any socket.
seccomp = st.fixed_dictionaries(
    {"defaultAction": st.sampled_from(sorted(SECCOMP_ACTIONS)) | text},
    optional={"defaultErrnoRet": ints, "architectures": st.lists(st.sampled_from(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                                                  "SCMP_ARCH_Z80"]), max_size=2),
              "flags": st.lists(st.sampled_from(["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                                 "x"]), max_size=2),
              "listenerPath": st.sampled_from(["", "/nonexistent/rt-fuzz.sock", "relative"]),
              "syscalls": st.lists(syscall, max_size=3)})

# (where, what): each replaces one part of the config.
PARTS = {
    ("process", "terminal"): st.booleans(),
    ("process", "consoleSize"): st.fixed_dictionaries({"height": ints, "width": ints}),
    ("process", "scheduler"): st.fixed_dictionaries(
        {"policy": st.sampled_from(["SCHED_OTHER", "SCHED_FIFO", "SCHED_DEADLINE", "SCHED_NOPE"])},
        optional={k: ints for k in ("nice", "priority", "runtime", "deadline", "period")}),
    ("process", "ioPriority"): st.fixed_dictionaries({"class": st.sampled_from(["IOPRIO_CLASS_RT", "IOPRIO_CLASS_X"]),
                                                      "priority": ints}),
    ("process", "execCPUAffinity"): st.fixed_dictionaries({}, optional={
        "initial": st.sampled_from(["0", "0-1", "1-", "99999"]) | text, "final": text}),
    ("linux", "seccomp"): seccomp,
    ("linux", "uidMappings"): st.lists(mapping, max_size=2),
    ("linux", "gidMappings"): st.lists(mapping, max_size=2),
    ("linux", "timeOffsets"): st.dictionaries(st.sampled_from(["monotonic", "boottime", "realtime"]) | text,
                                              st.fixed_dictionaries({}, optional={"secs": ints, "nanosecs": ints}),
                                              max_size=2),
    ("linux", "personality"): st.fixed_dictionaries({"domain": st.sampled_from(["LINUX", "LINUX32", "LINUX64"])},
                                                    optional={"flags": st.lists(text, max_size=1)}),
    ("linux", "rootfsPropagation"): st.sampled_from(["shared", "rslave", "private", "runbindable", "", "everywhere"]),
    ("process", "args"): st.lists(text, max_size=4) | st.just(["true"] * 5000)
    | st.lists(st.sampled_from(["true", "/bin/true", "sh", "/nonexistent", "/", ".", "/dev/null"]), min_size=1,
               max_size=2),
    ("process", "env"): st.lists(text | st.sampled_from(["A=", "=b", "PATH=", "A=\x00", "é=1"]), max_size=5)
    | st.just(["X=1"] * 10_000),
    ("process", "rlimits"): st.lists(rlimit, max_size=4),
    ("process", "capabilities"): st.none() | st.fixed_dictionaries(
        {}, optional={k: st.lists(cap_names, max_size=4)
                      for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}),
    ("process", "user"): st.fixed_dictionaries({"uid": ints, "gid": ints},
                                               optional={"umask": ints, "additionalGids": st.lists(ints, max_size=3)}),
    ("process", "cwd"): paths,
    ("process", "oomScoreAdj"): ints,
    ("process", "noNewPrivileges"): json_values,
    ("mounts",): st.lists(mount, max_size=4),
    ("mounts", 0): mount,
    ("linux", "resources"): resources,
    ("linux", "namespaces"): st.lists(namespace, max_size=8),
    ("linux", "maskedPaths"): st.lists(paths, max_size=3),
    ("linux", "readonlyPaths"): st.lists(paths, max_size=3),
    ("linux", "sysctl"): sysctl,
    ("linux", "devices"): st.lists(st.fixed_dictionaries(
        {"path": paths, "type": st.sampled_from(["c", "b", "u", "p", "x"])},
        optional={"major": ints, "minor": ints, "fileMode": ints, "uid": ints, "gid": ints}), max_size=2),
    ("linux", "mountLabel"): text,
    ("hostname",): text,
    ("domainname",): text,
    ("annotations",): st.dictionaries(text, text, max_size=4)
    | st.dictionaries(st.just("rt.plugin"), st.sampled_from(["app_single", "no-such", "", "é"]), max_size=1),
    ("linux", "cgroupsPath"): st.lists(st.sampled_from(["a", ".", "", "..", "é", "x" * 300, "b c", "s.slice:p:n",
                                                        ":", "-.slice::n"]) | text,
                                       min_size=1, max_size=3).map(lambda parts: "/".join(parts)),
    ("root", "path"): paths | st.sampled_from(["", "rootfs"]),
    ("root", "readonly"): json_values,
    ("ociVersion",): st.sampled_from(["1.0.0", "1.2.0", "2.0.0", "1.0", ""]) | json_values,
}
WHERE = sorted(PARTS, key=repr)


@st.composite
def mutations(draw, max_parts: int = 3, typed: float = 0.5):
    """[(where, value)]: a value of about the right shape (with probability `typed`) or any JSON."""
    out = []
    for where in draw(st.lists(st.sampled_from(WHERE), min_size=1, max_size=max_parts, unique=True)):
        shaped = draw(st.integers(0, 99)) < typed * 100 or where == ("linux", "cgroupsPath")
        out.append((where, draw(PARTS[where] if shaped else json_values)))
    return out


def _confine(path: str, base: str) -> str:
    """`path` with no way out of `base`: absolute paths move under it, ".." goes."""
    parts = ["up" if p == ".." else p for p in path.split("/")]
    return base + "/".join(parts) if path.startswith("/") else "/".join(parts)


def mutated_config(rootfs: str, muts, cgroup_parent: str | None = None, host_base: str | None = None) -> dict:
    """A valid busybox config with `muts` applied. With `cgroup_parent`, cgroupsPath stays under it;
    with `host_base`, so do root.path and mount sources (a fuzzed container must not write to the host)."""
    cfg = copy.deepcopy(base_config(rootfs, ["true"]))
    if cgroup_parent:
        cfg["linux"]["cgroupsPath"] = cgroup_parent
    for where, value in muts:
        if cgroup_parent and where == ("linux", "cgroupsPath"):
            value = f"{cgroup_parent}/{_confine(value, '')}"
        elif host_base and where == ("root", "path") and isinstance(value, str):
            value = _confine(value, host_base)
        elif host_base and where[0] == "mounts":
            for m in value if isinstance(value, list) else [value]:
                if isinstance(m, dict) and isinstance(m.get("source"), str):
                    m["source"] = _confine(m["source"], host_base)
        _set(cfg, where, value)
    return cfg


def check_message(msg: str) -> None:
    assert msg, "an error without a message"
    assert not CRASH.search(msg), f"a crash, not an error: {msg!r}"


# --- the properties ----------------------------------------------------------------------------------
ROOTFS = "/nonexistent-rt-fuzz-rootfs"


def load_and_plan(data: bytes):
    """What `rt create` does before it touches the system: decode, validate, plan."""
    try:
        spec = load_config(data)
    except SpecError as e:
        assert e.path.startswith("$") and str(e) == f"config.json: {e.path}: {e.reason}", str(e)
        check_message(e.reason)
        return None
    assert isinstance(spec, Spec)
    msgspec.to_builtins(spec)
    linux = spec.linux
    try:
        path = api.normalize_cgroup_path(linux.cgroups_path if linux else "", "c1")
        api.device_rules(spec)
        warnings = []
        return api.build_plan(spec, rootfs=ROOTFS, fifo="/nonexistent/exec.fifo", bundle="/nonexistent",
                              cgroup=api.Cgroup(path), warn=warnings.append)
    except (RtError, ValueError) as e:  # ValueError: normalize_cgroup_path, with its own message
        check_message(str(e))
        return None


@settings(derandomize=CI, max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                 HealthCheck.data_too_large])
@given(mutations())
def test_mutated_configs_fail_cleanly(muts):
    load_and_plan(dumps(mutated_config(ROOTFS, muts)))


@settings(derandomize=CI, max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_document_fails_cleanly(doc):
    load_and_plan(dumps(doc))


@pytest.mark.parametrize("value", [DEEP_TEXT, "[" * 5000 + "1" + "]" * 5000, '{"a":' * 50_000 + "1" + "}" * 50_000])
def test_deep_nesting_is_a_spec_error(value):
    with pytest.raises(SpecError, match=r"^config\.json: \$"):
        load_config(f'{{"ociVersion": "1.0.0", "process": {value}}}'.encode())


def test_the_unmutated_config_plans():
    assert load_and_plan(dumps(mutated_config(ROOTFS, []))) is not None
