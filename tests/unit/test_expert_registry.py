"""Expert cards and the on-disk registry: validation, versions, import of plain PEFT adapters,
compatibility checks, corrupt files and crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from adaptive_moe import AdaptiveMoEError, load_base_model
from adaptive_moe.errors import (
    ConfigError,
    CorruptExpertError,
    IncompatibleExpertError,
    InvalidInputError,
    OutputExistsError,
    UnknownNameError,
)
from adaptive_moe.experts import (
    Expert,
    ExpertCard,
    ExpertRegistry,
    LoRAExpert,
    read_adapter_layout,
    register_expert_kind,
    validate_expert_name,
)
from adaptive_moe.testing import make_random_adapter


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def adapters(base, tiny_gpt2_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    gpt2 = load_base_model(name_or_path=str(tiny_gpt2_dir), device="cpu")
    return {
        "a": make_random_adapter(base.model, root / "a", seed=1),
        "b": make_random_adapter(base.model, root / "b", seed=2),
        "qv": make_random_adapter(base.model, root / "qv", seed=3, target_modules=["q_proj", "v_proj"]),
        "gpt2": make_random_adapter(gpt2.model, root / "gpt2", seed=4),
        "pickled": make_random_adapter(base.model, root / "pickled", seed=5, safe_serialization=False),
        "bias": make_random_adapter(base.model, root / "bias", seed=6, bias="all"),
    }


@pytest.mark.parametrize("name", ["../up", "a/b", "a\\b", "", ".hidden", "a..b", "x" * 65, "-dash", None, 3])
def test_expert_names_cannot_escape_the_registry(name):
    with pytest.raises(InvalidInputError, match="expert name"):
        validate_expert_name(name)


@pytest.mark.parametrize("name", ["people", "Tidewater_Guild", "chem-v2", "a.b", "x" * 64, "7up"])
def test_good_expert_names(name):
    assert validate_expert_name(name) == name


def test_card_round_trip_keeps_unknown_fields(tmp_path):
    card = ExpertCard("people", domain="invented people", metrics={"domain_accuracy": 0.8}, data={"sha256": "ab"})
    card.save(tmp_path)
    data = json.loads((tmp_path / "expert.json").read_text())
    assert data["schema"] == 1 and data["name"] == "people" and data["created"]
    data["from_the_future"] = 42
    (tmp_path / "expert.json").write_text(json.dumps(data))
    loaded = ExpertCard.load(tmp_path)
    assert loaded.metrics == {"domain_accuracy": 0.8} and loaded.extra == {"from_the_future": 42}
    assert "domain accuracy 0.80" in loaded.summary()


@pytest.mark.parametrize("text", ["{not json", "[]", '{"name": "../x"}', '{"name": "ok", "version": 0}'])
def test_unreadable_card_is_a_clear_error(tmp_path, text):
    (tmp_path / "expert.json").write_text(text)
    with pytest.raises(AdaptiveMoEError):
        ExpertCard.load(tmp_path)


def test_import_list_get_versions_remove(tmp_path, base, adapters):
    reg = ExpertRegistry(tmp_path / "reg")
    card = reg.import_adapter(adapters["a"], "alpha", domain="first", base=base)
    assert card.version == 1 and card.base_fingerprint == base.fingerprint and card.kind == "lora"
    assert card.weights_bytes == (adapters["a"] / "adapter_model.safetensors").stat().st_size
    assert card.lora["r"] == 4 and card.lora["modules"] == 14  # 2 layers x 7 linear modules
    reg.import_adapter(adapters["b"], "beta", domain="second")
    assert reg.names() == ["alpha", "beta"] and len(reg) == 2 and "alpha" in reg and "../x" not in reg
    assert [c.name for c in reg.list()] == ["alpha", "beta"]

    with pytest.raises(OutputExistsError, match="new_version=True"):
        reg.import_adapter(adapters["b"], "alpha")
    v2 = reg.import_adapter(adapters["b"], "alpha", domain="first, retrained", new_version=True)
    assert v2.version == 2 and reg.versions("alpha") == [1, 2]
    assert reg.card("alpha").domain == "first, retrained" and reg.card("alpha", version=1).domain == "first"
    expert = reg.get("alpha")
    assert isinstance(expert, LoRAExpert) and expert.version == 2 and not expert.is_loaded
    assert (expert.path / "adapter_model.safetensors").is_file()

    reg.remove("alpha", version=2)
    assert reg.versions("alpha") == [1]
    reg.remove("alpha")
    assert reg.names() == ["beta"] and not (tmp_path / "reg" / "alpha").exists()
    with pytest.raises(UnknownNameError, match="'beta'") as err:
        reg.get("alpha")
    assert isinstance(err.value, KeyError)
    with pytest.raises(UnknownNameError, match="v1"):
        reg.card("beta", version=7)


def test_update_card_is_atomic_and_guards_identity(tmp_path, adapters):
    reg = ExpertRegistry(tmp_path)
    reg.import_adapter(adapters["a"], "alpha")
    reg.update_card("alpha", metrics={"domain_accuracy": 0.9})
    assert reg.card("alpha").metrics == {"domain_accuracy": 0.9}
    with pytest.raises(InvalidInputError, match="kind"):
        reg.update_card("alpha", kind="other")
    with pytest.raises(UnknownNameError, match="v5"):
        reg.update_card("alpha", version=5, domain="x")
    assert not [p for p in (tmp_path / "alpha" / "v1").iterdir() if p.name.startswith(".")]


def test_training_record_fills_the_card(tmp_path, adapters):
    import shutil

    folder = shutil.copytree(adapters["a"], tmp_path / "trained")
    record = {"base_fingerprint": "f" * 64, "base_name": "somebase", "lora": {"r": 4, "learning_rate": 0.001},
              "data": {"sha256": "abc", "examples": 12, "qa_pairs": 5}}  # fmt: skip
    (folder / "adaptive_moe_training.json").write_text(json.dumps(record))
    card = ExpertRegistry(tmp_path / "reg").import_adapter(folder, "trained", domain="d")
    assert card.base_fingerprint == "f" * 64 and card.data["examples"] == 12 and card.lora["learning_rate"] == 0.001
    assert (tmp_path / "reg" / "trained" / "v1" / "adaptive_moe_training.json").is_file()


def test_mismatched_adapter_is_refused_and_not_stored(tmp_path, base, adapters):
    reg = ExpertRegistry(tmp_path)
    with pytest.raises(IncompatibleExpertError, match="not in the base") as err:
        reg.import_adapter(adapters["gpt2"], "other", base=base)
    assert isinstance(err.value, ValueError) and "transformer.h.0" in str(err.value)
    assert reg.names() == [] and not (tmp_path / "other").exists()


def test_adapter_whose_base_differs_by_shape_is_refused(tmp_path, base, tiny_llama_dir):
    from adaptive_moe.testing import make_tiny_model

    wider = load_base_model(name_or_path=str(make_tiny_model(tmp_path / "m", seed=0)), device="cpu")
    adapter = make_random_adapter(wider.model, tmp_path / "ad")
    layout = read_adapter_layout(adapter / "adapter_model.safetensors")
    assert set(layout.modules) >= {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"}
    # same modules, so shapes are what must match: fake an adapter whose A matrices have another width
    from safetensors.torch import load_file, save_file

    state = load_file(adapter / "adapter_model.safetensors")
    state = {k: (torch.zeros(v.shape[0], v.shape[1] + 8) if "lora_A" in k else v) for k, v in state.items()}
    save_file(state, adapter / "adapter_model.safetensors")
    with pytest.raises(IncompatibleExpertError, match=r"adapter expects \(in, out\)"):
        ExpertRegistry(tmp_path / "reg").import_adapter(adapter, "wide", base=base)


def test_bias_and_pickle_are_refused_unless_allowed(tmp_path, base, adapters):
    reg = ExpertRegistry(tmp_path / "reg")
    with pytest.raises(IncompatibleExpertError, match="bias"):
        reg.import_adapter(adapters["bias"], "biased")
    with pytest.raises(ConfigError, match="pickled"):
        reg.import_adapter(adapters["pickled"], "pickled")
    assert reg.names() == []
    opted_in = ExpertRegistry(tmp_path / "trusting", allow_pickle=True)
    card = opted_in.import_adapter(adapters["pickled"], "pickled", base=base)
    stored = opted_in.path_of("pickled")
    assert (stored / "adapter_model.safetensors").is_file() and not (stored / "adapter_model.bin").exists()
    assert card.weights_sha256 and opted_in.verify("pickled").name == "pickled"


def test_corrupt_weights_are_refused_and_the_registry_stays_usable(tmp_path, adapters):
    import shutil

    bad = shutil.copytree(adapters["a"], tmp_path / "bad")
    weights = bad / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    reg = ExpertRegistry(tmp_path / "reg")
    with pytest.raises(CorruptExpertError, match="cannot read adapter weights"):
        reg.import_adapter(bad, "bad")
    assert reg.names() == []
    reg.import_adapter(adapters["a"], "good")
    stored = reg.path_of("good") / "adapter_model.safetensors"
    stored.write_bytes(stored.read_bytes()[:1000] + b"\0" * (stored.stat().st_size - 1000))  # same size, new bytes
    with pytest.raises(CorruptExpertError, match="do not match"):
        reg.verify("good")
    assert reg.names() == ["good"]  # still listed, still openable; the pool reports it on load


def test_unknown_kind_and_foreign_files_do_not_break_opening(tmp_path, adapters):
    reg = ExpertRegistry(tmp_path)
    reg.import_adapter(adapters["a"], "alpha")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "has space").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "alpha" / "v9").mkdir()  # a version folder without a card is ignored
    card = json.loads((tmp_path / "alpha" / "v1" / "expert.json").read_text())
    (tmp_path / "alpha" / "v1" / "expert.json").write_text(json.dumps({**card, "kind": "hologram"}))
    reopened = ExpertRegistry(tmp_path)
    assert reopened.names() == ["alpha"] and reopened.versions("alpha") == [1]
    with pytest.raises(UnknownNameError, match="hologram"):
        reopened.get("alpha")


def test_stale_temporary_folders_are_cleaned_on_open(tmp_path, adapters):
    reg = ExpertRegistry(tmp_path)
    reg.import_adapter(adapters["a"], "alpha")
    stale, fresh = tmp_path / "alpha" / ".v2.crashed.tmp", tmp_path / ".v1.inflight.tmp"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    ExpertRegistry(tmp_path)
    assert not stale.exists() and fresh.exists()  # a recent one may belong to a writer still at work


def test_sigkill_while_adding_leaves_no_partial_entry(tmp_path, adapters):
    script = f"""
import os, shutil, signal
from adaptive_moe.experts import ExpertRegistry
real_copy = shutil.copy2
def dying_copy(src, dst, *a, **k):
    real_copy(src, dst, *a, **k)
    if str(src).endswith(".safetensors"):
        os.kill(os.getpid(), signal.SIGKILL)   # weights copied, card not yet written
shutil.copy2 = dying_copy
reg = ExpertRegistry({str(tmp_path)!r})
reg.import_adapter({str(adapters["a"])!r}, "first")
reg.import_adapter({str(adapters["b"])!r}, "second")
"""
    reg = ExpertRegistry(tmp_path)
    reg.import_adapter(adapters["b"], "zero")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    leftovers = [p for p in (tmp_path / "first").iterdir()]
    assert leftovers and all(p.name.startswith(".") for p in leftovers)  # only the hidden temporary folder
    reopened = ExpertRegistry(tmp_path)
    assert reopened.names() == ["zero"]
    assert reopened.import_adapter(adapters["a"], "first").version == 1  # the name is free to use


class NotesExpert(Expert):
    """A non-LoRA expert kind for the registry tests: it only stores notes."""

    kind = "notes"

    def __init__(self, card, path=None, notes=None):
        super().__init__(card, path)
        self.notes = notes if notes is not None else json.loads((path / "notes.json").read_text())

    def save_files(self, folder):
        (folder / "notes.json").write_text(json.dumps(self.notes))

    def generate(self, prompts, generation=None, **overrides):
        return list(self.notes)


def test_other_expert_kinds_round_trip(tmp_path):
    register_expert_kind(NotesExpert)
    reg = ExpertRegistry(tmp_path)
    card = reg.add(NotesExpert(ExpertCard("memo", domain="notes"), notes=["one", "two"]))
    assert card.kind == "notes" and card.version == 1
    loaded = reg.get("memo")
    assert isinstance(loaded, NotesExpert) and loaded.notes == ["one", "two"]
    with pytest.raises(InvalidInputError, match="not a LoRAExpert"):
        reg.import_adapter(tmp_path, "x", kind="notes")


def test_register_expert_kind_validates():
    with pytest.raises(InvalidInputError):
        register_expert_kind(dict)

    class Nameless(NotesExpert):
        kind = "not an identifier"

    with pytest.raises(ConfigError, match="identifier"):
        register_expert_kind(Nameless)

    class Clash(NotesExpert):
        kind = "lora"

    with pytest.raises(ConfigError, match="already registered"):
        register_expert_kind(Clash)


def test_registry_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        ExpertRegistry(tmp_path / "f")


def test_add_stores_a_complete_lora_expert_and_refuses_kindless_subclasses(tmp_path, base, adapters):
    reg = ExpertRegistry(tmp_path)
    first = reg.import_adapter(adapters["a"], "alpha", base=base)
    time.sleep(1.1)
    second = reg.add(reg.get("alpha"), new_version=True)  # e.g. re-register after editing the card
    assert second.version == 2 and second.created > first.created
    stored = reg.path_of("alpha")
    assert (stored / "adapter_model.safetensors").read_bytes() == (
        adapters["a"] / "adapter_model.safetensors"
    ).read_bytes()
    assert reg.verify("alpha").version == 2

    class Forgetful(LoRAExpert):  # overrides behaviour but keeps the parent's kind
        def format_prompt(self, prompt):
            return prompt

    with pytest.raises(InvalidInputError, match="its own kind"):
        reg.add(Forgetful(reg.card("alpha"), stored), new_version=True)
    assert reg.versions("alpha") == [1, 2]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("target_modules", 1, "target_modules=1; allowed: a non-empty list"),
        ("target_modules", [], "target_modules=.*allowed: a non-empty list"),
        ("target_modules", ["gate_proj"], "do not cover 'model.layers.0"),
        ("r", 1.0, "r=1.0; allowed: a whole number >= 1"),
        ("r", 16, "r=16 but its weights have rank"),
        ("lora_alpha", None, "lora_alpha=None; allowed: a finite number"),
        ("layers_to_transform", True, "layers_to_transform=True"),
    ],
)
def test_adapter_config_values_peft_would_trip_over_are_refused_on_import(tmp_path, base, adapters, field, value,
                                                                          match):  # fmt: skip
    # found by tests/unit/test_fuzz_inputs.py: such folders were imported and failed inside PEFT on first use
    import shutil

    folder = shutil.copytree(adapters["a"], tmp_path / "edited")
    config = json.loads((folder / "adapter_config.json").read_text())
    config[field] = value
    (folder / "adapter_config.json").write_text(json.dumps(config))
    reg = ExpertRegistry(tmp_path / "reg")
    with pytest.raises(CorruptExpertError, match=match):
        reg.import_adapter(folder, "edited", base=base)
    assert reg.names() == []
    (folder / "adapter_config.json").write_text("[1, 2]")
    with pytest.raises(CorruptExpertError, match="holds a list, not a JSON object"):
        reg.import_adapter(folder, "edited", base=base)
