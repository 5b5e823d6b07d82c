"""Name-to-class registries, for the places where users pass strings.

A :class:`Registry` is a dict ``name -> class`` built from the classes themselves (each
class carries its ``name``), so a name and its class cannot drift apart. One ``get``
serves every kind (activations, losses, optimizers, schedules, solvers): a name builds an
instance with the given settings, an instance is returned as it is, and every mistake is
an error that names the argument and lists the valid names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

C = TypeVar("C")


class Registry(dict[str, type[C]], Generic[C]):
    """``name -> class`` for the subclasses of ``base``.

    Parameters
    ----------
    kind : str
        What the registry holds, as it reads in an error ("activation", "loss", ...).
    base : type
        The class every entry derives from.
    classes : iterable of type
        The entries, each registered under its ``name`` attribute.
    """

    def __init__(self, kind: str, base: Any, classes: Iterable[type[C]] = ()) -> None:
        # base: type[C], typed Any because an abstract base is not a concrete type[C]
        super().__init__()
        self.kind = kind
        self.base: type = base
        for cls in classes:
            self.register(cls)

    def register(self, cls: type[C], name: str | None = None) -> type[C]:
        """Add ``cls`` under ``name`` (default ``cls.name``); usable as a decorator.

        A name taken by another class is refused; registering the same class again is a
        no-op.
        """
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(
                f"cls must be a subclass of jacnet.{self.base.__name__}, got {cls!r}"
            )
        key = getattr(cls, "name", None) if name is None else name
        if not key or not isinstance(key, str):
            raise ValueError(f"{cls.__name__}.name must be a non-empty string to register it")
        existing = self.get_class(key)
        if existing is not None and existing is not cls:
            raise ValueError(f"{self.kind} name {key!r} is already taken by {existing.__name__}")
        self[key] = cls
        return cls

    def get_class(self, name: str) -> type[C] | None:
        """The class registered as ``name``, or None."""
        return dict.get(self, name)

    def names(self) -> str:
        """The valid names, sorted and comma-separated (for error messages and help)."""
        return ", ".join(sorted(self))

    def create(self, spec: str | C, /, **config: Any) -> C:
        """An instance from a registered name (built with ``config``) or an instance.

        An instance is returned as it is; giving settings with it is an error (they would
        be silently ignored), as is passing the class instead of an instance.
        """
        if isinstance(spec, self.base):
            if config:
                raise TypeError(
                    f"{self.kind} settings {sorted(config)} given with an instance; "
                    f"pass a name or configure the instance"
                )
            return spec  # type: ignore[return-value]  # an instance of base is a C
        if isinstance(spec, type) and issubclass(spec, self.base):
            raise TypeError(
                f"{self.kind} must be a name or a {self.base.__name__} instance, got the "
                f"class {spec.__name__}; did you mean {spec.__name__}()?"
            )
        if not isinstance(spec, str):
            raise TypeError(
                f"{self.kind} must be a str or a jacnet {self.base.__name__} instance, got "
                f"{type(spec).__name__}"
            )
        cls = self.get_class(spec)
        if cls is None:
            raise ValueError(f"unknown {self.kind} {spec!r}; valid names: {self.names()}")
        return cls(**config)
