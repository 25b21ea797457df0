"""Contrastive training, zero-shot tags/classify and eval, through the real open_clip path on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgsearch.config import IndexSettings, ModelSpec, SearchOptions
from imgsearch.filters import Filters
from imgsearch.cli.app import flag_for
from imgsearch.errors import UsageError
from imgsearch.search.query import Term
from imgsearch.models.train_data import read_pairs
from imgsearch.models.training import TrainSettings, contrastive_loss, lr_at, train
from imgsearch.models.zeroshot import folder_metrics, parse_labels
from tests.factories import write_photo
from tests.tinyclip import COLOURS, SHAPES, shape_image


def class_folders(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    """Coloured shapes, one folder per colour (the label)."""
    for c in COLOURS:
        for i in range(per_class):
            (root / c).mkdir(parents=True, exist_ok=True)
            shape_image(c, SHAPES[i % 2], size=48, seed=seed * 1000 + i).save(root / c / f"{i}.png")
    return root


def test_pairs_from_csv_sidecars_and_class_folders(tmp_path: Path) -> None:
    a = write_photo(tmp_path / "side" / "a.jpg", "red", fmt="JPEG")
    a.with_suffix(".txt").write_text("a red thing\n")
    assert [(Path(p.path).name, p.caption) for p in read_pairs(tmp_path / "side")] == [("a.jpg", "a red thing")]
    (tmp_path / "pairs.csv").write_text("path,caption\nside/a.jpg,crimson\n")
    assert read_pairs(tmp_path / "pairs.csv")[0].path == str(tmp_path / "side" / "a.jpg")
    write_photo(tmp_path / "cls" / "green_apple" / "1.png", "green")
    assert read_pairs(tmp_path / "cls", "a {label}")[0].caption == "a green apple"
    with pytest.raises(UsageError, match="label"):
        read_pairs(tmp_path / "cls", "no placeholder")
    (tmp_path / "bad.csv").write_text("file,text\nx,y\n")
    with pytest.raises(UsageError, match="path,caption"):
        read_pairs(tmp_path / "bad.csv")


def test_loss_prefers_aligned_pairs_and_treats_shared_captions_as_positives() -> None:
    import torch

    eye = torch.eye(4)
    ids = torch.arange(4)
    aligned = contrastive_loss(eye, eye, torch.tensor(10.0), ids)
    shuffled = contrastive_loss(eye, eye[[1, 0, 3, 2]], torch.tensor(10.0), ids)
    assert float(aligned) < float(shuffled)
    # each image is closest to the *other* copy of its caption: wrong for one-to-one labels, right for
    # class captions, where every copy is a positive
    images = torch.tensor([[1.0, 0], [0.8, 0.6], [0, 1], [-0.6, 0.8]])
    texts = images[[1, 0, 3, 2]]
    same = torch.tensor([0, 0, 1, 1])
    assert float(contrastive_loss(images, texts, torch.tensor(20.0), same)) + 1.0 < float(
        contrastive_loss(images, texts, torch.tensor(20.0), ids))


def test_schedule_warms_up_then_decays() -> None:
    lrs = [lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.01


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, Path]:
    root = tmp_path_factory.mktemp("train")
    data = class_folders(root / "data")
    out = root / "model"
    settings = TrainSettings(epochs=6, batch_size=32, lr=2e-3, warmup_steps=5, val_fraction=0.25, workers=0)
    reports = train(read_pairs(data, "a photo of a {label} shape"), out, settings, arch="tiny")
    return out, reports, data


def test_training_lowers_loss_and_beats_chance(trained) -> None:
    out, reports, _ = trained
    assert [r.epoch for r in reports] == list(range(1, 7))
    assert reports[-1].loss < reports[0].loss * 0.8
    val = reports[-1].val
    assert val["i2t_r@1"] > 0.5  # 4 captions: chance is 0.25
    assert val["t2i_p@10"] > 0.5
    assert {"open_clip_config.json", "open_clip_model.safetensors", "checkpoint.pt"} <= {p.name for p in out.iterdir()}


def test_trained_model_indexes_and_searches_through_local_dir(trained, tmp_path: Path) -> None:
    from imgsearch.library import Library

    out, _, data = trained
    spec = ModelSpec(f"local-dir:{out}", None)
    with Library.open(tmp_path / "lib", create=True) as lib:
        lib.index([data], spec, IndexSettings(workers=0))
        hits = lib.search([Term(1.0, "text", "a photo of a blue shape")], SearchOptions(k=10))
        assert sum("/blue/" in h.path for h in hits) >= 6
        model = lib.status().models[0]
        assert model.name == f"local-dir:{out.resolve()}"
        assert model.checkpoint_sha256 is not None and len(model.checkpoint_sha256) == 64  # which weights


def test_resume_continues_where_it_stopped(tmp_path: Path, trained) -> None:
    _, _, data = trained
    pairs = read_pairs(data)
    out = tmp_path / "run"
    settings = TrainSettings(epochs=1, batch_size=32, warmup_steps=2, workers=0)
    train(pairs, out, settings, arch="tiny")
    with pytest.raises(UsageError) as refused:
        train(pairs, out, settings, arch="tiny")
    assert "--resume" in refused.value.render(flag_for)  # as the CLI prints it
    reports = train(pairs, out, TrainSettings(epochs=3, batch_size=32, warmup_steps=2, workers=0), resume=True)
    assert [r.epoch for r in reports] == [1, 2, 3]
    with pytest.raises(UsageError, match="nothing to resume"):
        train(pairs, tmp_path / "new", settings, resume=True)


def test_fine_tune_with_locked_image_tower_keeps_it(tmp_path: Path, tiny_model_dir: Path, trained) -> None:
    from safetensors.numpy import load_file

    _, _, data = trained
    out = tmp_path / "lit"
    train(read_pairs(data), out, TrainSettings(epochs=1, batch_size=32, warmup_steps=1, lock_image=True, workers=0),
          model=ModelSpec(f"local-dir:{tiny_model_dir}", None))
    before = load_file(str(tiny_model_dir / "open_clip_model.safetensors"))
    after = load_file(str(out / "open_clip_model.safetensors"))
    visual = [k for k in before if k.startswith("visual.")]
    text = [k for k in before if k.startswith("transformer.")]
    assert visual and all(np.array_equal(before[k], after[k]) for k in visual)
    assert any(not np.array_equal(before[k], after[k]) for k in text)


# --- zero-shot ------------------------------------------------------------------------------------

def test_parse_labels(tmp_path: Path) -> None:
    f = tmp_path / "labels.txt"
    f.write_text("cat  # pets\n\ndog\ncat\n")
    assert parse_labels("bird, cat", f) == ["bird", "cat", "dog"]
    with pytest.raises(UsageError):
        parse_labels("only", None)


def test_folder_metrics_values() -> None:
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.2, 0.9]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.eye(2, dtype=np.float32)
    m = folder_metrics(vectors, np.array([0, 0, 1, 1]), labels, k=2)
    assert m["zero_shot_accuracy"] == 1.0 and m["t2i_p@2"] == 1.0 and m["i2i_p@2"] == 0.5
    m = folder_metrics(vectors, np.array([1, 1, 0, 0]), labels, k=2)
    assert m["zero_shot_accuracy"] == 0.0 and m["t2i_p@2"] == 0.0


def test_recall_at_k_is_the_share_of_a_labels_images_found_and_is_reported_per_label() -> None:
    from imgsearch.models.zeroshot import label_metrics

    rng = np.random.default_rng(0)
    truth = np.array([0] * 20 + [1] * 12)
    vectors = np.eye(2, dtype=np.float32)[truth] + 0.01 * rng.normal(size=(32, 2)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    m = folder_metrics(vectors, truth, np.eye(2, dtype=np.float32), k=10)
    assert m["t2i_p@10"] == 1.0 and m["t2i_r@10"] == pytest.approx((10 / 20 + 10 / 12) / 2)  # not equal to P@10
    per = label_metrics(vectors, truth, np.eye(2, dtype=np.float32), k=10)
    assert per["images"].tolist() == [20, 12] and per["t2i_r@10"].tolist() == pytest.approx([0.5, 10 / 12])


def test_tag_then_search_by_tag(library, tmp_path: Path) -> None:
    for n, colour in enumerate(["red", "red", "green", "blue", "blue", "blue"]):
        write_photo(tmp_path / "pics" / f"{colour}{n}.png", colour, seed=n)
    library.index([tmp_path / "pics"], settings=IndexSettings(workers=0))
    images, written = library.tag(["red", "green", "blue"], ("a {label} photo",), top=1)
    assert (images, written) == (6, 6)
    hits = library.search([Term(1.0, "text", "anything")], SearchOptions(k=10, filters=Filters(tag=("BLUE",))))
    assert sorted(Path(h.path).name for h in hits) == ["blue3.png", "blue4.png", "blue5.png"]
    _, strict = library.tag(["red", "green", "blue"], ("a {label} photo",), top=3, min_probability=0.2)
    assert strict == 6  # replaced, not added to: each image has one label this sure
    reds = library.search([Term(1.0, "text", "x")], SearchOptions(k=10, filters=Filters(tag=("red",))))
    assert sorted(Path(h.path).name for h in reds) == ["red0.png", "red1.png"]
    assert library.status().tags == {"red": 2, "green": 1, "blue": 3}
    write_photo(tmp_path / "pics" / "red0.png", "green", seed=9)  # new pixels: the old tag no longer holds
    library.index([tmp_path / "pics"], settings=IndexSettings(workers=0))
    assert library.status().tags == {"red": 1, "green": 1, "blue": 3}


def test_cli_train_classify_eval(tmp_path: Path, trained) -> None:
    from tests.test_cli import cli

    out, _, data = trained
    red = data / "red" / "0.png"
    result = cli("classify", red, "--labels", "red,green,blue,yellow", "--template", "a photo of a {label} shape",
                 "-m", f"local-dir:{out}", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["labels"][0]["label"] == "red" and 0.25 < row["labels"][0]["probability"] <= 1.0
    bad = cli("classify", tmp_path / "missing.png", "--labels", "a,b", "-m", f"local-dir:{out}")
    assert bad.exit_code == 1 and "missing.png" in bad.stderr
    ev = cli("eval", data, "-m", f"local-dir:{out}", "--template", "a photo of a {label} shape", "--json",
             "--workers", "0")
    assert ev.exit_code == 0, ev.output
    metrics = json.loads(ev.stdout)["metrics"]
    assert metrics["zero_shot_accuracy"] > 0.5 and metrics["t2i_p@10"] > 0.5
    assert metrics["chance_accuracy"] == 0.25
    per_label = json.loads(ev.stdout)["per_label"]
    assert sorted(per_label) == ["blue", "green", "red", "yellow"] and per_label["red"]["images"] == 24
    assert metrics["t2i_r@10"] == pytest.approx(sum(r["t2i_r@10"] for r in per_label.values()) / 4, abs=1e-5)
    table = cli("eval", data, "-m", f"local-dir:{out}", "--template", "a photo of a {label} shape", "--workers", "0")
    assert table.stdout.splitlines()[-4].startswith("blue") and "t2i_r@10" in table.stdout
    again = cli("train", data, "--out", tmp_path / "m", "--arch", "tiny", "--epochs", "1", "--batch-size", "32",
                "--workers", "0")
    assert again.exit_code == 0, again.output
    assert "epoch 1: loss" in again.stderr and "local-dir:" in again.stderr
    assert cli("train", data, "--out", tmp_path / "m2").exit_code == 2  # neither --model nor --arch


def test_long_work_reports_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path, trained) -> None:
    from tests.test_cli import cli

    _, _, data = trained
    out = cli("train", data, "--out", tmp_path / "m", "--arch", "tiny", "--epochs", "1", "--batch-size", "16",
              "--workers", "0", env={"IMGSEARCH_PROGRESS_S": "0"})
    assert out.exit_code == 0, out.output
    lines = [line for line in out.stderr.splitlines() if line.startswith("epoch 1/1: ")]
    assert lines and "/5 steps (" in lines[-1] and "loss" in lines[-1] and "file" not in lines[-1]


def test_gradient_accumulation_sees_every_micro_batch(tmp_path: Path, trained) -> None:
    _, _, data = trained
    pairs = read_pairs(data)  # 96 pairs; 10% held out -> 88 (stratified: 22 per caption) for training
    reports = train(pairs, tmp_path / "acc", TrainSettings(epochs=1, batch_size=16, accumulate=2, workers=0,
                                                            warmup_steps=1, augment=False), arch="tiny")
    assert np.isfinite(reports[0].loss)
    assert reports[0].images_per_s * reports[0].seconds == pytest.approx(64)  # 2 steps x 2 micro-batches x 16
