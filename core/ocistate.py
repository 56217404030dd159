"""The runtime-spec state document ("State" in runtime.md), built in one place: `rt state`,
the hooks' stdin and the seccomp listener's containerProcessState all use it."""
OCI_VERSION = "1.2.0"  # the runtime-spec version rt implements


def state(cid: str, status: str, pid, bundle: str, annotations: dict | None = None, *,
          version: str | None = None, **more) -> dict:
    """runc's key order: ociVersion (the bundle's when recorded), id, pid, status, bundle, then
    `more`, then annotations (left out when None)."""
    out = {"ociVersion": version or OCI_VERSION, "id": cid, "pid": pid, "status": status, "bundle": bundle, **more}
    if annotations is not None:
        out["annotations"] = annotations
    return out
