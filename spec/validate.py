"""Semantic checks of a decoded Spec, beyond what its types enforce."""

import errno
import os
import re
import stat

import msgspec

from .config import IDMapping, Linux, Process, Resources, Seccomp, Spec
from .errors import SpecError

# Linux capabilities, name -> number (capabilities(7), up to CAP_LAST_CAP = 40).
CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
            "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
            "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
            "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        )
    )
}

# Linux rlimit resources, name -> RLIMIT_* number (setrlimit(2)).
RLIMITS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
            "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
            "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
            "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
        )
    )
}

# OCI namespace type -> name of its link in /proc/<pid>/ns.
NAMESPACE_TYPES: dict[str, str] = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

# OCI namespace type -> CLONE_NEW* flag.
NAMESPACE_CLONE_FLAGS: dict[str, int] = {
    "pid": 0x20000000,
    "network": 0x40000000,
    "mount": 0x00020000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}

SECCOMP_ACTIONS: tuple[str, ...] = (
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
)
# Actions that take an errno (errnoRet / defaultErrnoRet).
SECCOMP_ERRNO_ACTIONS: tuple[str, ...] = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
SECCOMP_OPERATORS: tuple[str, ...] = (
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
    "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
)
# The spec's list (libseccomp 2.5) plus the architectures libseccomp 2.6 added.
SECCOMP_ARCHS: tuple[str, ...] = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
)
SECCOMP_FLAGS: tuple[str, ...] = (
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
)

HOOK_NAMES: tuple[str, ...] = (
    "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
)
DEVICE_TYPES: tuple[str, ...] = ("c", "b", "u", "p")
# Device cgroup rule types; "" means all, like "a".
DEVICE_CGROUP_TYPES: tuple[str, ...] = ("", "a", "c", "b")
# The spec's four values plus the recursive forms runc also accepts.
ROOTFS_PROPAGATIONS: tuple[str, ...] = (
    "shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable",
)
SCHED_POLICIES: tuple[str, ...] = (
    "SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_ISO", "SCHED_IDLE",
    "SCHED_DEADLINE",
)
SCHED_FLAGS: tuple[str, ...] = (
    "SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN",
    "SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_UTIL_CLAMP_MIN",
    "SCHED_FLAG_UTIL_CLAMP_MAX",
)
IOPRIO_CLASSES: tuple[str, ...] = ("IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE")
PERSONALITY_DOMAINS: tuple[str, ...] = ("LINUX", "LINUX32")
TIME_OFFSET_CLOCKS: tuple[str, ...] = ("monotonic", "boottime")
VM_IMAGE_FORMATS: tuple[str, ...] = ("raw", "qcow2", "vdi", "vmdk", "vhd")

_U64_MAX = 2**64 - 1
_PATH_MAX, _NAME_MAX, _UTS_NAME_MAX, _NGROUPS_MAX = 4096, 255, 64, 65536
_MAJOR_MAX, _MINOR_MAX = 0xFFF, 0xFFFFF  # a dev_t's 12 and 20 bits
_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_CPU_LIST = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")
_PAGE_SIZE = re.compile(r"[1-9][0-9]*[KMGTPE]?B")
_NS_LINK = re.compile(r"([a-z_]+):\[[0-9]+\]")
_NS_GET_NSTYPE = 0xB703  # ioctl: _IO(0xb7, 0x3)


def validate(spec: Spec, *, source: str = "config.json") -> None:
    """Raise SpecError for the first semantic problem found in ``spec``."""
    try:
        _spec(spec)
    except SpecError as e:
        if e.source == source:
            raise
        raise SpecError(e.path, e.reason, source) from None


def _q(s: str, limit: int = 100) -> str:
    """Quote a string for a message, escaping like JSON; a long one is cut short."""
    if len(s) <= limit:
        return msgspec.json.encode(s).decode()
    return f"{msgspec.json.encode(s[:limit]).decode()[:-1]}...\" ({len(s)} characters)"


def _key(path: str, key: str) -> str:
    return f"{path}[{msgspec.json.encode(key).decode()}]"


def _names(values: tuple[str, ...]) -> str:
    return ", ".join(v for v in values if v)


def _absolute(path: str, value: str, what: str) -> None:
    if not value.startswith("/"):
        raise SpecError(path, f"{what} {_q(value)} is not an absolute path")
    _path(path, value, what)


def _path(path: str, value: str, what: str) -> None:
    """A path the kernel will take: no NUL, within PATH_MAX and NAME_MAX."""
    _no_nul(path, value)
    size = len(value.encode())
    if size >= _PATH_MAX:
        raise SpecError(path, f"{what} is {size} bytes long: the kernel takes at most {_PATH_MAX - 1}")
    for part in value.split("/"):
        if len(part.encode()) > _NAME_MAX:
            raise SpecError(path, f"{what} has a component {_q(part, 40)} longer than {_NAME_MAX} bytes")


def _no_nul(path: str, value: str) -> None:
    if "\0" in value:
        raise SpecError(path, "must not contain a NUL byte")


def _uts_name(path: str, value: str, what: str) -> None:
    _no_nul(path, value)
    size = len(value.encode())
    if size > _UTS_NAME_MAX:
        raise SpecError(path, f"{what} is {size} bytes long: the kernel takes at most {_UTS_NAME_MAX}")


def _u64(path: str, value: int) -> None:
    if value > _U64_MAX:
        raise SpecError(path, f"{value} does not fit in uint64")


def _spec(spec: Spec) -> None:
    version = spec.oci_version
    m = _SEMVER.fullmatch(version)
    if m is None:
        raise SpecError("$.ociVersion", f"invalid ociVersion {_q(version)}: expected SemVer 1.x.y")
    if m.group(1) != "1":
        raise SpecError("$.ociVersion", f"unsupported ociVersion {_q(version)}: expected 1.x.y")
    if spec.root is not None and not spec.root.path:
        raise SpecError("$.root.path", "root path must not be empty")
    if spec.root is not None:
        _path("$.root.path", spec.root.path, "root path")
    _uts_name("$.hostname", spec.hostname, "hostname")
    _uts_name("$.domainname", spec.domainname, "domainname")
    if spec.process is not None:
        _process("$.process", spec.process)
    for i, mount in enumerate(spec.mounts):
        p = f"$.mounts[{i}]"
        _absolute(f"{p}.destination", mount.destination, "mount destination")
        _no_nul(f"{p}.source", mount.source)
        _no_nul(f"{p}.type", mount.type)
        for j, option in enumerate(mount.options):
            _no_nul(f"{p}.options[{j}]", option)
        _mappings(f"{p}.uidMappings", mount.uid_mappings)
        _mappings(f"{p}.gidMappings", mount.gid_mappings)
    if spec.hooks is not None:
        hooks = spec.hooks
        for name, entries in (
            ("prestart", hooks.prestart),
            ("createRuntime", hooks.create_runtime),
            ("createContainer", hooks.create_container),
            ("startContainer", hooks.start_container),
            ("poststart", hooks.poststart),
            ("poststop", hooks.poststop),
        ):
            for i, hook in enumerate(entries):
                p = f"$.hooks.{name}[{i}]"
                _absolute(f"{p}.path", hook.path, "hook path")
                for field, values in (("args", hook.args), ("env", hook.env)):
                    for j, value in enumerate(values):
                        _no_nul(f"{p}.{field}[{j}]", value)
                if hook.timeout is not None and hook.timeout <= 0:
                    raise SpecError(f"{p}.timeout", f"timeout must be greater than 0, got {hook.timeout}")
    for key in spec.annotations:
        if not key:
            raise SpecError(_key("$.annotations", key), "annotation key must not be empty")
    if spec.linux is not None:
        _linux("$.linux", spec.linux)
    if spec.vm is not None:
        vm = spec.vm
        if vm.hypervisor is not None:
            _absolute("$.vm.hypervisor.path", vm.hypervisor.path, "hypervisor path")
        _absolute("$.vm.kernel.path", vm.kernel.path, "kernel path")
        if vm.kernel.initrd:
            _absolute("$.vm.kernel.initrd", vm.kernel.initrd, "initrd path")
        if vm.image is not None:
            _absolute("$.vm.image.path", vm.image.path, "image path")
            if vm.image.format not in VM_IMAGE_FORMATS:
                raise SpecError(
                    "$.vm.image.format",
                    f"unknown image format {_q(vm.image.format)}: expected one of {_names(VM_IMAGE_FORMATS)}",
                )


def _process(p: str, proc: Process) -> None:
    if not proc.args:
        raise SpecError(f"{p}.args", "args must contain at least one entry")
    for i, arg in enumerate(proc.args):
        _no_nul(f"{p}.args[{i}]", arg)
    _absolute(f"{p}.cwd", proc.cwd, "cwd")
    _no_nul(f"{p}.apparmorProfile", proc.apparmor_profile)
    _no_nul(f"{p}.selinuxLabel", proc.selinux_label)
    for i, env in enumerate(proc.env):
        if env.find("=") < 1:
            raise SpecError(f"{p}.env[{i}]", f"invalid environment variable {_q(env)}: expected KEY=value")
        _no_nul(f"{p}.env[{i}]", env)
    if proc.capabilities is not None:
        caps = proc.capabilities
        for name, values in (
            ("bounding", caps.bounding),
            ("effective", caps.effective),
            ("inheritable", caps.inheritable),
            ("permitted", caps.permitted),
            ("ambient", caps.ambient),
        ):
            for i, cap in enumerate(values):
                if cap not in CAPABILITIES:
                    raise SpecError(f"{p}.capabilities.{name}[{i}]", f"unknown capability {_q(cap)}")
    seen: set[str] = set()
    for i, rl in enumerate(proc.rlimits):
        rp = f"{p}.rlimits[{i}]"
        if rl.type not in RLIMITS:
            raise SpecError(f"{rp}.type", f"unknown rlimit type {_q(rl.type)}")
        if rl.type in seen:
            raise SpecError(f"{rp}.type", f"duplicate rlimit type {_q(rl.type)}")
        seen.add(rl.type)
        _u64(f"{rp}.hard", rl.hard)
        _u64(f"{rp}.soft", rl.soft)
        if rl.soft > rl.hard:
            raise SpecError(f"{rp}.soft", f"soft limit {rl.soft} is greater than hard limit {rl.hard}")
    if len(proc.user.additional_gids) > _NGROUPS_MAX:
        raise SpecError(f"{p}.user.additionalGids",
                        f"{len(proc.user.additional_gids)} groups: the kernel takes at most {_NGROUPS_MAX}")
    if proc.oom_score_adj is not None and not -1000 <= proc.oom_score_adj <= 1000:
        raise SpecError(f"{p}.oomScoreAdj", f"expected -1000..1000, got {proc.oom_score_adj}")
    if proc.scheduler is not None:
        sched = proc.scheduler
        if sched.policy not in SCHED_POLICIES:
            raise SpecError(
                f"{p}.scheduler.policy",
                f"unknown scheduler policy {_q(sched.policy)}: expected one of {_names(SCHED_POLICIES)}",
            )
        if not -20 <= sched.nice <= 19:
            raise SpecError(f"{p}.scheduler.nice", f"expected -20..19, got {sched.nice}")
        for i, flag in enumerate(sched.flags):
            if flag not in SCHED_FLAGS:
                raise SpecError(f"{p}.scheduler.flags[{i}]", f"unknown scheduler flag {_q(flag)}")
        for name in ("runtime", "deadline", "period"):
            _u64(f"{p}.scheduler.{name}", getattr(sched, name))
    if proc.io_priority is not None:
        prio = proc.io_priority
        if prio.class_ not in IOPRIO_CLASSES:
            raise SpecError(
                f"{p}.ioPriority.class",
                f"unknown I/O priority class {_q(prio.class_)}: expected one of {_names(IOPRIO_CLASSES)}",
            )
        if not 0 <= prio.priority <= 7:
            raise SpecError(f"{p}.ioPriority.priority", f"expected 0..7, got {prio.priority}")
    if proc.exec_cpu_affinity is not None:
        for name in ("initial", "final"):
            cpus = getattr(proc.exec_cpu_affinity, name)
            if cpus and not _CPU_LIST.fullmatch(cpus):
                raise SpecError(
                    f"{p}.execCPUAffinity.{name}", f"invalid CPU list {_q(cpus)}: expected e.g. \"0-3,7\""
                )


def _mappings(p: str, mappings: list[IDMapping]) -> None:
    for i, m in enumerate(mappings):
        if m.size == 0:
            raise SpecError(f"{p}[{i}].size", "mapping size must be greater than 0")


def _linux(p: str, linux: Linux) -> None:
    seen: set[str] = set()
    for i, ns in enumerate(linux.namespaces):
        np = f"{p}.namespaces[{i}]"
        if ns.type not in NAMESPACE_TYPES:
            raise SpecError(
                f"{np}.type",
                f"unknown namespace type {_q(ns.type)}: expected one of {_names(tuple(NAMESPACE_TYPES))}",
            )
        if ns.type in seen:
            raise SpecError(f"{np}.type", f"duplicate namespace type {_q(ns.type)}")
        seen.add(ns.type)
        if ns.path:
            _absolute(f"{np}.path", ns.path, "namespace path")
            _namespace_path(f"{np}.path", ns.type, ns.path)
    _mappings(f"{p}.uidMappings", linux.uid_mappings)
    _mappings(f"{p}.gidMappings", linux.gid_mappings)
    for clock, offset in linux.time_offsets.items():
        tp = _key(f"{p}.timeOffsets", clock)
        if clock not in TIME_OFFSET_CLOCKS:
            raise SpecError(tp, f"unknown clock {_q(clock)}: expected one of {_names(TIME_OFFSET_CLOCKS)}")
        if offset.nanosecs >= 1_000_000_000:
            raise SpecError(f"{tp}.nanosecs", f"expected less than 1000000000, got {offset.nanosecs}")
    for i, dev in enumerate(linux.devices):
        dp = f"{p}.devices[{i}]"
        if dev.type not in DEVICE_TYPES:
            raise SpecError(
                f"{dp}.type", f"unknown device type {_q(dev.type)}: expected one of {_names(DEVICE_TYPES)}"
            )
        _absolute(f"{dp}.path", dev.path, "device path")
        if dev.type != "p":
            for name, top in (("major", _MAJOR_MAX), ("minor", _MINOR_MAX)):
                value = getattr(dev, name)
                if value is None:
                    raise SpecError(f"{dp}.{name}", f"{name} is required for device type {_q(dev.type)}")
                if not 0 <= value <= top:  # what a Linux dev_t holds
                    raise SpecError(f"{dp}.{name}", f"expected 0..{top}, got {value}")
    if linux.resources is not None:
        _resources(f"{p}.resources", linux.resources)
    for key in linux.sysctl:
        if not key:
            raise SpecError(_key(f"{p}.sysctl", key), "sysctl key must not be empty")
        parts = key.split("/") if "/" in key else key.split(".")  # "net/ipv4/conf/eth0.1/x" or "net.ipv4.x"
        if "\0" in key or any(part in ("", ".", "..") for part in parts):
            raise SpecError(_key(f"{p}.sysctl", key), f"invalid sysctl key {_q(key)}")
        needs = sysctl_namespace(key)
        if needs is None or needs not in {ns.type for ns in linux.namespaces}:
            raise SpecError(_key(f"{p}.sysctl", key), f"sysctl {_q(key)} is not in a separate kernel namespace"
                            + (f" (needs a {needs} namespace)" if needs else ""))
        _no_nul(_key(f"{p}.sysctl", key), linux.sysctl[key])
    _no_nul(f"{p}.cgroupsPath", linux.cgroups_path)
    if "\n" in linux.cgroups_path:  # the kernel refuses it in a cgroup's name
        raise SpecError(f"{p}.cgroupsPath", "must not contain a newline")
    _no_nul(f"{p}.mountLabel", linux.mount_label)
    if linux.seccomp is not None:
        _seccomp(f"{p}.seccomp", linux.seccomp)
    if linux.rootfs_propagation and linux.rootfs_propagation not in ROOTFS_PROPAGATIONS:
        raise SpecError(
            f"{p}.rootfsPropagation",
            f"unknown propagation {_q(linux.rootfs_propagation)}: expected one of {_names(ROOTFS_PROPAGATIONS)}",
        )
    for name, paths in (("maskedPaths", linux.masked_paths), ("readonlyPaths", linux.readonly_paths)):
        for i, path in enumerate(paths):
            _absolute(f"{p}.{name}[{i}]", path, "path")
    if linux.intel_rdt is not None:
        mb = linux.intel_rdt.mem_bw_schema
        if mb and (not mb.startswith("MB:") or "\n" in mb):
            raise SpecError(f"{p}.intelRdt.memBwSchema", "expected a single line starting with \"MB:\"")
    if linux.personality is not None:
        pers = linux.personality
        if pers.domain not in PERSONALITY_DOMAINS:
            raise SpecError(
                f"{p}.personality.domain",
                f"unknown personality domain {_q(pers.domain)}: expected one of {_names(PERSONALITY_DOMAINS)}",
            )
        if pers.flags:
            # The spec defines no personality flags yet.
            raise SpecError(f"{p}.personality.flags[0]", f"unknown personality flag {_q(pers.flags[0])}")


def _namespace_path(p: str, ns_type: str, path: str) -> None:
    try:
        kind = _namespace_kind(path)
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SpecError(p, f"cannot open namespace path {_q(path)}: {reason}") from None
    if kind is None:
        raise SpecError(p, f"{_q(path)} is not a namespace")
    if kind != NAMESPACE_TYPES[ns_type]:
        raise SpecError(p, f"{_q(path)} is a {_q(kind)} namespace, expected {_q(NAMESPACE_TYPES[ns_type])}")


def _namespace_kind(path: str) -> str | None:
    """The /proc/<pid>/ns link name of the namespace at ``path``, or None if it is none."""
    try:
        m = _NS_LINK.fullmatch(os.readlink(path))
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: not a symlink, e.g. a bind mount
            raise
        m = None
    if m is not None:
        return m.group(1)
    # A bind-mounted nsfs file (ip netns) or a plain symlink to one: ask the kernel.
    if not stat.S_ISREG(os.stat(path).st_mode):
        return None
    import fcntl  # only needed for this rare case

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        flag = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        return None
    finally:
        os.close(fd)
    for ns_type, clone_flag in NAMESPACE_CLONE_FLAGS.items():
        if flag == clone_flag:
            return NAMESPACE_TYPES[ns_type]
    return None


_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def sysctl_namespace(key: str) -> str | None:
    """The namespace type a sysctl belongs to (runc's list), or None for a host-wide one."""
    k = key.replace("/", ".")
    if k in _IPC_SYSCTLS or k.startswith("fs.mqueue."):
        return "ipc"
    if k.startswith("net."):
        return "network"
    if k in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def validate_resources(res: Resources, path: str = "$.linux.resources") -> None:
    """The checks of linux.resources alone (for `update --resources`)."""
    _resources(path, res)


def _resources(p: str, res: Resources) -> None:
    for i, rule in enumerate(res.devices):
        if rule.type not in DEVICE_CGROUP_TYPES:
            raise SpecError(
                f"{p}.devices[{i}].type",
                f"unknown device type {_q(rule.type)}: expected one of {_names(DEVICE_CGROUP_TYPES)}",
            )
        if rule.access.strip("rwm"):
            raise SpecError(f"{p}.devices[{i}].access", f"invalid access {_q(rule.access)}: expected r, w, m")
        for name in ("major", "minor"):
            value = getattr(rule, name)
            if value is not None and not -1 <= value <= 0xFFFFFFFF:
                raise SpecError(f"{p}.devices[{i}].{name}", f"expected 0..4294967295 or -1 (any), got {value}")
    mem = res.memory
    if mem is not None:
        if mem.limit is not None and mem.limit <= 0 and mem.limit != -1:
            raise SpecError(f"{p}.memory.limit", f"expected a byte count > 0 or -1 (unlimited), got {mem.limit}")
        for name in ("reservation", "swap"):
            value = getattr(mem, name)
            if value is not None and value < -1:
                raise SpecError(f"{p}.memory.{name}", f"expected a byte count or -1 (unlimited), got {value}")
        # uint64(-1) is what some tools send for "unset".
        if mem.swappiness is not None and mem.swappiness > 100 and mem.swappiness != _U64_MAX:
            raise SpecError(f"{p}.memory.swappiness", f"expected 0..100, got {mem.swappiness}")
    cpu = res.cpu
    if cpu is not None:
        for name, value in (
            ("shares", cpu.shares),
            ("burst", cpu.burst),
            ("period", cpu.period),
            ("realtimePeriod", cpu.realtime_period),
        ):
            if value is not None:
                _u64(f"{p}.cpu.{name}", value)
        if cpu.burst is not None and cpu.quota is not None and 0 < cpu.quota < cpu.burst:
            raise SpecError(f"{p}.cpu.burst", f"burst {cpu.burst} is greater than quota {cpu.quota}")
        for name in ("cpus", "mems"):
            value = getattr(cpu, name)
            if value and not _CPU_LIST.fullmatch(value):
                raise SpecError(f"{p}.cpu.{name}", f"invalid list {_q(value)}: expected e.g. \"0-3,7\"")
        if cpu.idle is not None and cpu.idle not in (0, 1):
            raise SpecError(f"{p}.cpu.idle", f"expected 0 or 1, got {cpu.idle}")
    bio = res.block_io
    if bio is not None:
        for i, wd in enumerate(bio.weight_device):
            if wd.weight is None and wd.leaf_weight is None:
                raise SpecError(f"{p}.blockIO.weightDevice[{i}]", "expected weight or leafWeight")
        for name, devices in (
            ("throttleReadBpsDevice", bio.throttle_read_bps_device),
            ("throttleWriteBpsDevice", bio.throttle_write_bps_device),
            ("throttleReadIOPSDevice", bio.throttle_read_iops_device),
            ("throttleWriteIOPSDevice", bio.throttle_write_iops_device),
        ):
            for i, td in enumerate(devices):
                _u64(f"{p}.blockIO.{name}[{i}].rate", td.rate)
    for i, hp in enumerate(res.hugepage_limits):
        if not _PAGE_SIZE.fullmatch(hp.page_size):
            raise SpecError(
                f"{p}.hugepageLimits[{i}].pageSize", f"invalid page size {_q(hp.page_size)}: expected e.g. \"2MB\""
            )
        _u64(f"{p}.hugepageLimits[{i}].limit", hp.limit)
    for name, rdma in res.rdma.items():
        if rdma.hca_handles is None and rdma.hca_objects is None:
            raise SpecError(_key(f"{p}.rdma", name), "expected hcaHandles or hcaObjects")
    for key, value in res.unified.items():
        if key in ("", ".", "..") or "/" in key or "\0" in key:
            raise SpecError(_key(f"{p}.unified", key), f"invalid cgroup file name {_q(key)}")
        _no_nul(_key(f"{p}.unified", key), value)


def _seccomp(p: str, sc: Seccomp) -> None:
    _action(f"{p}.defaultAction", sc.default_action)
    if sc.default_errno_ret is not None and sc.default_action not in SECCOMP_ERRNO_ACTIONS:
        raise SpecError(f"{p}.defaultErrnoRet", f"{sc.default_action} does not take an errno")
    for i, arch in enumerate(sc.architectures):
        if arch not in SECCOMP_ARCHS:
            raise SpecError(f"{p}.architectures[{i}]", f"unknown seccomp architecture {_q(arch)}")
    for i, flag in enumerate(sc.flags):
        if flag not in SECCOMP_FLAGS:
            raise SpecError(
                f"{p}.flags[{i}]", f"unknown seccomp flag {_q(flag)}: expected one of {_names(SECCOMP_FLAGS)}"
            )
    if sc.listener_metadata and not sc.listener_path:
        raise SpecError(f"{p}.listenerMetadata", "listenerMetadata requires listenerPath")
    for i, call in enumerate(sc.syscalls):
        cp = f"{p}.syscalls[{i}]"
        if not call.names:
            raise SpecError(f"{cp}.names", "names must contain at least one entry")
        for j, name in enumerate(call.names):
            if not name:
                raise SpecError(f"{cp}.names[{j}]", "syscall name must not be empty")
        _action(f"{cp}.action", call.action)
        if call.errno_ret is not None and call.action not in SECCOMP_ERRNO_ACTIONS:
            raise SpecError(f"{cp}.errnoRet", f"{call.action} does not take an errno")
        for j, arg in enumerate(call.args):
            ap = f"{cp}.args[{j}]"
            if arg.index > 5:
                raise SpecError(f"{ap}.index", f"expected 0..5, got {arg.index}")
            _u64(f"{ap}.value", arg.value)
            _u64(f"{ap}.valueTwo", arg.value_two)
            if arg.op not in SECCOMP_OPERATORS:
                raise SpecError(
                    f"{ap}.op",
                    f"unknown seccomp operator {_q(arg.op)}: expected one of {_names(SECCOMP_OPERATORS)}",
                )


def _action(p: str, action: str) -> None:
    if action not in SECCOMP_ACTIONS:
        raise SpecError(p, f"unknown seccomp action {_q(action)}: expected one of {_names(SECCOMP_ACTIONS)}")
