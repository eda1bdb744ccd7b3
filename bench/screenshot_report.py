"""Screenshots of report.html as a person sees it: headless Chromium at 1280 px wide.

For each run folder given (or, with ``--synthetic``, a 16-trial language-model folder and a
12-trial classifier folder built from files as ``tests/test_report.py`` builds them, so every
view has something to show), it rewrites ``report.html`` (unless ``--keep``), takes one tall
screenshot, trims the blank page below the content and cuts it into tiles of ``--tile`` px,
which an image viewer shows at full size:

    bench/results/screenshots/<run>-full.png     the whole page
    bench/results/screenshots/<run>-<n>.png      tile n, top to bottom

Needs ``chromium`` (Debian: ``apt-get install chromium``) and Pillow (matplotlib's dependency).

Usage (from the repository root)::

    .venv/bin/python bench/screenshot_report.py --synthetic
    .venv/bin/python bench/screenshot_report.py runs/quick-20261122-101500 --width 1280
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "screenshots"
MAX_HEIGHT = 16000  # px: taller than any report so far; the blank rest is trimmed


def screenshot(page: Path, out: Path, width: int = 1280, tile: int = 1400) -> list[Path]:
    """Screenshot ``page`` at ``width`` px into ``out`` (``<stem>-full.png`` and its tiles); return the tiles.

    Example:
        >>> screenshot(Path("runs/quick/report.html"), Path("/tmp/shots"))  # doctest: +SKIP
        [PosixPath('/tmp/shots/quick-1.png'), PosixPath('/tmp/shots/quick-2.png'), ...]
    """
    from PIL import Image, ImageChops

    if width < 320 or tile < 200:
        raise ValueError(f"width={width} must be >= 320 and tile={tile} >= 200 px")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium (or set PATH)")
    out.mkdir(parents=True, exist_ok=True)
    stem = page.parent.name
    full = out / f"{stem}-full.png"
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state from another run
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{MAX_HEIGHT}",
                        f"--screenshot={full}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    image = Image.open(full).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, (255, 255, 255))).getbbox()
    bottom = min(image.height, (box[3] if box else image.height) + 24)
    image = image.crop((0, 0, width, bottom))
    image.save(full)
    tiles = []
    for n, top in enumerate(range(0, bottom, tile), start=1):
        tiles.append(out / f"{stem}-{n}.png")
        image.crop((0, top, width, min(top + tile, bottom))).save(tiles[-1])
    return tiles


def synthetic_runs(folder: Path) -> list[Path]:
    """The test suite's synthetic run folders (a language model and a classifier) under ``folder``."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_report import make_run_folder  # one builder for the tests and these pictures

    return [make_run_folder(folder / "synthetic-lm", trials=16),
            make_run_folder(folder / "synthetic-classify", trials=12, task="classify")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders made by lstm-sweep search")
    parser.add_argument("--synthetic", action="store_true", help="also screenshot two run folders built from files")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where the PNGs go (default {RESULTS})")
    parser.add_argument("--width", type=int, default=1280, help="window width in px (default 1280)")
    parser.add_argument("--tile", type=int, default=1400, help="tile height in px (default 1400)")
    parser.add_argument("--keep", action="store_true", help="screenshot report.html as it is, without rewriting it")
    args = parser.parse_args(argv)
    if not args.runs and not args.synthetic:
        parser.error("name run folders, or pass --synthetic")

    from lstm_sweep.results import write_report

    with tempfile.TemporaryDirectory(prefix="lstm-sweep-shots-") as scratch:
        runs = list(args.runs) + (synthetic_runs(Path(scratch)) if args.synthetic else [])
        for run in runs:
            if not args.keep:
                write_report(run)
            tiles = screenshot(run / "report.html", args.out, args.width, args.tile)
            print(f"{run.name}: {args.out / (run.name + '-full.png')} and {len(tiles)} tiles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
