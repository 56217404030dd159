"""lxc_system: a whole Linux userland with its own init (LXC-class).

Not built yet (issue 4): this package registers no backend, so `rt.plugin=lxc_system`
fails with "unknown plugin" rather than pretending.
"""
