"""Start the lean stub (rt.shim.stub) and drive it through the handshake to Ready."""
import os
import sys

from .protocol import PROTOCOL_VERSION, Channel, Child, Hello, ProtocolError, Ready, Run

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stub.py")


class Launched:
    def __init__(self, shim_pid: int, pid: int):
        self.shim_pid, self.pid = shim_pid, pid


def launch(plan: dict, *, on_hello=None, on_child=None, timeout: float = 60.0) -> Launched:
    """Spawn the stub, send it `plan`, and return once the container init is Ready.

    on_hello(shim_pid) runs before the plan is sent (e.g. to place the shim in a cgroup,
    so the init is born there); on_child(pid) runs as soon as the init exists.
    """
    r_plan, w_plan = os.pipe2(os.O_CLOEXEC)
    r_msg, w_msg = os.pipe2(os.O_CLOEXEC)
    os.set_inheritable(r_plan, True)
    os.set_inheritable(w_msg, True)
    exe = sys.executable
    try:
        shim_pid = os.posix_spawn(exe, [exe, "-I", "-S", "-B", STUB, str(r_plan), str(w_msg)], dict(os.environ))
    finally:
        os.close(r_plan)
        os.close(w_msg)
    chan = Channel(r_msg, w_plan)
    reaped = False
    try:
        hello = chan.expect(Hello, timeout, "shim exited before its handshake")
        if hello.version != PROTOCOL_VERSION:
            raise ProtocolError(f"shim protocol version {hello.version}, core speaks {PROTOCOL_VERSION}")
        if on_hello:
            on_hello(shim_pid)
        chan.send(Run(plan=plan))
        child = chan.expect(Child, timeout, "shim exited before starting the container")
        if on_child:
            on_child(child.pid)
        os.waitpid(shim_pid, 0)
        reaped = True
        chan.expect(Ready, timeout, "container init exited before it was ready")
        return Launched(shim_pid, child.pid)
    finally:
        chan.close()
        if not reaped:
            try:
                os.kill(shim_pid, 9)
                os.waitpid(shim_pid, 0)
            except ChildProcessError:
                pass
            except ProcessLookupError:
                os.waitpid(shim_pid, 0)
