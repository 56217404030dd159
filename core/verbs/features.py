import json
import sys

from ..cli import OCI_VERSION, VERSION


def run(g, opts, pos):
    from rt.spec.validate import SECCOMP_ARCHS

    from ..plan import _FLAGS, _PROPAGATION, _RATTR, CAP_NAMES
    from ..seccomp import ACTIONS, FILTER_FLAGS, OPERATORS
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
            "cgroup": {"v1": layout.mode != "v2", "v2": layout.unified is not None, "systemd": False,
                       "systemdUser": False, "rdma": False},
            "seccomp": {"enabled": True, "actions": sorted(ACTIONS), "operators": sorted(OPERATORS),
                        "archs": list(SECCOMP_ARCHS), "knownFlags": sorted(FILTER_FLAGS),
                        "supportedFlags": sorted(FILTER_FLAGS)}, "apparmor": {"enabled": False}, "selinux": {"enabled": False},
            "intelRdt": {"enabled": False}, "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.version": OCI_VERSION,
                        "io.github.rt.version": VERSION},
        "rt": {"plugins": [
            {"name": b.name, "version": b.version, "summary": b.summary, "plugin": b.plugin,
             "distribution": mgr.dists.get(b.plugin, "?"), "backend": b.target}
            for b in sorted(mgr.registry.backends.values(), key=lambda b: b.name)],
            "verbs": sorted(mgr.registry.verbs)},
    }
    mgr.pm.hook.rt_features(features=feats)
    sys.stdout.write(json.dumps(feats, indent=2) + "\n")
