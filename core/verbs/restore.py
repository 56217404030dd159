import os

from .. import log
from ..cli import need_id
from ..errors import RtError, require_caller
from ..store import atomic_write, check_id, proc_start_time
from . import store
from .checkpoint import supported
from ..admission import admit
from .create import _ignore_signals, _restore_signals, _Signalled, _SIGNALS, _systemd_booted, _trap_signals

_MS_BIND, _MS_REC, _MNT_DETACH = 4096, 16384, 2


def _libc():
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def _bind(src: str, dst: str) -> None:
    import ctypes
    if _libc().mount(src.encode(), dst.encode(), None, _MS_BIND | _MS_REC, None) != 0:
        e = ctypes.get_errno()
        raise RtError(f"restore: bind {src} on {dst}: {os.strerror(e)}")


def _private_mounts() -> None:
    """This process into a mount namespace of its own, whose mounts do not reach the host's
    (criu is our child and the restored init a sibling: both start from it). Slave, not
    private: criu copies the host's sharing onto the container's binds."""
    import ctypes
    libc = _libc()
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise RtError(f"restore: unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}")
    if libc.mount(b"none", b"/", None, _MS_REC | (1 << 19), None) != 0:  # MS_SLAVE
        raise RtError(f"restore: make / a slave of the host's mounts: {os.strerror(ctypes.get_errno())}")


class _Req:
    """What ocibackend's _start_unit needs of a create request."""

    rootless = False  # criu needs root

    def __init__(self, cid, config, extra):
        self.id, self.config, self.extra = cid, config, extra

    def save_extra(self, **kw):
        self.extra.update(kw)


def _make_cgroup(cid, spec, config, extra, systemd: bool, made: list):
    """The cgroup create would make (linux.cgroupsPath), with the spec's limits and device rules.
    With --systemd-cgroup, a transient unit that holds rt itself until criu has restored into it."""
    from .. import api
    from ..ocibackend import OciBackend, _lock_cgroup, _start_unit, _unit_path
    linux = spec.linux
    try:
        if systemd:
            from ..systemd_cgroups import unit_of
            unit = unit_of(linux.cgroups_path if linux else "", cid)
            path = _unit_path(*unit)
        else:
            path = api.normalize_cgroup_path(linux.cgroups_path if linux else "", cid)
    except ValueError as e:
        raise RtError(f"config.json: $.linux.cgroupsPath: {e}")
    cg = api.Cgroup(path)
    if systemd and cg.layout.mode != "v2":  # as create
        raise RtError(f"--systemd-cgroup: rt's systemd driver needs pure cgroup v2 (this host is "
                      f"{cg.layout.mode}): on v1, systemd rewrites its units' devices cgroup")
    lock = _lock_cgroup(cg)
    try:
        busy = cg.procs(everywhere=True)
        if busy:
            raise RtError(f"container's cgroup is not empty: {len(busy)} process(es) found in {path}")
        extra["cgroup"] = path
        made.append(cg)  # ours to remove from now on
        if systemd:
            _start_unit(_Req(cid, config, extra), unit, path, os.getpid())
        cg.create()
        for msg in OciBackend._apply(cg, (config.get("linux") or {}).get("resources")):
            log.warning(msg)
        for msg in cg.apply_devices(api.device_rules(spec)):
            log.warning(msg)
    finally:
        os.close(lock)
    return path, cg


def _own_cgroup() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            return next((ln[3:].strip() for ln in f if ln.startswith("0::")), None)
    except OSError:
        return None


def _leave(cg, home) -> None:
    """rt back to its own cgroup, out of the container's (v2; the systemd driver put it there)."""
    from .. import api
    if home is not None and cg is not None and cg.layout.mode == "v2":
        try:
            api.Cgroup(home, cg.layout).join(os.getpid())
        except OSError as e:
            log.warning(f"restore: cannot move back to cgroup {home}: {e.strerror}")


def run(g, opts, pos):
    cid = need_id(pos, "restore")
    require_caller("criu restores the container as the caller's child")
    from .. import criu
    if opts.console_socket:
        raise RtError("restore --console-socket is not supported by rt: criu's command line cannot hand "
                      "over a terminal's pty master")
    if g.systemd_cgroup and not _systemd_booted():
        raise RtError("systemd not running on this host, cannot use systemd cgroups manager")
    st = store(g)
    check_id(cid)
    if os.path.isdir(os.path.join(st.root, cid)):
        raise RtError(f"container with id exists: {cid}")
    adm = admit(opts.bundle or ".", g.plugin, runs_hooks=False)
    bundle, spec, config, raw, info, rootfs = adm.bundle, adm.spec, adm.config, adm.raw, adm.info, adm.rootfs
    from ..plugins import load_target
    supported(info.name, load_target(info.target, info.plugin)(), "restore")
    path = criu.binary(g)
    criu.check(path)
    image = os.path.abspath(opts.image_path or "checkpoint")
    if not os.path.exists(os.path.join(image, "inventory.img")):
        raise RtError(f"restore {cid}: {image} holds no checkpoint (no inventory.img)")
    image, work = criu.image_dirs(opts)
    record = adm.record()
    c = cg = home = None
    root = fds = None
    handlers = _trap_signals()
    try:
        c = st.create(cid, record)
        atomic_write(os.path.join(c.dir, "config.json"), raw)
        home = _own_cgroup() if g.systemd_cgroup else None
        made = []
        try:
            cgpath, cg = _make_cgroup(cid, spec, config, c.extra, bool(g.systemd_cgroup), made)
        finally:
            cg = made[0] if made else None
        c.save()
        root = os.path.join(c.dir, "criu-root")  # criu wants the root to be a mount point
        os.mkdir(root, 0o755)
        _private_mounts()  # the bind is ours alone, and goes with us however we end
        _bind(rootfs, root)
        criu.prepare_mountpoints(config, root)
        pidfile = os.path.join(c.dir, "criu.pid")
        cmd, fds = criu.restore_cmd(path, opts, image, work, root, cgpath, config, bundle, pidfile)
        criu.run_restore(cmd, fds, work, cid, list(cg.dirs().values()))
        _leave(cg, home)
        with open(pidfile) as f:
            pid = int(f.read().strip())
        t = proc_start_time(pid)
        if t is None:
            raise RtError(f"restore {cid}: the restored init exited at once")
        c.record.update(pid=pid, start_time=t[0], creating=False)
        c.save()
        if opts.pid_file:
            atomic_write(os.path.abspath(opts.pid_file), str(pid).encode(), 0o644)
    except BaseException as e:
        _ignore_signals()
        _leave(cg, home)
        if cg is not None and os.getpid() in cg.procs():  # never kill ourselves: leave it to systemd
            log.warning(f"restore {cid}: still in cgroup {cg.path}; its processes are left to its unit")
        elif cg is not None:
            try:
                cg.kill_all()
                cg.destroy()
            except OSError as why:
                log.warning(f"restore {cid}: cannot remove cgroup {cg.path}: {why.strerror}")
        if c is not None:
            from ..ocibackend import _stop_unit
            _stop_unit(c.extra, log.warning)
        _unmount(root)
        root = None
        if c is not None:
            c.discard()
        if isinstance(e, _Signalled):
            raise RtError(f"restore {cid}: interrupted by {_SIGNALS[e.sig]}", 128 + e.sig) from None
        if isinstance(e, OSError) and not isinstance(e, RtError):
            raise RtError(f"restore {cid}: {e}") from None
        raise
    finally:
        _unmount(root)
        for fd in fds or ():
            if fd > 2:
                os.close(fd)
        _restore_signals(handlers)
    c.unlock()
    if opts.detach:
        return 0
    if not opts.no_subreaper:  # the init is our child (criu --restore-sibling); its orphans too
        from rt.shim.spawn import adopt_orphans
        adopt_orphans()
    return _foreground(g, cid, pid)


def _unmount(root):
    if root is None:
        return
    _libc().umount2(root.encode(), _MNT_DETACH)
    try:
        os.rmdir(root)
    except OSError:
        pass


def _foreground(g, cid, pid):
    """As `rt run`: forward signals, wait for the init (our child), then delete it."""
    from .run import delete_after, forward_and_wait
    code = forward_and_wait(pid)
    delete_after(g, cid)
    return code
