"""Encoding through OpenVINO and ONNX Runtime: exports of a trained tiny CLIP pass the fidelity gate on real photos
(fp32 and int8), index runs use and reuse them, a cold text query answered by one never imports torch, and every
failure ends in PyTorch with a warning or in a message naming the fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.errors import ModelLoadError
from imgsearch.library import Library
from imgsearch.models import runtimes
from imgsearch.models.encoder import OpenClipEncoder
from imgsearch.models.export import (TOKEN_PROBES, FidelityGate, encoder_for_indexing, export, measure,
                                     sample_photos, save_tokenizer)
from imgsearch.models.runtimes import ExportedEncoder, Tokens
from imgsearch.progress import SilentProgress

ROOT = Path(__file__).resolve().parent.parent
CLOTHING = Path(__file__).resolve().parent / "data" / "clothing"  # 80 real CC0 photos, 8 per class, downscaled
EXPORTED = ["openvino", "onnx"]


def run_cli(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgsearch", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def torch_encoder(trained_model_dir: Path) -> OpenClipEncoder:
    return OpenClipEncoder.load(ModelSpec(f"local-dir:{trained_model_dir}", None), device="cpu")


@pytest.fixture(scope="module")
def real_photos(torch_encoder: OpenClipEncoder) -> np.ndarray:
    """80 real photos (tests/data/clothing) at the model's geometry."""
    photos = sample_photos([CLOTHING], torch_encoder.info.geometry, 80)
    assert len(photos) == 80
    return photos


def batched(fn, photos: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(photos[i: i + 32]) for i in range(0, len(photos), 32)])


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("runtime", EXPORTED)
def test_export_reproduces_the_trained_model_on_real_photos(runtime: str, precision: str, tmp_path: Path,
                                                             torch_encoder: OpenClipEncoder,
                                                             real_photos: np.ndarray) -> None:
    calibration, held_out = real_photos[:56], real_photos[56:]
    made = export(torch_encoder, runtimes.default_exports_dir(), runtime, precision, calibration)  # kept for later tests
    assert made.warnings == []
    enc = made.encoder
    assert (enc.export.runtime, enc.export.precision, enc.info) == (runtime, precision, torch_encoder.info)
    assert enc.export.fidelity["image_cosine"] >= 0.995 and enc.export.fidelity["overlap"] >= 0.95
    # photos the export never saw: the same gate, measured here
    cosine, overlap = measure(batched(torch_encoder.encode_pixels, held_out), batched(enc.encode_pixels, held_out))
    assert cosine >= 0.995 and overlap >= 0.95, (cosine, overlap)
    # text -> image search: the same top 10 for colour and clothing queries
    queries = ["red", "green", "blue", "yellow", "a dress", "a hat", "shoes", "a red circle", "something dark"]
    ref_images, got_images = batched(torch_encoder.encode_pixels, real_photos), batched(enc.encode_pixels, real_photos)
    ref_text, got_text = torch_encoder.encode_texts(queries), enc.encode_texts(queries)
    assert float(np.min(np.sum(ref_text * got_text, axis=1))) >= 0.995
    for a, b in zip(ref_text @ ref_images.T, got_text @ got_images.T):
        assert len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) >= 9
    # laid out as Immich's exports are: one loader reads both
    assert {p.name for p in enc.folder.iterdir()} >= {"config.json", "visual", "textual", "meta.json"}
    assert (enc.folder / "visual" / "preprocess_cfg.json").is_file() and (enc.folder / "textual" / "model.onnx").is_file()
    assert (enc.folder / "visual" / ("model.xml" if runtime == "openvino" else "model.onnx")).is_file()
    if precision == "int8":  # really quantized: not the fp32 numbers
        assert cosine < 0.999999
        if runtime == "onnx":
            assert any("int8" in p.name for p in (enc.folder / "visual").iterdir())


def test_tokenizer_gives_open_clip_ids_without_torch(tmp_path: Path, torch_encoder: OpenClipEncoder) -> None:
    save_tokenizer(torch_encoder.tokenizer, tmp_path)
    tok = torch_encoder.tokenizer
    ours = Tokens(tmp_path, tok.context_length, tok.sot_token_id, tok.eot_token_id)
    labels = sorted(p.name for p in CLOTHING.iterdir() if p.is_dir())
    texts = [*TOKEN_PROBES, *labels, *(f"a photo of a {label}, taken outdoors" for label in labels),
             "naïve coöperation", "Zürich 2024 – “quotes” and 'single'", "ﬁne ligatures", "日本語とEnglish混在"]
    assert np.array_equal(ours(texts, trim=False), tok(texts).numpy())
    trimmed = ours(["a dog", "a much longer query about a dog"], trim=True)
    assert trimmed.shape == (2, int(np.argmax(trimmed, axis=1).max()) + 1)


@pytest.mark.parametrize("runtime", EXPORTED)
def test_index_exports_once_and_a_cold_query_runs_without_torch(runtime: str, tmp_path: Path, photos_dir: Path,
                                                                trained_model_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_CACHE", str(tmp_path / "cache"))  # an empty cache: this run must export
    pics, lib = tmp_path / "pics", tmp_path / "lib"
    shutil.copytree(photos_dir, pics)
    model = f"local-dir:{trained_model_dir}"
    first = run_cli("index", pics, "-L", lib, "-m", model, "--runtime", runtime, "--workers", "0")
    name = runtimes.display_name(runtime)
    assert first.returncode == 0, first.stderr
    assert f"exporting the model to {name} fp32" in first.stderr and "Warning" not in first.stderr
    assert "6 new" in first.stderr and f"on this machine ({name} {runtimes.version(runtime)} fp32)" in first.stderr
    # a second run finds the export
    shutil.copy(photos_dir / "hat-2.jpg", pics / "hat-again.jpg")
    second = run_cli("index", "-L", lib, "--runtime", runtime, "--workers", "0")
    assert second.returncode == 0 and "exporting" not in second.stderr and "1 new" in second.stderr, second.stderr
    status = run_cli("status", "-L", lib)
    assert f"    exported: {name} {runtimes.version(runtime)} fp32 (" in status.stdout, status.stdout
    exported = json.loads(run_cli("status", "-L", lib, "--json").stdout)["models"][0]["exports"]
    assert [e["runtime"] for e in exported] == [f"{name} {runtimes.version(runtime)} fp32"]
    assert exported[0]["bytes"] > 1000  # the towers' weights are on disk
    assert list((tmp_path / "cache" / "exports").iterdir()) and not (lib / "models").exists()  # once per user

    # a cold CLI query of a new text: the exported text tower, no torch, no open_clip
    probe = textwrap.dedent(f"""
        import json, sys
        from typer.testing import CliRunner
        from imgsearch.cli import app
        got = CliRunner().invoke(app, ["search", "a blue dress", "-L", {str(lib)!r}, "--json"])
        assert got.exit_code == 0, got.output
        print(json.dumps({{"modules": sorted(m for m in ("torch", "open_clip") if m in sys.modules),
                          "hits": [json.loads(line) for line in got.stdout.splitlines()]}}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "IMGSEARCH_RUNTIME": ""})
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["modules"] == []
    # the same ranking as the PyTorch model gives (a Library with its own loader never uses exports)
    from imgsearch.models.encoder import load_encoder

    with Library.open(lib, encoder_loader=load_encoder) as torch_lib:
        expected = torch_lib.search_text("a blue dress", k=10)
    assert [h["path"] for h in answer["hits"]] == [h.path for h in expected]
    assert np.allclose([h["score"] for h in answer["hits"]], [h.score for h in expected], atol=0.01)


def test_vectors_from_runtimes_are_interchangeable(tmp_path: Path, photos_dir: Path, trained_model_dir: Path) -> None:
    spec = ModelSpec(f"local-dir:{trained_model_dir}", None)
    stored = {}
    for runtime in ("torch", "openvino", "onnx"):
        with Library.open(tmp_path / runtime, create=True) as lib:
            report = lib.index([photos_dir], spec, IndexSettings(workers=0, runtime=runtime))
            assert report.encoded == 6 and runtimes.display_name(runtime) in report.executor
            lib.export_vectors(tmp_path / f"{runtime}-out")
        keys = json.loads((tmp_path / f"{runtime}-out" / "model.json").read_text())["key"]
        paths = [json.loads(line)["path"] for line in (tmp_path / f"{runtime}-out" / "paths.jsonl").open()]
        vectors = np.load(tmp_path / f"{runtime}-out" / "vectors.npy")
        stored[runtime] = (keys, dict(zip(paths, vectors)))
    ref_keys, ref = stored["torch"]
    for runtime in ("openvino", "onnx"):
        keys, got = stored[runtime]
        assert keys == ref_keys  # one model: the runtime is not part of its identity
        assert sorted(got) == sorted(ref)
        assert min(float(np.dot(ref[p], got[p])) for p in ref) >= 0.995


def test_new_runtime_version_or_changed_weights_export_again(tmp_path: Path, photos_dir: Path, trained_model_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "model"
    shutil.copytree(trained_model_dir, weights)
    spec = ModelSpec(f"local-dir:{weights}", None)
    with Library.open(tmp_path / "lib", create=True) as lib:
        lib.index([photos_dir], spec, IndexSettings(workers=0, runtime="onnx"))
        key = lib.encoder(spec).info.key
        folder = runtimes.find(lib.encoders.exports_dir, key, "onnx", "fp32")
        assert folder is not None and folder.name == f"onnx-{runtimes.version('onnx')}-fp32"
        assert isinstance(lib.encoder_for(None), ExportedEncoder)
        # as if written by another ONNX Runtime version: not used, replaced by the next run
        old = folder.with_name("onnx-1.0.0-fp32")
        folder.rename(old)
        meta = json.loads((old / "meta.json").read_text())
        (old / "meta.json").write_text(json.dumps({**meta, "runtime_version": "1.0.0"}))
        assert runtimes.find(lib.encoders.exports_dir, key) is None
        notes = Recorder()
        lib.index([], spec, IndexSettings(workers=0, runtime="onnx"), notes)
        assert any("exporting the model to ONNX Runtime fp32" in n for n in notes.notes)
        assert folder.is_dir() and not old.exists()
    # weights touched (same bytes, new mtime): the export is not trusted until re-made; queries use PyTorch meanwhile
    st = (weights / "open_clip_model.safetensors").stat()
    os.utime(weights / "open_clip_model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert runtimes.find(runtimes.default_exports_dir(), key) is None
    with Library.open(tmp_path / "lib") as lib:
        assert isinstance(lib.encoder_for(None), OpenClipEncoder)
        assert lib.search_text("red", k=3)


class Recorder(SilentProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_int8_missing_the_gate_is_recorded_and_fp32_used(tmp_path: Path, torch_encoder: OpenClipEncoder,
                                                         real_photos: np.ndarray) -> None:
    strict = FidelityGate(min_cosine=0.9999999, min_overlap=1.0)
    before = export(torch_encoder, tmp_path, "onnx", "fp32", real_photos[:60]).encoder.folder / "meta.json"
    stamp = before.stat().st_mtime_ns
    made = export(torch_encoder, tmp_path, "onnx", "int8", real_photos[:60], strict)
    assert made.encoder.export.precision == "fp32"
    assert made.encoder.folder / "meta.json" == before and before.stat().st_mtime_ns == stamp  # reused, not redone
    assert len(made.warnings) == 1 and made.warnings[0].startswith("int8 was not kept for this model (mean cosine")
    key = torch_encoder.info.key
    assert runtimes.rejected(tmp_path, key, "onnx", "int8") is not None
    assert runtimes.find(tmp_path, key, "onnx", "int8") is None
    # the next run goes straight to fp32: no new export, the reason in its warnings
    notes = Recorder()
    enc, warnings = encoder_for_indexing(torch_encoder.info.key, "cpu", tmp_path, "onnx", "int8", [], notes,
                                         lambda: torch_encoder, lambda: torch_encoder)
    assert isinstance(enc, ExportedEncoder) and enc.export.precision == "fp32" and notes.notes == []
    assert warnings[0].startswith("int8 was not kept for this model")


def test_export_failure_falls_back_to_pytorch(tmp_path: Path, photos_dir: Path, trained_model_dir: Path) -> None:
    lib = tmp_path / "lib"
    model = f"local-dir:{trained_model_dir}"
    assert run_cli("index", photos_dir, "-L", lib, "-m", model, "--workers", "0").returncode == 0
    (tmp_path / "cache").write_text("not a folder")  # the export cannot be written
    got = run_cli("index", "-L", lib, "--runtime", "openvino", "--rebuild", "--workers", "0",
                  env={"IMGSEARCH_CACHE": str(tmp_path / "cache")})
    assert got.returncode == 0, got.stderr
    assert "Warning: could not export the model to OpenVINO (" in got.stderr
    assert ": encoding with PyTorch instead" in got.stderr and "(PyTorch " in got.stderr
    found = run_cli("search", "red", "-L", lib, "--json")
    assert found.returncode == 0 and len(found.stdout.splitlines()) == 6


def test_default_runtime_on_a_cpu_is_the_fastest_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGSEARCH_RUNTIME", raising=False)
    assert runtimes.choose(None, "cpu") == "openvino"
    assert runtimes.choose(None, "cuda") == "torch"
    assert runtimes.choose("onnx", "cuda") == "onnx"
    monkeypatch.setenv("IMGSEARCH_RUNTIME", "onnx")
    assert runtimes.choose(None, "cpu") == "onnx"
    monkeypatch.setenv("IMGSEARCH_RUNTIME", "openvin")
    with pytest.raises(ModelLoadError, match="IMGSEARCH_RUNTIME=openvin is not a runtime: set it to one of torch"):
        runtimes.choose(None, "cpu")


def test_missing_runtime_names_the_install_command(tmp_path: Path, photos_dir: Path, trained_model_dir: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['openvino'] = None  # as if not installed\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))}
    got = run_cli("index", photos_dir, "-L", tmp_path / "lib", "-m", f"local-dir:{trained_model_dir}", "--runtime",
                  "openvino", env=env)
    assert got.returncode == 1 and "OpenVINO is not installed here: pip install openvino (" in got.stderr, got.stderr
    assert "or give --runtime torch" in got.stderr and "Traceback" not in got.stderr
    fix = got.stderr.split("installed here: ")[1].split(" (")[0]
    done = subprocess.run([sys.executable, "-m", *fix.split()], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # installed here already: pip says so
    # the default quietly takes what is installed (ONNX Runtime), and int8 on torch is refused with the fix
    ok = run_cli("index", photos_dir, "-L", tmp_path / "lib", "-m", f"local-dir:{trained_model_dir}", "--workers", "0",
                 env={**env, "IMGSEARCH_RUNTIME": ""})
    assert ok.returncode == 0 and "(ONNX Runtime " in ok.stderr, ok.stderr
    bad = run_cli("index", "-L", tmp_path / "lib", "--runtime", "torch", "--precision", "int8")
    assert bad.returncode == 1 and "int8 needs an exported runtime: give --runtime openvino or onnx" in bad.stderr


def test_a_damaged_export_is_said_to_be_damaged_never_cached_and_made_again(tmp_path: Path, photos_dir: Path,
                                                                             trained_model_dir: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Garbled text-tower weights made NaN vectors: "No results.", rc 0, the NaN cached, and the next `index` used
    the export as it was. Now: every export file is fingerprinted when made; a query says which file is damaged and
    the fix, caches nothing, and the fix (the next `index`) exports the model again by itself."""
    from imgsearch.errors import CorruptError
    from imgsearch.store.orm import TextVector

    monkeypatch.setenv("IMGSEARCH_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(f"local-dir:{trained_model_dir}", None)
    with Library.open(tmp_path / "lib", create=True) as lib:
        lib.index([photos_dir], spec, IndexSettings(workers=0, runtime="onnx"))
        folder = runtimes.find(lib.encoders.exports_dir, lib.encoder(spec).info.key, "onnx", "fp32")
    meta = json.loads((folder / "meta.json").read_text())
    assert {"visual/model.onnx", "textual/model.onnx.data", "config.json"} <= set(meta["files"])
    weights = folder / "textual" / "model.onnx.data"  # the text tower's weights, beside its graph
    weights.write_bytes(np.full(weights.stat().st_size // 4, np.nan, np.float32).tobytes())  # same size
    with Library.open(tmp_path / "lib") as lib:
        with pytest.raises(CorruptError, match=rf"the exported model in {folder} is damaged \(textual/model.onnx.data "
                                               r"changed since it was exported\): run `imgsearch index` .*: it exports "
                                               "the model again"):
            lib.search_text("a brand new query", k=3)
        with lib.session() as session:
            assert session.query(TextVector).filter_by(text="a brand new query").count() == 0
    fixed = run_cli("index", "-L", tmp_path / "lib", "--runtime", "onnx", "--workers", "0")  # the fix, as written
    assert fixed.returncode == 0 and f"the export in {folder} is damaged" in fixed.stderr, fixed.stderr
    assert "exporting the model again" in fixed.stderr
    with Library.open(tmp_path / "lib") as lib:
        assert len(lib.search_text("a brand new query", k=3)) == 3
    truncated = folder / "visual" / "model.onnx.data"
    truncated.write_bytes(truncated.read_bytes()[:1000])  # a torn file: its size alone says so, nothing is run
    assert runtimes.find(runtimes.default_exports_dir(), meta["info"]["key"], "onnx", "fp32") is None


def test_exports_abandoned_by_a_killed_process_are_cleaned_up(tmp_path: Path, torch_encoder: OpenClipEncoder,
                                                              real_photos: np.ndarray) -> None:
    home = runtimes.model_dir(tmp_path, torch_encoder.info.key)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that has ended: its pid names nobody now
    for name, owner in ((".export-killed", str(gone.pid)), (".export-running", str(os.getpid())), (".export-old", None)):
        (home / name).mkdir(parents=True)
        (home / name / "image.onnx.data").write_bytes(bytes(1000))
        if owner:
            (home / name / "pid").write_text(owner)
    export(torch_encoder, tmp_path, "onnx", "fp32", real_photos[:16])
    assert sorted(p.name for p in home.iterdir()) == [".export-running", f"onnx-{runtimes.version('onnx')}-fp32"]
