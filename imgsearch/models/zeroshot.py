"""Zero-shot labels from text prompts (CLIP's recipe): each label's prompt embeddings are averaged over
templates (ensembling), and an image's probabilities are a softmax of scaled cosines over the labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgsearch.models.encoder import Encoder
from imgsearch.errors import ImageError, UsageError
from imgsearch.images.decode import decode_file, default_pixel_limit

DEFAULT_TEMPLATES = ("a photo of a {label}.", "a photo of the {label}.", "a close-up photo of a {label}.",
                     "a cropped photo of a {label}.", "a bright photo of a {label}.", "a photo of my {label}.")


def parse_labels(labels: str | None, labels_file: Path | None) -> list[str]:
    """Labels from 'a,b,c' and/or a file (one per line, # comments); de-duplicated, order kept."""
    found: list[str] = [s.strip() for s in (labels or "").split(",")]
    if labels_file is not None:
        try:
            text = labels_file.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {{param}} {labels_file}: {exc.strerror or exc}", "labels_file") from exc
        found += [line.split("#", 1)[0].strip() for line in text.splitlines()]
    out = list(dict.fromkeys(s for s in found if s))
    if len(out) < 2:
        raise UsageError("give at least two labels: {param} cat,dog,... or {param:labels_file} FILE (one per line).",
                         "labels")
    return out


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    for t in templates:
        if "{label}" not in t:
            raise UsageError(f"{{param}} {t!r} must contain {{label}}, e.g. 'a photo of a {{label}}'.", "templates")
    return tuple(templates) or DEFAULT_TEMPLATES


def label_vectors(encoder: Encoder, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(labels, dim): the normalised mean of each label's normalised prompt embeddings."""
    prompts = [t.format(label=label) for label in labels for t in templates]
    vectors = encoder.encode_texts(prompts).reshape(len(labels), len(templates), -1).mean(axis=1)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def probabilities(image_vectors: np.ndarray, labels: np.ndarray, logit_scale: float) -> np.ndarray:
    """(images, labels) softmax over the labels of the scaled cosines."""
    logits = logit_scale * (image_vectors @ labels.T)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def logit_scale_of(encoder: Encoder) -> float:
    return float(encoder.logit_scale)


def label_metrics(vectors: np.ndarray, truth: np.ndarray, labels: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per label (arrays in label order): its images, text->image precision@k and recall@k of its prompt (of the k
    images it ranks first, the share that are its own; of its own images, the share among those k), and the
    zero-shot accuracy on its images (the best label is the right one)."""
    sims = vectors @ labels.T
    top = np.argsort(-sims.T, axis=1)[:, :k]
    counts = np.bincount(truth, minlength=len(labels))
    hits = np.array([(truth[row] == n).sum() for n, row in enumerate(top)])
    right = np.bincount(truth[sims.argmax(axis=1) == truth], minlength=len(labels))
    return {"images": counts, f"t2i_p@{k}": hits / min(k, len(truth)), f"t2i_r@{k}": hits / np.maximum(1, counts),
            "accuracy": right / np.maximum(1, counts)}


def text_image_metrics(vectors: np.ndarray, truth: np.ndarray, labels: np.ndarray, k: int) -> dict[str, float]:
    """Text->image precision@k and recall@k, averaged over the labels, and zero-shot accuracy over the images."""
    per = label_metrics(vectors, truth, labels, k)
    accuracy = float(per["accuracy"] @ per["images"] / max(1, per["images"].sum()))
    return {f"t2i_p@{k}": float(per[f"t2i_p@{k}"].mean()), f"t2i_r@{k}": float(per[f"t2i_r@{k}"].mean()),
            "zero_shot_accuracy": accuracy}


def folder_metrics(vectors: np.ndarray, truth: np.ndarray, labels: np.ndarray, k: int) -> dict[str, float]:
    """Over a labelled set: text->image precision@k and recall@k of each label's prompt, zero-shot accuracy,
    and image->image precision@k (each image against the others)."""
    image_sims = vectors @ vectors.T
    np.fill_diagonal(image_sims, -np.inf)
    neighbours = np.argsort(-image_sims, axis=1)[:, :k]
    i2i = float(np.mean(truth[neighbours] == truth[:, None]))
    return {**text_image_metrics(vectors, truth, labels, k), f"i2i_p@{k}": i2i, "chance_accuracy": 1.0 / len(labels)}


def classify(encoder: Encoder, paths: Sequence[str], labels: Sequence[str],
             templates: Sequence[str]) -> list[tuple[str, list[tuple[str, float]] | str]]:
    """Per image: (label, probability) best first, or the reason the file could not be read."""
    label_vecs = label_vectors(encoder, labels, check_templates(templates))
    out: list[tuple[str, list[tuple[str, float]] | str]] = []
    for path in paths:
        try:
            pixels = decode_file(str(Path(path).expanduser()), encoder.info.geometry, default_pixel_limit(1)).pixels
        except ImageError as exc:
            out.append((str(path), exc.message))
            continue
        probs = probabilities(encoder.encode_pixels(pixels[None]), label_vecs, logit_scale_of(encoder))[0]
        out.append((str(path), [(labels[i], float(probs[i])) for i in np.argsort(-probs)]))
    return out
