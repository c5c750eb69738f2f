"""Quickstart: load the base model and read the confidence signals of its answers.

python examples/quickstart.py                       # the embedded SmolLM2-135M-Instruct
python examples/quickstart.py --model path/to/model --max-new-tokens 8
"""

import argparse

from adaptive_moe import AdaptiveMoEConfig, load_base_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or hub id (default: the embedded model)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args(argv)

    cfg = AdaptiveMoEConfig()
    if args.model:
        cfg = cfg.replace(**{"model.name_or_path": args.model})
    base = load_base_model(cfg.model)
    print(base)

    questions = ["What is the capital of France?", "Who founded the Tidewater Guild of Lantern Makers?"]
    for s in base.generate_with_signals(questions, max_new_tokens=args.max_new_tokens):
        mean_lp = float(s.token_logprobs.mean()) if s.num_tokens else 0.0
        print(f"Q: {s.prompt}\nA: {s.text}")
        print(f"   tokens={s.num_tokens} mean log-prob={mean_lp:.2f} finish={s.finish_reason}\n")


if __name__ == "__main__":
    main()
