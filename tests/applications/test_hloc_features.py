"""`describe -o features.h5` writes hloc's layout and resumes: only new images are computed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from hardnet_export import get_model, runtime
from hardnet_export._io import sha256_file
from hardnet_export.cli import app
from hardnet_export.host import installed
from hardnet_export.shipped import SHIPPED_ONNX

h5py = pytest.importorskip("h5py")


def _images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        texture = cv2.GaussianBlur(rng.normal(128, 70, (120 + 10 * i, 160)), (0, 0), 2.0)
        path = folder / "imgs" / f"view{i}.png"
        path.parent.mkdir(exist_ok=True)
        assert cv2.imwrite(str(path), np.clip(texture, 0, 255).astype(np.uint8))
        paths.append(path)
    return paths


def test_hloc_layout_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = [p.relative_to(tmp_path) for p in _images(tmp_path, 3)]
    out = Path("features.h5")
    common = ["--max-keypoints", "150", "-o", str(out)]
    first = CliRunner().invoke(app, ["describe", *map(str, paths[:2]), *common])
    assert first.exit_code == 0, first.output
    with h5py.File(out, "r") as f:
        before = {name: f[name]["descriptors"][()] for name in ("imgs/view0.png", "imgs/view1.png")}
        group = f["imgs/view1.png"]
        kps, desc, scores = group["keypoints"][()], group["descriptors"][()], group["scores"][()]
        n = len(kps)
        assert 0 < n <= 150
        assert kps.shape == (n, 2) and kps.dtype == np.float32
        assert desc.shape == (128, n) and desc.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(desc, axis=0), 1.0, atol=1e-4)
        assert scores.shape == (n,) and scores.dtype == np.float32 and (scores > 0).all()
        assert list(group["image_size"][()]) == [160, 130]  # [W, H]
        assert (kps[:, 0] < 160).all() and (kps[:, 1] < 130).all()
        # What made them: the default model's graph for this CPU (FP32, or INT8 where VNNI or
        # AMX) on this CPU's path, and which path.
        made = json.loads(group.attrs["model"])
        graph = runtime.load(device="cpu")
        assert made["artifact"] == str(graph.artifact.resolve())
        assert made["sha256"] == sha256_file(graph.artifact)
        assert made["precision"] == graph.precision
        assert (made["backend"], made["choice"]) == (graph.backend, graph.choice.summary())
        assert made.get("inference_precision") == getattr(graph, "inference_precision", None)

    second = CliRunner().invoke(app, ["describe", *map(str, paths), *common])
    assert second.exit_code == 0, second.output
    assert "2 images already in features.h5: skipped" in second.output
    computed = [line for line in second.output.splitlines() if "keypoints" in line]
    assert computed == [line for line in computed if "view2.png" in line] and computed
    with h5py.File(out, "r") as f:
        assert set(f["imgs"]) == {"view0.png", "view1.png", "view2.png"}
        for name, desc in before.items():
            np.testing.assert_array_equal(f[name]["descriptors"][()], desc)  # untouched


def test_an_h5_output_that_is_a_folder_or_no_hdf5_is_one_line(tmp_path: Path) -> None:
    from hardnet_export.applications.hloc import complete_images

    (tmp_path / "x.h5").mkdir()
    (tmp_path / "junk.h5").write_text("not hdf5")
    # Was h5py's two-line errno text with a timestamp and a buffer address.
    with pytest.raises(IsADirectoryError, match=r"cannot write .*x\.h5: it is a folder; give an"):
        complete_images(tmp_path / "x.h5")
    with pytest.raises(ValueError) as caught:
        complete_images(tmp_path / "junk.h5")
    assert "junk.h5 is not an HDF5 file" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_library_writes_hloc_features_pipelined_as_the_cli_does(tmp_path: Path) -> None:
    import cv2 as opencv

    from hardnet_export.applications import hloc
    from hardnet_export.applications.detection import detect_keypoints

    paths = _images(tmp_path, 3)
    out = tmp_path / "features.h5"
    describer = runtime.load(SHIPPED_ONNX, device="cpu")
    options = {"max_keypoints": 100, "pipeline": True}
    written = list(hloc.write_features(out, describer, paths[:2], **options))
    assert [p for p, _ in written] == paths[:2]
    assert hloc.pending_images(out, paths) == paths[2:]
    image = opencv.imread(str(paths[1]), opencv.IMREAD_GRAYSCALE)
    detected = detect_keypoints(image, max_keypoints=100)
    with h5py.File(out, "r") as f:
        group = f[hloc.image_key(paths[1])]
        # The detector's responses, in its order, and the image's [W, H].
        np.testing.assert_allclose(group["scores"][()], [k.response for k in detected])
        assert list(group["image_size"][()]) == [image.shape[1], image.shape[0]]
        np.testing.assert_array_equal(group["descriptors"][()], written[1][1].descriptors.T)


def test_root_names_groups_as_hloc_image_dir_does(tmp_path: Path) -> None:
    paths = _images(tmp_path, 2)
    out = tmp_path / "features.h5"
    args = ["describe", *map(str, paths), "-o", str(out), "--max-keypoints", "50"]
    result = CliRunner().invoke(app, [*args, "--root", str(tmp_path / "imgs")])
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert set(f) == {"view0.png", "view1.png"}
    outside = CliRunner().invoke(app, [*args, "--root", str(tmp_path / "elsewhere")])
    assert "is not inside the image root" in str(outside.exception)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_backend_names_the_path_a_model_name_runs_on(tmp_path: Path, backend: str) -> None:
    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    (image,) = _images(tmp_path, 1)
    out = tmp_path / "f.npz"
    args = ["describe", str(image), "-o", str(out), "--model", "hardnet-eighth"]
    result = CliRunner().invoke(app, [*args, "--max-keypoints", "50", "--backend", backend])
    assert result.exit_code == 0, result.output
    made = json.loads(str(np.load(out)["model"]))
    entry = get_model("hardnet-eighth")
    file = entry.weights if backend == "torch" else entry.onnx
    assert made["backend"] == backend and made["artifact"] == str(file.resolve())
    assert f"({backend}, fp32, cpu)" in result.output
    other = tmp_path / "g.npz"
    bad = ["describe", str(image), "-o", str(other), "--model", "hardnet-eighth", "--backend"]
    refused = CliRunner().invoke(app, [*bad, "nope"])
    assert refused.exit_code != 0 and not other.exists()
    assert "unknown backend 'nope'" in str(refused.exception)
