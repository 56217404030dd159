"""The module's view of the filesystem, shared by the backend (its checks at create) and the
host: the rootfs at "/", each directory bind mount of the spec at its destination.

A guest path is served by the preopen with the longest matching prefix (as wasi-libc picks
one), and opened below that directory with openat2(RESOLVE_IN_ROOT): a symlink or ".." in
the image resolves inside it, never to the host's files.
"""
import ctypes
import errno
import os
import posixpath
import stat

SYS_OPENAT2 = 437  # the same number on every architecture rt runs on
RESOLVE_NO_MAGICLINKS, RESOLVE_IN_ROOT = 0x02, 0x10
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = None


def _openat2(dirfd: int, path: str, flags: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return fd


def absolute(path: str) -> str:
    """`path` as a normal absolute path ("a//b/../c" is "/a/c"; never POSIX's "//" prefix)."""
    return posixpath.normpath("/" + path.lstrip("/"))


def identity(path: str) -> list[int]:
    """[st_dev, st_ino] of a directory: what a source must still be when the module runs."""
    st = os.stat(path)
    return [st.st_dev, st.st_ino]


class View:
    """rootfs: the host directory shown at "/"; binds: [host source, guest destination, read-only].

    With `ids` (the identity() of the rootfs and of each source, taken at create), each one is
    opened once here and must still be that directory: a container that swapped a source it
    can write to (for a symlink to host files) between create and start or exec is refused.
    Every later lookup goes through these fds, never the host paths again."""

    def __init__(self, rootfs: str, readonly: bool, binds: list, ids: list | None = None):
        self.rootfs, self.readonly, self.binds = rootfs, readonly, [tuple(b) for b in binds]
        self.fds: dict[str, int] = {}
        if ids is not None:
            for src, want in zip([rootfs] + [b[0] for b in self.binds], ids):
                if src in self.fds:
                    continue
                fd = os.open(src, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                st = os.fstat(fd)
                if [st.st_dev, st.st_ino] != list(want):
                    os.close(fd)
                    raise OSError(errno.ESTALE, "is no longer the directory it was at create", src)
                self.fds[src] = fd

    def host_dir(self, src: str) -> str:
        """A path that names the directory `src` was at create (its fd, when pinned)."""
        return f"/proc/self/fd/{self.fds[src]}" if src in self.fds else src

    def locate(self, guest: str) -> tuple[str, str, bool]:
        """(host directory, path relative to it, read-only) that serve the absolute `guest` path."""
        guest = absolute(guest)
        best = (self.rootfs, guest.lstrip("/"), self.readonly, 0)
        for src, dest, ro in self.binds:
            dest = absolute(dest).rstrip("/")
            if (guest == dest or guest.startswith(dest + "/")) and len(dest) > best[3]:
                best = (src, guest[len(dest):].lstrip("/"), ro, len(dest))
        return best[0], best[1] or ".", best[2]

    def open(self, guest: str, flags: int = os.O_RDONLY) -> int:
        host, rel, _ = self.locate(guest)
        top = os.open(self.host_dir(host), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return _openat2(top, rel, flags)
        except OSError as e:
            raise OSError(e.errno, e.strerror, guest) from None
        finally:
            os.close(top)

    def find_module(self, name: str, env: list[str], cwd: str) -> tuple[str, int]:
        """(guest path, open fd) of the program `name` (process.args[0]): a path, relative to
        `cwd`, or a bare name looked up in the spec's PATH, as runc's exec does."""
        if "/" in name:
            candidates = [posixpath.join(cwd, name)]
        else:
            path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
            candidates = [posixpath.join(cwd if d in ("", ".") else d, name) for d in path.split(":")]
        err = OSError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        for guest in candidates:
            try:
                fd = self.open(guest, os.O_PATH)  # no open(2) of the image's fifos or device nodes
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR) or "/" in name:
                    err = e
                continue
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode):
                try:
                    return absolute(guest), os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
                finally:
                    os.close(fd)
            os.close(fd)
            err = OSError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EACCES,
                          "is a directory" if stat.S_ISDIR(mode) else "not a regular file", guest)
        raise err
