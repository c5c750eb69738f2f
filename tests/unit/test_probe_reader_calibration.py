"""``benchmarks/probe_reader_calibration.py``: recovers the raw score behind a calibrated confidence, and on
the committed development run its default policy reproduces what the run measured."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adaptive_moe.uncertainty.calibration import make_calibrator
from benchmarks import probe_reader_calibration as probe


def test_the_raw_log_prob_behind_a_confidence_is_recovered():
    rng = np.random.default_rng(0)
    scores = -rng.exponential(0.5, 80)
    calibrator = make_calibrator("platt").fit(scores, rng.random(80) < np.exp(scores))
    for raw in (-0.05, -0.4, -1.5):
        assert probe.raw_logprob(float(calibrator(raw)), calibrator) == pytest.approx(raw, abs=1e-6)
    assert probe.raw_logprob(np.exp(-0.7), None) == pytest.approx(-0.7)


def test_the_default_policy_reproduces_the_run(capsys):
    run = json.loads((probe.RESULTS / "documents_dev_heldout_reader.json").read_text())
    right = sum(r["right"] for r in run["rows"])
    abstained = sum(r["route"] == "abstain" for r in run["rows"])
    assert probe.main([]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| each expert's own"))
    assert f"({right}) | {abstained} |" in line


def test_a_test_split_run_is_refused(tmp_path):
    run = json.loads((probe.RESULTS / "documents_dev_heldout_reader.json").read_text())
    run["settings"]["split"] = "test"
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit):
        probe.main(["--run", str(tmp_path / "run.json")])
