"""OpenClipEncoder through open_clip's real loading path, with tiny models written to temp dirs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgsearch.config import ModelSpec
from imgsearch.models.encoder import OpenClipEncoder
from imgsearch.models.sources import hub_reachable
from imgsearch.errors import ModelLoadError
from imgsearch.images.decode import decode_file
from tests.tinyclip import tiny_config


def test_local_dir_model_loads_and_encodes_normalised_vectors(tiny_model_dir: Path) -> None:
    enc = OpenClipEncoder.load(ModelSpec(f"local-dir:{tiny_model_dir}", None), device="cpu")
    info = enc.info
    assert info.dim == 32 and (info.geometry.height, info.geometry.width) == (32, 32)
    assert info.key.startswith("local-dir|sha256:") and info.checkpoint_sha256 in info.key
    assert info.name == f"local-dir:{tiny_model_dir.resolve()}"
    pixels = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    vecs = enc.encode_pixels(pixels)
    texts = enc.encode_texts(["a dog", "a cat"])
    assert vecs.shape == (3, 32) and vecs.dtype == np.float32 and texts.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])


def test_plain_folder_path_works_like_local_dir(tiny_model_dir: Path) -> None:
    a = OpenClipEncoder.load(ModelSpec(str(tiny_model_dir), None), device="cpu")
    b = OpenClipEncoder.load(ModelSpec(f"local-dir:{tiny_model_dir}", None), device="cpu")
    assert a.info.key == b.info.key


def test_registered_architecture_with_local_checkpoint_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    import open_clip

    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    (cfg_dir / "tiny-test.json").write_text(json.dumps(tiny_config()))
    open_clip.add_model_config(cfg_dir)
    weights = tmp_path / "w.safetensors"
    shutil.copy(tiny_model_dir / "open_clip_model.safetensors", weights)
    enc = OpenClipEncoder.load(ModelSpec("tiny-test", str(weights)), device="cpu")
    assert enc.info.key.startswith("tiny-test|sha256:") and enc.info.pretrained == str(weights)
    ref = OpenClipEncoder.load(ModelSpec(f"local-dir:{tiny_model_dir}", None), device="cpu")
    np.testing.assert_allclose(enc.encode_texts(["hello"]), ref.encode_texts(["hello"]), atol=1e-6)


@pytest.mark.parametrize("spec,match", [
    (ModelSpec("ViT-B-33", "x"), "unknown open_clip model 'ViT-B-33'.*Did you mean: ViT-B-32"),
    (ModelSpec("ViT-B-32", "no_such_tag"), "not a pretrained tag of ViT-B-32 .*laion2b_s34b_b79k"),
    (ModelSpec("ViT-B-32", "/nope/w.safetensors"), "checkpoint file not found: /nope/w.safetensors"),
    (ModelSpec("ViT-B-32", None), "no weights given for ViT-B-32"),
    (ModelSpec("local-dir:/nope/model", None), "model folder not found: /nope/model"),
    (ModelSpec("", None), "empty model name"),
])
def test_bad_model_specs_name_the_problem(spec: ModelSpec, match: str) -> None:
    with pytest.raises(ModelLoadError, match=match):
        OpenClipEncoder.load(spec, device="cpu")


def test_folder_without_weights_or_config(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="holds neither open_clip_config.json .open_clip. nor config.json, visual/ "
                                             "and textual/ .an export."):
        OpenClipEncoder.load(ModelSpec(f"local-dir:{tmp_path / 'empty'}", None), device="cpu")
    (tmp_path / "cfg").mkdir()
    shutil.copy(tiny_model_dir / "open_clip_config.json", tmp_path / "cfg")
    with pytest.raises(ModelLoadError, match="no weights"):
        OpenClipEncoder.load(ModelSpec(f"local-dir:{tmp_path / 'cfg'}", None), device="cpu")


@pytest.mark.parametrize("spec,fix", [
    (ModelSpec("ViT-B-32", "laion2b_s34b_b79k"), "--model ViT-B-32 --pretrained /path/to/open_clip_model.safetensors"),
    (ModelSpec("hf-hub:org/missing", None), "into one folder and give --model local-dir:FOLDER"),
])
def test_uncached_hub_weights_offline_fail_with_the_fix(spec: ModelSpec, fix: str) -> None:
    from imgsearch.cli.app import flag_for

    with pytest.raises(ModelLoadError) as err:
        OpenClipEncoder.load(spec, device="cpu")
    msg = err.value.render(flag_for)  # as the CLI prints it
    assert spec.name in msg and "not in the Hugging Face cache" in msg and "huggingface" in msg
    assert fix in msg and "imgsearch train" in msg


def test_hub_probe_sees_offline_mode_and_refused_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE and hub_reachable() is False
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    assert hub_reachable(timeout_s=2) is False


def test_fast_decode_path_matches_open_clip_reference(trained_model_dir: Path, photos_dir: Path) -> None:
    """Draft-mode decode + our resize gives the same embeddings as Pillow full decode + open_clip's transform."""
    import open_clip
    import torch
    from PIL import Image

    name = f"local-dir:{trained_model_dir}"
    enc = OpenClipEncoder.load(ModelSpec(name, None), device="cpu")
    _, _, preprocess = open_clip.create_model_and_transforms(name)
    files = sorted(photos_dir.glob("*.jpg"))
    fast = enc.encode_pixels(np.stack([decode_file(str(f), enc.info.geometry, 10**9).pixels for f in files]))
    with torch.inference_mode():
        ref = enc.model.encode_image(torch.stack([preprocess(Image.open(f)) for f in files]))
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    cosines = (fast * ref).sum(axis=1)
    assert cosines.mean() >= 0.995, cosines


def test_short_text_path_is_used_and_equals_open_clips_encode_text(trained_model_dir: Path) -> None:
    import torch

    enc = OpenClipEncoder.load(ModelSpec(f"local-dir:{trained_model_dir}", None), device="cpu")
    assert enc._short_text
    texts = ["a photo of a red square", "blue", "a yellow circle on a grey background, slightly to the left"]
    with torch.inference_mode():
        full = torch.nn.functional.normalize(enc.model.encode_text(enc.tokenizer(texts)).float(), dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_texts(texts), full, atol=1e-5)
