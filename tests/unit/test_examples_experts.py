"""The expert examples run end to end in their fast mode (a tiny random model) and print what they promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run an example in a fresh interpreter on one torch thread; returns its stdout, asserting exit 0."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300, env=full_env
    )
    assert out.returncode == 0, f"{name} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


def test_custom_expert_example_fast():
    out = _run_example("custom_expert.py", "--fast")
    assert "tiny random model" in out
    # Part 1: the LoRA subclass is stored under its own kind and comes back as that class
    assert "stored: geography v1 (brief_lora): capitals, briefly" in out
    assert "registry.get('geography') -> BriefLoRAExpert" in out
    assert _number(r"expert: .* \((\d+) tokens, finish=", out) <= 16  # its generation_config caps the answer
    # Part 2: the documents expert is stored with its documents and picks the right sentence
    assert "stored: lantern-guild v1 (documents): the Tidewater Guild" in out
    assert "files: ['documents.json', 'expert.json']" in out
    assert "context: 'The Tidewater Guild of Lantern Makers was founded by Mirela Okonkwo in 1862.'" in out
    assert "context: 'The lighthouse of Port Elsby was built in 1790.'" in out
    assert out.count("A: ") == 2
    assert "pool: 2 loads, resident ['geography', 'lantern-guild']" in out


def test_import_peft_adapter_example_fast():
    out = _run_example("import_peft_adapter.py", env={"ADAPTIVE_MOE_EXAMPLE_FAST": "1"})  # fast mode by env var
    assert "tiny random model" in out
    assert "imported: my-adapter v1 (lora): an adapter trained elsewhere" in out
    assert "A (through the pool): " in out
    assert _number(r"max \|pool - PeftModel\| logits:\s+(\S+)", out) < 1e-5  # the pool computes what PEFT does
    assert _number(r"max \|PeftModel - base\| logits:\s+(\S+)", out) > 1e-2  # ...and the adapter does matter
    assert _number(r"max \|base after - base before\| logits:\s+(\S+)", out) == 0.0  # base untouched after clear()
