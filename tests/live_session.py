"""A `cfa run` in another process, for the tests of whatever acts on a running session
(`cfa govern`, the console, the MCP server), and the waits they need."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cfa.audit import AuditError
from cfa.audit.errors import DB_ERRORS


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """``pred()``'s first truthy value, polled every 0.1 s for ``timeout`` wall seconds (an
    unreadable store counts as not yet); AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = pred()
        except (AuditError, *DB_ERRORS):
            got = None
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_quoting(db: Path | str, timeout: float = 60) -> None:
    """Wait until the session writing ``db`` has placed its first order."""
    from store_backends import rows

    def placed() -> bool:
        if not str(db).startswith("postgres") and not Path(db).exists():
            return False
        return rows(db, "select count(*) from orders where action = 'place'")[0][0] > 0

    wait_for(placed, timeout, "orders")


def wait_approval_requests(db: Path | str, n: int = 1, timeout: float = 60) -> None:
    """Wait until the session writing ``db`` has asked for ``n`` approvals."""
    from store_backends import rows

    def asked() -> bool:
        if not str(db).startswith("postgres") and not Path(db).exists():
            return False
        q = "select count(*) from governance_actions where action = 'approval_requested'"
        return rows(db, q)[0][0] >= n

    wait_for(asked, timeout, f"{n} approval request(s)")


def approval_script(path: Path, gamma: float = 0.14) -> str:
    """A scripted reasoner whose market agent asks for γ ``gamma`` (default +40 %, above the
    default policy's 30 % approval step) and whose governance agent abstains, so a person
    decides; returns the ``--reasoner`` value."""
    path.write_text(
        json.dumps(
            {"calls": [{"name": "set_gamma", "arguments": {"value": gamma, "rationale": "wider"}}]}
        )
        + "\n"
    )
    return f"scripted:{path}"


def quick_policy(cwd: Path) -> Path:
    """The default policy with a short warm-up (one σ sample over 30 s instead of twelve over
    two minutes): a session quotes ~30 simulated seconds after it starts, not ~3 minutes, so
    tests waiting for its first orders wait seconds less. Written to ``cwd/policy.yaml``."""
    import yaml

    from cfa._files import read_named_or_path

    text, _ = read_named_or_path("default", "cfa.policies", "policies")
    policy = yaml.safe_load(text)
    policy["name"] = "default-quick-warmup"
    policy["warmup"].update({"min_samples": 1, "sigma_horizon_s": 30})
    path = cwd / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def start_run(
    db: Path | str,
    cwd: Path,
    *,
    markets: int = 2,
    speed: str = "20x",
    duration: str = "2h",
    reasoner: str | None = None,
) -> subprocess.Popen[str]:
    """Start ``cfa run`` on the simulator into audit store ``db`` (a file or a PostgreSQL URL)
    in ``cwd``, quiet, with :func:`quick_policy`; the caller waits for what it needs and kills
    it."""
    cmd = [sys.executable, "-m", "cfa.cli", "run", "--speed", speed, "--duration", duration]
    cmd += ["--db", str(db), "--quiet", "-n", str(markets), "--policy", str(quick_policy(cwd))]
    if reasoner is not None:
        cmd += ["--reasoner", reasoner]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill the run if it still goes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
