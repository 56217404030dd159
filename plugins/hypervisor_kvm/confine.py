"""In the guest: a workload's capabilities, no_new_privs and seccomp filter, applied by the
agent's child between fork and execve, as the host stub does for containers. The filter
is the BPF that the host compiled with libseccomp. Needs only ctypes and libc."""
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 8, 24, 38, 47
PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_CLEAR_ALL = 2, 4
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}
SECCOMP_SET_MODE_FILTER = 1


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(rc: int, what: str) -> int:
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return rc


def _mask(caps: list[int]) -> int:
    m = 0
    for c in caps:
        m |= 1 << c
    return m


def before_setuid(caps: dict | None, uid: int, nnp: bool = False, seccomp: dict | None = None) -> None:
    """Without no_new_privs, loading the filter needs CAP_SYS_ADMIN: load it first, as runc
    does. Then drop the bounding set (needs CAP_SETPCAP) and keep the rest across setuid."""
    if seccomp and not nnp:
        _load(seccomp)
    if caps is None:
        return
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    keep = _mask(caps["bounding"])
    for c in range(last + 1):
        if not keep & (1 << c):
            _check(libc.prctl(PR_CAPBSET_DROP, c, 0, 0, 0), f"drop capability {c}")
    if uid != 0:
        libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)


def after_setuid(caps: dict | None, nnp: bool, seccomp: dict | None) -> None:
    """The capability sets, no_new_privs, then the filter: the last step before execve."""
    if caps is not None:
        data = (CapData * 2)()
        for i in range(2):
            for kind in ("effective", "permitted", "inheritable"):
                setattr(data[i], kind, (_mask(caps[kind]) >> (32 * i)) & 0xFFFFFFFF)
        _check(libc.capset(ctypes.byref(CapHeader(0x20080522, 0)), data), "capset")
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        for c in caps["ambient"]:
            _check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0), f"raise ambient capability {c}")
    if nnp:
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        if seccomp:
            _load(seccomp)  # as late as possible, so the filter sees only the workload


def _load(seccomp: dict) -> None:
    bpf = bytes.fromhex(seccomp["bpf"])
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    nr = SYS_SECCOMP[os.uname().machine]
    _check(libc.syscall(nr, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(seccomp["flags"]), ctypes.byref(prog)),
           "load seccomp filter")
