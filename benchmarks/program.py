"""The ``eetrend`` command as a user runs it, for the benchmarks that time whole processes.

That is the console script pip installed beside this interpreter (``cli:program``: the app,
then an exit without the interpreter's teardown), or ``python -m cli`` where there is none.
"""

from __future__ import annotations

import sys
from pathlib import Path


def eetrend_command(*args: str) -> list[str]:
    """The argument list that runs ``eetrend *args`` in a fresh process."""
    script = Path(sys.executable).with_name("eetrend")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "cli", *args]
