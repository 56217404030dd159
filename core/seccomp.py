"""Compile linux.seccomp into a BPF program with libseccomp (ctypes, Debian's libseccomp2).

The core compiles, the lean stub only loads the bytes (seccomp(2)), so the waiting
process never maps libseccomp. crun precompiles the same way.
"""
import ctypes
import os

from .errors import RtError

ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000, "SCMP_ACT_NOTIFY": 0x7FC00000,
}
OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
             "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
# seccomp(2) flags, and the libseccomp attributes that set them
FILTER_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4, "SECCOMP_FILTER_FLAG_NEW_LISTENER": 8,
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}
_ATTR_CTL_NNP = 3
_ERRNO_EPERM = 1


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_lib = None


def lib():
    global _lib
    if _lib is None:
        try:
            _lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError:
            raise RtError("config.json: $.linux.seccomp: libseccomp is not installed (apt-get install libseccomp2)")
        _lib.seccomp_init.restype = ctypes.c_void_p
        _lib.seccomp_init.argtypes = [ctypes.c_uint32]
        for name in ("seccomp_arch_add", "seccomp_attr_set", "seccomp_rule_add_array", "seccomp_export_bpf"):
            getattr(_lib, name).restype = ctypes.c_int
        _lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        _lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        _lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                                ctypes.POINTER(ArgCmp)]
        _lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _lib.seccomp_release.argtypes = [ctypes.c_void_p]
        _lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        _lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        _lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    return _lib


def action(name: str, errno_ret: int | None) -> int:
    base = ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return base | ((_ERRNO_EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    return base


def compile_filter(sc, warn=lambda msg: None) -> dict:
    """linux.seccomp (an rt.spec Seccomp) -> {"bpf": bytes, "flags": int, "listener": path|None}."""
    L = lib()
    default = action(sc.default_action, sc.default_errno_ret)
    ctx = L.seccomp_init(default)
    if not ctx:
        raise RtError("seccomp: cannot initialise libseccomp")
    try:
        L.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)  # we set no_new_privs ourselves, as the spec asks
        for arch in sc.architectures:
            token = L.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token == 0:
                warn(f"seccomp: architecture {arch} unknown to libseccomp, skipped")
                continue
            rc = L.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -17:  # EEXIST: the native arch is already there
                raise RtError(f"seccomp: cannot add architecture {arch}: {os.strerror(-rc)}")
        notify = False
        for i, rule in enumerate(sc.syscalls):
            act = action(rule.action, rule.errno_ret)
            notify = notify or rule.action == "SCMP_ACT_NOTIFY"
            if act == default:
                continue  # libseccomp refuses rules that repeat the default action
            args = [ArgCmp(a.index, OPERATORS[a.op], a.value, a.value_two) for a in rule.args]
            # runc: conditions on distinct args are ANDed in one rule; repeated indexes mean OR.
            groups = [args] if len({a.arg for a in args}) == len(args) else [[a] for a in args]
            for name in rule.names:
                nr = L.seccomp_syscall_resolve_name(name.encode())
                if nr == -1:  # __NR_SCMP_ERROR: unknown here (other negatives are pseudo-syscalls)
                    continue
                for group in groups:
                    arr = (ArgCmp * len(group))(*group)
                    rc = L.seccomp_rule_add_array(ctx, act, nr, len(group), arr)
                    if rc < 0:
                        raise RtError(f"config.json: $.linux.seccomp.syscalls[{i}]: cannot add rule for "
                                      f"{name}: {os.strerror(-rc)}")
        fd = os.memfd_create("rt-seccomp", os.MFD_CLOEXEC)
        try:
            rc = L.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise RtError(f"seccomp: cannot export the filter: {os.strerror(-rc)}")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            bpf = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        L.seccomp_release(ctx)
    flags = 0
    for f in sc.flags:
        flags |= FILTER_FLAGS.get(f, 0)
    if notify:
        if not sc.listener_path:
            raise RtError("config.json: $.linux.seccomp.listenerPath: SCMP_ACT_NOTIFY needs a listener path")
        flags |= FILTER_FLAGS["SECCOMP_FILTER_FLAG_NEW_LISTENER"]
    return {"bpf": bpf, "flags": flags, "listener": sc.listener_path if notify else None,
            "listener_metadata": sc.listener_metadata, "execveat": allows(sc, "execveat")}


def allows(sc, name: str) -> bool:
    """Does the profile let `name` through whatever its arguments? The stub execs rt-exec with
    execveat when it does, and through /proc/self/fd with execve (which any profile allows,
    or no workload could start) when it does not."""
    ok = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
    verdict = sc.default_action in ok
    for rule in sc.syscalls:
        if name in rule.names:
            verdict = rule.action in ok and not rule.args
    return verdict
