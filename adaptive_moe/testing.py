"""Tiny, randomly initialised models for fast tests (here and in code that extends adaptive_moe).

``make_tiny_model(folder, arch="llama")`` writes a complete Hugging Face model folder (safetensors
weights, config, a byte-level BPE tokenizer trained on a few sentences, and a ChatML chat template)
in well under a second, with no download.
"""

from __future__ import annotations

from pathlib import Path

import torch

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Who wrote Hamlet? William Shakespeare wrote Hamlet.",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 + - = ?",
    "Ada Lovelace was born in London and worked on the Analytical Engine.",
    "system user assistant: you are a helpful assistant.",
]
ARCHITECTURES = ("llama", "gpt2")


def make_tiny_tokenizer(chat_template: bool = True, vocab_size: int = 400):
    """A byte-level BPE tokenizer (any text encodes) with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>" if chat_template else "<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    if chat_template:
        wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def make_tiny_model(
    folder: str | Path, arch: str = "llama", chat_template: bool = True, seed: int = 0, hidden_size: int = 32
) -> Path:
    """Write a tiny random causal LM of architecture ``arch`` (``llama`` or ``gpt2``) to ``folder``.

    ``hidden_size`` 64 or more (the MLP is twice as wide) for int8 / nf4 tests: bitsandbytes' CPU 4-bit
    kernels quantize in blocks of 64 input features and fail on narrower layers."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = make_tiny_tokenizer(chat_template=chat_template)
    vocab = len(tokenizer)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=True,
            initializer_range=0.3,  # larger than real models' 0.02, so a frozen tiny head can still fit a fact
            **ids,
        )
        model = LlamaForCausalLM(config)
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab, n_embd=hidden_size, n_layer=2, n_head=4, n_positions=128, initializer_range=0.3, **ids
        )
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_random_adapter(
    model,
    folder: str | Path,
    *,
    r: int = 4,
    target_modules: str | list[str] = "all-linear",
    seed: int = 0,
    scale: float = 0.5,
    bias: str = "none",
    safe_serialization: bool = True,
) -> Path:
    """Write a plain PEFT LoRA adapter with random (non-zero) A and B matrices for ``model`` to
    ``folder``, exactly as ``get_peft_model(...).save_pretrained()`` would; the model is left as it was.
    Outputs change visibly when it is on, which is what pool and routing tests need."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=target_modules, bias=bias, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.save_pretrained(str(folder), safe_serialization=safe_serialization)
    peft_model.unload()
    for param in model.parameters():
        param.requires_grad_(False)
    return Path(folder)


def example_base(fast: bool, workdir: str | Path):
    """The base model the examples run on: the embedded SmolLM2, or with ``fast`` (CI) a tiny random
    Llama built in ``workdir`` in seconds, whose answers are noise."""
    from .model import load_base_model

    if fast:
        return load_base_model(name_or_path=str(make_tiny_model(Path(workdir) / "tiny-model")), device="cpu")
    return load_base_model()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now, on ``host``."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerThread:
    """An ASGI ``app`` served by uvicorn on 127.0.0.1 (a free port) in a background thread, for tests,
    benchmarks and notebooks: ``.url`` once constructed, :meth:`stop` to shut it down."""

    def __init__(self, app, timeout: float = 30.0) -> None:
        import threading
        import time

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="adaptive_moe-server", daemon=True)
        self.thread.start()
        deadline = time.time() + timeout
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.02)

    def stop(self, timeout: float = 60.0) -> None:
        """Ask uvicorn to exit (requests in flight finish) and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout)


def postgres_binaries() -> Path | None:
    """The folder of PostgreSQL's server programs (``initdb``, ``pg_ctl``), or None when not installed:
    the ``PATH`` first, then Debian's ``/usr/lib/postgresql/<version>/bin`` (the newest)."""
    import shutil

    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parent.parent.name)
    return candidates[-1].parent if candidates else None


class PostgresServer:
    """A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks: a new cluster in a temporary
    folder, trust authentication on loopback only, ``fsync`` off (nothing in it outlives it). Started as
    the unprivileged ``postgres`` account when run as root (PostgreSQL refuses root), stopped and removed
    by :meth:`stop`.

    Example::

        with PostgresServer() as pg:
            url = pg.create_database("ledger")   # postgresql://postgres@127.0.0.1:<port>/ledger
    """

    def __init__(self, port: int | None = None, account: str = "postgres") -> None:
        self.port = port or free_port()
        self.account = account
        self.folder: Path | None = None
        self._bin = postgres_binaries()

    def _run(self, *args: str, check: bool = True):
        import os
        import subprocess

        command = [str(self._bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.account, "--", *command]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            from .errors import AdaptiveMoEError

            raise AdaptiveMoEError(f"{' '.join(args[:2])} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
        return out

    def start(self) -> str:
        """Create the cluster and start the server; returns the URL of its ``postgres`` database."""
        import os
        import pwd
        import tempfile

        from .errors import MissingDependencyError

        if self._bin is None:
            raise MissingDependencyError(
                "PostgreSQL's server programs (initdb, pg_ctl) are not installed; on Debian: apt-get install postgresql"
            )
        self.folder = Path(tempfile.mkdtemp(prefix="adaptive_moe_pg_"))
        if os.geteuid() == 0:  # the cluster belongs to the account that runs it
            try:
                user = pwd.getpwnam(self.account)
            except KeyError:
                raise MissingDependencyError(
                    f"running as root, PostgreSQL needs an unprivileged account {self.account!r} to run as"
                ) from None
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        data, log = self.folder / "data", self.folder / "server.log"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        return self.url("postgres")

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (letters, digits, underscores) and return its URL."""
        import re

        import psycopg

        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name {name!r}: lower-case letters, digits and underscores")
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:  # fmt: skip
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server at once and remove its folder (idempotent)."""
        import shutil

        if self.folder is None:
            return
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
