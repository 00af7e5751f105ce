"""`hardnet-export describe` and `match` end to end, on small real photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixture_files import run_cli

from hardnet_export._io import sha256_file


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    gray = cv2.resize(
        cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY), (200, 200), cv2.INTER_AREA
    )
    rotated = cv2.warpAffine(gray, cv2.getRotationMatrix2D((100, 100), 20, 1.0), (200, 200))
    cv2.imwrite(str(folder / "a.png"), gray)
    cv2.imwrite(str(folder / "b.png"), rotated)
    return folder / "a.png", folder / "b.png"


@pytest.mark.slow
def test_describe_writes_npz(photos: tuple[Path, Path], onnx_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.npz"
    args = ("describe", *map(str, photos), "--model", str(onnx_model), "--max-keypoints", "50")
    result = run_cli(*args, "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    assert list(data["images"]) == [str(p) for p in photos]
    made = json.loads(str(data["model"]))
    assert made["artifact"] == str(onnx_model.resolve()) and made["precision"] == "fp32"
    assert made["sha256"] == sha256_file(onnx_model) and made["device"] == "cpu"
    assert made["backend"] in result.stdout and made["choice"]
    for i in range(2):
        kps, desc = data[f"keypoints_{i}"], data[f"descriptors_{i}"]
        assert kps.shape[1] == 4 and 0 < len(kps) <= 50 and desc.shape == (len(kps), 128)
        np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_describe_given_keypoints(
    photos: tuple[Path, Path], onnx_model: Path, tmp_path: Path
) -> None:
    given = tmp_path / "kps.npy"
    np.save(given, np.array([[10.0, 20.0], [0.0, 0.0], [199.0, 199.0]]))
    out = tmp_path / "f.npz"
    result = run_cli(
        "describe", str(photos[0]), "--model", str(onnx_model), "--keypoints", str(given),
        "--detector", "orb", "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert np.load(out)["descriptors_0"].shape == (3, 128)  # border keypoints kept


@pytest.mark.slow
@pytest.mark.parametrize("descriptor", ["hardnet", "sift"])
def test_match_draws_inliers(
    photos: tuple[Path, Path], onnx_model: Path, tmp_path: Path, descriptor: str
) -> None:
    out = tmp_path / "m.png"
    result = run_cli(
        "match", *map(str, photos), "--model", str(onnx_model), "--descriptor", descriptor,
        "--max-keypoints", "300", "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{descriptor}:" in result.stdout and "inliers" in result.stdout
    inliers = int(result.stdout.split(" inliers")[0].split()[-1])
    assert inliers >= 20
    picture = cv2.imread(str(out))
    assert picture.shape[1:] == (400, 3) and picture.shape[0] > 200  # the legend below


@pytest.mark.slow
def test_cli_errors_are_one_sentence(
    photos: tuple[Path, Path], onnx_model: Path, tmp_path: Path
) -> None:
    bad_npy = tmp_path / "bad.npy"
    np.save(bad_npy, np.zeros((3, 3)))
    model = ("--model", str(onnx_model))
    npz, png = ("-o", str(tmp_path / "x.npz")), ("-o", str(tmp_path / "m.png"))
    a, pair = str(photos[0]), tuple(map(str, photos))
    cases = [
        (("describe", str(tmp_path / "no.png"), *model, *npz), "not found"),
        (("describe", a, *model, "--detector", "surf", *npz), "surf"),
        (("describe", a, *model, "--keypoints", str(bad_npy), *npz), "(K, 2)"),
        (("match", *pair, *model, "--geometry", "affine", *png), "affine"),
        (("match", *pair, *model, "--descriptor", "orb", *png), "orb"),
        (("match", *pair, "--model", str(tmp_path / "none.onnx"), *png), "not found"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode != 0, args
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not list(tmp_path.glob("x.npz")) and not list(tmp_path.glob("m.png"))


@pytest.mark.slow
def test_pipelined_describe_writes_the_sequential_npz(
    photos: tuple[Path, Path], onnx_model: Path, tmp_path: Path
) -> None:
    images = [str(photos[0]), str(photos[1]), str(photos[0])]
    outs = {}
    for mode in ("--pipeline", "--no-pipeline"):
        outs[mode] = tmp_path / f"{mode[2:]}.npz"
        args = ("describe", *images, "--model", str(onnx_model), "--max-keypoints", "40", mode)
        result = run_cli(*args, "-o", str(outs[mode]))
        assert result.returncode == 0, result.stderr
    piped, sequential = np.load(outs["--pipeline"]), np.load(outs["--no-pipeline"])
    assert sorted(piped.files) == sorted(sequential.files)
    for name in sequential.files:
        np.testing.assert_array_equal(piped[name], sequential[name])


def test_pipelined_describe_keeps_order_and_names_the_bad_image(
    photos: tuple[Path, Path], onnx_model: Path, tmp_path: Path
) -> None:
    from hardnet_export import runtime
    from hardnet_export.applications.features import describe_image, describe_images
    from hardnet_export.applications.images import read_image
    from hardnet_export.errors import InputError

    describer = runtime.load(onnx_model, device="cpu")
    small = np.zeros((4, 4), np.uint8)
    images = [photos[1], cv2.imread(str(photos[0]), cv2.IMREAD_GRAYSCALE), photos[0]]
    got = list(describe_images(describer, images, max_keypoints=30))
    for (kps, desc), image in zip(got, images, strict=True):
        array = image if isinstance(image, np.ndarray) else read_image(image)
        want_kps, want_desc = describe_image(describer, array, max_keypoints=30)
        np.testing.assert_array_equal(kps, want_kps)
        np.testing.assert_array_equal(desc, want_desc)
    # In bounds on the 200x200 photo, out of bounds on the 4x4 image after it.
    given = np.array([[150.0, 150.0, 2.0, 0.0]])
    with pytest.raises(InputError, match=r"^far\.npy on image 1: keypoint 0 is out of bounds"):
        list(
            describe_images(
                describer, [photos[0], small], keypoints=given, keypoints_name="far.npy"
            )
        )
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        list(describe_images(describer, [photos[0], broken, photos[1]]))
