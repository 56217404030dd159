"""The sealed exec helper (CVE-2019-5736): every container process on the host kernel is
exec'd by rt-exec (shim/exec.c) from a sealed memfd, never by the host's Python.

`launch` is what plugins get as `api.launch_shim`: it hands the stub a fresh sealed copy,
so a kind built on the stub is protected without doing anything. `sealed_fd` is for kinds
that exec workloads their own way: fexecve the fd with argv `rt-exec - - PATH ARGV...`.
"""
import os

from .errors import RtError

# musl's static binary is 13 KB, glibc's 0.7 MB: each create copies it into a memfd.
COMPILERS = ("musl-gcc", "cc", "gcc")
_SEALS = ("F_SEAL_SEAL", "F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE")


def path() -> str:
    """The helper built with the package (setup.py; an editable install rebuilds it with
    `pip install -e .`), or else built now into RT_CACHE; RtError when neither can be had."""
    from rt.shim.launcher import SHIM_DIR  # installed next to the stub: rt/shim/exec.c, rt/shim/rt-exec
    built = os.path.join(SHIM_DIR, "rt-exec")
    if os.path.isfile(built):
        return built
    source = os.path.join(SHIM_DIR, "exec.c")
    from .chelper import build
    out, why = build(source, "rt-exec", ("-static", "-s"), COMPILERS)
    if out is None:
        raise RtError(f"rt's exec helper (shim/exec.c) is not built and cannot be: {why}")
    return out


def sealed_fd() -> int:
    """A close-on-exec memfd holding the helper, sealed against every change."""
    import fcntl
    src = os.open(path(), os.O_RDONLY | os.O_CLOEXEC)
    fd = os.memfd_create("rt-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        size = os.fstat(src).st_size
        done = 0
        while done < size:
            done += os.sendfile(fd, src, done, size - done)
        seals = 0
        for name in _SEALS:
            seals |= getattr(fcntl, name)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.close(src)
    return fd


def launch(plan: dict, *, pass_fds: tuple = (), **kw):
    """rt.shim.launcher.launch, with the sealed helper in plan["exec_fd"]."""
    from rt.shim.launcher import launch as launch_stub
    plan["exec_fd"] = fd = sealed_fd()
    return launch_stub(plan, pass_fds=(*pass_fds, fd), **kw)  # it closes the fds it passes
