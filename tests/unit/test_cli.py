import json
from pathlib import Path

import pytest
import yaml

from adaptive_moe import cli


def _config(tmp_path, model_dir, **sections):
    path = tmp_path / "cfg.yaml"
    data = {"model": {"name_or_path": str(model_dir)}, "generation": {"max_new_tokens": 3},
            "workspace": str(tmp_path / "ws"), **sections}  # fmt: skip
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_generate_json(tmp_path, tiny_llama_dir, capsys):
    rc = cli.main(["generate", "--config", _config(tmp_path, tiny_llama_dir), "--json", "--signals", "hello", "Who?"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["prompt"] for d in data] == ["hello", "Who?"]
    assert all(d["route"] in ("base", "gap") and "attribution" in d for d in data)  # no experts yet
    assert all(len(d["signals"]["token_logprobs"]) == len(d["signals"]["token_ids"]) <= 3 for d in data)


def test_generate_text_and_unknown_expert(tmp_path, tiny_llama_dir, capsys):
    cfg = _config(tmp_path, tiny_llama_dir)
    assert cli.main(["generate", "--config", cfg, "hello"]) == 0
    assert "[route " in capsys.readouterr().out
    assert cli.main(["generate", "--config", cfg, "--experts", "nobody", "hello"]) == 1
    assert "unknown expert 'nobody'" in capsys.readouterr().err


def test_gaps_and_create_expert_commands(tmp_path, tiny_llama_dir, capsys):
    cfg = _config(tmp_path, tiny_llama_dir, router={"threshold": 1.0, "embedder": "base"},
                  creation={"lora": {"r": 4, "alpha": 8, "epochs": 1.0, "max_length": 64, "min_steps": 0},
                            "domain_margin": 0.0, "general_tolerance": 1.0, "forced_general_questions": 2,
                            "method": "rules"})  # fmt: skip
    for q in ("Who founded the Tidewater Guild?", "When was the Tidewater Guild founded?", "Where is the guild?"):
        assert cli.main(["generate", "--config", cfg, q]) == 0
    capsys.readouterr()
    assert cli.main(["gaps", "--config", cfg, "--json", "--out", str(tmp_path / "gaps")]) == 0
    assert json.loads(capsys.readouterr().out)["n_gaps"] == 3
    doc = tmp_path / "guild.md"
    doc.write_text("# Guild\n\nThe Tidewater Guild was founded in 1794 by Maren Tolliver. The guild has 312 members.\n")
    rc = cli.main(["create-expert", "tidewater", "--config", cfg, "--docs", str(doc), "--quiet", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["admitted"] and out["card"]["name"] == "tidewater"
    assert cli.main(["create-expert", "tidewater", "--config", cfg, "--docs", str(doc), "--quiet"]) == 1
    assert "exists; pass new_version=True" in capsys.readouterr().err


def test_config_check_reports_problems_with_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {precison: fp32}\n")
    assert cli.main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("adaptive-moe: error: invalid config file")
    assert "did you mean 'precision'" in err
    assert "Traceback" not in err


def test_config_show_round_trips(tmp_path, capsys):
    assert cli.main(["config", "show"]) == 0
    path = tmp_path / "shown.yaml"
    path.write_text(capsys.readouterr().out)
    assert cli.main(["config", "check", str(path)]) == 0


def test_missing_model_is_one_line_failure(tmp_path, capsys):
    cfg = _config(tmp_path, tmp_path / "missing-model")
    assert cli.main(["generate", "--config", cfg, "hi"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-command"])
    assert info.value.code == 2


@pytest.mark.parametrize("method", ["retrieval", "rules"])
def test_demo_command_on_tiny_model(tmp_path, tiny_llama_dir, capsys, monkeypatch, method):
    from adaptive_moe.creation import reader

    # the tiny tokenizer spells words letter by letter: reading examples short enough for its context
    example = ("Passages:\n[1] Ada was born in Oslo.\n\nQuestion: Where was Ada born?", "Oslo")
    monkeypatch.setattr(reader, "synthetic_reading_examples", lambda *a, **k: [example] * 8)
    lora = {"r": 4, "alpha": 8, "epochs": 1.0, "max_length": 64, "min_steps": 0}
    creation = {"lora": lora, "forced_general_questions": 2, "method": method, "reader_steps": 2}
    cfg = _config(tmp_path, tiny_llama_dir, creation=creation)
    assert cli.main(["demo", "--config", cfg, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "What is the capital of France?" in out and "Tidewater" in out
    for stage in ("== 1.", "== 2.", "== 3.", "== 4.", "== 5. Summary"):
        assert stage in out
    results = json.loads((tmp_path / "ws" / "demo" / "results" / "demo.json").read_text())
    assert {"before_domain", "after_domain", "before_general", "after_general"} <= set(results["accuracy"])
    assert len(results["rows"]) == 2 * (5 + 25)
    for row in results["rows"]:  # the base's confidence always; the expert's exactly when an expert answered
        assert row["confidence"] is None or 0 <= row["confidence"] <= 1
        assert (row["expert_confidence"] is not None) == bool(row["experts"]), row
    assert "route    base exprt  ok  answer" in out
    md = (tmp_path / "ws" / "demo" / "results" / "demo.md").read_text()
    assert "| route | base confidence | expert confidence | correct | answer |" in md


def test_quickstart_example_runs(tiny_llama_dir, capsys):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"
    argv = sys.argv
    sys.argv = [str(script), "--model", str(tiny_llama_dir), "--max-new-tokens", "3"]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert out.count("Q: ") == 2 and out.count("route=") == 2 and "confidence=" in out
    assert "attribution of the last answer:" in out and "open knowledge gaps in the temporary workspace" in out


def test_experts_commands(tmp_path, tiny_llama_dir, capsys):
    from adaptive_moe import load_base_model
    from adaptive_moe.testing import make_random_adapter

    adapter = make_random_adapter(load_base_model(name_or_path=str(tiny_llama_dir)).model, tmp_path / "ad")
    cfg = yaml.safe_load(Path(_config(tmp_path, tiny_llama_dir)).read_text())
    cfg["workspace"] = str(tmp_path / "ws")
    (tmp_path / "ws.yaml").write_text(yaml.safe_dump(cfg))
    common = ["--config", str(tmp_path / "ws.yaml")]
    assert cli.main(["experts", "list", *common]) == 0
    assert "no experts" in capsys.readouterr().out
    assert (
        cli.main(["experts", "import", "people", "--path", str(adapter), "--domain", "invented", "--check", *common])
        == 0
    )
    assert "imported people v1 (lora): invented" in capsys.readouterr().out
    assert (tmp_path / "ws" / "experts" / "people" / "v1" / "expert.json").is_file()
    assert cli.main(["experts", "list", "--json", *common]) == 0
    assert [c["name"] for c in json.loads(capsys.readouterr().out)] == ["people"]
    assert cli.main(["experts", "show", "people", *common]) == 0
    assert json.loads(capsys.readouterr().out)["base_fingerprint"]
    assert cli.main(["experts", "import", "people", "--path", str(adapter), *common]) == 1
    assert "new_version=True" in capsys.readouterr().err
    assert cli.main(["experts", "remove", "people", *common]) == 0
    assert cli.main(["experts", "show", "people", *common]) == 1
    assert "unknown expert 'people'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["experts", "show", *common])
    assert info.value.code == 2


def _router_config(tmp_path, model_dir):
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(model_dir)}, "generation": {"max_new_tokens": 3},
        "router": {"estimator": "mean_logprob", "matcher": "classifier", "embedder": "base"},
        "workspace": str(tmp_path / "ws"),
    }))  # fmt: skip
    return str(path)


def _write_labelled(path, base, questions, domains):
    """JSONL whose golds are the tiny model's own answers for every other question: right and wrong ones."""
    from adaptive_moe.config import GenerationConfig

    gen = GenerationConfig(max_new_tokens=3)
    answers = [s.text for i in range(0, len(questions), 8) for s in base.generate_with_signals(questions[i:i + 8],
               gen)]  # fmt: skip
    with open(path, "w") as f:
        for i, (q, a, d) in enumerate(zip(questions, answers, domains, strict=True)):
            gold = (a or "?") if i % 2 == 0 else "zzzz-never"
            f.write(json.dumps({"question": q, "answers": gold if i % 4 else [gold], "domain": d}) + "\n")
    return str(path)


def test_calibrate_and_evaluate_router_commands(tmp_path, tiny_llama_dir, tiny_base, capsys):
    from adaptive_moe.routing import ClassifierMatcher, UncertaintyRouter

    cfg = _router_config(tmp_path, tiny_llama_dir)
    questions = [f"Question number {i} about the capital of France?" for i in range(8)]
    questions += [f"Who wrote Hamlet in the year {1500 + i}?" for i in range(8)]
    domains = [""] * 8 + ["hamlet"] * 8
    train = _write_labelled(tmp_path / "train.jsonl", tiny_base, questions, domains)
    test = _write_labelled(tmp_path / "test.jsonl", tiny_base, [q.replace("?", " now?") for q in questions], domains)

    assert cli.main(["calibrate", "--config", cfg, "--data", train, "--cache-dir", str(tmp_path / "labels")]) == 0
    out = capsys.readouterr().out
    assert "validation AUROC" in out and "threshold:" in out and "hamlet (8 questions)" in out
    router = UncertaintyRouter.load(tmp_path / "ws" / "router")
    assert router.experts == ["hamlet"] and isinstance(router.matcher, ClassifierMatcher)

    assert cli.main(["calibrate", "--config", cfg, "--data", train, "--share", "0.5", "--out", str(tmp_path / "r2"),
                     "--cache-dir", str(tmp_path / "labels")]) == 0  # fmt: skip
    assert "asked 50%" in capsys.readouterr().out
    assert cli.main(["calibrate", "--config", cfg, "--data", train, "--target-error", "0.4", "--delta", "0.3",
                     "--out", str(tmp_path / "r3"), "--cache-dir", str(tmp_path / "labels")]) == 0  # fmt: skip
    assert "target error 0.40 with probability 0.70" in capsys.readouterr().out
    assert UncertaintyRouter.load(tmp_path / "r3").config.target_error == 0.4

    rc = cli.main(["evaluate-router", "--config", cfg, "--data", test, "--router", str(tmp_path / "ws" / "router"),
                   "--out", str(tmp_path / "results"), "--bootstrap", "20"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "ECE" in out and "router:mean_logprob" in out and "16 questions" in out
    saved = json.loads((tmp_path / "results" / "router_eval.json").read_text())
    assert saved["n"] == 16 and "ece" in saved["estimators"]["mean_logprob"]


def test_calibrate_prints_the_leave_one_family_out_table(tmp_path, tiny_llama_dir, tiny_base, capsys):
    cfg = _router_config(tmp_path, tiny_llama_dir)
    questions = [f"Question number {i} about the capital of France?" for i in range(8)]
    questions += [f"Tell me who wrote Hamlet in the year {1500 + i}." for i in range(8)]
    questions += [f"I was wondering, on day {i}, what the tallest mountain is?" for i in range(8)]
    data = _write_labelled(tmp_path / "fam.jsonl", tiny_base, questions, [""] * 24)
    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
    with open(data, "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({**row, "family": ("plain", "instructions", "context")[i // 8]}) + "\n")
    assert cli.main(["calibrate", "--config", cfg, "--data", data, "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "leave-one-family-out" in out and "general knowledge: plain, instructions, context" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| estimator |") and "AUROC instructions" in table[0]
    names = [line.split("|")[1].strip() for line in table[1:]]
    assert {"mean_logprob", "probe_C0.003", "p_true", "probe_layers"} <= set(names)
    assert "shipping rule" in out
    # a family on some questions only, or only one family, is refused with the reason
    with open(data, "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({**row, **({"family": "plain"} if i < 4 else {})}) + "\n")
    assert cli.main(["calibrate", "--config", cfg, "--data", data, "--out", str(tmp_path / "r")]) == 1
    assert "names one family ('plain')" in capsys.readouterr().err
    with open(data, "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({**row, **({"family": ("a", "b")[i % 2]} if i < 4 else {})}) + "\n")
    assert cli.main(["calibrate", "--config", cfg, "--data", data, "--out", str(tmp_path / "r")]) == 1
    assert "give every question one" in capsys.readouterr().err


def test_router_commands_bad_input(tmp_path, tiny_llama_dir, capsys):
    cfg = _router_config(tmp_path, tiny_llama_dir)

    def fails(path_text, expected, command="calibrate", extra=()):
        path = tmp_path / "data.jsonl"
        if path_text is not None:
            path.write_text(path_text)
        assert cli.main([command, "--config", cfg, "--data", str(path), *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err

    fails(None, "does not exist")
    fails('{"question": "a?", "answers": ["b"]}\n{"question": oops}\n', "line 2 is not valid JSON")
    fails("\n\n", "no labelled questions")
    fails('{"question": "a?", "answers": []}\n', "line 1 needs")
    fails('["a?", "b"]\n', "line 1 must be a JSON object")
    fails('{"question": "a?", "answers": ["b"], "family": 3}\n', "line 1 needs")
    fails('{"question": "a?", "answers": "b"}\n', "no saved router", "evaluate-router", ["--router", str(tmp_path)])
    for argv in (["calibrate", "--config", cfg, "--data", "x.jsonl", "--delta", "0.1"],
                 ["calibrate", "--config", cfg, "--data", "x.jsonl", "--share", "0.2", "--target-error", "0.1"],
                 ["calibrate", "--config", cfg], ["evaluate-router", "--data", "x.jsonl"]):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2


def test_bench_tiny_writes_the_report(tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli.main(["bench", "--tiny", "--skip-memory", "--threads", "1", "--out", str(out)]) == 0
    assert "# Benchmark report" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    per_domain = data["questions"]["per_domain"]
    assert per_domain["general"] == 8 and all(per_domain[d] > 0 for d in ("people", "companies", "places", "products"))
    arms = data["quality"]["arms"]
    assert set(arms) == {"base", "expert:people", "expert:companies", "expert:places", "peft_merge", "peft_arrow",
                         "moe_select", "moe_mixture", "oracle"}  # fmt: skip
    n = data["questions"]["n"]
    assert all(len(a["correct"]) == n for a in arms.values() if a["available"])
    assert all(a["available"] or a["reason"].startswith("not available") for a in arms.values())
    assert arms["moe_select"]["base_pass_identical"] == n  # the facade's base pass = the base arm's answers
    assert set(data["quality"]["routing"]["moe_select"]["paired_vs_base"]) == set(per_domain)
    assert "estimators" in data["uncertainty"]["report"] and "memory" not in data
    text = (out / "report.md").read_text()
    for section in ("## 1. Answer quality", "## 2. Uncertainty", "## 3. Speed", "Skipped (`--skip-memory`)"):
        assert section in text


def test_bench_outside_a_checkout_says_what_it_needs(monkeypatch, capsys):
    monkeypatch.setattr(cli, "find_benchmarks", lambda: None)
    assert cli.main(["bench", "--tiny"]) == 2
    err = capsys.readouterr().err
    assert "benchmarks/" in err and "pip install -e ." in err


def test_bench_help_lists_the_harness_flags(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--tiny" in out and "--skip-memory" in out


def test_the_package_does_not_import_the_benchmark_harness():
    import subprocess
    import sys

    code = (
        "import sys, adaptive_moe, adaptive_moe.cli, adaptive_moe.moe\n"
        "print(any(m.startswith('benchmarks') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "False"
