"""rt's built-in plugins. Each registers through the `rt.plugins` entry-point group."""
