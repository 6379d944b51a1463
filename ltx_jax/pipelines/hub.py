"""Checkpoint paths: a local path as it is, or a hub reference fetched with huggingface_hub, only the files the
loaders read, its size said before the download; and the diffusers folder layout's ``model_index.json``.

    resolve_path("Lightricks/LTX-Video")                                            # the diffusers layout's folders
    resolve_path("Lightricks/LTX-Video/ltxv-2b-0.9.8-distilled.safetensors")        # one Lightricks single file
"""

from __future__ import annotations

import json
import logging
import os
import re

from weight_conversion import CheckpointError

logger = logging.getLogger("ltx_jax")

# The folders of a diffusers-layout repository that the loaders read, and what they read there: every file of the
# tokenizer, configs and safetensors elsewhere (a repository's single files, pickles and extra folders stay behind).
HUB_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler", "latent_upsampler")
_HUB_SUFFIXES = (".json", ".safetensors")
_HUB_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def hub_reference(path: str) -> tuple[str, str | None] | None:
    """``(repo_id, file name or None)`` when ``path`` reads as a hub reference: ``org/name`` (the repository's diffusers
    layout) or ``org/name/file.safetensors`` (one file of it, e.g. a Lightricks single file); None otherwise."""
    parts = path.split("/")
    if len(parts) < 2 or not all(_HUB_REPO_PART.fullmatch(p) for p in parts[:2]) or parts[1].endswith(_HUB_SUFFIXES):
        return None  # (``folder/model.safetensors`` is a local file that is missing)
    if len(parts) == 2:
        return "/".join(parts), None
    file = "/".join(parts[2:])
    if not file.endswith(".safetensors") or any(p in ("", ".", "..") for p in parts[2:]) or "\\" in file:
        return None
    return "/".join(parts[:2]), file


def _size_text(n: int) -> str:
    return f"{n / 1e9:,.2f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def _hub_layout_files(repo_id: str, sizes: dict[str, int | None]) -> list[str]:
    """The files of ``repo_id`` the loaders read: the diffusers layout's (``HUB_COMPONENTS``) when it has
    ``model_index.json``, a one-component folder's (``config.json`` at the root); else a CheckpointError that lists the
    repository's single files, to name one."""
    if "model_index.json" in sizes:
        return [f for f in sizes if f == "model_index.json" or (
            f.split("/")[0] in HUB_COMPONENTS and "/" in f
            and (f.startswith("tokenizer/") or f.endswith(_HUB_SUFFIXES)))]
    if "config.json" in sizes:
        return [f for f in sizes if "/" not in f and f.endswith(_HUB_SUFFIXES)]
    singles = _single_files(repo_id, sizes)
    if not singles:
        raise CheckpointError(f"{repo_id} on the hub holds no diffusers layout (model_index.json) and no .safetensors "
                              "file; pass a local checkpoint.")
    raise CheckpointError(f"{repo_id} on the hub has no diffusers layout (model_index.json); name one of its files: "
                          f"{singles}.")


def _single_files(repo_id: str, sizes: dict[str, int | None]) -> str:
    """The repository's .safetensors files outside the diffusers layout's folders, as ``org/name/file (size)``."""
    return ", ".join(f"{repo_id}/{f} ({_size_text(size or 0)})" for f, size in sizes.items()
                     if f.endswith(".safetensors") and f.split("/")[0] not in HUB_COMPONENTS)


def resolve_path(path: str) -> str:
    """A local path as is; a hub reference (``hub_reference``) fetched with huggingface_hub when it is not a local
    path: ``org/name``'s diffusers layout (the folders the loaders read, not the repository's single files), or the
    one file named by ``org/name/file.safetensors``. The size of what will be fetched is logged first."""
    if os.path.exists(path):
        return path
    reference = hub_reference(path)
    if reference is None:
        raise CheckpointError(f"{path} does not exist (and is not a hub id like Lightricks/LTX-Video or "
                              "Lightricks/LTX-Video/ltxv-2b-0.9.8-distilled.safetensors); pass a diffusers folder, a "
                              "Lightricks .safetensors file or an Orbax folder.")
    try:  # deferred: huggingface_hub (transformers brings it; not ours to require) loads only for a hub id
        import huggingface_hub
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError as e:  # pragma: no cover
        raise CheckpointError(f"{path} is not a local path and huggingface_hub is not installed; pass a "
                              "checkpoint folder or file.") from e
    repo_id, file = reference
    try:
        info = huggingface_hub.HfApi().model_info(repo_id, files_metadata=True)
    except RepositoryNotFoundError:
        raise CheckpointError(f"{path} is neither a local path nor on the hub: there is no repository {repo_id} (a "
                              "private or gated one needs `hf auth login`).") from None
    except (OSError, getattr(huggingface_hub.errors, "HTTPError", OSError)) as e:  # offline, or no connection
        return _from_hub_cache(path, repo_id, file, e)
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    if file is not None and file not in sizes:
        singles = _single_files(repo_id, sizes)
        raise CheckpointError(f"{repo_id} on the hub has no file {file}" + (f"; its single files: {singles}."
                                                                            if singles else "."))
    files = [file] if file is not None else _hub_layout_files(repo_id, sizes)
    cached = [f for f in files
              if isinstance(huggingface_hub.try_to_load_from_cache(repo_id, f, revision=info.sha), str)]
    total = sum(sizes[f] or 0 for f in files if f not in cached)
    logger.warning("fetching %s from the hub: %d file%s, %s%s", path, len(files) - len(cached),
                   "" if len(files) - len(cached) == 1 else "s", _size_text(total),
                   f" ({len(cached)} already in the cache)" if cached else "")
    if file is not None:
        return huggingface_hub.hf_hub_download(repo_id, file, revision=info.sha)
    return huggingface_hub.snapshot_download(repo_id, revision=info.sha, allow_patterns=files)


def _from_hub_cache(path: str, repo_id: str, file: str | None, error: Exception) -> str:
    """What the local hub cache holds of ``path`` when the hub cannot be asked (offline), else a CheckpointError."""
    # deferred: huggingface_hub loads only for a hub id
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        if file is not None:
            return huggingface_hub.hf_hub_download(repo_id, file, local_files_only=True)
        return huggingface_hub.snapshot_download(repo_id, local_files_only=True)
    except LocalEntryNotFoundError:
        raise CheckpointError(f"{path}: the hub cannot be reached ({error}) and the local cache does not hold it; "
                              "connect, or pass a local checkpoint.") from None


def write_model_index(path: str) -> None:
    """Writes a minimal diffusers ``model_index.json`` (used when saving a tiny random pipeline)."""
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump({"_class_name": "LTXPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                   "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
                   "transformer": ["diffusers", "LTXVideoTransformer3DModel"],
                   "vae": ["diffusers", "AutoencoderKLLTXVideo"]},
                  f, indent=2)
