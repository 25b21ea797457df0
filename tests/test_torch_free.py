"""The default install has no PyTorch: indexing and search run on exported models, ours (`imgsearch model export`) or
Immich's (its Hugging Face repos' layout), through one loader. PyTorch and open_clip are blocked in the subprocesses
here (as if not installed: imports fail), the way `.ci/run` also proves it for real in a venv of the plain package."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.config import ModelSpec
from imgsearch.library import Library
from imgsearch.models.encoder import OpenClipEncoder, load_encoder
from imgsearch.models.runtimes import ExportedEncoder
from tests.programs import wait_for_url
from tests.tinyclip import hub_cache_repo, write_immich

ROOT = Path(__file__).resolve().parent.parent
CLOTHING = Path(__file__).resolve().parent / "data" / "clothing"
DEFAULT_REPO = "immich-app/ViT-B-32__laion2b-s34b-b79k"  # Immich's export of the default model's weights


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment in which torch, torchvision and open_clip cannot be imported."""
    blocker = tmp_path_factory.mktemp("no-torch")
    (blocker / "sitecustomize.py").write_text(
        "import sys\nfor name in ('torch', 'torchvision', 'open_clip'):\n    sys.modules[name] = None\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), str(ROOT), os.environ.get("PYTHONPATH")])),
            "IMGSEARCH_RUNTIME": ""}


def run_cli(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgsearch", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def immich_dir(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> Path:
    return write_immich(tmp_path_factory.mktemp("immich") / "ViT-B-32__laion2b-s34b-b79k", trained_model_dir)


@pytest.fixture(scope="module")
def torch_encoder(trained_model_dir: Path) -> OpenClipEncoder:
    return OpenClipEncoder.load(ModelSpec(f"local-dir:{trained_model_dir}", None), device="cpu")


def model_keys(library: Path) -> list[str]:
    with sqlite3.connect(library / "library.db") as db:
        return [row[0] for row in db.execute("SELECT key FROM models")]


def embed_photos(encoder, folder: Path) -> np.ndarray:
    from imgsearch.models.export import sample_photos

    return encoder.encode_pixels(sample_photos([folder], encoder.info.geometry, 40))


def test_immich_layout_reproduces_the_pytorch_model(immich_dir: Path, torch_encoder: OpenClipEncoder,
                                                    tmp_path: Path) -> None:
    """Immich's towers take float pixels and fixed-length int32 ids one at a time, and its tokenizer.json names the
    special tokens its own way: the loader adapts to each, and gives the PyTorch model's vectors and ids."""
    enc = load_encoder(ModelSpec(f"local-dir:{immich_dir}", None))
    assert isinstance(enc, ExportedEncoder)
    # a folder without our meta.json is known by its contents: a copy elsewhere is the same model
    assert enc.info.key.startswith("export|sha256:")
    copy = shutil.copytree(immich_dir, tmp_path / "elsewhere")
    assert load_encoder(ModelSpec(str(copy), None)).info.key == enc.info.key
    assert (enc.info.dim, enc.info.geometry, enc.info.mean) == (torch_encoder.info.dim, torch_encoder.info.geometry,
                                                                torch_encoder.info.mean)
    ref, got = embed_photos(torch_encoder, CLOTHING), embed_photos(enc, CLOTHING)
    assert got.shape == (40, torch_encoder.info.dim)
    assert float(np.min(np.sum(ref * got, axis=1))) >= 0.999
    texts = ["a red circle", "a photo of a dress", "naïve café", "x", " ".join(["word"] * 40)]
    assert float(np.min(np.sum(torch_encoder.encode_texts(texts) * enc.encode_texts(texts), axis=1))) >= 0.999
    assert enc._tokens.sot == 49406 and enc._tokens.eot == 49407


def test_our_export_indexes_and_searches_where_torch_cannot_be_imported(tmp_path: Path, photos_dir: Path,
                                                                        trained_model_dir: Path,
                                                                        no_torch: dict[str, str]) -> None:
    out = tmp_path / "export"
    made = run_cli("model", "export", f"local-dir:{trained_model_dir}", "--out", out, "--photos", CLOTHING)
    assert made.returncode == 0, made.stderr
    assert "Use it: imgsearch index FOLDER --model local-dir:" in made.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert (out / "visual" / "model.onnx").is_file() and meta["fidelity"]["images"] == 64
    # the same folder again is refused, nothing in it touched
    again = run_cli("model", "export", f"local-dir:{trained_model_dir}", "--out", out)
    assert again.returncode == 2 and "exists and is not an empty folder" in again.stderr

    lib = tmp_path / "lib"
    # the suggested command, as written (FOLDER: the photos), in an environment without torch
    suggested = made.stderr.split("Use it: ")[1].split()
    assert suggested[:4] == ["imgsearch", "index", "FOLDER", "--model"]
    indexed = run_cli(*suggested[1:2], photos_dir, *suggested[3:], "-L", lib, "--workers", "0", env=no_torch)
    assert indexed.returncode == 0, indexed.stderr
    assert "6 new" in indexed.stderr and "ONNX Runtime" in indexed.stderr and "Traceback" not in indexed.stderr
    found = run_cli("search", "a red shape", "-L", lib, "--json", env=no_torch)
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    # the ranking PyTorch gives for the same weights (the export keeps the weights' key: one model)
    assert model_keys(lib) == [meta["info"]["key"]]
    with Library.open(tmp_path / "torch-lib", create=True, encoder_loader=lambda s: OpenClipEncoder.load(s)) as ref:
        from imgsearch.config import IndexSettings

        ref.index([photos_dir], ModelSpec(f"local-dir:{trained_model_dir}", None), IndexSettings(workers=0))
        expected = ref.search_text("a red shape", k=10)
    assert [Path(h["path"]).name for h in hits] == [Path(h.path).name for h in expected]
    assert np.allclose([h["score"] for h in hits], [h.score for h in expected], atol=0.01)


def test_the_default_model_without_torch_is_immichs_export_of_its_weights(tmp_path: Path, photos_dir: Path,
                                                                          immich_dir: Path,
                                                                          no_torch: dict[str, str]) -> None:
    lib = tmp_path / "lib"
    # offline, not cached: one message with every way out, and each works as written
    env = {**no_torch, "HF_HUB_CACHE": str(tmp_path / "hub")}
    offline = run_cli("index", photos_dir, "-L", lib, "--workers", "0", env=env)
    assert offline.returncode == 1 and "Traceback" not in offline.stderr, offline.stderr
    message = offline.stderr
    assert f"without PyTorch it is encoded by Immich's ONNX export of those weights ({DEFAULT_REPO})" in message
    assert f"from https://huggingface.co/{DEFAULT_REPO} into one folder and give --model local-dir:FOLDER" in message
    pip = message.split("install PyTorch and open_clip (")[1].split(") to load")[0]
    assert pip.startswith("pip install 'torch>=") and "imgsearch" not in pip  # PyPI's imgsearch is another project
    done = subprocess.run([sys.executable, "-m", *shlex.split(pip)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr  # installed here already: pip says so
    by_hand = run_cli("index", photos_dir, "-L", tmp_path / "by-hand", "--model", f"local-dir:{immich_dir}",
                      "--workers", "0", env=env)
    assert by_hand.returncode == 0 and "6 new" in by_hand.stderr, by_hand.stderr

    # in the hub cache (as a download leaves it): the default model, with no --model at all
    hub_cache_repo(tmp_path / "hub", DEFAULT_REPO, immich_dir)
    first = run_cli("index", photos_dir, "-L", lib, "--workers", "0", env=env)
    assert first.returncode == 0 and "6 new" in first.stderr, first.stderr
    status = json.loads(run_cli("status", "-L", lib, "--json", env=env).stdout)
    model = status["models"][0]
    assert (model["name"], model["pretrained"]) == ("ViT-B-32", "laion2b_s34b_b79k")
    assert model_keys(lib) == ["ViT-B-32|laion2b_s34b_b79k"]  # what PyTorch would record for the same weights
    found = run_cli("search", "a blue shape", "-L", lib, "--json", env=env)
    assert found.returncode == 0 and len(found.stdout.splitlines()) == 6, found.stderr
    # the same vectors as the folder given by hand (one model, whichever way it came)
    ours = {Path(json.loads(h)["path"]).name: json.loads(h)["score"] for h in found.stdout.splitlines()}
    theirs = run_cli("search", "a blue shape", "-L", tmp_path / "by-hand", "--json", env=env)
    assert ours == {Path(json.loads(h)["path"]).name: json.loads(h)["score"] for h in theirs.stdout.splitlines()}


@pytest.mark.parametrize("args, needs", [
    (["index", "{pics}", "--runtime", "torch"], "PyTorch is not installed here: pip install 'torch>="),
    (["index", "{pics}", "-m", "local-dir:{model}"], "is an open_clip checkpoint: loading it needs PyTorch and "
                                                     "open_clip (pip install 'torch>="),
    (["train", "{clothing}", "--out", "{tmp}/trained"], "training needs PyTorch and open_clip: pip install 'torch>="),
    (["model", "export", "local-dir:{model}", "--out", "{tmp}/export"], "loading it needs PyTorch"),
])
def test_what_needs_torch_says_how_to_install_it(args: list[str], needs: str, tmp_path: Path, photos_dir: Path,
                                                 trained_model_dir: Path, no_torch: dict[str, str]) -> None:
    filled = [a.format(pics=photos_dir, model=trained_model_dir, tmp=tmp_path, clothing=CLOTHING) for a in args]
    got = run_cli(*filled, "-L", tmp_path / "lib", env=no_torch) if args[0] == "index" else run_cli(*filled, env=no_torch)
    assert got.returncode == 1, got.stderr
    assert needs in got.stderr and "Traceback" not in got.stderr
    assert [line for line in got.stderr.splitlines() if needs in line][0].startswith("Error: ")  # one line says it all


def readme_block(after: str, lang: str = "") -> str:
    """The first code block after a heading of the README, as a user copies it."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"```{lang}\n", text.index(after)) + len(f"```{lang}\n")
    return text[start:text.index("```", start)]


@pytest.fixture
def new_user(tmp_path: Path, photos_dir: Path, immich_dir: Path, no_torch: dict[str, str]) -> dict[str, str]:
    """A user of the torch-free install: photos in ~/Pictures, `imgsearch` on PATH, the default model in the hub
    cache (as the first index leaves it: here a tiny model under the default's repo name, the tests being offline)."""
    home = tmp_path / "home"
    shutil.copytree(photos_dir, home / "Pictures")
    hub_cache_repo(tmp_path / "hub", DEFAULT_REPO, immich_dir)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "imgsearch").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m imgsearch "$@"\n')
    (bin_dir / "imgsearch").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "IMGSEARCH_LIBRARY")}
    return {**env, **no_torch, "HOME": str(home), "HF_HUB_CACHE": str(tmp_path / "hub"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_the_readme_quick_start_works_as_written(tmp_path: Path, new_user: dict[str, str]) -> None:
    install, index, search, serve = readme_block("## Quick start").strip().splitlines()
    assert install == "pip install ."  # run for real in a fresh virtualenv by .ci/torch_free
    pictures = Path(new_user["HOME"]) / "Pictures"

    def run(line: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=new_user, timeout=600,
                              cwd=tmp_path)

    indexed = run(index)
    assert indexed.returncode == 0 and "6 new" in indexed.stderr and "Traceback" not in indexed.stderr, indexed.stderr
    found = run(search)
    assert found.returncode == 0, found.stderr
    rows = found.stdout.splitlines()
    assert rows[0].split() == ["#", "score", "path"] and len(rows) == 7
    assert all(row.split()[2].startswith(str(pictures)) for row in rows[1:])
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(["bash", "-c", f"exec {serve}"], stdout=out, stderr=subprocess.STDOUT, text=True,
                                  env=new_user, cwd=tmp_path)
    try:
        url = wait_for_url(server, log)
        import httpx

        page = httpx.get(url, timeout=60)
        assert page.status_code == 200 and "<form" in page.text
        api = httpx.get(url.rstrip("/") + "/api/v1/search", params={"q": "a red shape"}, timeout=60)
        assert api.status_code == 200 and len(api.json()["results"]) == 6, api.text
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_readme_python_example_runs_as_a_script(tmp_path: Path, new_user: dict[str, str]) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_block("## Python API", "python"))
    got = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=new_user, timeout=600,
                         cwd=tmp_path)
    assert got.returncode == 0 and "Traceback" not in got.stderr, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].startswith("6 new, 0 changed")
    assert [line.split()[0] for line in lines[1:6]] == ["1", "2", "3", "4", "5"]
    assert sum(line.startswith("like it: ") for line in lines) == 3
    assert lines[-1] == "0 photos of a beach at sunset taken with a Pixel"
