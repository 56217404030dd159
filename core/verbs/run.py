import os
import signal

from ..cli import need_id
from ..errors import NotFound
from . import store
from .create import do_create
from .start import do_start

PR_SET_CHILD_SUBREAPER = 36
_NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGTTIN, signal.SIGTTOU}


def _subreaper() -> None:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def wait_exit(pid: int) -> int:
    """Reap until `pid` exits (orphans of a shared pid namespace come to us too)."""
    while True:
        try:
            got, st = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            return os.waitstatus_to_exitcode(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)


def run(g, opts, pos):
    cid = need_id(pos, "run")
    if not opts.detach:
        _subreaper()  # the init is reparented to us, so we can wait for it
    c = do_create(g, opts, cid)
    try:
        do_start(c)
    except BaseException:
        from .delete import destroy
        destroy(c, force=True)
        c.unlock()
        raise
    c.unlock()
    if opts.detach:
        return 0
    pid = c.pid

    def forward(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    for s in signal.valid_signals():
        if s not in _NOT_FORWARDED:
            try:
                signal.signal(s, forward)
            except (OSError, ValueError):
                pass
    code = wait_exit(pid)
    if not opts.keep:
        from .delete import destroy
        try:
            with store(g).open(cid, lock=True) as c:
                destroy(c, force=True)
        except NotFound:
            pass
    return code
