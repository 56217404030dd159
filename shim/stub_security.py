"""The stub's process security and setup: capabilities, seccomp, LSM labels, the user, scheduling,
signals, the terminal, hooks and the sealed exec. Builtins and ctypes only (see stub.py)."""
import ctypes
import fcntl
import os
import sys

from stub_sys import (CLOSE_RANGE_CLOEXEC, MS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_CAP_AMBIENT_RAISE,
                      PR_CAPBSET_DROP, SYS_RT_SIGACTION, Fail, b, check, libc, mount)


# --- process ---------------------------------------------------------------
class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def mask(caps):
    m = 0
    for c in caps:
        m |= 1 << c
    return m


def drop_bounding(caps, last_cap):
    """Needs CAP_SETPCAP, so it runs before we switch to the container's user."""
    bounding = mask(caps["bounding"])
    for c in range(last_cap + 1):
        if not bounding & (1 << c):
            check(libc.prctl(PR_CAPBSET_DROP, c, 0, 0, 0), f"drop capability {c} from bounding set")


def apply_caps(caps):
    """caps: dict of set name -> list of cap numbers (already filtered to what the host has)."""
    data = (CapData * 2)()
    for i in range(2):
        sh = 32 * i
        data[i].effective = (mask(caps["effective"]) >> sh) & 0xFFFFFFFF
        data[i].permitted = (mask(caps["permitted"]) >> sh) & 0xFFFFFFFF
        data[i].inheritable = (mask(caps["inheritable"]) >> sh) & 0xFFFFFFFF
    check(libc.capset(ctypes.byref(CapHeader(0x20080522, 0)), data), "capset")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for c in caps["ambient"]:
        check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0), f"raise ambient capability {c}")


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "ppc64le": 358, "s390x": 348, "riscv64": 277}


def load_seccomp(sc, listener_sock):
    """Install the BPF program the core compiled; hand a notify fd to the listener."""
    bpf = sc["bpf"]
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    nr = SYS_SECCOMP.get(os.uname().machine)
    if nr is None:
        raise Fail(f"seccomp: unsupported architecture {os.uname().machine}")
    fd = check(libc.syscall(nr, 1, ctypes.c_uint(sc["flags"]), ctypes.byref(prog)), "load seccomp filter")
    if listener_sock is not None:
        import _socket
        msg = sc["listener_state"].replace("__PID__", str(HOST_PID)).encode()
        listener_sock.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
        listener_sock.close()
        os.close(fd)


def connect_listener(path):
    import _socket
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        raise Fail(f"seccomp listener {path}: {e.strerror}")
    return s


TIOCSPTLCK, TIOCGPTN, TIOCSCTTY, TIOCSWINSZ = 0x40045431, 0x80045430, 0x540E, 0x5414


def setup_terminal(console_fd, size, console_bind=False):
    """A pty from the container's own devpts: master to the console socket, slave as stdio."""
    import _socket
    import fcntl
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, (0).to_bytes(4, sys.byteorder))
    n = int.from_bytes(fcntl.ioctl(master, TIOCGPTN, bytes(4)), sys.byteorder)
    slave = os.open(f"/dev/pts/{n}", os.O_RDWR | os.O_NOCTTY)
    if console_bind:  # runc: the container's /dev/console is its terminal
        try:
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            pass
        mount(f"/dev/pts/{n}", "/dev/console", None, MS["bind"])
    if size:
        rows, cols = size
        fcntl.ioctl(slave, TIOCSWINSZ, rows.to_bytes(2, sys.byteorder) + cols.to_bytes(2, sys.byteorder) + bytes(4))
    sock = _socket.socket(fileno=console_fd)
    try:
        sock.sendmsg([b"/dev/ptmx"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, master.to_bytes(4, sys.byteorder))])
    except OSError as e:
        raise Fail(f"send the pty master to the console socket: {e.strerror}")
    finally:
        sock.close()
        os.close(master)
    if os.getsid(0) != os.getpid():
        os.setsid()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def run_hooks(stage, hooks, state, exec_fd, execveat=True):
    """createContainer/startContainer hooks, inside the container: state JSON on stdin."""
    import time
    for h in hooks:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(r, 0)
                helper_exec(exec_fd, h["path"], h["args"], dict(e.split("=", 1) for e in h["env"] if "=" in e),
                            execveat=execveat)
            finally:
                os._exit(127)
        os.close(r)
        try:
            os.write(w, state.encode())
        except BrokenPipeError:
            pass
        os.close(w)
        deadline = None if h["timeout"] is None else time.monotonic() + h["timeout"]
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if deadline is not None and time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise Fail(f"{stage} hook {h['path']}: timed out after {h['timeout']}s")
            time.sleep(0.002)
        if status:
            raise Fail(f"{stage} hook {h['path']}: exit status {os.waitstatus_to_exitcode(status)}")


def mark_cloexec(first):
    if libc.close_range(first, ctypes.c_uint(0xFFFFFFFF), CLOSE_RANGE_CLOEXEC) == 0:
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
            except OSError:
                pass


PROC_SUPER_MAGIC = 0x9FA0


def is_procfs(path):
    """statfs(2) magic: a container can mount anything over its /proc (CVE-2019-16884)."""
    buf = ctypes.create_string_buffer(256)
    return libc.statfs(b(path), buf) == 0 and int.from_bytes(buf.raw[:8], sys.byteorder) == PROC_SUPER_MAGIC


def lsm_attr(lsm):
    """(attr file, label) that the helper writes so its execve switches the AppArmor profile
    or SELinux label of the workload, or ("-", "-"). Fails closed: the core asked for a label
    because the host enforces that LSM."""
    for kind, value, paths in (
            ("apparmor", lsm.get("apparmor") and "exec " + lsm["apparmor"],
             ("/proc/thread-self/attr/apparmor/exec", "/proc/thread-self/attr/exec")),
            ("selinux", lsm.get("selinux"), ("/proc/thread-self/attr/exec",))):
        if value:
            if not is_procfs("/proc/thread-self"):
                raise Fail(f"{kind} {value}: the container's /proc is not procfs")
            for path in paths:
                if os.path.exists(path):
                    # the file itself: procfs, and of the same mount as /proc (not a bind over it)
                    if not is_procfs(path) or os.stat(path).st_dev != os.stat("/proc").st_dev:
                        raise Fail(f"{kind} {value}: {path} is not the kernel's")
                    return path, value
            raise Fail(f"{kind} {value}: {paths[-1]} does not exist")
    return "-", "-"


def helper_exec(exec_fd, path, args, env, lsm=("-", "-"), execveat=True):
    """Exec `path` through rt-exec, from the sealed memfd (CVE-2019-5736): the process that
    execs the workload is never the host's interpreter. Returns only on failure.

    execveat(AT_EMPTY_PATH) needs no path at all; where the seccomp filter does not allow it,
    execve of /proc/self/fd/N (the container's /proc) reaches the same sealed file."""
    argv = ["rt-exec", lsm[0], lsm[1], path, *args]
    if execveat:
        try:
            os.execve(exec_fd, argv, env)
        except OSError as e:
            if e.errno not in (1, 13, 38):  # EPERM, EACCES, ENOSYS
                raise
    if not is_procfs("/proc/self/fd"):  # a /proc of the container's own making would run its binary
        raise Fail("exec: the seccomp profile forbids execveat and the container's /proc is not procfs")
    os.execve(f"/proc/self/fd/{exec_fd}", argv, env)


def find_exec(name, env):
    if "/" in name:
        if not os.path.exists(name):
            raise Fail(f'exec: "{name}": stat {name}: no such file or directory')
        return name
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    for d in path.split(":"):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise Fail(f'exec: "{name}": executable file not found in $PATH')


SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "ppc64le": 355, "s390x": 345, "riscv64": 274}
SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "ppc64le": 273, "s390x": 282, "riscv64": 30}


def set_scheduling(p):
    """process.scheduler (sched_setattr), ioPriority (ioprio_set), execCPUAffinity.initial."""
    arch = os.uname().machine
    if p.get("sched"):
        policy, flags, nice, prio, runtime, deadline, period = p["sched"]
        attr = SchedAttr(ctypes.sizeof(SchedAttr), policy, flags, nice, prio, runtime, deadline, period)
        check(libc.syscall(SYS_SCHED_SETATTR[arch], 0, ctypes.byref(attr), 0), "process.scheduler: sched_setattr")
    if p.get("ioprio") is not None:
        check(libc.syscall(SYS_IOPRIO_SET[arch], 1, 0, p["ioprio"]), "process.ioPriority: ioprio_set")  # WHO_PROCESS
    if (p.get("affinity") or [None, None])[0] is not None:
        try:
            os.sched_setaffinity(0, p["affinity"][0])
        except OSError as e:
            raise Fail(f"process.execCPUAffinity.initial: {e.strerror}", "errno:%d" % e.errno)


class SchedAttr(ctypes.Structure):  # SCHED_ATTR_SIZE_VER0
    _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32), ("flags", ctypes.c_uint64),
                ("nice", ctypes.c_int32), ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64)]


def set_user(p):
    os.umask(p["umask"])
    try:
        os.setgroups(p["groups"])
    except PermissionError:  # a rootless user namespace with setgroups "deny": keep what we have
        with open("/proc/self/setgroups") as f:
            if p["groups"] or f.read().strip() != "deny":
                raise
    os.setgid(p["gid"])
    if p["uid"] != 0 and p["caps"] is not None:
        libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS: caps survive setuid, set below
    os.setuid(p["uid"])


HOST_PID = 0  # our pid as the host sees it (we may be pid 1 of a new pid namespace)


def reset_signals():
    """Python ignores SIGPIPE and SIGXFSZ, and an ignored signal survives execve: the
    workload gets every signal at its default and none blocked, as under runc."""
    import _signal
    for sig in range(1, 65):
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP, and libc's own 32 and 33, which glibc's
            if sig in (32, 33) and SYS_RT_SIGACTION:  # posix_spawn leaves ignored: the raw call
                libc.syscall(SYS_RT_SIGACTION, sig, (ctypes.c_ulong * 4)(), None, 8)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
