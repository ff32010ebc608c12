"""Benchmarks side by side with runnable 0.50 in the same run; see benches/report.py for ratios."""

from __future__ import annotations

import os
import sys

# The runnable banner on import is noise in benchmark output.
sys.stdout.flush()
os.environ.setdefault("RUNNABLE_TELEMETRY", "0")
