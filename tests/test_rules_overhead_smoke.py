"""Tiny run of ``python -m benchmarks.rules_overhead`` (no timing asserts): every rule and
every loss-aware weighting is timed."""

from __future__ import annotations

import json

import mbkernels as mbk
from benchmarks import rules_overhead as module


def test_rules_overhead_runs_every_rule(tmp_path, capsys) -> None:
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
    for name in (*mbk.RULES, *mbk.WEIGHTINGS):
        assert set(report["median_s"][name]) == {"2", "3"}
        assert all(v > 0 for v in report["median_s"][name].values())
    printed = capsys.readouterr().out
    assert "mgda_ub" in printed and "T=3" in printed
