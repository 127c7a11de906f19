"""What N days of every wsmon series take on disk at a scrape interval, for the README's figure.

    .venv/bin/python -P tests/deploy/measure_disk.py --days 6 --step 15

The dashboards' backfill generator writes the days (every series of one instance), `promtool
tsdb create-blocks-from openmetrics` makes the blocks (54 h, as the retention test's), and the
bytes of the blocks are scaled to 30 days. The generator's values are noisier than a real
server's, so this is nearer an upper bound than a typical figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parents[1]), str(Path(__file__).parents[1] / "dashboards")]

from backfill import DAY, create_blocks, write  # noqa: E402

from wsmon.catalogue import SPECS  # noqa: E402
from wsmon.exporter.exposition import BUILD_INFO  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--days", type=float, default=6.0, help="days to backfill (default 6)")
    parser.add_argument("--step", type=int, default=15, help="seconds between samples (15)")
    args = parser.parse_args()
    specs = sorted([*SPECS.values(), BUILD_INFO], key=lambda spec: spec.name)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as directory:
        source, data = Path(directory) / "wsmon.om", Path(directory) / "data"
        with source.open("w") as out:
            written = write(out, specs, {}, time.time(), args.days * DAY, args.step)
        create_blocks(source, data, "54h")
        size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    samples = written.series * args.days * DAY / args.step
    print(
        f"{written.series} series every {args.step} s for {args.days:g} days:"
        f" {samples / 1e6:.2f}M samples, {size / 1e6:.1f} MB of blocks,"
        f" {size / samples:.2f} bytes/sample; 30 days: {size * 30 / args.days / 1e6:.0f} MB"
        f" ({time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
