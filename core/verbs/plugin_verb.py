"""Verbs that plugins add through `registry.add_verb` (e.g. `rt console`)."""
from ..errors import RtError


def run(g, verb, args):
    from ..plugins import Manager, load_target
    mgr = Manager.shared()
    info = mgr.registry.verbs.get(verb)
    if info is None:
        raise RtError(f"unknown command {verb!r}; see `rt --help`")
    return load_target(info.target, info.plugin)(g, args) or 0
