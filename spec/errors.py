"""The one error type raised for a bad bundle configuration."""


class SpecError(ValueError):
    """A config (or other spec document) is unreadable or invalid.

    ``path`` is a JSON path such as ``$.process.args[0]``; ``reason`` says what
    was wrong or expected; ``source`` names the file.
    """

    def __init__(self, path: str, reason: str, source: str = "config.json") -> None:
        super().__init__(path, reason, source)
        self.path = path
        self.reason = reason
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.reason}"
