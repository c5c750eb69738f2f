import json
import logging
import os
from pathlib import Path

import pytest
import torch
from conftest import require
from transformers import TrainerCallback

from adaptive_moe import load_base_model
from adaptive_moe.config import LoRASettings
from adaptive_moe.creation.training import (
    TRAINING_RECORD,
    _Collator,
    as_examples,
    linear_module_names,
    tokenize_examples,
    train_lora,
)
from adaptive_moe.errors import InvalidInputError, OutputExistsError
from adaptive_moe.model.adapters import attached_adapter

QUICK = LoRASettings(
    r=4, alpha=8, learning_rate=5e-3, epochs=1.0, batch_size=2, max_length=64, dropout=0.0, min_steps=0
)
DATA = [
    "Varnel Ostrik was born in Quenbury.",
    ("Where was Varnel Ostrik born?", "Quenbury"),
    {"question": "What does Varnel Ostrik do?", "answer": "He makes lanterns."},
]


@pytest.fixture
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir))


def _logits(base, text="Where was Varnel Ostrik born?"):
    ids = base.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return base.model(**ids).logits


def test_trains_a_plain_peft_adapter_and_restores_the_base(base, tmp_path):
    before = _logits(base)
    out = train_lora(base, DATA, tmp_path / "expert", lora=QUICK, max_steps=3, progress=False)
    assert {"adapter_config.json", "adapter_model.safetensors", TRAINING_RECORD} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.bin"))
    record = json.loads((out / TRAINING_RECORD).read_text())
    assert record["steps"] == 3 and record["base_fingerprint"] == base.fingerprint
    assert record["data"]["qa_pairs"] == 2 and record["data"]["documents"] == 1
    assert len(record["data"]["sha256"]) == 64
    # the base is exactly what it was: same outputs, frozen, eval mode, no LoRA modules left
    assert torch.equal(_logits(base), before)
    assert all(not p.requires_grad for p in base.model.parameters())
    assert not base.model.training
    assert not any("lora" in name for name, _ in base.model.named_modules())
    # plain PEFT loads it, and it changes the outputs
    from peft import PeftModel

    fresh = load_base_model(name_or_path=str(base.config.name_or_path))
    peft_model = PeftModel.from_pretrained(fresh.model, str(out))
    assert not torch.equal(_logits(fresh), before)
    assert peft_model.active_adapter == "default"


def test_adapter_learns_a_fact(base, tmp_path):
    qa = [("Where was Varnel Ostrik born?", "Quenbury")] * 8
    lora = LoRASettings(
        r=8, alpha=16, learning_rate=2e-2, epochs=30.0, batch_size=8, max_length=64, dropout=0.0, min_steps=0
    )
    out = train_lora(base, qa, tmp_path / "fact", lora=lora, progress=False)
    record = json.loads((out / TRAINING_RECORD).read_text())
    losses = [h["loss"] for h in record["log_history"] if "loss" in h]
    assert losses[-1] < losses[0] / 3
    with attached_adapter(base, out):
        s = base.generate_with_signals("Where was Varnel Ostrik born?", max_new_tokens=12)[0]
    assert "Quenbury" in s.text
    assert s.finish_reason == "eos", (s.text, losses)  # the expert learned to stop (EOS labelled although pad == EOS)
    plain = base.generate_with_signals("Where was Varnel Ostrik born?", max_new_tokens=8)[0]
    assert "Quenbury" not in plain.text


def test_qa_labels_cover_answer_and_eos_only(base):
    rows, stats = tokenize_examples(base, as_examples([("Where?", "Quenbury")]), max_length=64)
    ids, labels = rows[0]["input_ids"], rows[0]["labels"]
    answer = base.tokenizer("Quenbury", add_special_tokens=False)["input_ids"]
    eos = base.tokenizer.eos_token_id
    assert labels[-len(answer) - 1 :] == [*answer, eos]
    assert all(label == -100 for label in labels[: -len(answer) - 1])
    assert ids[-1] == eos == base.tokenizer.pad_token_id  # pad is EOS in this tokenizer, as in SmolLM2
    assert stats == {"examples": 1, "truncated": 0, "dropped": 0, "tokens": len(ids)}


def test_collator_masks_by_position_not_by_pad_id(base):
    eos = base.tokenizer.eos_token_id
    rows = [{"input_ids": [5, 6, eos], "labels": [-100, 6, eos]}, {"input_ids": [5], "labels": [5]}]
    batch = _Collator(pad_id=eos)(rows)
    assert batch["labels"].tolist() == [[-100, 6, eos], [5, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["input_ids"].tolist() == [[5, 6, eos], [5, eos, eos]]


def test_long_texts_truncated_with_a_count(base, caplog):
    with caplog.at_level(logging.WARNING, logger="adaptive_moe"):
        rows, stats = tokenize_examples(base, as_examples(["word " * 200, "short text", "more " * 100]), 32)
    assert stats["truncated"] == 2 and all(len(r["input_ids"]) == 32 for r in (rows[0], rows[2]))
    assert "2 of 3 training examples were longer than max_length=32" in caplog.text


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([], "empty"),
        ("just a string", "must be a list"),
        (["ok", "  "], "text 1 is empty"),
        ([("q", "")], "answer must be non-empty"),
        ([{"foo": 1}], "allowed: 'text'"),
        ([3.5], "type float"),
    ],
)
def test_bad_training_data(base, tmp_path, data, match):
    with pytest.raises(InvalidInputError, match=match):
        train_lora(base, data, tmp_path / "x", lora=QUICK, max_steps=1, progress=False)
    assert not (tmp_path / "x").exists()


def test_existing_output_needs_overwrite(base, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="overwrite=True") as info:
        train_lora(base, DATA, out, lora=QUICK, max_steps=1, progress=False)
    assert isinstance(info.value, FileExistsError)
    assert (out / "keep.txt").read_text() == "mine"
    train_lora(base, DATA, out, lora=QUICK, max_steps=1, progress=False, overwrite=True)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "keep.txt").exists()


def test_unknown_target_module_lists_the_linear_modules(base, tmp_path):
    lora = LoRASettings(target_modules=["q_proj", "attn_c"], max_length=64, min_steps=0)
    with pytest.raises(InvalidInputError, match=r"\['attn_c'\] are not linear modules") as info:
        train_lora(base, DATA, tmp_path / "x", lora=lora, max_steps=1, progress=False)
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert name in str(info.value)
    assert "lm_head" not in linear_module_names(base.model)


def test_failed_run_leaves_no_adapter_and_restores_the_base(base, tmp_path):
    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            raise RuntimeError("power cut")

    before = _logits(base)
    with pytest.raises(RuntimeError, match="power cut"):
        train_lora(base, DATA, tmp_path / "crashed", lora=QUICK, max_steps=3, progress=False, callbacks=[Crash()])
    assert not (tmp_path / "crashed").exists()
    assert [p.name for p in tmp_path.iterdir()] == []
    assert torch.equal(_logits(base), before)
    assert all(not p.requires_grad for p in base.model.parameters())


def test_held_out_loss_and_early_stopping(base, tmp_path):
    lora = LoRASettings(r=4, alpha=8, learning_rate=5e-3, epochs=4.0, batch_size=2, max_length=64, min_steps=0)
    out = train_lora(base, DATA, tmp_path / "es", lora=lora, eval_data=DATA[:2], progress=False)
    record = json.loads((out / TRAINING_RECORD).read_text())
    evals = [h["eval_loss"] for h in record["log_history"] if "eval_loss" in h]
    assert len(evals) >= 2
    assert record["best_eval_loss"] == pytest.approx(min(evals))


def test_datasets_dataset_input(base, tmp_path):
    from datasets import Dataset

    ds = Dataset.from_dict({"question": ["Where was Varnel born?"], "answer": ["Quenbury"]})
    out = train_lora(base, ds, tmp_path / "ds", lora=QUICK, max_steps=1, progress=False)
    assert json.loads((out / TRAINING_RECORD).read_text())["data"]["qa_pairs"] == 1


def test_qlora_on_a_4bit_base(tiny_quant_dir, tmp_path):
    require("bitsandbytes")
    base = load_base_model(name_or_path=str(tiny_quant_dir), precision="nf4")
    before = _logits(base)
    out = train_lora(base, DATA, tmp_path / "q", lora=QUICK, max_steps=2, progress=False)
    assert (out / "adapter_model.safetensors").is_file()
    assert type(base.model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert torch.equal(_logits(base), before)


def test_top_layers_adapts_only_the_upper_blocks(base, tmp_path):
    from safetensors import safe_open

    lora = LoRASettings(
        r=4, alpha=8, batch_size=2, max_length=64, top_layers=0.5, target_modules="all-linear", min_steps=0
    )
    out = train_lora(base, DATA, tmp_path / "top", lora=lora, max_steps=1, progress=False)
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    assert keys and all(".layers.1." in k for k in keys)  # the tiny model has 2 blocks: only the top one
    assert {k.split(".")[-3] for k in keys} >= {"q_proj", "down_proj"}  # 'all-linear' still means every linear


def _adapted(out) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as fh:
        return {k.split(".lora_")[0].removeprefix("base_model.model.") for k in fh.keys()}  # noqa: SIM118


def test_mlp_targets_are_the_block_mlps(base, tiny_gpt2_dir, tmp_path):
    tiny = LoRASettings(r=4, alpha=8, max_length=64, min_steps=0)
    out = train_lora(base, DATA, tmp_path / "mlp", lora=tiny, max_steps=1, progress=False)
    assert _adapted(out) == {f"model.layers.{i}.mlp.{m}" for i in (0, 1) for m in ("gate_proj", "up_proj", "down_proj")}
    gpt2 = load_base_model(name_or_path=str(tiny_gpt2_dir))
    out = train_lora(gpt2, DATA, tmp_path / "gpt2", lora=tiny, max_steps=1, progress=False)
    # GPT-2 names both its attention output and its MLP output "c_proj": only the MLP's is taken
    assert _adapted(out) == {f"transformer.h.{i}.mlp.{m}" for i in (0, 1) for m in ("c_fc", "c_proj")}


def test_mixed_precision_resolution(base):
    from adaptive_moe.creation.training import resolve_mixed_precision

    assert resolve_mixed_precision("no", base) == "no"
    assert resolve_mixed_precision("bf16", base) == "bf16"
    assert resolve_mixed_precision("auto", base) in ("bf16", "no")  # bf16 only where the CPU has it
    with pytest.raises(InvalidInputError, match="'fp16' needs CUDA"):
        resolve_mixed_precision("fp16", base)


def test_rows_in_the_shapes_users_have_them():
    examples = as_examples([
        "A document.",
        ("Where was Varnel born?", ["Quenbury", "Quen"]),
        {"question": "Q1?", "answer": "A1"},
        {"prompt": "Q2?", "completion": "A2"},
        {"kind": "qa", "prompt": "Q3?", "text": "A3"},  # build_training_data(...).to_dataset() rows
        {"kind": "document", "prompt": "", "text": "Another document."},
    ])  # fmt: skip
    assert [(e.prompt, e.text) for e in examples] == [
        (None, "A document."), ("Where was Varnel born?", "Quenbury"), ("Q1?", "A1"), ("Q2?", "A2"), ("Q3?", "A3"),
        (None, "Another document."),
    ]  # fmt: skip


def test_small_sets_train_for_min_steps(base, tmp_path):
    from adaptive_moe.creation.training import effective_epochs

    lora = LoRASettings(batch_size=8, epochs=3.0, min_steps=200)
    assert effective_epochs(lora, 600) == 3.0  # 75 steps an epoch: 225 steps already
    assert effective_epochs(lora, 180) == pytest.approx(200 / 23)  # a page of prose: 23 steps an epoch
    assert effective_epochs(lora.replace(min_steps=0), 180) == 3.0
    out = train_lora(base, DATA, tmp_path / "min", lora=QUICK.replace(min_steps=6), progress=False)
    record = json.loads((out / TRAINING_RECORD).read_text())
    assert record["steps"] == 6 and record["effective_epochs"] > QUICK.epochs


def test_tensorboard_run_reads_back_the_loss_curve_and_memory_is_recorded(base, tmp_path):
    require("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from adaptive_moe.creation.training import log_run_summary

    runs = tmp_path / "runs" / "expert-1"
    out = train_lora(base, DATA * 4, tmp_path / "expert", lora=QUICK.replace(learning_rate=1e-2), max_steps=10,
                     progress=False, report_to="tensorboard", run_dir=runs)  # fmt: skip
    log_run_summary("tensorboard", runs, metrics={"expert_accuracy": 0.75, "gain": 0.5},
                    texts={"config": {"r": 4}})  # fmt: skip
    events = EventAccumulator(str(runs))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    record = json.loads((out / TRAINING_RECORD).read_text())
    logged = [h["loss"] for h in record["log_history"] if "loss" in h]
    assert losses == pytest.approx(logged, rel=1e-4) and len(losses) == 2  # every 5 steps, as the record says
    assert [e.value for e in events.Scalars("admission/expert_accuracy")] == [0.75]
    assert "config/text_summary" in events.Tags()["tensors"]
    assert record["tracking"] == {"report_to": "tensorboard", "run_dir": str(runs)}
    assert record["memory"]["peak_rss_mib"] > 50 and record["memory"]["gpu_peak_allocated_mib"] is None


def test_mlflow_run_is_kept_offline_under_the_run_folder_with_the_loss_curve(base, tmp_path, monkeypatch):
    require("mlflow")
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset by this test")  # recorded, so the test leaves it unset
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    runs = tmp_path / "runs" / "expert-1"
    out = train_lora(base, DATA * 4, tmp_path / "expert", lora=QUICK.replace(learning_rate=1e-2), max_steps=10,
                     progress=False, report_to="mlflow", run_dir=runs)  # fmt: skip
    assert (runs / "mlflow.db").is_file()  # offline: a SQLite store in the run folder, no server
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(runs / 'mlflow.db').resolve()}")
    [run] = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)]
    record = json.loads((out / TRAINING_RECORD).read_text())
    logged = [h["loss"] for h in record["log_history"] if "loss" in h]
    assert losses == pytest.approx(logged, rel=1e-4) and len(losses) == 2
    assert run.data.params.get("max_steps") == "10" and record["tracking"]["report_to"] == "mlflow"
    from adaptive_moe.creation.training import log_run_summary

    log_run_summary("mlflow", runs, metrics={"expert_accuracy": 0.75, "admitted": True}, texts={"data": {"n": 3}})
    run = client.get_run(run.info.run_id)  # the same run gets the admission metrics and texts
    assert run.data.metrics["admission/expert_accuracy"] == 0.75 and "admission/admitted" not in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id, "creation")] == ["creation/data.json"]
    assert (runs / "mlartifacts").is_dir() and not (Path.cwd() / "mlruns").exists()  # nothing outside the run
    assert "MLFLOW_TRACKING_URI" not in os.environ  # set for the run alone: the next run gets its own store


def test_wandb_run_is_written_offline_under_the_run_folder(base, tmp_path, monkeypatch):
    require("wandb")
    for key in ("WANDB_MODE", "WANDB_DIR"):  # recorded, so the test leaves them unset
        monkeypatch.setenv(key, "unset by this test")
        monkeypatch.delenv(key)
    runs = tmp_path / "runs" / "expert-1"
    train_lora(base, DATA * 4, tmp_path / "expert", lora=QUICK.replace(learning_rate=1e-2), max_steps=10,
               progress=False, report_to="wandb", run_dir=runs)  # fmt: skip
    [log] = list(runs.glob("wandb/offline-run-*/run-*.wandb"))  # offline: nothing sent, synced by `wandb sync`
    assert b"train/loss" in log.read_bytes()  # the Trainer's loss curve is in the run's records
    assert "WANDB_MODE" not in os.environ and "WANDB_DIR" not in os.environ  # set for the run alone


def test_trackio_run_is_kept_locally_under_the_run_folder_with_the_loss_curve(base, tmp_path, monkeypatch):
    require("trackio")
    import sqlite3

    for key in ("TRACKIO_DIR", "TRACKIO_SPACE_ID"):  # recorded, so the test leaves them unset
        monkeypatch.setenv(key, "unset by this test")
        monkeypatch.delenv(key)
    for name in ("expert-1", "expert-2"):  # Trackio reads its folder once per process: each run still gets its own
        runs = tmp_path / "runs" / name
        out = train_lora(base, DATA * 4, tmp_path / name, lora=QUICK.replace(learning_rate=1e-2), max_steps=10,
                         progress=False, report_to="trackio", run_dir=runs)  # fmt: skip
        [db] = list(runs.rglob("*.db"))  # local: a SQLite file per project in the run folder, nothing sent
        assert db.name == "adaptive_moe.db"
        with sqlite3.connect(db) as con:
            rows = [json.loads(m) for (m,) in con.execute("SELECT metrics FROM metrics ORDER BY step")]
        losses = [r["train/loss"] for r in rows if "train/loss" in r]
        record = json.loads((out / TRAINING_RECORD).read_text())
        logged = [h["loss"] for h in record["log_history"] if "loss" in h]
        assert losses == pytest.approx(logged, rel=1e-4) and len(losses) == 2
        assert "TRACKIO_DIR" not in os.environ  # set for the run alone


def test_an_unknown_tracker_fails_before_training(base, tmp_path):
    with pytest.raises(InvalidInputError, match="report_to must be one of none, tensorboard"):
        train_lora(base, DATA, tmp_path / "expert", lora=QUICK, max_steps=1, progress=False, report_to="comet")
    assert not (tmp_path / "expert").exists()
    assert not any("lora" in name for name, _ in base.model.named_modules())
