"""Every command checks the optional packages it needs before any work, in one line that
names them and the extra that installs them (a missing ONNX Runtime once surfaced as an
internal error after 7.7 s of INT8 export)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hardnet_export.errors import MissingDependencyError
from hardnet_export.host import OPTIONAL_PACKAGES, require

pytestmark = pytest.mark.slow

# The packages are refused by a meta-path finder, as on a machine where they are absent.
BLOCKED = """
import sys
blocked = set(sys.argv[1].split(","))

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from hardnet_export.cli import main
main(sys.argv[2:])
"""

CASES = [
    ("onnxruntime", ["onnx", "hardnet-eighth", "-o", "{out}/m.onnx", "--precision", "int8"],
     "an ONNX export needs onnxruntime", "[cpu]"),
    ("torch", ["onnx", "hardnet-eighth", "-o", "{out}/m.onnx", "--no-parity"],
     "an ONNX export needs torch", "[train]"),
    ("skimage,sklearn", ["train", "--steps", "2", "--out", "{out}/run"],
     "training needs scikit-image, scikit-learn, which are not installed", "[train]"),
    ("skimage", ["eval", "--model", "hardnet-eighth", "--pairs", "50"],
     "the built-in photo 'coffee' needs scikit-image", "[train]"),
    ("ray", ["extract", "{out}", "-o", "{out}/f.h5", "--engine", "ray"],
     "the ray engine needs ray", "[ray]"),
    ("onnxruntime,matplotlib", ["demo", "--out", "{out}/demo"],
     "the demo needs onnxruntime, matplotlib, which are not installed", "[cpu,train]"),
]  # fmt: skip


@pytest.mark.parametrize(("blocked", "args", "says", "extra"), CASES, ids=[c[0] for c in CASES])
def test_a_command_without_its_package_says_which_extra_installs_it(
    tmp_path: Path, blocked: str, args: list[str], says: str, extra: str
) -> None:
    args = [a.format(out=tmp_path) for a in args]
    result = subprocess.run([sys.executable, "-c", BLOCKED, blocked, *args],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {says}") and f"pip install 'hardnet-export{extra}'" in line
    assert list(tmp_path.iterdir()) == []  # refused before writing anything


def test_require_names_each_missing_package_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(OPTIONAL_PACKAGES, "hardnet_no_such_module", ("no-such-dist", "sfm"))
    require("nothing")
    require("numpy alone", "numpy")  # installed: nothing to say
    with pytest.raises(MissingDependencyError) as caught:
        require("this job", "numpy", "hardnet_no_such_module", "hardnet_no_such_module")
    assert str(caught.value) == (
        "this job needs no-such-dist, which is not installed: pip install 'hardnet-export[sfm]'"
    )
