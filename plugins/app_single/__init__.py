"""app_single: one process in its own namespaces and cgroup (runc-class).

plugin.py holds the hooks (the entry point); backend.py the mechanism. This file stays
empty so that short verbs importing the backend do not pull in pluggy.
"""
