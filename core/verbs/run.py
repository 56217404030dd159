import os
import signal

from ..cli import need_id
from ..errors import NotFound, RtError, front, require_caller
from . import store
from .create import _SIGNALS, _Signalled, _ignore_signals, _restore_signals, _trap_signals, _undo, do_create
from .start import do_start
from rt.shim.spawn import adopt_orphans

_NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGTTIN, signal.SIGTTOU}


def wait_exit(pid: int) -> int:
    """Reap until `pid` exits (orphans of a shared pid namespace come to us too)."""
    while True:
        try:
            got, st = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            return os.waitstatus_to_exitcode(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)


def _wants_terminal(opts) -> bool:
    from rt.spec import SpecError, load_bundle
    try:
        spec = load_bundle(os.path.abspath(opts.bundle or "."))
    except SpecError:
        return False  # create reports it
    return bool(spec.process and spec.process.terminal)


def run(g, opts, pos):
    cid = need_id(pos, "run")
    if not opts.detach and opts.no_subreaper:
        require_caller("--no-subreaper: the caller stops being a subreaper once it has the init")
    if not opts.detach:
        adopt_orphans()  # the init is reparented to us (or our front end), so we can wait for it
        opts["foreground"] = True
    listener = None
    if not opts.detach and not opts.console_socket and _wants_terminal(opts):
        require_caller("a foreground terminal is relayed by the caller's process")
        # runc's foreground terminal: our own console socket, then relay the pty
        from ..relay import ConsoleListener
        listener = ConsoleListener()
        opts["console_socket"] = listener.path
    try:
        c = do_create(g, opts, cid)
    except BaseException:
        if listener:
            listener.close()
        raise
    master = None
    handlers = _trap_signals()  # until it runs, a failure or SIGTERM/SIGHUP removes it
    try:
        if listener:
            try:
                master = listener.receive()
            finally:
                listener.close()
        do_start(c)
    except BaseException as e:
        _ignore_signals()
        _undo(c, made=True)
        if isinstance(e, _Signalled):
            raise RtError(f"run {cid}: interrupted by {_SIGNALS[e.sig]}", 128 + e.sig) from None
        raise
    finally:
        _restore_signals(handlers)
    c.unlock()
    if opts.detach:
        return 0
    pid = c.pid
    if opts.no_subreaper:  # runc's: the init is ours (its child), orphans of its tree go to the host's init
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 0, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER off
    fe = front()
    if fe is not None:  # the front end is the init's subreaper: it waits, then deletes
        cleanup = None if opts.keep else [g.prog, "--root", g.root, *(["--log", g.log] if g.log else []),
                                          "--log-format", g.log_format, "delete", "--force", cid]
        fe.hand_over(pid, cleanup)
        return 0

    if master is not None:
        from ..relay import relay
        code = relay(master, pid)
    else:
        code = forward_and_wait(pid)
    if not opts.keep:
        delete_after(g, cid)
    return code


def forward_and_wait(pid: int) -> int:
    """Forward our signals to `pid` (our child) until it exits; its exit code."""
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
    return wait_exit(pid)


def delete_after(g, cid: str) -> None:
    """A foreground container is deleted once it has exited (a gone one is fine)."""
    from .delete import destroy
    try:
        with store(g).open(cid, lock=True) as c:
            destroy(c, force=True)
    except NotFound:
        pass
