"""OciBackend: the namespaces + cgroup + lean shim mechanism, shared by the kinds that run
on the host kernel (app_single, lxc_system). A subclass adjusts the plan, configures the
container once its init exists, and releases what it added at delete.

Kept import-light: short verbs instantiate subclasses of it.
"""
import os
from _signal import SIGKILL  # not `signal`: it imports enum

from . import api
from .backend import Backend, Created, CreateRequest
from .errors import RtError


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

    # --- the mechanism --------------------------------------------------------------
    def _cgroup(self, c):
        path = c.extra.get("cgroup")
        if path is None:
            raise RtError(f"container {c.id} has no cgroup (create did not get that far)")
        return api.Cgroup(path)

    def create(self, req: CreateRequest) -> Created:
        linux = req.spec.linux
        try:
            path = api.normalize_cgroup_path(linux.cgroups_path if linux else "", req.id)
        except ValueError as e:
            raise RtError(f"config.json: $.linux.cgroupsPath: {e}")
        cg = api.Cgroup(path)
        req.save_extra(cgroup=path)
        try:
            cg.create()
            for msg in self._apply(cg, req.config.get("linux", {}).get("resources")):
                req.warn(msg)
            for msg in cg.apply_devices(api.device_rules(req.spec)):
                req.warn(msg)
            plan = api.build_plan(req.spec, rootfs=req.rootfs, fifo=req.fifo, bundle=req.bundle, cgroup=cg,
                                  no_pivot=req.no_pivot, preserve_fds=req.preserve_fds, warn=req.warn,
                                  state_template={"ociVersion": "1.2.0", "id": req.id, "status": "creating",
                                                  "pid": "__PID__", "bundle": req.bundle,
                                                  "annotations": req.spec.annotations or {}})
            self.prepare(req, plan)
            launched = self._launch(plan, req.console_socket, req.spec.process, cg,
                                    on_child=lambda pid: self.on_child(req, pid),
                                    on_hooks=req.hooks.create_runtime if req.hooks else None)
        except BaseException:
            cg.kill_all()
            cg.destroy()
            self.release(_Partial(req))
            raise
        return Created(launched.pid, {"cgroup": path})

    @staticmethod
    def _launch(plan, console_socket, proc, cg, extra_fds=(), **callbacks):
        console = plan.get("console_fd")  # a subclass may have set up the console itself
        if console is None:
            console = api.connect_console(console_socket, proc.terminal)
        if console is not None:
            plan.update(console_fd=console, console_size=plan.get("console_size") or api.console_size(proc))
        fds = tuple(extra_fds) + ((console,) if console is not None else ())
        return api.launch_shim(plan, pass_fds=fds, on_spawn=cg.join, **callbacks)

    def start(self, c) -> None:
        api.release_barrier(os.path.join(c.dir, "exec.fifo"))

    def kill(self, c, sig: int, all: bool = False) -> None:
        if all:
            self._cgroup(c).kill_all(sig)
            return
        os.kill(c.pid, sig)

    def delete(self, c) -> None:
        if c.extra.get("cgroup") is not None:
            cg = self._cgroup(c)
            if cg.exists():
                cg.kill_all(SIGKILL)
                cg.destroy()
        self.release(c)

    def pids(self, c) -> list[int]:
        return self._cgroup(c).procs()

    def pause(self, c) -> None:
        self._cgroup(c).set_frozen(True)

    def resume(self, c) -> None:
        self._cgroup(c).set_frozen(False)

    def update(self, c, resources: dict) -> None:
        for msg in self._apply(self._cgroup(c), resources):
            raise RtError(f"update: {msg}")

    @staticmethod
    def _apply(cg, resources) -> list[str]:
        try:
            return cg.apply(resources)
        except ValueError as e:
            raise RtError(str(e))

    def exec(self, c, req: dict) -> int:
        try:  # pin the init: a pidfd cannot come to mean another process, as a pid can
            pidfd = os.pidfd_open(c.pid)
        except OSError:
            raise RtError("the container's process has exited")
        try:
            if not c.alive():  # the pid was reused before we pinned it
                raise RtError("the container's process has exited")
            plan = api.build_exec_plan(c.pid, req["process"], rootfs=c.record.get("rootfs"),
                                       seccomp=req.get("seccomp"), preserve_fds=req["preserve_fds"], pidfd=pidfd,
                                       warn=req["warn"])
            self.prepare_exec(c, plan)
            return self._launch(plan, req.get("console_socket"), req["process"], self._cgroup(c),
                                extra_fds=(pidfd,)).pid
        except api.ShimFailed as e:
            raise RtError(f"exec failed: {e.reason}")
        finally:
            try:
                os.close(pidfd)
            except OSError:
                pass  # handed over to the shim and closed by the launcher


class _Partial:
    """What release() gets when create fails: the id and whatever extra was saved."""

    def __init__(self, req: CreateRequest):
        self.id, self.dir, self.pid, self.record = req.id, req.state_dir, 0, {}
        self.extra = getattr(req, "extra", {})
