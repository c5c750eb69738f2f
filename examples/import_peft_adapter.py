"""Import a LoRA adapter made with plain PEFT into the expert pool, and check it computes what PEFT does.

python examples/import_peft_adapter.py          # on the embedded SmolLM2-135M-Instruct
python examples/import_peft_adapter.py --fast   # on a tiny random model (seconds; also ADAPTIVE_MOE_EXAMPLE_FAST=1)

Any plain LoRA adapter folder (adapter_config.json + adapter_model.safetensors, no DoRA, no bias, no
modules_to_save) made for the same base model can join the pool, whoever trained it.
"""

import argparse
import copy
import os
import tempfile
from pathlib import Path

import torch

from adaptive_moe.experts import ExpertPool, ExpertRegistry
from adaptive_moe.testing import example_base


def make_peft_adapter(base, folder):
    """What a training script elsewhere would do: get_peft_model(...), train, save_pretrained(folder).
    Instead of training (adaptive_moe.creation.train_lora's job, minutes) the B matrices are set to small
    random values, so that the adapter visibly changes the model's output."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)  # the same adapter on every run
    model = copy.deepcopy(base.model)  # PEFT edits the model it is given; leave the base alone
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)  # stand-in for training
    peft_model.save_pretrained(folder)
    return Path(folder)


def logits(model, tokenizer, text):
    inputs = tokenizer(text, return_tensors="pt").to(model.device)
    with torch.no_grad():
        return model(**inputs).logits.float().cpu()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny random model instead of SmolLM2 (for CI)")
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("ADAPTIVE_MOE_EXAMPLE_FAST") == "1"

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = example_base(fast, workdir)
        print(f"base: {base.name} ({'tiny random model, answers are noise' if fast else 'embedded SmolLM2'})")
        adapter_dir = make_peft_adapter(base, workdir / "my-adapter")
        print(f"adapter made with plain PEFT (random, untrained): {sorted(p.name for p in adapter_dir.iterdir())}")

        # The reference: the adapter loaded by PEFT itself, on its own copy of the base weights.
        from peft import PeftModel

        probe = "What is the capital of France?"
        reference = PeftModel.from_pretrained(copy.deepcopy(base.model), str(adapter_dir)).eval()
        peft_logits = logits(reference, base.tokenizer, probe)
        del reference
        base_logits = logits(base.model, base.tokenizer, probe)

        # Import: the adapter is checked against the base (plain LoRA, every target module exists with the
        # right shapes), copied into the registry with an expert.json card, and hashed.
        registry = ExpertRegistry(workdir / "experts")
        card = registry.import_adapter(adapter_dir, "my-adapter", domain="an adapter trained elsewhere", base=base)
        print(f"imported: {card.summary()}; lora={card.lora}")

        pool = ExpertPool(base, registry, capacity=4)
        with pool.acquire(["my-adapter"]) as [expert]:
            s = expert.generate(probe, max_new_tokens=24)[0]
            print(f"Q: {probe}\nA (through the pool): {s.text!r}")
            # The pool's logits: the expert's adapter slot switched on, for this block only.
            with base.adapter_host.activated(expert.slot):
                pool_logits = logits(base.model, base.tokenizer, probe)

        print(f"max |pool - PeftModel| logits:        {(pool_logits - peft_logits).abs().max().item():.3g}")
        print(f"max |PeftModel - base| logits:        {(peft_logits - base_logits).abs().max().item():.3g}")
        pool.clear()  # unload every expert: the base is its plain self again
        after = logits(base.model, base.tokenizer, probe)
        print(f"max |base after - base before| logits: {(after - base_logits).abs().max().item():.3g}")


if __name__ == "__main__":
    main()
