"""Unit tests of rt.core.signals.parse_signal (runc's accepted spellings)."""
import signal

import pytest

from rt.core.errors import RtError
from rt.core.signals import parse_signal

RTMIN, RTMAX = int(signal.SIGRTMIN), int(signal.SIGRTMAX)


@pytest.mark.parametrize("text,want", [
    ("KILL", 9), ("SIGKILL", 9), ("kill", 9), ("sigkill", 9), ("SigTerm", 15), ("TERM", 15),
    ("9", 9), ("15", 15), ("1", 1), (str(RTMAX), RTMAX), (" 9 ", 9), ("HUP", 1), ("USR1", 10),
    ("SIGCHLD", 17), ("WINCH", 28), ("STOP", 19), ("CONT", 18),
])
def test_names_and_numbers(text, want):
    assert parse_signal(text) == want


@pytest.mark.parametrize("text,want", [
    ("RTMIN", RTMIN), ("SIGRTMIN", RTMIN), ("rtmin", RTMIN), ("RTMIN+3", RTMIN + 3), ("SIGRTMIN+3", RTMIN + 3),
    ("RTMAX", RTMAX), ("SIGRTMAX-1", RTMAX - 1), ("RTMAX-4", RTMAX - 4), ("RTMIN+0", RTMIN),
    (f"RTMIN+{RTMAX - RTMIN}", RTMAX), (f"RTMAX-{RTMAX - RTMIN}", RTMIN),
])
def test_realtime(text, want):
    assert parse_signal(text) == want


@pytest.mark.parametrize("text", [
    "0", "999", str(RTMAX + 1), "-9", "", "NOPE", "SIGNOPE", "SIG", "9x", "RTMIN-1", "RTMAX+1",
    f"RTMIN+{RTMAX - RTMIN + 1}", "RTMIN+x", "RTMAX-y", "SIGRTMIN+-1",
])
def test_invalid(text):
    with pytest.raises(RtError) as e:
        parse_signal(text)
    assert e.value.msg == f"invalid signal: {text}"


@pytest.mark.parametrize("text", ["RTMINFOO", "RTMAXX", "RTMIN+"])
def test_realtime_with_garbage_suffix_is_invalid(text):
    with pytest.raises(RtError):
        parse_signal(text)
