from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from argus.cluster.serve_app import EngineMode
from argus.config import ENV_OVERRIDES, ConfigError, Settings, load_settings

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_local_setup() -> None:
    s = load_settings(environ={})
    assert s.serving.engine is EngineMode.CPU
    assert s.server.port == 8080
    assert s.serving.serve.http_port == 8000
    assert s.serving.serve.proxy_location == "HeadOnly"
    assert s.ray.address is None
    assert s.database_url == f"sqlite:///{s.data_path / 'argus.db'}"
    assert s.storage_root == s.data_path / "storage"


def test_local_yaml_matches_the_defaults() -> None:
    from_file = load_settings(REPO / "configs" / "local.yaml", environ={})
    assert from_file == load_settings(environ={})


def test_dev_yaml_describes_the_gpu_cluster() -> None:
    s = load_settings(REPO / "configs" / "dev.yaml", environ={})
    assert s.serving.engine is EngineMode.GPU
    assert s.serving.llm.accelerator_type == "H20"
    assert s.serving.serve.http_port == 8000
    assert s.serving.serve.proxy_location == "EveryNode"  # a proxy beside every replica
    assert s.storage_root == Path("/private")
    assert s.ray.address


def test_argus_config_picks_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server:\n  port: 9999\n")
    assert load_settings(environ={"ARGUS_CONFIG": str(f)}).server.port == 9999


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server:\n  port: 9999\n")
    env = {"ARGUS_CONFIG": str(f), "ARGUS_PORT": "7000", "ARGUS_DATA_DIR": str(tmp_path / "d")}
    s = load_settings(environ=env)
    assert s.server.port == 7000
    assert s.data_path == tmp_path / "d"


def test_admin_token_comes_from_the_environment() -> None:
    assert load_settings(environ={"ARGUS_ADMIN_TOKEN": "x" * 40}).admin_token == "x" * 40


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ARGUS_PORT": "eighty"}, "server.port (from ARGUS_PORT)"),
        ({"ARGUS_PORT": "70000"}, "server.port (from ARGUS_PORT)"),
        ({"ARGUS_ENGINE": "tpu"}, "serving.engine (from ARGUS_ENGINE)"),
        ({"ARGUS_ENGINE": "gpu"}, "accelerator_type must be set"),
        ({"ARGUS_CONFIG": "/nonexistent/argus.yaml"}, "does not exist"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(environ=env)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("server:\n  prot: 1\n", "server.prot: unknown setting"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("server: [\n", "not valid YAML"),
        ("admin_token: abc\n", "must not be kept in a config file"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(f, environ={})
    assert needle in str(e.value)


def test_every_override_resolves_to_a_real_setting() -> None:
    for key in ENV_OVERRIDES.values():
        node: object = Settings()
        for part in key.split("."):
            assert hasattr(node, part), key
            node = getattr(node, part)


def test_readme_documents_every_environment_variable() -> None:
    readme = (REPO / "README.md").read_text()
    table = set(re.findall(r"^\| `(ARGUS_[A-Z_]+)`", readme, re.M))
    assert table == {*ENV_OVERRIDES, "ARGUS_CONFIG", "ARGUS_ADMIN_TOKEN"}


def test_local_yaml_is_valid_yaml_with_only_known_keys() -> None:
    data = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())
    Settings.model_validate(data)
