"""The app_single backend: the stub becomes the container process itself at `start`."""
import os
from _signal import SIGKILL  # not `signal`: it imports enum

from rt.core import api


class AppBackend(api.Backend):
    name = "app_single"

    def _cgroup(self, c):
        path = c.extra.get("cgroup")
        if path is None:
            raise api.RtError(f"container {c.id} has no cgroup (create did not get that far)")
        return api.Cgroup(path)

    def create(self, req: api.CreateRequest) -> api.Created:
        linux = req.spec.linux
        try:
            path = api.normalize_cgroup_path(linux.cgroups_path if linux else "", req.id)
        except ValueError as e:
            raise api.RtError(f"config.json: $.linux.cgroupsPath: {e}")
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
            console = api.connect_console(req.console_socket, req.spec.process.terminal)
            if console is not None:
                plan.update(console_fd=console, console_size=api.console_size(req.spec.process))
            launched = api.launch_shim(plan, pass_fds=(console,) if console is not None else (), on_spawn=cg.join,
                                       on_hooks=req.hooks.create_runtime if req.hooks else None)
        except BaseException:
            cg.kill_all()
            cg.destroy()
            raise
        return api.Created(launched.pid, {"cgroup": path})

    def start(self, c) -> None:
        api.release_barrier(os.path.join(c.dir, "exec.fifo"))

    def kill(self, c, sig: int, all: bool = False) -> None:
        if all:
            self._cgroup(c).kill_all(sig)
            return
        os.kill(c.pid, sig)

    def delete(self, c) -> None:
        if c.extra.get("cgroup") is None:
            return
        cg = self._cgroup(c)
        if cg.exists():
            cg.kill_all()
            cg.destroy()

    def pids(self, c) -> list[int]:
        return self._cgroup(c).procs()

    def pause(self, c) -> None:
        self._cgroup(c).set_frozen(True)

    def resume(self, c) -> None:
        self._cgroup(c).set_frozen(False)

    def update(self, c, resources: dict) -> None:
        for msg in self._apply(self._cgroup(c), resources):
            raise api.RtError(f"update: {msg}")

    @staticmethod
    def _apply(cg, resources) -> list[str]:
        try:
            return cg.apply(resources)
        except ValueError as e:
            raise api.RtError(str(e))

    def exec(self, c, req: dict) -> int:
        plan = api.build_exec_plan(c.pid, req["process"], rootfs=c.record.get("rootfs"), seccomp=req.get("seccomp"),
                                   preserve_fds=req["preserve_fds"], warn=req["warn"])
        cg = self._cgroup(c)
        proc = req["process"]
        console = api.connect_console(req.get("console_socket"), proc.terminal)
        if console is not None:
            plan.update(console_fd=console, console_size=api.console_size(proc))
        try:
            return api.launch_shim(plan, pass_fds=(console,) if console is not None else (), on_spawn=cg.join).pid
        except api.ShimFailed as e:
            raise api.RtError(f"exec failed: {e.reason}")
