"""The state store: one directory per container under --root, written atomically.

Kept free of heavy imports: every short verb (state, kill, start, delete, list) goes through here.
"""
import errno
import fcntl
import os

from . import jsonio
from . import status as st
from .errors import NotFound, RtError

DEFAULT_ROOT = "/run/rt"
STATE_FILE = "state.json"
FIFO = "exec.fifo"
CORE_DIR = ".rt-core"  # the resident core's socket (rt.core.server)
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(cid: str) -> None:
    if not cid:
        raise RtError("container id cannot be empty")
    if cid in (".", "..") or not _ID_CHARS.issuperset(cid) or len(cid) > 255:
        raise RtError(f"invalid container id format: {cid}")
    if cid == CORE_DIR:
        raise RtError(f"invalid container id format: {cid} (the resident core's directory)")


def proc_start_time(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks, state letter) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19]), fields[0].decode()


class StoreError(OSError):
    """An OSError on a file of the store, naming the file: "write /run/rt/ID/state.json: reason"."""

    def __init__(self, op: str, err: OSError, path: str):
        super().__init__(err.errno, err.strerror or str(err), path)
        self.op = op

    def __str__(self):
        return f"{self.op} {self.filename}: {self.strerror}"


class CorruptState(RtError):
    """state.json exists but cannot be read, or is not a record rt wrote."""

    def __init__(self, cid: str, path: str, why: str):
        super().__init__(f"container {cid}: corrupt state file {path}: {why}")
        self.cid, self.path, self.why = cid, path, why


# fields the core reads, and their types: a record with others is corrupt
_FIELDS = {"pid": int, "start_time": int, "paused": bool, "creating": bool, "extra": dict, "annotations": dict,
           "hooks": dict, "bundle": str, "rootfs": str, "created": str, "owner": str, "backend": str,
           "plugin": str, "oci_version": str}
_TYPE_NAMES = {int: "an integer", bool: "a boolean", dict: "an object", str: "a string", list: "an array",
               float: "a number", type(None): "null"}


def record_problem(record) -> str | None:
    """Why `record` cannot be a container record, or None when it can."""
    if not isinstance(record, dict):
        return f"not a JSON object but {_TYPE_NAMES.get(type(record), type(record).__name__)}"
    for key, want in _FIELDS.items():
        if key in record:
            v = record[key]
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                return f'"{key}" is {_TYPE_NAMES.get(type(v), type(v).__name__)}, not {_TYPE_NAMES[want]}'
    return None


def tmp_tag() -> str:
    """Our pid, for a temporary file's name; in the resident core, whose threads write at
    once, the thread's id too."""
    import sys
    if "rt.core.server" not in sys.modules:
        return str(os.getpid())
    from _thread import get_ident
    return f"{os.getpid()}.{get_ident()}"


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`, or leave it as it was (and no temporary file) on failure."""
    tmp = f"{path}.{tmp_tag()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:  # a write near ENOSPC or RLIMIT_FSIZE can be short
                view = view[os.write(fd, view):]
            # no fsync: runtime state does not outlive a reboot (runc does the same)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StoreError("write", e, path) from None


class Container:
    """One container's directory and record. Use `Store.open` or `Store.create`."""

    def __init__(self, store: "Store", cid: str, record: dict):
        self.store, self.id, self.record = store, cid, record
        self.dir = os.path.join(store.root, cid)
        self._lock_fd: int | None = None
        self.corrupt: CorruptState | None = None  # set by lock(any_state=True)

    # --- facts -------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.record.get("pid", 0)

    @property
    def extra(self) -> dict:
        """The backend's own persisted data (Created.extra)."""
        return self.record.setdefault("extra", {})

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    def alive(self) -> bool:
        pid = self.pid
        if pid <= 0:
            return False
        info = proc_start_time(pid)
        # A zombie has exited; a different start time means the pid was recycled.
        return info is not None and info[1] != "Z" and info[0] == self.record.get("start_time")

    def status(self) -> str:
        r = self.record
        return st.derive(self.alive(), os.path.exists(self.fifo), r.get("paused", False),
                         creating=r.get("creating", False))

    def oci_state(self) -> dict:
        """The `state` JSON, in runc's key order."""
        s = self.status()
        r = self.record
        from .ocistate import state
        return state(self.id, s, self.pid if s != st.STOPPED else 0, r.get("bundle", ""),
                     r.get("annotations") or None, rootfs=r.get("rootfs", ""), created=r.get("created", ""),
                     owner=r.get("owner", ""), version=r.get("oci_version"))

    # --- changes -----------------------------------------------------------
    def save(self) -> None:
        atomic_write(os.path.join(self.dir, STATE_FILE), jsonio.dumps(self.record).encode())

    def lock(self, any_state: bool = False) -> "Container":
        """Take the per-container lock; different ids never wait on each other.

        any_state (for delete --force): also lock an entry whose state.json is missing (a
        create that died before writing it) or corrupt; its record is then {} and
        `self.corrupt` says what is wrong.
        """
        self._take_lock()
        try:
            record = self.store.read(self.id)
        except CorruptState as e:
            if not any_state:
                self.unlock()
                raise
            self.corrupt, record = e, {}
        if record is None:
            if not any_state:  # deleted while we waited
                self.unlock()
                raise NotFound(self.id)
            record = {}
        self.record = record
        return self

    def _take_lock(self) -> None:
        path = os.path.join(self.dir, ".lock")
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except (FileNotFoundError, NotADirectoryError):
                raise NotFound(self.id)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The entry may have been removed (and its id taken again) while we waited: the
            # lock is only ours if it is still the entry's lock file.
            held = os.fstat(fd)
            try:
                now = os.stat(path)
            except OSError:
                now = None
            if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                self._lock_fd = fd
                return
            os.close(fd)
            if now is None:
                raise NotFound(self.id)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def remove(self) -> None:
        # os.walk, not shutil.rmtree: shutil costs `delete` ~4 ms of imports
        self._detach_mounts()
        for attempt in range(5):
            for top, dirs, files in os.walk(self.dir, topdown=False):
                for name in files:
                    try:
                        os.unlink(os.path.join(top, name))
                    except FileNotFoundError:
                        pass
                for name in dirs:
                    path = os.path.join(top, name)
                    os.unlink(path) if os.path.islink(path) else os.rmdir(path)
            try:
                os.rmdir(self.dir)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                # a waiter's open(O_CREAT) may have made the lock file again: it finds the
                # entry gone once it has the lock (see _take_lock)
                if e.errno != errno.ENOTEMPTY or attempt == 4:
                    raise

    def _detach_mounts(self) -> None:
        """A mount left in the entry (restore's criu-root, had rt died with it there): detach it,
        never walk into it and unlink what it shows."""
        top = os.path.realpath(self.dir) + "/"
        try:  # mountinfo, not os.path.ismount: a bind from the same filesystem has the same st_dev
            with open("/proc/self/mountinfo") as f:
                points = [line.split()[4] for line in f if line.split()[4].startswith(top)]
        except OSError:
            return
        if points:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
        for point in sorted(points, key=len, reverse=True):  # deepest first
            path = point.replace("\\040", " ")
            if libc.umount2(path.encode(), 2) != 0 and ctypes.get_errno() != 22:  # MNT_DETACH; EINVAL: gone
                raise OSError(ctypes.get_errno(), f"cannot detach the mount at {path}")

    def discard(self) -> None:
        """Remove the entry and unlock, on a failure path: never raises, the caller's error wins."""
        try:
            self.remove()
        except OSError:
            pass
        self.unlock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unlock()


def open_container(global_options, cid: str, lock: bool = False) -> Container:
    """For plugin verbs: the container `cid` under the --root of this invocation."""
    return Store(global_options.root or DEFAULT_ROOT).open(cid, lock=lock)


class Store:
    def __init__(self, root: str = DEFAULT_ROOT):
        self.root = os.path.abspath(root)

    def read(self, cid: str) -> dict | None:
        """The record of `cid`, None when it has none; CorruptState when it cannot be used."""
        path = os.path.join(self.root, cid, STATE_FILE)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise CorruptState(cid, path, e.strerror or str(e))
        try:
            record = jsonio.loads(data)
        except ValueError as e:
            raise CorruptState(cid, path, str(e) if data.strip() else "empty file")
        why = record_problem(record)
        if why:
            raise CorruptState(cid, path, why)
        return record

    def open(self, cid: str, lock: bool = False) -> Container:
        check_id(cid)
        record = self.read(cid)
        if record is None:
            raise NotFound(cid)
        c = Container(self, cid, record)
        return c.lock() if lock else c

    def open_entry(self, cid: str) -> Container | None:
        """For delete --force: the entry locked, whatever its state (see Container.lock), or
        None when there is no directory for `cid`."""
        check_id(cid)
        c = Container(self, cid, {})
        if not os.path.isdir(c.dir):
            return None
        try:
            return c.lock(any_state=True)
        except NotFound:
            return None

    def create(self, cid: str, record: dict) -> Container:
        """Claim the id atomically (mkdir), locked, with a 'creating' record. On failure
        nothing is left: the id stays free."""
        check_id(cid)
        try:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
        except OSError as e:
            raise StoreError("mkdir", e, self.root) from None
        path = os.path.join(self.root, cid)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise RtError(f"container with id exists: {cid}")
        except OSError as e:
            raise StoreError("mkdir", e, path) from None
        c = Container(self, cid, dict(record, creating=True))
        try:
            lock = os.path.join(path, ".lock")
            try:
                c._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise StoreError("open", e, lock) from None
            fcntl.flock(c._lock_fd, fcntl.LOCK_EX)
            c.save()
        except BaseException:
            c.discard()
            raise
        return c

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.isfile(os.path.join(self.root, n, STATE_FILE)))
