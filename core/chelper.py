"""Small C helpers that plugins compile on the host with its `cc`, once, into a cache keyed
by the source and flags (lxc_system's console monitor, the VM guest's /init). A host
without a compiler gets None and a reason: the plugin then uses its fallback."""
import os

CACHE = os.environ.get("RT_CACHE", "/var/cache/rt")


def sha256(data: bytes = b""):
    """hashlib.sha256 without hashlib, whose import loads OpenSSL (~3 ms on every create)."""
    try:
        from _sha256 import sha256 as impl  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256 as impl  # 3.12+
        except ImportError:
            from hashlib import sha256 as impl
    return impl(data)


def compiler(names: tuple[str, ...] = ("cc", "gcc")) -> str | None:
    import shutil
    return next(filter(None, map(shutil.which, names)), None)


def build(source: str, name: str, flags: tuple[str, ...] = (),
          compilers: tuple[str, ...] = ("cc", "gcc")) -> tuple[str | None, str]:
    """(path of the built binary, "") or (None, why not). The cache name is NAME-<hash of the
    source and flags>; it is written atomically, so concurrent callers are safe. The first
    of `compilers` found builds it."""
    with open(source, "rb") as f:
        key = sha256(f.read() + "\0".join(flags).encode()).hexdigest()[:16]
    out = os.path.join(CACHE, f"{name}-{key}")
    if os.access(out, os.X_OK):
        return out, ""
    cc = compiler(compilers)
    if cc is None:
        return None, "no C compiler (cc); apt install gcc libc6-dev"
    import subprocess
    os.makedirs(CACHE, exist_ok=True)
    from .store import tmp_tag  # the resident core builds from several threads
    tmp = f"{out}.{tmp_tag()}.tmp"
    try:
        p = subprocess.run([cc, "-O2", *flags, "-o", tmp, source], capture_output=True, text=True)
        if p.returncode != 0:
            return None, f"{cc} failed: {p.stderr.strip()[-300:]}"
        os.rename(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out, ""
