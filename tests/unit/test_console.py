"""The CLI's error line: one line on stderr whatever its length (people grep and pipe it)."""

from __future__ import annotations

import subprocess
import sys

_RAISE = """
from lookalike.api.console import errors_to_exit
from lookalike.errors import StoreError
with errors_to_exit():
    raise StoreError("the index at /tmp/" + "x" * 90 + " already lives in qdrant+local:///tmp/y")
"""


def test_a_long_error_message_is_one_line_on_stderr() -> None:
    # stderr is not a terminal here: rich used to wrap at 80 columns, splitting "already lives".
    out = subprocess.run([sys.executable, "-c", _RAISE], capture_output=True, text=True)
    first = out.stderr.splitlines()[0]
    assert first.startswith("error: the index at /tmp/xxx")
    assert first.endswith("already lives in qdrant+local:///tmp/y")
