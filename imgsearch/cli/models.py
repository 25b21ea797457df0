"""`imgsearch train`, `classify`, `tag`, `eval`: make a model fit your photos, and use it for labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any, Optional, TypeVar

import typer

from imgsearch.cli.app import (HELP, LibraryOpt, ModelOpt, PretrainedOpt, TqdmProgress, app, err, handled, model_spec,
                           open_library)
from imgsearch.config import Precision, Runtime
from imgsearch.errors import UsageError

T = TypeVar("T")


@app.command()
def train(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="A CSV (path,caption), a folder with NAME.txt captions beside the "
                                              "images, or a folder of class folders.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained model (open_clip local-dir).")],
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    arch: Annotated[Optional[str], typer.Option(
        help="Train from scratch: small, tiny, an open_clip model name, or a JSON config file.")] = None,
    template: Annotated[str, typer.Option(help="Caption for class folders.")] = "a photo of a {label}",
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the data (small on 3,000 photos: ~25 min on 2 cores).")] = 40,
    patience: Annotated[int, typer.Option(min=0, help="Stop after this many epochs without a better validation "
                                                      "score (0: never); the best epoch is kept.")] = 10,
    batch_size: Annotated[int, typer.Option(min=2)] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warmup then cosine).")] = 5e-4,
    weight_decay: Annotated[float, typer.Option()] = 0.1,
    warmup: Annotated[int, typer.Option(help="Warmup steps.")] = 50,
    accumulate: Annotated[int, typer.Option(min=1, help="Micro-batches per optimiser step.")] = 1,
    val_fraction: Annotated[float, typer.Option(help="Share of pairs held out for validation.")] = 0.1,
    lock_image: Annotated[bool, typer.Option("--lock-image", help="Keep the image tower fixed (LiT).")] = False,
    lock_text: Annotated[bool, typer.Option("--lock-text", help="Keep the text tower fixed.")] = False,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Random crops and flips.")] = True,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (CUDA).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    workers: Annotated[int, typer.Option(help="Decode processes (-1: one per core).")] = -1,
) -> None:
    """Train a CLIP model on your own image-caption pairs (contrastive, from scratch or fine-tuning)."""
    import time

    from imgsearch import TrainSettings, read_pairs
    from imgsearch import train as run_training

    with handled():
        if not 0 <= val_fraction < 1:
            raise UsageError("--val-fraction must be in [0, 1).")
        pairs = read_pairs(data, template)
        settings = TrainSettings(epochs=epochs, patience=patience, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                 warmup_steps=warmup, accumulate=accumulate, val_fraction=val_fraction,
                                 lock_image=lock_image, lock_text=lock_text, augment=augment,
                                 compile=compile_model, seed=seed, workers=workers)
        err(f"{len(pairs)} pairs, {len({p.caption for p in pairs})} distinct captions")
        start = time.perf_counter()
        try:
            reports = run_training(pairs, out.expanduser(), settings,
                                   None if resume else model_spec(model, pretrained), None if resume else arch,
                                   resume=resume, progress=TqdmProgress())
        except KeyboardInterrupt:
            err(f"Interrupted: every finished epoch is saved in {out}; continue with the same command and --resume.")
            raise typer.Exit(130) from None
    last = reports[-1] if reports else None
    val = "  ".join(f"{k} {v:.3f}" for k, v in last.val.items()) if last else ""
    err(f"Trained {len(reports)} epoch(s) in {time.perf_counter() - start:.0f} s; {val}. "
        f"Use it: imgsearch index FOLDER --model local-dir:{out}")


def _with_model(library: Optional[Path], model: Optional[str], pretrained: Optional[str],
                alone: Callable[[Any], T], in_library: Callable[[Any], T]) -> T:
    """`alone(encoder)` when --model is given (no library needed), else `in_library(lib)` with its own model."""
    spec = model_spec(model, pretrained)
    if spec is not None:
        from imgsearch import load_encoder

        return alone(load_encoder(spec))
    with open_library(library) as lib:
        return in_library(lib)


LabelsOpt = Annotated[Optional[str], typer.Option("--labels", help="Comma-separated labels.")]
LabelsFileOpt = Annotated[Optional[Path], typer.Option(help="Labels, one per line (# comments).")]
TemplateOpt = Annotated[Optional[list[str]], typer.Option(
    "--template", help="Prompt template with {label} (repeatable; averaged) [default: 6 CLIP-style prompts].")]


@app.command()
def classify(
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE", help="Image files.", show_default=False)],
    labels: LabelsOpt = None,
    labels_file: LabelsFileOpt = None,
    template: TemplateOpt = None,
    top: Annotated[int, typer.Option("--top", "-k", help="Labels shown per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Zero-shot: the probability of each label for each image."""
    from imgsearch import classify as run_classify
    from imgsearch import parse_labels

    with handled():
        names = parse_labels(labels, labels_file)
        paths, templates = [str(p) for p in images], tuple(template or ())
        results = _with_model(library, model, pretrained, lambda enc: run_classify(enc, paths, names, templates),
                              lambda lib: lib.classify(paths, names, templates))
    failed = 0
    for path, probs in results:
        if isinstance(probs, str):
            failed += 1
            err(f"{path}: {probs}")
        elif as_json:
            sys.stdout.write(json.dumps({"path": path, "labels": [{"label": k, "probability": round(v, 6)}
                                                                   for k, v in probs[:top]]}, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(f"{path}\t" + "\t".join(f"{k} {v:.3f}" for k, v in probs[:top]) + "\n")
    if failed:
        raise typer.Exit(1)


@app.command(name="tag")
def tag_images(
    labels: LabelsOpt = None,
    labels_file: LabelsFileOpt = None,
    template: TemplateOpt = None,
    top: Annotated[int, typer.Option(help="Labels kept per image.")] = 1,
    min_prob: Annotated[float, typer.Option(help="Keep a label only at this probability or above.")] = 0.0,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Zero-shot tag every indexed image (from its stored vector); then: imgsearch search ... --tag LABEL.

    Example: imgsearch tag --labels beach,mountains,city,food,pets
    """
    from imgsearch import parse_labels

    with handled():
        names = parse_labels(labels, labels_file)
        with open_library(library) as lib:
            images, written = lib.tag(names, tuple(template or ()), top, min_prob, model_spec(model, pretrained))
    err(f"Tagged {images} image(s) with {len(names)} label(s): {written} tag(s) written. "
        f"Filter with: imgsearch search QUERY --tag {names[0]!r}")


@app.command(name="eval")
def evaluate(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="A folder with one sub-folder of images per label.",
                                           show_default=False)],
    template: TemplateOpt = None,
    k: Annotated[int, typer.Option("--top", "-k", help="How many top results count, for precision@k and recall@k.",
                                   min=1)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    workers: Annotated[int, typer.Option(help="Decode processes (-1: one per core).")] = -1,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Measure a model on a labelled folder: text->image P@k and R@k, zero-shot accuracy, image->image P@k."""
    from dataclasses import asdict

    from imgsearch import check_templates, evaluate_folder

    with handled():
        templates = check_templates(tuple(template or ()))
        report = _with_model(library, model, pretrained, lambda enc: evaluate_folder(enc, folder, templates, k, workers),
                             lambda lib: lib.evaluate(folder, templates, k, workers))
    if as_json:
        sys.stdout.write(json.dumps(asdict(report), indent=2) + "\n")
    else:
        sys.stdout.write(f"{report.images} images, {len(report.labels)} labels, {len(report.templates)} template(s)\n")
        sys.stdout.write("".join(f"{name:<20} {value:.4f}\n" for name, value in report.metrics.items()))
        width = max(len(label) for label in report.labels)
        columns = list(next(iter(report.per_label.values())))
        sys.stdout.write(f"\n{'label':<{width}}  " + "  ".join(f"{c:>9}" for c in columns) + "\n")
        sys.stdout.write("".join(f"{label:<{width}}  " + "  ".join(
            f"{v:>9}" if isinstance(v, int) else f"{v:>9.3f}" for v in row.values()) + "\n"
            for label, row in report.per_label.items()))
    if report.skipped:
        err(f"{len(report.skipped)} image(s) could not be read, e.g. {report.skipped[0][0]}: {report.skipped[0][1]}")


model_app = typer.Typer(help="Models: export one to run without PyTorch.", no_args_is_help=True, **HELP)
app.add_typer(model_app, name="model")


@model_app.command(name="export")
def export_model(
    model: Annotated[str, typer.Argument(help="An open_clip model: NAME (with --pretrained), hf-hub:ORG/REPO or "
                                              "local-dir:DIR.", show_default=False, metavar="MODEL")],
    out: Annotated[Path, typer.Option("--out", "-o", help="A new folder for the export.", show_default=False,
                                      metavar="DIR")],
    pretrained: PretrainedOpt = None,
    runtime: Annotated[str, typer.Option(help="onnx (runs on ONNX Runtime and OpenVINO) or openvino.",
                                         metavar="RUNTIME")] = Runtime.ONNX.value,
    precision: Annotated[str, typer.Option(help="fp32, or int8 (calibrated on --photos).",
                                           metavar="PRECISION")] = Precision.FP32.value,
    photos: Annotated[Optional[list[Path]], typer.Option(
        "--photos", help="A folder of your photos to check the export on (and calibrate int8) [repeatable].",
        show_default=False, metavar="FOLDER")] = None,
) -> None:
    """Export a model to ONNX Runtime or OpenVINO (needs PyTorch): an install without PyTorch then indexes and
    searches with it.

    Example: imgsearch model export local-dir:~/models/mine --out ~/models/mine-onnx --photos ~/Pictures
    """
    from imgsearch import export_model as run_export

    with handled():
        made = run_export(model_spec(model, pretrained), out.expanduser().absolute(), runtime, precision,
                          [p.expanduser() for p in photos or []])
    fidelity = made.export.fidelity
    checked = f"{fidelity['images']} of your photos" if photos else f"{fidelity['images']} random images (--photos: yours)"
    err(f"Exported {model} to {made.folder} ({made.describe()}; mean cosine {fidelity['image_cosine']:.4f} against "
        f"PyTorch on {checked}). Use it: imgsearch index FOLDER --model local-dir:{made.folder}")
