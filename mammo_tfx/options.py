"""One rule for building an option dataclass from a mapping and for overriding one with a mapping.

Option dataclasses (ingestion, patch sampling, Transform, training hyperparameters, serving limits, the pipeline
configuration) travel as JSON and are changed by YAML files and `--set` overrides. All of them read a mapping the
same way: missing keys keep their values (the defaults when building), an unknown key is an error that names the
dotted key and the known keys (a typo must not silently leave a default in place), nested dataclasses take nested
mappings, tuples of dataclasses take lists of mappings, and each value is checked against its field's type.
A field marked secret (`secret_field`) lives only in memory: it is never written to JSON nor set from a mapping.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import typing
from typing import Any, Mapping, Optional, Type, TypeVar

_T = TypeVar("_T")

# Field metadata key of a secret field; its value says where the secret comes from instead.
_SECRET = "secret_from"


def secret_field(default: Any, comes_from: str) -> Any:
    """A dataclass field holding a secret: left out of `to_dict()` and of reprs, refused as a mapping key (the
    error says `comes_from`, where the secret is read instead)."""
    return dataclasses.field(default=default, repr=False, metadata={_SECRET: comes_from})


def is_secret_field(field: dataclasses.Field) -> bool:
    return _SECRET in field.metadata


class UnknownKeyError(KeyError, ValueError):
    """A key a mapping sets that its dataclass does not have (a KeyError for lookups, a ValueError for values)."""

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError would quote the message


def check_known_keys(owner: str, values: Any, known: typing.Iterable[str], path: str = "") -> None:
    """Raises unless `values` is a mapping whose keys are all in `known` (the keys are reported as `path` + key)."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{path.rstrip('.') or owner}: expected a mapping of {owner} keys, got {values!r}")
    unknown = sorted(f"{path}{key}" for key in set(values) - set(known))
    if unknown:
        raise UnknownKeyError(f"Unknown {owner} keys {unknown}; expected a subset of {sorted(known)}")


def from_mapping(cls: Type[_T], values: Mapping[str, Any], path: str = "") -> _T:
    """An instance of `cls` with the values of `values`, the defaults elsewhere."""
    return _apply(cls, None, values, path, {})


def override(instance: _T, changes: Mapping[str, Any], fixed_keys: Optional[Mapping[str, str]] = None) -> _T:
    """A copy of `instance` with `changes` applied; a nested mapping changes only the keys it names.

    `fixed_keys` maps dotted keys that must not be set to what sets them instead (e.g. keys derived from others)."""
    return _apply(type(instance), instance, changes, "", fixed_keys or {})


class Options:
    """Base of the option dataclasses: JSON-ready `to_dict()` and its inverse `from_dict()` (the rule above)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: nested options as dicts, tuples as lists, enums as their values."""
        return _json_value(self)

    @classmethod
    def from_dict(cls: Type[_T], values: Mapping[str, Any]) -> _T:
        """Missing keys take their defaults; unknown keys and values of the wrong type are errors."""
        return from_mapping(cls, values)


def _json_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {field.name: _json_value(getattr(value, field.name)) for field in dataclasses.fields(value)
                if not is_secret_field(field)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls) if field.init}


def _apply(cls: type, instance: Any, changes: Mapping[str, Any], path: str, fixed_keys: Mapping[str, str]) -> Any:
    types = _field_types(cls)
    secrets = {field.name: field.metadata[_SECRET] for field in dataclasses.fields(cls) if is_secret_field(field)}
    for key in secrets.keys() & set(changes if isinstance(changes, Mapping) else ()):
        raise UnknownKeyError(f"{path}{key} is a secret and is never part of a configuration: {secrets[key]}")
    check_known_keys(cls.__name__, changes, types, path)
    updates = {}
    for key, value in changes.items():
        dotted = f"{path}{key}"
        if dotted in fixed_keys:
            raise UnknownKeyError(f"configuration key {dotted!r} follows {fixed_keys[dotted]}; set that instead")
        current = getattr(instance, key) if instance is not None else None
        updates[key] = _convert(value, types[key], current, dotted, fixed_keys)
    if instance is not None:
        return dataclasses.replace(instance, **updates)
    missing = [f"{path}{field.name}" for field in dataclasses.fields(cls) if field.init and field.name not in changes
               and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{cls.__name__} needs the keys {missing}")
    return cls(**updates)


def _convert(value: Any, annotation: Any, current: Any, path: str, fixed_keys: Mapping[str, str]) -> Any:
    """`value` as the type `annotation` says (the field's current value is merged into by a nested mapping)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        (annotation,) = [arg for arg in args if arg is not type(None)]
        return _convert(value, annotation, current, path, fixed_keys)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        return _apply(annotation, current, value, path + ".", fixed_keys)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            raise ValueError(f"{path}: expected one of {[e.value for e in annotation]}, got {value!r}") from None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            item_types = [args[0]] * len(value)
        else:
            if len(value) != len(args):
                raise ValueError(f"{path}: expected a list of {len(args)} values, got {value!r}")
            item_types = list(args)
        # Items are built afresh: a list replaces the whole tuple (e.g. a training schedule).
        return tuple(_convert(item, item_type, None, f"{path}[{index}]", fixed_keys)
                     for index, (item, item_type) in enumerate(zip(value, item_types)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected a mapping, got {value!r}")
        key_type, item_type = args
        return {_convert(key, key_type, None, path, fixed_keys): _convert(item, item_type, None, f"{path}.{key}",
                                                                          fixed_keys)
                for key, item in value.items()}
    return _scalar(value, annotation, path)


def _scalar(value: Any, annotation: Any, path: str) -> Any:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{path}: expected true/false, got {value!r}")
    if annotation is int:
        if is_number and isinstance(value, int):
            return value
        raise ValueError(f"{path}: expected an integer, got {value!r}")
    if annotation is float:
        if is_number:
            return float(value)
        raise ValueError(f"{path}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str) or is_number:
            return str(value)
        raise ValueError(f"{path}: expected a string, got {value!r}")
    raise ValueError(f"{path}: cannot set a value of type {annotation}")
