"""Where a model's weights come from: a ModelSpec checked and fingerprinted, and hub weights found in
the Hugging Face cache (downloaded first only when the hub can be reached).

Nothing here changes process-wide state: the cache is read with `local_files_only`, and whether
the hub is reachable is probed once per process and remembered, so an offline machine fails at
once with the fix instead of retrying for ~45 s.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from imgsearch.config import ModelSpec
from imgsearch.errors import ModelLoadError

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
HUB_PROBE_TIMEOUT_S = 3.0

_reachable: dict[str, bool] = {}  # hub endpoint -> answered the probe (once per process)
_reachable_lock = threading.Lock()


@dataclass(frozen=True)
class Source:
    """A checked ModelSpec: its identity (key) and what the library records about it."""

    name: str  # as recorded: open_clip name, hf-hub:ORG/REPO, or local-dir:/absolute/path
    pretrained: str | None  # tag, or absolute checkpoint path
    key: str  # equal keys give comparable vectors
    sha256: str | None  # local weights: their fingerprint
    from_hub: bool


@dataclass(frozen=True)
class Located:
    """How open_clip's create_model gets the model from files on this machine."""

    model_name: str  # an open_clip architecture, or local-dir:FOLDER
    checkpoint: str | None = None  # a weights file (with an architecture)
    quick_gelu: bool = False  # what the pretrained tag says about the architecture
    preprocess: dict = field(default_factory=dict)  # the pretrained tag's preprocessing (mean, std, ...)


def file_sha256(paths: list[Path]) -> str:
    """sha256 over the bytes of several files, in the given order."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def resolve_source(spec: ModelSpec) -> Source:
    """Validate a ModelSpec without loading weights; local files are fingerprinted."""
    import open_clip  # heavy: only when a model is really needed

    name = spec.name.strip()
    if not name:
        raise ModelLoadError("empty model name: give {param} NAME (see `python -m open_clip list` for names)", "model")
    if name.startswith(LOCAL_DIR) or (not name.startswith(HF_HUB) and Path(name).expanduser().is_dir()):
        return _local_dir_source(Path(name.removeprefix(LOCAL_DIR)).expanduser())
    if name.startswith(HF_HUB):
        return Source(name, None, name, None, from_hub=True)
    arch = name.replace("/", "-")
    if arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"unknown open_clip model '{name}'.{hint} Or give local-dir:DIR or hf-hub:ORG/REPO.",
                             "model")
    pretrained = (spec.pretrained or "").strip()
    if not pretrained:
        raise ModelLoadError(
            f"no weights given for {arch}: give {{param}} TAG "
            f"(one of {', '.join(open_clip.list_pretrained_tags_by_model(arch))}) or {{param}} FILE.", "pretrained")
    as_path = Path(pretrained).expanduser()
    if as_path.is_file():
        path = as_path.resolve()
        sha = file_sha256([path])
        return Source(arch, str(path), f"{arch}|sha256:{sha}", sha, from_hub=False)
    if open_clip.get_pretrained_cfg(arch, pretrained):
        return Source(arch, pretrained, f"{arch}|{pretrained}", None, from_hub=True)
    if "/" in pretrained or pretrained.endswith(WEIGHT_SUFFIXES):
        raise ModelLoadError(f"checkpoint file not found: {as_path}", "pretrained")
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
    raise ModelLoadError(f"'{pretrained}' is not a pretrained tag of {arch} (known: {tags}) nor an existing file.",
                         "pretrained")


def _local_dir_source(path: Path) -> Source:
    path = path.resolve()
    config = path / CONFIG_FILE
    if not path.is_dir():
        raise ModelLoadError(f"model folder not found: {path}", "model")
    if not config.is_file():
        raise ModelLoadError(f"{path} is not an open_clip model folder: {CONFIG_FILE} is missing.", "model")
    weights = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not weights:
        raise ModelLoadError(f"{path} has {CONFIG_FILE} but no weights (*.safetensors, *.bin, *.pth).", "model")
    sha = file_sha256([config, *weights])
    return Source(f"{LOCAL_DIR}{path}", None, f"local-dir|sha256:{sha}", sha, from_hub=False)


def locate(src: Source) -> Located:
    """The files to build `src` from; hub weights are found in (or first downloaded to) the cache."""
    if not src.from_hub:
        return Located(src.name, src.pretrained)
    if src.name.startswith(HF_HUB):
        repo = src.name.removeprefix(HF_HUB)
        config = _hub_file(src, repo, [CONFIG_FILE])
        weights = _hub_file(src, repo, _weight_names(None))
        if weights.parent != config.parent:  # one snapshot folder holds both, as open_clip's local-dir wants
            raise ModelLoadError(f"the cached files of {src.name} are from different revisions: download it again")
        return Located(f"{LOCAL_DIR}{config.parent}")
    import open_clip
    from open_clip.transform import merge_preprocess_dict

    cfg = open_clip.get_pretrained_cfg(src.name, src.pretrained)
    if cfg.get("file"):
        checkpoint = Path(cfg["file"])
    elif cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])  # 'org/repo/' (default file) or 'org/repo/file.bin'
        checkpoint = _hub_file(src, repo, _weight_names(filename or None))
    else:
        checkpoint = _url_file(src, cfg["url"])
    return Located(src.name, str(checkpoint), bool(cfg.get("quick_gelu", False)), merge_preprocess_dict({}, cfg))


def _weight_names(filename: str | None) -> list[str]:
    """A hub repo's weight files in open_clip's order of preference (safetensors first)."""
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    name = filename or HF_WEIGHTS_NAME
    if name == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME, name]
    if name.endswith((".bin", ".pth")):
        return [name[:-4] + ".safetensors", name]
    return [name]


def _hub_file(src: Source, repo: str, names: list[str]) -> Path:
    """The first of `names` in the repo's cached snapshot; downloaded when none is cached and the hub answers."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    for name in names:
        try:
            return Path(hf_hub_download(repo, name, cache_dir=constants.HF_HUB_CACHE, local_files_only=True))
        except LocalEntryNotFoundError:
            continue
    if not hub_reachable():
        weights = names[0] if names != [CONFIG_FILE] else _weight_names(None)[0]
        raise ModelLoadError(offline_message(src, f"https://huggingface.co/{repo}", weights))
    last: Exception | None = None
    for name in names:
        try:
            return Path(hf_hub_download(repo, name, cache_dir=constants.HF_HUB_CACHE))
        except EntryNotFoundError as exc:  # this repo has the other variant
            last = exc
        except Exception as exc:  # noqa: BLE001 (network, auth, disk: all end the same way)
            raise ModelLoadError(f"cannot download {name} of {src.name} from the Hugging Face hub: "
                                 f"{type(exc).__name__}: {exc}") from exc
    raise ModelLoadError(f"{repo} on the Hugging Face hub has none of {', '.join(names)}: {last}")


def _url_file(src: Source, url: str) -> Path:
    """A checkpoint open_clip downloads by URL, from its cache folder (~/.cache/clip) or the network."""
    from open_clip.pretrained import download_pretrained_from_url

    cached = Path("~/.cache/clip").expanduser() / os.path.basename(url)
    if cached.is_file():
        return cached
    host = urlparse(url)
    if not _reachable_host(host.hostname or "", host.port or 443):
        raise ModelLoadError(offline_message(src, url, cached.name, cache=cached.parent))
    try:
        return Path(download_pretrained_from_url(url))
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot download {url}: {type(exc).__name__}: {exc}") from exc


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub can be reached: not in offline mode, and its host accepts a connection
    (probed once per process)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    with _reachable_lock:
        if constants.ENDPOINT not in _reachable:
            url = urlparse(constants.ENDPOINT)
            _reachable[constants.ENDPOINT] = _reachable_host(
                url.hostname or "", url.port or (443 if url.scheme == "https" else 80), timeout_s)
        return _reachable[constants.ENDPOINT]


def _reachable_host(host: str, port: int, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def offline_message(src: Source, where: str, filename: str, cache: Path | None = None) -> str:
    """Why the weights are unavailable, and every way to get a working model without network access."""
    from huggingface_hub import constants

    what = src.name + (f" (pretrained '{src.pretrained}')" if src.pretrained else "")
    where_cached = f"open_clip's download cache ({cache})" if cache else f"the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if src.name.startswith(HF_HUB):
        local = (f"download {CONFIG_FILE} and {filename} from {where} into one folder and give "
                 f"{{param:model}} local-dir:FOLDER")
    else:
        local = (f"download {filename} from {where} and give {{param:model}} {src.name} "
                 f"{{param:pretrained}} /path/to/{filename}")
    return (f"cannot load model {what}: its weights are not in {where_cached} and the hub cannot be "
            f"reached. Fix: run once with internet access to download them; or {local}; or train a model on "
            "your own photos with `imgsearch train` and give {param:model} local-dir:OUT.")
