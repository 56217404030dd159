"""What the guest boots: a kernel rt can start directly (an uncompressed vmlinux, PVH) and
rt's own initramfs (busybox, the agent built from agent.c and the virtio modules; with
agent.py instead, a minimal Python too).

Both are built once and cached under CACHE, keyed by the kernel's version and content of
what goes in, so a later boot pays nothing for them.
"""
import glob
import os
import stat
import sys

from rt.core import api
from rt.core.api import RtError

CACHE = os.environ.get("RT_VM_CACHE", "/var/cache/rt/vm")
HERE = os.path.dirname(os.path.abspath(__file__))
BUSYBOX = "/bin/busybox"
AGENT_FILES = ("agent", "wire", "confine")  # shipped to /rt in the guest, with rt's stub
# virtio_balloon loads on the first memory update (the agent's "balloon" op), not at boot
MODULES = ["virtio_mmio", "virtio_console", "virtiofs", "virtio_net", "virtio_blk", "virtio_balloon"]
# magic -> how to decompress (the payload of a bzImage; scripts/extract-vmlinux does the same)
MAGICS = [(b"\x02\x21\x4c\x18", ["lz4", "-dc"]), (b"\x28\xb5\x2f\xfd", ["zstd", "-dc"]),
          (b"\xfd7zXZ\x00", ["xz", "-dc"]), (b"\x1f\x8b\x08", ["gzip", "-dc"]),
          (b"BZh", ["bzip2", "-dc"])]


def _atomic(path: str, data: bytes) -> None:
    from _thread import get_ident  # the resident core: several creates at once
    tmp = f"{path}.{os.getpid()}.{get_ident()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --- kernel ------------------------------------------------------------------------
def default_kernel() -> str:
    """The newest installed Debian cloud kernel, else the newest kernel in /boot."""
    for pattern in ("/boot/vmlinuz-*-cloud-amd64", "/boot/vmlinuz-*"):
        found = sorted(glob.glob(pattern), key=lambda p: [int(x) if x.isdigit() else 0
                                                          for x in p.split("-")[1].split(".")])
        if found:
            return found[-1]
    raise RtError("hypervisor_kvm: no guest kernel: set vm.kernel.path in config.json, or install "
                  "one (apt-get install linux-image-cloud-amd64)")


def kernel_version(path: str) -> str | None:
    """From the bzImage header (the kernel_version string), else from a vmlinuz-VERSION name."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x10000)
        if head[0x202:0x206] == b"HdrS":
            off = int.from_bytes(head[0x20E:0x210], "little") + 0x200
            return head[off:off + 256].split(b" ", 1)[0].decode()
    except (OSError, UnicodeDecodeError):
        pass
    name = os.path.basename(path)
    return name.split("-", 1)[1] if name.startswith(("vmlinuz-", "vmlinux-")) else None


def vmlinux(path: str, warn=lambda m: None) -> str:
    """An uncompressed ELF kernel for `path` (cached), or `path` itself when it already is one or
    cannot be unpacked (QEMU then boots the bzImage, with decompression under emulation)."""
    if not os.path.isfile(path):
        raise RtError(f"hypervisor_kvm: guest kernel {path}: no such file")
    st = os.stat(path)  # keyed on identity, not content: hashing 14 MB cost 22 ms per create
    key = api.sha256(f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    out = os.path.join(CACHE, f"vmlinux-{key}")
    if os.path.exists(out):
        return out
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] == b"\x7fELF":
        return path
    os.makedirs(CACHE, exist_ok=True)
    import subprocess
    for magic, cmd in MAGICS:
        at = data.find(magic)
        while at >= 0:
            try:
                res = subprocess.run(cmd, input=data[at:], capture_output=True)
            except FileNotFoundError:
                break
            if res.stdout[:4] == b"\x7fELF":
                _atomic(out, res.stdout)
                return out
            at = data.find(magic, at + 1)
    warn(f"hypervisor_kvm: could not unpack {path} to a vmlinux (is lz4/zstd installed?); booting it compressed")
    return path


def guest_cpu(accel: str) -> str:
    """QEMU's -cpu: the host's under KVM. Under TCG, `max` without ERMS/FSRM: with them the
    guest kernel copies and clears pages with `rep movsb`, which QEMU 7's TCG runs one byte
    per loop (the boot is ~5% slower, and module loads and virtio-fs reads more)."""
    return "host" if accel == "kvm" else "max,erms=off,fsrm=off"


def tcg_kernel_args() -> list[str]:
    """Under TCG the guest's TSC is the host's, and calibrating it against the emulated PIT
    fails when the host is busy (the guest then hangs with no clocksource): pass the rate."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return []
    if " constant_tsc" not in info:
        return []
    for line in info.splitlines():
        if line.startswith("cpu MHz"):
            return [f"tsc_early_khz={int(float(line.split(':')[1]) * 1000)}"]
    return []


# --- initramfs ---------------------------------------------------------------------
def cpio_header(ino: int, name: str, mode: int, size: int, *, uid: int = 0, gid: int = 0, mtime: int = 0,
                rdev: int = 0) -> bytes:
    """One newc header with its name, padded so that the data starts 4-byte aligned."""
    name = name.lstrip("/")
    fields = [ino, mode, uid, gid, 1, mtime, size, 0, 0, os.major(rdev), os.minor(rdev), len(name.encode()) + 1, 0]
    hdr = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
    return hdr + b"\0" * (-len(hdr) % 4)


class Cpio:
    """A newc archive, as the kernel unpacks into its rootfs."""

    def __init__(self):
        self.parts, self.ino, self.seen = [], 1, set()

    def _entry(self, name: str, mode: int, data: bytes = b"", mtime: int = 0) -> None:
        self.ino += 1
        self.parts.append(cpio_header(self.ino, name, mode, len(data), mtime=mtime) + data + b"\0" * (-len(data) % 4))

    def dirs(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.seen:
                self.seen.add(d)
                self._entry(d, 0o040755)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.dirs(path)
        self._entry(path, 0o100000 | mode, data)

    def copy(self, src: str, dest: str | None = None) -> None:
        dest = dest or src
        if dest.strip("/") in self.seen:
            return
        self.seen.add(dest.strip("/"))
        if os.path.islink(src):
            self.dirs(dest)
            self._entry(dest, 0o120777, os.readlink(src).encode())
            target = os.path.join(os.path.dirname(src), os.readlink(src))
            self.copy(os.path.normpath(target))
            return
        with open(src, "rb") as f:
            self.file(dest, f.read(), os.stat(src).st_mode & 0o7777)

    def symlink(self, path: str, target: str) -> None:
        self.dirs(path)
        self._entry(path, 0o120777, target.encode())

    def dir(self, path: str) -> None:
        self.dirs(path + "/x")

    def bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = b"".join(self.parts)
        return data + b"\0" * (-len(data) % 512)


def pack_rootfs(base: str, rootfs: str, out: str, memory_mb: int) -> str:
    """rt's initramfs `base` followed by a second archive with `rootfs` under /rt/rootfs
    (the kernel unpacks both): the fallback without virtio-fs, for small rootfs only."""
    entries, total = [], 0
    for top, dirs, files in os.walk(rootfs):
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            entries.append((path, st))
            total += (st.st_size if stat.S_ISREG(st.st_mode) else 0) + 512
    base_size = os.path.getsize(base)
    need = (2 * (total + base_size) >> 20) + 64  # archive and unpacked copy both sit in RAM while unpacking
    if need > memory_mb:
        raise RtError(f"hypervisor_kvm: not enough memory for the rootfs in initrd mode: it is {total >> 20} MiB, "
                      f"so the VM needs about {need} MiB and has {memory_mb} MiB; raise rt.vm.memory, or use "
                      "virtio-fs (install virtiofsd)")
    import shutil
    with open(base, "rb") as f, open(out, "wb") as o:
        shutil.copyfileobj(f, o)
        n = 1 << 20  # inode numbers apart from the first archive's
        o.write(cpio_header(n, "rt/rootfs", stat.S_IFDIR | 0o755, 0))
        for path, st in entries:
            n += 1
            name = "rt/rootfs/" + os.path.relpath(path, rootfs)
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(path).encode()
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as src:
                    data = src.read()
            else:  # directories, device nodes, fifos, sockets: metadata only
                data = b""
            o.write(cpio_header(n, name, st.st_mode, len(data), uid=st.st_uid, gid=st.st_gid,
                                mtime=int(st.st_mtime), rdev=st.st_rdev))
            o.write(data + b"\0" * (-len(data) % 4))
        o.write(cpio_header(n + 1, "TRAILER!!!", 0, 0))
        o.write(b"\0" * (-o.tell() % 512))
    return out


def _agent_sources() -> list[str]:
    shim = os.path.dirname(api.stub_path)  # the stub's process layer, which confine.py uses
    return [os.path.join(HERE, f"{n}.py") for n in AGENT_FILES] + [os.path.join(shim, f"{n}.py")
                                                                   for n in ("stub_sys", "stub_security")]


def _libraries(binary: str) -> list[str]:
    import subprocess
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        part = line.split("=>")[-1].strip().split(" (")[0].strip()
        if part.startswith("/"):
            libs.append(part)
    return libs


def _python_files(exe: str) -> list[str]:
    """The files the agent's imports load from disk under `exe -I -S` (the rest is frozen)."""
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import agent, fcntl, confine;"
            "print('\\n'.join(m.__spec__.origin for m in list(sys.modules.values())"
            " if getattr(m, '__spec__', None) and m.__spec__.origin and m.__spec__.origin.startswith('/')"
            " and not m.__spec__.origin.startswith(sys.argv[1])));"
            "print((getattr(sys, '_stdlib_dir', None) or '') + '/os.py')")  # how Python finds its prefix
    import subprocess
    out = subprocess.run([exe, "-I", "-S", "-c", code, HERE, os.path.dirname(api.stub_path)], capture_output=True,
                         text=True, check=True).stdout
    return [p for p in out.split() if os.path.isfile(p)]


def _modules(version: str) -> list[str]:
    """MODULES and their dependencies, in load order (paths relative to /lib/modules/VERSION)."""
    base = f"/lib/modules/{version}"
    try:
        with open(os.path.join(base, "modules.dep")) as f:
            deps = {}
            for line in f:
                mod, _, rest = line.partition(":")
                deps[mod] = rest.split()
    except OSError:
        return []
    by_name = {os.path.basename(m).split(".ko")[0].replace("-", "_"): m for m in deps}
    order: list[str] = []

    def add(mod):
        for d in reversed(deps.get(mod, [])):
            add(d)
        if mod not in order:
            order.append(mod)
    for name in MODULES:
        if name in by_name:
            add(by_name[name])
    return order


SIG_MAGIC = b"~Module signature appended~\n"


def _sig_enforced(version: str | None) -> bool:
    """Whether the guest kernel refuses unsigned modules (then they keep their signatures)."""
    try:
        with open(f"/boot/config-{version}") as f:
            config = f.read()
    except OSError:
        return True
    return any(f"{k}=y" in config for k in ("CONFIG_MODULE_SIG_FORCE", "CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY",
                                             "CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY"))


def _unsigned(ko: bytes) -> bytes:
    """A module without its appended signature: checking it cost ~35 ms of boot under TCG.
    The trailer is the signature, a 12-byte struct module_signature (big-endian length last)."""
    if not ko.endswith(SIG_MAGIC):
        return ko
    info = ko[-len(SIG_MAGIC) - 12:-len(SIG_MAGIC)]
    return ko[:-len(SIG_MAGIC) - 12 - int.from_bytes(info[8:12], "big")]


INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mkdir -p /dev/pts
/bin/busybox mount -t devpts -o ptmxmode=0666 devpts /dev/pts
/bin/busybox mount -t tmpfs run /run
for m in $(/bin/busybox cat /rt/modules); do
  case $m in *balloon*) continue;; *net*|*failover*|*virtio_blk*) [ -n "$rtnet" ] || continue;; esac  # rtnet=1: a NIC
  /bin/busybox insmod /lib/modules/$m 2>/dev/null
done
exec {python} -I -S -B -c "import sys; sys.path.insert(0, '/rt'); import agent; agent.main()"
"""


AGENT_C = os.path.join(HERE, "agent.c")


def native_init(python: str | None) -> str | None:
    """/init built static from agent.c (its path in rt's cache, named by a hash of the source
    and flags): the whole agent in C, or with `python` only the boot (mounts, finit_module of
    each module) before agent.py. None where no C compiler can build it, or with
    RT_VM_INIT=script: the INIT script and agent.py serve then."""
    if os.environ.get("RT_VM_INIT") == "script":
        return None
    flags = ("-static", "-s") + ((f'-DRT_PYTHON="{python}"',) if python else ())
    path, _ = api.build_c_helper(AGENT_C, "vm-init" if python else "vm-agent", flags)
    return path  # None e.g. without a compiler, or with libc6-dev but no static libc


def agent_init(warn=lambda m: None) -> tuple[str | None, bool]:
    """(/init's built binary or None for the script, whether the guest runs agent.py).
    The C agent needs no Python in the guest; RT_VM_AGENT=python picks agent.py."""
    if os.environ.get("RT_VM_AGENT") != "python":
        init = native_init(None)
        if init is not None:
            return init, False
        warn("hypervisor_kvm: the C guest agent could not be built (no cc or static libc?): the guest runs "
             "agent.py, which boots slower")
    return native_init(guest_python()), True


def guest_python() -> str:
    """The distribution's Python when there is one (small, no libpython), else ours."""
    for exe in ("/usr/bin/python3", sys.executable):
        if os.path.exists(exe):
            return os.path.realpath(exe)
    raise RtError("hypervisor_kvm: no Python for the guest agent")


PYC = ("import py_compile, sys, os\n"
       "for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n"
       "    py_compile.compile(src, dst, doraise=True,"
       " invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
       "print(sys.implementation.cache_tag)")


def _add_python(c: Cpio, exe: str) -> None:
    """The guest's Python for agent.py: the interpreter, its libraries, the stdlib files the
    agent imports and rt's agent files, byte-compiled."""
    import subprocess
    import tempfile
    c.copy(exe)
    for lib in _libraries(exe):
        c.copy(lib)
    sources = []  # (host .py, its path in the guest)
    for path in _python_files(exe):
        if path.endswith("/os.py"):
            c.dir(os.path.join(os.path.dirname(path), "lib-dynload"))  # the exec_prefix landmark
        c.copy(path)
        if path.endswith(".py"):
            sources.append((path, path))
        if path.endswith(".so"):
            for lib in _libraries(path):
                c.copy(lib)
    for src in _agent_sources():
        dest = f"/rt/{os.path.basename(src)}"
        c.copy(src, dest)
        sources.append((src, dest))
    # Byte-compiled by the guest's own Python, unchecked (the archive has no mtimes): under -B
    # it would otherwise compile them on every boot, ~75 ms under TCG.
    with tempfile.TemporaryDirectory() as tmp:
        pairs = [a for i, (src, _) in enumerate(sources) for a in (src, os.path.join(tmp, f"{i}.pyc"))]
        tag = subprocess.run([exe, "-I", "-S", "-c", PYC, *pairs], capture_output=True, text=True,
                             check=True).stdout.strip()
        for i, (_, dest) in enumerate(sources):
            stem = os.path.basename(dest)[:-3]
            c.copy(os.path.join(tmp, f"{i}.pyc"), f"{os.path.dirname(dest)}/__pycache__/{stem}.{tag}.pyc")


def initramfs(version: str | None, warn=lambda m: None) -> str:
    """rt's initramfs for kernel `version` (cached by the hash of everything in it)."""
    init, python = agent_init(warn)
    exe = guest_python() if python else None
    mods = _modules(version) if version else []
    h = api.sha256()
    for path in [exe, BUSYBOX] if exe else [BUSYBOX]:  # system files: their identity
        st = os.stat(path)
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update((init or "INIT").encode())  # agent.c's build (its name holds the source's hash), or the script
    for path in [*(_agent_sources() if python else []), __file__]:
        with open(path, "rb") as f:  # rt's own: their content, so every install of one rt shares it
            h.update(api.sha256(f.read()).digest())
    h.update(f"{version}:{mods}".encode())
    out = os.path.join(CACHE, f"initramfs-{version}-{h.hexdigest()[:16]}.cpio")
    if os.path.exists(out):
        return out
    if not os.path.exists(BUSYBOX):
        raise RtError("hypervisor_kvm: /bin/busybox is missing (apt-get install busybox-static)")
    c = Cpio()
    for d in ("proc", "sys", "dev", "run", "tmp", "rt"):
        c.dir(d)
    c.copy(BUSYBOX)
    c.symlink("/bin/sh", "busybox")
    if init:
        c.copy(init, "/init")
    else:
        c.file("/init", INIT.format(python=exe).encode(), 0o755)
    if python:
        _add_python(c, exe)
    loaded = []
    strip = not _sig_enforced(version)
    for mod in mods:
        src = f"/lib/modules/{version}/{mod}"
        if not mod.endswith((".ko", ".ko.xz")):
            continue
        with open(src, "rb") as f:
            data = f.read()
        if mod.endswith(".xz"):
            import lzma
            data, mod = lzma.decompress(data), mod[:-3]
        c.file(f"/lib/modules/{mod}", _unsigned(data) if strip else data)
        loaded.append(mod)
    c.file("/rt/modules", "\n".join(loaded).encode() + b"\n")
    os.makedirs(CACHE, exist_ok=True)
    _atomic(out, c.bytes())
    for old in glob.glob(os.path.join(CACHE, f"initramfs-{version}-*.cpio")):
        if old != out:  # superseded (rt or the guest Python changed); QEMU has read any in use
            try:
                os.unlink(old)
            except OSError:
                pass
    return out
