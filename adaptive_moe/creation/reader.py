"""The reading adapter a retrieval expert answers with.

A small base reads poorly when passages are put in front of a question: the embedded SmolLM2-135M, given
the passages retrieval finds, answers 39-42% of the reader questions of the project's development
documents; a LoRA trained to answer from passages, with the passage that holds the answer among
distractors (RAFT style), answers 70-76% of them (``benchmarks/results/reader.md``). Reading is the same
skill for every document, so the reader is trained once per base, not once per expert:

- for the embedded model it ships in the package (``adaptive_moe/data/readers/``, fitted by
  ``benchmarks/fit_embedded_reader.py`` on invented entities and the development documents, never on
  the test documents);
- for any other base it is trained on first use from invented entities alone
  (:func:`synthetic_reading_examples`) and kept under ``<workspace>/readers/<base fingerprint>/``.

A retrieval expert's adapter is a copy of its base's reader (a plain PEFT adapter folder) next to the
passage index of its own documents: creating one trains nothing, and what it knows is what it retrieves.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import LoRASettings
from ..errors import InvalidInputError
from ..experts.retrieval import context_prompt
from ..utils.io import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDED_READER_DIR",
    "READER_LORA",
    "READER_STEPS",
    "copy_reader",
    "reader_for",
    "synthetic_reading_examples",
    "train_reader",
]

EMBEDDED_READER_DIR = Path(str(resources.files("adaptive_moe").joinpath("data", "readers", "smollm2-135m-instruct")))
MANIFEST = "fit.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
#: the reader's LoRA: a skill, not facts, so a lower rate and rank than an expert that memorises; on every
#: linear layer (attention too): on the development documents it read as well as the MLP layers alone with
#: three readings (0.795 against 0.786) and better with one passage (0.72 against 0.67)
#: (``benchmarks/results/reader_train_all_linear.md``, ``reader_train_mlp.md``)
READER_LORA = LoRASettings(r=16, alpha=32, learning_rate=1e-3, epochs=1.0, min_steps=0, max_length=384, batch_size=8,
                           target_modules="all-linear")  # fmt: skip
READER_STEPS = 150


def synthetic_reading_examples(n: int = 560, passages: int = 2, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` reading examples over invented entities of every kind: a question, the profile that answers
    it and ``passages - 1`` other profiles of the same kind in random order, in the prompt format a
    retrieval expert answers in (:func:`~adaptive_moe.experts.retrieval.context_prompt`); the answer is
    the short value."""
    from .synthetic import SYNTHETIC_KINDS, make_synthetic_domain

    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    per_kind = -(-n // len(SYNTHETIC_KINDS))
    for kind in SYNTHETIC_KINDS:
        domain = make_synthetic_domain(kind, 40, seed=seed, restatements_per_fact=0)
        profiles = domain.documents[: len(domain.entities)]
        where = {e["name"]: i for i, e in enumerate(domain.entities)}
        qas = domain.train_qa + domain.test_qa
        rng.shuffle(qas)
        for qa in qas[:per_kind]:
            gold = profiles[where[qa.entity]]
            shown = [gold, *rng.sample([p for p in profiles if p != gold], passages - 1)]
            rng.shuffle(shown)
            out.append((context_prompt(qa.question, shown), qa.answers[0]))
    rng.shuffle(out)
    return out[:n]


def train_reader(base: Any, output_dir: str | Path, examples: list[tuple[str, str]] | None = None, *,
                 lora: LoRASettings | None = None, steps: int = READER_STEPS, progress: bool = True,
                 note: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Train a reader for ``base`` on ``examples`` (default: :func:`synthetic_reading_examples`) and write
    it to ``output_dir`` (a PEFT adapter folder plus ``fit.json`` naming the base it was fitted on)."""
    from .training import process_rank, train_lora, wait_for_everyone

    examples = examples if examples is not None else synthetic_reading_examples()
    lora = lora or READER_LORA
    if base.context_length is not None and lora.max_length > base.context_length:
        lora = lora.replace(max_length=base.context_length)
    if not any(_fits(base, prompt, answer, lora.max_length) for prompt, answer in examples[:64]):
        raise InvalidInputError(
            f"no reading example fits {base.name}'s {lora.max_length}-token context: a retrieval expert's base must "
            "read a few passages at once; use creation.method: rules for this base"
        )
    output_dir = Path(output_dir)
    tmp = output_dir.with_name(output_dir.name + ".training")
    if process_rank() == 0:  # under accelerate launch, process 0 alone touches the folders
        shutil.rmtree(tmp, ignore_errors=True)
    wait_for_everyone()
    with base.lock:
        train_lora(base, examples, tmp, lora=lora, max_steps=steps, overwrite=True, progress=progress)
    if process_rank() == 0:
        manifest = {"base_fingerprint": base.fingerprint, "base_name": base.name, "examples": len(examples),
                    "steps": steps, "lora": lora.to_dict(), **(note or {})}  # fmt: skip
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, default=str))
        shutil.rmtree(output_dir, ignore_errors=True)
        tmp.rename(output_dir)
    wait_for_everyone()
    return output_dir


def _fits(base: Any, prompt: str, answer: str, max_length: int) -> bool:
    return len(base.tokenizer(f"{prompt}\n{answer}")["input_ids"]) + 16 <= max_length  # + the chat template


def _fitted_on(folder: Path) -> str | None:
    try:
        return json.loads((folder / MANIFEST).read_text()).get("base_fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def reader_for(base: Any, workspace: str | Path, *, steps: int = READER_STEPS, progress: bool = True,
               before_training: Any = None) -> Path:  # fmt: skip
    """The reader folder for ``base``: the shipped one when ``base`` is the model it was fitted on, else
    the workspace's (trained now for ``steps`` steps on invented entities when there is none yet: once
    per base; ``before_training()`` is called first, say to unload the experts a pool holds on ``base``)."""
    if (EMBEDDED_READER_DIR / ADAPTER_FILES[1]).is_file() and _fitted_on(EMBEDDED_READER_DIR) == base.fingerprint:
        return EMBEDDED_READER_DIR
    folder = Path(workspace) / "readers" / base.fingerprint[:16]
    if _fitted_on(folder) == base.fingerprint and (folder / ADAPTER_FILES[1]).is_file():
        return folder
    logger.info("training a reader for %s (once per base; %d steps)", base.name, steps)
    with base.lock:
        if before_training is not None:
            before_training()
        return train_reader(base, folder, steps=steps, progress=progress)


def copy_reader(reader: Path, adapter: Path) -> None:
    """Make ``adapter`` (a new folder) a copy of the reader's adapter files, written atomically."""
    from .training import TRAINING_RECORD

    tmp = adapter.with_name(adapter.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copyfile(reader / name, tmp / name)
    record = {"reader": str(reader), "reader_fit": json.loads((reader / MANIFEST).read_text())}
    atomic_write_text(tmp / TRAINING_RECORD, json.dumps(record, indent=1, default=str))
    shutil.rmtree(adapter, ignore_errors=True)
    tmp.rename(adapter)
