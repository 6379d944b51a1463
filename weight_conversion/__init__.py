"""Checkpoint loading for ltx_jax: safetensors (diffusers folders, sharded or not, Lightricks single files) and Orbax.

Nothing is unpickled: only ``.safetensors`` files and Orbax directories are read.
"""

from weight_conversion.common import component_folder, read_single_file_config
from weight_conversion.latent_upsampler import (load_latent_upsampler, read_latent_upsampler_config,
                                              save_latent_upsampler_orbax)
from weight_conversion.safetensors_io import CheckpointError, open_safetensors
from weight_conversion.t5 import load_text_encoder, save_text_encoder_orbax
from weight_conversion.transformer import load_transformer, read_transformer_config, save_transformer_orbax
from weight_conversion.vae import load_vae, read_vae_config, save_vae_orbax

__all__ = [
    "CheckpointError",
    "component_folder",
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
