"""Custom experts: change how a LoRA expert is prompted, or write a new kind of expert.

python examples/custom_expert.py          # on the embedded SmolLM2-135M-Instruct
python examples/custom_expert.py --fast   # on a tiny random model (seconds; also ADAPTIVE_MOE_EXAMPLE_FAST=1)

Part 1 subclasses LoRAExpert: same adapter weights, different prompt formatting and generation settings.
Part 2 subclasses Expert: an expert that answers from its own documents, with no adapter at all.
Both are registered with `register_expert_kind`, so an ExpertRegistry stores them and loads them back
as the right class (it picks the class by the card's `kind`), and both are used through an ExpertPool.
"""

import argparse
import copy
import json
import os
import re
import tempfile
from pathlib import Path

from adaptive_moe.experts import Expert, ExpertCard, ExpertPool, ExpertRegistry, LoRAExpert, register_expert_kind
from adaptive_moe.testing import example_base


# -- Part 1: a LoRA expert that answers briefly ---------------------------------------------------------
@register_expert_kind  # the registry loads cards with kind "brief_lora" as this class
class BriefLoRAExpert(LoRAExpert):
    kind = "brief_lora"
    instruction = "Answer in one short sentence."

    def format_prompt(self, prompt):
        # A prompt is a string or chat messages ([{"role": ..., "content": ...}]); put the instruction first.
        if isinstance(prompt, str):
            return f"{self.instruction} {prompt}"
        *earlier, last = prompt
        return [*earlier, {**last, "content": f"{self.instruction} {last['content']}"}]

    def generation_config(self, generation):
        # The caller's settings, with at most 16 new tokens.
        return generation.replace(max_new_tokens=min(generation.max_new_tokens, 16))


# -- Part 2: an expert that answers from its own documents -----------------------------------------------
_STOPWORDS = {"a", "an", "and", "by", "did", "in", "is", "of", "the", "to", "was", "what", "when", "which", "who"}


def _words(text):
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOPWORDS}


@register_expert_kind
class DocumentsExpert(Expert):
    kind = "documents"
    DOCUMENTS_FILE = "documents.json"

    def __init__(self, card, path=None, documents=()):
        super().__init__(card, path)
        self.documents = list(documents)

    # persistence: what the registry stores beside expert.json, and how the expert is read back
    def save_files(self, folder):
        (Path(folder) / self.DOCUMENTS_FILE).write_text(json.dumps(self.documents, indent=2))

    @classmethod
    def from_folder(cls, folder, card, **options):
        return cls(card, folder, json.loads((Path(folder) / cls.DOCUMENTS_FILE).read_text()))

    def best_sentence(self, question):
        """The sentence of the documents that shares the most words with the question."""
        sentences = [s for doc in self.documents for s in re.split(r"(?<=[.!?])\s+", doc.strip()) if s]
        return max(sentences, key=lambda s: len(_words(s) & _words(question)))

    def format_prompt(self, prompt):
        # Called by prepare_request on each prompt; plain-text questions are grounded in one sentence.
        if not isinstance(prompt, str):
            raise ValueError("DocumentsExpert answers plain-text questions")
        return f"Context: {self.best_sentence(prompt)}\nAnswer from the context. {prompt}"

    def generate(self, prompts, generation=None, **overrides):
        # load() (inherited) only keeps a reference to the base: nothing to put on the model.
        # prepare_request checks the expert is loaded, validates the prompts and applies format_prompt.
        prompts, generation = self.prepare_request(prompts, generation, **overrides)
        # The plain base model: outside an expert's own activation the pool keeps every LoRA adapter off.
        return self.base.generate_with_signals(prompts, generation)


# -- the demo ---------------------------------------------------------------------------------------------
def make_untrained_adapter(base, folder):
    """A plain PEFT LoRA adapter, freshly initialised (B = 0, so it does not change the model yet).
    Training one is `adaptive_moe.creation.train_lora`'s job and takes minutes; here the point is what
    the subclass changes, and with an untrained adapter that is *all* that changes."""
    from peft import LoraConfig, get_peft_model

    model = copy.deepcopy(base.model)  # PEFT edits the model it is given; leave the base alone
    get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])).save_pretrained(folder)
    return Path(folder)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny random model instead of SmolLM2 (for CI)")
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("ADAPTIVE_MOE_EXAMPLE_FAST") == "1"

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = example_base(fast, workdir)
        print(f"base: {base.name} ({'tiny random model, answers are noise' if fast else 'embedded SmolLM2'})")
        registry = ExpertRegistry(workdir / "experts")
        pool = ExpertPool(base, registry, capacity=4)

        # Part 1. import_adapter checks the adapter against the base and stores it; kind="brief_lora" makes
        # the registry load it back as our subclass. (Without storing it at all,
        # pool.add(BriefLoRAExpert(card, adapter_folder)) serves it from memory.)
        adapter = make_untrained_adapter(base, workdir / "adapter")
        registry.import_adapter(adapter, "geography", domain="capitals, briefly", base=base, kind="brief_lora")
        print(f"\n[1] stored: {registry.card('geography').summary()}")
        print(f"    registry.get('geography') -> {type(registry.get('geography')).__name__}")

        question = "Why is Paris the capital of France?"
        print("    (untrained adapter: the difference below comes only from format_prompt and generation_config)")
        s = base.generate_with_signals(question, max_new_tokens=48)[0]
        print(f"    base:   {s.text!r} ({s.num_tokens} tokens, finish={s.finish_reason})")
        with pool.acquire(["geography"]) as [expert]:
            s = expert.generate(question, max_new_tokens=48)[0]  # the expert caps it at 16
        print(f"    expert: {s.text!r} ({s.num_tokens} tokens, finish={s.finish_reason})")

        # Part 2. A documents expert is stored with registry.add (card + documents.json), then used by name.
        documents = [
            "The Tidewater Guild of Lantern Makers was founded by Mirela Okonkwo in 1862. "
            "Its workshop stands on Harrow Quay in Port Elsby.",
            "Port Elsby is a fishing town on the Corran estuary. The lighthouse of Port Elsby was built in 1790.",
        ]
        card = ExpertCard(name="lantern-guild", domain="the Tidewater Guild")
        card = registry.add(DocumentsExpert(card, documents=documents))  # returns the stored card (version 1)
        print(f"\n[2] stored: {card.summary()}")
        print(f"    files: {sorted(p.name for p in registry.path_of('lantern-guild').iterdir())}")
        questions = ["Who founded the Tidewater Guild of Lantern Makers?", "When was the Port Elsby lighthouse built?"]
        with pool.acquire(["lantern-guild"]) as [expert]:  # registry.get -> DocumentsExpert.from_folder
            for q in questions:
                s = expert.generate(q, max_new_tokens=32)[0]
                print(f"    Q: {q}\n       context: {expert.best_sentence(q)!r}\n       A: {s.text!r}")

        print(f"\npool: {pool.stats.misses} loads, resident {list(pool.resident)}")


if __name__ == "__main__":
    main()
