"""The checked-in betterproto code must be what ``scripts/gen_proto.py`` makes of ``proto/``:
a changed ``.proto`` without a regeneration (or a hand edit of the output) fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_grpc_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) regenerates it")
    gen_proto = load_script()
    fresh = tmp_path / "gen"
    gen_proto.generate(fresh)
    stale = gen_proto.differences(fresh, gen_proto.TARGET)
    assert not stale, (
        "taskqueue/api/grpc/gen/ is stale; run `.venv/bin/python scripts/gen_proto.py`: "
        + "; ".join(stale)
    )


def test_the_staleness_check_notices_a_difference(tmp_path: Path) -> None:
    gen_proto = load_script()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.py").write_text("one")
    (tmp_path / "b" / "x.py").write_text("two")
    (tmp_path / "a" / "y.py").write_text("")
    assert gen_proto.differences(tmp_path / "a", tmp_path / "b") == [
        "missing: y.py",
        "differs: x.py",
    ]
