"""LTX-2's text connectors and LTX-2.5's duration head against diffusers' ``LTX2TextConnectors`` /
``LTX2DurationHead`` (float32, CPU): tiny random models saved with ``save_pretrained`` (and as Lightricks-named
single files) and loaded with ``weight_conversion.ltx2_connectors``, then full-size parameter counts from
``jax.eval_shape`` against diffusers' models on the meta device.

Each module compiles once (``_run`` is jitted with the module static; a module loaded from another layout is equal,
so it reuses the program), and the torch models and checkpoints are built once per module.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import randomize_, rel_err, report
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors as TorchConnectors
from diffusers.pipelines.ltx2.duration_head import LTX2DurationHead as TorchDurationHead
from safetensors.torch import save_file

from ltx_jax.configs_ltx2_text import (LTX2_CONNECTORS, LTX23_CONNECTORS, LTX25_DURATION_HEAD, LTX2DurationHeadConfig,
                                       LTX2TextConnectorsConfig)
from ltx_jax.models import abstract_params, count_params
from ltx_jax.models.ltx2.connectors import LTX2TextConnectors
from ltx_jax.models.ltx2.duration_head import LTX2DurationHead, snap_num_frames
from weight_conversion import CheckpointError
from weight_conversion.ltx2_connectors import (load_duration_head, load_text_connectors, read_text_connectors_config,
                                               save_duration_head_orbax, save_text_connectors_orbax)

TOLERANCE = 1e-5  # relative (max abs error / max abs reference) on each output

# Odd sizes. LTX-2.0-like: one shared projection (12 channels x 3 hidden states), video 2 heads x 6 with 3 registers
# over 2 layers, audio 3 x 4 without registers (its padding masked out of the attention) over 1 layer, split RoPE
# over positions / 7 in float64.
TINY_LTX2 = dict(caption_channels=12, text_proj_in_factor=3, video_connector_num_attention_heads=2,
                 video_connector_attention_head_dim=6, video_connector_num_layers=2,
                 video_connector_num_learnable_registers=3, audio_connector_num_attention_heads=3,
                 audio_connector_attention_head_dim=4, audio_connector_num_layers=1,
                 audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=7, rope_type="split",
                 rope_double_precision=True)
# LTX-2.3-like: per-stream projections with bias (10 x 3 -> 16 video, 12 audio), gated attention, registers 2 / 3,
# 2 video and 3 audio layers.
TINY_LTX23 = dict(caption_channels=10, text_proj_in_factor=3, video_connector_num_attention_heads=2,
                  video_connector_attention_head_dim=8, video_connector_num_layers=2,
                  video_connector_num_learnable_registers=2, video_gated_attn=True,
                  audio_connector_num_attention_heads=3, audio_connector_attention_head_dim=4,
                  audio_connector_num_layers=3, audio_connector_num_learnable_registers=3, audio_gated_attn=True,
                  connector_rope_base_seq_len=9, rope_type="split", rope_double_precision=True,
                  per_modality_projections=True, video_hidden_dim=16, audio_hidden_dim=12, proj_bias=True)
TINY_HEAD = dict(video_cross_attention_dim=10, audio_cross_attention_dim=6, pooler_hidden_dim=12, num_queries=2,
                 num_pooler_heads=3, mlp_hidden_dim=7)

B, T = 2, 6
MASK = np.array([[0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1]], np.int64)  # two prompts, left-padded as the pipeline pads


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("padding_side",))
def _run(module, params, x, mask, padding_side="left"):
    return module.apply({"params": params}, x, mask, padding_side)


def _hidden_states(config: dict, seed: int) -> np.ndarray:
    """[B, T, C F] Gemma-like stacks (C-major, as the pipeline packs them), each hidden state on its own scale."""
    rng = np.random.default_rng(seed)
    c, f = config["caption_channels"], config["text_proj_in_factor"]
    x = rng.standard_normal((B, T, c, f)) * np.linspace(0.5, 4.0, f)
    return x.reshape(B, T, c * f).astype(np.float32)


def _torch_outputs(model, x, mask, padding_side="left"):
    with torch.no_grad():
        return [o.numpy() for o in model(torch.from_numpy(x), torch.from_numpy(mask), padding_side=padding_side)]


def check(name: str, ours, ref) -> None:
    for label, o, r in zip(("video", "audio"), ours[:2], ref[:2]):
        assert o.shape == r.shape, (label, o.shape, r.shape)
        err = rel_err(o, r)
        report(f"LTX-2 connectors {name}: {label} embeddings", err, TOLERANCE)
        assert err <= TOLERANCE, (name, label, err)
    np.testing.assert_array_equal(np.asarray(ours[2]), ref[2])  # the mask: all ones


def _native_key(key: str) -> str:
    """diffusers' connector key -> Lightricks' (the inverse of diffusers' conversion renames)."""
    for new, old in (("video_text_proj_in.", "text_embedding_projection.video_aggregate_embed."),
                     ("audio_text_proj_in.", "text_embedding_projection.audio_aggregate_embed."),
                     ("text_proj_in.", "text_embedding_projection.aggregate_embed.")):
        if key.startswith(new):
            return old + key[len(new):]
    key = key.replace("video_connector.", "video_embeddings_connector.", 1).replace(
        "audio_connector.", "audio_embeddings_connector.", 1)
    key = key.replace(".transformer_blocks.", ".transformer_1d_blocks.").replace("norm_q", "q_norm")
    return "model.diffusion_model." + key.replace("norm_k", "k_norm")


def _write_native_file(model, path: str, projection_path: str | None = None) -> dict:
    """The connectors as a Lightricks single file (native names, ltx-core's config in the metadata, a transformer and
    a VAE tensor to skip); with ``projection_path`` the projection goes to that second file instead."""
    cfg = model.config
    tensors = {_native_key(k): v.contiguous() for k, v in model.state_dict().items()}
    tensors["model.diffusion_model.patchify_proj.weight"] = torch.zeros(4, 3)  # the transformer's
    tensors["vae.per_channel_statistics.mean-of-means"] = torch.zeros(3)  # another component's
    if projection_path is not None:
        save_file({k: tensors.pop(k) for k in list(tensors) if k.startswith("text_embedding_projection.")},
                  projection_path)
    native = dict(caption_channels=cfg.caption_channels,
                  connector_num_attention_heads=cfg.video_connector_num_attention_heads,
                  connector_attention_head_dim=cfg.video_connector_attention_head_dim,
                  connector_num_layers=cfg.video_connector_num_layers,
                  audio_connector_num_attention_heads=cfg.audio_connector_num_attention_heads,
                  audio_connector_attention_head_dim=cfg.audio_connector_attention_head_dim,
                  audio_connector_num_layers=cfg.audio_connector_num_layers,
                  connector_apply_gated_attention=cfg.video_gated_attn,
                  connector_positional_embedding_max_pos=[cfg.connector_rope_base_seq_len], rope_type=cfg.rope_type,
                  frequencies_precision="float64" if cfg.rope_double_precision else "float32",
                  positional_embedding_theta=10000.0, num_attention_heads=32)
    save_file(tensors, path, metadata={"config": json.dumps({"transformer": native, "vae": {}})})
    return native


def _build(config: dict, seed: int, tmp_path_factory) -> dict:
    torch.manual_seed(seed)
    model = randomize_(TorchConnectors(**config), seed=seed + 1, scale=0.2)
    root = tmp_path_factory.mktemp("connectors")
    model.save_pretrained(os.path.join(root, "connectors"))
    module, params = load_text_connectors(root)  # a pipeline root: its connectors/ folder
    x = _hidden_states(config, seed + 2)
    return dict(torch=model, module=module, params=params, root=str(root), x=x,
                ours=[np.asarray(o) for o in _run(module, params, jnp.asarray(x), jnp.asarray(MASK))],
                ref=_torch_outputs(model, x, MASK))


@pytest.fixture(scope="module")
def ltx2(tmp_path_factory):
    return _build(TINY_LTX2, 0, tmp_path_factory)


@pytest.fixture(scope="module")
def ltx23(tmp_path_factory):
    return _build(TINY_LTX23, 10, tmp_path_factory)


def test_ltx2_padded_batch(ltx2):
    assert ltx2["module"].config == LTX2TextConnectorsConfig(**TINY_LTX2)
    check("LTX-2.0-like", ltx2["ours"], ltx2["ref"])


def test_ltx23_padded_batch(ltx23):
    check("LTX-2.3-like (gated, per-stream projections)", ltx23["ours"], ltx23["ref"])


def test_interleaved_rope_and_right_padding(ltx2):
    """diffusers' default RoPE layout (the same weights: RoPE has none), and LTX-2.0's normalisation of a
    right-padded batch."""
    config = dict(TINY_LTX2, rope_type="interleaved")
    model = TorchConnectors(**config).eval()
    model.load_state_dict(ltx2["torch"].state_dict())
    module = ltx2["module"].clone(config=LTX2TextConnectorsConfig(**config))
    mask = MASK[:, ::-1].copy()
    ours = _run(module, ltx2["params"], jnp.asarray(ltx2["x"]), jnp.asarray(mask), padding_side="right")
    check("interleaved RoPE, right padding", [np.asarray(o) for o in ours],
          _torch_outputs(model, ltx2["x"], mask, padding_side="right"))


def test_lightricks_single_files(ltx2, ltx23, tmp_path):
    """Native names and ltx-core's metadata config load to the same module and params, so the same output; LTX-2.0's
    projection from a second file (``projection_path``)."""
    path = os.path.join(tmp_path, "ltx-2.3-tiny.safetensors")
    _write_native_file(ltx23["torch"], path)
    module, params = load_text_connectors(path)
    assert module == ltx23["module"]
    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), params, ltx23["params"])
    assert all(jax.tree_util.tree_leaves(same))
    ours = _run(module, params, jnp.asarray(ltx23["x"]), jnp.asarray(MASK))
    check("Lightricks single file", [np.asarray(o) for o in ours], ltx23["ref"])

    path, projection = os.path.join(tmp_path, "ltx-2-tiny.safetensors"), os.path.join(tmp_path, "gemma.safetensors")
    _write_native_file(ltx2["torch"], path, projection_path=projection)
    with pytest.raises(CheckpointError, match="holds no text projection.*projection_path="):
        read_text_connectors_config(path)
    module, params = load_text_connectors(path, projection_path=projection)
    assert module == ltx2["module"]
    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), params, ltx2["params"])
    assert all(jax.tree_util.tree_leaves(same))


def test_orbax_round_trip(ltx23, tmp_path):
    path = os.path.join(tmp_path, "connectors_orbax")
    save_text_connectors_orbax(ltx23["module"], ltx23["params"], path)
    module, params = load_text_connectors(path)
    assert module == ltx23["module"]
    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), params, ltx23["params"])
    assert all(jax.tree_util.tree_leaves(same))


def test_bf16_int8_weights(ltx23):
    """bf16 compute with int8 kernels (the projections' included), quantized as they are read: close to float32."""
    module, params = load_text_connectors(os.path.join(ltx23["root"], "connectors"), jnp.bfloat16, weights="int8")
    assert params["video_text_proj_in"]["kernel"].dtype == jnp.int8
    assert params["video_connector"]["transformer_blocks"]["attn1"]["to_q"]["kernel"].dtype == jnp.int8
    ours = _run(module, params, jnp.asarray(ltx23["x"]), jnp.asarray(MASK))
    for o, r in zip(ours[:2], ltx23["ref"][:2]):
        assert o.dtype == jnp.bfloat16 and rel_err(o.astype(jnp.float32), r) < 5e-2


def test_input_and_config_errors(ltx2):
    module, params = ltx2["module"], ltx2["params"]
    x = jnp.asarray(ltx2["x"])
    with pytest.raises(ValueError, match=r"number \(5\) must be a multiple of 3"):
        module.apply({"params": params}, x[:, :5], jnp.asarray(MASK)[:, :5])
    with pytest.raises(ValueError, match=r"text_encoder_hidden_states has shape \(2, 6, 35\); expected"):
        module.apply({"params": params}, x[..., :35], jnp.asarray(MASK))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 5\); expected"):
        module.apply({"params": params}, x, jnp.asarray(MASK)[:, :5])
    with pytest.raises(ValueError, match="padding_side='top'"):
        module.apply({"params": params}, x, jnp.asarray(MASK), "top")
    with pytest.raises(ValueError, match="video connector is 12 wide .* caption_channels=10"):
        LTX2TextConnectorsConfig(**dict(TINY_LTX2, caption_channels=10))
    with pytest.raises(ValueError, match="video_connector_attention_head_dim=5 is odd"):
        LTX2TextConnectorsConfig(**dict(TINY_LTX23, video_connector_attention_head_dim=5, video_hidden_dim=10))
    with pytest.raises(ValueError, match="video_connector_num_learnable_registers=0"):
        LTX2TextConnectorsConfig(**dict(TINY_LTX2, video_connector_num_learnable_registers=0))


# ------------------------------------------------------------------------------------------------ duration head


def _native_head_state(model) -> dict:
    """diffusers' duration head -> ltx-core's tensors (``duration_head.*``, the pooler's q / k / v packed into
    MultiheadAttention's ``in_proj_*``)."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("attention_pooler.to_")}
    pooler = {k: v for k, v in model.state_dict().items() if k.startswith("attention_pooler.to_")}
    for kind in ("weight", "bias"):
        state[f"attention_pooler.cross_attn.in_proj_{kind}"] = torch.cat(
            [pooler[f"attention_pooler.to_{p}.{kind}"] for p in "qkv"])
        state[f"attention_pooler.cross_attn.out_proj.{kind}"] = pooler[f"attention_pooler.to_out.{kind}"]
    return {"duration_head." + k: v.contiguous() for k, v in state.items()}


def test_duration_head(tmp_path):
    torch.manual_seed(20)
    model = randomize_(TorchDurationHead(**TINY_HEAD), seed=21, scale=0.2)
    model.save_pretrained(os.path.join(tmp_path, "duration_head"))
    module, params = load_duration_head(tmp_path)
    assert module.config == LTX2DurationHeadConfig(**TINY_HEAD)
    rng = np.random.default_rng(22)
    video = rng.standard_normal((B, T, 10)).astype(np.float32)
    audio = rng.standard_normal((B, 4, 6)).astype(np.float32)
    run = jax.jit(lambda p, v, a: module.apply({"params": p}, v, a))
    with torch.no_grad():
        ref = model(torch.from_numpy(video), torch.from_numpy(audio)).numpy()
        ref_video = model(torch.from_numpy(video)).numpy()
    err = rel_err(run(params, video, audio), ref)
    report("LTX-2.5 duration head: seconds (video + audio)", err, TOLERANCE)
    assert err <= TOLERANCE
    err = rel_err(module.apply({"params": params}, video), ref_video)
    report("LTX-2.5 duration head: seconds (video only)", err, TOLERANCE)
    assert err <= TOLERANCE

    path = os.path.join(tmp_path, "ltx-2.5-duration-head-tiny.safetensors")
    metadata = {"transformer": {"cross_attention_dim": 10, "audio_cross_attention_dim": 6},
                "duration_head": {"pooler_hidden_dim": 12, "num_queries": 2, "num_pooler_heads": 3, "mlp_hidden": 7}}
    save_file(_native_head_state(model), path, metadata={"config": json.dumps(metadata)})
    native_module, native_params = load_duration_head(path)
    assert native_module == module
    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), native_params, params)
    assert all(jax.tree_util.tree_leaves(same))

    save_duration_head_orbax(module, params, os.path.join(tmp_path, "head_orbax"))
    orbax_module, orbax_params = load_duration_head(os.path.join(tmp_path, "head_orbax"))
    assert orbax_module == module
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, orbax_params, params)))
    with pytest.raises(ValueError, match="needs video_tokens or audio_tokens"):
        module.apply({"params": params})
    with pytest.raises(ValueError, match=r"audio_tokens has shape \(1, 4, 6\); expected \[B, tokens, 6\] with B = 2"):
        module.apply({"params": params}, video, audio[:1])


@pytest.mark.parametrize("seconds, bounds", [(5.0, (1.0, 20.0)), (0.2, (1.0, 20.0)), (40.0, (1.0, 20.0)),
                                             (3.3, (1.0, 20.0)), (1.0, (1.0, 1.02))])
def test_snap_num_frames(seconds, bounds):
    """diffusers' ``predict_num_frames`` on a fixed prediction: clamped, floored to the grid, snapped up, and the
    nearest grid point where the bounds hold none."""
    with torch.device("meta"):
        head = TorchDurationHead()
    head.forward = lambda *a: torch.tensor([seconds])
    kwargs = dict(frame_rate=24.0, temporal_compression_ratio=8, min_seconds=bounds[0], max_seconds=bounds[1])
    assert snap_num_frames(seconds, **kwargs) == head.predict_num_frames(None, None, **kwargs)


# ------------------------------------------------------------------------------------------------ full size


@pytest.mark.parametrize("name, config", [("ltx-2", LTX2_CONNECTORS), ("ltx-2.3", LTX23_CONNECTORS)])
def test_full_size_connector_param_count_matches_diffusers(name, config):
    with torch.device("meta"):
        reference = sum(p.numel() for p in TorchConnectors(**dataclasses.asdict(config)).parameters())
    ours = count_params(abstract_params(LTX2TextConnectors(config, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)))
    print(f"\n[{name} connectors] {ours:,} params")
    assert ours == reference


def test_full_size_duration_head_param_count_matches_diffusers():
    with torch.device("meta"):
        reference = sum(p.numel() for p in TorchDurationHead(**dataclasses.asdict(LTX25_DURATION_HEAD)).parameters())
    ours = count_params(abstract_params(LTX2DurationHead(LTX25_DURATION_HEAD)))
    print(f"\n[ltx-2.5 duration head] {ours:,} params")
    assert ours == reference
