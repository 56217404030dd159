"""The annotations lxc_system reads, each decoded and checked into a Struct."""
import ipaddress

import msgspec

from rt.core.api import RtError


class Net(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    bridge: str = "rt0"
    subnet: str = "10.213.0.0/24"
    address: str | None = None  # a host address of subnet; by default the next free one
    ifname: str = "eth0"        # or "host0", as systemd-nspawn names it


class System(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    stop_signal: str | None = None  # default: chosen from the init (systemd: RTMIN+3, else SIGPWR)
    stop_timeout: float = 10.0
    capabilities: str = "system"  # "system": systemd-nspawn's set; "spec": process.capabilities as given
    userns: str = ""  # "auto": unprivileged, in a user namespace with an id range chosen by rt


def _where(key: str) -> str:
    return f'config.json: $.annotations["{key}"]'


def decode(annotations: dict | None) -> tuple[Net | None, System]:
    """rt.net.* -> Net (None when no rt.net.* is set); rt.system.* -> System."""
    net_raw, sys_raw = {}, {}
    for key, value in (annotations or {}).items():
        for prefix, into in (("rt.net.", net_raw), ("rt.system.", sys_raw)):
            if key.startswith(prefix):
                into[key[len(prefix):].replace("-", "_")] = (key, value)
    net = _convert(Net, net_raw) if net_raw else None
    if net is not None:
        try:
            subnet = ipaddress.ip_network(net.subnet, strict=True)
        except ValueError as e:
            raise RtError(f"{_where('rt.net.subnet')}: {e}")
        if subnet.version != 4:
            raise RtError(f"{_where('rt.net.subnet')}: only IPv4 subnets are supported")
        if not 0 < len(net.bridge) <= 15 or "/" in net.bridge:
            raise RtError(f"{_where('rt.net.bridge')}: not a valid interface name")
        if net.ifname not in ("eth0", "host0"):
            raise RtError(f"{_where('rt.net.ifname')}: expected eth0 or host0")
    return net, _convert(System, sys_raw)


def _convert(kind, raw: dict):
    fields = {f: v for f, (_, v) in raw.items()}
    for f, (key, v) in raw.items():
        if f not in kind.__struct_fields__:
            raise RtError(f"{_where(key)}: unknown setting (expected one of "
                          f"{', '.join(kind.__struct_fields__)})")
        if f == "userns" and v not in ("", "auto"):
            raise RtError(f"{_where(key)}: expected auto, got {v!r}")
        if f == "capabilities" and v not in ("system", "spec"):
            raise RtError(f"{_where(key)}: expected system or spec, got {v!r}")
        if f == "stop_timeout":
            try:
                fields[f] = float(v)
            except ValueError:
                raise RtError(f"{_where(key)}: expected a number of seconds, got {v!r}")
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as e:
        raise RtError(f"config.json: $.annotations: {e}")
