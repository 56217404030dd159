"""Errors that a verb turns into a runc-style message and exit code."""


class RtError(Exception):
    """A user-facing failure: one line on stderr (and --log), exit code `code`."""

    def __init__(self, msg: str, code: int = 1):
        super().__init__(msg)
        self.msg = msg
        self.code = code


class NotFound(RtError):
    def __init__(self, cid: str):
        super().__init__("container does not exist")
        self.cid = cid


class NotSupported(RtError):
    """Raised by a backend for a verb its isolation kind cannot do."""

    def __init__(self, plugin: str, what: str):
        super().__init__(f"{what} is not supported by plugin {plugin}")


class NeedsCaller(BaseException):
    """Raised in the resident core, before any change, by a step that must run in the caller's
    own process (runtime hooks, a terminal relay, a fork of rt): the front end runs the
    verb in-process instead. BaseException: no `except Exception` may swallow it."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def require_caller(why: str) -> None:
    """NeedsCaller when running in the resident core; nothing in-process."""
    if front() is not None:
        raise NeedsCaller(why)


def front():
    """The front end of this request in the resident core, None in-process."""
    import sys
    srv = sys.modules.get("rt.core.server")
    return srv.current_front() if srv is not None else None
