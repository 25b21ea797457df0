"""Every command an offline model-loading error suggests works when a user does what it says."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.factories import write_photo
from tests.test_cli import cli


@pytest.fixture
def pics(tmp_path: Path) -> Path:
    for i, colour in enumerate(("red", "blue")):
        write_photo(tmp_path / "pics" / f"{i}.png", colour, size=(40, 30), seed=i)
    return tmp_path / "pics"


def _suggestions(stderr: str) -> list[str]:
    """The --model ... options the message suggests, as written."""
    return re.findall(r"give (--model .*?)(?:;|\. |\.$| \(|$)", stderr.replace("\n", " "))


def test_hf_hub_hint_names_the_files_and_the_command_works(tmp_path: Path, pics: Path, tiny_model_dir: Path) -> None:
    failed = cli("index", pics, "-m", "hf-hub:someorg/tiny-clip", "-L", tmp_path / "lib")
    assert failed.exit_code == 1
    message = failed.stderr
    assert "download open_clip_config.json and open_clip_model.safetensors from https://huggingface.co/someorg/" \
           "tiny-clip into one folder" in message
    assert "imgsearch train" in message
    [local, trained] = _suggestions(message)
    assert local == "--model local-dir:FOLDER" and trained == "--model local-dir:OUT"
    folder = tmp_path / "downloaded"  # what the user fetched, as the message says
    shutil.copytree(tiny_model_dir, folder)
    done = cli("index", pics, *local.replace("FOLDER", str(folder)).split(), "-L", tmp_path / "lib", "--workers", "0")
    assert done.exit_code == 0 and "2 new" in done.stderr, done.output


def test_train_hint_works(tmp_path: Path, pics: Path) -> None:
    failed = cli("index", pics, "-m", "hf-hub:someorg/tiny-clip", "-L", tmp_path / "lib")
    trained = _suggestions(failed.stderr)[-1]
    data = tmp_path / "labelled"
    for colour in ("red", "blue"):
        for i in range(12):
            write_photo(data / colour / f"{i}.png", colour, size=(40, 30), seed=100 + i)
    out = tmp_path / "mine"
    made = cli("train", data, "--out", out, "--arch", "tiny", "--epochs", "1", "--batch-size", "8", "--workers", "0")
    assert made.exit_code == 0, made.output
    done = cli("index", pics, *trained.replace("OUT", str(out)).split(), "-L", tmp_path / "lib", "--workers", "0")
    assert done.exit_code == 0 and "2 new" in done.stderr, done.output


def test_name_and_tag_hint_names_the_file_and_the_command_works(tmp_path: Path, pics: Path) -> None:
    import open_clip
    import torch
    from safetensors.torch import save_file

    failed = cli("index", pics, "-L", tmp_path / "lib")  # the default model, not cached here
    assert failed.exit_code == 1
    assert "download open_clip_model.safetensors from https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" \
        in failed.stderr
    [file_hint, _] = _suggestions(failed.stderr)
    assert file_hint == "--model ViT-B-32 --pretrained /path/to/open_clip_model.safetensors"
    weights = tmp_path / "open_clip_model.safetensors"  # stands in for the download: the same architecture
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-32").state_dict()
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(weights))
    del state
    args = file_hint.replace("/path/to/open_clip_model.safetensors", str(weights)).split()
    done = cli("index", pics, *args, "-L", tmp_path / "lib", "--workers", "0")
    assert done.exit_code == 0 and "2 new" in done.stderr, done.output


def test_tag_hint_works(tmp_path: Path, pics: Path, tiny_model_dir: Path) -> None:
    lib = tmp_path / "lib"
    assert cli("index", pics, "-m", f"local-dir:{tiny_model_dir}", "-L", lib, "--workers", "0").exit_code == 0
    failed = cli("search", "x", "--tag", "red", "-L", lib)
    assert failed.exit_code == 2 and "no image is tagged 'red' (--tag)" in failed.stderr, failed.stderr
    # the hint names no flag (core messages are shared by the CLI, the API and the web page): it points at the help
    hints = re.findall(r"`(imgsearch tag[^`]*)`", failed.stderr.replace("\n", " "))
    assert hints == ["imgsearch tag", "imgsearch tag -h"]
    shown = cli(*hints[1].split()[1:])
    assert shown.exit_code == 0 and "Example: imgsearch tag --labels " in shown.stdout
    example = shown.stdout.split("Example: ")[1].split("\n")[0].split()
    assert example[:3] == ["imgsearch", "tag", "--labels"]
    tagged = cli(*example[1:3], "red,blue", "-L", lib)  # the example, with this library's labels
    assert tagged.exit_code == 0, tagged.output
    found = cli("search", "x", "--tag", "red", "-L", lib, "--paths")
    assert found.exit_code == 0 and found.stdout.strip(), found.output
