"""The plan's types: what `build_plan` and `build_exec_plan` (core/plan.py) return, what a
backend may adjust in `OciBackend.prepare`, and what the stub (shim/stub.py) executes.

The stub receives `plan.wire()`, plain builtins, so it stays lean. For plugins written
against API 1.0, a plan still answers `plan["key"]`, `plan.get("key")` and
`plan["key"] = value`. docs/plan.md is generated from this module (scripts/gen-plan-doc).
"""
import msgspec

from .errors import RtError


class _ItemAccess:
    """API 1.0 compatibility: plans were dicts, so a part still answers part["key"]."""
    __slots__ = ()

    def __getitem__(self, key):
        return getattr(self, key)

    def __setitem__(self, key, value):
        setattr(self, key, value)

    def get(self, key, default=None):
        return getattr(self, key, default)


class MountPlan(_ItemAccess, msgspec.Struct, kw_only=True):
    """One mount, made under the rootfs in the container's mount namespace."""
    destination: str  # inside the container; symlinks on the way resolve inside the rootfs
    source: str | None = None  # a host path for binds (resolved against the bundle), else the fs source
    type: str = "bind"  # the filesystem type; "bind"; or rt's "cgroup-host" (binds of the container's cgroup)
    bind: bool = True  # MS_BIND
    recursive: bool = False  # rbind
    flags: int = 0  # mount(2) MS_* flags besides MS_BIND
    propagation: list[int] = []  # MS_SHARED, MS_PRIVATE, ... applied after the mount
    data: str | list = ""  # the fs options string (for "cgroup-host": (subdir, host dir) pairs)
    idmap: dict | None = None  # {"uid_map", "gid_map"}: an idmapped bind
    rattr: tuple[int, int] = (0, 0)  # mount_setattr(2) (set, clear) with AT_RECURSIVE: rro, rnosuid, ...


class DevicePlan(msgspec.Struct, array_like=True):
    """A device node made in the container's /dev."""
    path: str  # under /dev
    type: str  # c, b, u (unbuffered character) or p (fifo)
    major: int  # device number
    minor: int  # device number
    mode: int = 0o666  # permission bits
    uid: int = 0  # owner
    gid: int = 0  # group

    def __getitem__(self, i):  # API 1.0: a device was a tuple
        return getattr(self, self.__struct_fields__[i])

    def astuple(self) -> tuple:
        return tuple(getattr(self, f) for f in self.__struct_fields__)


class CapsPlan(msgspec.Struct):
    """Capability numbers per set, already filtered by the host's bounding set."""
    bounding: list[int] = []  # capability numbers (CAP_CHOWN = 0)
    effective: list[int] = []  # the same numbers per set
    inheritable: list[int] = []  # kept across execve with ambient
    permitted: list[int] = []  # the upper bound of effective
    ambient: list[int] = []  # raised only when permitted and inheritable


class ProcessPlan(_ItemAccess, msgspec.Struct, kw_only=True):
    """The process that the stub execs (the container's init, or an exec'd process)."""
    args: list[str]  # args[0] is looked up in PATH inside the container
    env: list[str] = []  # with HOME set when the spec does not
    cwd: str = "/"  # inside the container
    uid: int = 0  # the process runs as this uid
    gid: int = 0  # and this gid
    groups: list[int] = []  # additional gids
    umask: int = 0o022  # process.user.umask
    no_new_privs: bool = False  # prctl(PR_SET_NO_NEW_PRIVS)
    caps: CapsPlan | None = None  # None: keep the stub's
    sched: list | None = None  # sched_setattr(2) fields
    ioprio: int | None = None  # ioprio_set(2) value
    affinity: list | None = None  # [initial cpus, final cpus]


NAMESPACES = ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")
CONTAINER_STAGES = ("createContainer", "startContainer")


class _Base(_ItemAccess, msgspec.Struct, kw_only=True):
    process: ProcessPlan  # what the stub execs last
    join: list[tuple[str, str]] = []  # (type, /proc/PID/ns/... path) to setns, user first
    unshare: list[str] = []  # namespace types to create, user first
    rootfs: str | None = None  # None: no chroot or pivot_root (the process sees the caller's root)
    unshare_mount: bool = False  # a mount namespace of its own: mounts, pivot_root
    host_propagation: int = 0  # propagation set on / first (MS_SLAVE|MS_REC: host events flow in, never out)
    root_propagation: int = 0  # linux.rootfsPropagation, applied after pivot_root
    no_pivot: bool = False  # --no-pivot: MS_MOVE and chroot instead of pivot_root
    readonly: bool = False  # root.readonly: the rootfs is remounted read-only
    mounts: list[MountPlan] = []  # in order, under the rootfs
    devices: list[DevicePlan] = []  # nodes made in /dev (a tmpfs /dev gets the default six)
    symlinks: list[tuple[str, str]] = []  # (path, target) in /dev
    masked_paths: list[str] = []  # covered with /dev/null or an empty read-only tmpfs
    readonly_paths: list[str] = []  # bound read-only onto themselves
    hostname: str | None = None  # set in the new UTS namespace
    domainname: str | None = None  # set in the new UTS namespace
    sysctl: list[tuple[str, str]] = []  # (key, value) written under /proc/sys
    loopback: bool = False  # bring up lo in a new network namespace
    rlimits: list[tuple] = []  # (RLIMIT number, soft, hard, name)
    oom_score_adj: int | None = None  # OciBackend sets it from the host, as runc
    fifo: str | None = None  # exec.fifo: the init waits on it until `start`; None: exec at once
    preserve_fds: int = 0  # fds 3..3+N-1 pass to the process
    last_cap: int = 40  # the host kernel's highest capability number
    seccomp: dict | None = None  # a compiled filter (core/seccomp.py)
    lsm: dict = {}  # {"apparmor", "selinux"} to apply at exec
    # set by the mechanism, not by build_plan
    exec_fd: int | None = None  # the sealed exec helper
    console_fd: int | None = None  # a pty slave, or a console socket's end
    console_size: list | None = None  # [rows, cols] of the pty

    # --- API 1.0 compatibility: the plan as a dict ----------------------------------------------
    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key, value):
        if key not in self.__struct_fields__:
            raise KeyError(f"the plan has no field {key!r}")
        setattr(self, key, value)

    def __contains__(self, key):
        return key in self.__struct_fields__

    def update(self, **kw):
        for k, v in kw.items():
            self[k] = v

    # --- the common edits -----------------------------------------------------------------------
    def has_namespace(self, kind: str) -> bool:
        """A namespace of this type is created or joined."""
        return kind in self.unshare or any(k == kind for k, _ in self.join)

    def unshare_namespace(self, kind: str) -> None:
        """Create a new namespace of this type (the user namespace goes first)."""
        if kind not in NAMESPACES:
            raise ValueError(f"unknown namespace type {kind!r}")
        if self.has_namespace(kind):
            return
        self.unshare.insert(0, kind) if kind == "user" else self.unshare.append(kind)
        if kind == "mount":
            self.unshare_mount = True
        if kind == "network":
            self.loopback = True

    def drop_namespace(self, kind: str) -> None:
        """Share the caller's namespace of this type instead."""
        self.unshare = [k for k in self.unshare if k != kind]
        self.join = [(k, p) for k, p in self.join if k != kind]
        if kind == "mount":
            self.unshare_mount = False
        if kind == "network":
            self.loopback = False

    def bind(self, source: str, destination: str, *, readonly: bool = True, recursive: bool = True) -> MountPlan:
        """Bind-mount a host path into the container (read-only, nosuid and nodev by default)."""
        flags = 2 | 4 | (1 if readonly else 0)  # MS_NOSUID | MS_NODEV | MS_RDONLY
        m = MountPlan(source=source, destination=destination, type="bind", bind=True, recursive=recursive,
                      flags=flags, rattr=(0x1, 0) if readonly and recursive else (0, 0))
        self.mounts.append(m)
        return m

    def add_device(self, path: str, type: str, major: int, minor: int, *, mode: int = 0o666,
                   uid: int = 0, gid: int = 0) -> None:
        """A device node in the container's /dev (the device cgroup must allow it too)."""
        if not path.startswith("/dev/"):
            raise ValueError(f"device {path!r}: device nodes live under /dev")
        self.devices = [d for d in self.devices if d[0] != path]
        self.devices.append(DevicePlan(path, type, major, minor, mode, uid, gid))


class Plan(_Base, kw_only=True):
    """A new container: what `build_plan` returns."""
    userns: dict | None = None  # {"uid_map", "gid_map"} written for a new user namespace
    personality: int | None = None  # linux.personality (LINUX, LINUX32)
    time_offsets: str = ""  # /proc/self/timens_offsets text for a new time namespace
    hooks: dict = {}  # createContainer and startContainer: [{"path", "args", "env", "timeout"}]
    hook_sync: bool = False  # the stub stops for the runtime's prestart/createRuntime hooks
    rootfs_idmap: dict | None = None  # an idmapped rootfs: {"uid_map", "gid_map"}
    rw_binds: list[str] = []  # paths under readonly_paths kept writable (lxc_system's /proc/sys/net)

    def add_hook(self, stage: str, path: str, args: list[str] | None = None, env: list[str] | None = None,
                 timeout: int | None = None) -> None:
        """A hook that runs in the container's namespaces (createContainer, startContainer)."""
        if stage not in CONTAINER_STAGES:
            raise RtError(f"plan hooks are {' and '.join(CONTAINER_STAGES)}; {stage} runs in the runtime")
        self.hooks = {**self.hooks, stage: [*self.hooks.get(stage, []),
                                            {"path": path, "args": args or [path], "env": env or [],
                                             "timeout": timeout}]}

    def wire(self) -> dict:
        """Plain builtins for the stub."""
        return msgspec.to_builtins(self, builtin_types=(bytes, bytearray))


class ExecPlan(_Base, kw_only=True):
    """A process joining a running container: what `build_exec_plan` returns."""
    join_pidfd: int | None = None  # setns(2) on the init's pidfd, all namespaces in one call
    join_types: list[str] = []  # the namespace types that join_pidfd joins

    def wire(self) -> dict:
        return msgspec.to_builtins(self, builtin_types=(bytes, bytearray))
