"""The app_single backend: the shim becomes the container process itself at `start`."""
from rt.core import api


class AppBackend(api.OciBackend):
    name = "app_single"
