"""rt core: the CLI, the plugin system and its public API (rt.core.api), the state store."""
