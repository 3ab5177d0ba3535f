"""Golden files (as prometheus-operator pins its builders in testdata/*.golden): a whole
manifest is compared with the YAML file kept in tests/unit/testdata. ``UPDATE_GOLDEN=1``
rewrites the files; review the diff before committing it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

TESTDATA = Path(__file__).parent / "testdata"


def check(name: str, obj: Any) -> None:
    path = TESTDATA / f"{name}.golden"
    text = yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, width=120)
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run the test with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs from {path} (UPDATE_GOLDEN=1 rewrites it after review)"
