"""OCI runtime-spec documents: config.json, state and features, plus validation."""

import os

import msgspec

from .config import Spec
from .errors import SpecError
from .features import Features
from .state import State
from .validate import validate

__all__ = ["Features", "Spec", "SpecError", "State", "load_bundle", "load_config", "validate"]

_decoder = msgspec.json.Decoder(Spec)


def load_config(data: bytes, *, source: str = "config.json") -> Spec:
    """Decode and validate a config.json; every failure is a SpecError."""
    try:
        spec = _decoder.decode(data)
    except msgspec.ValidationError as e:
        path, reason = _split(str(e))
        raise SpecError(path, reason, source) from None
    except msgspec.DecodeError as e:
        path, reason = _split(str(e))
        raise SpecError(path, f"invalid JSON: {reason}", source) from None
    except UnicodeDecodeError as e:  # invalid UTF-8 inside a string
        raise SpecError("$", f"invalid JSON: {e}", source) from None
    except RecursionError:
        raise SpecError("$", "invalid JSON: nested too deeply", source) from None
    validate(spec, source=source)
    return spec


def load_bundle(bundle_dir: str) -> Spec:
    """Read and validate ``<bundle_dir>/config.json``."""
    try:
        with open(os.path.join(bundle_dir, "config.json"), "rb") as f:
            data = f.read()
    except OSError as e:
        raise SpecError("$", f"cannot read config.json: {e.strerror or e}") from None
    except ValueError as e:  # e.g. a NUL byte in bundle_dir
        raise SpecError("$", f"cannot read config.json: {e}") from None
    return load_config(data)


def _split(message: str) -> tuple[str, str]:
    """Split msgspec's "Expected `str`, got `int` - at `$.a[0]`" into path and reason."""
    reason, sep, path = message.rpartition(" - at `")
    if not sep or not path.endswith("`"):
        return "$", message
    return path[:-1], reason
