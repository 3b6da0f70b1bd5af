"""The layers are enforced, not just described: `lint-imports` (run by `make lint`) keeps the contracts in
pyproject.toml on this tree, and a forbidden import added anywhere breaks them, naming the contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "bot",
    "backend",
    "board",
    "worker",
    "database",
    "celery_app",
    "common",
    "config",
    "fleet_plugins",
    "sandbox",
)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=where, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the product's packages and the contracts, to break on purpose."""
    copy = tmp_path_factory.mktemp("layers")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "version.py"):
        shutil.copy(ROOT / name, copy / name)
    return copy


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and result.stdout.count("KEPT") >= 7


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("worker/loops.py", "import database.models", "The worker never imports the control plane"),
        ("board/errors.py", "import bot.texts", "The board never imports the admin bot"),
        ("board/errors.py", "import celery_app.keys", "The board never imports the admin bot"),
        ("database/models.py", "import celery_app.contract", "The database layer imports none of the services"),
        ("celery_app/keys.py", "import database.engine", "The wire contract (celery_app) imports nothing"),
        ("database/engine.py", "import backend.fleet", "The database layer imports none of the services"),
        ("common/redaction.py", "import celery_app.keys", "The leaf helpers (common) import nothing"),
        ("bot/texts.py", "import bot.views", "No circles between the modules of a package"),
    ],
)
def test_a_forbidden_import_fails_with_the_contracts_name(tree: Path, module: str, line: str, contract: str) -> None:
    path = tree / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + f"\n{line}  # noqa\n", encoding="utf-8")
    try:
        result = lint_imports(tree)
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode != 0
    broken = result.stdout[result.stdout.index("Broken contracts") :]
    assert contract in broken, result.stdout


def test_the_boards_redis_keys_stay_in_the_fleets_namespace() -> None:
    """The board keeps its own key prefix (it does not import the wire contract); it is in the same namespace."""
    from board.main import FSM_PREFIX
    from celery_app import keys

    assert FSM_PREFIX.startswith(f"{keys.PREFIX}:board:")
