"""Where a model's weights come from: a ModelSpec checked and fingerprinted, and hub weights found in
the Hugging Face cache (downloaded first only when the hub can be reached).

A model is either an open_clip checkpoint (a name and pretrained tag, hf-hub:ORG/REPO, a local-dir: with
open_clip_config.json), which needs PyTorch, or an export (a folder laid out as Immich's, or
immich:NAME, Immich's published export of open_clip weights), which does not. Without PyTorch, an
open_clip name and tag is served by Immich's export of the same weights: same key, same vectors.

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
IMMICH = "immich:"
IMMICH_ORG = "immich-app"  # Immich's exports of open_clip weights: immich-app/ARCH__TAG on the Hugging Face hub
# What an Immich export's repo holds that we read (it also has models for other accelerators: not downloaded).
IMMICH_FILES = ["config.json", "visual/model.onnx", "visual/model.onnx_data", "visual/preprocess_cfg.json",
                "textual/model.onnx", "textual/model.onnx_data", "textual/tokenizer.json", "textual/vocab.json",
                "textual/merges.txt", "textual/tokenizer_config.json", "textual/special_tokens_map.json"]
FINGERPRINT_BYTES = 1 << 20  # an export folder's identity: its configs, and each tower's size, head and tail
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
    exported: bool = False  # an export (a folder, or immich:NAME): runs without PyTorch


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
    """Validate a ModelSpec without loading weights; local files are fingerprinted. Without open_clip installed,
    open_clip names and tags are taken as given (nothing here to check them against)."""
    name = spec.name.strip()
    if not name:
        raise ModelLoadError("empty model name: give {param} NAME (see `python -m open_clip list` for names)", "model")
    if name.startswith(IMMICH):
        repo = immich_repo(name)
        return Source(name, None, immich_key(repo.split("/")[-1]), None, from_hub=True, exported=True)
    if name.startswith(LOCAL_DIR) or (not name.startswith(HF_HUB) and Path(name).expanduser().is_dir()):
        path = Path(name.removeprefix(LOCAL_DIR)).expanduser().resolve()
        from imgsearch.models.runtimes import is_export_folder

        return _export_source(path) if is_export_folder(path) else _local_dir_source(path)
    if name.startswith(HF_HUB):
        return Source(name, None, name, None, from_hub=True)
    arch = name.replace("/", "-")
    pretrained = (spec.pretrained or "").strip()
    as_path = Path(pretrained).expanduser()
    from imgsearch.models.runtimes import torch_installed

    if not torch_installed():
        if not pretrained:
            raise ModelLoadError(f"no weights given for {arch}: give {{param}} TAG or {{param}} FILE.", "pretrained")
        if as_path.is_file():
            path = as_path.resolve()
            sha = file_sha256([path])
            return Source(arch, str(path), f"{arch}|sha256:{sha}", sha, from_hub=False)
        return Source(arch, pretrained, f"{arch}|{pretrained}", None, from_hub=True)
    import open_clip  # heavy: only when a model is really needed

    if arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"unknown open_clip model '{name}'.{hint} Or give local-dir:DIR, hf-hub:ORG/REPO or "
                             "immich:NAME.", "model")
    if not pretrained:
        raise ModelLoadError(
            f"no weights given for {arch}: give {{param}} TAG "
            f"(one of {', '.join(open_clip.list_pretrained_tags_by_model(arch))}) or {{param}} FILE.", "pretrained")
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


def immich_repo(name: str) -> str:
    """immich:NAME (or immich:ORG/NAME) -> the Hugging Face repo of that export."""
    repo = name.removeprefix(IMMICH).strip().strip("/")
    if not repo:
        raise ModelLoadError("empty Immich model name: give {param} immich:NAME, e.g. immich:ViT-B-32__openai", "model")
    return repo if "/" in repo else f"{IMMICH_ORG}/{repo}"


def immich_key(model_name: str) -> str:
    """The key of Immich's export ARCH__TAG: the key of open_clip's ARCH with weights TAG (Immich writes a tag's
    underscores as dashes), so its vectors and PyTorch's are one model's."""
    arch, sep, tag = model_name.partition("__")
    return f"{arch}|{tag.replace('-', '_')}" if sep else f"immich|{model_name}"


def immich_names(arch: str, tag: str) -> list[str]:
    """The names Immich may publish open_clip's ARCH with weights TAG under (dashes first, as its newer exports)."""
    return list(dict.fromkeys([f"{IMMICH_ORG}/{arch}__{tag.replace('_', '-')}", f"{IMMICH_ORG}/{arch}__{tag}"]))


def _export_source(path: Path) -> Source:
    """A folder holding an export: our meta.json names the weights it came from (their key); an export without one
    (Immich's, downloaded by hand) is known by a fingerprint of its configs and towers."""
    from imgsearch.models.runtimes import read_meta

    meta = read_meta(path)
    if meta is not None and meta.get("info", {}).get("key"):
        return Source(f"{LOCAL_DIR}{path}", None, meta["info"]["key"], meta["info"].get("checkpoint_sha256"),
                      from_hub=False, exported=True)
    h = hashlib.sha256()
    for part in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".onnx", ".txt", ".xml",
                                                                                       ".bin", ".onnx_data")):
        h.update(str(part.relative_to(path)).encode())
        size = part.stat().st_size
        h.update(str(size).encode())
        with open(part, "rb") as f:
            h.update(f.read(FINGERPRINT_BYTES))
            if size > 2 * FINGERPRINT_BYTES:
                f.seek(-FINGERPRINT_BYTES, os.SEEK_END)
                h.update(f.read())
    sha = h.hexdigest()
    return Source(f"{LOCAL_DIR}{path}", None, f"export|sha256:{sha}", sha, from_hub=False, exported=True)


def export_folder(src: Source) -> Path:
    """The folder of an exported source: the local folder, or Immich's export from the cache (else downloaded)."""
    if src.name.startswith(IMMICH):
        return _immich_download(src, [immich_repo(src.name)])
    return Path(src.name.removeprefix(LOCAL_DIR))


def immich_equivalent(src: Source) -> Path:
    """Immich's export of an open_clip name and tag (what a torch-free install encodes with)."""
    return _immich_download(src, immich_names(src.name, src.pretrained or ""))


def _immich_download(src: Source, repos: list[str]) -> Path:
    """The first of `repos` in the Hugging Face cache; else downloaded, when the hub can be reached."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for repo in repos:
        try:
            return Path(snapshot_download(repo, allow_patterns=IMMICH_FILES, cache_dir=constants.HF_HUB_CACHE,
                                          local_files_only=True))
        except LocalEntryNotFoundError:
            continue
    if not hub_reachable():
        raise ModelLoadError(immich_offline_message(src, repos[0]))
    last: Exception | None = None
    for repo in repos:
        try:
            return Path(snapshot_download(repo, allow_patterns=IMMICH_FILES, cache_dir=constants.HF_HUB_CACHE))
        except Exception as exc:  # not found, network, auth, disk: the next name, else the message
            last = exc
    raise ModelLoadError(f"cannot download {' or '.join(repos)} from the Hugging Face hub: {type(last).__name__}: "
                         f"{last}")


def cached_default() -> Path | None:
    """Where the default model's weights are in the Hugging Face cache (open_clip's with PyTorch, else Immich's
    export), or None: nothing is downloaded here."""
    from huggingface_hub import constants, try_to_load_from_cache

    from imgsearch.config import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from imgsearch.models.runtimes import torch_installed

    if torch_installed():
        import open_clip

        repo, filename = os.path.split(open_clip.get_pretrained_cfg(DEFAULT_MODEL, DEFAULT_PRETRAINED).get("hf_hub", ""))
        wanted = [(repo, name) for name in _weight_names(filename or None)] if repo else []
    else:
        wanted = [(repo, "visual/model.onnx") for repo in immich_names(DEFAULT_MODEL, DEFAULT_PRETRAINED)]
    for repo, name in wanted:
        found = try_to_load_from_cache(repo, name, cache_dir=constants.HF_HUB_CACHE)
        if isinstance(found, str):
            return Path(found).parent.parent if name.startswith("visual/") else Path(found).parent
    return None


def immich_offline_message(src: Source, repo: str) -> str:
    """Why an export is unavailable offline, and every way to a working model."""
    from huggingface_hub import constants

    from imgsearch.models.runtimes import extra_install

    what = src.name + (f" (pretrained '{src.pretrained}')" if src.pretrained else "")
    why = ("" if src.name.startswith(IMMICH) else
           f"without PyTorch it is encoded by Immich's ONNX export of those weights ({repo}), which ")
    return (f"cannot load model {what}: {why or 'it '}is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
            "and the hub cannot be reached. Fix: run once with internet access to download it; or download "
            f"config.json, visual/ and textual/ from https://huggingface.co/{repo} into one folder and give "
            "{param:model} local-dir:FOLDER; or install PyTorch and open_clip (" + extra_install() + ") to load "
            "open_clip checkpoints.")


def _local_dir_source(path: Path) -> Source:
    config = path / CONFIG_FILE
    if not path.is_dir():
        raise ModelLoadError(f"model folder not found: {path}", "model")
    if not config.is_file():
        raise ModelLoadError(f"{path} is not a model folder: it holds neither {CONFIG_FILE} (open_clip) nor "
                             "config.json, visual/ and textual/ (an export).", "model")
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
        except Exception as exc:  # network, auth, disk: all end the same way
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
    except Exception as exc:
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
