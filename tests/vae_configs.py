"""Tiny VAE configs for the parity tests, in diffusers' form (``TINY``) and as Lightricks writes them (``NATIVE``),
and Lightricks' configs of the released VAEs (``RELEASED_NATIVE``)."""

# Odd widths where the block allows them. Widths change by integer factors so that each config also has a native
# (Lightricks) description; residual upsamplers need widths divisible by 8, space-to-depth ones by their volume.
TINY = {
    "0.9.0": dict(
        latent_channels=7,
        block_out_channels=(5, 10, 20, 20),
        layers_per_block=(1, 2, 1, 1, 1),
        decoder_block_out_channels=(5, 10, 20, 20),
        decoder_layers_per_block=(1, 2, 1, 1, 1),
    ),
    "0.9.1": dict(
        latent_channels=7,
        block_out_channels=(5, 10, 20, 20),
        layers_per_block=(1, 2, 1, 1, 1),
        decoder_block_out_channels=(6, 12, 24),
        decoder_layers_per_block=(1, 1, 2, 1),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(True, True, False, True),
        upsample_residual=(False, False, True),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=True,
    ),
    "0.9.5": dict(
        latent_channels=5,
        block_out_channels=(3, 12, 12, 24, 24),
        down_block_types=("LTXVideo095DownBlock3D",) * 4,
        layers_per_block=(1, 1, 2, 1, 1),
        spatio_temporal_scaling=(True, True, True, True),
        downsample_type=("spatial", "temporal", "spatiotemporal", "conv"),
        decoder_block_out_channels=(8, 16, 16),
        decoder_layers_per_block=(1, 1, 1, 2),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 1),
        timestep_conditioning=True,
        patch_size=2,
        spatial_compression_ratio=16,
        temporal_compression_ratio=8,
    ),
}


def _res(n, **kw):
    return ["res_x", {"num_layers": n, **kw}]


# The same configs as Lightricks writes them (encoder order; the decoder runs its list backwards).
_TINY_ENCODER_090 = [
    _res(1), ["compress_all", {}], ["res_x_y", {"multiplier": 2}],
    _res(2), ["compress_all", {}], ["res_x_y", {"multiplier": 2}],
    _res(1), ["compress_all", {}],
    _res(1),
    _res(1),
]
NATIVE = {
    "0.9.0": dict(
        latent_channels=7, patch_size=4, encoder_base_channels=5, decoder_base_channels=5, timestep_conditioning=False,
        encoder_blocks=_TINY_ENCODER_090,
        decoder_blocks=[
            _res(1), ["compress_all", {}], ["res_x_y", {"multiplier": 2}],
            _res(2), ["compress_all", {}], ["res_x_y", {"multiplier": 2}],
            _res(1), ["compress_all", {}],
            _res(1),
            _res(1),
        ],
    ),
    "0.9.1": dict(
        latent_channels=7, patch_size=4, encoder_base_channels=5, decoder_base_channels=3, timestep_conditioning=True,
        encoder_blocks=_TINY_ENCODER_090,
        decoder_blocks=[
            _res(1, inject_noise=True), ["compress_all", {"residual": False, "multiplier": 2}],
            _res(1, inject_noise=True), ["compress_all", {"residual": False, "multiplier": 2}],
            _res(2, inject_noise=False), ["compress_all", {"residual": True, "multiplier": 2}],
            _res(1, inject_noise=True),
        ],
    ),
    "0.9.5": dict(
        latent_channels=5, patch_size=2, encoder_base_channels=3, decoder_base_channels=4, timestep_conditioning=True,
        encoder_blocks=[
            _res(1), ["compress_space_res", {"multiplier": 4}],
            _res(1), ["compress_time_res", {"multiplier": 1}],
            _res(2), ["compress_all_res", {"multiplier": 2}],
            _res(1), ["compress_all", {}],
            _res(1),
        ],
        decoder_blocks=[
            _res(1), ["compress_all", {"residual": True, "multiplier": 2}],
            _res(1), ["compress_all", {"residual": True, "multiplier": 2}],
            _res(1), ["compress_all", {"residual": True, "multiplier": 1}],
            _res(2),
        ],
    ),
}
for _native in NATIVE.values():
    _native.update({"_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3,
                    "norm_layer": "pixel_norm", "latent_log_var": "uniform", "use_quant_conv": False,
                    "causal_decoder": False})

# Lightricks' configs of the released VAEs (0.9.0 / 0.9.1 as in diffusers' conversion script, 0.9.5 as shipped).
_RELEASED_090_BLOCKS = [
    ["res_x", 4], ["compress_all", 1], ["res_x_y", 1], ["res_x", 3], ["compress_all", 1], ["res_x_y", 1],
    ["res_x", 3], ["compress_all", 1], ["res_x", 3], ["res_x", 4],
]
_COMMON = {"_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3,
           "latent_channels": 128, "scaling_factor": 1.0, "norm_layer": "pixel_norm", "patch_size": 4,
           "latent_log_var": "uniform", "use_quant_conv": False, "causal_decoder": False}
RELEASED_NATIVE = {
    "ltx-video-0.9.0": {**_COMMON, "blocks": _RELEASED_090_BLOCKS},
    "ltx-video-0.9.1": {
        **_COMMON, "timestep_conditioning": True,
        "encoder_blocks": [[n, {"num_layers": p} if n == "res_x" else {}] for n, p in _RELEASED_090_BLOCKS],
        "decoder_blocks": [
            _res(5, inject_noise=True), ["compress_all", {"residual": True, "multiplier": 2}],
            _res(6, inject_noise=True), ["compress_all", {"residual": True, "multiplier": 2}],
            _res(7, inject_noise=True), ["compress_all", {"residual": True, "multiplier": 2}],
            _res(8, inject_noise=False),
        ],
    },
    "ltx-video-0.9.5": {
        **_COMMON, "timestep_conditioning": True, "spatial_padding_mode": "zeros",
        "encoder_blocks": [
            _res(4), ["compress_space_res", {"multiplier": 2}], _res(6), ["compress_time_res", {"multiplier": 2}],
            _res(6), ["compress_all_res", {"multiplier": 2}], _res(2), ["compress_all_res", {"multiplier": 2}], _res(2),
        ],
        "decoder_blocks": [
            _res(5, inject_noise=False), ["compress_all", {"residual": True, "multiplier": 2}],
            _res(5, inject_noise=False), ["compress_all", {"residual": True, "multiplier": 2}],
            _res(5, inject_noise=False), ["compress_all", {"residual": True, "multiplier": 2}],
            _res(5, inject_noise=False),
        ],
    },
}
