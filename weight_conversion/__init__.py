"""Checkpoint loading for ltx_jax: safetensors (diffusers folders, sharded or not, Lightricks single files) and Orbax.

``load_transformer``, ``load_vae`` and ``load_latent_upsampler`` read LTX-Video and LTX-2 checkpoints alike (the family
from the config: ``checkpoint_family``); ``load_audio_vae`` and ``load_vocoder`` are LTX-2's.

Nothing is unpickled: only ``.safetensors`` files and Orbax directories are read.
"""

from weight_conversion.common import component_folder, read_single_file_config
from weight_conversion.family import checkpoint_family, refuse_ltx2
from weight_conversion.gemma import load_gemma_text_encoder, save_gemma_text_encoder_orbax
from weight_conversion.latent_upsampler import (load_latent_upsampler, read_latent_upsampler_config,
                                              save_latent_upsampler_orbax)
from weight_conversion.ltx2_audio import load_audio_vae, load_vocoder, save_audio_vae_orbax, save_vocoder_orbax
from weight_conversion.ltx2_vae import load_ltx2_vae, read_ltx2_vae_config, save_ltx2_vae_orbax
from weight_conversion.ltx2_transformer import (load_ltx2_transformer, read_ltx2_transformer_config,
                                              save_ltx2_transformer_orbax)
from weight_conversion.ltx2_connectors import (load_duration_head, load_text_connectors, save_duration_head_orbax,
                                             save_text_connectors_orbax)
from weight_conversion.ltx2_latent_upsampler import (load_ltx2_latent_upsampler, read_ltx2_latent_upsampler_config,
                                                   save_ltx2_latent_upsampler_orbax)
from weight_conversion.safetensors_io import CheckpointError, open_safetensors
from weight_conversion.t5 import load_text_encoder, save_text_encoder_orbax
from weight_conversion.transformer import load_transformer, read_transformer_config, save_transformer_orbax
from weight_conversion.vae import load_vae, read_vae_config, save_vae_orbax

__all__ = [
    "CheckpointError",
    "checkpoint_family",
    "component_folder",
    "load_audio_vae",
    "load_duration_head",
    "load_gemma_text_encoder",
    "load_text_connectors",
    "load_ltx2_latent_upsampler",
    "load_ltx2_transformer",
    "load_ltx2_vae",
    "load_vocoder",
    "read_ltx2_latent_upsampler_config",
    "read_ltx2_transformer_config",
    "read_ltx2_vae_config",
    "refuse_ltx2",
    "save_audio_vae_orbax",
    "save_duration_head_orbax",
    "save_gemma_text_encoder_orbax",
    "save_ltx2_latent_upsampler_orbax",
    "save_ltx2_transformer_orbax",
    "save_ltx2_vae_orbax",
    "save_text_connectors_orbax",
    "save_vocoder_orbax",
    "load_latent_upsampler",
    "load_text_encoder",
    "load_transformer",
    "load_vae",
    "open_safetensors",
    "read_latent_upsampler_config",
    "read_single_file_config",
    "read_transformer_config",
    "read_vae_config",
    "save_latent_upsampler_orbax",
    "save_text_encoder_orbax",
    "save_transformer_orbax",
    "save_vae_orbax",
]
