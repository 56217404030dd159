"""JSON for the short verbs, on the C accelerator alone.

`import json` costs ~5 ms here (it pulls in re and enum and compiles regexes), which is a
third of `rt state`. The `_json` extension that json itself uses needs none of that.
"""
import _json

_escape = _json.encode_basestring_ascii


class _Context:  # the attributes _json's scanner reads from json.JSONDecoder
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float


_scan = _json.make_scanner(_Context())
_compact = _json.make_encoder(None, None, _escape, None, ":", ",", False, False, True)
_WS = " \t\n\r"


def loads(text: str | bytes):
    """Raises ValueError, with a message fit for a user, on anything that is not JSON."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as e:
            raise ValueError(f"invalid JSON: not UTF-8 at offset {e.start}") from None
    s = text.strip(_WS)
    if not s:
        raise ValueError("invalid JSON: empty")
    try:
        obj, end = _scan(s, 0)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at offset {e.value}") from None
    except (SystemError, ValueError, RecursionError):
        # _json reports an error inside a value through json.decoder, which we do not import
        # (a SystemError then): only on this path, let json itself say what is wrong.
        return _slow_loads(s)
    if end != len(s):
        raise ValueError(f"invalid JSON: extra data at offset {end}")
    return obj


def _slow_loads(s: str):
    import json
    try:
        return json.loads(s)
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"invalid JSON: {e}") from None


def dumps(obj, indent: int | None = None) -> str:
    if indent is None:
        return "".join(_compact(obj, 0))
    return _pretty(obj, " " * indent, "")


def _pretty(obj, step: str, pad: str) -> str:
    inner = pad + step
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = (f"{inner}{_escape(str(k))}: {_pretty(v, step, inner)}" for k, v in obj.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        return "[\n" + ",\n".join(inner + _pretty(v, step, inner) for v in obj) + f"\n{pad}]"
    return "".join(_compact(obj, 0))
