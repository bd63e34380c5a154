"""Wall time and peak resident memory of a whole process tree, for the benchmarks and tests/test_resources.py.

The tree's resident memory (the process and all its children, summed) is sampled every
5 ms while the command runs: that is what ``--memory-budget`` bounds.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path


def run_with_peak_rss(command: list[str], cwd: Path, *, keep_stderr: bool = False) -> tuple[float, int, int, str]:
    """Run ``command``; return (wall seconds, peak summed RSS in bytes, exit code, stderr if kept)."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL, text=True)
    parent = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                members = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(m.memory_info().rss for m in members if m.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return wall, peak, proc.returncode, err or ""
