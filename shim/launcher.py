"""Start the lean stub (rt.shim.stub) and drive it through the handshake to Ready."""
import os
import sys

from .protocol import (PROTOCOL_VERSION, Channel, Child, Error, Hello, Hooks, IdMap, ProtocolError, Ready, Resume,
                       Run, ShimFailed, UnexpectedMessage)

SHIM_DIR = os.path.dirname(os.path.abspath(__file__))
STUB_PATH = os.path.join(SHIM_DIR, "stub.py")  # builtins and ctypes only: other kinds may ship it
# Import the stub as a module (its .pyc is cached at install) rather than run it as a
# script, which would compile it on every start.
STUB_CMD = f"import sys; sys.path[:0] = [{SHIM_DIR!r}]; import stub; stub.main()"


def write_id_maps(pid: int, userns: dict) -> None:
    """The new user namespace's maps. Root writes them; anyone may map their own single id
    (gid after setgroups "deny"); a user's other ids go through newuidmap/newgidmap, which
    check /etc/subuid and /etc/subgid (as runc does rootless)."""
    for name, helper, own in (("uid_map", "newuidmap", os.geteuid()), ("gid_map", "newgidmap", os.getegid())):
        lines = [line.split() for line in userns[name].splitlines() if line.strip()]
        if os.geteuid() != 0 and (len(lines) != 1 or lines[0][1:] != [str(own), "1"]):
            _id_helper(pid, name, helper, lines)
            continue
        if os.geteuid() != 0 and name == "gid_map":
            with open(f"/proc/{pid}/setgroups", "w") as f:
                f.write("deny")
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, userns[name].encode())
        except OSError as e:
            raise ProtocolError(f"write {name} ({userns[name].strip()!r}): {e.strerror}")
        finally:
            os.close(fd)


def _id_helper(pid: int, name: str, helper: str, lines: list[list[str]]) -> None:
    import shutil
    import subprocess
    exe = shutil.which(helper) or next((p for p in (f"/usr/bin/{helper}", f"/bin/{helper}") if os.path.exists(p)),
                                       None)
    mapping = " ".join(" ".join(x) for x in lines)
    if exe is None:
        raise ProtocolError(f"{name} ({mapping}) maps ids other than your own: that needs {helper} "
                            "(Debian's uidmap package) and your ranges in /etc/subuid and /etc/subgid")
    p = subprocess.run([exe, str(pid), *mapping.split()], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise ProtocolError(f"{helper} {pid} {mapping}: {(p.stderr or p.stdout).strip()} (the ranges must be "
                            "yours in /etc/subuid and /etc/subgid)")


def read_only_interpreter() -> int | None:
    """The interpreter, to spawn the stub from (posix_spawn of /proc/self/fd/N).

    The stub runs inside the container's namespaces: a process there that holds
    /proc/<stub>/exe (CVE-2019-5736) reaches the file through this mount, which refuses
    writes (EROFS). None where the kernel or our privileges refuse it (rootless: the file
    is not ours to write anyway)."""
    return read_only_file(os.path.realpath(sys.executable))


def read_only_file(path: str) -> int | None:
    """`path` on a detached, read-only mount (open_tree + mount_setattr), as an fd: nothing
    is attached to the mount table, and the mount goes with its last reference."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(428, -100, os.fsencode(path),  # open_tree(AT_FDCWD, ...)
                      ctypes.c_uint(1 | os.O_CLOEXEC))  # OPEN_TREE_CLONE
    if fd < 0:
        return None
    attr = (ctypes.c_uint64 * 4)(1 | 2 | 4, 0, 0, 0)  # MOUNT_ATTR_RDONLY | NOSUID | NODEV
    if libc.syscall(442, fd, b"", ctypes.c_uint(0x1000), ctypes.byref(attr), ctypes.sizeof(attr)) < 0:  # AT_EMPTY_PATH
        os.close(fd)
        return None
    return fd


class Launched:
    def __init__(self, shim_pid: int, pid: int):
        self.shim_pid, self.pid = shim_pid, pid


def launch(plan, *, pass_fds: tuple = (), on_spawn=None, on_hello=None, on_child=None, on_hooks=None,
           timeout: float = 60.0) -> Launched:
    """Spawn the stub, send it `plan`, and return once the container init is Ready.

    on_spawn(shim_pid) runs right after the spawn, while the stub interpreter starts (the
    place to join cgroups: a v1 migration can cost an RCU grace period, and this overlaps
    it with the stub's start-up); on_hello(shim_pid) after the handshake, before the plan;
    on_child(pid) as soon as the container init exists. pass_fds are handed to the stub
    under the same numbers (the plan refers to them) and closed here. With plan["hook_sync"],
    the init stops before pivot_root; on_hooks(pid) runs the runtime-namespace hooks there and
    returns the state JSON for the container's own hooks.
    """
    from .spawn import spawn
    r_plan, w_plan = os.pipe2(os.O_CLOEXEC)
    r_msg, w_msg = os.pipe2(os.O_CLOEXEC)
    exe = sys.executable
    sealed = read_only_interpreter()
    try:
        shim = spawn(exe if sealed is None else sealed, [exe, "-I", "-S", "-B", "-c", STUB_CMD, str(r_plan), str(w_msg)],
                     fds={fd: fd for fd in (r_plan, w_msg, *pass_fds)})
    finally:
        for fd in (r_plan, w_msg, *pass_fds) + (() if sealed is None else (sealed,)):
            os.close(fd)
    shim_pid = shim.pid
    chan = Channel(r_msg, w_plan)
    reaped = False
    try:
        if on_spawn:
            on_spawn(shim_pid)
        hello = chan.expect(Hello, timeout, "shim exited before its handshake")
        if hello.version != PROTOCOL_VERSION:
            raise ProtocolError(f"shim protocol version {hello.version}, core speaks {PROTOCOL_VERSION}")
        if on_hello:
            on_hello(shim_pid)
        chan.send(Run(plan=plan.wire() if hasattr(plan, "wire") else plan))  # a typed plan, or 1.0's dict
        msg = chan.expect((IdMap, Child), timeout, "shim exited before starting the container")
        if isinstance(msg, IdMap):
            write_id_maps(msg.pid, plan["userns"])
            chan.send(Resume())
            msg = chan.expect(Child, timeout, "shim exited before starting the container")
        child = msg
        if on_child:
            on_child(child.pid)
        shim.wait()
        reaped = True
        while True:
            msg = chan.recv(timeout)
            if msg is None:
                raise ProtocolError("container init exited before it was ready")
            if isinstance(msg, Error):
                raise ShimFailed(msg.reason, msg.kind)
            if isinstance(msg, Ready):
                return Launched(shim_pid, child.pid)
            if not isinstance(msg, Hooks) or on_hooks is None:
                raise UnexpectedMessage(Ready, msg)
            chan.send(Resume(state=on_hooks(child.pid)))
    finally:
        chan.close()
        if not reaped:
            shim.kill(9)
            shim.wait()
        shim.close()
