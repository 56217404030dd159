"""Container statuses and the one table of which verb is allowed in which status."""

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"

# verb -> statuses it accepts, with runc's message for the others.
_ALLOWED: dict[str, tuple[frozenset, str]] = {
    "start": (frozenset({CREATED}), "cannot start a container in the {status} state"),
    "kill": (frozenset({CREATED, RUNNING, PAUSED}), "container not running"),
    "exec": (frozenset({CREATED, RUNNING}), "cannot exec in a {status} container"),
    "pause": (frozenset({RUNNING}), "container not running"),
    "resume": (frozenset({PAUSED}), "container not paused"),
    "update": (frozenset({CREATED, RUNNING, PAUSED}), "cannot update a {status} container"),
    "ps": (frozenset({CREATED, RUNNING, PAUSED}), "container is not running"),
    "events": (frozenset({CREATED, RUNNING, PAUSED}), "container with id {id} is not running"),
    # delete without --force: runc deletes stopped ones, and kills created ones first.
    "delete": (frozenset({STOPPED, CREATED, CREATING}), "cannot delete container {id} that is not stopped: {status}"),
}


def check(verb: str, status: str, cid: str) -> None:
    allowed, msg = _ALLOWED[verb]
    if status not in allowed:
        from .errors import RtError
        raise RtError(msg.format(status=status, id=cid))


def derive(alive: bool, waiting: bool, paused: bool, creating: bool = False) -> str:
    """The status from facts on disk and in /proc (runc/crun derive it the same way)."""
    if creating:
        return CREATING
    if not alive:
        return STOPPED
    if waiting:
        return CREATED
    return PAUSED if paused else RUNNING
