"""A small JSON map in the rt root, changed under a file lock (IPAM leases, id ranges)."""
import fcntl
import json
import os


def update(path: str, change, dir_mode: int = 0o700):
    """Load `path` ({} when missing), call change(data) under an exclusive lock, write the
    data back atomically, and return what change returned."""
    os.makedirs(os.path.dirname(path), mode=dir_mode, exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            data = {}
        result = change(data)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.rename(tmp, path)
        return result
    finally:
        os.close(fd)
