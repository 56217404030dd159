"""The app_single backend: the shim becomes the container process itself at `start`."""
from rt.core import api


class AppBackend(api.OciBackend):
    name = "app_single"
    supports = frozenset({"stdio", "posix", "namespaces", "exec", "ps", "kill-all", "pause", "update", "terminal", "hooks", "userns"})  # checked by `rt conformance`
