"""Typed configuration files: YAML + dotted ``key=value`` overrides, validated by pydantic.

Every stage (train, distill, calibrate, edge) has one model class derived from :class:`StrictModel` and one
YAML file per variant in ``configs/<stage>/``. Unknown keys and bad values are errors that name the key, the
value and what was expected, with a "did you mean" suggestion.
"""
from __future__ import annotations

import argparse
import difflib
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are rejected, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ConfigError(ValueError):
    """A configuration problem, phrased for the user."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML (numbers, lists, null...)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form key=value")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        if node.get(part) is None:  # an absent or null section (e.g. `tls: null`) is created by its first key
            node[part] = {}
        child = node[part]
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        node[parts[-1]] = raw


def _fields_at(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the section at ``loc`` (for suggestions)."""
    cls: Any = model_cls
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = _section_class(field.annotation)
    return list(getattr(cls, "model_fields", {}))


def _section_class(annotation: Any) -> Any:
    """The model class inside ``Section | None`` (or the annotation itself)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _flat_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, dict):
            keys += _flat_keys(value, f"{prefix}{key}.")
    return keys


def origin_of(origins: dict[str, str], loc: tuple[Any, ...], default: str) -> str:
    """Where the value at ``loc`` came from: the longest recorded prefix of the dotted key, else ``default``."""
    parts = [str(p) for p in loc]
    for n in range(len(parts), 0, -1):
        found = origins.get(".".join(parts[:n]))
        if found is not None:
            return found
    return default


def describe_error(item: Any, model_cls: type[BaseModel]) -> str:
    """One pydantic error item as ``unknown key 'a.b'; did you mean 'a.c'?`` or ``a.b = 'x': <why>``."""
    loc = tuple(item["loc"])
    key = ".".join(str(p) for p in loc)
    if item["type"] == "extra_forbidden":
        known = _fields_at(model_cls, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?" if close else ""
        return f"unknown key {key!r}{hint} (known: {', '.join(known)})"
    return f"{key} = {item.get('input')!r}: {item['msg']}"


def format_validation_error(err: ValidationError, model_cls: type[BaseModel], source: str,
                            origins: dict[str, str] | None = None) -> str:
    """One line: where the first bad key came from (file or ``--set key=value``), the key and what was wrong."""
    items = err.errors()
    first = items[0]
    where = origin_of(origins or {}, tuple(first["loc"]), source)
    more = f" (and {len(items) - 1} more problem{'s' if len(items) > 2 else ''})" if len(items) > 1 else ""
    return f"{where}: {describe_error(first, model_cls)}{more}"


Override = str | tuple[str, str]


def load_config(model_cls: type[M], path: str | Path | None = None, overrides: Sequence[Override] = ()) -> M:
    """Read ``path`` (optional), apply ``overrides`` and validate into ``model_cls``.

    An override is ``"key=value"`` (its origin is ``--set key=value``) or ``("key=value", origin)`` for one that
    came from elsewhere (a flag). A ConfigError is one line naming the key and where its value came from.
    """
    data = read_yaml(path) if path is not None else {}
    origins = {key: str(path) for key in _flat_keys(data)}
    for override in overrides:
        text, origin = (override, f"--set {override}") if isinstance(override, str) else override
        try:
            apply_override(data, text)
        except ConfigError as err:
            raise ConfigError(f"{origin}: {err}") from None
        key = text.partition("=")[0].strip()
        origins = {k: v for k, v in origins.items() if k != key and not k.startswith(key + ".")}
        origins[key] = origin
    source = str(path) if path is not None else "defaults"
    try:
        return model_cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model_cls, source, origins)) from None


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write the resolved config (what a run actually used) beside its artifacts."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def config_keys(model_cls: type[BaseModel], prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) of every leaf key of a config model, sections expanded."""
    rows = []
    for name, field in model_cls.model_fields.items():
        section = _section_class(field.annotation)
        if isinstance(section, type) and issubclass(section, BaseModel):
            rows += config_keys(section, f"{prefix}{name}.")
            continue
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        rows.append((f"{prefix}{name}", "(required)" if field.is_required() else default, field.description or ""))
    return rows


def keys_help(model_cls: type[BaseModel], width: int = 110) -> str:
    """The config's keys with defaults and descriptions, for ``--help`` (override any with ``--set key=value``)."""
    lines = [f"config keys (--set KEY=VALUE; defaults of {model_cls.__name__}):"]
    for key, default, description in config_keys(model_cls):
        value = default if isinstance(default, str) and default == "(required)" else json.dumps(
            default.as_posix() if isinstance(default, Path) else default, default=str)
        lines.append(f"  {key} = {value}")
        if description:
            lines += textwrap.wrap(description, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def add_config_arguments(parser: argparse.ArgumentParser, model_cls: type[BaseModel],
                         default: Path | None = None) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE``; the config's keys go to the help's epilog."""
    parser.add_argument("--config", type=Path, default=default if default is not None and default.is_file() else None,
                        help="YAML config file" + (f" (default: {_short(default)})" if default is not None else ""))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key (repeatable), e.g. --set "
                             f"{config_keys(model_cls)[0][0]}=...; the keys are listed below")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (parser.epilog + "\n\n" if parser.epilog else "") + keys_help(model_cls)


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
