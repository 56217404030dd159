"""OciBackend: the namespaces + cgroup + lean shim mechanism, shared by the kinds that run
on the host kernel (app_single, lxc_system). A subclass adjusts the plan, configures the
container once its init exists, and releases what it added at delete.

Kept import-light: short verbs instantiate subclasses of it.
"""
import errno
import os
from _signal import SIGKILL  # not `signal`: it imports enum

from . import hostmounts, ocistate
from .backend import Backend, Created, CreateRequest
from .barrier import release as release_barrier
from .console import connect as connect_console, size_of as console_size
from .errors import RtError


def Cgroup(path: str, layout=None):
    """rt.core.cgroups.Cgroup, loaded on first use: `start` and `kill` need no cgroup."""
    from .cgroups import Cgroup
    return Cgroup(path, layout)


def normalize_cgroup_path(cgroups_path: str | None, cid: str) -> str:
    from .cgroups import normalize_path
    return normalize_path(cgroups_path, cid)


class OciBackend(Backend):
    name = "oci"

    # --- what subclasses change -----------------------------------------------------
    def prepare(self, req: CreateRequest, plan: dict) -> None:
        """Adjust the plan before the shim runs it."""

    def prepare_exec(self, c, plan: dict) -> None:
        """Adjust the plan of an `exec` into container `c`."""

    def on_child(self, req: CreateRequest, pid: int) -> None:
        """The init exists (its namespaces too) and has not run anything yet."""

    def release(self, c) -> None:
        """Undo what prepare/on_child added (called by delete, also after a failed create)."""

    # A subcgroup that the container's processes join, below the one that holds the limits,
    # so that a container allowed to write its cgroup cannot reach them (LXC's
    # lxc.cgroup.dir.container.inner). "" puts them in the limited cgroup itself.
    payload_cgroup = ""

    def _payload(self, cg):
        return Cgroup(cg.path + "/" + self.payload_cgroup) if self.payload_cgroup else cg

    # --- the mechanism --------------------------------------------------------------
    def _cgroup(self, c):
        path = c.extra.get("cgroup")
        if path is None and "cgroup" in c.extra:
            raise RtError(f"container {c.id} runs without a cgroup (rootless, with no cgroup delegated)")
        if path is None:
            raise RtError(f"container {c.id} has no cgroup (create did not get that far)")
        return Cgroup(path)

    def create(self, req: CreateRequest) -> Created:
        linux = req.spec.linux
        unit = None
        try:
            if req.systemd_cgroup:
                from .systemd_cgroups import unit_of
                unit = unit_of(linux.cgroups_path if linux else "", req.id)
                path = _unit_path(*unit, user=req.rootless)
            else:
                path = normalize_cgroup_path(linux.cgroups_path if linux else "", req.id)
        except ValueError as e:
            raise RtError(f"config.json: $.linux.cgroupsPath: {e}")
        cg = Cgroup(path)
        if unit is not None and cg.layout.mode != "v2":
            raise RtError(f"--systemd-cgroup: rt's systemd driver needs pure cgroup v2 (this host is "
                          f"{cg.layout.mode}): on v1, systemd rewrites its units' devices cgroup")
        _check_room(cg, path)
        # known before its directory may be made, yet not ours to kill until the check has passed
        req.save_extra(cgroup_pending=path)
        if unit is not None:  # systemd makes it, and starts one unit of a name at a time
            return self._create_in(req, cg, path, unit)
        try:
            lock = _lock_cgroup(cg)  # check and join as one step: two creates cannot both find it empty
        except PermissionError as e:
            if not req.rootless:
                raise
            return self._create_rootless(req, path, e)
        try:
            _refuse_busy(cg, path)
            return self._create_in(req, cg, path, unit)
        finally:
            os.close(lock)

    def _create_rootless(self, req, path, e) -> Created:
        """Rootless without a cgroup it may make (no delegation): runc goes on without one, unless
        the spec asks for limits, which would silently not hold."""
        res = (req.config.get("linux") or {}).get("resources") or {}
        if any(v for k, v in res.items() if k != "devices"):
            raise RtError(f"rootless: linux.resources needs a cgroup, and {e.filename}: {e.strerror} (use a "
                          "cgroupsPath that is delegated to you, or --systemd-cgroup with your systemd user instance)")
        req.warn(f"rootless: the container runs without a cgroup of its own ({e.filename}: {e.strerror}); "
                 "limits, pause, kill --all, ps and events need one")
        return self._create_in(req, None, None)

    def _create_in(self, req, cg, path, unit=None) -> Created:
        req.save_extra(cgroup=path)
        events = None
        payload = None if cg is None else self._payload(cg)

        def make_cgroup():
            nonlocal events
            try:
                cg.create()
            except OSError as e:
                raise RtError(f"linux.cgroupsPath: cannot create cgroup {e.filename or path}: {e.strerror}") from None
            events = limit_events(cg)
            for msg in self._apply(cg, req.config.get("linux", {}).get("resources")):
                req.warn(msg)
            try:
                # rootless: no BPF program or devices.allow for us to set, and the user namespace
                # keeps the container from device nodes that were not bound in (runc skips them too)
                from .plan import device_rules
                for msg in ([] if req.rootless else cg.apply_devices(device_rules(req.spec))):
                    req.warn(msg)
            except OSError as e:
                raise RtError(f"linux.resources.devices: the kernel refused the device rules: {e.strerror}")
            except ValueError as e:
                raise RtError(str(e)) from None
            if payload is not cg:
                payload.create()  # after the device rules: a v1 child copies its parent's

        def on_spawn(pid):
            if cg is None:
                return
            if unit is not None:  # systemd makes the cgroup, with the shim in it
                _start_unit(req, unit, path, pid)
                if payload is not cg and cg.layout.mode == "v2":
                    payload.create()  # out of the unit's own group first: v2 enables controllers
                    payload.join(pid)  # below a group only while it holds no process
                make_cgroup()
            payload.join(pid)
        try:
            if unit is None and cg is not None:
                make_cgroup()
            from .plan import build_plan
            plan = build_plan(req.spec, rootfs=req.rootfs, fifo=req.fifo, bundle=req.bundle, cgroup=payload,
                                  no_pivot=req.no_pivot, preserve_fds=req.preserve_fds, warn=req.warn,
                                  host_cgroup_view=cg is None,
                                  state_template=ocistate.state(req.id, "creating", "__PID__", req.bundle,
                                                                req.spec.annotations or {}))
            self.prepare(req, plan)
            if not plan.has_namespace("mount"):
                # its mounts go into our namespace: know which are its
                req.save_extra(mounts_base=sorted(hostmounts.under(req.rootfs)))
            # set from the host, as runc does: the container may have no /proc of its own
            oom_score_adj, plan.oom_score_adj = plan.oom_score_adj, None
            launched = self._launch(plan, req.console_socket, req.spec.process, on_spawn,
                                    on_child=lambda pid: self.on_child(req, pid),
                                    on_hooks=req.hooks.create_runtime if req.hooks else None)
            if oom_score_adj is not None:
                set_oom_score_adj(launched.pid, oom_score_adj)
            if "mounts_base" in req.extra:
                req.save_extra(host_mounts=hostmounts.record(req.rootfs, req.extra["mounts_base"]))
        except BaseException as e:
            cause = limit_error(cg, events, req.config) if isinstance(e, Exception) else None
            cause = cause or seccomp_error(req.spec, e)
            try:  # the cgroup only if it is ours: not one of a unit that systemd refused to start
                if cg is not None and (unit is None or "systemd_unit" in req.extra):
                    cg.kill_all()
                    cg.destroy()
            except OSError as why:  # the error to report is the one that made us roll back
                req.warn(f"create {req.id}: cannot remove cgroup {path}: {why.strerror}")
            finally:  # the plugin's release (address lease, veth) even if the cgroup stays
                _stop_unit(req.extra, req.warn)
                self._detach_mounts(req.rootfs, getattr(req, "extra", {}))
                self.release(_Partial(req))
            if cause:  # what killed the init, by name
                raise RtError(cause) from None
            raise
        # everything saved on the way, the subclass's keys too, but the steps' own scaffolding
        return Created(launched.pid, {k: v for k, v in req.extra.items() if k not in ("cgroup_pending", "mounts_base")}
                       | {"cgroup": path})

    @staticmethod
    def _launch(plan, console_socket, proc, on_spawn, extra_fds=(), **callbacks):
        console = plan.get("console_fd")  # a subclass may have set up the console itself
        if console is None:
            console = connect_console(console_socket, proc.terminal)
        if console is not None:
            plan.update(console_fd=console, console_size=plan.get("console_size") or console_size(proc))
        fds = tuple(extra_fds) + ((console,) if console is not None else ())
        from .exechelper import launch
        return launch(plan, pass_fds=fds, on_spawn=on_spawn, **callbacks)

    def start(self, c) -> None:
        release_barrier(os.path.join(c.dir, "exec.fifo"))

    def kill(self, c, sig: int, all: bool = False) -> None:
        if all:
            self._cgroup(c).kill_all(sig)
            return
        os.kill(c.pid, sig)

    def delete(self, c) -> None:
        pending = c.extra.get("cgroup_pending")
        if c.extra.get("cgroup") is None and pending is not None:
            cg = Cgroup(pending)  # a create stopped before it owned it: remove it only if empty
            if not cg.procs(everywhere=True):
                cg.destroy()
        if c.extra.get("cgroup") is not None and _unit_is_ours(c.extra):
            cg = self._cgroup(c)
            if cg.exists():
                cg.kill_all(SIGKILL)
            cg.destroy()  # also a half-made one: a create killed while making it
            _stop_unit(c.extra, None)
        self._detach_mounts(c.record.get("rootfs"), c.extra)
        self.release(c)

    @staticmethod
    def _detach_mounts(rootfs, extra) -> None:
        """The mounts a container without its own mount namespace made in ours."""
        if "mounts_base" not in extra or not rootfs:
            return
        # recorded at create; for a create that did not finish, what is the container's now
        for msg in hostmounts.detach(rootfs, extra.get("host_mounts"), extra["mounts_base"]):
            raise RtError(msg)

    def pids(self, c) -> list[int]:
        return self._cgroup(c).procs()

    def pause(self, c) -> None:
        self._cgroup(c).set_frozen(True)

    def resume(self, c) -> None:
        self._cgroup(c).set_frozen(False)

    def update(self, c, resources: dict) -> None:
        if c.extra.get("systemd_unit"):  # systemd first: a later reload of the unit keeps these
            from .systemd_cgroups import Systemd, SystemdError
            try:
                with Systemd(user=bool(c.extra.get("systemd_user"))) as sd:
                    sd.set(c.extra["systemd_unit"], resources)
            except SystemdError as e:
                raise RtError(f"update: {e}") from None
        for msg in self._apply(self._cgroup(c), resources):
            raise RtError(f"update: {msg}")

    @staticmethod
    def _apply(cg, resources) -> list[str]:
        from .cgroups import WriteError
        try:
            return cg.apply(resources)
        except ValueError as e:
            raise RtError(str(e))
        except WriteError as e:
            raise RtError(f"{resource_setting(e.filename, e.value, resources)}: cannot write {e.value} "
                          f"to {e.filename}: {e.strerror}")

    def exec(self, c, req: dict) -> int:
        from rt.shim.protocol import ShimFailed
        try:  # pin the init: a pidfd cannot come to mean another process, as a pid can
            pidfd = os.pidfd_open(c.pid)
        except OSError:
            raise RtError("the container's process has exited")
        try:
            if not c.alive():  # the pid was reused before we pinned it
                raise RtError("the container's process has exited")
            from .plan import build_exec_plan
            plan = build_exec_plan(c.pid, req["process"], rootfs=c.record.get("rootfs"),
                                       seccomp=req.get("seccomp"), preserve_fds=req["preserve_fds"], pidfd=pidfd,
                                       warn=req["warn"])
            self.prepare_exec(c, plan)
            if "cgroup" in c.extra and c.extra["cgroup"] is None and not req.get("cgroup"):
                join = None  # rootless, without a cgroup: the process stays in ours, as the init did
            else:
                cg = self._payload(self._cgroup(c))
                join = _exec_join(cg, c.pid)
                if req.get("cgroup"):  # runc's exec --cgroup: an existing subgroup
                    try:
                        sub = cg.subgroups(req["cgroup"])
                    except ValueError as e:
                        raise RtError(f"exec: {e}") from None
                    join = _Subgroup(cg, sub).join
            return self._launch(plan, req.get("console_socket"), req["process"], join, extra_fds=(pidfd,)).pid
        except ShimFailed as e:
            raise RtError(f"exec failed: {e.reason}")
        finally:
            try:
                os.close(pidfd)
            except OSError:
                pass  # handed over to the shim and closed by the launcher


class _Subgroup:
    """What _launch joins the stub to: a cgroup's subgroups (exec --cgroup)."""

    def __init__(self, cg, sub: dict[str, str]):
        self.cg, self.sub = cg, sub

    def join(self, pid: int) -> None:
        self.cg.join(pid, self.sub)


def seccomp_error(spec, e: BaseException) -> str | None:
    """An init that died without a word under a seccomp filter that refuses calls: say so, naming
    the action most likely to blame."""
    from rt.shim.protocol import ProtocolError, ShimFailed
    sc = spec.linux.seccomp if spec.linux else None
    if sc is None or not isinstance(e, ProtocolError) or isinstance(e, ShimFailed):
        return None
    allowed = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY")
    why = f"{e} (stopped by its seccomp filter?)"
    if sc.default_action not in allowed:
        return f"{why}: linux.seccomp.defaultAction is {sc.default_action}"
    for i, call in enumerate(sc.syscalls):
        if call.action not in allowed:
            return f"{why}: linux.seccomp.syscalls[{i}].action is {call.action} for {', '.join(call.names[:3])}"
    return None


def set_oom_score_adj(pid: int, value: int) -> None:
    path = f"/proc/{pid}/oom_score_adj"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as e:
        why = " (lowering it needs CAP_SYS_RESOURCE)" if e.errno == 13 else ""
        raise RtError(f"process.oomScoreAdj: cannot write {value} to {path}: {e.strerror}{why}")


def _event(path: str | None, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, TypeError, ValueError):
        pass
    return 0


def limit_events(cg) -> tuple[int, int]:
    """How often the kernel OOM-killed in the cgroup (v1 memory.oom_control, v2 memory.events)
    and refused a fork for its pids limit (pids.events)."""
    dirs = cg.dirs()
    if cg.layout.mode == "v2":
        mem = pids = dirs.get("")
        mem_file = "memory.events"
    else:
        mem, pids, mem_file = dirs.get("memory"), dirs.get("pids"), "memory.oom_control"
    return (_event(mem and os.path.join(mem, mem_file), "oom_kill"),
            _event(pids and os.path.join(pids, "pids.events"), "max"))


def limit_error(cg, before: tuple[int, int] | None, config: dict) -> str | None:
    """Why the init died during create when a limit of the cgroup killed it (runc's wording for an
    OOM kill), naming the setting."""
    if before is None:
        return None
    ooms, forks = (a - b for a, b in zip(limit_events(cg), before))
    res = (config.get("linux") or {}).get("resources") or {}
    mem, unified = res.get("memory") or {}, res.get("unified") or {}
    if ooms > 0:
        msg = "container init was OOM-killed (memory limit too low?)"
        settings = (("linux.resources.memory.limit", mem.get("limit")),
                    ('linux.resources.unified["memory.max"]', unified.get("memory.max")),
                    ("linux.resources.memory.swap", mem.get("swap")))
    elif forks > 0:
        msg = "container init could not start: the pids limit refused a new process"
        settings = (("linux.resources.pids.limit", (res.get("pids") or {}).get("limit")),
                    ('linux.resources.unified["pids.max"]', unified.get("pids.max")))
    else:
        return None
    for setting, value in settings:
        if value is not None and value != -1:
            return f"{msg}: {setting} is {value}"
    return msg


# cgroup file -> the linux.resources setting written to it
_SETTINGS = {
    "memory.limit_in_bytes": "memory.limit", "memory.max": "memory.limit",
    "memory.soft_limit_in_bytes": "memory.reservation", "memory.low": "memory.reservation",
    "memory.memsw.limit_in_bytes": "memory.swap", "memory.swap.max": "memory.swap",
    "memory.swappiness": "memory.swappiness", "memory.oom_control": "memory.disableOOMKiller",
    "cpu.shares": "cpu.shares", "cpu.weight": "cpu.shares", "cpu.cfs_period_us": "cpu.period",
    "cpu.cfs_quota_us": "cpu.quota", "cpu.max": "cpu.quota/cpu.period", "cpuset.cpus": "cpu.cpus",
    "cpuset.mems": "cpu.mems", "pids.max": "pids.limit", "blkio.weight": "blockIO.weight",
    "blkio.bfq.weight": "blockIO.weight", "blkio.leaf_weight": "blockIO.leafWeight",
    "blkio.weight_device": "blockIO.weightDevice", "io.weight": "blockIO.weight",
    "blkio.throttle.read_bps_device": "blockIO.throttleReadBpsDevice",
    "blkio.throttle.write_bps_device": "blockIO.throttleWriteBpsDevice",
    "blkio.throttle.read_iops_device": "blockIO.throttleReadIOPSDevice",
    "blkio.throttle.write_iops_device": "blockIO.throttleWriteIOPSDevice", "io.max": "blockIO",
    "rdma.max": "rdma", "net_cls.classid": "network.classID", "net_prio.ifpriomap": "network.priorities",
}


def resource_setting(path: str, value, resources: dict | None) -> str:
    """The linux.resources setting that a write of `value` to cgroup file `path` came from."""
    name = os.path.basename(path)
    unified = (resources or {}).get("unified") or {}
    if name in unified and str(unified[name]) == str(value):
        return f'linux.resources.unified["{name}"]'
    if name.startswith("hugetlb."):
        return "linux.resources.hugepageLimits"
    return "linux.resources." + _SETTINGS.get(name, name)


def _exec_join(cg, init_pid: int):
    """Join an exec'd process to the container's cgroup; on v2, a group whose controllers the
    container handed on to groups below (systemd inside) may hold no process (EBUSY): then
    the init's own group below it, as runc does."""
    def join(pid: int) -> None:
        try:
            cg.join(pid)
        except OSError as e:
            if e.errno != errno.EBUSY or cg.layout.mode != "v2":
                raise
            try:
                with open(f"/proc/{init_pid}/cgroup") as f:
                    path = next(line[3:].strip() for line in f if line.startswith("0::"))
            except (OSError, StopIteration):
                raise e from None
            if not path.startswith(cg.path.rstrip("/") + "/"):
                raise
            Cgroup(path, cg.layout).join(pid)
    return join


def _unit_path(slice_: str, unit: str, user: bool = False) -> str:
    """Where systemd will put the unit: for a rootless caller, below its own systemd instance."""
    from .cgroups import unit_path
    if not user:
        return unit_path(slice_, unit)
    from .systemd_cgroups import Systemd, SystemdError
    try:
        with Systemd(user=True) as sd:
            base = sd.manager_cgroup()
    except SystemdError as e:
        raise RtError(f"create: rootless --systemd-cgroup: {e}") from None
    return base.rstrip("/") + unit_path(slice_, unit)


def _start_unit(req, unit: tuple[str, str], path: str, pid: int) -> None:
    """The systemd driver: a transient unit for the container, with the shim in it."""
    from .systemd_cgroups import Systemd, SystemdError
    slice_, name = unit
    try:
        with Systemd(user=req.rootless) as sd:
            got = sd.start(name, slice_, pid, (req.config.get("linux") or {}).get("resources"),
                           f"rt container {req.id}",
                           queued=lambda: req.save_extra(systemd_unit=name, systemd_user=req.rootless))
            req.save_extra(systemd_invocation=sd.invocation(name))
    except SystemdError as e:
        raise RtError(f"create: {e}") from None
    if got != path:
        raise RtError(f"create: systemd put {name} in cgroup {got}, not in {path}")


def _unit_is_ours(extra: dict) -> bool:
    """A container without a unit, or whose unit is still the run that create started: a
    scope that systemd removed once it emptied leaves its name and cgroup path to others."""
    name = extra.get("systemd_unit")
    if not name:
        return True
    from .systemd_cgroups import Systemd, SystemdError
    try:
        with Systemd(user=bool(extra.get("systemd_user"))) as sd:
            return sd.invocation(name) == extra.get("systemd_invocation")
    except SystemdError as e:
        raise RtError(f"delete: cannot ask systemd about unit {name}: {e}") from None


def _stop_unit(extra: dict, warn) -> None:
    """Stop the container's systemd unit, if it has one (delete, and a failed create)."""
    name = extra.get("systemd_unit")
    if not name:
        return
    from .systemd_cgroups import Systemd, SystemdError
    try:
        with Systemd(user=bool(extra.get("systemd_user"))) as sd:
            sd.stop(name)
    except SystemdError as e:
        if warn is None:
            raise RtError(f"delete: {e}") from None
        warn(f"cannot stop systemd unit {name}: {e}")


def _check_room(cg, path: str) -> None:
    """A cgroupsPath the kernel can take, on a host with cgroups."""
    for d in cg.dirs().values():  # room for its files: the kernel takes paths below PATH_MAX
        if len(d.encode()) + len("/cgroup.subtree_control") >= 4096:
            raise RtError(f"config.json: $.linux.cgroupsPath: {len(path.encode())} bytes long: too long for "
                          f"a cgroup below {d[:len(d) - len(path)] or '/'} (paths take at most 4095 bytes)")
    if not cg.dirs():
        raise RtError("no cgroup hierarchy is mounted on this host (no cgroup or cgroup2 filesystem "
                      "is where /proc/self/mountinfo says)")


def _refuse_busy(cg, path: str) -> None:
    busy = cg.procs(everywhere=True)
    if busy:  # someone else's (another root's container, a service): never ours to kill
        raise RtError(f"container's cgroup is not empty: {len(busy)} process(es) found in {path} "
                      "(linux.cgroupsPath must name a cgroup of this container alone)")


class CgroupClaim:
    """`with api.claim_cgroup(req) as cg:` the container's cgroup, for a kind that makes its own
    (a VM's shim) rather than using OciBackend. It checks linux.cgroupsPath, takes the cgroup's
    lock, refuses a cgroup that has processes (someone else's: never ours to kill or remove),
    records it in req.extra["cgroup"] and makes it. The lock is held until the block ends, by
    which time the kind's processes have joined: two creates cannot both find it empty. An
    exception in the block kills what joined and removes the cgroup."""

    def __init__(self, req):
        self.req, self.lock, self.cg = req, None, None

    def __enter__(self):
        linux = self.req.spec.linux
        try:
            path = normalize_cgroup_path(linux.cgroups_path if linux else "", self.req.id)
        except ValueError as e:
            raise RtError(f"config.json: $.linux.cgroupsPath: {e}")
        cg = Cgroup(path)
        _check_room(cg, path)
        self.lock = _lock_cgroup(cg)
        try:
            _refuse_busy(cg, path)
            self.req.save_extra(cgroup=path)  # ours from here on
            self.cg = cg
            cg.create()
        except BaseException:
            os.close(self.lock)
            raise
        return cg

    def __exit__(self, kind, e, tb):
        try:
            if kind is not None and self.cg is not None:
                try:
                    self.cg.kill_all()
                    self.cg.destroy()
                except OSError as why:  # the error to report is the one that made us roll back
                    self.req.warn(f"create {self.req.id}: cannot remove cgroup {self.cg.path}: {why.strerror}")
        finally:
            os.close(self.lock)
        return False


def _lock_cgroup(cg) -> int:
    """flock on the cgroup's directory (made if missing), held from the emptiness check until
    the init has joined: creates that name one cgroupsPath, under any --root, take turns."""
    d = cg.main_dir
    os.makedirs(d, exist_ok=True)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    import fcntl
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


class _Partial:
    """What release() gets when create fails: the id and whatever extra was saved."""

    def __init__(self, req: CreateRequest):
        self.id, self.dir, self.pid, self.record = req.id, req.state_dir, 0, {}
        self.extra = getattr(req, "extra", {})
