"""Typed configuration files: YAML + dotted ``key=value`` overrides, validated by pydantic.

Every stage (train, distill, calibrate, edge) has one model class derived from :class:`StrictModel` and one
YAML file per variant in ``configs/<stage>/``. Unknown keys and bad values are errors that name the key, the
value and what was expected, with a "did you mean" suggestion.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
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
    """Where the value at ``loc`` came from (``origins``: dotted key -> origin, in the order they were set)."""
    key = ".".join(str(p) for p in loc)
    if not key:
        return default
    # the key itself, a section above it or a value inside it (a section's own check): the latest one set
    related = [origin for k, origin in origins.items()
               if k == key or key.startswith(k + ".") or k.startswith(key + ".")]
    return related[-1] if related else default


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
    if first["type"] == "extra_forbidden" and "=" in where:  # the value of an unknown key (maybe a password)
        where = where.partition("=")[0] + "=..."  # is not needed to say what is wrong: never shown
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


def config_keys(model_cls: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None
                ) -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) of every leaf key of a config model, sections expanded; a section's
    defaults are those of its default instance (``model: X = X(a=1)`` shows ``model.a = 1``)."""
    rows = []
    for name, field in model_cls.model_fields.items():
        if defaults is not None:
            default = getattr(defaults, name)
        else:
            default = None if field.is_required() else field.get_default(call_default_factory=True)
        section = _section_class(field.annotation)
        if isinstance(section, type) and issubclass(section, BaseModel):
            rows += config_keys(section, f"{prefix}{name}.", default if isinstance(default, section) else None)
            continue
        description = field.description or _comments(model_cls).get(name, "")
        rows.append((f"{prefix}{name}", "(required)" if field.is_required() and defaults is None else default,
                     description))
    return rows


@functools.cache
def _comments(model_cls: type[BaseModel]) -> dict[str, str]:
    """Field descriptions written as ``name: type = default  # comment`` (and comment lines right below)."""
    try:
        lines = inspect.getsource(model_cls).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    last = None
    for line in lines[1:]:
        field = re.match(r"\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$", line)
        if field and field.group(1) in model_cls.model_fields:
            last = field.group(1)
            if field.group(2):
                found[last] = field.group(2).strip()
        elif last in found and re.match(r"\s+#", line):
            found[last] += " " + line.strip().lstrip("#").strip()
        else:
            last = None
    return found


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


def config_from_args(model_cls: type[M], args: argparse.Namespace, flags: dict[str, str] | None = None) -> M:
    """The config of ``--config`` and ``--set`` (see :func:`add_config_arguments`), then the step's flags:
    ``flags`` maps a config key to the flag that sets it (``{"data.dir": "--data"}``), applied when given."""
    extra: list[Override] = []
    for key, flag in (flags or {}).items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            text = json.dumps(str(value) if isinstance(value, Path) else value)  # JSON is YAML: strings stay strings
            extra.append((f"{key}={text}", f"{flag} {value}"))
    return load_config(model_cls, args.config, [*args.overrides, *extra])


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


USER_ERRORS = (ConfigError, FileNotFoundError, NotADirectoryError)
EXIT_USAGE = 2


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
             prog: str | None = None) -> int:
    """Run a command's ``main(argv)``: a user error (bad key or value, missing file) is one line on stderr naming
    it, and exit code 2; anything else propagates. Both ``cplvad <step>`` and ``python -m <module>`` go through here.
    """
    try:
        code = main(argv)
    except USER_ERRORS as err:
        sys.stderr.write(f"{prog or Path(sys.argv[0]).name}: error: {_one_line(err)}\n")
        return EXIT_USAGE
    return 0 if code is None else int(code)


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split("\n"))
