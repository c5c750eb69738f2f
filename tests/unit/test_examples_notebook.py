"""The walkthrough notebook and the quickstart run end to end in their fast mode (a tiny random model).

The notebook is run without Jupyter: its code cells are exec()-ed in order in one namespace in a fresh
interpreter, and a cell's last expression is "displayed" the way a notebook would (its HTML when it
has ``_repr_html_``, else its repr), so the token-coloured attribution is rendered too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

NOTEBOOK = EXAMPLES / "walkthrough.ipynb"

RUNNER = r"""
import ast, json, sys

notebook = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__main__"}
cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
for i, cell in enumerate(cells):
    source = "".join(cell["source"])
    source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    tree = ast.parse(source, filename=f"<cell {i}>")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, f"<cell {i}>", "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), f"<cell {i}>", "eval"), namespace)
        if value is not None:
            html = getattr(value, "_repr_html_", None)
            print(f"[display html] {html()}" if html is not None else f"[display] {value!r}")
    print(f"[cell {i} done]", flush=True)
"""


def _cells(kind: str) -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == kind]


def test_walkthrough_notebook_is_clean():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)  # committed clean
    assert 'FAST = os.environ.get("ADAPTIVE_MOE_EXAMPLE_FAST") == "1"' in "".join(code[0]["source"])
    assert len(_cells("markdown")) >= len(code) - 2  # each step explained
    assert not any(line.lstrip().startswith(("%", "!")) for c in _cells("code") for line in c.splitlines())


def _run(args: list[str], cwd: Path) -> str:
    """Run python ``args`` in fast mode in a fresh interpreter on one torch thread, in ``cwd``; returns
    its stdout, asserting exit 0."""
    env = {**os.environ, "ADAPTIVE_MOE_EXAMPLE_FAST": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    assert out.returncode == 0, f"{args[-1]} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_walkthrough_notebook_runs_fast(tmp_path):
    text = _run(["-c", RUNNER, str(NOTEBOOK)], cwd=tmp_path)
    assert f"[cell {len(_cells('code')) - 1} done]" in text  # every cell ran
    assert "AdaptiveMoE(base='tiny-model', experts=[]" in text  # the first cell shows the system
    assert " answered as gaps; " in text and "\ngap  " in text  # the guild questions were logged as gaps
    assert "open gaps: " in text and "candidate domain" in text  # the gap report
    assert "expert 'tidewater-guild': ADMITTED" in text and "admitted: True" in text
    assert "'domain_accuracy'" in text  # result.metrics displayed
    assert "expert  " in text and "tidewater-guild" in text  # routed to the new expert afterwards
    assert text.count("[display html] ") == 2 and "<span title=" in text  # out and out.attribution rendered
    assert "experts=['tidewater-guild']" in text  # loaded back by from_pretrained
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory


def test_quickstart_example_fast(tmp_path):
    out = _run([str(EXAMPLES / "quickstart.py"), "--max-new-tokens", "4"], cwd=tmp_path)  # fast by the env var
    assert out.count("Q: ") == 2 and out.count("route=") == 2
    assert "attribution of the last answer:" in out and "open knowledge gaps in the temporary workspace" in out
    assert list(tmp_path.iterdir()) == []  # the workspace is a temporary folder, not the working directory
