"""Who starts the processes that outlive a verb: the stub, a VM shim.

In-process, rt posix_spawns them itself. Under the resident core (rt.core.server) the
core's request sets `remote` for its thread, and the caller's front end forks them, so
the container's init stays a descendant of the caller (conmon and containerd's shim are
subreapers, and `rt run` waits for it). Either way the caller gets a Spawned with a pidfd.
"""
import os
import select
import threading

_local = threading.local()


def remote():
    """The front end that spawns for this thread's request, or None (in-process)."""
    return getattr(_local, "remote", None)


def set_remote(front) -> None:
    _local.remote = front


class Spawned:
    """A process we started, pinned by a pidfd. `ours` says whether we may waitpid it."""

    def __init__(self, pid: int, pidfd: int, ours: bool):
        self.pid, self.pidfd, self.ours = pid, pidfd, ours

    def wait(self, timeout: float | None = None) -> bool:
        """True once it has exited (reaped when it is our child), False on timeout."""
        ready, _, _ = select.select([self.pidfd], [], [], timeout)
        if not ready:
            return False
        if self.ours:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        return True

    def kill(self, sig: int = 9) -> None:
        try:
            import signal
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


def adopt_orphans() -> None:
    """The caller becomes a subreaper: the init that the stub leaves behind is its child
    (a foreground `rt run` or `rt exec` waits for it)."""
    front = remote()
    if front is not None:
        front.subreaper = True
        return
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def spawn(exe, argv: list[str], *, fds: dict[int, int] | None = None, env: dict | None = None,
          setsid: bool = False) -> Spawned:
    """Start `exe` (a path, or an fd to exec) with argv. fds maps the child's fd numbers to
    ours (stdio included); our other inheritable fds are inherited as posix_spawn does. env
    None is the caller's environment."""
    fds = fds or {}
    front = remote()
    if front is not None:
        return front.spawn(exe, argv, fds=fds, env=env, setsid=setsid)
    path = f"/proc/self/fd/{exe}" if isinstance(exe, int) else exe
    actions = [(os.POSIX_SPAWN_DUP2, ours, theirs) for theirs, ours in fds.items() if ours != theirs]
    for theirs, ours in fds.items():
        if ours == theirs:
            os.set_inheritable(ours, True)
    pid = os.posix_spawn(path, argv, dict(os.environ) if env is None else env, setsid=setsid,
                         file_actions=actions)
    return Spawned(pid, os.pidfd_open(pid), True)
