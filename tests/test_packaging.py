"""The installed distribution ships the framework only: no top-level ``layers``
package that would shadow a user's own ``layers.py`` or ``layers/``."""

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPOSITORY


@pytest.mark.slow
def test_the_wheel_holds_the_framework_and_not_the_lessons_layers(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel without network needs setuptools installed")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPOSITORY), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"properties"}, f"the wheel installs top-level {sorted(top_level)}"
    # Every framework module is in it, subpackages included (the catalogue).
    shipped = {name for name in names if name.endswith(".py")}
    source = {str(p.relative_to(REPOSITORY)) for p in (REPOSITORY / "properties").rglob("*.py")}
    assert source <= shipped, f"missing from the wheel: {sorted(source - shipped)}"
