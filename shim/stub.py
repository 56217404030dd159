"""The per-container shim process: `python -I -S -c "...import stub; stub.main()" RFD WFD`.

It must stay lean: it is the process that waits between `create` and `start`,
so it imports only builtins and ctypes (no site-packages, no rt modules).
The core sends it a *plan* (plain data, built and validated in the core);
the stub joins/creates namespaces, forks the container init as PID 1 of the new
pid namespace, prepares the rootfs, reports `ready`, waits at the exec fifo
and execs the user program. Frames: 4-byte big-endian length + marshal payload,
each payload a dict with a "type" key (see rt.shim.protocol).
"""
import ctypes
import fcntl
import marshal
import os
import sys

PROTOCOL_VERSION = 1

libc = ctypes.CDLL(None, use_errno=True)
for _n in ("mount", "umount2", "pivot_root", "sethostname", "setdomainname", "unshare", "setns", "prctl",
           "capset", "close_range", "syscall", "prlimit"):
    getattr(libc, _n).restype = ctypes.c_int

NS_FLAGS = {"mount": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "user": 0x10000000,
            "pid": 0x20000000, "network": 0x40000000, "cgroup": 0x02000000, "time": 0x00000080}
MS = {"ro": 1, "rdonly": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "sync": 16, "remount": 32,
      "mand": 64, "dirsync": 128, "noatime": 1024, "nodiratime": 2048, "bind": 4096, "move": 8192,
      "rec": 16384, "silent": 32768, "unbindable": 1 << 17, "private": 1 << 18, "slave": 1 << 19,
      "shared": 1 << 20, "relatime": 1 << 21, "strictatime": 1 << 24, "lazytime": 1 << 25}
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 4, 38, 24, 47
PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_CLEAR_ALL = 2, 4
CLOSE_RANGE_CLOEXEC = 4
SYS_OPENAT2, SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 437, 428, 429, 442
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
OPEN_TREE_CLONE, MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH, MOUNT_ATTR_IDMAP = 1, 4, 0x40, 0x100000
RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS = 0x10, 0x02
SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134, "ppc64le": 173, "s390x": 174}.get(os.uname().machine)


class Fail(Exception):
    def __init__(self, msg, kind="error"):
        super().__init__(msg)
        self.kind = kind


def check(ret, what):
    if ret < 0:
        e = ctypes.get_errno()
        raise Fail(f"{what}: {os.strerror(e)}", "errno:%d" % e)
    return ret


def b(s):
    return None if s is None else os.fsencode(s)


def mount(src, dst, fstype, flags, data=None):
    check(libc.mount(b(src), b(dst), b(fstype), ctypes.c_ulong(flags), b(data)),
          f"mount {src or fstype or ''} to {dst}")


# --- framing ---------------------------------------------------------------
def send(fd, msg):
    data = marshal.dumps(msg)
    try:
        os.write(fd, len(data).to_bytes(4, "big") + data)
    except BrokenPipeError:  # the core is gone (a killed create): no one to report to, no traceback
        os._exit(1)


def recv(fd):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    return marshal.loads(_read_exact(fd, int.from_bytes(head, "big")) or b"")


def _read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


# --- paths inside the rootfs ----------------------------------------------
class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(rootfd, path, flags=os.O_PATH | os.O_CLOEXEC):
    """openat2(RESOLVE_IN_ROOT): symlinks in `path` resolve inside the rootfs."""
    how = OpenHow(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    return check(libc.syscall(SYS_OPENAT2, rootfd, b(path), ctypes.byref(how), ctypes.sizeof(how)),
                 f"open {path} in rootfs")


def make_target(rootfd, dst, is_dir, ordinary=None):
    """Create the mount point `dst` inside the root and return an O_PATH fd to it.

    Symlinks on the way are followed as if the rootfs were `/` (a link to /x means
    <rootfs>/x), and missing parts are created there, never on the host. With `ordinary`
    (proc, sysfs: CVE-2023-28642) a symlink or a non-directory on the way is refused.
    """
    todo = [p for p in dst.split("/") if p]
    done = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        dfd = open_in_root(rootfd, "/" + "/".join(done), os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                mode = os.stat(part, dir_fd=dfd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                if todo or is_dir:
                    os.mkdir(part, 0o755, dir_fd=dfd)
                else:
                    os.close(os.open(part, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC,
                                     0o644, dir_fd=dfd))
                done.append(part)
                continue
            if ordinary and mode & 0o170000 != 0o040000:
                raise Fail(f'filesystem "{ordinary}" must be mounted on ordinary directory ({dst})')
            if mode & 0o170000 == 0o120000:  # a symlink: continue from its target, inside the root
                hops += 1
                if hops > 40:
                    raise Fail(f"mount destination {dst}: too many levels of symbolic links")
                target = os.readlink(part, dir_fd=dfd)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p] + todo
                continue
            done.append(part)
        finally:
            os.close(dfd)
    if done[:1] == ["proc"] and len(done) > 1 and "/" + "/".join(done) not in PROC_MOUNTS_ALLOWED:
        # a volume at /x -> /proc/thread-self/attr would fake the LSM attr files (CVE-2019-19921)
        raise Fail(f'"{dst}" cannot be mounted because it is inside /proc')
    return open_in_root(rootfd, "/" + "/".join(done))


# what runc lets a spec mount inside /proc (lxcfs's files)
PROC_MOUNTS_ALLOWED = frozenset(["/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                                 "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
                                 "/proc/sys/kernel/ns_last_pid"])


def fdpath(fd):
    return f"/proc/self/fd/{fd}"


# --- rootfs ----------------------------------------------------------------
def do_mount(m, plan, rootfd):
    src, dst, fstype = m["source"], m["destination"], m["type"]
    is_bind = m["bind"]
    is_dir = True
    if is_bind:
        try:  # an idmapped tree was opened as host root: ask it, not the path
            st = os.fstat(m["tree_fd"]) if m.get("tree_fd") is not None else os.stat(src)
            is_dir = st.st_mode & 0o170000 == 0o040000
        except OSError as e:
            raise Fail(f"mount {src} to {dst}: {e.strerror}")
    tfd = make_target(rootfd, dst, is_dir, fstype if fstype in ("proc", "sysfs") and not is_bind else None)
    try:
        # An O_PATH fd names the mount point under a new mount: reopen to reach the new one.
        if is_bind and m.get("tree_fd") is not None:
            attach_tree(m["tree_fd"], tfd, src)
            tfd = reopen(rootfd, dst, tfd)
            if m["flags"] & ~(MS["bind"] | MS["rec"]):
                mount(None, fdpath(tfd), None, m["flags"] | kept_flags(fdpath(tfd)) | MS["bind"] | MS["remount"])
        elif is_bind:
            mount(src, fdpath(tfd), None, MS["bind"] | (MS["rec"] if m["recursive"] else 0))
            if m["flags"] & ~(MS["bind"] | MS["rec"]):
                tfd = reopen(rootfd, dst, tfd)
                keep = kept_flags(fdpath(tfd)) if plan.get("userns") else 0
                mount(None, fdpath(tfd), None, m["flags"] | keep | MS["bind"] | MS["remount"])
        elif fstype == "cgroup-host":
            mount_cgroup_binds(m, rootfd, dst, tfd)
        else:
            try:
                mount(src, fdpath(tfd), fstype, m["flags"], m["data"] or None)
            except Fail:
                if fstype != "sysfs":
                    raise
                # no private netns: sysfs must be a bind of the host's
                mount("/sys", fdpath(tfd), None, MS["bind"] | MS["rec"])
                tfd = reopen(rootfd, dst, tfd)
                mount(None, fdpath(tfd), None,
                      m["flags"] | kept_flags(fdpath(tfd)) | MS["bind"] | MS["remount"])
        if m["propagation"]:
            tfd = reopen(rootfd, dst, tfd)
            for p in m["propagation"]:
                mount(None, fdpath(tfd), None, p)
        rset, rclr = m.get("rattr") or (0, 0)
        if rset or rclr:  # rro, rnosuid, ...: the whole subtree, through mount_setattr
            tfd = reopen(rootfd, dst, tfd)
            set_mount_attr(tfd, rset, rclr)
    finally:
        os.close(tfd)


def do_mounts(plan, rootfs):
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for m in plan["mounts"]:
            try:
                do_mount(m, plan, rootfd)
            except Fail as e:  # name the destination, not the /proc/self/fd path it was reached by
                if e.kind.startswith("errno:") and "/proc/self/fd/" in str(e):
                    raise Fail(f"mount {m['type'] or 'bind'} {m['source']} on {m['destination']}: "
                               f"{os.strerror(int(e.kind[6:]))}", e.kind) from None
                raise
        for d in plan["devices"]:
            make_device(rootfd, d)
        for path, target in plan["symlinks"]:
            dfd = open_in_root(rootfd, os.path.dirname(path), os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.symlink(target, os.path.basename(path), dir_fd=dfd)
            except FileExistsError:
                pass
            finally:
                os.close(dfd)
    finally:
        os.close(rootfd)


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def set_mount_attr(fd, aset, aclr=0, userns_fd=0, recursive=True):
    attr = MountAttr(aset, aclr, 0, userns_fd)
    check(libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0),
                       ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr")


def idmapped_tree(src, userns_fd, recursive):
    """A detached, idmapped copy of `src` (open_tree CLONE + mount_setattr IDMAP).

    Made while we are still host root: setting the idmap needs CAP_SYS_ADMIN over the
    source's superblock, which a process in the container's user namespace lacks.
    """
    tree = check(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, b(src),
                              OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)), f"open_tree {src}")
    set_mount_attr(tree, MOUNT_ATTR_IDMAP, userns_fd=userns_fd, recursive=recursive)
    return tree


def attach_tree(tree, target_fd, src):
    try:
        check(libc.syscall(SYS_MOVE_MOUNT, tree, b"", target_fd, b"",
                           MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), f"move_mount {src}")
    finally:
        os.close(tree)


def userns_fd_for(maps):
    """A user namespace with these maps, as an fd: a child holds it while we write the maps."""
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.close(ready_r)
        if libc.unshare(NS_FLAGS["user"]) == 0:
            os.write(ready_w, b"1")
            os.read(r, 1)
        os._exit(0)
    os.close(r)
    os.close(ready_w)
    try:
        if os.read(ready_r, 1) != b"1":
            raise Fail("idmapped mount: cannot make its user namespace")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(maps[name])
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise Fail(f"idmapped mount: cannot make its user namespace: {e.strerror}")
    finally:
        os.close(w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def reopen(rootfd, dst, fd):
    os.close(fd)
    return open_in_root(rootfd, dst)


def mount_cgroup_binds(m, rootfd, dst, tfd):
    """A cgroup mount without a cgroup namespace: tmpfs plus binds of our own cgroup dirs."""
    binds = m["data"]
    if len(binds) == 1 and binds[0][0] == "":  # pure v2: bind the container's dir itself
        mount(binds[0][1], fdpath(tfd), None, MS["bind"])
    else:
        mount("tmpfs", fdpath(tfd), "tmpfs", MS["nosuid"] | MS["nodev"] | MS["noexec"], "mode=755")
        top = open_in_root(rootfd, dst, os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name, src in binds:
                os.mkdir(name, 0o755, dir_fd=top)
                sub = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=top)
                try:
                    mount(src, fdpath(sub), None, MS["bind"])
                finally:
                    os.close(sub)
                if m["flags"] & MS["ro"]:  # each controller: the limits are the host's
                    sub = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=top)
                    try:
                        mount(None, fdpath(sub), None, MS["bind"] | MS["remount"] | MS["ro"] | MS["nosuid"]
                              | MS["nodev"] | MS["noexec"])
                    finally:
                        os.close(sub)
        finally:
            os.close(top)
    if m["flags"] & MS["ro"]:
        fd = open_in_root(rootfd, dst)
        try:
            mount(None, fdpath(fd), None, MS["bind"] | MS["remount"] | MS["ro"] | MS["nosuid"] | MS["nodev"] | MS["noexec"])
        finally:
            os.close(fd)


def make_device(rootfd, d):
    path, kind, major, minor, mode, uid, gid = d
    parent = os.path.dirname(path)
    if parent != "/":
        os.close(make_target(rootfd, parent, True))
    dfd = open_in_root(rootfd, parent, os.O_DIRECTORY | os.O_CLOEXEC)
    name = os.path.basename(path)
    try:
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        ftype = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}[kind]
        try:
            umask = os.umask(0)  # the mode asked for, not the umask's
            try:
                os.mknod(name, ftype | (mode & 0o7777), os.makedev(major, minor), dir_fd=dfd)
            finally:
                os.umask(umask)
            os.chown(name, uid, gid, dir_fd=dfd)
        except PermissionError:  # in a user namespace: bind the host node instead
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dfd))
            tfd = os.open(name, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dfd)
            try:
                mount(path, fdpath(tfd), None, MS["bind"])
            finally:
                os.close(tfd)
    finally:
        os.close(dfd)


def mount_point_of(path):
    """The mount point that `path` lies on (the longest match in mountinfo)."""
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best = mnt
    return best


def pivot(rootfs, no_pivot):
    os.chdir(rootfs)
    if no_pivot:
        mount(rootfs, "/", None, MS["move"])
        os.chroot(".")
    else:
        # pivot_root(".", ".") stacks the old root on top of the new one; detach it.
        check(libc.pivot_root(b".", b"."), "pivot_root")
        mount(None, ".", None, MS["slave"] | MS["rec"])
        check(libc.umount2(b".", MNT_DETACH), "unmount old root")
    os.chdir("/")


def kept_flags(path):
    """A bind remount must repeat the flags it cannot drop (all of them, in a user namespace)."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    out = f & (MS["nosuid"] | MS["nodev"] | MS["noexec"] | MS["noatime"] | MS["nodiratime"])
    return out | (MS["relatime"] if f & 4096 else 0)  # ST_RELATIME


def remount_ro(path, extra=0, rebind=True):
    if rebind:
        mount(path, path, None, MS["bind"] | MS["rec"])
    mount(None, path, None, MS["bind"] | MS["remount"] | MS["ro"] | extra | kept_flags(path))


def write_sysctls(plan):
    for key, value in plan["sysctl"]:
        path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))  # net/ipv4/conf/eth0.1/...
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise Fail(f"linux.sysctl {key}: {e.strerror}", "errno:%d" % e.errno)


def finish_rootfs(plan):
    for p in plan.get("rw_binds", []):  # e.g. /proc/sys/net: stays writable under a read-only /proc/sys
        if os.path.lexists(p):
            mount(p, p, None, MS["bind"] | MS["rec"])
    for p in plan["readonly_paths"]:
        if os.path.lexists(p):
            remount_ro(p)
    for p in plan["masked_paths"]:
        if os.path.isdir(p) and not os.path.islink(p):
            mount("tmpfs", p, "tmpfs", MS["ro"], None)
        elif os.path.lexists(p):
            mount("/dev/null", p, None, MS["bind"])
    if plan["root_propagation"]:
        mount(None, "/", None, plan["root_propagation"])
    if plan["readonly"]:
        remount_ro("/", rebind=False)


def loopback_up():
    import _socket
    import fcntl
    s = _socket.socket(2, 2)  # AF_INET, SOCK_DGRAM
    try:
        req = b"lo".ljust(16, b"\0") + bytes(24)
        flags = int.from_bytes(fcntl.ioctl(s.fileno(), 0x8913, req)[16:18], sys.byteorder)  # SIOCGIFFLAGS
        fcntl.ioctl(s.fileno(), 0x8914, b"lo".ljust(16, b"\0") + (flags | 1).to_bytes(2, sys.byteorder) + bytes(22))
    finally:
        s.close()


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


def caller_ns_mounts(plan):
    """A new container (not an exec) whose mounts go into the caller's mount namespace."""
    return (not plan["unshare_mount"] and not any(ns == "mount" for ns, _ in plan["join"]) and plan["rootfs"]
            and plan["fifo"] is not None and bool(plan["mounts"] or plan["readonly"]))


def container_init(plan, wfd, rfd, fifo, listener):
    global HOST_PID
    # every container process leads a session of its own, as runc's: none reaches back to the
    # caller's session or terminal, and CRIU can dump an init whose session is in its pid namespace
    os.setsid()
    p = plan["process"]
    rootfs = plan["rootfs"]
    mnt = plan["unshare_mount"]
    sc = plan.get("seccomp")
    try:
        HOST_PID = int(os.readlink("/proc/self"))  # still the host's /proc
    except (OSError, ValueError):
        HOST_PID = os.getpid()
    if plan["loopback"]:
        loopback_up()  # before pivot_root: it imports extension modules from the host
    if plan.get("console_fd") is not None:
        import _socket  # noqa: F401  (loaded now: after pivot_root the host's modules are gone)
    if mnt:
        mount(None, "/", None, plan["host_propagation"])
        if plan.get("rootfs_tree_fd") is not None:  # the rootfs, idmapped while we were host root
            check(libc.syscall(SYS_MOVE_MOUNT, plan["rootfs_tree_fd"], b"", AT_FDCWD, b(rootfs),
                               MOVE_MOUNT_F_EMPTY_PATH), "move_mount rootfs")
            os.close(plan["rootfs_tree_fd"])
        else:
            mount(rootfs, rootfs, None, MS["bind"] | MS["rec"])
        if plan["host_propagation"] & MS["shared"]:
            # pivot_root refuses shared mounts around the new root (EINVAL): make the new
            # root, its parent mount and / private; finish_rootfs applies rootfsPropagation.
            for path in (rootfs, mount_point_of(os.path.dirname(rootfs)), "/"):
                mount(None, path, None, MS["private"])
        do_mounts(plan, rootfs)
    elif caller_ns_mounts(plan):
        # No mount namespace of its own: the mounts go into the caller's, under the rootfs, as
        # runc and crun make them; the core records them and detaches them at delete.
        mount(rootfs, rootfs, None, MS["bind"] | MS["rec"])
        do_mounts(plan, rootfs)
    hooks = plan.get("hooks") or {}
    state = ""
    if plan.get("hook_sync"):
        send(wfd, {"type": "hooks", "stage": "createRuntime"})
        msg = recv(rfd)
        if not msg or msg.get("type") != "resume":
            raise Fail("aborted while the runtime ran createRuntime hooks")
        state = msg.get("state", "")
        run_hooks("createContainer", hooks.get("createContainer", []), state, plan["exec_fd"])
    if rfd >= 0:
        os.close(rfd)
    if mnt:
        pivot(rootfs, plan["no_pivot"])
        write_sysctls(plan)  # before readonlyPaths makes /proc/sys read-only
        finish_rootfs(plan)
    elif rootfs:
        os.chroot(rootfs)
        os.chdir("/")
        write_sysctls(plan)
        if caller_ns_mounts(plan):
            finish_rootfs(plan)
    else:  # no rootfs (a host process, as rt-wasm's): the caller's /proc shows our own namespaces
        write_sysctls(plan)
    if plan["hostname"] is not None:
        h = b(plan["hostname"])
        check(libc.sethostname(h, len(h)), "sethostname")
    if plan["domainname"] is not None:
        h = b(plan["domainname"])
        check(libc.setdomainname(h, len(h)), "setdomainname")
    for res, soft, hard, *name in plan["rlimits"]:
        check(libc.prlimit(0, res, ctypes.byref((ctypes.c_uint64 * 2)(soft, hard)), None),
              f"setrlimit {name[0] if name else res} (soft {soft}, hard {hard})")
    if plan["oom_score_adj"] is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(plan["oom_score_adj"]))
    set_scheduling(p)  # while we still have the capabilities an RT policy needs
    if plan.get("console_fd") is not None:
        setup_terminal(plan["console_fd"], plan.get("console_size"), bool(mnt))
    exe = find_exec(p["args"][0], p["env"])
    try:
        os.chdir(p["cwd"])
    except OSError as e:
        raise Fail(f"chdir to cwd ({p['cwd']!r}) set in config.json failed: {e.strerror}")
    reset_signals()
    if sc and not p["no_new_privs"]:
        load_seccomp(sc, listener)  # without no_new_privs this needs CAP_SYS_ADMIN: load while we have it
    if p["caps"] is not None:
        drop_bounding(p["caps"], plan["last_cap"])
    set_user(p)
    if p["caps"] is not None:
        apply_caps(p["caps"])
    # CVE-2024-21626: no fd of ours crosses exec, except the preserved ones (before the
    # filter, which may not allow close_range)
    mark_cloexec(3 + plan["preserve_fds"])
    if p["no_new_privs"]:
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
        if sc:
            load_seccomp(sc, listener)  # as late as possible, so the filter sees only the workload
    send(wfd, {"type": "ready", "pid": os.getpid()})
    os.close(wfd)
    if fifo >= 0:
        # The start barrier: `rt start` writes one byte into exec.fifo.
        while not os.read(fifo, 1):
            pass
    if hooks.get("startContainer"):
        try:
            run_hooks("startContainer", hooks["startContainer"], state.replace('"created"', '"running"'),
                      plan["exec_fd"], (sc or {}).get("execveat", True))
        except Fail as e:
            os.write(2, f"{e}\n".encode())
            os._exit(1)
    try:
        if plan.get("personality") is not None:
            check(libc.personality(ctypes.c_ulong(plan["personality"])), "linux.personality")
        if (p.get("affinity") or [None, None])[1] is not None:
            os.sched_setaffinity(0, p["affinity"][1])  # execCPUAffinity.final: the workload's
        helper_exec(plan["exec_fd"], exe, p["args"], dict(e.split("=", 1) for e in p["env"]),
                    lsm_attr(plan.get("lsm") or {}), (sc or {}).get("execveat", True))
    except Fail as e:
        os.write(2, f"{e}\n".encode())
        os._exit(1)
    except OSError as e:
        os.write(2, f"exec rt-exec: {e.strerror}\n".encode())
        os._exit(127)


def enter_namespaces(plan, rfd, wfd):
    if plan.get("console_fd") is not None or plan["loopback"]:
        import _socket  # noqa: F401  (extension modules load from the host, before setns(mnt))
    if plan.get("join_pidfd") is not None and plan["join_types"]:
        flags = 0
        for ns in plan["join_types"]:
            flags |= NS_FLAGS[ns]
        check(libc.setns(plan["join_pidfd"], flags), "setns through the init's pidfd")
    for ns, path in plan["join"]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            check(libc.setns(fd, NS_FLAGS[ns]), f"setns {ns} {path}")
        finally:
            os.close(fd)
    rest = [ns for ns in plan["unshare"] if ns != "user"]
    if "user" in plan["unshare"]:
        # The user namespace first, alone: the core writes our uid/gid maps, and every
        # namespace made after it is owned by it.
        check(libc.unshare(NS_FLAGS["user"]), "unshare user namespace")
        send(wfd, {"type": "idmap", "pid": os.getpid()})
        msg = recv(rfd)
        if not msg or msg.get("type") != "resume":
            raise Fail("aborted while the runtime wrote the id maps")
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if plan.get("userns"):
        os.setresgid(0, 0, 0)  # root of the user namespace until the container's user is set
        os.setresuid(0, 0, 0)
    flags = 0
    for ns in rest:
        flags |= NS_FLAGS[ns]
    if flags:
        check(libc.unshare(flags), "unshare")
    if plan.get("time_offsets"):  # before any process is in the new time namespace (our child)
        try:
            with open("/proc/self/timens_offsets", "w") as f:
                f.write(plan["time_offsets"])
        except OSError as e:
            raise Fail(f"linux.timeOffsets: {e.strerror}", "errno:%d" % e.errno)


def main():
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    # CVE-2019-5736: nothing in the container may open /proc/<us>/exe while we run. A rootless
    # caller writes our id maps, which /proc gives only to our owner: non-dumpable after that.
    rootless = os.geteuid() != 0
    if not rootless:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    send(wfd, {"type": "hello", "version": PROTOCOL_VERSION, "pid": os.getpid()})
    msg = recv(rfd)
    if msg is None:
        os._exit(1)
    plan = msg["plan"]
    if rootless and "user" not in plan["unshare"]:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    for fd in (plan.get("exec_fd"), plan.get("join_pidfd")):  # ours: never the workload's, even
        if fd is not None:  # when they fall in the --preserve-fds range (fexecve needs no inheritance)
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    try:
        # host paths first: in a user namespace, host root's files are out of reach
        fifo = os.open(plan["fifo"], os.O_RDWR | os.O_CLOEXEC) if plan["fifo"] else -1
        sc = plan.get("seccomp")
        listener = connect_listener(sc["listener"]) if sc and sc["listener"] else None
        if plan.get("rootfs_idmap"):
            userns = userns_fd_for(plan["rootfs_idmap"])
            plan["rootfs_tree_fd"] = idmapped_tree(plan["rootfs"], userns, True)
            os.close(userns)
        for m in plan["mounts"]:
            if m.get("idmap"):
                userns = userns_fd_for(m["idmap"])
                m["tree_fd"] = idmapped_tree(m["source"], userns, m["recursive"])
                os.close(userns)
            elif m["bind"] and plan.get("userns") and os.geteuid() == 0:
                # host paths may be out of reach of the namespace's root: take them now (a
                # rootless caller reaches no more than its namespace's root will, and may not clone)
                m["tree_fd"] = check(libc.syscall(
                    SYS_OPEN_TREE, AT_FDCWD, b(m["source"]),
                    OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if m["recursive"] else 0)),
                    f"open_tree {m['source']}")
        enter_namespaces(plan, rfd, wfd)
        if not plan.get("hook_sync"):
            os.close(rfd)
            rfd = -1
        # The init writes to the pipe we write to: it starts once `child` is sent.
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
    except Fail as e:
        send(wfd, {"type": "error", "reason": str(e), "kind": e.kind})
        os._exit(1)
    except OSError as e:
        send(wfd, {"type": "error", "reason": f"{e.strerror}: {e.filename or ''}", "kind": "errno:%d" % e.errno})
        os._exit(1)
    if pid:
        send(wfd, {"type": "child", "pid": pid})
        os._exit(0)
    os.close(gate_w)
    os.read(gate_r, 1)  # EOF once the shim has sent `child` and exited
    os.close(gate_r)
    try:
        container_init(plan, wfd, rfd, fifo, listener)
    except Fail as e:
        send(wfd, {"type": "error", "reason": str(e), "kind": e.kind})
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        send(wfd, {"type": "error", "reason": f"{e.strerror}{where}", "kind": "errno:%d" % e.errno})
    except BaseException as e:  # report, never hang the core
        send(wfd, {"type": "error", "reason": f"{type(e).__name__}: {e}", "kind": "error"})
    os._exit(127)


if __name__ == "__main__":
    main()
