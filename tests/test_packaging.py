"""The built wheel is complete: an installed program finds its templates."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_carries_the_templates_and_finds_them(tmp_path: Path) -> None:
    # From a copy: a build/ folder left in the checkout would hide what the config misses.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "digest", src / "digest", ignore=skip)
    shutil.copytree(ROOT / "templates", src / "templates", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(src)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("caucasus_digest-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    shipped = {p.relative_to(ROOT / "templates") for p in (ROOT / "templates").rglob("*.*")}
    assert shipped, "no templates in the repository"
    assert {
        p.relative_to(site / "digest" / "templates")
        for p in (site / "digest" / "templates").rglob("*.*")
    } == shipped
    found = subprocess.run(
        [sys.executable, "-c", "import digest; print(digest.TEMPLATES)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found) == (site / "digest" / "templates").resolve()


def test_a_source_checkout_uses_the_top_level_templates() -> None:
    import digest

    assert digest.TEMPLATES == ROOT / "templates"
    assert (digest.TEMPLATES / "digest.html.j2").is_file()
