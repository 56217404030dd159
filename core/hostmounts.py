"""Mounts that a container without a mount namespace of its own makes in the caller's (its
spec's mounts, masked paths, a read-only root), under its rootfs. runc and crun leave them
behind at delete; rt records them at create and detaches them at delete."""
import os


def under(rootfs: str, mountinfo: str = "/proc/self/mountinfo") -> dict[int, str]:
    """{mount id: mount point} of every mount at or below `rootfs`."""
    root = os.path.realpath(rootfs).rstrip("/")
    found = {}
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            mnt = _unescape(fields[4])
            if mnt == root or mnt.startswith(root + "/"):
                found[int(fields[0])] = mnt
    return found


def made_since(rootfs: str, base: list[int]) -> list[list]:
    """[[id, mount point], ...] of the mounts under `rootfs` that are not in `base`, newest first."""
    known = set(base)
    return sorted(([i, p] for i, p in under(rootfs).items() if i not in known), reverse=True)


def detach(mounts: list[list]) -> list[str]:
    """Lazily unmount each recorded mount (newest first), found by its mount id wherever it is
    now and reached with no symlink on the way: a container can move its directories and plant
    symlinks, but never make us unmount a host path. Returns what could not be done, and why."""
    if not mounts:
        return []
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    now = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            now[int(fields[0])] = _unescape(fields[4])
    errors = []
    for mid, _recorded in mounts:
        path = now.get(mid)
        if path is None:
            continue  # gone already (with a parent, or by the container's own hand)
        how = (ctypes.c_uint64 * 3)(os.O_PATH | os.O_CLOEXEC, 0, 0x04 | 0x02)  # RESOLVE_NO_SYMLINKS|NO_MAGICLINKS
        fd = libc.syscall(437, -100, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))  # openat2
        if fd < 0:
            errors.append(f"unmount {path}: {os.strerror(ctypes.get_errno())}")
            continue
        try:
            if _mount_id(fd) != mid:
                continue  # something else is on top there now: not ours to touch
            if libc.umount2(os.fsencode(f"/proc/self/fd/{fd}"), 2) != 0:  # MNT_DETACH
                e = ctypes.get_errno()
                if e != 22:  # EINVAL: no longer a mount point
                    errors.append(f"unmount {path}: {os.strerror(e)}")
        finally:
            os.close(fd)
    return errors


def _mount_id(fd: int) -> int | None:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    return None


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
