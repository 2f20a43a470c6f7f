from pathlib import Path

import pytest

from edge.configfile import ConfigError, StrictModel, dump_config, load_config


class Optim(StrictModel):
    lr: float = 1e-4
    epochs: int = 10


class Train(StrictModel):
    name: str = "run"
    optim: Optim = Optim()
    levels: list[int] = [1, 2]


def test_yaml_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: a\noptim:\n  lr: 0.001\n")
    cfg = load_config(Train, path, ["optim.epochs=3", "levels=[4, 5]"])
    assert cfg.name == "a" and cfg.optim.lr == 0.001 and cfg.optim.epochs == 3 and cfg.levels == [4, 5]


def test_unknown_key_suggests(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'optim.epoch'; did you mean 'optim.epochs'"):
        load_config(Train, None, ["optim.epoch=3"])


def test_bad_value_names_key() -> None:
    with pytest.raises(ConfigError, match=r"optim.lr = 'fast'"):
        load_config(Train, None, ["optim.lr=fast"])


def test_bad_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(Train, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Train, tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Train, None, ["epochs"])


def test_dump_round_trip(tmp_path) -> None:
    cfg = load_config(Train, None, ["optim.lr=0.5"])
    dump_config(cfg, tmp_path / "out.yaml")
    assert load_config(Train, tmp_path / "out.yaml") == cfg


class Tls(StrictModel):
    ca_certs: str


class Mqtt(StrictModel):
    tls: Tls | None = None


def test_override_creates_a_null_section(tmp_path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("tls: null\n")
    assert load_config(Mqtt, path, ["tls.ca_certs=/etc/ca.pem"]).tls == Tls(ca_certs="/etc/ca.pem")
    (tmp_path / "t.yaml").write_text("name: a\n")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(Train, tmp_path / "t.yaml", ["name.first=a"])


def test_errors_are_one_line_naming_the_key_and_its_origin(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("optim:\n  lr: slow\n")
    with pytest.raises(ConfigError) as err:
        load_config(Train, path)
    assert str(err.value).startswith(f"{path}: optim.lr = 'slow'") and "\n" not in str(err.value)
    with pytest.raises(ConfigError) as err:  # the override replaces the file's value, and is blamed
        load_config(Train, path, ["optim.lr=abc"])
    assert str(err.value).startswith("--set optim.lr=abc: optim.lr = 'abc'")
    with pytest.raises(ConfigError) as err:
        load_config(Train, path, [("optim.lr=0.1", "--lr 0.1"), "optim.epoch=3"])
    assert str(err.value).startswith("--set optim.epoch=...: unknown key 'optim.epoch'; did you mean 'optim.epochs'")


def test_keys_help_lists_every_key_with_its_default() -> None:
    from edge.configfile import config_keys, keys_help

    assert [k for k, _, _ in config_keys(Train)] == [f for f in _leaf_keys(Train)]
    text = keys_help(Train)
    assert "optim.lr = " in text and "optim.epochs = " in text


def _leaf_keys(model: type, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, StrictModel):
            keys += _leaf_keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys
