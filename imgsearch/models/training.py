"""Contrastive training (CLIP's symmetric InfoNCE) on the user's own (image, caption) pairs.

Pairs come from a CSV, sidecar .txt captions or class folders. A run starts from any model
`--model` accepts (fine-tuning, optionally with a locked tower: LiT) or from an architecture
config (from scratch). Each epoch ends with validation recall and a checkpoint that `resume`
continues from; the result is an open_clip local-dir folder that `imgsearch index --model
local-dir:OUT` loads directly. torch and open_clip are imported lazily, as in encoder.py."""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from imgsearch.config import ModelSpec
from imgsearch.errors import UsageError
from imgsearch.fs import atomic_write
from imgsearch.progress import Progress, SilentProgress
from imgsearch.models.train_data import Pair, decode_all, split_rows

if TYPE_CHECKING:
    import torch


CONFIG_FILE = "open_clip_config.json"


WEIGHTS_FILE = "open_clip_model.safetensors"


CHECKPOINT_FILE = "checkpoint.pt"


MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's, so a from-scratch model preprocesses like the others


STD = (0.26862954, 0.26130258, 0.27577711)


# From-scratch architectures sized for small data sets (configs/NAME.json, open_clip's model_cfg format);
# any open_clip model name or config file also works.
CONFIG_DIR = Path(__file__).parent / "configs"
PRESETS = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))


@dataclass(frozen=True)
class TrainSettings:
    # 40 epochs of `small` on 3,000 photos take ~25 min on 2 CPU cores (BENCHMARKS.md); a run stops earlier when
    # validation has not improved for `patience` epochs, and the folder keeps the best epoch's weights
    epochs: int = 40
    patience: int = 10  # epochs without a better validation score before stopping (0: never stop early)
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 50
    accumulate: int = 1  # micro-batches per optimiser step (each keeps its own in-batch negatives)
    val_fraction: float = 0.1
    lock_image: bool = False  # LiT: train the text tower against a fixed image tower
    lock_text: bool = False
    augment: bool = True  # random crops and flips
    compile: bool = False  # torch.compile on CUDA
    seed: int = 0
    workers: int = -1  # decode processes


@dataclass
class EpochReport:
    epoch: int
    loss: float
    val: dict[str, float] = field(default_factory=dict)  # i2t_r@1, i2t_r@5, t2i_p@10...
    seconds: float = 0.0
    images_per_s: float = 0.0
    kept: bool = True  # its weights are the ones saved (the best validation score so far)

    def line(self) -> str:
        """One line for the log: loss, validation figures, time and speed."""
        val = "  ".join(f"{k} {v:.3f}" for k, v in self.val.items())
        kept = "" if self.kept else "  (not better: the best epoch's weights are kept)"
        return (f"epoch {self.epoch}: loss {self.loss:.4f}  {val}  ({self.seconds:.0f} s, {self.images_per_s:.0f} img/s)"
                + kept)


def _start_model(model: ModelSpec | None, arch: str | None, device: str):  # -> (model, cfg, tokenizer)
    """A trainable open_clip model and the config to save it with."""
    import open_clip

    from imgsearch.models.encoder import OpenClipEncoder

    if (model is None) == (arch is None):
        raise UsageError("give either {param} (fine-tune a model) or {param:arch} (train from scratch).", "model")
    if arch is not None:
        cfg = _arch_config(arch)
        net = open_clip.CLIP(**cfg["model_cfg"])
        size = cfg["model_cfg"]["vision_cfg"].get("image_size", 224)
        net.visual.preprocess_cfg = {"size": size, **cfg["preprocess_cfg"]}
        return net.to(device), cfg
    assert model is not None  # exactly one of model and arch is given
    enc = OpenClipEncoder.load(model, device, precision="fp32")
    return enc.model.float().train(), enc.open_clip_config


def _arch_config(arch: str) -> dict:
    import open_clip

    preprocess = {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"}
    if arch in PRESETS:
        return {"model_cfg": json.loads((CONFIG_DIR / f"{arch}.json").read_text()), "preprocess_cfg": preprocess}
    path = Path(arch).expanduser()
    if path.is_file():
        cfg = json.loads(path.read_text())
        return cfg if "model_cfg" in cfg else {"model_cfg": cfg, "preprocess_cfg": preprocess}
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise UsageError(f"unknown architecture {arch!r} ({{param}}): use {', '.join(PRESETS)}, an open_clip model name, "
                         "or a JSON config file.", "arch")
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess}


def save_model(net, cfg: dict, out: Path) -> None:
    """open_clip's local-dir format: config + safetensors weights, written atomically."""
    from safetensors.torch import save

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous().cpu() for k, v in _unwrapped(net).state_dict().items()}
    with atomic_write(out / WEIGHTS_FILE) as f:
        f.write(save(state))
    with atomic_write(out / CONFIG_FILE, "w") as f:
        f.write(json.dumps(cfg, indent=2))


def _unwrapped(net):
    return getattr(net, "_orig_mod", net)  # torch.compile wraps the module


def contrastive_loss(image_f, text_f, logit_scale, caption_ids):
    """Symmetric InfoNCE; images sharing a caption (class folders) are all positives of it, not negatives."""
    import torch
    import torch.nn.functional as F

    logits = logit_scale * image_f @ text_f.T
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)
    return (torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()
            + torch.sum(-target * F.log_softmax(logits.T, dim=1), dim=1).mean()) / 2


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, progress)))


def retrieval_metrics(image_vectors: np.ndarray, captions: Sequence[str], text_vectors: dict[str, np.ndarray],
                      k: int = 10) -> dict[str, float]:
    """i2t recall@1/@5 over the distinct captions, t2i precision@k and recall@k per distinct caption."""
    from imgsearch.models.zeroshot import text_image_metrics

    names = sorted(text_vectors)
    texts = np.stack([text_vectors[c] for c in names])
    position = {c: n for n, c in enumerate(names)}
    truth = np.array([position[c] for c in captions])
    shared = text_image_metrics(image_vectors, truth, texts, k)
    top5 = np.argsort(-(image_vectors @ texts.T), axis=1)[:, :5]
    return {"i2t_r@1": shared["zero_shot_accuracy"], "i2t_r@5": float(np.mean((top5 == truth[:, None]).any(axis=1))),
            f"t2i_p@{k}": shared[f"t2i_p@{k}"], f"t2i_r@{k}": shared[f"t2i_r@{k}"]}


def train(pairs: Sequence[Pair], out: Path, settings: TrainSettings = TrainSettings(), model: ModelSpec | None = None,
          arch: str | None = None, resume: bool = False, device: str | None = None,
          progress: Progress | None = None) -> list[EpochReport]:
    """Train, validating and checkpointing every epoch; the model in `out` is usable after each epoch."""
    from imgsearch.errors import MissingExtraError
    from imgsearch.models.runtimes import extra_install, torch_installed

    if not torch_installed():
        raise MissingExtraError(f"training needs PyTorch and open_clip: {extra_install('train')} (the train extra).")
    import torch

    from imgsearch.models.encoder import default_device, describe_model

    progress = progress or SilentProgress()
    device = device or default_device()
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    checkpoint = out / CHECKPOINT_FILE
    state = None
    if resume:
        if not checkpoint.is_file():
            raise UsageError(f"nothing to resume: {checkpoint} does not exist (train without {{param}} first).", "resume")
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model, arch = (ModelSpec(**state["model_spec"]) if state["model_spec"] else None), state["arch"]
    elif checkpoint.is_file():
        raise UsageError(f"{out} already holds a training run: add {{param:resume}} to continue it, or choose another "
                         "folder ({param}).", "out")
    net, cfg = _start_model(model, arch, device)
    if state is not None:
        net.load_state_dict(state["model"])
    if settings.lock_image:
        net.lock_image_tower()
    if settings.lock_text:
        net.lock_text_tower()
    info = describe_model(net)

    progress.stage("decoding", None)
    pixels, rows, skipped = decode_all(pairs, info.geometry, settings.workers)
    captions = [pairs[r].caption for r in rows]
    if len(rows) < 2:
        raise UsageError(f"only {len(rows)} readable image(s): training needs at least two pairs of an image and its "
                         "caption.")
    train_rows, val_rows = split_rows(len(rows), captions, settings.val_fraction, settings.seed)
    tokens = _tokenize(net, cfg, sorted(set(captions)))
    caption_id = {c: n for n, c in enumerate(sorted(set(captions)))}
    cap_ids = torch.tensor([caption_id[c] for c in captions])

    params = [p for p in net.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]  # gains, biases, logit_scale: no weight decay (open_clip's rule)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.98), eps=1e-6)
    steps_per_epoch = max(1, len(train_rows) // (settings.batch_size * settings.accumulate))
    total = steps_per_epoch * settings.epochs
    start_epoch, step = 0, 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        start_epoch, step = state["epoch"], state["step"]
    runner: Any = torch.compile(net) if settings.compile and device.startswith("cuda") else net
    mean = torch.tensor(info.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(info.std, device=device).view(1, 3, 1, 1) * 255
    augment = _augmenter(info.geometry) if settings.augment else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    reports = [EpochReport(**r) for r in state["reports"]] if state is not None else []
    gen = np.random.default_rng(settings.seed + start_epoch)
    batches = _Batches(pixels, cap_ids, tokens.to(device), mean, std, augment, device)
    for epoch in range(start_epoch, settings.epochs):
        t0 = time.perf_counter()
        runner.train()
        progress.stage(f"epoch {epoch + 1}/{settings.epochs}", steps_per_epoch, unit="step")
        losses, seen, step = _run_epoch(runner, opt, batches, gen.permutation(train_rows), steps_per_epoch, step,
                                        total, settings, autocast, progress)
        elapsed = time.perf_counter() - t0
        report = EpochReport(epoch + 1, float(np.mean(losses)), {}, elapsed, seen / elapsed)
        if len(val_rows):
            report.val = evaluate_rows(net, tokens, caption_id, pixels[val_rows], [captions[r] for r in val_rows],
                                       mean, std, device)
        report.kept = _better(report, reports)
        reports.append(report)
        if report.kept:
            save_model(net, cfg, out)
        _save_checkpoint(checkpoint, net, opt, epoch + 1, step, model, arch, reports, settings)
        progress.note(report.line())
        best = max(r.epoch for r in reports if r.kept)
        if settings.patience and report.epoch - best >= settings.patience:
            progress.note(f"stopping after epoch {report.epoch}: validation has not improved for {settings.patience} "
                          f"epochs; {out} holds epoch {best}")
            break
    progress.close()
    if skipped:
        (out / "skipped.tsv").write_text("".join(f"{p}\t{r}\n" for p, r in skipped))
    return reports


SCORE = "t2i_p@10"  # what "better" means for a model made to find photos by text


def _better(report: EpochReport, before: Sequence[EpochReport]) -> bool:
    """Whether this epoch beats every kept one on validation (without validation, the latest is kept)."""
    if SCORE not in report.val:
        return True
    kept = [r.val[SCORE] for r in before if r.kept and SCORE in r.val]
    return not kept or report.val[SCORE] > max(kept)


@dataclass
class _Batches:
    """The decoded set on the host, and how a batch of it reaches the model."""

    pixels: np.ndarray
    caption_ids: "torch.Tensor"
    tokens: "torch.Tensor"  # one row per distinct caption, on the device
    mean: "torch.Tensor"
    std: "torch.Tensor"
    augment: Callable | None
    device: str

    def get(self, rows: np.ndarray):  # -> (images, tokens of each distinct caption, which one, ids)
        """A batch: images, the tokens of its distinct captions only (class folders repeat a few captions: the text
        tower runs once per caption, not once per image), each image's row among them, and the caption ids."""
        import torch

        x = torch.from_numpy(self.pixels[rows]).to(self.device).permute(0, 3, 1, 2)
        if self.augment is not None:
            x = self.augment(x)
        ids = self.caption_ids[rows].to(self.device)
        distinct, row = torch.unique(ids, return_inverse=True)
        return (x.float() - self.mean) / self.std, self.tokens[distinct], row, ids


def _run_epoch(runner, opt, batches: _Batches, order: np.ndarray, steps: int, step: int, total: int,
               settings: TrainSettings, autocast, progress: Progress) -> tuple[list[float], int, int]:
    """One pass over `order`; returns (losses, images seen, global step)."""
    import torch

    t0, seen, losses = time.perf_counter(), 0, []
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, settings.lr, settings.warmup_steps)
        opt.zero_grad(set_to_none=True)
        for a in range(settings.accumulate):
            lo = (s * settings.accumulate + a) * settings.batch_size
            x, text, row, ids = batches.get(order[lo:lo + settings.batch_size])
            with autocast:
                img_f, txt_f, scale = runner(x, text)[:3]
                # each image's caption features: the same loss as encoding one caption per image, for less work
                loss = contrastive_loss(img_f.float(), txt_f.float()[row], scale.float(), ids)
            (loss / settings.accumulate).backward()
            losses.append(float(loss.detach()))
            seen += len(ids)
        opt.step()
        with torch.no_grad():  # CLIP clamps the temperature at 100
            _unwrapped(runner).logit_scale.clamp_(0, math.log(100))
        step += 1
        progress.advance(1, loss=float(np.mean(losses[-10:])), img_s=seen / (time.perf_counter() - t0))
    return losses, seen, step


def _tokenize(net, cfg: dict, texts: Sequence[str]):
    import open_clip

    context = cfg["model_cfg"].get("text_cfg", {}).get("context_length", 77)
    return open_clip.tokenize(list(texts), context_length=context)


def _augmenter(geometry) -> Callable:
    """Per-image random resized crop (scale 0.6-1) and horizontal flip, on uint8 tensors."""
    from torchvision.transforms import v2

    t = v2.Compose([v2.RandomResizedCrop((geometry.height, geometry.width), scale=(0.6, 1.0), antialias=True),
                    v2.RandomHorizontalFlip()])

    def run(x):
        import torch

        return torch.stack([t(img) for img in x])
    return run


def evaluate_rows(net, tokens, caption_id: dict[str, int], pixels: np.ndarray, captions: Sequence[str],
                  mean, std, device: str) -> dict[str, float]:
    """Validation metrics of the model as it is now."""
    import torch
    import torch.nn.functional as F

    net.eval()
    with torch.no_grad():
        feats = []
        for lo in range(0, len(pixels), 256):
            x = torch.from_numpy(pixels[lo:lo + 256]).to(device).permute(0, 3, 1, 2)
            feats.append(F.normalize(net.encode_image((x.float() - mean) / std).float(), dim=-1).cpu().numpy())
        names = sorted(set(captions))
        text = F.normalize(net.encode_text(tokens.to(device)[[caption_id[c] for c in names]]).float(), dim=-1)
    net.train()
    return retrieval_metrics(np.concatenate(feats), captions, dict(zip(names, text.cpu().numpy())))


def _save_checkpoint(path: Path, net, opt, epoch: int, step: int, model: ModelSpec | None, arch: str | None,
                     reports: list[EpochReport], settings: TrainSettings) -> None:
    import torch

    with atomic_write(path) as f:
        torch.save({"model": _unwrapped(net).state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                    "step": step, "model_spec": asdict(model) if model else None, "arch": arch,
                    "reports": [asdict(r) for r in reports], "settings": asdict(settings)}, f)
