"""Mounts that a container without a mount namespace of its own makes in the caller's (its
spec's mounts, a read-only root), under its rootfs. runc and crun leave them behind at delete;
rt records them at create and detaches them at delete.

What is the container's: the bind of the rootfs on itself that its stub made (the one new
mount at the rootfs path whose parent is not new), and every mount below it except
another container's bind stacked at the same path. Each is known by its unique mount id
(statx STATX_MNT_ID_UNIQUE: never reused, unlike mountinfo's), reached with no symlink on the
way, and only ever under the rootfs: a container can move its directories and plant symlinks,
another can share the rootfs, and an id can be reused, yet no other mount is touched.
"""
import os
import sys

STATX_MNT_ID, STATX_MNT_ID_UNIQUE, AT_EMPTY_PATH = 0x1000, 0x4000, 0x1000


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _table(mountinfo: str = "/proc/self/mountinfo") -> dict[int, tuple[int, str]]:
    """{mount id: (parent id, mount point)}."""
    out = {}
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            out[int(fields[0])] = (int(fields[1]), _unescape(fields[4]))
    return out


def under(rootfs: str, mountinfo: str = "/proc/self/mountinfo") -> dict[int, str]:
    """{mount id: mount point} of every mount at or below `rootfs`."""
    root = os.path.realpath(rootfs).rstrip("/")
    return {i: mnt for i, (_p, mnt) in _table(mountinfo).items() if mnt == root or mnt.startswith(root + "/")}


def _ours(rootfs: str, base: list[int]) -> list[tuple[int, str]]:
    """(mount id, mount point) of the container's mounts, newest first; [] when its bind of the
    rootfs cannot be told apart (then they are left, never guessed)."""
    root = os.path.realpath(rootfs).rstrip("/")
    known, table = set(base), _table()
    new = {i for i, (_p, mnt) in table.items() if (mnt == root or mnt.startswith(root + "/")) and i not in known}
    binds = [i for i in new if table[i][1] == root and table[i][0] not in new]
    if len(binds) != 1:
        return []
    ours, todo = [], [binds[0]]
    while todo:
        i = todo.pop()
        ours.append((i, table[i][1]))
        todo += [c for c, (parent, mnt) in table.items() if parent == i and mnt != root]  # not a stacked bind
    return sorted(ours, reverse=True)


def record(rootfs: str, base: list[int]) -> list[list]:
    """[[mount id, mount point, unique id], ...] of the container's mounts, for detach()."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    out = []
    for i, path in _ours(rootfs, base):
        fd = _open_no_symlinks(libc, path)
        if fd is not None:
            try:
                out.append([i, path, _unique_id(libc, fd)])
            finally:
                os.close(fd)
    return out


def detach(rootfs: str, recorded: list[list] | None, base: list[int] | None = None) -> list[str]:
    """Lazily unmount the recorded mounts (or, for a create that did not finish, what _ours finds
    now), children first; returns what could not be done, and why."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if recorded is None:
        if base is None:
            return []
        recorded = record(rootfs, base)
    wanted = {u for _i, _p, u in recorded if u is not None}
    if not wanted or not rootfs:
        return []
    root = os.path.realpath(rootfs).rstrip("/")
    table = _table()
    errors = []
    for i, path in sorted(under(rootfs).items(), reverse=True):
        if path == root and any(parent == i and mnt == root for parent, mnt in table.values()):
            continue  # another container's bind sits on ours: detaching ours would take it too
        fd = _open_no_symlinks(libc, path)
        if fd is None:
            continue
        try:
            if _unique_id(libc, fd) in wanted and libc.umount2(os.fsencode(f"/proc/self/fd/{fd}"), 2) != 0:
                e = ctypes.get_errno()
                if e != 22:  # EINVAL: no longer a mount point
                    errors.append(f"unmount {path}: {os.strerror(e)}")
        finally:
            os.close(fd)
    return errors


def _open_no_symlinks(libc, path: str) -> int | None:
    import ctypes
    how = (ctypes.c_uint64 * 3)(os.O_PATH | os.O_CLOEXEC, 0, 0x04 | 0x02)  # RESOLVE_NO_SYMLINKS|NO_MAGICLINKS
    fd = libc.syscall(437, -100, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))  # openat2
    return fd if fd >= 0 else None


def _unique_id(libc, fd: int):
    """The mount's unique id ("u:N"), or where the kernel has none (before 6.8) "d:DEV:N", the
    reusable id with the device: a stand-in that another mount is unlikely to match."""
    import ctypes
    buf = ctypes.create_string_buffer(256)
    if libc.statx(fd, b"", AT_EMPTY_PATH, STATX_MNT_ID_UNIQUE | STATX_MNT_ID, buf) != 0:
        return None
    mask = int.from_bytes(buf.raw[0:4], sys.byteorder)
    mnt = int.from_bytes(buf.raw[144:152], sys.byteorder)
    if mask & STATX_MNT_ID_UNIQUE:
        return f"u:{mnt}"
    dev = (int.from_bytes(buf.raw[136:140], sys.byteorder), int.from_bytes(buf.raw[140:144], sys.byteorder))
    return f"d:{dev[0]}:{dev[1]}:{mnt}"
