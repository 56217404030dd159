"""`rt core start|stop|status|serve`: the resident core of a state root (rt.core.server)."""
import os
import sys


from .. import log
from ..errors import RtError, front

IDLE_DEFAULT = "900"


def run(g, opts, pos):
    if len(pos) != 1 or pos[0] not in ("start", "stop", "status", "serve"):
        raise RtError("usage: rt core start|stop|status|serve")
    what = pos[0]
    root = os.path.abspath(g.root)
    if front() is not None:  # served by the core itself
        from .. import server
        core = server.CURRENT
        if what == "status":
            sys.stdout.write(server.status_text(core))
        elif what == "stop":
            core.stopping = True
            sys.stdout.write(f"rt core: stopping (pid {os.getpid()})\n")
        elif what == "start":
            sys.stdout.write(f"rt core: already running (pid {os.getpid()})\n")
        else:
            raise RtError("core serve: a core is already serving this root")
        return 0
    idle = _idle(opts.idle_timeout)
    if what == "serve":
        return serve(root, idle, opts.ready_fd, opts.rehome)
    from ..coreclient import NoCore, request
    if what == "start":
        try:
            return int(request(root, [g.prog, "--root", root, "core", "start"])[1][0])
        except (NoCore, ValueError, IndexError):
            pass
        return start(root, idle)
    try:
        kind, fields = request(root, [g.prog, "--root", root, "core", what])
    except NoCore:
        if what == "status":
            sys.stdout.write("rt core: not running\n")
            return 3  # systemctl's "not running"
        sys.stdout.write("rt core: not running\n")
        return 0
    if kind != "X" and what == "stop":  # a core of another build, or of another context: signal it
        pid = _signal_core(root)
        _wait_gone(root)
        sys.stdout.write(f"rt core: stopped (pid {pid})\n")
        return 0
    if kind != "X":
        raise RtError(f"core {what}: the core would not serve this caller: {' '.join(fields)}")
    if what == "stop":
        _wait_gone(root)
    return int(fields[0])


def _idle(value) -> float:
    v = value if value is not None else os.environ.get("RT_CORE_IDLE", IDLE_DEFAULT)
    try:
        n = float(v)
    except ValueError:
        n = -1
    if n < 0:
        raise RtError(f"invalid idle timeout {v!r}: seconds, 0 for never")
    return n


def _pidfile(root: str) -> str:
    from ..server import DIR
    return os.path.join(root, DIR, "pid")


def _signal_core(root: str) -> int:
    """SIGTERM to the core whose pid file is under root, if it is a core of this user."""
    import signal
    try:
        with open(_pidfile(root)) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        ours = b"--root" in argv and argv.index(b"--root") + 1 < len(argv) and \
            os.path.abspath(os.fsdecode(argv[argv.index(b"--root") + 1])) == root
        if b"serve" not in argv or not ours or os.stat(f"/proc/{pid}").st_uid != os.geteuid():
            raise RtError(f"core stop: pid {pid} in {_pidfile(root)} is not a core of ours")
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError) as e:
        raise RtError(f"core stop: no core to signal: {e}")
    return pid


def _wait_gone(root: str, timeout: float = 30.0) -> None:
    try:
        with open(_pidfile(root)) as f:
            pid = int(f.read())
        fd = os.pidfd_open(pid)
    except (OSError, ValueError):
        return
    import select
    try:
        if not select.select([fd], [], [], timeout)[0]:
            raise RtError(f"core stop: the core (pid {pid}) did not exit within {timeout:g} s")
    finally:
        os.close(fd)


def start(root: str, idle: float) -> int:
    """Start a core that re-homes itself: its own session, cgroup, cwd and fds."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork():
                os._exit(0)
            os.chdir("/")
            os.umask(0o022)
            from ..server import private_dir
            dfd = private_dir(root)
            null = os.open("/dev/null", os.O_RDWR)
            out = os.open("log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
            for target, fd in ((0, null), (1, null), (2, out), (3, w)):
                os.dup2(fd, target)
            os.closerange(4, 65536)
            os.execv(sys.executable, [sys.executable, "-I", "-m", "rt.core", "--root", root, "core",
                                      "--idle-timeout", str(idle), "--ready-fd", "3", "--rehome", "serve"])
        finally:
            os._exit(1)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        ready = f.read()
    if not ready.startswith(b"ok"):
        raise RtError(f"core start: the core did not start (see {os.path.join(root, '.rt-core', 'log')}): "
                      f"{ready.decode(errors='replace').strip()}")
    sys.stdout.write(f"rt core: started (pid {ready.split()[1].decode()})\n")
    return 0


def serve(root: str, idle: float, ready_fd, rehome: bool = False) -> int:
    from .. import server
    server.reserve_low_fds()
    fds = int(os.environ.get("LISTEN_FDS", "0") or 0) if os.environ.get("LISTEN_PID") == str(os.getpid()) else 0
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(k, None)
    ready = int(ready_fd) if ready_fd else None
    cg = None
    try:
        if rehome:
            cg = _own_cgroup(root)
        import socket
        lsock = socket.socket(fileno=3) if fds == 1 else server.listen(root)
        dfd = server.private_dir(root)
        try:
            pf = os.open("pid", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dfd)
            os.write(pf, str(os.getpid()).encode())
            os.close(pf)
        finally:
            os.close(dfd)
        core = server.CURRENT = server.Core(root, idle)
        if not core.build_id:
            raise RtError("core serve: this install has no build id (rebuild the package)")
        server.install_per_request_state()

        def signal_ready():
            if ready is not None:
                os.write(ready, f"ok {os.getpid()}\n".encode())
                os.close(ready)
        import trio
        trio.run(server.serve, core, lsock, signal_ready)
    except BaseException as e:
        if ready is not None:
            try:
                os.write(ready, f"error {e}\n".encode())
            except OSError:
                pass
        if not isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
    finally:
        try:
            os.unlink(_pidfile(root))
        except OSError:
            pass
        if fds != 1:
            try:
                os.unlink(server.socket_path(root))
            except OSError:
                pass
        if cg is not None:
            _leave_cgroup(cg)
        _tidy(root)
    return 0


def _tidy(root: str) -> None:
    """Leave no trace but a log that has something in it."""
    from ..server import DIR
    d = os.path.join(root, DIR)
    try:
        if os.path.getsize(os.path.join(d, "log")) == 0:
            os.unlink(os.path.join(d, "log"))
    except OSError:
        pass
    try:
        os.rmdir(d)
    except OSError:
        pass


def _own_cgroup(root: str):
    """A cgroup of the core's own, not the caller's (its manager may kill that one)."""
    import hashlib
    from ..cgroups import Cgroup
    cg = Cgroup(f"/rt-core-{os.getuid()}-{hashlib.sha256(root.encode()).hexdigest()[:8]}")
    try:
        cg.create()
        cg.join(os.getpid())
    except OSError as e:
        log.warning(f"core: staying in the caller's cgroup: {e}")
        return None
    return cg


def _leave_cgroup(cg) -> None:
    from ..cgroups import Cgroup
    try:
        Cgroup("/").join(os.getpid())
        cg.destroy()
    except OSError as e:
        log.warning(f"core: cannot remove cgroup {cg.path}: {e}")
