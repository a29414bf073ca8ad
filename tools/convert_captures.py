"""Convert the recorded KXBTC15M captures into JSONL files of Kalshi's own WebSocket frames.

Usage::

    .venv/bin/python tools/convert_captures.py                 # every dataset, into a temp dir
    .venv/bin/python tools/convert_captures.py --out /tmp/kx   # into a directory you choose
    .venv/bin/python tools/convert_captures.py --dataset rv600_next_evidence_shadow_20260514T043808Z

For each dataset under ``../shared/data/kalshi/kxbtc15m_ws_captures`` (or ``$CFA_KALSHI_DATA``)
this writes ``<out>/<dataset>.jsonl`` — one frame per line, ``{"type", "sid", "seq", "msg",
"recv_ts"}`` exactly as Kalshi sent it plus the recorder's receive time, via
:func:`cfa.exchange.captures.write_ws_frames` — and ``<out>/<dataset>.markets.json`` (each
market's close time and strike from the capture's ``watch_market`` events, the series' price
structure and fee terms, and its result when a result cache knows it). Replay a file with
:class:`cfa.exchange.feed.KalshiFeedExchange`.

The captures' licence forbids redistribution: ``--out`` must lie outside the repository (the
tool refuses a directory inside it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cfa.exchange.captures import captures_root, list_datasets  # noqa: E402
from cfa.exchange.feed import write_feed  # noqa: E402


def inside_repo(path: Path) -> bool:
    """True when ``path`` is the repository or lies inside it."""
    p = path.resolve()
    return p == ROOT or ROOT in p.parents


def convert(
    out_dir: Path, names: list[str] | None = None, root: Path | None = None
) -> list[tuple[str, Path, int]]:
    """Convert the datasets (all, or those named) to ``out_dir``; return (name, file, frames).

    Raises ``ValueError`` when ``out_dir`` is inside the repository, ``FileNotFoundError``
    when a named dataset (or any dataset at all) is missing.
    """
    if inside_repo(out_dir):
        raise ValueError(f"{out_dir} is inside the repository; the data must stay outside it")
    datasets = list_datasets(root)
    if not datasets:
        raise FileNotFoundError(f"no capture datasets under {root or captures_root()}")
    if names:
        by_name = {d.name: d for d in datasets}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise FileNotFoundError(f"unknown dataset(s): {', '.join(missing)}")
        datasets = [by_name[n] for n in names]
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for ds in datasets:
        target = out_dir / f"{ds.name}.jsonl"
        n, _ = write_feed(ds, target)
        done.append((ds.name, target, n))
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="output directory (default: a new temp dir)")
    ap.add_argument(
        "--dataset", action="append", help="dataset directory name (repeatable; default: all)"
    )
    ap.add_argument("--root", type=Path, help="captures directory (default: the shared data)")
    args = ap.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="cfa-kalshi-frames-"))
    t0 = time.perf_counter()
    try:
        done = convert(out, args.dataset, args.root)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, path, n in done:
        print(f"{name}: {n} frames -> {path}")
    print(f"{len(done)} dataset(s) in {time.perf_counter() - t0:.1f}s, output in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
