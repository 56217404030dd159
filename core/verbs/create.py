import os

from .. import log
from ..backend import CreateRequest
from ..cli import need_id
from ..errors import RtError
from ..plugins import Manager, load_target
from ..store import FIFO, atomic_write, check_id, proc_start_time, rfc3339_now
from . import store


def load_spec(bundle: str):
    import msgspec
    from rt.spec import SpecError, load_config
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = f.read()
    except OSError as e:
        raise RtError(f"config.json: $: cannot read config.json: {e.strerror}")
    try:
        spec = load_config(raw)
    except SpecError as e:
        raise RtError(str(e))
    return spec, msgspec.to_builtins(spec), raw


def do_create(g, opts, cid: str):
    """Create a container; returns it locked. Nothing is left behind on failure."""
    st = store(g)
    check_id(cid)
    if os.path.isdir(os.path.join(st.root, cid)):  # fail fast, before paying for msgspec and pluggy
        raise RtError(f"container with id exists: {cid}")
    bundle = os.path.abspath(opts.bundle or ".")
    if not os.path.isdir(bundle):
        raise RtError(f"bundle {bundle}: no such directory")
    spec, config, raw = load_spec(bundle)
    mgr = Manager().load()
    info = mgr.select(g.plugin, spec.annotations)
    try:
        mgr.pm.hook.rt_check_spec(spec=spec, plugin=info.name)
    except ValueError as e:  # SpecError
        raise RtError(str(e))
    if spec.root is None or not spec.root.path:
        raise RtError("config.json: $.root.path: a root filesystem is required")
    rootfs = os.path.join(bundle, spec.root.path)  # an absolute root.path stays as it is
    if not os.path.isdir(rootfs):
        raise RtError(f"rootfs ({rootfs}) does not exist")
    c = st.create(cid, {
        "bundle": bundle, "rootfs": rootfs, "created": rfc3339_now(),
        "owner": "", "annotations": spec.annotations or {}, "plugin": info.name, "plugin_ep": info.plugin,
        "plugin_version": info.version, "backend": info.target, "pid": 0, "extra": {},
    })
    try:
        fifo = os.path.join(c.dir, FIFO)
        os.mkfifo(fifo, 0o600)
        atomic_write(os.path.join(c.dir, "config.json"), raw)  # what exec and update work from
        backend = load_target(info.target, info.plugin)()
        from ..hooks import RuntimeHooks, hooks_of
        hooks = hooks_of(spec)
        c.record["hooks"] = {k: v for k, v in hooks.items() if k in ("poststart", "poststop")}
        req = CreateRequest(id=cid, bundle=bundle, spec=spec, config=config, state_dir=c.dir, fifo=fifo,
                            pid_file=opts.pid_file, console_socket=opts.console_socket,
                            no_pivot=opts.no_pivot, preserve_fds=opts.preserve_fds or 0, warn=log.warning,
                            hooks=RuntimeHooks(hooks, c.record, cid), rootfs=rootfs,
                            save_extra=lambda **kw: (c.extra.update(kw), c.save()),
                            caller_reaps=bool(opts.pid_file or opts.console_socket or opts.foreground))
        created = backend.create(req)
        info_t = proc_start_time(created.pid)
        if info_t is None:
            raise RtError("container init exited during create")
        c.record.update(pid=created.pid, start_time=info_t[0], extra=dict(c.extra, **created.extra), creating=False)
        c.save()
        if opts.pid_file:
            atomic_write(os.path.abspath(opts.pid_file), str(created.pid).encode(), 0o644)
    except BaseException as e:
        _undo(c)
        if isinstance(e, RtError):
            raise
        from rt.shim.protocol import ProtocolError, ShimFailed
        if isinstance(e, ShimFailed):
            raise RtError(e.reason)
        if isinstance(e, (ProtocolError, OSError)):
            raise RtError(f"create: {e}")
        raise
    return c


def _undo(c) -> None:
    from .delete import destroy
    c.record["creating"] = False
    try:
        if c.record.get("pid"):
            destroy(c, force=True)
    finally:
        c.remove()
        c.unlock()


def run(g, opts, pos):
    c = do_create(g, opts, need_id(pos, "create"))
    c.unlock()
