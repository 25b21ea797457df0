"""Import direction and start-up cost: the CLI and the decode workers never import torch."""

from __future__ import annotations

import subprocess
import sys


def modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_cli_import_stays_light() -> None:
    loaded = modules_after("import imgsearch.cli")
    assert "torch" not in loaded and "open_clip" not in loaded and "faiss" not in loaded


def test_decode_worker_modules_do_not_import_torch_or_sqlalchemy() -> None:
    loaded = modules_after("import imgsearch.images.loader")
    assert "torch" not in loaded and "sqlalchemy" not in loaded


def test_core_never_imports_cli_search_or_indexer() -> None:
    loaded = modules_after("import imgsearch.store, imgsearch.store.engine, imgsearch.vectors.index, imgsearch.models.encoder, "
                           "imgsearch.dups.grouping, imgsearch.dups.actions, imgsearch.models.zeroshot")
    assert not {"imgsearch.cli", "imgsearch.search.query", "imgsearch.search.ranking", "imgsearch.library"} & loaded
    assert not any(m.startswith("indexer") for m in loaded)


def test_the_store_imports_no_image_or_model_code() -> None:
    loaded = modules_after("import imgsearch.store, imgsearch.store.engine")
    assert not {"PIL", "torch", "open_clip", "faiss"} & loaded
    assert not any(m.startswith(("imgsearch.images", "imgsearch.models")) for m in loaded)


def test_importing_imgsearch_leaves_pillows_bomb_check_alone() -> None:
    """Only opening an image through imgsearch switches Pillow's own limit off (imgsearch checks its own first)."""
    code = ("from PIL import Image\ndefault = Image.MAX_IMAGE_PIXELS\n"
            "import imgsearch.library, imgsearch.images.decode, imgsearch.images.loader, indexer.pipeline\n"
            "imported = Image.MAX_IMAGE_PIXELS\n"
            "import io\nfrom imgsearch.images.decode import open_rgb\ndata = io.BytesIO()\n"
            "Image.new('RGB', (8, 8)).save(data, 'PNG')\nopen_rgb(io.BytesIO(data.getvalue()), 10_000)\n"
            "print(default, imported, Image.MAX_IMAGE_PIXELS)")
    default, imported, opened = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                               check=True).stdout.split()
    assert imported == default != "None" and opened == "None"


def test_hash_workers_and_training_stay_light() -> None:
    assert "torch" not in modules_after("import imgsearch.dups.evidence")  # its pool's workers hash, never encode
    assert "imagehash" not in modules_after("import imgsearch.library")  # scipy only when hashing
    assert "torch" not in modules_after("import imgsearch.models.training")  # torch only once training starts


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "imgsearch", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "index" in out.stdout and "search" in out.stdout


def test_public_api_names_resolve() -> None:
    import imgsearch

    for name in imgsearch.__all__:
        value = getattr(imgsearch, name)
        assert value.__name__ == name if not name.isupper() else value is getattr(imgsearch.filters, name)
