"""Makes the documentation's screenshots of ``runlog serve`` (docs/serve-runs.png,
docs/serve-run.png, docs/serve-compare.png) from a realistic store, so they can be made again
when the pages change:

    .venv/bin/python scripts/screenshots.py [OUTPUT_FOLDER]

In a copy of examples/ (in a temporary folder), runnable runs the example pipeline five times
(16, 8, 16, 4 and 16 branches) and twice with a bad ``branches`` parameter (a string: the
``prepare`` step fails with a real traceback). ``runlog serve`` is started there with no
configuration, and Debian's Chromium (scripts/chromium.sh), driven by Playwright at 1280x800,
photographs the runs page, the first run's page and the comparison of two runs. The PNGs are
reduced to a 256-colour palette with pillow, which keeps each well under 250 KB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.serve.browser_support import VIEWPORT, start_serve  # noqa: E402

# (run id, branches): the bad value makes `prepare` fail (range() of a string).
RUNS = [
    ("train-2026-12-01", "16"),
    ("train-2026-12-02", "8"),
    ("train-bad-branches", '"all"'),
    ("train-2026-12-03", "16"),
    ("train-small", "4"),
    ("train-bad-again", '"sixteen"'),
    ("train-2026-12-05", "16"),
]
MAX_BYTES = 250_000


def run_pipeline(examples: Path, run_id: str, branches: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNABLE_")}
    env |= {"RUNNABLE_RUN_ID": run_id, "RUNNABLE_PRM_branches": branches}
    env["RUNNABLE_TELEMETRY"] = "0"
    done = subprocess.run(
        [sys.executable, "pipeline.py"], cwd=examples, env=env, capture_output=True, check=False
    )
    print(f"screenshots: ran {run_id} ({branches} branches): exit {done.returncode}")


def optimise(path: Path) -> None:
    """The screenshot as a 256-colour palette PNG: UI pixels are few colours."""
    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, optimize=True)
    size = path.stat().st_size
    print(f"screenshots: {path} {size:,} bytes")
    if size > MAX_BYTES:
        raise SystemExit(f"screenshots: {path} is {size:,} bytes, more than {MAX_BYTES:,}")


def chromium() -> str:
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True, check=True
    )
    return found.stdout.strip().splitlines()[-1]


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    output.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="runlog-screenshots-") as scratch:
        examples = Path(shutil.copytree(ROOT / "examples", Path(scratch) / "examples"))
        for run_id, branches in RUNS:
            run_pipeline(examples, run_id, branches)
        served = start_serve(examples, logs=Path(scratch) / "logs")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium())
                page = browser.new_page(viewport=VIEWPORT)
                shots = {
                    "serve-runs.png": f"{served.url}?columns=params.branches,metrics.best_accuracy",
                    "serve-run.png": f"{served.url}runs/{RUNS[0][0]}",
                    "serve-compare.png": (f"{served.url}compare?run={RUNS[0][0]}&run={RUNS[1][0]}"),
                }
                for name, url in shots.items():
                    page.goto(url)
                    if name == "serve-run.png":
                        # The map step opened, to show its branches counted and its progress.
                        page.locator('details.step[data-step="train"] > summary').first.click()
                    page.screenshot(path=str(output / name))
                    optimise(output / name)
                browser.close()
        finally:
            served.stop()


if __name__ == "__main__":
    main()
