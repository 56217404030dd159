"""The per-container shim: its message protocol, the launcher, and the lean stub process."""
