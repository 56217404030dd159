"""lxc_system: a whole Linux userland with its own init as PID 1 (LXC-class).

plugin.py holds the hooks (the entry point), settings.py the rt.* annotations it reads,
backend.py the mechanism (an OciBackend with init, /run/host, network and console
additions), verbs.py the `rt stop` verb it adds.
"""
