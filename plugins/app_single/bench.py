"""rt bench at the app level: rt app_single next to runc and crun."""
import shutil

from rt.core import api

# crun rejects a hybrid host's cgroup2 at /sys/fs/cgroup/unified: hide it, in a private
# mount namespace, behind an empty tmpfs ("$0" is the wrapped program).
HIDE_UNIFIED = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /sys/fs/cgroup/unified && exec "$0" "$@"']


class Crun(api.bench.OciTarget):
    def adapt(self, ctx, config, role):
        config = super().adapt(ctx, config, role)
        if config.get("ociVersion", "1.0") >= "1.1":  # crun 1.8 knows none newer; same fields here
            config["ociVersion"] = "1.0.2"
        return config


def targets() -> list:
    b = api.bench
    found = [b.OciTarget("rt app_single", b.rt_argv(), level="app", peer=False, plugin="app_single")]
    found.append(b.OciTarget("runc", [shutil.which("runc") or "runc"], level="app", peer=True))
    hybrid = api.CgroupLayout.detect().mode == "hybrid"
    crun = Crun("crun", [shutil.which("crun") or "crun"], level="app", peer=True,
                       wrap=HIDE_UNIFIED if hybrid else None)
    if hybrid:
        crun.note = "run in a mount namespace that hides cgroup2 (crun rejects hybrid hosts); wrapper cost subtracted"
    found.append(crun)
    return found
