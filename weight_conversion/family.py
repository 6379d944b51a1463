"""Which model family a checkpoint holds (LTX-Video 0.9.x or LTX-2), from its config alone: no weight is read.

    >>> checkpoint_family("LTX-2/transformer")        # a diffusers folder: config.json's _class_name
    'ltx-2'
    >>> checkpoint_family("ltxv-13b-0.9.8-dev.safetensors", "transformer")
    'ltx-video'

The loaders (``load_transformer``, ``load_vae``, ``load_latent_upsampler``) ask this first and hand an LTX-2 checkpoint
to the LTX-2 loaders; the LTX-Video pipelines refuse one in a line.
"""

from __future__ import annotations

import json
import os

from weight_conversion import orbax_io
from weight_conversion.common import component_folder, read_single_file_config
from weight_conversion.safetensors_io import CheckpointError, open_safetensors

LTX_VIDEO, LTX2 = "ltx-video", "ltx-2"

#: diffusers' class names of the LTX-2 components (config.json's ``_class_name``).
LTX2_CLASS_NAMES = frozenset({"LTX2VideoTransformer3DModel", "AutoencoderKLLTX2Video", "AutoencoderKLLTX2Audio",
                              "LTX2Vocoder", "LTX2VocoderWithBWE", "LTX2LatentUpsamplerModel", "LTX2TextConnectors",
                              "LTX2DurationHead"})
#: Keys of a Lightricks single file that only LTX-2 has (the audio stream, the audio VAE, the vocoder, the text
#: connectors), as prefixes.
_LTX2_KEY_PREFIXES = ("model.diffusion_model.audio_", "audio_vae.", "vocoder.", "audio_patchify_proj.",
                      "model.diffusion_model.video_embeddings_connector.", "text_embedding_projection.")
#: Keys of a single file's metadata config that only LTX-2 writes.
_LTX2_METADATA_KEYS = ("audio_vae", "vocoder")
_LTX2_TRANSFORMER_KEYS = ("audio_num_attention_heads", "audio_attention_head_dim", "av_ca_timestep_scale_multiplier")


def _class_family(class_name) -> str | None:
    if not isinstance(class_name, str):
        return None
    return LTX2 if class_name in LTX2_CLASS_NAMES else LTX_VIDEO


def checkpoint_family(path: str | os.PathLike, component: str = "transformer") -> str:
    """``"ltx-2"`` or ``"ltx-video"`` for a checkpoint of ``component`` ("transformer", "vae", "latent_upsampler",
    ...): a diffusers folder or a pipeline root holding ``component/`` (config.json's ``_class_name``), an Orbax
    directory (its marker's config), or a safetensors file (its metadata config, else its key names). Reads headers
    only; a path that is none of these is "ltx-video" (the LTX-Video loaders then say what is wrong with it)."""
    path = component_folder(os.fspath(path), component)
    if orbax_io.is_orbax_dir(path):
        return _class_family(orbax_io.read_marker(path).get("config", {}).get("_class_name")) or LTX_VIDEO
    if os.path.isdir(path):
        config_path = os.path.join(path, "config.json")
        try:
            with open(config_path) as f:
                config = json.load(f)
        except (OSError, ValueError):
            return LTX_VIDEO
        return (_class_family(config.get("_class_name")) if isinstance(config, dict) else None) or LTX_VIDEO
    if not os.path.isfile(path):
        return LTX_VIDEO
    source = open_safetensors(path)
    metadata = read_single_file_config(source) or {}
    transformer = metadata.get("transformer")
    if any(k in metadata for k in _LTX2_METADATA_KEYS) or (
            isinstance(transformer, dict) and any(k in transformer for k in _LTX2_TRANSFORMER_KEYS)):
        return LTX2
    if _class_family(metadata.get("_class_name")) == LTX2:
        return LTX2
    return LTX2 if any(k.startswith(_LTX2_KEY_PREFIXES) for k in source) else LTX_VIDEO


def refuse_ltx2(path: str | os.PathLike, what: str) -> None:
    """Raises one line when ``path`` holds an LTX-2 checkpoint, which ``what`` (an LTX-Video pipeline, ``compare``)
    cannot run; nothing for any other path."""
    if checkpoint_family(path) == LTX2:
        raise CheckpointError(
            f"{os.fspath(path)} is an LTX-2 checkpoint, and {what} runs LTX-Video 0.9.x. ltx_jax loads LTX-2's models "
            "(weight_conversion.load_transformer, load_vae, load_audio_vae, load_vocoder, load_latent_upsampler); "
            "its LTX-2 pipelines are not there yet.")
