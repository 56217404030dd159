"""The Backend base class: the per-isolation-kind mechanism behind the verbs.

The core owns the state store, locking, status checks and the pid-file; a backend
only does the work. Methods a kind cannot do raise NotSupported (the default).
Kept import-light: short verbs load a backend directly by its import path.
"""
from .errors import NotSupported


class CreateRequest:
    """What `create` gives a backend."""

    def __init__(self, *, id, bundle, spec, config, state_dir, fifo, pid_file=None, console_socket=None,
                 no_pivot=False, preserve_fds=0, warn=None, hooks=None, rootfs=None, save_extra=None,
                 caller_reaps=True, systemd_cgroup=False, rootless=False):
        self.id, self.bundle, self.spec, self.config = id, bundle, spec, config
        self.systemd_cgroup = systemd_cgroup  # --systemd-cgroup: systemd makes the cgroup (a transient unit)
        self.rootless = rootless  # --rootless (auto: not root): no cgroup where none can be made
        # the caller waits for the init (conmon and containerd pass --pid-file or
        # --console-socket; `rt run` in the foreground): the runtime must not adopt it
        self.caller_reaps = caller_reaps
        self.state_dir, self.fifo, self.pid_file = state_dir, fifo, pid_file
        self.console_socket, self.no_pivot, self.preserve_fds = console_socket, no_pivot, preserve_fds
        self.warn = warn or (lambda msg: None)
        self.hooks = hooks  # rt.core.hooks.RuntimeHooks: pass hooks.create_runtime as launch_shim(on_hooks=)
        self.rootfs = rootfs  # root.path made absolute against the bundle
        # persist part of Created.extra before the container exists, so that `delete --force`
        # can clean up after a create that was interrupted half-way
        self.extra: dict = {}
        self._save = save_extra

    def save_extra(self, **kw) -> None:
        self.extra.update(kw)
        if self._save:
            self._save(**kw)


class Created:
    """pid: the host pid that `state` reports and the pid-file holds.
    extra: JSON-able data the backend wants back in later verbs (container.extra)."""

    def __init__(self, pid: int, extra: dict | None = None):
        self.pid, self.extra = pid, extra or {}


class Backend:
    """Subclass per isolation kind. `container` arguments expose: id, dir, pid, extra (dict),
    record (the whole persisted record), status() and alive()."""

    name = "?"

    # What the conformance kit checks beyond the basic lifecycle: names from
    # rt.core.conformance.CAPABILITIES ("exec", "terminal", "pause", ...). (API 1.1)
    supports: frozenset = frozenset()

    @classmethod
    def workload(cls, rootfs: str, action: str, *params: str) -> list[str]:
        """process.args that do one of the kit's abstract actions (rt.core.conformance.ACTIONS)
        in a bundle whose rootfs is a private copy of a busybox tree at `rootfs`. The default
        runs busybox; a kind that runs something else installs its program there. (API 1.1)"""
        from .conformance import busybox_workload
        return busybox_workload(action, *params)

    def create(self, req: CreateRequest) -> Created:
        raise NotSupported(self.name, "create")

    def start(self, container) -> None:
        raise NotSupported(self.name, "start")

    def wait_ready(self, container, timeout: float) -> None:
        """For `start --wait-ready`: return once the workload is up. A plain process is up
        when it has started; kinds with a notion of readiness (an init) wait for it."""

    def kill(self, container, sig: int, all: bool = False) -> None:
        raise NotSupported(self.name, "kill")

    def delete(self, container) -> None:
        """Release everything the container holds. The core has already stopped it."""

    def pids(self, container) -> list[int]:
        raise NotSupported(self.name, "ps")

    def pause(self, container) -> None:
        raise NotSupported(self.name, "pause")

    def resume(self, container) -> None:
        raise NotSupported(self.name, "resume")

    def update(self, container, resources: dict) -> None:
        raise NotSupported(self.name, "update")

    def exec(self, container, req) -> int:
        raise NotSupported(self.name, "exec")
