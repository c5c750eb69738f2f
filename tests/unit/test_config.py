from pathlib import Path

import pytest
import yaml

from adaptive_moe import AdaptiveMoEConfig
from adaptive_moe.config import ModelConfig, config_help
from adaptive_moe.errors import ConfigError, ModelNotFoundError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_are_the_embedded_model_on_auto_device():
    cfg = AdaptiveMoEConfig()
    assert cfg.model.name_or_path == "embedded:smollm2-135m-instruct"
    assert cfg.model.precision == "fp32"
    assert cfg.model.trust_remote_code is False
    assert cfg.model.allow_pickle is False
    assert cfg.pool.allow_pickle is False
    assert {"model", "generation", "router", "pool", "integrator", "gaps", "creation", "workspace"} <= set(
        cfg.to_dict()
    )
    assert (cfg.creation.lora.r, cfg.creation.lora.target_modules) == (32, "mlp")  # benchmarks/results/lora_sweep.md


def test_yaml_round_trip_equal(tmp_path):
    cfg = AdaptiveMoEConfig().replace(
        **{
            "model.precision": "nf4",
            "generation.stop": ["\n\n", "###"],
            "generation.seed": 7,
            "router.threshold": 0.25,
            "creation.lora.target_modules": ["q_proj", "v_proj"],
            "workspace": "some where/with: colon #hash",
        }
    )
    path = tmp_path / "cfg.yaml"
    text = cfg.to_yaml(path)
    assert path.read_text() == text
    assert "# weights precision" in text  # help text rides along as comments
    back = AdaptiveMoEConfig.from_yaml(path)
    assert back == cfg
    assert back.creation.lora.target_modules == ["q_proj", "v_proj"]


def test_every_bad_field_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"precison": "fp32", "precision": "int3", "device": "gpu"},
                "router": {"threshold": 1.5, "top_k": True},
                "generation": {"max_new_tokens": 0, "stop": [""]},
                "workspce": "x",
            }
        )
    )
    with pytest.raises(ConfigError) as info:
        AdaptiveMoEConfig.from_yaml(path)
    err = info.value
    assert isinstance(err, ValueError)
    joined = "\n".join(err.problems)
    assert "model.precison: unknown key; did you mean 'precision'?" in joined
    assert "workspce: unknown key; did you mean 'workspace'?" in joined
    assert "model.precision: 'int3' is not allowed (did you mean 'int8'?)" in joined
    assert "'fp32', 'fp16', 'bf16', 'int8', 'nf4'" in joined
    assert "model.device: 'gpu'" in joined
    assert "router.threshold: 1.5 is out of range; allowed: <= 1" in joined
    assert "router.top_k: True has type bool; expected int" in joined
    assert "generation.max_new_tokens: 0 is out of range; allowed: > 0" in joined
    assert "generation.stop" in joined
    assert len(err.problems) == 8
    assert str(path) in str(err)


def test_section_built_directly_is_validated():
    with pytest.raises(ConfigError, match="precision"):
        ModelConfig(precision="int3")
    with pytest.raises(ConfigError, match="name_or_path"):
        ModelConfig(name_or_path="embedded:llama-70b")


def test_section_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match="gaps: expected a mapping"):
        AdaptiveMoEConfig.from_dict({"gaps": 3})


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("model: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
    ],
)
def test_corrupt_config_file(tmp_path, content, match):
    path = tmp_path / "c.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        AdaptiveMoEConfig.from_yaml(path)


def test_missing_config_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        AdaptiveMoEConfig.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ModelNotFoundError):
        AdaptiveMoEConfig.from_yaml(tmp_path / "nope.yaml")


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert AdaptiveMoEConfig.from_yaml(path) == AdaptiveMoEConfig()


@pytest.mark.parametrize("name", ["default.yaml", "qlora-4bit.yaml", "tiny-test.yaml"])
def test_shipped_configs_load_and_round_trip(name, tmp_path):
    cfg = AdaptiveMoEConfig.from_yaml(CONFIGS / name)
    cfg.to_yaml(tmp_path / name)
    assert AdaptiveMoEConfig.from_yaml(tmp_path / name) == cfg
    assert cfg != AdaptiveMoEConfig() or name == "default.yaml"


def test_tiny_test_config_is_small():
    cfg = AdaptiveMoEConfig.from_yaml(CONFIGS / "tiny-test.yaml")
    assert (cfg.model.device, cfg.generation.max_new_tokens, cfg.creation.lora.r) == ("cpu", 8, 4)


def test_wrongly_typed_values_are_reported_not_crashed():
    with pytest.raises(ConfigError) as info:
        AdaptiveMoEConfig.from_dict(
            {"model": {"name_or_path": 5, "device": None}, "workspace": 3, "generation": {"stop": 5}}
        )
    joined = "\n".join(info.value.problems)
    assert "model.name_or_path: 5 has type int; expected str" in joined
    assert "model.device: None has type NoneType; expected str" in joined
    assert "workspace: 3 has type int; expected str" in joined
    assert "generation.stop: 5 has type int; expected a list of str" in joined


def test_yaml_exponent_without_dot_gets_a_hint(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("creation:\n  lora:\n    learning_rate: 1e-3\n")
    with pytest.raises(ConfigError, match=r"write it with a dot, e\.g\. 1\.0e-3"):
        AdaptiveMoEConfig.from_yaml(path)


def test_config_path_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        AdaptiveMoEConfig.from_yaml(tmp_path)


def test_shipped_default_equals_built_in_defaults():
    assert AdaptiveMoEConfig.from_yaml(CONFIGS / "default.yaml") == AdaptiveMoEConfig()


def test_qlora_config_is_4bit():
    assert AdaptiveMoEConfig.from_yaml(CONFIGS / "qlora-4bit.yaml").model.precision == "nf4"


def test_replace_rejects_bad_paths_and_values():
    with pytest.raises(ConfigError, match="not a section"):
        AdaptiveMoEConfig().replace(**{"workspace.x": 1})
    with pytest.raises(ConfigError, match="did you mean 'capacity'"):
        AdaptiveMoEConfig().replace(**{"pool.capacty": 3})


def test_every_field_has_help():
    rows = config_help()
    assert len(rows) > 40
    missing = [key for key, _default, help_ in rows if not help_]
    assert missing == []
