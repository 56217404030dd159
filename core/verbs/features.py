import json
import sys

from ..cli import OCI_VERSION, VERSION


def supported_seccomp_flags() -> list[str]:
    """The filter flags this kernel takes, probed as libseccomp does: seccomp(2) with the
    flag and no filter fails with EFAULT (or EACCES without privilege) when the flag is
    known, EINVAL when it is not."""
    import ctypes
    import errno
    from ..seccomp import FILTER_FLAGS
    import platform
    nr = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348}.get(platform.machine())
    if nr is None:
        return sorted(FILTER_FLAGS)  # no probe here: what libseccomp knows
    libc = ctypes.CDLL(None, use_errno=True)
    out = []
    for name, bit in FILTER_FLAGS.items():
        if name == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV":
            bit |= FILTER_FLAGS["SECCOMP_FILTER_FLAG_NEW_LISTENER"]  # valid only with it
        # seccomp(SECCOMP_SET_MODE_FILTER, flags, NULL)
        if libc.syscall(nr, 1, ctypes.c_uint(bit), None) < 0 and ctypes.get_errno() in (errno.EFAULT, errno.EACCES):
            out.append(name)
    return sorted(out)


def run(g, opts, pos):
    from rt.spec.validate import SECCOMP_ARCHS

    from ..plan import _FLAGS, _PROPAGATION, _RATTR, CAP_NAMES
    from ..seccomp import ACTIONS, FILTER_FLAGS, OPERATORS
    from ..api import API_VERSION
    from ..plugins import Manager
    from ..cgroups import Layout
    mgr = Manager.shared()
    layout = Layout.detect()
    feats = {
        "ociVersionMin": "1.0.0", "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": sorted(set(_FLAGS) | set(_PROPAGATION) | set(_RATTR) | {"idmap", "ridmap"}),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": CAP_NAMES,
            "cgroup": {"v1": layout.mode != "v2", "v2": layout.unified is not None, "systemd": True,
                       "systemdUser": True, "rdma": False},
            "seccomp": {"enabled": True, "actions": sorted(ACTIONS), "operators": sorted(OPERATORS),
                        "archs": list(SECCOMP_ARCHS), "knownFlags": sorted(FILTER_FLAGS),
                        "supportedFlags": supported_seccomp_flags()},
            # the spec's sense: rt applies the labels (rt-exec writes attr/exec), whether or
            # not this host enforces them
            "apparmor": {"enabled": True}, "selinux": {"enabled": True},
            "intelRdt": {"enabled": False}, "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.version": OCI_VERSION,
                        "io.github.rt.version": VERSION,
                        "io.github.rt.plugin-api": API_VERSION,
                        "io.github.rt.plugins": ",".join(sorted(mgr.registry.backends)),
                        # plugins that may pick a backend for a bundle that names none (rt_claim)
                        "io.github.rt.claims": ",".join(sorted({i.plugin_name for i in
                                                                mgr.pm.hook.rt_claim.get_hookimpls()})),
                        **({"io.github.rt.plugins.disabled": "; ".join(f"{n}: {w}" for n, w in sorted(
                            mgr.broken.items()))} if mgr.broken else {}),
                        **{f"io.github.rt.plugin.{b.name}": f"{b.version} ({mgr.dists.get(b.plugin, '?')})"
                           for b in mgr.registry.backends.values()}},
        # config annotations that change what rt does (a value ending in "." is a prefix);
        # plugins add theirs through rt_features
        "potentiallyUnsafeConfigAnnotations": ["rt.plugin", "rt.net."],
        "rt": {"plugins": [
            {"name": b.name, "version": b.version, "summary": b.summary, "plugin": b.plugin,
             "distribution": mgr.dists.get(b.plugin, "?"), "backend": b.target, "supports": _supports(b)}
            for b in sorted(mgr.registry.backends.values(), key=lambda b: b.name)],
            "verbs": sorted(mgr.registry.verbs), "disabled": dict(sorted(mgr.broken.items()))},
    }
    for name, why in sorted(mgr.broken.items()):  # here for a person to read; other verbs only log it
        sys.stderr.write(f"rt: plugin {name} is disabled: {why}\n")
    for impl in mgr.pm.hook.rt_features.get_hookimpls():
        _add_from(impl, feats)
    sys.stdout.write(json.dumps(feats, indent=2) + "\n")


def _supports(info) -> list[str] | None:
    """What the backend declares to the conformance kit (None: it cannot be imported)."""
    from ..plugins import load_target
    try:
        return sorted(load_target(info.target, info.plugin).supports)
    except Exception:
        return None


def _add_from(impl, feats: dict) -> None:
    """A plugin's rt_features may add keys and annotations, never change what is there: it
    works on a copy, and only its additions are taken."""
    import copy
    from .. import log
    doc = copy.deepcopy(feats)
    try:
        impl.function(features=doc)
    except Exception as e:
        log.warning(f"plugin {impl.plugin_name}: rt_features failed, ignored: {e}")
        return
    for key, value in doc.items():
        if key not in feats:
            feats[key] = value
        elif key == "annotations" and isinstance(value, dict):
            feats[key].update({k: v for k, v in value.items() if k not in feats[key] and isinstance(v, str)})
        elif key == "potentiallyUnsafeConfigAnnotations" and isinstance(value, list):
            feats[key] += [a for a in value if isinstance(a, str) and a not in feats[key]]
        elif value != feats[key]:
            log.warning(f"plugin {impl.plugin_name}: rt_features may only add; its change of {key!r} is ignored")
