"""Finding plugins (`common.plugin_catalogue.discover`): the shipped ones, a folder and an entry point; a broken
plugin is listed with its error and the others are kept."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from common.plugin_catalogue import discover, validate_config
from tests.support.plugin_harness import write_plugins


def test_discovery_reports_broken_plugins_and_keeps_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = write_plugins(tmp_path / "plugins", ["echo"])
    (directory / "broken.py").write_text("import no_such_module_here\n\ndef setup(client, context): pass\n")
    (directory / "badschema.py").write_text(
        'CONFIG_SCHEMA = {"type": "nonsense"}\n\ndef setup(client, context): pass\n'
    )
    (directory / "nosetup.py").write_text("DESCRIPTION = 'no entry'\n")
    (directory / "_helper.py").write_text("raise RuntimeError('helpers are not plugins')\n")
    package = directory / "packaged"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from .impl import setup\nNAME = 'packaged_one'\nDESCRIPTION = 'in a package'\n"
    )
    (package / "impl.py").write_text("def setup(client, context):\n    return None\n")

    with caplog.at_level(logging.ERROR, logger="common.plugin_catalogue"):
        found = discover(str(directory))

    assert found["echo"].error is None and found["echo"].source == str(directory / "echo.py")
    assert found["echo"].description == "Answers every incoming message with a prefix."
    assert found["packaged_one"].error is None and found["packaged_one"].description == "in a package"
    assert found["autoreply"].source == "builtin" and found["autoreply"].error is None
    assert found["watch"].source == "builtin" and found["watch"].error is None
    assert found["broken"].module is None
    assert found["broken"].error == "import failed: ModuleNotFoundError: No module named 'no_such_module_here'"
    assert (
        found["badschema"].error is not None and "CONFIG_SCHEMA is not a valid JSON Schema" in found["badschema"].error
    )
    assert found["nosetup"].error == "it has no setup(client, context) function"
    assert "_helper" not in found
    for name in ("broken", "badschema", "nosetup"):
        assert "\n" not in (found[name].error or "")
        assert sum(f"plugin {name} (" in record.getMessage() for record in caplog.records) == 1, name
    assert validate_config(found["broken"], {}) == [f"plugin broken cannot be used: {found['broken'].error}"]


def test_an_installed_distribution_provides_a_plugin_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fleet_ep_demo.py").write_text(
        'DESCRIPTION = "from a distribution"\nCONFIG_SCHEMA = {"type": "object", "required": ["x"]}\n'
        "def setup(client, context):\n    pass\n"
    )
    info = tmp_path / "fleet_ep_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fleet-ep-demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[fleet.plugins]\nepdemo = fleet_ep_demo\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    found = discover(None)

    assert found["epdemo"].source == "entry point" and found["epdemo"].error is None
    assert found["epdemo"].description == "from a distribution"
    assert validate_config(found["epdemo"], {}) == ['"x" is a required property']
