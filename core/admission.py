"""One admission path for a bundle: load, validate, select the backend, let every plugin
check it, then the rootfs. create and run, restore, and `rt bench` all take bundles through
it, so they accept and refuse the same bundles with the same words."""
import os

from .errors import RtError, require_caller


class Admitted:
    """A bundle that passed: its spec (rt.spec.Spec), config (the same as builtins), raw
    config.json bytes, the chosen backend (plugins.BackendInfo) and the absolute rootfs."""

    def __init__(self, bundle, spec, config, raw, info, rootfs):
        self.bundle, self.spec, self.config, self.raw, self.info, self.rootfs = bundle, spec, config, raw, info, rootfs

    def record(self) -> dict:
        """The container's first record in the store (create and restore write it)."""
        from rt.spec.state import rfc3339nano  # runc's `created`: Go's RFC3339Nano
        return {"bundle": self.bundle, "rootfs": self.rootfs, "created": rfc3339nano(), "owner": "",
                "annotations": self.spec.annotations or {}, "plugin": self.info.name,
                "plugin_ep": self.info.plugin, "plugin_version": self.info.version, "backend": self.info.target,
                "pid": 0, "extra": {}}


def load_spec(bundle: str):
    """(spec, config builtins, raw bytes) of BUNDLE/config.json, or an RtError naming the JSON path."""
    import msgspec
    from rt.spec import SpecError, load_config
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = f.read()
    except OSError as e:
        raise RtError(f"config.json: $: cannot read config.json: {e.strerror}")
    try:
        spec = load_config(raw)
    except SpecError as e:
        raise RtError(str(e))
    return spec, msgspec.to_builtins(spec), raw


def check_rootfs(rootfs: str) -> None:
    import stat
    try:
        mode = os.stat(rootfs).st_mode
    except FileNotFoundError:
        raise RtError(f"rootfs ({rootfs}) does not exist")
    except OSError as e:  # runc: "invalid rootfs: stat PATH: REASON"
        raise RtError(f"invalid rootfs: stat {rootfs}: {e.strerror}")
    if not stat.S_ISDIR(mode):
        raise RtError(f"invalid rootfs: {rootfs}: not a directory")


def admit(bundle: str, explicit: str | None, *, mgr=None, runs_hooks: bool = True,
          override: bool = False) -> Admitted:
    """explicit: --plugin or rt-NAME. runs_hooks: the caller will run the spec's runtime hooks,
    which must run in the caller's own process (under the resident core, in-process).
    override: `explicit` wins over the rt.plugin annotation (rt bench runs one bundle at every level)."""
    bundle = os.path.abspath(bundle)
    if not os.path.isdir(bundle):
        raise RtError(f"bundle {bundle}: no such directory")
    spec, config, raw = load_spec(bundle)
    if runs_hooks and spec.hooks is not None and any(
            getattr(spec.hooks, k) for k in ("prestart", "create_runtime", "poststart", "poststop")):
        require_caller("runtime hooks run in the caller's process, cgroup and environment")
    from rt.spec import SpecError
    from .plugins import Manager
    mgr = mgr or Manager.shared()
    info = mgr.select(explicit, None if override else spec.annotations, spec)
    try:
        mgr.pm.hook.rt_check_spec(spec=spec, plugin=info.name)
    except SpecError as e:
        raise RtError(str(e))
    if spec.root is None or not spec.root.path:
        raise RtError("config.json: $.root.path: a root filesystem is required")
    rootfs = os.path.join(bundle, spec.root.path)  # an absolute root.path stays as it is
    check_rootfs(rootfs)
    return Admitted(bundle, spec, config, raw, info, rootfs)
