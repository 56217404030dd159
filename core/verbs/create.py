import os
import _signal  # not `signal`: it imports enum
from _signal import SIGHUP, SIGINT, SIGTERM

from .. import log
from ..backend import CreateRequest
from ..cli import need_id
from ..errors import RtError, require_caller
from ..plugins import Manager, load_target
from ..admission import admit, load_spec  # noqa: F401  (load_spec: for callers of 1.0)
from ..store import FIFO, StoreError, atomic_write, check_id, proc_start_time
from . import store


def _systemd_booted() -> bool:
    from ..systemd_cgroups import booted  # sd_booted(), as runc checks it
    return booted()


def rootless(g) -> bool:
    """runc's --rootless: true, false, or auto (rootless when not root)."""
    if g.rootless not in ("auto", "true", "false"):
        raise RtError(f"invalid --rootless value {g.rootless!r}: it is true, false or auto")
    return g.rootless == "true" or (g.rootless == "auto" and (os.geteuid() != 0 or in_user_namespace()))


def in_user_namespace() -> bool:
    """Not in the initial user namespace (rootless podman runs us as its namespace's root)."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def do_create(g, opts, cid: str):
    """Create a container; returns it locked. Nothing is left behind on failure."""
    st = store(g)
    check_id(cid)
    if g.systemd_cgroup and not _systemd_booted():
        raise RtError("systemd not running on this host, cannot use systemd cgroups manager")
    if os.path.isdir(os.path.join(st.root, cid)):  # fail fast, before paying for msgspec and pluggy
        raise RtError(f"container with id exists: {cid}")
    adm = admit(opts.bundle or ".", g.plugin)
    bundle, spec, config, raw, info, rootfs = adm.bundle, adm.spec, adm.config, adm.raw, adm.info, adm.rootfs
    record = adm.record()
    c = created = None
    handlers = _trap_signals()  # SIGTERM/SIGHUP roll back too, as a failure does
    try:
        c = st.create(cid, record)
        fifo = os.path.join(c.dir, FIFO)
        os.mkfifo(fifo, 0o600)
        atomic_write(os.path.join(c.dir, "config.json"), raw)  # what exec and update work from
        backend = load_target(info.target, info.plugin)()
        from ..hooks import RuntimeHooks, hooks_of
        hooks = hooks_of(spec)
        c.record["hooks"] = {k: v for k, v in hooks.items() if k in ("poststart", "poststop")}
        req = CreateRequest(id=cid, bundle=bundle, spec=spec, config=config, state_dir=c.dir, fifo=fifo,
                            pid_file=opts.pid_file, console_socket=opts.console_socket,
                            no_pivot=opts.no_pivot, preserve_fds=opts.preserve_fds or 0, warn=log.warn_user,
                            hooks=RuntimeHooks(hooks, c.record, cid), rootfs=rootfs,
                            save_extra=lambda **kw: (c.extra.update(kw), c.save()),
                            caller_reaps=bool(opts.pid_file or opts.console_socket or opts.foreground),
                            systemd_cgroup=bool(g.systemd_cgroup), rootless=rootless(g))
        created = backend.create(req)
        c.record.update(pid=created.pid, extra=dict(c.extra, **created.extra))
        info_t = proc_start_time(created.pid)
        if info_t is None:
            raise RtError("container init exited during create")
        c.record.update(start_time=info_t[0], creating=False)
        c.save()
        if opts.pid_file:
            atomic_write(os.path.abspath(opts.pid_file), str(created.pid).encode(), 0o644)
    except BaseException as e:
        _ignore_signals()  # a second signal must not cut the rollback short
        if c is not None:
            _undo(c, made=created is not None)
        if isinstance(e, RtError):
            raise
        from rt.shim.protocol import ProtocolError, ShimFailed
        if isinstance(e, ShimFailed):
            raise RtError(e.reason)
        if isinstance(e, _Signalled):
            raise RtError(f"create {cid}: interrupted by {_SIGNALS[e.sig]}", 128 + e.sig) from None
        if isinstance(e, OSError):
            raise RtError(f"create {cid}: {os_error_text(e)}") from None
        if isinstance(e, ProtocolError):
            raise RtError(f"create {cid}: {e}") from None
        raise
    finally:
        _restore_signals(handlers)
    return c


def os_error_text(e: OSError) -> str:
    """An OSError as "write PATH: reason" (the store's) or "PATH: reason"."""
    if isinstance(e, StoreError):
        return str(e)
    return (f"{e.filename}: " if e.filename else "") + (e.strerror or str(e))


def _undo(c, made: bool) -> None:
    """Roll back a failed create: what the backend made (when its create returned), then the
    entry. Never raises: the caller's error is the one to report."""
    if made:
        from .delete import destroy
        c.record["creating"] = False
        try:
            destroy(c, force=True)
        except BaseException as e:
            log.warning(f"create {c.id}: rollback: {e}")
    c.discard()


_SIGNALS = {SIGHUP: "SIGHUP", SIGTERM: "SIGTERM"}  # SIGINT raises KeyboardInterrupt already


class _Signalled(BaseException):
    def __init__(self, sig: int):
        super().__init__(sig)
        self.sig = sig

    def __str__(self):  # also what a plugin's forked helper (lxc_system's keeper) reports
        return f"interrupted by {_SIGNALS.get(self.sig, f'signal {self.sig}')}"


def _raise_signalled(sig, _frame):
    raise _Signalled(sig)


def _noted(_sig, _frame):
    pass  # caught, not ignored: what the rollback runs (poststop hooks) gets default handlers


def _trap_signals() -> dict:
    """SIGTERM and SIGHUP raise _Signalled; returns the handlers to restore."""
    try:
        old = {SIGINT: _signal.getsignal(SIGINT)}
        old.update((s, _signal.signal(s, _raise_signalled)) for s in _SIGNALS)
    except ValueError:  # not the main thread: signals are not ours to handle
        return {}
    return old


def _ignore_signals() -> None:
    try:
        for s in (*_SIGNALS, SIGINT):
            _signal.signal(s, _noted)
    except ValueError:
        pass


def _restore_signals(handlers: dict) -> None:
    for s, h in handlers.items():
        _signal.signal(s, h if h is not None else _signal.SIG_DFL)


def run(g, opts, pos):
    c = do_create(g, opts, need_id(pos, "create"))
    c.unlock()
