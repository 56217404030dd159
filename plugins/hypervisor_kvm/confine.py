"""In the guest: a workload's capabilities, no_new_privs and seccomp filter, applied by the
agent's child between fork and execve in runc's order. The work is done by rt's own stub
(its process layer, rt.shim.stub_security and stub_sys, shipped to /rt beside this file), as
for containers on the host; the filter is the BPF the host compiled with libseccomp."""
import stub_security as stub
from stub_sys import PR_SET_NO_NEW_PRIVS


def before_setuid(caps: dict | None, uid: int, nnp: bool = False, seccomp: dict | None = None) -> None:
    """Without no_new_privs, loading the filter needs CAP_SYS_ADMIN: load it first. Then
    drop the bounding set (needs CAP_SETPCAP) and keep the rest across setuid."""
    if seccomp and not nnp:
        _load(seccomp)
    if caps is None:
        return
    with open("/proc/sys/kernel/cap_last_cap") as f:
        stub.drop_bounding(caps, int(f.read()))
    if uid != 0:
        stub.libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS


def after_setuid(caps: dict | None, nnp: bool, seccomp: dict | None) -> None:
    """The capability sets, no_new_privs, then the filter: the last step before execve."""
    if caps is not None:
        stub.apply_caps(caps)
    if nnp:
        stub.check(stub.libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
        if seccomp:
            _load(seccomp)  # as late as possible, so the filter sees only the workload


def _load(seccomp: dict) -> None:
    stub.load_seccomp({"bpf": bytes.fromhex(seccomp["bpf"]), "flags": seccomp["flags"]}, None)
