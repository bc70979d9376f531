"""Tiny run of benchmarks/rules_overhead.py (no timing asserts: numbers live in the script)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mbkernels as mbk

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rules_overhead.py"


def test_rules_overhead_runs_every_rule(tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("rules_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "rules.json"
    module.main(
        [
            "--tasks",
            "2",
            "3",
            "--n",
            "1000",
            "--rounds",
            "1",
            "--min-sample-s",
            "0",
            "--device",
            "cpu",
            "--json",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    for name in mbk.RULES:
        assert set(report["median_s"][name]) == {"2", "3"}
        assert all(v > 0 for v in report["median_s"][name].values())
    printed = capsys.readouterr().out
    assert "mgda_ub" in printed and "T=3" in printed
