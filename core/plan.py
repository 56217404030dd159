"""Turn a validated OCI spec into the plan that the lean stub executes.

All policy lives here (defaults, option parsing, capability filtering); the stub
only performs syscalls. Plugins call `build_plan` and may adjust the result.
"""
import os

from .errors import RtError
from .plantypes import CapsPlan, DevicePlan, ExecPlan, MountPlan, Plan, ProcessPlan

from rt.spec.validate import CAPABILITIES, RLIMITS as RLIMIT_NUMBERS

# Linux capability names by number (CAP_CHOWN = 0 ...), from the spec's table.
CAP_NAMES = sorted(CAPABILITIES, key=CAPABILITIES.get)
# mount(2) flags: option -> (set?, flag)
_FLAGS = {
    "ro": (True, 1), "rw": (False, 1), "nosuid": (True, 2), "suid": (False, 2), "nodev": (True, 4),
    "dev": (False, 4), "noexec": (True, 8), "exec": (False, 8), "sync": (True, 16), "async": (False, 16),
    "remount": (True, 32), "mand": (True, 64), "nomand": (False, 64), "dirsync": (True, 128),
    "noatime": (True, 1024), "atime": (False, 1024), "nodiratime": (True, 2048), "diratime": (False, 2048),
    "bind": (True, 4096), "rbind": (True, 4096 | 16384), "relatime": (True, 1 << 21),
    "norelatime": (False, 1 << 21), "strictatime": (True, 1 << 24), "nostrictatime": (False, 1 << 24),
    "silent": (True, 32768), "loud": (False, 32768), "defaults": (False, 0), "tmpcopyup": (False, 0),
    "iversion": (True, 1 << 23), "noiversion": (False, 1 << 23), "nosymfollow": (True, 256), "lazytime": (True, 1 << 25), "nolazytime": (False, 1 << 25),
}
MS_REC, MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 16384, 1 << 17, 1 << 18, 1 << 19, 1 << 20
_PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC, "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
DEFAULT_DEVICES = [  # path, type, major, minor
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
]
DEFAULT_SYMLINKS = [
    ("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"), ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"), ("/dev/core", "/proc/kcore"),
]


# Always allowed, after the spec's own rules (runc's AllowedDevices): mknod of any node,
# the default devices, /dev/console, ptys and /dev/net/tun.
DEFAULT_DEVICE_RULES = [
    ("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"),
    ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 1, "rwm"), ("c", 136, None, "rwm"),
    ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
]


def device_rules(spec) -> list[dict]:
    """The device cgroup allow/deny list: deny all, the spec's rules, then the defaults and
    linux.devices. Like runc, the base is deny-all whether or not the spec starts with it:
    without it a spec with no device rules left every device open (mknod /dev/kmsg)."""
    linux = spec.linux
    rules = [{"allow": False, "type": "a", "major": None, "minor": None, "access": "rwm"}]
    if linux and linux.resources:
        def number(n):  # -1 is "any", as in runc
            return None if n is None or n < 0 else n
        rules += [{"allow": d.allow, "type": d.type or "a", "major": number(d.major), "minor": number(d.minor),
                   "access": d.access or "rwm"} for d in linux.resources.devices]
    rules += [{"allow": True, "type": t, "major": ma, "minor": mi, "access": a} for t, ma, mi, a in DEFAULT_DEVICE_RULES]
    for d in (linux.devices if linux else []):
        if d.type in ("c", "b", "u"):
            rules.append({"allow": True, "type": "c" if d.type == "u" else d.type, "major": d.major,
                          "minor": d.minor, "access": "rwm"})
    return rules


# recursive mount attributes (mount_setattr(2) with AT_RECURSIVE): option -> (set?, MOUNT_ATTR_*)
_RATTR = {"rro": (True, 0x1), "rrw": (False, 0x1), "rnosuid": (True, 0x2), "rsuid": (False, 0x2),
          "rnodev": (True, 0x4), "rdev": (False, 0x4), "rnoexec": (True, 0x8), "rexec": (False, 0x8),
          "rnodiratime": (True, 0x80), "rdiratime": (False, 0x80), "rnosymfollow": (True, 0x200000),
          "rsymfollow": (False, 0x200000)}
# the atime mode is one field (MOUNT_ATTR__ATIME): setting it must also clear it
_RATIME = {"rrelatime": 0x0, "rnoatime": 0x10, "rstrictatime": 0x20}
_ATIME_MASK = 0x70


def recursive_attrs(options: list[str]) -> tuple[int, int]:
    """(attr_set, attr_clr) for the r* options runc accepts."""
    aset = aclr = 0
    for o in options:
        if o in _RATTR:
            on, bit = _RATTR[o]
            aset, aclr = (aset | bit, aclr & ~bit) if on else (aset & ~bit, aclr | bit)
        elif o in _RATIME:
            aset, aclr = (aset & ~_ATIME_MASK) | _RATIME[o], aclr | _ATIME_MASK
    return aset, aclr


def parse_mount_options(options: list[str]) -> tuple[int, list[int], str, bool]:
    """-> (flags, propagation flags, data string, recursive bind)."""
    flags, prop, data, rec = 0, [], [], False
    for o in options:
        if o in _RATTR or o in _RATIME or o in ("idmap", "ridmap"):
            rec = rec or o == "ridmap"
        elif o in _FLAGS:
            on, f = _FLAGS[o]
            flags = flags | f if on else flags & ~f
            rec = rec or o == "rbind"
        elif o in _PROPAGATION:
            prop.append(_PROPAGATION[o])
        else:
            data.append(o)
    return flags & ~MS_REC if not rec else flags, prop, ",".join(data), rec


def host_capabilities() -> tuple[int, int]:
    """(bounding set mask, last cap number) of this process."""
    bnd = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                bnd = int(line.split()[1], 16)
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except OSError:
        last = len(CAP_NAMES) - 1
    return bnd, last


def capability_plan(caps, warn) -> dict | None:
    if caps is None:
        return None
    bnd, _ = host_capabilities()
    out, missing = {}, set()
    for kind in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        nums = []
        for name in getattr(caps, kind):
            n = CAP_NAMES.index(name)
            if bnd & (1 << n):
                nums.append(n)
            else:
                missing.add(name)
        out[kind] = nums
    if missing:
        warn("capabilities not in the host's bounding set, left out: " + ", ".join(sorted(missing)))
    # The kernel raises an ambient cap only when it is permitted and inheritable too.
    amb = [n for n in out["ambient"] if n in out["permitted"] and n in out["inheritable"]]
    if len(amb) != len(out["ambient"]):
        warn("ambient capabilities not also in permitted and inheritable are left out")
        out["ambient"] = amb
    return out


def cgroup_mount_binds(cgroup) -> list[tuple[str, str]]:
    """For a cgroup mount without cgroupns: (subdir name, host dir) pairs of the container's cgroup."""
    if cgroup.layout.mode == "v2":
        return [("", cgroup.dirs()[""])]
    binds = []
    for ctrl, d in cgroup.dirs().items():
        binds.append((ctrl.removeprefix("name=") if ctrl else "unified", d))
    return binds


def host_lsms() -> set[str]:
    """The Linux security modules this host enforces that a spec can ask for."""
    out = set()
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            if f.read().strip() == "Y":
                out.add("apparmor")
    except OSError:
        pass
    if os.path.exists("/sys/fs/selinux/enforce"):
        out.add("selinux")
    return out


def lsm_plan(proc) -> dict:
    """process.apparmorProfile / selinuxLabel to apply at exec, or a clear error without the LSM."""
    have = host_lsms() if (proc.apparmor_profile or proc.selinux_label) else set()
    if proc.apparmor_profile and "apparmor" not in have:
        raise RtError("config.json: $.process.apparmorProfile: AppArmor is not enabled on this host")
    if proc.selinux_label and "selinux" not in have:
        raise RtError("config.json: $.process.selinuxLabel: SELinux is not enabled on this host")
    return {"apparmor": proc.apparmor_profile or None, "selinux": proc.selinux_label or None}


def mount_label(linux, warn) -> str:
    """linux.mountLabel, or "" without SELinux: nothing to label then (as crun)."""
    label = linux.mount_label if linux else ""
    if label and "selinux" not in host_lsms():
        warn("linux.mountLabel is ignored: SELinux is not enabled on this host")
        return ""
    return label


def id_maps(uids, gids) -> dict[str, str]:
    """OCI id mappings as /proc/<pid>/uid_map and gid_map text."""
    def text(ms):
        return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in ms)
    return {"uid_map": text(uids), "gid_map": text(gids)}


def process_env(proc) -> list[str]:
    """process.env with HOME set as runc sets it when the spec does not."""
    env = list(proc.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=/root" if proc.user.uid == 0 else "HOME=/")
    return env


def process_plan(proc, warn) -> ProcessPlan:
    """The part of a plan that describes the process itself (create and exec)."""
    user = proc.user
    caps = capability_plan(proc.capabilities, warn)
    return ProcessPlan(args=list(proc.args), env=process_env(proc), cwd=proc.cwd or "/", uid=user.uid,
                       gid=user.gid, groups=list(user.additional_gids),
                       umask=user.umask if user.umask is not None else 0o022, no_new_privs=proc.no_new_privileges,
                       caps=None if caps is None else CapsPlan(**caps), sched=_scheduler(proc.scheduler),
                       ioprio=_ioprio(proc.io_priority), affinity=_affinity(proc.exec_cpu_affinity))


_SCHED_POLICY = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_ISO": 4, "SCHED_IDLE": 5,
                 "SCHED_DEADLINE": 6}
_SCHED_FLAG = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
               "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
_IOPRIO_CLASS = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}


def _scheduler(sched):
    """process.scheduler as sched_setattr(2)'s fields: policy, flags, nice, priority, runtime, deadline, period."""
    if sched is None:
        return None
    flags = 0
    for f in sched.flags:
        flags |= _SCHED_FLAG[f]
    return [_SCHED_POLICY[sched.policy], flags, sched.nice, sched.priority, sched.runtime, sched.deadline,
            sched.period]


def _ioprio(prio):
    """process.ioPriority as ioprio_set(2)'s value."""
    return None if prio is None else (_IOPRIO_CLASS[prio.class_] << 13) | prio.priority


def cpu_list(text: str) -> list[int]:
    """"0-3,7" -> [0, 1, 2, 3, 7]."""
    cpus = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return sorted(cpus)


def _affinity(aff):
    """process.execCPUAffinity: the CPUs while the runtime sets up, and the workload's."""
    if aff is None or not (aff.initial or aff.final):
        return None
    return [cpu_list(aff.initial) if aff.initial else None, cpu_list(aff.final) if aff.final else None]


def listener_state(spec, seccomp: dict, state: dict | None) -> str:
    """The runtime-spec containerProcessState sent with a seccomp notify fd (pid filled in by the stub)."""
    if not seccomp.get("listener"):
        return ""
    from . import jsonio
    from .ocistate import OCI_VERSION
    return jsonio.dumps({"ociVersion": OCI_VERSION, "fds": ["seccompFd"], "pid": "__PID__",
                         "metadata": seccomp.get("listener_metadata") or "",
                         "state": state or {}}).replace('"__PID__"', "__PID__")  # the shim puts its host pid


def build_plan(spec, *, rootfs: str, fifo: str | None, bundle: str | None = None, cgroup=None,
               no_pivot: bool = False, preserve_fds: int = 0, warn=lambda msg: None,
               state_template: dict | None = None, host_cgroup_view: bool = False) -> Plan:
    """host_cgroup_view: with no container cgroup (rootless, no delegated cgroup), a cgroup mount
    is a read-only recursive bind of the host's /sys/fs/cgroup, as runc's rootless fallback."""
    linux = spec.linux
    proc = spec.process
    if proc is None:
        raise RtError("config.json: $.process: a process is required to create a container")
    namespaces = linux.namespaces if linux else []
    join, unshare = [], []
    for ns in sorted(namespaces, key=lambda n: n.type != "user"):
        (join.append((ns.type, ns.path)) if ns.path else unshare.append(ns.type))
    userns = None
    if "user" in unshare:
        if not (linux.uid_mappings and linux.gid_mappings):
            raise RtError("config.json: $.linux.uidMappings: a new user namespace needs uidMappings and gidMappings")
        userns = id_maps(linux.uid_mappings, linux.gid_mappings)
    types = {ns.type for ns in namespaces}
    if linux and linux.intel_rdt is not None:
        raise RtError("config.json: $.linux.intelRdt: Intel RDT (resctrl) is not supported by rt")
    time_offsets = ""
    if linux and linux.time_offsets:
        if "time" not in unshare:
            raise RtError("config.json: $.linux.timeOffsets: needs a new time namespace in linux.namespaces")
        time_offsets = "".join(f"{clock} {o.secs} {o.nanosecs}\n" for clock, o in sorted(linux.time_offsets.items()))
    if "mount" not in types and linux and (linux.masked_paths or linux.readonly_paths):
        # runc's rule and words: they would be mounts over paths of the caller's own tree
        field = "maskedPaths" if linux.masked_paths else "readonlyPaths"
        raise RtError(f"config.json: $.linux.{field}: unable to restrict sys entries without a private MNT namespace")
    lsm = lsm_plan(proc)
    label = mount_label(linux, warn)

    mounts, dev_is_tmpfs, has_pts = [], False, False
    for i, m in enumerate(spec.mounts):
        flags, prop, data, rec = parse_mount_options(m.options)
        bind = m.type == "bind" or bool(flags & 4096)
        idmap = None
        if m.uid_mappings or m.gid_mappings or "idmap" in m.options or "ridmap" in m.options:
            if not bind:
                raise RtError(f"config.json: $.mounts[{i}]: idmapped mounts must be bind mounts")
            uids, gids = m.uid_mappings or (linux.uid_mappings if linux else []), \
                m.gid_mappings or (linux.gid_mappings if linux else [])
            if not uids or not gids:
                raise RtError(f"config.json: $.mounts[{i}].uidMappings: an idmapped mount needs uid and gid mappings")
            idmap = id_maps(uids, gids)
        src = m.source
        if bind and not os.path.isabs(src):
            src = os.path.join(bundle or os.path.dirname(rootfs), src)  # relative to the bundle
        fstype = m.type
        if m.type == "cgroup" and cgroup is None and host_cgroup_view:
            fstype, src, bind, rec = "bind", "/sys/fs/cgroup", True, True
            flags |= 1 | 2 | 4 | 8  # ro, nosuid, nodev, noexec; and "rro" below for the mounts under it
        elif m.type == "cgroup" and cgroup is None:
            raise RtError(f"config.json: $.mounts[{i}]: a cgroup mount needs a container cgroup "
                          f"(this plugin passes none to build_plan)")
        elif m.type == "cgroup" and "cgroup" not in types:
            fstype, data = "cgroup-host", cgroup_mount_binds(cgroup)
        elif m.type == "cgroup" and cgroup.layout.mode == "v2":
            fstype = "cgroup2"
        elif m.type == "cgroup":
            fstype, data = "cgroup-host", cgroup_mount_binds(cgroup)
        if m.destination == "/dev" and not bind:
            dev_is_tmpfs = True
        has_pts = has_pts or m.destination == "/dev/pts"
        if label and not bind and fstype in ("tmpfs", "mqueue", "devpts", "sysfs"):
            data = ",".join(x for x in (data, f'context="{label}"') if x)
        host_view = ["rro"] if m.type == "cgroup" and fstype == "bind" else []
        rset, rclr = recursive_attrs(list(m.options or []) + host_view)
        mounts.append(MountPlan(source=src, destination=m.destination, type=fstype, bind=bind, recursive=rec,
                                flags=flags & ~4096, propagation=prop, data=data, idmap=idmap, rattr=(rset, rclr)))

    devices = []
    if dev_is_tmpfs:
        for path, kind, major, minor in DEFAULT_DEVICES:
            devices.append(DevicePlan(path, kind, major, minor, 0o666, 0, 0))
    for d in (linux.devices if linux else []):
        devices = [x for x in devices if x.path != d.path]
        devices.append(DevicePlan(d.path, d.type, d.major or 0, d.minor or 0,
                                  d.file_mode if d.file_mode is not None else 0o666, d.uid or 0, d.gid or 0))
    symlinks = list(DEFAULT_SYMLINKS) if dev_is_tmpfs else []
    if dev_is_tmpfs and has_pts:
        symlinks.append(("/dev/ptmx", "pts/ptmx"))

    if (spec.hostname or spec.domainname) and "uts" not in types:  # runc refuses this too
        raise RtError("config.json: $.hostname: setting a hostname needs a private UTS namespace")
    rprop = (linux.rootfs_propagation if linux else "") or ""
    if rprop and rprop not in _PROPAGATION:
        raise RtError(f"config.json: $.linux.rootfsPropagation: unknown propagation {rprop!r}")
    _, last_cap = host_capabilities()
    from .hooks import hooks_of
    hooks = hooks_of(spec)
    seccomp = None
    if linux and linux.seccomp is not None:
        from .seccomp import compile_filter
        seccomp = compile_filter(linux.seccomp, warn)
        seccomp["listener_state"] = listener_state(spec, seccomp, state_template)
    return Plan(**{
        "join": join, "unshare": unshare, "rootfs": rootfs, "userns": userns,
        "unshare_mount": "mount" in unshare,
        # keep host mount events flowing in (runc's default), never out
        "host_propagation": MS_SLAVE | MS_REC if rprop not in ("shared", "rshared") else MS_SHARED | MS_REC,
        "root_propagation": _PROPAGATION[rprop] if rprop else 0,
        "no_pivot": no_pivot, "readonly": bool(spec.root and spec.root.readonly),
        "mounts": mounts, "devices": devices, "symlinks": symlinks,
        "masked_paths": list(linux.masked_paths) if linux else [],
        "readonly_paths": list(linux.readonly_paths) if linux else [],
        "hostname": spec.hostname or None,
        "domainname": spec.domainname or None,
        "sysctl": _sysctls(linux),
        "loopback": "network" in unshare,
        "rlimits": [(RLIMIT_NUMBERS[r.type], r.soft, r.hard, r.type) for r in proc.rlimits],
        "personality": {"LINUX": 0x0000, "LINUX32": 0x0008}[linux.personality.domain]
        if linux and linux.personality else None,
        "time_offsets": time_offsets,
        "oom_score_adj": proc.oom_score_adj,
        "fifo": fifo, "preserve_fds": preserve_fds, "last_cap": last_cap, "seccomp": seccomp,
        "hooks": {k: v for k, v in hooks.items() if k in ("createContainer", "startContainer")},
        "lsm": lsm,
        "hook_sync": any(k in hooks for k in ("prestart", "createRuntime", "createContainer")),
        "process": process_plan(proc, warn),
    })


_NS_FILE = {"network": "net", "ipc": "ipc", "uts": "uts"}


def _sysctls(linux) -> list[tuple[str, str]]:
    """linux.sysctl, refused (as runc) where the namespace it writes is joined by a path that is
    the host's own: validation sees only that the spec names the namespace."""
    if not linux or not linux.sysctl:
        return []
    from rt.spec.validate import sysctl_namespace
    for key in linux.sysctl:
        kind = sysctl_namespace(key)
        path = next((ns.path for ns in linux.namespaces if ns.type == kind and ns.path), None)
        if path is None:
            continue
        try:
            theirs, ours = os.stat(path), os.stat(f"/proc/self/ns/{_NS_FILE[kind]}")
        except OSError as e:
            raise RtError(f"config.json: $.linux.namespaces: {kind} namespace {path}: {e.strerror}")
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
            raise RtError(f"config.json: $.linux.sysctl[{key!r}]: sysctl {key!r} not allowed in host "
                          f"{kind} namespace")
    return sorted(linux.sysctl.items())


def _exec_seccomp(sc, warn):
    if sc is None:
        return None
    from .seccomp import compile_filter
    out = compile_filter(sc, warn)
    out["listener"] = None  # the container's listener already has the init's notify fd
    out["flags"] &= ~8
    return out


_JOIN_ORDER = [("user", "user"), ("cgroup", "cgroup"), ("ipc", "ipc"), ("uts", "uts"), ("network", "net"),
               ("pid", "pid"), ("time", "time"), ("mount", "mnt")]


def namespaces_of(pid: int) -> list[tuple[str, str]]:
    """(type, path) of each namespace of `pid` that differs from ours, in setns order."""
    out = []
    for kind, name in _JOIN_ORDER:
        path = f"/proc/{pid}/ns/{name}"
        try:
            theirs = os.stat(path).st_ino
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}"):  # never fall back to running on the host
                raise RtError("the container's process has exited") from None
            continue  # a namespace type this kernel lacks
        if theirs != os.stat(f"/proc/self/ns/{name}").st_ino:
            out.append((kind, path))
    return out


def build_exec_plan(target_pid: int, proc, *, rootfs: str | None = None, seccomp=None, preserve_fds: int = 0,
                    pidfd: int | None = None, warn=lambda msg: None) -> ExecPlan:
    """A plan that joins a running container and execs `proc` (an rt.spec Process), under the
    container's seccomp filter (an rt.spec Seccomp) when it has one, as runc does.

    With `pidfd` (of the container's init, passed to the shim under that number) every
    namespace is joined in one setns(2) call on it: atomic, and immune to pid reuse."""
    if not proc.args:
        raise RtError("exec: args must not be empty")
    _, last_cap = host_capabilities()
    join = namespaces_of(target_pid)
    # a container without its own mount namespace was chrooted: so is its exec
    root = None if any(kind == "mount" for kind, _ in join) else rootfs
    return ExecPlan(**{
        "join": [] if pidfd is not None else join, "unshare": [], "rootfs": root, "unshare_mount": False,
        "join_pidfd": pidfd, "join_types": [kind for kind, _ in join],
        "host_propagation": 0, "root_propagation": 0, "no_pivot": False, "readonly": False, "mounts": [],
        "devices": [], "symlinks": [], "masked_paths": [], "readonly_paths": [], "hostname": None,
        "domainname": None, "sysctl": [], "loopback": False,
        "rlimits": [(RLIMIT_NUMBERS[r.type], r.soft, r.hard, r.type) for r in proc.rlimits],
        "oom_score_adj": None, "fifo": None, "preserve_fds": preserve_fds, "last_cap": last_cap,
        "seccomp": _exec_seccomp(seccomp, warn), "lsm": lsm_plan(proc),
        "process": process_plan(proc, warn),
    })
