"""OCI hooks that run in the runtime namespace: prestart, createRuntime, poststart, poststop.

createContainer and startContainer run inside the container; the shim runs those
(rt.shim.stub.run_hooks) from the same dict form. Each hook gets the state JSON on stdin.
"""
from . import jsonio, log
from .errors import RtError

def hooks_of(spec) -> dict[str, list[dict]]:
    """spec.hooks as {stage: [{"path", "args", "env", "timeout"}]}, empty stages left out."""
    h = spec.hooks
    if h is None:
        return {}
    out = {}
    for stage, attr in (("prestart", "prestart"), ("createRuntime", "create_runtime"),
                        ("createContainer", "create_container"), ("startContainer", "start_container"),
                        ("poststart", "poststart"), ("poststop", "poststop")):
        items = [{"path": x.path, "args": list(x.args) or [x.path], "env": list(x.env), "timeout": x.timeout}
                 for x in getattr(h, attr)]
        if items:
            out[stage] = items
    return out


def state_json(record: dict, cid: str, status: str, pid: int) -> str:
    from .ocistate import state
    return jsonio.dumps(state(cid, status, pid, record.get("bundle", ""), record.get("annotations") or {}))


def run(stage: str, hooks: list[dict], state: str, fatal: bool = True) -> None:
    """Run each hook in order; a failure is an error (fatal stages) or a logged warning."""
    if not hooks:
        return
    import subprocess  # only when there are hooks: it costs `create` 3 ms
    for h in hooks:
        env = dict(e.split("=", 1) for e in h["env"] if "=" in e)
        try:
            p = subprocess.run(h["args"], executable=h["path"], input=state.encode(), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=h.get("timeout"),
                               cwd="/", close_fds=True)
            why = None if p.returncode == 0 else f"exit status {p.returncode}: {p.stderr.decode(errors='replace').strip()}"
        except subprocess.TimeoutExpired:
            why = f"timed out after {h['timeout']}s"
        except OSError as e:
            why = e.strerror
        if why:
            msg = f"{stage} hook {h['path']}: {why}"
            if fatal:
                raise RtError(msg)
            log.warning(msg)


class RuntimeHooks:
    """Handed to a backend in CreateRequest.hooks: call create_runtime(pid) once the
    container's namespaces exist and before pivot_root (launch_shim(on_hooks=...) does)."""

    def __init__(self, hooks: dict, record: dict, cid: str):
        self.hooks, self.record, self.id = hooks, record, cid

    def create_runtime(self, pid: int) -> str:
        state = state_json(self.record, self.id, "creating", pid)
        for stage in ("prestart", "createRuntime"):
            run(stage, self.hooks.get(stage, []), state)
        return state_json(self.record, self.id, "created", pid)
