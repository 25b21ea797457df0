"""Tiny open_clip models for tests: written to a folder in open_clip's own local-dir: format.

`write_model` saves random weights; `train_colours` trains one for a few seconds on generated
coloured shapes so that "a red shape" really ranks red images first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (235, 215, 20)}
SHAPES = ("square", "circle")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_config(image_size: int = 32) -> dict:
    """Smallest sensible CLIP: vocab_size stays 49408 (the tokenizer's), head_width divides width."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": image_size, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }


def write_model(folder: Path, model=None, seed: int = 0, image_size: int = 32) -> Path:
    """Save a model (random weights with `seed` when None) as open_clip_config.json + safetensors."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg = tiny_config(image_size)
    if model is None:
        torch.manual_seed(seed)
        model = open_clip.CLIP(**cfg)
    folder.mkdir(parents=True, exist_ok=True)
    preprocess = {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def shape_image(colour: str, shape: str, size: int = 64, seed: int = 0) -> Image.Image:
    """A coloured shape on a light grey background, with a little jitter so images differ."""
    rng = np.random.default_rng(seed)
    bg = tuple(int(v) for v in rng.integers(200, 245, 3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    m = int(rng.integers(4, size // 5))
    box = (m, m, size - m - int(rng.integers(0, 6)), size - m - int(rng.integers(0, 6)))
    fill = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in COLOURS[colour])
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=fill)
    return img


def train_colours(steps: int = 150, seed: int = 0):  # an open_clip CLIP
    """Contrastive training on 'a photo of a {colour} {shape}' pairs; returns the trained model."""
    import open_clip
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model = open_clip.CLIP(**tiny_config())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        picks = [pairs[i] for i in rng.permutation(len(pairs))]
        imgs = [shape_image(c, s, size=32, seed=int(rng.integers(1 << 30))) for c, s in picks]
        x = torch.from_numpy(np.stack([np.asarray(i) for i in imgs])).permute(0, 3, 1, 2).float() / 255
        x = (x - mean) / std
        tokens = open_clip.tokenize([f"a photo of a {c} {s}" for c, s in picks], context_length=16)
        img_f = F.normalize(model.encode_image(x), dim=-1)
        txt_f = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp() * img_f @ txt_f.T
        labels = torch.arange(len(picks))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


def write_immich(folder: Path, model_dir: Path) -> Path:
    """The model saved in `model_dir` exported as Immich's machine-learning service publishes its models (its export
    script's choices): config.json; visual/model.onnx taking normalised float pixels (1, 3, H, W) and
    visual/preprocess_cfg.json; textual/model.onnx taking int32 ids (1, context length), and Hugging Face's
    tokenizer.json (CLIP's BPE, with Hugging Face's names for the start and end tokens)."""
    import warnings

    import open_clip
    import torch
    from tokenizers import models
    from open_clip.tokenizer import SimpleTokenizer

    from imgsearch.models.runtimes import clip_bpe

    config = json.loads((model_dir / "open_clip_config.json").read_text())
    model = open_clip.create_model(f"local-dir:{model_dir}", pretrained=None)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(model_dir / "open_clip_model.safetensors")))
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    (folder / "visual").mkdir(parents=True)
    (folder / "textual").mkdir()
    (folder / "config.json").write_text(json.dumps(config["model_cfg"]))
    size = config["model_cfg"]["vision_cfg"]["image_size"]
    (folder / "visual" / "preprocess_cfg.json").write_text(json.dumps(
        {"size": [size, size], "mode": "RGB", "mean": list(MEAN), "std": list(STD), "interpolation": "bicubic",
         "resize_mode": "shortest", "fill_color": 0}))

    class Image(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.model.encode_image(image, normalize=True)

    class Text(Image):
        def forward(self, text: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(text, normalize=True)

    ctx = config["model_cfg"]["text_cfg"]["context_length"]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # as Immich's exporter: the fused attention has no ONNX form
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Image(), (torch.randn(1, 3, size, size),), str(folder / "visual" / "model.onnx"),
                          input_names=["image"], output_names=["embedding"], dynamo=False)
        torch.onnx.export(Text(), (torch.ones(1, ctx, dtype=torch.int32),), str(folder / "textual" / "model.onnx"),
                          input_names=["text"], output_names=["embedding"], dynamo=False)
    torch.backends.mha.set_fastpath_enabled(fastpath)
    tok = SimpleTokenizer()
    vocab = dict(tok.encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.get)
    clip_bpe(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>")).save(
        str(folder / "textual" / "tokenizer.json"))
    (folder / "textual" / "tokenizer_config.json").write_text(json.dumps({"pad_token": "!"}))
    return folder


def hub_cache_repo(cache: Path, repo: str, files_from: Path) -> Path:
    """`files_from` laid into a Hugging Face hub cache as the snapshot of `repo` (what a download leaves there)."""
    import shutil

    base = cache / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    shutil.copytree(files_from, base / "snapshots" / revision)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(revision)
    return base / "snapshots" / revision
