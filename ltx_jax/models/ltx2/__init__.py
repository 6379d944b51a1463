"""The LTX-2 models in Flax: the audio-video transformer, the video and audio VAEs, the vocoders, the latent
upsamplers."""

from ltx_jax.models.ltx2.transformer import LTX2Constants, LTX2Output, LTX2VideoTransformer3DModel

__all__ = ["LTX2Constants", "LTX2Output", "LTX2VideoTransformer3DModel"]

from ltx_jax.models.ltx2.latent_upsampler import LTX2LatentUpsampler  # noqa: E402

__all__ += ["LTX2LatentUpsampler"]

from ltx_jax.models.ltx2.vae import AutoencoderKLLTX2Video  # noqa: E402

__all__ += ["AutoencoderKLLTX2Video"]

from ltx_jax.models.ltx2.audio_vae import AutoencoderKLLTX2Audio  # noqa: E402
from ltx_jax.models.ltx2.vocoder import LTX2Vocoder, LTX2VocoderWithBWE  # noqa: E402

__all__ += ["AutoencoderKLLTX2Audio", "LTX2Vocoder", "LTX2VocoderWithBWE"]

from ltx_jax.models.ltx2.connectors import LTX2TextConnectors  # noqa: E402
from ltx_jax.models.ltx2.duration_head import LTX2DurationHead, snap_num_frames  # noqa: E402

__all__ += ["LTX2DurationHead", "LTX2TextConnectors", "snap_num_frames"]
