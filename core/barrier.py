"""The create/start barrier on exec.fifo (the init holds it open O_RDWR and blocks reading)."""
import errno
import os
import select

from .errors import RtError


def release(fifo: str, timeout: float = 10.0) -> None:
    """Let the waiting init exec, and return once it has (its fd closes on exec)."""
    try:
        wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            raise RtError("cannot start a container that is not waiting to start")
        raise
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.write(wfd, b"\0")
        os.close(wfd)
        wfd = -1
        p = select.poll()
        p.register(rfd, 0)  # wake only on POLLHUP: the last writer (the init) is gone
        p.poll(timeout * 1000)
    finally:
        if wfd >= 0:
            os.close(wfd)
        os.close(rfd)
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass

