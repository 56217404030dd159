"""The resident core: a trio service that runs rt's verbs for the native front end (core/client.c).

One core serves one state root for one user, on `<root>/.rt-core/sock` (0600, in a 0700
directory). A request is the caller's argv, environment, umask, cwd and stdio; the core runs
the verb with rt's own code, in a worker thread, and writes to the caller's stdout and stderr.
Processes that outlive the verb (the stub, a VM shim) are forked by the front end on the
core's word (rt.shim.spawn), so the container's init stays in the caller's process tree.

The core serves a request only where it would act exactly as the caller: same namespaces,
root, credentials, capabilities, security label and rt settings (`context_mismatch`).
Otherwise, and for steps that must run in the caller (runtime hooks, a terminal relay), it
answers "fallback" before anything has happened, and the front end runs the Python rt.

Wire format (both ways): u32 little-endian length, then the body; fds go with SCM_RIGHTS.
- request (front end -> core): NUL-terminated fields "rt-core/1", build id, umask (octal),
  argc, argv..., envc, env...; fds [pidfd of the sender]. The front end talks only to a
  core of its own uid (SO_PEERCRED), in a directory that is its own and private.
- replies (core -> front end): a type byte, then fields:
  A accepted (the front end answers G with fds [cwd, 0] to go on, or hangs up), O output
  (1 or 2, then bytes: rt's own stdout and stderr, which the front end writes; the core
  never holds the caller's stdout), F fallback (reason),
  X exit (code), S spawn (flags, argc, argv..., envc or "-", env..., targets...; fds
  [exe, fds...]; answered by P pid with fds [pidfd]), W wait (pid, argc, argv...: wait for
  the container process, then run argv, the cleanup of a foreground `run`).
"""
import array
import ctypes
import io
from collections.abc import MutableMapping
import os
import socket
import struct
import sys
import threading
import time

from . import log
from .errors import NeedsCaller, RtError

PROTO = b"rt-core/1"
DIR = ".rt-core"  # rt.core.store.CORE_DIR: no container may take this id
MAX_REQUEST = 1 << 20  # bytes; argv and environment together
MAX_FIELDS = 8192
REQUEST_DEADLINE = 5.0  # seconds a connection has to send its request and its go, in all
SPAWN_DEADLINE = 30.0  # seconds the front end has to fork what the core asks for
MAX_CONNECTIONS = 256  # open at once; more wait in the listen backlog
OUTPUT_CHUNK = 256 << 10
IO_TIMEOUT = 60.0  # seconds any one send to the front end may take
FD_FLOOR = 64  # our fds start above the caller's --preserve-fds range (the front end checks)
CLONE_FS = 0x200
# rt's own settings, some read once at import: a caller that sets them differently is served
# in-process. The rest of the environment (PATH...) is the request's own (_PerThreadEnviron).
SETTINGS_PREFIX = "RT_"
NOT_SETTINGS = ("RT_ARGV0", "RT_NO_CORE")  # and RT_CORE_*: the front end's and the core's own
_STATUS_KEYS = (b"Uid:", b"Gid:", b"Groups:", b"CapInh:", b"CapPrm:", b"CapEff:", b"CapBnd:", b"CapAmb:",
                b"NoNewPrivs:", b"Seccomp:", b"Seccomp_filters:")
_NAMESPACES = ("mnt", "pid", "net", "user", "uts", "ipc", "cgroup", "time")


def socket_path(root: str) -> str:
    return os.path.join(os.path.abspath(root), DIR, "sock")


def build_id() -> str:
    try:
        from ._build import BUILD_ID
    except ImportError:
        return ""
    return BUILD_ID


# --- per-request process state -------------------------------------------------------------
class _PerThread:
    """sys.stdout/stderr/stdin: the current request's stream in a worker, else the core's own."""

    def __init__(self, name: str, default):
        self._name, self._default = name, default

    def __getattr__(self, attr):
        return getattr(getattr(_req, self._name, None) or self._default, attr)


class _PerThreadDict:
    """rt.core.log's settings, per request."""

    def __init__(self, defaults: dict):
        self._defaults = defaults

    def _d(self) -> dict:
        d = getattr(_req, "log", None)
        if d is None:
            d = _req.log = dict(self._defaults)
        return d

    def __getitem__(self, key):
        return self._d()[key]

    def update(self, **kw):
        self._d().update(kw)


class _PerThreadEnviron(MutableMapping):
    """os.environ: the current request's environment in a worker, else the core's own."""

    def __init__(self, base):
        self._base = base

    def _env(self):
        env = getattr(_req, "environ", None)
        return self._base if env is None else env

    def __getitem__(self, key):
        return self._env()[key]

    def __setitem__(self, key, value):
        self._env()[key] = value

    def __delitem__(self, key):
        del self._env()[key]

    def __iter__(self):
        return iter(self._env())

    def __len__(self):
        return len(self._env())

    def copy(self) -> dict:
        return dict(self._env())


_req = threading.local()


def _own_fs() -> None:
    """This worker thread gets its own cwd and umask (unshare(CLONE_FS)), once."""
    if getattr(_req, "own_fs", False):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_FS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_FS)")
    _req.own_fs = True


# --- the caller's context --------------------------------------------------------------------
def _status_facts(pid: int | str) -> dict:
    with open(f"/proc/{pid}/status", "rb") as f:
        return {line.split(b":")[0]: line.split(None, 1)[1:] for line in f if line.startswith(_STATUS_KEYS)}


def _ns_ids(pid) -> dict:
    out = {}
    for ns in _NAMESPACES:
        try:
            out[ns] = os.stat(f"/proc/{pid}/ns/{ns}").st_ino
        except FileNotFoundError:
            out[ns] = None
    return out


def _label(pid) -> bytes:
    try:
        with open(f"/proc/{pid}/attr/current", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _root_id(pid) -> tuple:
    st = os.stat(f"/proc/{pid}/root")
    return st.st_dev, st.st_ino


class Context:
    """The facts of this core that a caller must share to be served here."""

    def __init__(self):
        self.ns, self.status, self.label, self.root = _ns_ids("self"), _status_facts("self"), _label("self"), _root_id("self")
        self.settings = _settings(os.environ)


def _settings(env) -> dict:
    return {k: v for k, v in env.items()
            if k.startswith(SETTINGS_PREFIX) and k not in NOT_SETTINGS and not k.startswith("RT_CORE")}


def context_mismatch(ctx: Context, pid: int, pidfd: int, env: dict) -> str | None:
    """Why a caller (pinned by pidfd) would not be acted for exactly as itself; None if it would."""
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE"):  # seen in-process only: the core runs `python -I`
        if env.get(var):
            return f"{var} is set"
    settings = _settings(env)
    if settings != ctx.settings:
        keys = sorted(k for k in settings.keys() | ctx.settings.keys() if settings.get(k) != ctx.settings.get(k))
        return "environment differs: " + ", ".join(keys)
    try:
        ns, status, label, root = _ns_ids(pid), _status_facts(pid), _label(pid), _root_id(pid)
    except OSError as e:
        return f"cannot read the caller's /proc entry: {e.strerror}"
    import select
    if select.select([pidfd], [], [], 0)[0]:
        return "the caller exited"  # its pid may now be another process's: nothing read is its
    for k in _NAMESPACES:
        if ns[k] != ctx.ns[k]:
            return f"{k} namespace differs"
    if root != ctx.root:
        return "root directory differs"
    for k in _STATUS_KEYS:
        k = k.rstrip(b":")
        if status.get(k) != ctx.status.get(k):
            return f"{k.decode()} differs"
    if label != ctx.label:
        return "security label differs"
    return None


def _pidfd_pid(pidfd: int) -> int | None:
    try:
        with open(f"/proc/self/fdinfo/{pidfd}", "rb") as f:
            for line in f:
                if line.startswith(b"Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


# --- framing ----------------------------------------------------------------------------------
class Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, kind: bytes, fields=(), fds=()) -> None:
        body = kind + b"".join(os.fsencode(str(f)) + b"\0" for f in fields)
        self.send_raw(body, fds)

    def send_raw(self, body: bytes, fds=()) -> None:
        data = struct.pack("<I", len(body)) + body
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        sent = self.sock.sendmsg([data], anc)
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def _until(self, deadline) -> None:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("the front end took too long")
            self.sock.settimeout(left)

    def recv(self, limit: int, maxfds: int = 0, deadline: float | None = None):
        """(body, fds, creds): one frame; EOFError when the peer hung up, socket.timeout
        past the deadline (time.monotonic)."""
        fds, creds = [], None
        head = b""
        while len(head) < 4:
            self._until(deadline)
            data, anc, _, _ = self.sock.recvmsg(4 - len(head), socket.CMSG_SPACE(maxfds * 4) + socket.CMSG_SPACE(12),
                                                socket.MSG_CMSG_CLOEXEC)
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(cdata[:len(cdata) - len(cdata) % 4])
                    fds.extend(got)
                elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    creds = struct.unpack("iII", cdata[:12])
            if not data:
                for fd in fds:
                    os.close(fd)
                raise EOFError
            head += data
        (n,) = struct.unpack("<I", head)
        if n > limit:
            for fd in fds:
                os.close(fd)
            raise ValueError(f"frame of {n} bytes (at most {limit})")
        body = b""
        while len(body) < n:
            self._until(deadline)
            chunk = self.sock.recv(n - len(body))
            if not chunk:
                for fd in fds:
                    os.close(fd)
                raise EOFError
            body += chunk
        return body, fds, creds


def parse_request(body: bytes) -> tuple[str, int, list[str], dict]:
    """(build id, umask, argv, env) of a request body; ValueError when it is malformed."""
    if not body.endswith(b"\0"):
        raise ValueError("unterminated field")
    fields = body[:-1].split(b"\0")
    if len(fields) > MAX_FIELDS:
        raise ValueError("too many fields")
    it = iter(fields)

    def take() -> bytes:
        try:
            return next(it)
        except StopIteration:
            raise ValueError("truncated request") from None

    def count() -> int:
        v = take()
        if not v.isdigit() or int(v) > MAX_FIELDS:
            raise ValueError(f"bad count {v[:20]!r}")
        return int(v)
    if take() != PROTO:
        raise ValueError("not an rt-core/1 request")
    bid = take().decode("ascii", "replace")
    try:
        umask = int(take(), 8)
    except ValueError:
        raise ValueError("bad umask") from None
    if not 0 <= umask <= 0o777:
        raise ValueError("bad umask")
    argv = [os.fsdecode(take()) for _ in range(count())]
    env = {}
    for _ in range(count()):
        k, eq, v = os.fsdecode(take()).partition("=")
        if eq:
            env[k] = v
    if next(it, None) is not None or not argv:
        raise ValueError("malformed request")
    return bid, umask, argv, env


# --- the front end, as the spawner of this request -------------------------------------------
class Front:
    """rt.shim.spawn's remote spawner: the caller's front end forks the process."""

    def __init__(self, conn: Conn):
        self.conn, self.subreaper, self.handed = conn, False, None

    def spawn(self, exe, argv, *, fds, env, setsid):
        from rt.shim.spawn import Spawned
        own = None
        if not isinstance(exe, int):
            exe = own = os.open(exe, os.O_PATH | os.O_CLOEXEC)
        try:
            targets = list(fds)
            flags = ("s" if setsid else "") + ("r" if self.subreaper else "") or "-"
            envs = ["-"] if env is None else [len(env), *(f"{k}={v}" for k, v in env.items())]
            self.conn.send(b"S", [flags, len(argv), *argv, *envs, len(targets), *targets],
                           [exe, *(fds[t] for t in targets)])
        finally:
            if own is not None:
                os.close(own)
        body, got, _ = self.conn.recv(64, maxfds=1, deadline=time.monotonic() + SPAWN_DEADLINE)
        self.conn.sock.settimeout(IO_TIMEOUT)
        pid = _pidfd_pid(got[0]) if len(got) == 1 else None
        if body[:1] != b"P" or pid is None or body[1:].rstrip(b"\0") != str(pid).encode():
            for fd in got:
                os.close(fd)
            err = body[1:].rstrip(b"\0").decode(errors="replace")
            raise OSError(int(err[1:]) if err[:1] == "-" and err[1:].isdigit() else 0,
                          f"the front end could not start {argv[0]}")
        return Spawned(pid, got[0], False)

    def hand_over(self, pid: int, then: list[str] | None) -> None:
        """End the request with W: the front end waits for pid, then runs `then`."""
        self.handed = (pid, then or [])


# --- serving one connection (in a worker thread) ---------------------------------------------
class Stats:
    def __init__(self):
        self.started, self.served, self.fallbacks, self.errors = time.time(), 0, 0, 0
        self.busy = 0
        self.lock = threading.Lock()


def serve_connection(sock: socket.socket, core) -> None:
    conn = Conn(sock)
    fds: list[int] = []
    try:
        deadline = time.monotonic() + REQUEST_DEADLINE
        try:
            body, fds, creds = conn.recv(MAX_REQUEST, maxfds=8, deadline=deadline)
            bid, umask, argv, env = parse_request(body)
        except (ValueError, UnicodeError) as e:
            conn.send(b"F", [f"bad request: {e}"])
            return
        why = _who_is_wrong(sock, fds, creds, core, env)
        if why is None and bid != core.build_id:
            why = f"build id {bid or '?'} is not the core's {core.build_id}"
            core.stale = True  # an upgraded install in our very context: leave once idle
        if why:
            _declined(core, argv, why)
            conn.send(b"F", [why])
            return
        conn.send(b"A")
        go, more, _ = conn.recv(16, maxfds=2, deadline=deadline)
        fds += more
        if go != b"G" or len(more) != 2:
            return
        cwd, stdin = more
        sock.settimeout(IO_TIMEOUT)  # a front end that stops reading cannot hold a worker for ever
        out = {1: io.StringIO(), 2: io.StringIO()}
        try:
            code = _run_verb(conn, argv, env, umask, cwd, (stdin, out[1], out[2]), core)
            front = _req.front
        finally:
            _req.front = None
        if code is None:
            return
        for n, text in out.items():  # rt's own output: the front end writes it
            data = text.getvalue().encode("utf-8", "surrogateescape")
            for at in range(0, len(data), OUTPUT_CHUNK):
                conn.send_raw(b"O" + str(n).encode() + data[at:at + OUTPUT_CHUNK])
        if front.handed:
            pid, then = front.handed
            conn.send(b"W", [pid, len(then), *then])
        else:
            conn.send(b"X", [code])
    except (OSError, EOFError):
        pass  # the front end hung up, or timed out
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        sock.close()


def _who_is_wrong(sock, fds, creds, core, env) -> str | None:
    """None when the process that connected is the one that sent the request, is of our uid,
    and shares our context; else why not. The kernel names the peer (SO_PEERCRED, set at
    connect, and its SO_PEERPIDFD where the kernel has it); the pidfd the sender passed is
    used only where it names that same process."""
    if len(fds) != 1:
        return "bad request: expected 1 fd"
    pid, uid, _ = struct.unpack("iII", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if creds is not None and creds[0] not in (0, pid):
        return "the request was not sent by the process that connected"
    for who in (uid, *(creds[1:2] if creds is not None else ())):
        if who != os.geteuid():
            return f"uid {who} is not the core's"
    pidfd = _peer_pidfd(sock)
    if pidfd is None:
        pidfd = fds[0]
    else:
        fds.append(pidfd)  # closed with the rest
    if _pidfd_pid(pidfd) != pid:
        return "the request's pidfd is not its sender's"
    return context_mismatch(core.context, pid, pidfd, env)


SO_PEERPIDFD = 77


def _peer_pidfd(sock) -> int | None:
    """The kernel's pidfd of the peer (Linux 6.5+), None where it has none."""
    try:
        fd = int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4), sys.byteorder, signed=True)
    except OSError:
        return None
    if fd >= 0:
        os.set_inheritable(fd, False)
        return fd
    return None


def _run_verb(conn, argv, env, umask, cwd, stdio, core) -> int | None:
    """rt's CLI for this request, as the caller's own process would run it; None once the
    request has been answered with F (a step that must run in the caller)."""
    from rt.shim import spawn
    from . import cli
    _own_fs()
    os.fchdir(cwd)
    os.umask(umask)
    stdin = open(stdio[0], "r", closefd=False, encoding="utf-8", errors="surrogateescape")
    _req.stdin, _req.stdout, _req.stderr = stdin, stdio[1], stdio[2]
    _req.log = None
    _req.front = front = Front(conn)
    _req.environ = env
    front.root = core.root
    spawn.set_remote(front)
    try:
        code = cli.main(argv[1:], prog=argv[0])
    except NeedsCaller as e:
        _declined(core, argv, e.why)
        conn.send(b"F", [e.why])
        return None
    except SystemExit as e:  # a verb's sys.exit() ends its request, never the core
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        spawn.set_remote(None)
        _req.stdin = _req.stdout = _req.stderr = _req.environ = None
    with core.stats.lock:
        core.stats.served += 1
    return code


def _declined(core, argv, why: str) -> None:
    with core.stats.lock:
        core.stats.fallbacks += 1
    sys.__stderr__.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} in-process: {' '.join(argv[1:6])}: {why}\n")
    sys.__stderr__.flush()


def current_front() -> "Front | None":
    """The front end of this thread's request; None outside a request."""
    return getattr(_req, "front", None)


# --- the service ------------------------------------------------------------------------------
CURRENT = None  # the Core this process serves


class Core:
    def __init__(self, root: str, idle: float):
        self.root, self.idle = os.path.abspath(root), idle
        self.build_id = build_id()
        self.context = Context()
        self.stats = Stats()
        self.stale = False
        self.stopping = False


def reserve_low_fds() -> None:
    """Occupy fds 3..FD_FLOOR, so that every fd the core opens is above any fd number a caller
    preserves for its container: a spawn places ours under the same numbers in the child."""
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    for fd in range(3, FD_FLOOR + 1):
        try:
            os.fstat(fd)
        except OSError:
            os.dup2(null, fd, inheritable=False)
    if null > FD_FLOOR:
        os.close(null)


def private_dir(root: str) -> int:
    """An O_PATH fd of <root>/.rt-core, made if missing: a real directory (no symlink), ours,
    mode 0700. Everything the core makes there is made through this fd, so nobody who can
    write the root can redirect it (a symlink, a directory swapped in)."""
    import stat
    root = os.path.abspath(root)
    os.makedirs(root, mode=0o711, exist_ok=True)
    try:
        os.mkdir(os.path.join(root, DIR), 0o700)
    except FileExistsError:
        pass
    d = os.path.join(root, DIR)
    try:
        fd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise RtError(f"{d}: {e.strerror}")
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise RtError(f"{d}: not a private directory of uid {os.geteuid()} (mode 0700); remove it")
    return fd


def listen(root: str) -> socket.socket:
    dfd = private_dir(root)
    try:
        here = f"/proc/self/fd/{dfd}"
        try:
            os.unlink("sock", dir_fd=dfd)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            s.bind(f"{here}/sock")  # the checked directory itself, whatever its path does now
        finally:
            os.umask(old)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        s.listen(128)
        return s
    finally:
        os.close(dfd)


def install_per_request_state() -> None:
    sys.stdout = _PerThread("stdout", sys.stdout)
    sys.stderr = _PerThread("stderr", sys.stderr)
    sys.stdin = _PerThread("stdin", sys.stdin)
    log._state = _PerThreadDict(dict(log._state))
    os.environ = _PerThreadEnviron(os.environ)
    import subprocess  # a program the core runs gets the request's environment, as it would in-process
    popen_init = subprocess.Popen.__init__

    def init(self, *args, env=None, **kw):
        if env is None and getattr(_req, "environ", None) is not None:
            env = dict(_req.environ)
        popen_init(self, *args, env=env, **kw)
    subprocess.Popen.__init__ = init


async def serve(core: Core, lsock: socket.socket, ready=None) -> None:
    import signal

    import trio
    limiter = trio.CapacityLimiter(64)
    try:
        core.sock_ino = os.stat(socket_path(core.root)).st_ino
    except OSError:
        core.sock_ino = None
    tsock = trio.socket.from_stdlib_socket(lsock)
    last = [time.monotonic()]

    slots = trio.Semaphore(MAX_CONNECTIONS)

    async def one(sock):
        with core.stats.lock:
            core.stats.busy += 1
        try:
            await trio.to_thread.run_sync(serve_connection, sock, core, limiter=limiter)
        except Exception as e:  # one request's failure never takes the core down
            with core.stats.lock:
                core.stats.errors += 1
            log.warning(f"core: request failed: {e!r}")
        finally:
            with core.stats.lock:
                core.stats.busy -= 1
            last[0] = time.monotonic()
            slots.release()

    async with trio.open_nursery() as nursery:
        async def watch_signals():
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
                async for _ in sigs:
                    nursery.cancel_scope.cancel()

        async def watch_idle():
            while True:
                await trio.sleep(0.5 if core.stale or core.stopping else min(5.0, max(core.idle / 4, 0.5)))
                quiet = core.stats.busy == 0 and time.monotonic() - last[0]
                if _socket_gone(core, lsock):
                    core.stopping = True  # its root was removed: nobody can reach it any more
                if core.stats.busy == 0 and (core.stopping or core.stale or (core.idle and quiet >= core.idle)):
                    nursery.cancel_scope.cancel()
        nursery.start_soon(watch_signals)
        nursery.start_soon(watch_idle)
        if ready:
            ready()
        while True:
            await slots.acquire()
            try:
                s, _ = await tsock.accept()
            except OSError as e:  # out of fds or memory: back off, keep serving
                slots.release()
                sys.__stderr__.write(f"core: accept: {e.strerror}\n")
                await trio.sleep(0.1)
                continue
            raw = socket.socket(fileno=s.detach())
            raw.setblocking(True)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            last[0] = time.monotonic()
            nursery.start_soon(one, raw)


def _socket_gone(core: Core, lsock: socket.socket) -> bool:
    """The path we listen on no longer leads to our socket (its directory was removed)."""
    try:
        return core.sock_ino is not None and os.stat(socket_path(core.root)).st_ino != core.sock_ino
    except OSError:
        return True


def status_text(core: Core) -> str:
    from . import jsonio
    rss = 0
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
    st = core.stats
    return jsonio.dumps({"pid": os.getpid(), "root": core.root, "build": core.build_id,
                         "uptime": round(time.time() - st.started, 1), "served": st.served,
                         "fallbacks": st.fallbacks, "busy": st.busy, "idle_timeout": core.idle,
                         "rss_kib": rss}, indent=2) + "\n"
