"""jacnet.registry: name -> class, built from the classes, with one ``create`` for every kind.

The behaviour is tested on a registry of a small class family made here; then every
registry of the package is checked for names that agree with their classes.
"""

from __future__ import annotations

import re

import pytest

import jacnet as jn
from jacnet.registry import Registry


class Shape:
    name = ""

    def __init__(self, size: float = 1.0) -> None:
        self.size = size


class Square(Shape):
    name = "square"


class Circle(Shape):
    name = "circle"


@pytest.fixture
def shapes() -> Registry:
    return Registry("shape", Shape, [Square, Circle])


# ------------------------------------------------------------------------- register
def test_registry_is_built_from_the_classes_names(shapes):
    assert dict(shapes) == {"square": Square, "circle": Circle}
    assert shapes.kind == "shape" and shapes.base is Shape
    assert shapes.names() == "circle, square"  # sorted, for errors and help


def test_registry_register_is_a_decorator_and_takes_an_explicit_name(shapes):
    @shapes.register
    class Star(Shape):
        name = "star"

    assert shapes["star"] is Star
    assert shapes.register(Square, "box") is Square  # an alias
    assert shapes["box"] is Square and shapes["square"] is Square


@pytest.mark.parametrize("cls", [int, "square", Square(), object])
def test_registry_register_refuses_a_non_subclass(shapes, cls):
    with pytest.raises(TypeError, match="cls must be a subclass of jacnet.Shape, got"):
        shapes.register(cls)
    assert sorted(shapes) == ["circle", "square"]


def test_registry_register_refuses_a_nameless_class(shapes):
    class Nameless(Shape):
        pass

    class NumberName(Shape):
        name = 3  # type: ignore[assignment]

    for cls in (Nameless, NumberName):
        with pytest.raises(ValueError, match=f"{cls.__name__}.name must be a non-empty string"):
            shapes.register(cls)
    with pytest.raises(ValueError, match="Square.name must be a non-empty string"):
        shapes.register(Square, "")
    assert sorted(shapes) == ["circle", "square"]


def test_registry_register_refuses_a_taken_name(shapes):
    class OtherSquare(Shape):
        name = "square"

    with pytest.raises(ValueError, match="shape name 'square' is already taken by Square"):
        shapes.register(OtherSquare)
    with pytest.raises(ValueError, match="shape name 'circle' is already taken by Circle"):
        shapes.register(Square, "circle")
    assert shapes["square"] is Square and shapes["circle"] is Circle


def test_registry_registering_the_same_class_again_is_a_no_op(shapes):
    before = dict(shapes)
    assert shapes.register(Square) is Square
    assert shapes.register(Circle, "circle") is Circle
    assert dict(shapes) == before


def test_registry_get_class(shapes):
    assert shapes.get_class("circle") is Circle
    assert shapes.get_class("hexagon") is None


# --------------------------------------------------------------------------- create
def test_registry_create_builds_a_name_with_its_settings(shapes):
    made = shapes.create("square", size=3.0)
    assert type(made) is Square and made.size == 3.0
    assert shapes.create("circle").size == 1.0
    other = shapes.create("circle")
    assert other is not shapes.create("circle")  # a new instance each time


def test_registry_create_returns_an_instance_as_it_is(shapes):
    sq = Square(2.0)
    assert shapes.create(sq) is sq


def test_registry_create_refuses_settings_with_an_instance(shapes):
    with pytest.raises(TypeError, match=r"shape settings \['size'\] given with an instance"):
        shapes.create(Square(), size=2.0)


def test_registry_create_refuses_the_class_suggesting_an_instance(shapes):
    with pytest.raises(TypeError, match=r"got the class Square; did you mean Square\(\)\?"):
        shapes.create(Square)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [3, None, 2.5, ["square"], object()])
def test_registry_create_refuses_other_types(shapes, spec):
    with pytest.raises(TypeError, match="shape must be a str or a jacnet Shape instance, got"):
        shapes.create(spec)


def test_registry_create_unknown_name_lists_the_valid_names(shapes):
    with pytest.raises(ValueError, match="unknown shape 'hexagon'; valid names: circle, square$"):
        shapes.create("hexagon")
    with pytest.raises(ValueError, match="unknown shape 'Square'"):  # names are exact
        shapes.create("Square")


def test_registry_create_passes_constructor_errors_through(shapes):
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        shapes.create("square", colour="red")


# ------------------------------------------------------------ the package's registries
#: every public registry of the package (the upper-case names of jacnet that are one)
REGISTRIES = {name: getattr(jn, name) for name in jn.__all__
              if name.isupper() and isinstance(getattr(jn, name), Registry)}
#: names registered for another class's name on purpose: registry -> {alias: name}
ALIASES = {"ACTIVATIONS": {"logistic": "sigmoid"}}


def test_registries_include_every_kind_users_name():
    assert {"ACTIVATIONS", "LOSSES", "OPTIMIZERS", "SCHEDULES"} <= set(REGISTRIES)


@pytest.mark.parametrize("registry", sorted(REGISTRIES))
def test_registry_names_map_to_classes_of_that_name(registry):
    reg = REGISTRIES[registry]
    assert isinstance(reg, Registry) and len(reg) > 0
    aliases = ALIASES.get(registry, {})
    own = {k: c for k, c in reg.items() if c.__module__.startswith("jacnet.")}
    assert len(own) >= 3
    for key, cls in own.items():
        assert issubclass(cls, reg.base)
        if key in aliases:
            assert reg[aliases[key]] is cls, f"{registry}: alias {key!r}"
        else:
            assert cls.name == key, f"{registry}[{key!r}] is {cls.__name__} named {cls.name!r}"
    for alias in aliases:
        assert alias in reg, f"{registry}: the declared alias {alias!r} is gone"


@pytest.mark.parametrize("registry", sorted(REGISTRIES))
def test_registry_unknown_name_error_of_every_registry(registry):
    reg = REGISTRIES[registry]
    with pytest.raises(ValueError, match=re.escape(f"unknown {reg.kind} 'no_such_name'; "
                                                   f"valid names: {reg.names()}")):
        reg.create("no_such_name")
