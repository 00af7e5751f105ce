from __future__ import annotations

import subprocess
import sys


def test_package_import_does_not_load_torch() -> None:
    code = "import sys, hardnet_export, hardnet_export.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
