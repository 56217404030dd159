"""The stub's system layer: libc through ctypes, the kernel's numbers, and the error type.
Builtins and ctypes only (see stub.py)."""
import ctypes
import os


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
