"""Expert creation in two processes: ``adaptive-moe create-expert --processes 2`` runs itself under
``accelerate launch`` (DDP over gloo on the CPU); every process trains its share of each epoch, process 0
alone writes the adapter, evaluates and registers. A tiny random model; a real launcher."""

from __future__ import annotations

import json
import subprocess
import sys

from adaptive_moe import AdaptiveMoEConfig
from adaptive_moe.creation.training import TRAINING_RECORD
from adaptive_moe.experts import ExpertRegistry

DOC = (
    "The Tidewater Guild was founded in 1794 by Maren Tolliver in the port of Velmora. "
    "The guild has 312 members. Its emblem is a silver heron. "
    "Maren Tolliver designed the first storm lantern."
)


def _config(tmp_path, model_dir) -> str:
    if model_dir is None:  # the embedded SmolLM2 with its shipped router: admission as a user gets it
        cfg = AdaptiveMoEConfig().replace(
            workspace=str(tmp_path / "ws"),
            **{"creation.method": "rules", "creation.lora.epochs": 2.0, "creation.lora.min_steps": 0,
               "creation.lora.max_length": 64, "creation.forced_general_questions": 4,
               "generation.max_new_tokens": 12},
        )  # fmt: skip
        path = tmp_path / "config.yaml"
        path.write_text(cfg.to_yaml())
        return str(path)
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"model.name_or_path": str(model_dir), "generation.max_new_tokens": 4, "router.embedder": "base",
           "router.threshold": 1.0, "router.min_match_score": 0.0, "integrator.expert_confidence_floor": 0.0,
           "creation.method": "rules", "creation.lora.r": 4, "creation.lora.alpha": 8, "creation.lora.epochs": 2.0,
           "creation.lora.min_steps": 0, "creation.lora.batch_size": 4, "creation.lora.max_length": 64,
           "creation.forced_general_questions": 4, "creation.domain_margin": 0.0,
           "creation.general_tolerance": 1.0},
    )  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    return str(path)


def _create(tmp_path, model_dir, processes: int):
    folder = tmp_path / f"p{processes}"
    folder.mkdir()
    config = _config(folder, model_dir)
    doc = folder / "guild.md"
    doc.write_text(DOC)
    run = subprocess.run([sys.executable, "-m", "adaptive_moe.cli", "create-expert", "guild", "--config", config, "-v",
                          "--docs", str(doc), "--quiet", "--json", "--processes", str(processes)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    registry = ExpertRegistry(AdaptiveMoEConfig.from_yaml(config).registry_path)
    return run, registry


def test_two_processes_train_and_one_registers(tmp_path, tiny_llama_dir):
    run, registry = _create(tmp_path, tiny_llama_dir, 2)
    log = run.stdout + run.stderr
    errors = "\n".join(line for line in log.splitlines() if "Error" in line)  # from every process
    assert run.returncode == 0, errors[-3000:] + "\n...\n" + log[-3000:]
    assert "process 0 of 2 trained" in log and "process 1 of 2 trained" in log  # each process trained
    result = json.loads(run.stdout[run.stdout.index("{") :])  # printed once, by process 0
    assert result["admitted"] and run.stdout.count('"admitted"') == 1
    assert registry.names() == ["guild"] and registry.versions("guild") == [1]
    record = json.loads((registry.path_of("guild") / TRAINING_RECORD).read_text())
    assert record["processes"] == 2
    # the same data in one process: as many epochs, twice the optimizer steps (each process saw half)
    alone, alone_registry = _create(tmp_path, tiny_llama_dir, 1)
    assert alone.returncode == 0, alone.stderr[-2000:]
    single = json.loads((alone_registry.path_of("guild") / TRAINING_RECORD).read_text())
    assert single["processes"] == 1 and single["epochs"] == record["epochs"]
    assert abs(record["steps"] * 2 - single["steps"]) <= 2 * record["epochs"]  # rounding per epoch and process


def test_the_embedded_model_in_two_processes_passes_the_admission_one_process_passes(tmp_path):
    """The shipped SmolLM2 and router, ``creation.method: rules``: the same documents in one process and in
    two give an expert with the same admission result, half the optimizer steps each in two."""
    results, records = {}, {}
    for processes in (2, 1):
        run, registry = _create(tmp_path, None, processes)
        log = run.stdout + run.stderr
        errors = "\n".join(line for line in log.splitlines() if "Error" in line)
        assert run.returncode == 0, errors[-3000:] + "\n...\n" + log[-3000:]
        results[processes] = json.loads(run.stdout[run.stdout.index("{") :])
        if results[processes]["admitted"]:
            records[processes] = json.loads((registry.path_of("guild") / TRAINING_RECORD).read_text())
    assert results[2]["admitted"] == results[1]["admitted"], (results[1]["reasons"], results[2]["reasons"])
    assert results[1]["admitted"], results[1]["reasons"]  # a clear fact sheet: admitted either way
    assert records[2]["processes"] == 2 and records[1]["processes"] == 1
    assert abs(records[2]["steps"] * 2 - records[1]["steps"]) <= 2 * records[1]["epochs"]
    assert records[2]["train_loss"] < 5.0 and records[1]["train_loss"] < 5.0  # both learnt something
