"""``train_lora``: train one LoRA expert on the frozen base with the Hugging Face ``Trainer``.

Data are documents (loss on every token) and question-answer pairs (chat-template formatted exactly as
at inference, loss on the answer and its end-of-turn token only). Labels are built from positions,
never by masking the pad id: SmolLM2's pad token *is* its EOS, and masking it would teach an expert
never to stop. The base model is changed only for the duration of training (PEFT injects LoRA layers
into it) and restored afterwards, exactly. The adapter is written to a temporary folder and renamed
into place, so a failed run leaves no adapter folder.

Runs unchanged on several GPUs under ``accelerate launch`` (the Trainer handles distribution).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import GenerationConfig, LoRASettings
from ..errors import InvalidInputError, OutputExistsError, missing_dependency
from ..model.adapters import ModelState, ensure_no_pooled_adapters
from ..model.generation import render_prompt
from ..model.loading import BaseModel
from ..utils.io import atomic_directory, atomic_write_text

logger = logging.getLogger(__name__)

TRAINING_RECORD = "adaptive_moe_training.json"


@dataclass(frozen=True)
class Example:
    """One training example: a document (``prompt`` is None, loss on all of ``text``) or a QA pair."""

    text: str
    prompt: str | None = None

    @property
    def is_qa(self) -> bool:
        """Whether this example is a question-answer pair (loss on the answer only)."""
        return self.prompt is not None


# -- data -----------------------------------------------------------------------------------------
def as_examples(data: Any) -> list[Example]:
    """Accept documents and QA pairs in the shapes users have them.

    ``data``: a ``datasets.Dataset`` or an iterable whose items are strings (documents),
    ``(question, answer)`` / ``(question, [answers, ...])`` tuples (QA objects with ``question`` and
    ``answers`` work too; the first answer is the target), or dicts with ``text``, or
    ``question``/``answer``, or ``prompt``/``completion``.
    """
    if data is None or isinstance(data, (str, bytes)):
        raise InvalidInputError("training data must be a list of texts / QA pairs or a datasets.Dataset")
    try:
        import datasets

        if isinstance(data, datasets.Dataset):
            data = data.to_list()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
    examples = [_as_example(item, i) for i, item in enumerate(data)]
    if not examples:
        raise InvalidInputError("training data is empty; give at least one text or question-answer pair")
    return examples


def _as_example(item: Any, i: int) -> Example:
    if isinstance(item, str):
        if not item.strip():
            raise InvalidInputError(f"training text {i} is empty")
        return Example(text=item.strip())
    if isinstance(item, dict):
        if item.get("prompt") and "text" in item:  # a QA row as build_training_data(...).to_dataset() writes it
            return _qa(item["prompt"], item["text"], i)
        if "text" in item:
            return _as_example(item["text"], i)
        for q, a in (("question", "answer"), ("question", "answers"), ("prompt", "completion")):
            if q in item and a in item:
                return _qa(item[q], item[a], i)
        raise InvalidInputError(
            f"training item {i} has keys {sorted(item)}; allowed: 'text', 'question'+'answer', 'prompt'+'completion'"
        )
    if hasattr(item, "question") and hasattr(item, "answers"):
        return _qa(item.question, item.answers, i)
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return _qa(item[0], item[1], i)
    raise InvalidInputError(
        f"training item {i} has type {type(item).__name__}; allowed: str, (question, answer), or a dict"
    )


def _qa(question: Any, answer: Any, i: int) -> Example:
    if isinstance(answer, (list, tuple)):
        answer = answer[0] if answer else ""
    if not isinstance(question, str) or not question.strip():
        raise InvalidInputError(f"training item {i}: the question must be non-empty text")
    if not isinstance(answer, str) or not answer.strip():
        raise InvalidInputError(f"training item {i}: the answer must be non-empty text")
    return Example(text=answer.strip(), prompt=question.strip())


def data_fingerprint(examples: Sequence[Example]) -> str:
    """SHA-256 over the examples, for provenance."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.prompt, ex.text]).encode())
    return h.hexdigest()


def tokenize_examples(
    base: BaseModel, examples: Sequence[Example], max_length: int, generation: GenerationConfig | None = None
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Token ids and labels (-100 where no loss) per example, truncated to ``max_length``.

    QA prompts are rendered with the same chat template and system prompt as at inference, and the
    answer is followed by the EOS (end-of-turn) token, which is a label: the expert learns to stop.
    """
    tok = base.tokenizer
    generation = generation or GenerationConfig()
    templated = generation.use_chat_template and base.has_chat_template
    eos = tok.eos_token_id
    rows, stats = [], {"examples": len(examples), "truncated": 0, "dropped": 0, "tokens": 0}
    for ex in examples:
        if ex.is_qa:
            prompt_ids = tok(render_prompt(base, ex.prompt, generation), add_special_tokens=not templated)["input_ids"]
            answer_ids = tok(ex.text, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
            ids = prompt_ids + answer_ids
            labels = [-100] * len(prompt_ids) + answer_ids
        else:
            ids = tok(ex.text, add_special_tokens=True)["input_ids"]
            labels = list(ids)
        if len(ids) > max_length:
            stats["truncated"] += 1
            ids, labels = ids[:max_length], labels[:max_length]
        if all(label == -100 for label in labels):
            stats["dropped"] += 1  # the answer was cut off entirely: nothing to learn
            continue
        stats["tokens"] += len(ids)
        rows.append({"input_ids": ids, "labels": labels, "length": len(ids)})
    if stats["truncated"]:
        logger.warning(
            "%d of %d training examples were longer than max_length=%d tokens and were truncated%s",
            stats["truncated"], len(examples), max_length,
            f" ({stats['dropped']} lost their whole answer and were dropped)" if stats["dropped"] else "",
        )  # fmt: skip
    if not rows:
        raise InvalidInputError(f"no training example fits max_length={max_length}; raise creation.lora.max_length")
    return rows, stats


class _Collator:
    """Right-pads a batch; labels are -100 exactly where the attention mask is 0 (position-based, so a
    real EOS that shares the pad id keeps its label)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)  # (B, width) tensors, padded on the right
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# -- LoRA set-up ----------------------------------------------------------------------------------
_LINEAR_KINDS = ("Linear8bitLt", "Linear4bit", "Conv1D")
_MLP_PARENTS = ("mlp", "feed_forward", "ffn", "ff")  # what transformers calls a block's MLP
_BLOCK_INDEX = re.compile(r"\.(\d+)\.")  # "model.layers.12.mlp.up_proj" -> 12


def linear_modules(model) -> list[str]:
    """Full names of the model's linear layers, without the output head."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [full for full, module in model.named_modules() if module is not output and full
            and (isinstance(module, torch.nn.Linear) or type(module).__name__ in _LINEAR_KINDS)]  # fmt: skip


def linear_module_names(model) -> list[str]:
    """Leaf names of the model's linear layers (what ``target_modules`` may name), without the head."""
    return sorted({full.rsplit(".", 1)[-1] for full in linear_modules(model)})


def check_target_modules(model, target_modules: str | list[str]) -> None:
    """Every named target must be a linear layer of the base, or the error lists the ones it has."""
    if isinstance(target_modules, str):
        if target_modules in ("all-linear", "mlp"):
            return
        target_modules = [target_modules]
    available = linear_module_names(model)
    missing = [t for t in target_modules if t not in available]
    if missing:
        raise InvalidInputError(
            f"creation.lora.target_modules: {missing} are not linear modules of this base; "
            f"its linear modules are: {', '.join(available)} (or use 'mlp' or 'all-linear')"
        )


def decoder_layer_count(model) -> int | None:
    """Number of transformer blocks (``num_hidden_layers`` / ``n_layer`` in the config)."""
    cfg = getattr(model, "config", None)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def adapted_layers(lora: LoRASettings, model) -> list[int] | None:
    """The block indices that get adapters under ``lora.top_layers`` (``None``: every block)."""
    n = decoder_layer_count(model)
    if lora.top_layers >= 1.0 or n is None:
        return None
    keep = max(1, math.ceil(n * lora.top_layers))
    return list(range(n - keep, n))


def resolve_target_modules(lora: LoRASettings, model) -> str | list[str]:
    """What PEFT's ``target_modules`` gets: ``"all-linear"`` as is, else the full names of the linear
    layers chosen by ``lora.target_modules`` (``"mlp"``: those inside each block's MLP; leaf names such
    as ``["q_proj", "v_proj"]``) within the blocks ``lora.top_layers`` keeps.

    Full names, because leaf names are ambiguous across blocks (GPT-2's ``c_proj`` is both an attention
    and an MLP layer) and a layer subset has to be named anyway.
    """
    check_target_modules(model, lora.target_modules)
    targets, layers = lora.target_modules, adapted_layers(lora, model)
    if targets == "all-linear" and layers is None:
        return "all-linear"
    names = linear_modules(model)
    if targets == "mlp":
        names = [n for n in names if any(f".{p}." in f".{n}" for p in _MLP_PARENTS)]
        if not names:
            raise InvalidInputError(
                "creation.lora.target_modules: 'mlp' found no linear layer inside a block MLP (a module named "
                f"{', '.join(_MLP_PARENTS)}); its linear modules are: {', '.join(linear_module_names(model))}"
            )
    elif targets != "all-linear":
        wanted = {targets} if isinstance(targets, str) else set(targets)
        names = [n for n in names if n.rsplit(".", 1)[-1] in wanted]
    if layers is not None:
        keep = set(layers)
        names = [n for n in names if (m := _BLOCK_INDEX.search(n)) is not None and int(m.group(1)) in keep]
    return names


def peft_config(lora: LoRASettings, model):
    """The PEFT ``LoraConfig`` for ``lora`` on ``model`` (target modules resolved to full names)."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=resolve_target_modules(lora, model),
        bias="none",
    )


# -- training -------------------------------------------------------------------------------------
def train_lora(
    base: BaseModel,
    texts_or_dataset: Any,
    output_dir: str | Path,
    lora: LoRASettings | None = None,
    *,
    eval_data: Any = None,
    early_stopping_patience: int | None = 2,
    max_steps: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    callbacks: Iterable[Any] = (),
    generation: GenerationConfig | None = None,
    report_to: str = "none",
    run_dir: str | Path | None = None,
) -> Path:
    """Train a LoRA adapter on ``base`` and write it to ``output_dir`` as a plain PEFT adapter folder.

    Args:
        base: the frozen base model; it is restored exactly when training ends (or fails).
        texts_or_dataset: documents and/or QA pairs, see :func:`as_examples`.
        output_dir: the adapter folder to create (``adapter_config.json``, ``adapter_model.safetensors``
            and ``adaptive_moe_training.json`` with settings, data provenance and losses).
        lora: rank, alpha, dropout, target modules, learning rate, epochs, batch, accumulation, max length,
            seed (default: ``LoRASettings()``).
        eval_data: optional held-out examples; their loss is computed each epoch and training stops
            early when it has not improved for ``early_stopping_patience`` epochs (best epoch kept).
        max_steps: stop after this many optimizer steps (overrides epochs), e.g. for quick tests.
        overwrite: replace an existing ``output_dir`` (otherwise it is an error).
        callbacks: extra ``transformers.TrainerCallback`` objects.
        generation: the prompt format used at inference (system prompt, chat template).
        report_to: an experiment tracker for the run through the Trainer's own integrations: ``none``,
            ``tensorboard``, ``trackio``, ``mlflow`` or ``wandb`` (offline: each writes under ``run_dir``
            unless its own environment says otherwise; see :func:`tracker_callbacks`).
        run_dir: where the tracker writes (default: ``<output_dir>.runs``).

    Returns:
        The adapter folder. ``PeftModel.from_pretrained(model, path)`` loads it.
    """
    from transformers import EarlyStoppingCallback, TrainingArguments

    lora = lora or LoRASettings()
    lora.validate()
    precision = resolve_mixed_precision(lora.mixed_precision, base)  # fails early on a setting the device lacks
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise OutputExistsError(f"output folder {str(output_dir)!r} exists; choose another or pass overwrite=True")
    if base.context_length is not None and lora.max_length > base.context_length:
        raise InvalidInputError(
            f"creation.lora.max_length={lora.max_length} exceeds the model's context of {base.context_length}"
        )
    examples = as_examples(texts_or_dataset)
    rows, stats = tokenize_examples(base, examples, lora.max_length, generation)
    eval_rows = tokenize_examples(base, as_examples(eval_data), lora.max_length, generation)[0] if eval_data else None

    from datasets import Dataset

    epochs = effective_epochs(lora, len(rows)) if max_steps is None else lora.epochs
    if epochs > lora.epochs:
        logger.info("%d examples make %d steps an epoch: training %.1f epochs to reach creation.lora.min_steps=%d",
                    len(rows), _steps_per_epoch(lora, len(rows)), epochs, lora.min_steps)  # fmt: skip
    train_set = Dataset.from_list(rows)
    eval_set = Dataset.from_list(eval_rows) if eval_rows else None
    tracked = Path(run_dir) if run_dir is not None else output_dir.with_name(output_dir.name + ".runs")
    trackers = tracker_callbacks(report_to, tracked)  # before the model is touched: a bad setting fails here
    with base.lock:  # one owner of the model while adapters are attached
        ensure_no_pooled_adapters(base)
        model = base.model
        state = ModelState.capture(model)
        peft_model = _attach_lora(model, peft_config(lora, model))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="adaptive_moe_train_") as tmp_run, tracking_in(report_to, tracked):
            has_eval = eval_set is not None
            args = _training_arguments(TrainingArguments, lora.replace(epochs=epochs), tmp_run, base, has_eval,
                                       max_steps, progress, report_to=report_to, tracked=tracked)  # fmt: skip
            trainer_callbacks = list(callbacks) + trackers
            if eval_set is not None and early_stopping_patience:
                trainer_callbacks.append(EarlyStoppingCallback(early_stopping_patience=early_stopping_patience))
            try:
                trainer = _trainer_class()(
                    model=peft_model,
                    args=args,
                    train_dataset=train_set,
                    eval_dataset=eval_set,
                    data_collator=_Collator(base.tokenizer.pad_token_id),
                    callbacks=trainer_callbacks,
                )
                if precision == "bf16" and base.device.type == "cpu":
                    trainer.cpu_autocast = torch.bfloat16
                if not progress:  # the Trainer prints its logs to stdout without a progress bar: keep quiet
                    from transformers import PrinterCallback

                    trainer.remove_callback(PrinterCallback)
                try:
                    result = trainer.train()
                finally:
                    _finish_tracker_run(report_to)
                seconds = time.perf_counter() - started
                for cb in trainer_callbacks:  # flush the trackers' files
                    writer = getattr(cb, "tb_writer", None)
                    if writer is not None:
                        writer.flush()
                record = {
                    "base_fingerprint": base.fingerprint,
                    "base_name": base.name,
                    "lora": lora.to_dict(),
                    "mixed_precision": precision,
                    "effective_epochs": epochs,
                    "data": {"sha256": data_fingerprint(examples), **stats,
                             "qa_pairs": sum(e.is_qa for e in examples),
                             "documents": sum(not e.is_qa for e in examples),
                             "eval_examples": len(eval_rows or [])},
                    "train_loss": result.training_loss,
                    "steps": result.global_step,
                    "epochs": trainer.state.epoch,
                    "seconds": seconds,
                    "seconds_per_step": seconds / max(result.global_step, 1),
                    "examples_per_second": result.metrics.get("train_samples_per_second"),
                    "best_eval_loss": trainer.state.best_metric,
                    "log_history": [h for h in trainer.state.log_history if "loss" in h or "eval_loss" in h],
                    "memory": peak_memory(base.device),
                    "tracking": {"report_to": report_to, "run_dir": str(tracked)} if report_to != "none" else None,
                }  # fmt: skip
                rank, world = process_rank(), world_size()
                record["processes"] = world
                logger.info("process %d of %d trained %d steps (loss %.4f)", rank, world, result.global_step,
                            result.training_loss)  # fmt: skip
                if trainer.is_world_process_zero():  # one process writes; the others wait for it
                    with atomic_directory(output_dir, replace=overwrite) as tmp:
                        peft_model.save_pretrained(tmp, safe_serialization=True)
                        atomic_write_text(tmp / TRAINING_RECORD, json.dumps(record, indent=2, default=str))
                trainer.accelerator.wait_for_everyone()
            finally:
                _detach_lora(peft_model)
                state.restore(model)
        logger.info(
            "trained LoRA %s: %d steps in %.0f s, loss %.3f", output_dir, record["steps"], seconds, record["train_loss"]
        )
        return output_dir


def resolve_mixed_precision(setting: str, base: BaseModel) -> str:
    """``"bf16"``, ``"fp16"`` or ``"no"``: what autocast the run uses for ``lora.mixed_precision``.

    ``auto`` picks bf16 where the hardware computes it natively (CUDA with bf16; a CPU with AVX-512
    BF16 or AMX, where it measured 2x faster than fp32 per step), fp16 on older CUDA, else none. A
    quantized (int8 / nf4) base computes in its own dtype, so no autocast is added there.
    """
    device = base.device
    if base.precision in ("int8", "nf4"):
        return "no"
    if setting == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and _cpu_has_bf16():
            return "bf16"
        return "no"
    if setting == "fp16" and device.type != "cuda":
        raise InvalidInputError(f"creation.lora.mixed_precision: 'fp16' needs CUDA (the base is on {device.type}); "
                                "allowed here: 'auto', 'bf16', 'no'")  # fmt: skip
    return setting


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


def _steps_per_epoch(lora: LoRASettings, n_examples: int) -> int:
    return max(1, math.ceil(n_examples / (lora.batch_size * lora.gradient_accumulation)))


def effective_epochs(lora: LoRASettings, n_examples: int) -> float:
    """``lora.epochs``, or more on a small training set, so that training runs ``lora.min_steps``
    optimizer steps: a page of prose gives ~180 examples (23 steps an epoch), and its 25 reader questions
    went from 80-92% at 3 epochs to 92% at 6 and 10 (benchmarks/results/creation.md)."""
    if lora.min_steps <= 0:
        return lora.epochs
    return max(lora.epochs, lora.min_steps / _steps_per_epoch(lora, n_examples))


TRACKERS = ("none", "tensorboard", "trackio", "mlflow", "wandb")


def process_rank() -> int:
    """This process's rank under ``accelerate launch`` / ``torchrun`` (0 when not distributed)."""
    import os

    return int(os.environ.get("RANK", "0") or 0)


def world_size() -> int:
    """How many processes train together (1 when not distributed)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def wait_for_everyone() -> None:
    """Hold until every process under ``accelerate launch`` gets here (nothing when not distributed)."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def tracker_callbacks(report_to: str, run_dir: Path) -> list[Any]:
    """The callbacks that make the Trainer report to ``report_to``, offline under ``run_dir``.

    TensorBoard gets its own writer on ``run_dir`` (the Trainer's default folder is the run's temporary
    output). MLflow, Weights & Biases and Trackio report through ``TrainingArguments.report_to``; they
    are pointed at ``run_dir`` and kept offline by :func:`tracking_in` while the run trains. Here their
    packages are only checked, so a bad setting fails before the model is touched."""

    if report_to not in TRACKERS:
        raise InvalidInputError(f"report_to must be one of {', '.join(TRACKERS)}, got {report_to!r}")
    if report_to == "none":
        return []
    run_dir.mkdir(parents=True, exist_ok=True)
    if report_to == "tensorboard":
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing_dependency("tensorboard", extra="track", purpose="report_to: tensorboard") from None
        from transformers.integrations import TensorBoardCallback

        return [TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir)))]
    package = {"mlflow": "mlflow", "wandb": "wandb", "trackio": "trackio"}[report_to]
    try:
        __import__(package)
    except ImportError:
        raise missing_dependency(package, purpose=f"report_to: {report_to}") from None
    return []


def tracker_environment(report_to: str, run_dir: Path) -> dict[str, str]:
    """The environment variables that keep ``report_to`` offline under ``run_dir``: only those the user has
    not set (theirs win). Applied for the run alone (:func:`tracking_in`), so the next run, with its own
    ``run_dir``, gets its own."""
    import os

    run_dir = Path(run_dir).resolve()
    wanted = {
        # MLflow 3 keeps its file store for old runs only: a SQLite file in the run folder, still no server
        "mlflow": {
            "MLFLOW_TRACKING_URI": f"sqlite:///{run_dir / 'mlflow.db'}",
            "MLFLOW_EXPERIMENT_NAME": "adaptive_moe",
        },
        "wandb": {"WANDB_MODE": "offline", "WANDB_DIR": str(run_dir)},
        "trackio": {"TRACKIO_DIR": str(run_dir)},
    }.get(report_to, {})
    return {k: v for k, v in wanted.items() if k not in os.environ}


@contextlib.contextmanager
def tracking_in(report_to: str, run_dir: Path) -> Iterator[None]:
    """Within the block, :func:`tracker_environment` is set (and afterwards as it was). For MLflow with its
    store in ``run_dir``, the experiment is made there too, with its artifacts in ``run_dir/mlartifacts``
    (MLflow would put them under the working directory)."""
    import os

    env = tracker_environment(report_to, run_dir)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    moved = _trackio_folder(Path(env["TRACKIO_DIR"])) if "TRACKIO_DIR" in env else []
    try:
        if report_to == "mlflow" and "MLFLOW_TRACKING_URI" in env:
            import mlflow

            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "adaptive_moe")
            client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
            if client.get_experiment_by_name(name) is None:
                client.create_experiment(name, artifact_location=(Path(run_dir).resolve() / "mlartifacts").as_uri())
        yield
    finally:
        for module, name, value in moved:
            setattr(module, name, value)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _trackio_folder(folder: Path) -> list[tuple[Any, str, Any]]:
    """Point Trackio at ``folder`` for one run, and return what to put back. Trackio reads ``TRACKIO_DIR``
    once, when it is first imported, into module globals (its storage, media and artifact folders) that its
    modules import by name; so a second run in the same process, or a process that imported Trackio before,
    would write to the first folder (``~/.cache/huggingface/trackio`` by default). Each loaded Trackio module's
    copies of those globals are set to ``folder`` and its subfolders."""
    import sys

    import trackio.utils as utils

    old = utils.TRACKIO_DIR
    names = {"TRACKIO_DIR": folder}
    for name in ("MEDIA_DIR", "ARTIFACTS_DIR"):
        value = getattr(utils, name, None)
        if isinstance(value, Path) and value.parent == old:
            names[name] = folder / value.name
    moved = []
    for mod_name, module in list(sys.modules.items()):
        if module is None or not (mod_name == "trackio" or mod_name.startswith("trackio.")):
            continue
        for name, value in names.items():
            if isinstance(getattr(module, name, None), Path):
                moved.append((module, name, getattr(module, name)))
                setattr(module, name, value)
    return moved


def _finish_tracker_run(report_to: str) -> None:
    """End the W&B or Trackio run the Trainer opened (they stay open until the process exits otherwise, so
    the next creation run in this process would log into the same run, and nothing is flushed before)."""
    if report_to == "wandb":
        import wandb

        if wandb.run is not None:
            wandb.finish()
    elif report_to == "trackio":
        import trackio

        with contextlib.suppress(Exception):  # no run open: nothing to end
            trackio.finish()


def log_run_summary(report_to: str, run_dir: Path, *, metrics: dict[str, Any], texts: dict[str, Any]) -> None:
    """Add a creation run's admission ``metrics`` (scalars) and ``texts`` (config, data statistics, the
    expert card; JSON) to its TensorBoard run in ``run_dir``, or to the MLflow run the training just
    logged (metrics as ``admission/*``, texts as ``creation/<key>.json`` artifacts). Weights & Biases and
    Trackio keep what the Trainer logged (loss curve, training arguments); the same summary is in the
    expert card and the training record."""
    scalars = {k: float(v) for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}  # fmt: skip
    if report_to == "mlflow":
        import mlflow

        with tracking_in(report_to, run_dir):
            last = mlflow.last_active_run()
            with mlflow.start_run(run_id=last.info.run_id if last is not None else None):
                mlflow.log_metrics({f"admission/{k}": v for k, v in scalars.items()})
                for key, value in texts.items():
                    mlflow.log_dict(json.loads(json.dumps(value, default=str)), f"creation/{key}.json")
        return
    if report_to != "tensorboard":
        return
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir))
    try:
        for key, value in scalars.items():
            writer.add_scalar(f"admission/{key}", value)
        for key, value in texts.items():
            writer.add_text(key, "```\n" + json.dumps(value, indent=1, default=str) + "\n```")
    finally:
        writer.close()


def peak_memory(device: Any = None) -> dict[str, float | None]:
    """Peak resident memory of this process (CPU RSS, MiB) and, on CUDA, the peak allocated GPU memory."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    rss_mib = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
    gpu = None
    if device is not None and getattr(device, "type", "") == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.max_memory_allocated(device) / (1024 * 1024)
    return {"peak_rss_mib": round(rss_mib, 1), "gpu_peak_allocated_mib": None if gpu is None else round(gpu, 1)}


def _training_arguments(cls, lora, run_dir, base, has_eval, max_steps, progress, *, report_to="none",
                        tracked=None):  # fmt: skip
    on_cpu = base.device.type == "cpu"
    precision = resolve_mixed_precision(lora.mixed_precision, base)
    kwargs = {
        "output_dir": run_dir,
        "per_device_train_batch_size": lora.batch_size,
        "per_device_eval_batch_size": lora.batch_size,
        "gradient_accumulation_steps": lora.gradient_accumulation,
        "learning_rate": lora.learning_rate,
        "num_train_epochs": lora.epochs,
        "max_steps": max_steps if max_steps is not None else -1,
        "lr_scheduler_type": "linear",
        "warmup_steps": lora.warmup_ratio,  # a float below 1 is a share of the total steps
        "weight_decay": 0.0,
        "logging_steps": 5,
        # TensorBoard gets its own writer (tracker_callbacks); the other trackers go through the Trainer
        "report_to": "none" if report_to in ("none", "tensorboard") else [report_to],
        "run_name": None if tracked is None else tracked.name,
        "project": "adaptive_moe",  # Trackio's project (its database file's name)
        "seed": lora.seed,
        "data_seed": lora.seed,
        "use_cpu": on_cpu,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "disable_tqdm": not progress,
        "dataloader_pin_memory": not on_cpu,
        "remove_unused_columns": False,
        # batches of similar lengths: a 25-token fact padded to an 80-token profile wastes 3x the compute
        "train_sampling_strategy": "group_by_length",
        "length_column_name": "length",
        "save_only_model": True,
    }
    if has_eval:
        kwargs.update(
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=2,
            load_best_model_at_end=True,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
        )
    else:
        kwargs.update(save_strategy="no", eval_strategy="no")
    return cls(**kwargs)


def labelled_positions_loss(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Causal-LM loss that runs the output head only where a label is: mean cross-entropy over the
    tokens with labels, exactly as the model's own loss, but without the (B, T, vocab) logits.

    A QA example of ~45 tokens has ~5 answer tokens; SmolLM2's head (576 x 49,152) is a fifth of the
    forward pass, so skipping it elsewhere saved 13% of each step. Returns ``None`` when the model does
    not expose its decoder and head (the caller then uses the model's own loss).
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        decoder, head = inner.get_decoder(), inner.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None or decoder is inner:
        return None
    labels = inputs["labels"][:, 1:]  # (B, T-1): the token each position predicts
    hidden = decoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    keep = labels != -100
    logits = head(hidden[:, :-1][keep])  # (n_labelled, vocab)
    return torch.nn.functional.cross_entropy(logits.float(), labels[keep])


def _trainer_class():
    from transformers import Trainer

    class _LabelledPositionsTrainer(Trainer):
        """The Hugging Face Trainer with the loss of :func:`labelled_positions_loss`, and bf16 autocast on
        the CPU: ``TrainingArguments(bf16=True, use_cpu=True)`` is accepted but (transformers 5 with
        accelerate 1.15) runs in fp32, measured 1.5 s/step against 0.9 s/step under autocast."""

        cpu_autocast: torch.dtype | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            dtype = self.cpu_autocast or torch.bfloat16
            with torch.autocast("cpu", dtype=dtype, enabled=self.cpu_autocast is not None):
                if not return_outputs:
                    loss = labelled_positions_loss(model, inputs)
                    if loss is not None:
                        return loss
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return _LabelledPositionsTrainer


def _attach_lora(model, config):
    """Inject LoRA layers into ``model`` in place. On a 4-bit / 8-bit base this is QLoRA; PEFT's
    ``prepare_model_for_kbit_training`` is deliberately not used, since it would cast the base's norms
    to fp32 for good, and the base must come back exactly as it was."""
    from peft import get_peft_model

    return get_peft_model(model, config)


def _detach_lora(peft_model) -> None:
    """Remove the injected LoRA layers (without merging) so the base is exactly what it was."""
    peft_model.base_model.unload()
