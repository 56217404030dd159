"""runc-compatible logging: text or JSON lines to --log, plain message on stderr."""
import os
import sys
import time

from . import jsonio

_state = {"path": None, "format": "text", "debug": False}


def configure(path: str | None, fmt: str, debug: bool) -> None:
    _state.update(path=path, format=fmt, debug=debug)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _line(level: str, msg: str) -> str:
    if _state["format"] == "json":
        return jsonio.dumps({"level": level, "msg": msg, "time": _now()}) + "\n"
    return f'time="{_now()}" level={level} msg={jsonio.dumps(msg)}\n'


def _write(level: str, msg: str) -> bool:
    path = _state["path"]
    if not path:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return False
    try:
        os.write(fd, _line(level, msg).encode())
    finally:
        os.close(fd)
    return True


def error(msg: str) -> None:
    # runc: with --log the file gets the record and stderr the bare message.
    if _write("error", msg):
        sys.stderr.write(msg + "\n")
    else:  # runc's logrus, without --log: the record in the chosen format, on stderr
        sys.stderr.write(_line("error", msg))
    sys.stderr.flush()


def warning(msg: str) -> None:
    # Never on stderr: containerd parses `state`/`ps` output with stderr mixed in.
    _write("warning", msg)


def warn_user(msg: str) -> None:
    """A warning for the person or tool that asked (a plugin's req.warn on create, run or exec):
    as runc's logrus, to --log when given (conmon and containerd always give it), else to stderr."""
    if not _write("warning", msg):
        sys.stderr.write(_line("warning", msg))
        sys.stderr.flush()


def info(msg: str) -> None:
    _write("info", msg)


def debugging() -> bool:
    return _state["debug"]


def debug(msg: str) -> None:
    if _state["debug"]:
        _write("debug", msg)
