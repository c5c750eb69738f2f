"""Property-based tests (hypothesis) of what users hand the library as files: adapter folders damaged in
any of the ways disks, downloads and hand edits damage them, and documents of any content. Each
gets a working result or one clear :class:`AdaptiveMoEError`; nothing half-registered is left."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from adaptive_moe import AdaptiveMoEError, load_base_model
from adaptive_moe.documents import document_passages
from adaptive_moe.experts import ExpertPool, ExpertRegistry
from adaptive_moe.testing import make_random_adapter

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=5,
)


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    return make_random_adapter(base.model, tmp_path_factory.mktemp("fuzz") / "good", seed=7)


# Each damage is (kind, a number that places it): applied to a copy of a good adapter folder.
DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("overwrite"), st.integers(0, 10**6), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.sampled_from([WEIGHTS, CONFIG])),
    st.tuples(st.just("config_key"), st.sampled_from(["r", "lora_alpha", "target_modules", "peft_type", "bias",
                                                      "base_model_name_or_path", "task_type", "fan_in_fan_out",
                                                      "use_dora", "modules_to_save", "layers_to_transform"]),
              JSONISH),
    st.tuples(st.just("config_text"), st.text(max_size=40)),
    st.tuples(st.just("symlink_out"), st.sampled_from([WEIGHTS, CONFIG])),
    st.tuples(st.just("pickle_instead"), st.booleans()),
    st.tuples(st.just("header"), st.integers(0, 2**40)),
    st.tuples(st.just("extra_file"), st.sampled_from(["../escape.txt", "notes.txt", "adapter_model.bin"])),
)  # fmt: skip


def damage(folder: Path, how: tuple, outside: Path) -> None:
    kind, *arg = how
    weights, config = folder / WEIGHTS, folder / CONFIG
    needs = {"truncate": weights, "overwrite": weights, "header": weights, "pickle_instead": weights,
             "config_key": config}.get(kind)  # fmt: skip
    if kind in ("delete", "symlink_out"):
        needs = folder / arg[0]
    if needs is not None and not needs.is_file():  # an earlier damage took it away
        return
    if kind == "truncate":
        data = weights.read_bytes()
        weights.write_bytes(data[: arg[0] % max(len(data), 1)])
    elif kind == "overwrite":
        data = bytearray(weights.read_bytes())
        at = arg[0] % max(len(data), 1)
        data[at : at + len(arg[1])] = arg[1]
        weights.write_bytes(bytes(data[: len(weights.read_bytes())]))
    elif kind == "delete":
        (folder / arg[0]).unlink()
    elif kind == "config_key":
        try:
            data = json.loads(config.read_text())
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        data[arg[0]] = arg[1]
        config.write_text(json.dumps(data))
    elif kind == "config_text":
        config.write_text(arg[0])
    elif kind == "symlink_out":
        if (folder / arg[0]).is_symlink():
            return
        target = outside / arg[0]
        shutil.copyfile(folder / arg[0], target)
        (folder / arg[0]).unlink()
        os.symlink(target, folder / arg[0])
    elif kind == "pickle_instead":
        weights.unlink()
        (folder / "adapter_model.bin").write_bytes(pickle.dumps({"not": "tensors"} if arg[0] else [1, 2, 3]))
    elif kind == "header":  # the safetensors header length: 8 little-endian bytes
        data = weights.read_bytes()
        weights.write_bytes(arg[0].to_bytes(8, "little") + data[8:])
    elif kind == "extra_file":
        (folder / Path(arg[0]).name).write_bytes(b"\x80\x04not a pickle")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(DAMAGE, min_size=1, max_size=2))
def test_a_damaged_adapter_folder_is_imported_and_answers_or_is_refused_clearly(base, adapter, damages):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, outside = shutil.copytree(adapter, root / "candidate"), root / "outside"
        outside.mkdir()
        for how in damages:
            damage(folder, how, outside)
        registry = ExpertRegistry(root / "registry")
        try:
            card = registry.import_adapter(folder, "fuzzed", base=base)
        except AdaptiveMoEError as e:
            event(f"refused on import: {type(e).__name__}")
            assert str(e)  # a message a user can act on
            assert registry.names() == [] and not (root / "registry" / "fuzzed").exists()
            return
        stored = registry.path_of("fuzzed")
        assert card.name == "fuzzed" and (stored / WEIGHTS).is_file() and not (stored / WEIGHTS).is_symlink()
        assert not (stored / "adapter_model.bin").exists()  # pickles never enter without the opt-in
        pool = ExpertPool(base, registry, capacity=1)
        try:
            with pool.acquire(["fuzzed"]) as [expert]:
                [answer] = expert.generate(["hello"], max_new_tokens=2, do_sample=False)
            assert isinstance(answer.text, str)
            event("imported and answered")
        except AdaptiveMoEError as e:  # imported, but refused when loaded: a clear error, the pool goes on
            event(f"refused on load: {type(e).__name__}")
            assert str(e)
        finally:
            pool.clear()
        assert base.adapter_host is None  # the base is left plain either way


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400)
LINES = st.lists(
    st.one_of(TEXT, st.sampled_from(["# Title", "| a | b |", "|---|---|", "- item", "key: value", "", "```"])),
    max_size=12,
).map("\n".join)


@settings(max_examples=200, deadline=None)
@given(LINES | TEXT, st.booleans())
@example("# Widget\n\nThe widget weighs 340 g.\n\n| part | colour |\n|---|---|\n| lid | red |", True)
def test_any_document_text_gives_passages_that_cite_its_own_lines(text, markdown):
    try:
        passages = document_passages(text, "doc.md", markdown=markdown)
    except AdaptiveMoEError as e:
        assert str(e)
        return
    lines = text.splitlines()
    if "weighs 340 g" in text:  # the explicit example: its sentence and its table row are passages
        assert {p.body for p in passages} >= {"The widget weighs 340 g.", "lid: red."}
    for p in passages:
        assert p.body.strip() and p.source == "doc.md" and p.body in p.text
        first, last = p.lines
        assert 1 <= first <= last <= max(len(lines), 1)
        cited = "\n".join(lines[first - 1 : last])
        words = re.findall(r"\w+", p.body)
        assert not words or any(w in cited for w in words)  # the lines it cites hold its words


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300) | LINES.map(str.encode))
def test_any_document_file_gives_training_data_or_a_clear_error(data):
    from adaptive_moe.creation.data import build_training_data

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doc.txt"
        path.write_bytes(data)
        try:
            built = build_training_data([path], heldout_fraction=0.2, min_facts=0)
        except AdaptiveMoEError as e:
            assert str(e)
            return
        assert built.stats["documents"] == 1 and all(q.strip() and a.strip() for q, a in built.qa_pairs)
