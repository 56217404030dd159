"""The device cgroup on cgroup v2: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE), as runc builds it.

Rules are OCI linux.resources.devices entries; as with v1's devices.allow/deny, a later
rule overrides an earlier one, so the program checks them last to first and denies what
none matches.
"""
import ctypes
import os

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI = 15, 6, 2
_TYPES = {"c": 2, "b": 1}  # BPF_DEVCG_DEV_CHAR, BPF_DEVCG_DEV_BLOCK
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, READ, WRITE


def _insn(code, dst=0, src=0, off=0, imm=0) -> bytes:
    return bytes([code, (src << 4) | dst]) + off.to_bytes(2, "little", signed=True) + \
        (imm & 0xFFFFFFFF).to_bytes(4, "little")


def program(rules: list[dict]) -> bytes:
    """Registers: r2 device type, r3 requested access, r4 major, r5 minor; r0 the verdict."""
    code = [
        _insn(0x61, 2, 1, 0), _insn(0x54, 2, imm=0xFFFF),  # r2 = ctx->access_type & 0xffff
        _insn(0x61, 3, 1, 0), _insn(0x74, 3, imm=16),      # r3 = ctx->access_type >> 16
        _insn(0x61, 4, 1, 4),                              # r4 = ctx->major
        _insn(0x61, 5, 1, 8),                              # r5 = ctx->minor
    ]
    for r in reversed(rules):  # the last matching rule decides
        kind = r.get("type") or "a"
        access = sum(_ACCESS[c] for c in set(r.get("access") or "rwm") if c in _ACCESS)
        block = []  # ("jne", reg, value): skip to the next rule when reg != value
        if kind != "a":
            block.append(("jne", 2, _TYPES[kind]))
        if access != 7:  # every requested access bit must be allowed by the rule
            block += [("mov", 1, 3), ("and", 1, ~access), ("jne", 1, 0)]
        if kind != "a" and r.get("major") is not None:
            block.append(("jne", 4, r["major"]))
        if kind != "a" and r.get("minor") is not None:
            block.append(("jne", 5, r["minor"]))
        block += [("ret", 1 if r.get("allow") else 0), ("exit",)]
        for i, op in enumerate(block):
            if op[0] == "jne":
                code.append(_insn(0x55, op[1], off=len(block) - i - 1, imm=op[2]))
            elif op[0] == "mov":
                code.append(_insn(0xBF, op[1], op[2]))         # r1 = r3
            elif op[0] == "and":
                code.append(_insn(0x57, op[1], imm=op[2]))     # r1 &= ~allowed
            elif op[0] == "ret":
                code.append(_insn(0xB7, 0, imm=op[1]))         # r0 = verdict
            else:
                code.append(_insn(0x95))                       # exit
        if len(block) == 2:  # matches everything: the rules before it can never decide
            return b"".join(code)
    code += [_insn(0xB7, 0, imm=0), _insn(0x95)]  # nothing matched: deny
    return b"".join(code)


class _LoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16), ("pad", ctypes.c_uint8 * 64)]


class _AttachAttr(ctypes.Structure):
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("attach_flags", ctypes.c_uint32), ("pad", ctypes.c_uint8 * 32)]


def attach(cgroup_dir: str, rules: list[dict]) -> None:
    """Load the program and attach it to a cgroup2 directory (it stays while the group lives)."""
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(f"bpf: unsupported architecture {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    code = program(rules)
    buf = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = _LoadAttr(BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8, ctypes.addressof(buf), ctypes.addressof(lic),
                     0, 0, 0, 0, 0, b"rt_devices")
    prog = libc.syscall(nr, BPF_PROG_LOAD, ctypes.byref(attr), ctypes.sizeof(attr))
    if prog < 0:  # load again with the verifier's log, to say why
        attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
        prog = libc.syscall(nr, BPF_PROG_LOAD, ctypes.byref(attr), ctypes.sizeof(attr))
    if prog < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf prog load: {os.strerror(e)}: {log.value.decode(errors='replace')[-300:]}")
    try:
        dfd = os.open(cgroup_dir, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            at = _AttachAttr(dfd, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
            if libc.syscall(nr, BPF_PROG_ATTACH, ctypes.byref(at), ctypes.sizeof(at)) < 0:
                e = ctypes.get_errno()
                raise OSError(e, f"bpf prog attach: {os.strerror(e)}")
        finally:
            os.close(dfd)
    finally:
        os.close(prog)
