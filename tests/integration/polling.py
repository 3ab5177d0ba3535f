"""Polling for integration tests: generous time-outs, never a timing assertion."""

from __future__ import annotations

import time


def wait_for(what, fn, timeout=60.0, interval=0.2):
    """Call ``fn`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
