from __future__ import annotations

import pytest
import torch

from hardnet_export import HardNet, load_model, save_checkpoint
from hardnet_export.model import read_checkpoint

AUTHOR_KEYS_WEIGHT = [f"features.{i}.weight" for i in (0, 3, 6, 9, 12, 15, 19)]
AUTHOR_KEYS_BN = [f"features.{i}" for i in (1, 4, 7, 10, 13, 16, 20)]


@pytest.fixture
def patches() -> torch.Tensor:
    return torch.randint(0, 256, (5, 1, 32, 32), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


def test_parameter_count_and_author_keys() -> None:
    model = HardNet()
    assert sum(p.numel() for p in model.parameters()) == 1_334_560
    keys = set(model.state_dict())
    assert set(AUTHOR_KEYS_WEIGHT) <= keys
    for prefix in AUTHOR_KEYS_BN:
        assert {f"{prefix}.running_mean", f"{prefix}.running_var"} <= keys
    assert model.features[19].kernel_size == (8, 8)
    assert isinstance(model.features[18], torch.nn.Dropout)


def test_orthogonal_init_gain() -> None:
    weight = HardNet().features[3].weight.detach().reshape(32, -1)
    # Orthogonal rows scaled by the gain: W W^T = 0.36 I.
    torch.testing.assert_close(weight @ weight.t(), 0.36 * torch.eye(32), atol=1e-5, rtol=0)


def test_output_shape_dtype_unit_norm(patches: torch.Tensor) -> None:
    out = HardNet().eval()(patches)
    assert out.shape == (5, 128) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)


def test_uint8_equals_float_and_scale_invariant(patches: torch.Tensor) -> None:
    model = HardNet().eval()
    with torch.no_grad():
        from_bytes = model(patches)
        torch.testing.assert_close(from_bytes, model(patches.float()), atol=1e-6, rtol=0)
        torch.testing.assert_close(from_bytes, model(patches.float() / 255), atol=1e-4, rtol=0)


def test_standardize_matches_definition(patches: torch.Tensor) -> None:
    x = patches.float()
    flat = x.reshape(5, -1)
    expected = (flat - flat.mean(1, keepdim=True)) / (
        flat.std(1, unbiased=True, keepdim=True) + 1e-7
    )
    torch.testing.assert_close(HardNet.standardize(x).reshape(5, -1), expected)


@pytest.mark.parametrize("shape", [(5, 32, 32), (5, 3, 32, 32), (5, 1, 64, 64)])
def test_wrong_shape_is_named(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, 32, 32\)"):
        HardNet()(torch.zeros(shape))


def test_wrong_dtype() -> None:
    with pytest.raises(TypeError, match="uint8 or float"):
        HardNet()(torch.zeros((2, 1, 32, 32), dtype=torch.int32))


def _trained_like_model() -> HardNet:
    model = HardNet()
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 1, 32, 32))  # move the BN running statistics off their defaults
    return model.eval()


def test_authors_checkpoint_round_trip(tmp_path, patches: torch.Tensor) -> None:
    model = _trained_like_model()
    # The authors' saves from old PyTorch have no num_batches_tracked entries.
    state = {k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    torch.save({"epoch": 9, "state_dict": state}, tmp_path / "checkpoint_liberty_with_aug.pth")
    loaded = load_model(tmp_path / "checkpoint_liberty_with_aug.pth")
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(patches), model(patches))


def test_own_checkpoint_records_provenance(tmp_path, patches: torch.Tensor) -> None:
    model = _trained_like_model()
    path = save_checkpoint(
        tmp_path / "w.pth", model, config={"lr": 10.0}, step=42, data=["builtin"]
    )
    checkpoint = read_checkpoint(path)
    assert checkpoint.meta["step"] == 42
    assert checkpoint.meta["config"] == {"lr": 10.0}
    assert checkpoint.meta["data"] == ["builtin"]
    assert checkpoint.meta["producer"].startswith("hardnet-export")
    with torch.no_grad():
        torch.testing.assert_close(load_model(path)(patches), model(patches))
    assert [p.name for p in tmp_path.iterdir()] == ["w.pth"]  # no temporary left behind


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_model(tmp_path / "nope.pth")


def test_not_a_checkpoint(tmp_path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"this is not a zip or pickle")
    with pytest.raises(ValueError, match="junk.pth is not a PyTorch checkpoint: it is a text"):
        load_model(tmp_path / "junk.pth")
    torch.save({"epoch": 1, "weights": [1, 2]}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a HardNet checkpoint"):
        load_model(tmp_path / "other.pth")


def test_wrong_architecture(tmp_path) -> None:
    state = HardNet().state_dict()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "wide.pth")
    with pytest.raises(ValueError, match="does not fit the HardNet architecture"):
        load_model(tmp_path / "wide.pth")
    del state["features.19.weight"]
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "short.pth")
    with pytest.raises(ValueError, match=r"missing keys \['features.19.weight'\]"):
        load_model(tmp_path / "short.pth")


def test_untrusted_pickle_is_refused_without_advice_to_unpickle(tmp_path) -> None:
    torch.save({"state_dict": {}, "payload": object()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="evil.pth is not a safe checkpoint") as caught:
        load_model(tmp_path / "evil.pth")
    # torch's own refusal tells users to pass weights_only=False: never pass that on.
    assert "weights_only" not in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


class _RunsCode:
    """Unpickling this calls os.getcwd: harmless, but code the file names all the same."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.getcwd, ())


def test_a_file_that_is_no_checkpoint_is_told_from_one_that_would_run_code(tmp_path) -> None:
    import pickle

    png = tmp_path / "fake.pth"  # a PNG renamed: torch's refusal was "would run code"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    (tmp_path / "text.pth").write_text("hello")  # torch: KeyError '101'
    (tmp_path / "empty.pth").write_bytes(b"")
    with open(tmp_path / "plain.pth", "wb") as f:
        pickle.dump({"weights": [1.0, 2.0]}, f)
    torch.save({"state_dict": {}, "payload": _RunsCode()}, tmp_path / "zip-code.pth")
    with open(tmp_path / "pickle-code.pth", "wb") as f:
        pickle.dump(_RunsCode(), f)
    torch.save(
        {"payload": _RunsCode()}, tmp_path / "legacy-code.pth", _use_new_zipfile_serialization=False
    )
    foreign = {
        "fake.pth": "fake.pth is not a PyTorch checkpoint: it is a PNG image",
        "text.pth": "text.pth is not a PyTorch checkpoint: it is a text file starting 'hello'",
        "empty.pth": "empty.pth is empty (0 bytes)",
        "plain.pth": "plain.pth is a plain Python pickle, not a PyTorch checkpoint",
    }
    for name, message in foreign.items():
        with pytest.raises(ValueError) as caught:
            read_checkpoint(tmp_path / name)
        text = str(caught.value)
        assert message in text and "run code" not in text and len(text.splitlines()) == 1, text
    for name in ("zip-code.pth", "pickle-code.pth", "legacy-code.pth"):
        with pytest.raises(ValueError) as caught:
            read_checkpoint(tmp_path / name)
        text = str(caught.value)
        assert f"{name} is not a safe checkpoint" in text and "run code" in text, text
        assert "getcwd" in text and "weights_only" not in text  # names what it would call


def _project_checkpoint(**fields) -> dict:
    return {"format": "hardnet-export/1", "state_dict": HardNet().state_dict(), **fields}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"format": "hardnet-export/1", "meta": "{}"}, "checkpoint without a state_dict"),
        (_project_checkpoint(meta="{bad"), r"\(its meta\) is not valid JSON"),
        (_project_checkpoint(meta="[1, 2]"), "must be a JSON object"),
        (_project_checkpoint(meta="[" * 100 + "]" * 100), "nests deeper"),
        (_project_checkpoint(meta='{"a": NaN}'), "NaN, which is not JSON"),
        (_project_checkpoint(meta=7), "meta must be a JSON string"),
        (_project_checkpoint(meta="{}", step="12"), "step must be an integer"),
        (_project_checkpoint(meta="{}", step=True), "step must be an integer"),
        (_project_checkpoint(meta="{}", step=-1), "step must be >= 0"),
        (_project_checkpoint(meta="{}", lr_anchor=float("nan")), "lr_anchor must be a finite"),
        ({"state_dict": {"a": 3}}, "must map names to tensors"),
        ([1, 2, 3], "expected a dict, found list"),
    ],
)
def test_malformed_checkpoints_are_named_errors(tmp_path, payload, message) -> None:
    path = tmp_path / "bad.pth"
    torch.save(payload, path)
    with pytest.raises((ValueError, TypeError), match=message) as caught:
        read_checkpoint(path)
    assert str(path) in str(caught.value)


def test_truncated_checkpoint_is_a_named_error(tmp_path) -> None:
    path = tmp_path / "cut.pth"
    torch.save(_project_checkpoint(meta="{}"), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="cut.pth is not a readable PyTorch checkpoint"):
        read_checkpoint(path)


def test_nan_weights_are_refused(tmp_path) -> None:
    model = HardNet()
    with torch.no_grad():
        model.features[3].weight[0, 0, 0, 0] = float("inf")
    save_checkpoint(tmp_path / "diverged.pth", model, step=5)
    with pytest.raises(ValueError, match=r"diverged.pth holds NaN or inf in 1 tensors \(features"):
        load_model(tmp_path / "diverged.pth")


def test_no_shipped_model_is_a_clear_error(monkeypatch, tmp_path) -> None:
    import hardnet_export.model as model_module

    monkeypatch.setattr(model_module, "SHIPPED_WEIGHTS", tmp_path / "absent.pth")
    with pytest.raises(FileNotFoundError, match="no shipped model"):
        load_model()
