"""cgroup v1, hybrid and v2: detection and one container cgroup. Knows nothing of containers.

Resources come as OCI `linux.resources` JSON (dict with the spec's names), so the same
code serves `create` and `update --resources FILE`.
"""
import errno
import os
from _signal import SIGKILL  # not `signal`: it imports enum
import time

V1, HYBRID, V2 = "v1", "hybrid", "v2"


class Layout:
    """Which hierarchies are mounted where (read from /proc/self/mountinfo)."""

    def __init__(self, mode: str, v1: dict[str, str], unified: str | None):
        self.mode, self.v1, self.unified = mode, v1, unified

    @classmethod
    def detect(cls, mountinfo: str = "/proc/self/mountinfo", mounted_at=None) -> "Layout":
        """Each hierarchy where mountinfo lists it, if that filesystem is still what the path
        shows: one mounted over it (a tmpfs on /sys/fs/cgroup/unified) hides it."""
        mounted_at = mounted_at or _is_mounted_at
        v1: dict[str, str] = {}
        unified = None
        with open(mountinfo) as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fstype, _src, opts = (post.split() + ["", ""])[:3]
                fields = pre.split()
                mnt = fields[4].replace("\\040", " ")
                if fstype not in ("cgroup", "cgroup2") or not mounted_at(mnt, fields[2]):
                    continue
                # the first mount of each, but one under /sys/fs/cgroup wins (a chroot's or a
                # container's bind of the same hierarchy may come first)
                if fstype == "cgroup2":
                    if unified is None or (_canonical(mnt) and not _canonical(unified)):
                        unified = mnt
                else:
                    for o in opts.split(","):
                        if o in ("rw", "ro") or o.startswith("release_agent") or o in ("clone_children", "noprefix", "xattr"):
                            continue
                        if o not in v1 or (_canonical(mnt) and not _canonical(v1[o])):
                            v1[o] = mnt
        # cgroup2 at the top (or no v1 controller at all) is a v2 host, whatever named v1
        # hierarchies (name=systemd) hang around elsewhere.
        if unified and (unified == "/sys/fs/cgroup" or not any(not k.startswith("name=") for k in v1)):
            return cls(V2, {}, unified)
        return cls(HYBRID if unified else V1, v1, unified)

    def controllers(self) -> set[str]:
        if self.mode == V2:
            try:
                with open(os.path.join(self.unified, "cgroup.controllers")) as f:
                    return set(f.read().split())
            except OSError:
                return set()
        return {k for k in self.v1 if not k.startswith("name=")}


def _canonical(path: str) -> bool:
    return path == "/sys/fs/cgroup" or path.startswith("/sys/fs/cgroup/")


def _is_mounted_at(path: str, dev: str) -> bool:
    """Is the filesystem with this mountinfo `major:minor` the one that `path` shows now?

    st_dev names the superblock itself, so this is statfs's magic check made exact (a
    cgroup hierarchy mounted over another one is told apart too), without ctypes."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    major, _, minor = dev.partition(":")
    return (os.major(st.st_dev), os.minor(st.st_dev)) == (int(major), int(minor))


def normalize_path(cgroups_path: str | None, cid: str) -> str:
    """linux.cgroupsPath as an absolute path; systemd-style "slice:prefix:name" maps to a scope."""
    if not cgroups_path:
        return f"/rt/{cid}"
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        sl, prefix, name = (cgroups_path.split(":") + ["", ""])[:3]
        return unit_path(sl or "system.slice", f"{prefix}-{name}.scope" if prefix else f"{name}.scope")
    # runc's CleanPath: no way out of the cgroup hierarchy with ".."
    path = "/" + os.path.normpath("/" + cgroups_path).lstrip("/")
    if path == "/":
        raise ValueError(f"linux.cgroupsPath {cgroups_path!r} names the root cgroup")
    return path


def unit_path(slice_: str, unit: str) -> str:
    """Where systemd puts `unit` of `slice_`: a-b.slice lives in a.slice/a-b.slice."""
    parts, acc = [], ""
    for piece in slice_.removesuffix(".slice").split("-"):
        acc = f"{acc}-{piece}" if acc else piece
        parts.append(acc + ".slice")
    if slice_ == "-.slice":
        parts = []
    path = "/" + "/".join(parts + [unit])
    return "/" + os.path.normpath(path).lstrip("/")


class WriteError(OSError):
    """The kernel refused `value` for the cgroup file `filename`."""

    def __init__(self, err: OSError, path: str, value):
        super().__init__(err.errno, err.strerror, path)
        self.value = value


def _write(path: str, value) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def swap_v2(swap: int, limit: int | None):
    """OCI swap is memory+swap; v2's memory.swap.max is swap alone (runc's conversion)."""
    if swap < 0:
        return "max"
    if swap == 0:
        return 0
    if limit is None or limit < 0:
        raise ValueError("linux.resources.memory.swap needs memory.limit on cgroup v2")
    if swap < limit:
        raise ValueError(f"linux.resources.memory.swap ({swap}) must be >= memory.limit ({limit})")
    return swap - limit


def blkio_to_io_weight(weight: int) -> int:
    """runc's conversion of blkio.weight [10..1000] to io.weight [1..10000]."""
    return 1 + (weight - 10) * 9999 // 990


def shares_to_weight(shares: int) -> int:
    """runc's conversion of cpu.shares [2..262144] to cpu.weight [1..10000]."""
    return 0 if shares == 0 else 1 + ((shares - 2) * 9999) // 262142


class Cgroup:
    def __init__(self, path: str, layout: Layout | None = None):
        self.path = path
        self.layout = layout or Layout.detect()

    # --- where ------------------------------------------------------------------
    def dirs(self) -> dict[str, str]:
        """controller (or "" for the v2 tree) -> directory of this cgroup."""
        rel = self.path.lstrip("/")
        out = {}
        seen = set()
        for ctrl, mnt in self.layout.v1.items():
            if mnt not in seen:
                seen.add(mnt)
                out[ctrl] = os.path.join(mnt, rel)
        if self.layout.unified:
            out[""] = os.path.join(self.layout.unified, rel)
        return out

    def _dir(self, ctrl: str) -> str | None:
        if self.layout.mode == V2:
            return self.dirs()[""]
        mnt = self.layout.v1.get(ctrl)
        return os.path.join(mnt, self.path.lstrip("/")) if mnt else None

    @property
    def main_dir(self) -> str:
        d = self.dirs()
        return d.get("") if self.layout.mode == V2 else (d.get("pids") or d.get("memory") or next(iter(d.values())))

    # --- lifecycle --------------------------------------------------------------
    def create(self) -> None:
        for ctrl, d in self.dirs().items():
            if ctrl == "cpuset":
                self._mkdir_cpuset(d)
            else:
                os.makedirs(d, exist_ok=True)
        if self.layout.mode == V2:
            self._enable_v2_controllers()

    def _mkdir_cpuset(self, d: str) -> None:
        # v1 cpuset: a new group has empty cpus/mems and refuses tasks until they are set.
        mnt = self.layout.v1["cpuset"]
        cur = mnt
        for part in os.path.relpath(d, mnt).split("/"):
            parent, cur = cur, os.path.join(cur, part)
            os.makedirs(cur, exist_ok=True)
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not _read(os.path.join(cur, f)):
                    _write(os.path.join(cur, f), _read(os.path.join(parent, f)))

    def _enable_v2_controllers(self) -> None:
        root = self.layout.unified
        want = self.layout.controllers() & {"cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc"}
        # enable in every ancestor between the root and our group
        parts = self.path.strip("/").split("/")[:-1]
        cur = root
        for part in [None] + parts:
            if part:
                cur = os.path.join(cur, part)
            try:
                have = set(_read(os.path.join(cur, "cgroup.controllers")).split())
                on = set(_read(os.path.join(cur, "cgroup.subtree_control")).split())
                missing = (want & have) - on
                if missing:
                    _write(os.path.join(cur, "cgroup.subtree_control"), " ".join("+" + c for c in sorted(missing)))
            except OSError:
                pass

    def join(self, pid: int, sub: dict[str, str] | None = None) -> None:
        """Move pid here; `sub` ({controller or "": relative path}, runc's `exec --cgroup`)
        picks an existing subgroup in the hierarchies it names ("" for all)."""
        for ctrl, d in self.dirs().items():
            rel = (sub or {}).get(ctrl, (sub or {}).get(""))
            _write(os.path.join(os.path.join(d, rel) if rel else d, "cgroup.procs"), pid)

    def subgroups(self, values: list[str]) -> dict[str, str]:
        """runc's `--cgroup [CONTROLLER[,CONTROLLER]:]PATH` values as {controller or "": PATH},
        each an existing subgroup of this cgroup; ValueError otherwise."""
        out: dict[str, str] = {}
        dirs = self.dirs()
        for value in values:
            ctrls, _, rel = value.rpartition(":")
            rel = rel.strip("/")
            if not rel or ".." in rel.split("/"):
                raise ValueError(f"--cgroup {value!r}: a path below the container's cgroup is needed")
            names = [c for c in ctrls.split(",") if c] or [""]
            for name in names:
                if name and self.layout.mode == V2:
                    raise ValueError(f"--cgroup {value!r}: controllers cannot be named on cgroup v2")
                if name and name not in dirs:
                    raise ValueError(f"--cgroup {value!r}: no {name} controller on this host")
                out[name] = rel
        for ctrl, d in dirs.items():
            rel = out.get(ctrl, out.get(""))
            if rel and not os.path.isdir(os.path.join(d, rel)):
                raise ValueError(f"--cgroup: {os.path.join(d, rel)} does not exist")
        return out

    def procs(self, everywhere: bool = False) -> list[int]:
        """Every process in the group and in the subgroups below it (in one hierarchy, or with
        `everywhere` in each: a v1 process may sit in some hierarchies and not others)."""
        found: set[int] = set()
        todo = list(self.dirs().values()) if everywhere else [self.main_dir]
        while todo:
            d = todo.pop()
            try:
                found.update(int(x) for x in _read(os.path.join(d, "cgroup.procs")).split())
                todo.extend(e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                pass
        return sorted(found)

    def exists(self) -> bool:
        return os.path.isdir(self.main_dir)

    # --- freezer ----------------------------------------------------------------
    def _freeze_file(self) -> tuple[str, str, str] | None:
        if self.layout.unified and os.path.exists(os.path.join(self.dirs()[""], "cgroup.freeze")):
            return os.path.join(self.dirs()[""], "cgroup.freeze"), "1", "0"
        d = self._dir("freezer")
        if d:
            return os.path.join(d, "freezer.state"), "FROZEN", "THAWED"
        return None

    def set_frozen(self, frozen: bool, timeout: float = 5.0) -> None:
        f = self._freeze_file()
        if f is None:
            raise OSError(errno.ENOTSUP, "no freezer cgroup on this host")
        path, on, off = f
        _write(path, on if frozen else off)
        deadline = time.monotonic() + timeout
        if path.endswith("freezer.state"):  # v1 passes through FREEZING
            while _read(path) not in (on if frozen else off) and time.monotonic() < deadline:
                time.sleep(0.001)
        else:  # v2: done when cgroup.events says so
            events = os.path.join(os.path.dirname(path), "cgroup.events")
            want = f"frozen {on if frozen else off}"
            while time.monotonic() < deadline:
                try:
                    if want in _read(events).splitlines():
                        break
                except FileNotFoundError:  # kernels before 5.2 have no cgroup.events
                    break
                time.sleep(0.001)
        # keep the other hierarchy in step on hybrid hosts
        v1 = self.layout.v1.get("freezer")
        if self.layout.mode == HYBRID and v1 and not path.endswith("freezer.state"):
            _write(os.path.join(v1, self.path.lstrip("/"), "freezer.state"), "FROZEN" if frozen else "THAWED")

    def frozen(self) -> bool:
        f = self._freeze_file()
        return bool(f) and _read(f[0]) in ("1", "FROZEN", "FREEZING")

    def kill_all(self, sig: int = SIGKILL) -> None:
        """Signal every process; SIGKILL uses cgroup.kill where the kernel has it."""
        if sig == SIGKILL:
            self._thaw_v1_subtree()
        d = self.dirs().get("")
        if sig == SIGKILL and d and os.path.exists(os.path.join(d, "cgroup.kill")):
            _write(os.path.join(d, "cgroup.kill"), 1)
            return
        for pid in self.procs():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _thaw_v1_subtree(self) -> None:
        """A v1-frozen task cannot die: thaw every group below too (a system container may
        freeze a subgroup of its own, which thawing the top does not undo)."""
        d = self._dir("freezer")
        if d is None or self.layout.mode == V2:
            return
        for top, _dirs, files in os.walk(d):
            if "freezer.state" in files:
                try:
                    _write(os.path.join(top, "freezer.state"), "THAWED")
                except OSError:
                    pass

    def destroy(self, timeout: float = 5.0) -> None:
        """Remove the group (and empty parents we may have made under /rt)."""
        deadline = time.monotonic() + timeout
        for d in sorted(self.dirs().values(), key=len, reverse=True):
            while os.path.isdir(d):
                try:
                    for sub in sorted((os.path.join(r, n) for r, ns, _ in os.walk(d, topdown=False) for n in ns), key=len, reverse=True):
                        os.rmdir(sub)
                    os.rmdir(d)
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    self.kill_all()
                    time.sleep(0.005)
            parent = os.path.dirname(d)
            if os.path.basename(parent) == "rt":
                try:
                    os.rmdir(parent)
                except OSError:
                    pass

    @staticmethod
    def _io_writes(bio: dict, v2: bool) -> list[tuple[str, str, object]]:
        """linux.resources.blockIO as blkio (v1) or io (v2) files."""
        out = []
        throttles = (("throttleReadBpsDevice", "read_bps_device", "rbps"),
                     ("throttleWriteBpsDevice", "write_bps_device", "wbps"),
                     ("throttleReadIOPSDevice", "read_iops_device", "riops"),
                     ("throttleWriteIOPSDevice", "write_iops_device", "wiops"))
        if v2:
            if bio.get("weight"):
                out.append(("io", "io.weight", f"default {blkio_to_io_weight(bio['weight'])}"))
            for d in bio.get("weightDevice") or []:
                if d.get("weight"):
                    out.append(("io", "io.weight", f"{d['major']}:{d['minor']} {blkio_to_io_weight(d['weight'])}"))
            for key, _, name in throttles:
                for d in bio.get(key) or []:
                    out.append(("io", "io.max", f"{d['major']}:{d['minor']} {name}={d['rate']}"))
            return out
        if bio.get("weight"):
            out.append(("blkio", "blkio.weight", bio["weight"]))
        if bio.get("leafWeight"):
            out.append(("blkio", "blkio.leaf_weight", bio["leafWeight"]))
        for d in bio.get("weightDevice") or []:
            if d.get("weight"):
                out.append(("blkio", "blkio.weight_device", f"{d['major']}:{d['minor']} {d['weight']}"))
        for key, name, _ in throttles:
            for d in bio.get(key) or []:
                out.append(("blkio", f"blkio.throttle.{name}", f"{d['major']}:{d['minor']} {d['rate']}"))
        return out

    # --- devices ----------------------------------------------------------------
    def apply_devices(self, rules: list[dict]) -> list[str]:
        """OCI device rules in order: v1 devices.allow/deny, or an eBPF program on v2."""
        if self.layout.mode == V2:
            if rules:
                from .devicefilter import attach
                attach(self.dirs()[""], rules)
            return []
        d = self._dir("devices")
        if d is None:  # runc too: without it a container reaches every device node
            raise ValueError("the devices cgroup controller is not mounted on this host: "
                             "the container's device rules cannot be enforced")
        for r in rules:
            kind = r.get("type") or "a"
            major = "*" if r.get("major") is None else r["major"]
            minor = "*" if r.get("minor") is None else r["minor"]
            rule = "a" if kind == "a" else f"{kind} {major}:{minor} {r.get('access') or 'rwm'}"
            _write(os.path.join(d, "devices.allow" if r.get("allow") else "devices.deny"), rule)
        return []

    # --- resources --------------------------------------------------------------
    def apply(self, res: dict | None) -> list[str]:
        """Write OCI linux.resources; returns what could not be applied (for the log)."""
        if not res:
            return []
        writes: list[tuple[str, str, object]] = []
        skipped: list[str] = []
        mem, cpu, pids = res.get("memory") or {}, res.get("cpu") or {}, res.get("pids") or {}
        v2 = self.layout.mode == V2
        if v2:
            if mem.get("limit") is not None:
                writes.append(("memory", "memory.max", "max" if mem["limit"] < 0 else mem["limit"]))
            if mem.get("reservation") is not None:
                writes.append(("memory", "memory.low", mem["reservation"]))
            if mem.get("swap") is not None:
                writes.append(("memory", "memory.swap.max", swap_v2(mem["swap"], mem.get("limit"))))
            if mem.get("disableOOMKiller"):
                pass  # no v2 equivalent; runc ignores it there too
            if cpu.get("shares"):
                writes.append(("cpu", "cpu.weight", shares_to_weight(cpu["shares"])))
            if cpu.get("quota") is not None or cpu.get("period") is not None:
                q = cpu.get("quota")
                writes.append(("cpu", "cpu.max", f"{'max' if q is None or q < 0 else q} {cpu.get('period') or 100000}"))
            if cpu.get("cpus"):
                writes.append(("cpuset", "cpuset.cpus", cpu["cpus"]))
            if cpu.get("mems"):
                writes.append(("cpuset", "cpuset.mems", cpu["mems"]))
            if pids.get("limit") is not None:
                writes.append(("pids", "pids.max", "max" if pids["limit"] <= 0 else pids["limit"]))
            for k, v in (res.get("unified") or {}).items():
                writes.append((k.split(".")[0], k, v))
            if cpu.get("realtimePeriod") or cpu.get("realtimeRuntime"):
                skipped.append("linux.resources.cpu.realtimePeriod/realtimeRuntime need cgroup v1 (cpu.rt_*)")
        else:
            if mem.get("limit") is not None:
                writes.append(("memory", "memory.limit_in_bytes", mem["limit"]))
            if mem.get("reservation") is not None:
                writes.append(("memory", "memory.soft_limit_in_bytes", mem["reservation"]))
            if mem.get("swap") is not None:
                writes.append(("memory", "memory.memsw.limit_in_bytes", mem["swap"]))
            if mem.get("swappiness") is not None:
                writes.append(("memory", "memory.swappiness", mem["swappiness"]))
            if mem.get("disableOOMKiller"):
                writes.append(("memory", "memory.oom_control", 1))
            if cpu.get("shares"):
                writes.append(("cpu", "cpu.shares", cpu["shares"]))
            if cpu.get("period"):
                writes.append(("cpu", "cpu.cfs_period_us", cpu["period"]))
            if cpu.get("quota") is not None:
                writes.append(("cpu", "cpu.cfs_quota_us", cpu["quota"]))
            if cpu.get("realtimePeriod"):  # the period first, as runc: the runtime must fit it
                writes.append(("cpu", "cpu.rt_period_us", cpu["realtimePeriod"]))
            if cpu.get("realtimeRuntime") is not None:
                writes.append(("cpu", "cpu.rt_runtime_us", cpu["realtimeRuntime"]))
            if cpu.get("cpus"):
                writes.append(("cpuset", "cpuset.cpus", cpu["cpus"]))
            if cpu.get("mems"):
                writes.append(("cpuset", "cpuset.mems", cpu["mems"]))
            if pids.get("limit") is not None:
                writes.append(("pids", "pids.max", "max" if pids["limit"] <= 0 else pids["limit"]))
        writes += self._io_writes(res.get("blockIO") or {}, v2)
        for dev, lim in (res.get("rdma") or {}).items():
            parts = [f"hca_handle={lim['hcaHandles']}"] if lim.get("hcaHandles") is not None else []
            parts += [f"hca_object={lim['hcaObjects']}"] if lim.get("hcaObjects") is not None else []
            writes.append(("rdma", "rdma.max", f"{dev} {' '.join(parts)}"))
        net = res.get("network") or {}
        if net and v2:
            skipped.append("linux.resources.network needs the v1 net_cls/net_prio controllers")
        elif net.get("classID") is not None:
            writes.append(("net_cls", "net_cls.classid", net["classID"]))
        for prio in ([] if v2 else net.get("priorities") or []):
            writes.append(("net_prio", "net_prio.ifpriomap", f"{prio['name']} {prio['priority']}"))
        for h in res.get("hugepageLimits") or []:
            writes.append(("hugetlb", f"hugetlb.{h['pageSize']}.{'max' if v2 else 'limit_in_bytes'}", h["limit"]))
        names = [w[1] for w in writes]
        if "memory.memsw.limit_in_bytes" in names and "memory.limit_in_bytes" in names:
            d = self._dir("memory")
            try:
                cur = int(_read(os.path.join(d, "memory.memsw.limit_in_bytes")))
            except (OSError, ValueError, TypeError):
                cur = None
            if cur is not None and 0 <= cur < (mem.get("limit") or 0) or (mem.get("limit") or 0) < 0:
                i, j = names.index("memory.limit_in_bytes"), names.index("memory.memsw.limit_in_bytes")
                writes[i], writes[j] = writes[j], writes[i]
        if res.get("unified") and not v2:
            skipped.append("linux.resources.unified needs cgroup v2 (this host is %s)" % self.layout.mode)
        for ctrl, name, value in writes:
            d = self._dir(ctrl)
            if d is None:  # what the host cannot honour fails loudly: a limit silently dropped is none
                raise ValueError(f"linux.resources: {name} needs the {ctrl} cgroup controller, "
                                 "which is not mounted on this host")
            path = os.path.join(d, name)
            if name == "blkio.weight" and not os.path.exists(path):
                path = os.path.join(d, "blkio.bfq.weight")  # kernels with BFQ and no CFQ
            try:
                _write(path, value)
            except FileNotFoundError:
                skipped.append(f"{name}: not supported by this kernel")
            except OSError as e:
                raise WriteError(e, path, value) from None
        return skipped
