"""Facts about processes and programs that several kinds need (through rt.core.api)."""
import os

from .store import proc_start_time  # noqa: F401  (pid -> (start time in ticks, state letter) or None)


def which(name: str) -> str | None:
    """shutil.which, without importing shutil on every create."""
    dirs = [""] if "/" in name else os.environ.get("PATH", os.defpath).split(os.pathsep)
    return next((p for p in (os.path.join(d, name) for d in dirs) if os.path.isfile(p) and os.access(p, os.X_OK)),
                None)
