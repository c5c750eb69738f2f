import pytest

from adaptive_moe import AdaptiveMoEError
from adaptive_moe.errors import (
    ConfigError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
    UnknownNameError,
    UnsupportedPrecisionError,
    missing_dependency,
)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ConfigError, ValueError),
        (InvalidInputError, ValueError),
        (UnsupportedPrecisionError, ValueError),
        (UnknownNameError, KeyError),
        (ModelNotFoundError, FileNotFoundError),
        (MissingDependencyError, ImportError),
    ],
)
def test_every_error_is_both_root_and_builtin(cls, builtin):
    assert issubclass(cls, AdaptiveMoEError)
    assert issubclass(cls, builtin)


def test_unknown_name_lists_registered_names_unquoted():
    err = UnknownNameError("estimator", "entropyy", ["mean_logprob", "entropy"])
    assert str(err) == "unknown estimator 'entropyy'; registered: 'entropy', 'mean_logprob'"
    with pytest.raises(KeyError):
        raise err


def test_config_error_lists_every_problem():
    err = ConfigError("invalid:", ["a: bad", "b: worse"])
    assert err.problems == ["a: bad", "b: worse"]
    assert str(err).splitlines() == ["invalid:", "  - a: bad", "  - b: worse"]


def test_missing_dependency_names_install_command():
    err = missing_dependency("bitsandbytes", extra="quant", purpose="nf4")
    assert isinstance(err, ImportError)
    assert "pip install 'adaptive-moe[quant]'" in str(err)
    assert "for nf4" in str(err)
