"""The package's layering holds: the import-linter contracts in pyproject.toml ([tool.importlinter])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def test_stages_depend_one_way() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_a_back_import_breaks_the_contract(tmp_path: Path) -> None:
    """The contract can fail: config importing the training loop is reported."""
    import shutil

    shutil.copytree(ROOT / "src", tmp_path / "src")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    section = tmp_path / "src/chattune/config/section.py"
    section.write_text(section.read_text() + "\nimport chattune.train.loop  # noqa\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "chattune.config.section -> chattune.train.loop" in done.stdout
