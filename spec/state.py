"""Container state as printed by ``runc state`` (runtime.md plus runc's extras)."""

import time
from typing import Literal

import msgspec

Status = Literal["creating", "created", "running", "stopped", "paused"]
STATUSES: tuple[str, ...] = ("creating", "created", "running", "stopped", "paused")


class State(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Field order is runc's key order; only ``annotations`` is omitted when empty."""

    oci_version: str = msgspec.field(name="ociVersion")
    id: str
    pid: int
    status: Status
    bundle: str
    rootfs: str
    created: str  # RFC 3339 with nanoseconds, see rfc3339nano()
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    owner: str


def rfc3339nano(ns: int | None = None) -> str:
    """Format a UTC time in nanoseconds like Go's time.RFC3339Nano (runc's ``created``)."""
    if ns is None:
        ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    # Go trims trailing zeros from the fraction and drops it when zero.
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"
