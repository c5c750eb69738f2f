"""The one name-table type behind every register_* helper."""

from __future__ import annotations

import abc

import pytest

from adaptive_moe.errors import ConfigError, InvalidInputError, UnknownNameError
from adaptive_moe.utils.registry import RegistrationError, Registry


class Base(abc.ABC):
    name = ""

    @abc.abstractmethod
    def run(self): ...


class One(Base):
    name = "one"

    def run(self):
        return 1


def test_register_get_names_and_contains():
    table = Registry("widget", Base)
    assert table.register(One) is One  # usable as a decorator
    assert table.get("one") is One and "one" in table and table.names() == ["one"] and len(table) == 1
    assert list(table) == ["one"]


def test_one_error_type_that_is_both_config_and_input_error():
    table = Registry("widget", Base)
    with pytest.raises(RegistrationError) as info:
        table.register(dict)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, InvalidInputError)
    assert isinstance(info.value, ValueError) and "Base subclass" in str(info.value)


@pytest.mark.parametrize("name", ["", "One", "1st", "a-b", "two words", "_x", None, 3])
def test_names_are_short_lowercase_identifiers(name):
    table = Registry("widget", Base)
    with pytest.raises(RegistrationError, match="lowercase identifier"):
        table.register(One, name)
    assert len(table) == 0


def test_a_taken_name_needs_overwrite_but_the_same_class_or_a_redefinition_is_fine():
    table = Registry("widget", Base)
    table.register(One)
    table.register(One)  # the same class again

    class Other(Base):
        name = "one"

        def run(self):
            return 2

    with pytest.raises(RegistrationError, match="already registered"):
        table.register(Other)
    assert table.get("one") is One
    table.register(Other, overwrite=True)
    assert table.get("one") is Other

    def redefine():  # a re-run notebook cell: same module and qualified name, a new class object
        class One(Base):
            name = "one"

            def run(self):
                return 3

        return One

    fresh = Registry("widget", Base)
    first, second = redefine(), redefine()
    fresh.register(first)
    fresh.register(second)
    assert fresh.get("one") is second


def test_abstract_classes_are_refused_with_what_to_implement():
    class Half(Base):
        name = "half"

    with pytest.raises(RegistrationError, match="abstract; implement run"):
        Registry("widget", Base).register(Half)


def test_unknown_names_list_the_known_ones():
    table = Registry("widget", Base)
    table.register(One)
    with pytest.raises(UnknownNameError, match="one") as info:
        table.get("two")
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError):
        table.get(["unhashable"])


def test_factory_tables_take_callables_under_explicit_names():
    table = Registry("maker")
    table.register(lambda: 1, "lam")
    assert table.get("lam")() == 1
    with pytest.raises(RegistrationError, match="callable"):
        table.register("not callable", "x")


def test_copy_and_unregister_leave_the_original_alone():
    table = Registry("widget", Base)
    table.register(One)
    twin = table.copy()
    twin.unregister("one")
    assert "one" in table and "one" not in twin
    with pytest.raises(UnknownNameError):
        twin.unregister("one")


def test_every_library_table_is_a_registry():
    from adaptive_moe.evaluation import scoring
    from adaptive_moe.experts.expert import EXPERT_KINDS
    from adaptive_moe.integration.base import INTEGRATORS
    from adaptive_moe.model.encoders import EMBEDDERS
    from adaptive_moe.routing.base import ROUTERS
    from adaptive_moe.routing.matching import MATCHERS
    from adaptive_moe.uncertainty import calibration
    from adaptive_moe.uncertainty.base import ESTIMATORS

    tables = [EXPERT_KINDS, INTEGRATORS, EMBEDDERS, ROUTERS, MATCHERS, ESTIMATORS, calibration._CALIBRATORS,
              scoring._SCORERS]  # fmt: skip
    assert all(isinstance(t, Registry) for t in tables)
    assert {"lora", "retrieval"} <= set(EXPERT_KINDS) and {"select", "mixture", "merge"} <= set(INTEGRATORS)
