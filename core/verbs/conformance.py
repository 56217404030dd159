"""`rt conformance PLUGIN [PYTEST ARGS]`: run the conformance kit against one isolation kind."""
from ..errors import RtError, require_caller


def run(g, opts, pos) -> int:
    require_caller("the kit starts its own containers and pytest")
    if not pos and not opts.runtime:
        raise RtError("conformance: name the plugin to check (rt conformance PLUGIN); installed: "
                      + _installed())
    plugin, args = (pos[0], pos[1:]) if pos and not pos[0].startswith("-") else (None, pos)
    if plugin and not opts.runtime:
        from ..plugins import Manager
        Manager.shared().select(plugin, None)  # an unknown or disabled plugin: its error, now
    from ..conformance import main
    return main(plugin or g.plugin, opts.runtime, args)


def _installed() -> str:
    from ..plugins import Manager
    return ", ".join(sorted(Manager.shared().registry.backends))
