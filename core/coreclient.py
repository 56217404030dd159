"""A Python front end for the resident core: `rt core status|stop` and the tests use it.

It speaks the same protocol as core/client.c, without spawning: a request that needs a
spawn gets an error here.
"""
import os
import socket

from .server import PROTO, Conn, build_id, socket_path


class NoCore(Exception):
    pass


def request(root: str, argv: list[str], *, stdio=(0, 1, 2), env: dict | None = None, timeout: float = 10.0,
            build: str | None = None, sock: socket.socket | None = None) -> tuple[str, list[str]]:
    """Send argv to the core of `root` (or over `sock`, connected already); returns (kind,
    fields) of its last answer: X (exit code), F (fallback reason) or W. NoCore when no core
    answers."""
    s = sock or connect(root)
    s.settimeout(timeout)
    env = dict(os.environ) if env is None else env
    fields = [PROTO, (build_id() if build is None else build).encode(), b"%o" % _umask(), str(len(argv)).encode(),
              *map(os.fsencode, argv), str(len(env)).encode(), *(os.fsencode(f"{k}={v}") for k, v in env.items())]
    body = b"".join(f + b"\0" for f in fields)
    pidfd = os.pidfd_open(os.getpid())
    cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    go = [cwd, stdio[0]]
    conn = Conn(s)
    try:
        import array
        import struct
        s.sendmsg([struct.pack("<I", len(body)) + body],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd]))])
        while True:
            msg, fds, _ = conn.recv(1 << 20, maxfds=16)
            for fd in fds:
                os.close(fd)
            kind, rest = msg[:1].decode(), [os.fsdecode(f) for f in msg[1:].split(b"\0")[:-1]]
            if kind == "A":
                conn.send(b"G", fds=go)
                continue
            if kind == "O":  # rt's output, to our stdout or stderr
                os.write(stdio[int(msg[1:2] or b"1")], msg[2:])
                continue
            if kind == "S":
                raise NoCore("this front end does not spawn")
            return kind, rest
    except (OSError, EOFError) as e:
        raise NoCore(str(e) or "the core hung up") from None
    finally:
        os.close(pidfd)
        os.close(cwd)
        s.close()


def connect(root: str) -> socket.socket:
    """A connection to the core of `root`, only if it is a core of our own uid in a private
    directory of ours (anything else there is someone else's, and gets nothing of ours)."""
    import stat
    import struct
    path = socket_path(root)
    try:
        st = os.lstat(os.path.dirname(path))
    except OSError as e:
        raise NoCore(e.strerror) from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise NoCore(f"{os.path.dirname(path)} is not a private directory of ours")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
        _, uid, _ = struct.unpack("iII", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except OSError as e:
        s.close()
        raise NoCore(e.strerror) from None
    if uid != os.geteuid():
        s.close()
        raise NoCore(f"the socket's owner is uid {uid}, not us")
    return s


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m
