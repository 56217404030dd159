"""A third-party rt plugin: containers that get only a mount namespace and pivot_root.

It uses nothing of rt but the public API (rt.core.api) and rt.spec.
"""
import os

import msgspec
from rt.core import api

VERSION = "0.3.1"


@api.hookimpl
def rt_register(registry):
    registry.add_backend("example", "rt_example_plugin:MountOnly", version=VERSION,
                         summary="mount namespace only (test plugin)")
    registry.add_verb("example-hello", "rt_example_plugin:hello", help="say hello")


@api.hookimpl
def rt_check_spec(spec, plugin):
    if plugin == "example" and (spec.annotations or {}).get("example.reject"):
        raise api.RtError("example: rejected by annotation example.reject")


def hello(g, args):
    print("hello from the example plugin", *args)
    return 0


class MountOnly(api.Backend):
    name = "example"

    def create(self, req):
        # no cgroup of its own, so no cgroup mount either
        spec = msgspec.structs.replace(req.spec, mounts=[m for m in req.spec.mounts if m.type != "cgroup"])
        plan = api.build_plan(spec, rootfs=os.path.join(req.bundle, spec.root.path), fifo=req.fifo)
        plan["unshare"], plan["join"], plan["unshare_mount"] = ["mount"], [], True
        plan["hostname"] = plan["domainname"] = None
        plan["loopback"] = False
        return api.Created(api.launch_shim(plan).pid, {"kind": "mount-only"})

    def start(self, c):
        api.release_barrier(os.path.join(c.dir, "exec.fifo"))

    def kill(self, c, sig, all=False):
        os.kill(c.pid, sig)

    def pids(self, c):
        return [c.pid] if c.alive() else []
