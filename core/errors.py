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
