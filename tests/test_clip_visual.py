"""train.models.clip_visual (loading), train.export.clip (ONNX round trip) and edge.backends (ONNX Runtime)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edge.backends import InferenceBackend, TensorSpec, check_feeds, open_backend
from edge.backends.onnxruntime import OnnxRuntimeBackend, resolve_providers
from edge.preprocess import CLIP_VIT_B16, PreprocessSpec, preprocess
from train.models.clip_source import tiny_config
from train.models.clip_visual import TorchCLIPBackend, load_clip_visual
from edge.backends import cosine_rows
from train.export.clip import OPSET, export_clip, file_sha256, matches, sample_frames


def _embed(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(pixels)).numpy()


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return preprocess([rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(3)])


# ---------------------------------------------------------------- loading
def test_tiny_is_seeded_frozen_and_gives_unnormalised_512d(pixels: np.ndarray) -> None:
    state = torch.random.get_rng_state()
    model = load_clip_visual("tiny", seed=0)
    assert torch.equal(torch.random.get_rng_state(), state), "loading must not disturb the global RNG"
    out = _embed(model, pixels)
    assert out.shape == (3, 512) and out.dtype == np.float32
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)  # projection output, not L2-normalised
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    np.testing.assert_array_equal(out, _embed(load_clip_visual("tiny", seed=0), pixels))
    assert not np.allclose(out, _embed(load_clip_visual("tiny", seed=1), pixels))


def _save_clip(directory: Path, projection_dim: int = 512, seed: int = 0):
    from transformers import CLIPModel

    config = tiny_config()
    config.projection_dim = config.vision_config.projection_dim = config.text_config.projection_dim = projection_dim
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(directory)
    return model


def test_loads_the_vision_side_of_a_full_hf_clip_checkpoint(tmp_path: Path, pixels: np.ndarray) -> None:
    full = _save_clip(tmp_path / "clip-vit-test")
    with torch.inference_mode():
        expected = full.get_image_features(pixel_values=torch.from_numpy(pixels))
    expected = (expected if torch.is_tensor(expected) else expected.pooler_output).numpy()
    model = load_clip_visual(tmp_path / "clip-vit-test")
    assert model.source == "real:clip-vit-test"
    np.testing.assert_allclose(_embed(model, pixels), expected, atol=1e-6)


def test_rejects_checkpoints_that_are_not_vit_b16_shaped(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_clip_visual(tmp_path)
    _save_clip(tmp_path / "proj256", projection_dim=256)
    with pytest.raises(ValueError, match="projection 256-d"):
        load_clip_visual(tmp_path / "proj256")


def test_rejects_a_checkpoint_without_vision_weights(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    _save_clip(tmp_path / "textonly")
    weights = tmp_path / "textonly" / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("vision_model.")}, weights)
    with pytest.raises(ValueError, match="lacks .* vision weights"):
        load_clip_visual(tmp_path / "textonly")


@pytest.mark.slow
def test_random_source_is_the_real_vit_b16_size() -> None:
    model = load_clip_visual("random")
    n_params = sum(p.numel() for p in model.parameters())
    assert 86e6 < n_params < 89e6, n_params  # ViT-B/16 image tower + 768x512 projection
    assert _embed(model, np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 512)


# ---------------------------------------------------------------- export + ONNX Runtime
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("export") / "clip_visual.onnx"
    return out, export_clip("tiny", out, seed=0, verify_frames=4)


def test_export_writes_a_verified_self_describing_model(exported: tuple[Path, dict]) -> None:
    path, sidecar = exported
    assert json.loads(path.with_suffix(".json").read_text()) == sidecar
    assert sidecar["sha256"] == file_sha256(path) and sidecar["opset"] == OPSET == 17
    assert sidecar["random"] is True and sidecar["clip"] == "tiny"
    assert sidecar["verify"]["min_cosine"] >= 0.9999 and sidecar["verify"]["max_rel_diff"] <= 1e-3
    proto = onnx.load(str(path), load_external_data=False)
    assert [(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [("", 17)]
    assert proto.ir_version == 8  # the smallest IR for opset 17: older runtimes load it
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["cplvad.clip"] == "tiny" and meta["cplvad.clip_random"] == "true"
    assert PreprocessSpec.from_dict(json.loads(meta["cplvad.preprocess"])) == CLIP_VIT_B16
    assert matches(path, "tiny", seed=0) and not matches(path, "tiny", seed=1) and not matches(path, "random")


def test_onnxruntime_backend_agrees_with_torch_at_any_batch(exported: tuple[Path, dict]) -> None:
    path, _ = exported
    backend = OnnxRuntimeBackend(path, threads=1)
    assert isinstance(backend, InferenceBackend)
    assert backend.inputs == (TensorSpec("pixels", ("batch", 3, 224, 224), np.dtype(np.float32)),)
    assert backend.outputs[0].name == "image_embeds" and backend.outputs[0].shape[1] == 512
    assert backend.metadata["cplvad.clip"] == "tiny" and backend.providers == ["CPUExecutionProvider"]
    model = load_clip_visual("tiny", seed=0)
    pixels = preprocess(sample_frames(5))
    for batch in (1, 5):
        out = backend.run({"pixels": pixels[:batch]})["image_embeds"]
        ref = _embed(model, pixels[:batch])
        assert out.shape == (batch, 512)
        assert cosine_rows(out, ref).min() > 0.9999 and np.abs(out - ref).max() < 1e-4


def test_backends_reject_bad_feeds_with_the_input_named(exported: tuple[Path, dict]) -> None:
    for backend in (open_backend(str(exported[0])), TorchCLIPBackend(load_clip_visual("tiny"))):
        good = np.zeros((2, 3, 224, 224), np.float32)
        with pytest.raises(ValueError, match=r"pixels \[batch, 3, 224, 224\] float32, got \[2, 3, 224, 224\] float64"):
            backend.run({"pixels": good.astype(np.float64)})
        with pytest.raises(ValueError, match=r"got \[2, 3, 256, 256\]"):
            backend.run({"pixels": np.zeros((2, 3, 256, 256), np.float32)})
        with pytest.raises(ValueError, match=r"missing \['pixels'\].*unknown \['image'\]"):
            backend.run({"image": good})
        assert backend.run({"pixels": good})["image_embeds"].shape == (2, 512)


def test_check_feeds_accepts_dynamic_dims_only_where_declared() -> None:
    specs = [TensorSpec("x", (None, "t", 4), np.dtype(np.float32))]
    check_feeds(specs, {"x": np.zeros((2, 7, 4), np.float32)}, model="m")
    with pytest.raises(ValueError, match="m: input expected x \\[\\?, t, 4\\] float32"):
        check_feeds(specs, {"x": np.zeros((2, 7), np.float32)}, model="m")


def test_provider_resolution() -> None:
    cpu, cuda, trt = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
    assert resolve_providers(["cpu"], [cpu]) == [cpu]
    assert resolve_providers(["auto"], [cpu]) == [cpu]
    assert resolve_providers(["auto"], [trt, cuda, cpu]) == [trt, cuda, cpu]
    assert resolve_providers(["cuda"], [trt, cuda, cpu]) == [cuda, cpu]
    with pytest.raises(ValueError, match="'cuda' .* not in this onnxruntime build"):
        resolve_providers(["cuda"], [cpu])
    with pytest.raises(ValueError, match="unknown ONNX Runtime provider 'gpu'"):
        resolve_providers(["gpu"], [cpu])
    with pytest.raises(FileNotFoundError, match="missing.onnx not found"):
        OnnxRuntimeBackend("missing.onnx")
