"""The stub's mounts: paths resolved inside the rootfs, the mounts, devices, pivot_root, masked and
read-only paths, sysctls and loopback. Builtins and ctypes only (see stub.py)."""
import ctypes
import os
import sys

from stub_sys import (AT_EMPTY_PATH, AT_FDCWD, AT_RECURSIVE, MNT_DETACH, MOUNT_ATTR_IDMAP, MOVE_MOUNT_F_EMPTY_PATH,
                      MOVE_MOUNT_T_EMPTY_PATH, MS, NS_FLAGS, OPEN_TREE_CLONE, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS,
                      SYS_MOUNT_SETATTR, SYS_MOVE_MOUNT, SYS_OPEN_TREE, SYS_OPENAT2, Fail, b, check, libc, mount)


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
