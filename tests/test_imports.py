"""cfa._imports: sqlite_utils imported once, without pandas, from any number of threads."""

from __future__ import annotations

import subprocess
import sys

_RACE = """
import threading
from cfa._imports import load_sqlite_utils
errors = []
start = threading.Barrier(16)
def first_read():
    start.wait()
    try:
        load_sqlite_utils().Database
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=first_read) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
import sys
print(len(errors), "pandas" in sys.modules)
"""


def test_first_import_from_many_threads_at_once_hands_out_a_whole_module() -> None:
    # Regression: a thread got sys.modules["sqlite_utils"] while another was still importing it
    # ("module 'sqlite_utils' has no attribute 'Database'"): concurrent first reads failed.
    out = subprocess.run(
        [sys.executable, "-c", _RACE], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == ["0", "False"], out
