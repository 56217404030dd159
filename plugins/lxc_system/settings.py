"""The annotations lxc_system reads: rt.net.* (decoded by the core, shared with other
plugins) and rt.system.*, each checked into a Struct."""
import msgspec

from rt.core import api


class System(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    stop_signal: str | None = None  # default: chosen from the init (systemd: RTMIN+3, else SIGPWR)
    stop_timeout: float = 10.0
    reboot_signal: str | None = None  # default: systemd SIGINT (ctrl-alt-del), busybox SIGTERM, else SIGINT
    capabilities: str = "system"  # "system": systemd-nspawn's set; "spec": process.capabilities as given
    userns: str = ""  # "auto": unprivileged, in a user namespace with an id range chosen by rt


CHOICES = {"userns": ("", "auto"), "capabilities": ("system", "spec")}


def decode(annotations: dict | None):
    """rt.net.* -> api Net settings (None when no rt.net.* is set); rt.system.* -> System."""
    raw = api.annotation_settings(annotations, "rt.system.")
    for f, (key, v) in raw.items():
        if f in CHOICES and v not in CHOICES[f]:
            raise api.RtError(f'config.json: $.annotations["{key}"]: expected '
                              f"{' or '.join(c or '(empty)' for c in CHOICES[f])}, got {v!r}")
    return api.net_settings(annotations), api.convert_settings(System, raw, numbers=("stop_timeout",))
