"""Typed configuration files: YAML + dotted ``key=value`` overrides, validated by pydantic.

Every stage (train, distill, calibrate, edge) has one model class derived from :class:`StrictModel` and one
YAML file per variant in ``configs/<stage>/``. Unknown keys and bad values are errors that name the key, the
value and what was expected, with a "did you mean" suggestion.
"""
from __future__ import annotations

import difflib
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
        cls = field.annotation
    return list(getattr(cls, "model_fields", {}))


def format_validation_error(err: ValidationError, model_cls: type[BaseModel], source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in err.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            known = _fields_at(model_cls, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?" if close else ""
            lines.append(f"  unknown key {key!r}{hint} (known: {', '.join(known)})")
        else:
            value = item.get("input")
            lines.append(f"  {key} = {value!r}: {item['msg']}")
    return "\n".join(lines)


def load_config(model_cls: type[M], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> M:
    """Read ``path`` (optional), apply ``overrides`` and validate into ``model_cls``."""
    data = read_yaml(path) if path is not None else {}
    for override in overrides:
        apply_override(data, override)
    source = str(path) if path is not None else "config"
    try:
        return model_cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model_cls, source)) from None


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write the resolved config (what a run actually used) beside its artifacts."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
