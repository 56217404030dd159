"""WasmBackend: rt's mechanism for kinds on the host kernel (OciBackend: cgroup, namespaces,
the lean shim, the start barrier, kill, pause, update, ps, exec), with a plan whose process
is rt_wasm.host, a host program that runs the WASI module in wasmtime.

The process gets the spec's uid, gids, capabilities, rlimits, seccomp filter, no_new_privs,
cgroup and pid/ipc/uts/network namespaces; it is not chrooted and has no mount namespace:
the module sees the rootfs and the bind mounts only through WASI preopens (rt_wasm.view).

Kept import-light (short verbs load it): wasmtime loads only in the host process.
"""
import errno
import json
import os
import sys

from rt.core import api

# The host, started by the shim through rt's sealed exec helper: -I and -S keep the environment,
# the user's site and the current directory out of the interpreter; it finds rt_wasm and
# wasmtime by the paths in its config.
BOOT = ("import sys, json; c = json.loads(sys.argv[1]); sys.path[:0] = c['path']; "
        "from rt_wasm.host import main; main(c, sys.argv[2:])")
HOST_ENV = ["LANG=C.UTF-8"]  # the host's own; the module's follows, as RT_WASM_ENV_0=NAME=VALUE, ...
ENV_PREFIX = "RT_WASM_ENV_"
_READ_ONLY = {"ro": True, "rro": True, "rw": False, "rrw": False}


def host_path() -> list[str]:
    """The sys.path entries the host needs: rt_wasm's and wasmtime's."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for d in sys.path:
        d = os.path.abspath(d or ".")
        if os.path.isfile(os.path.join(d, "wasmtime", "__init__.py")):
            return [here] if d == here else [here, d]
    raise api.RtError("wasm: the wasmtime package is not installed where rt runs (pip install wasmtime)")


def _mounts_below(path: str) -> list[str]:
    real = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return [p for p in points if p.startswith(real)]


def view_of(spec, bundle: str, rootfs: str) -> dict:
    """What the module sees: the rootfs, whether it is read-only, and the directory binds
    (file binds and other mount types have no WASI counterpart and are left out), with the
    identity of each directory, which the host checks before it preopens them."""
    from .view import identity
    binds = []
    for m in spec.mounts:
        opts = list(m.options or [])
        if m.type != "bind" and "bind" not in opts and "rbind" not in opts:
            continue  # proc, sysfs, tmpfs, devpts, mqueue, cgroup: nothing a WASI module can use
        src = m.source if os.path.isabs(m.source) else os.path.join(bundle, m.source)
        if not os.path.exists(src):
            raise api.RtError(f"mount {src} to {m.destination}: no such file or directory")
        if not os.path.isdir(src):
            continue  # a file (podman's /etc/hosts, /etc/resolv.conf): WASI preopens only directories
        below = [] if "rbind" in opts else _mounts_below(src)
        if below:  # a preopen shows what is mounted below its directory; a plain bind would not
            raise api.RtError(f"mount {src} to {m.destination}: a non-recursive bind of a directory with mounts "
                              f"below it ({below[0]}): rt-wasm cannot hide them from the module (use rbind)")
        ro = False
        for o in opts:
            ro = _READ_ONLY.get(o, ro)
        binds.append([src, m.destination, ro])
    try:
        ids = [identity(rootfs)] + [identity(src) for src, _, _ in binds]
    except OSError as e:
        raise api.RtError(f"wasm: {e.filename}: {e.strerror}") from None
    return {"rootfs": rootfs, "readonly": bool(spec.root and spec.root.readonly), "binds": binds, "ids": ids}


def host_process(process: api.ProcessPlan, view: dict) -> None:
    """Turn the plan's process (the module's args, env, cwd) into the host that runs it. The
    module's environment goes in the host's (owner-only /proc/PID/environ, as under runc; argv
    is world-readable), under inert names: an LD_PRELOAD of the spec's must not reach ld.so."""
    meta = dict(view, path=host_path(), cwd=process.cwd or "/", nenv=len(process.env))
    process.args = [sys.executable, "-I", "-S", "-c", BOOT, json.dumps(meta), *process.args]
    process.env = list(HOST_ENV) + [f"{ENV_PREFIX}{i}={e}" for i, e in enumerate(process.env)]
    process.cwd = "/"


def host_plan(plan: api.Plan, view: dict) -> None:
    """No root to enter and no mounts to make: the process is a host program."""
    plan.rootfs = None
    plan.drop_namespace("mount")
    plan.readonly = False
    plan.mounts, plan.devices, plan.symlinks, plan.masked_paths, plan.readonly_paths = [], [], [], [], []
    host_process(plan.process, view)


def check_program(view: dict, process) -> None:
    """Fail create, as runc does, when the program or the working directory is missing."""
    from .view import View
    try:
        v = View(view["rootfs"], view["readonly"], view["binds"], view.get("ids"))
    except OSError as e:
        raise api.RtError(f"wasm: {e.filename}: {e.strerror}") from None
    args, cwd = list(process.args), process.cwd or "/"
    try:
        os.close(v.open(cwd, os.O_PATH | os.O_DIRECTORY))
    except OSError as e:
        raise api.RtError(f"chdir to cwd ({cwd!r}) set in config.json failed: {e.strerror}") from None
    try:
        os.close(v.find_module(args[0], list(process.env), cwd)[1])
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR) and "/" not in args[0]:
            raise api.RtError(f'exec: "{args[0]}": executable file not found in $PATH') from None
        raise api.RtError(f'exec: "{args[0]}": stat {e.filename}: {e.strerror.lower()}') from None


class WasmBackend(api.OciBackend):
    name = "wasm"
    # checked by `rt conformance`; not "posix" (the rootfs's programs do not run), nor "userns"
    supports = frozenset({"stdio", "exec", "ps", "kill-all", "pause", "update", "terminal", "hooks"})

    def create(self, req):
        self._view = view = view_of(req.spec, req.bundle, req.rootfs)
        if req.spec.process is not None and req.spec.process.args:
            check_program(view, req.spec.process)
        created = super().create(req)
        created.extra["wasm"] = view  # for exec: the identities of create
        return created

    def prepare(self, req, plan):
        if plan.hooks:  # their path resolves in the container's root, and a wasm container has none
            raise api.RtError("wasm: createContainer and startContainer hooks are not supported: they run "
                              "programs of the container's root, and a wasm container has none (its host "
                              "process would run them from the host)")
        host_plan(plan, getattr(self, "_view", None) or view_of(req.spec, req.bundle, req.rootfs))

    def prepare_exec(self, c, plan):
        view = c.extra.get("wasm")
        if view is None:
            raise api.RtError(f"container {c.id} was not created by rt-wasm")
        plan.rootfs = None  # the container has no mount namespace: build_exec_plan would chroot
        host_process(plan.process, view)

    @classmethod
    def workload(cls, rootfs: str, action: str, *params: str) -> list[str]:
        """The kit's actions, done by one WASI module (conformance.wat) copied into the rootfs."""
        from .conformance import ACTIONS, module_bytes
        if action not in ACTIONS:
            raise ValueError(f"unknown conformance action {action!r}")
        dest = os.path.join(rootfs, "conformance.wasm")
        with open(dest, "wb") as f:
            f.write(module_bytes())
        return ["/conformance.wasm", action, *params]
