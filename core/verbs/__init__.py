"""One module per verb. Shared helpers for opening containers and their backends."""
from ..store import Store


def store(g) -> Store:
    return Store(g.root)


def backend_of(c):
    """The backend recorded at create time, imported directly by path (no plugin scan)."""
    from ..plugins import load_target
    cls = load_target(c.record["backend"], c.record.get("plugin"))
    return cls()
