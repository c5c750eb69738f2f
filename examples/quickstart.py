"""Quickstart: ask the adaptive system a general question and one about an invented guild.

python examples/quickstart.py                 # the embedded SmolLM2-135M-Instruct
python examples/quickstart.py --fast          # a tiny random model (seconds; also ADAPTIVE_MOE_EXAMPLE_FAST=1)
python examples/quickstart.py --model path/to/model --max-new-tokens 8 --workspace my_workspace/

The general question is answered by the base model (route "base"). The base is unsure about the
Tidewater Guild of Lantern Makers (it is invented) and no expert covers it, so that answer comes back
flagged (route "gap") and the question is logged in the workspace's gap ledger. The workspace is a
temporary folder unless --workspace names one. examples/walkthrough.ipynb goes on from there: gap
analysis, a new expert, attribution.
"""

import argparse
import os
import tempfile
from pathlib import Path

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.testing import example_base

QUESTIONS = ["What is the capital of France?", "Who founded the Tidewater Guild of Lantern Makers?"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or hub id (default: the embedded model)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--workspace", default=None, help="folder for experts and the gap ledger (default: a temp one)")
    parser.add_argument("--fast", action="store_true", help="tiny random model instead of SmolLM2 (for CI)")
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("ADAPTIVE_MOE_EXAMPLE_FAST") == "1"

    with tempfile.TemporaryDirectory() as tmp:
        workspace = args.workspace or str(Path(tmp) / "workspace")
        cfg = AdaptiveMoEConfig().replace(workspace=workspace, **{"generation.max_new_tokens": args.max_new_tokens})
        if args.model:
            cfg = cfg.replace(**{"model.name_or_path": args.model})
        base = example_base(True, tmp) if fast and not args.model else None  # None: loaded from cfg.model
        with AdaptiveMoE(cfg, base=base) as moe:
            print(moe)
            outputs = moe.generate(QUESTIONS)  # one batched base pass, then each question's route
            for out in outputs:
                conf = "n/a" if out.confidence is None else f"{out.confidence:.2f}"
                print(f"\nQ: {out.prompt}\nA: {out.text}")
                print(f"   route={out.route} confidence={conf}{' FLAGGED' if out.flagged else ''}")
            print(f"\nattribution of the last answer:\n{outputs[-1].attribution}")
            print(f"\nopen knowledge gaps in {args.workspace or 'the temporary workspace'}: {len(moe.gaps)}")


if __name__ == "__main__":
    main()
