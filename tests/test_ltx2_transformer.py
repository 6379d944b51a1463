"""LTX-2's audio-video transformer against diffusers' ``LTX2VideoTransformer3DModel`` (float32, CPU): tiny random
models saved as diffusers folders (and a Lightricks-named single file) and loaded with
``weight_conversion.ltx2_transformer``, then full-size parameter counts from ``jax.eval_shape``.

Each model compiles once per distinct set of static arguments (``_run`` is jitted with the module static), and the
torch models and checkpoints are built once per module.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import randomize_, rel_err, report
from diffusers import LTX2VideoTransformer3DModel as TorchLTX2
from safetensors.torch import save_file

from ltx_jax.models import abstract_params, count_params
from ltx_jax.models.ltx2 import LTX2VideoTransformer3DModel, rope
from ltx_jax.pipelines.text_to_video import LTXPipeline
from ltx_jax.releases_ltx2 import LTX2_TRANSFORMER_PRESETS
from weight_conversion import CheckpointError, load_transformer
from weight_conversion.ltx2_transformer import config_from_native

TOLERANCE = 1e-5  # relative (max abs error / max abs reference) on each output

# Odd sizes: video 4 heads x 8 (width 32, not a multiple of 6: the interleaved RoPE pads), audio 3 x 6 (the
# audio <-> video RoPE is audio_cross_attention_dim wide, which diffusers requires to be the audio width).
TINY_LTX2 = dict(in_channels=5, out_channels=7, num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                 audio_in_channels=3, audio_out_channels=5, audio_num_attention_heads=3, audio_attention_head_dim=6,
                 audio_cross_attention_dim=18, num_layers=3, caption_channels=11, perturbed_attn=True)
# LTX-2.3's features: split RoPE (video 2 x 10: a padded half; the video cross-modal table grouped by the 2 video
# heads while the audio attends with 3 x 4), gates, prompt AdaLN, no caption projection, no video FF bias, and
# LTX-2.5's keyframe embedding.
TINY_LTX23 = dict(TINY_LTX2, num_attention_heads=2, attention_head_dim=10, cross_attention_dim=20,
                  audio_num_attention_heads=3, audio_attention_head_dim=4, audio_cross_attention_dim=12,
                  gated_attn=True, audio_gated_attn=True, cross_attn_mod=True, audio_cross_attn_mod=True,
                  use_prompt_embeddings=False, rope_type="split", ff_bias=False, use_keyframes_abs_pos_embedding=True)

B, FRAMES, HEIGHT, WIDTH, AUDIO, TEXT = 2, 2, 2, 3, 5, 4
N = FRAMES * HEIGHT * WIDTH


def _t(x):
    return torch.from_numpy(np.asarray(x))


def _inputs(config: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    prompt = config.get("use_prompt_embeddings", True)
    width = config["caption_channels"] if prompt else config["cross_attention_dim"]
    audio_width = config["caption_channels"] if prompt else config["audio_cross_attention_dim"]
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return dict(hidden_states=f32(B, N, config["in_channels"]), audio_hidden_states=f32(B, AUDIO,
                                                                                          config["audio_in_channels"]),
                encoder_hidden_states=f32(B, TEXT, width), audio_encoder_hidden_states=f32(B, TEXT, audio_width),
                timestep=np.array([300.0, 850.0], np.float32),
                encoder_attention_mask=np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32),
                audio_encoder_attention_mask=np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.float32))


GRID = dict(num_frames=FRAMES, height=HEIGHT, width=WIDTH, audio_num_frames=AUDIO)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("static",))
def _run(module, params, arrays, static):
    return module.apply({"params": params}, **arrays, **dict(static))


def run_jax(module, params, arrays: dict, **static):
    out = _run(module, params, {k: jnp.asarray(v) for k, v in arrays.items()}, static=tuple(sorted(static.items())))
    return [np.asarray(o) for o in out]


def run_torch(model, arrays: dict, **static):
    with torch.no_grad():
        out = model(**{k: _t(v) for k, v in arrays.items()}, **static, return_dict=False)
    return [o.numpy() for o in out]


def check(name, ours, ref):
    errors = [rel_err(o, r) for o, r in zip(ours, ref)]
    for stream, err in zip(("video", "audio"), errors):
        report(f"ltx2 transformer {name} ({stream})", err, TOLERANCE)
    assert max(errors) <= TOLERANCE, (name, errors)


def _build(config: dict, seed: int, root) -> dict:
    torch.manual_seed(0)
    model = randomize_(TorchLTX2(**config), seed=seed)
    folder = os.path.join(root, "transformer")
    model.save_pretrained(folder, max_shard_size="40KB")  # sharded
    module, params = load_transformer(root)  # a pipeline root holding transformer/: the family from its config
    return dict(torch=model, folder=folder, module=module, params=params, root=root)


@pytest.fixture(scope="module")
def ltx2(tmp_path_factory):
    return _build(TINY_LTX2, 1, tmp_path_factory.mktemp("ltx2"))


@pytest.fixture(scope="module")
def ltx23(tmp_path_factory):
    return _build(TINY_LTX23, 2, tmp_path_factory.mktemp("ltx23"))


# ------------------------------------------------------------------------------------------------ parity cases


def test_plain(ltx2):
    x = _inputs(TINY_LTX2, 0)
    check("plain", run_jax(ltx2["module"], ltx2["params"], x, **GRID), run_torch(ltx2["torch"], x, **GRID))


def test_stg_perturbation_mask(ltx2):
    x = dict(_inputs(TINY_LTX2, 1), perturbation_mask=np.array([0.0, 1.0], np.float32))  # row 0 perturbed
    static = dict(GRID, spatio_temporal_guidance_blocks=(0, 2))
    ours = run_jax(ltx2["module"], ltx2["params"], x, **static)
    check("STG", ours, run_torch(ltx2["torch"], x, **dict(static, spatio_temporal_guidance_blocks=[0, 2])))
    plain = run_torch(ltx2["torch"], {k: v for k, v in x.items() if k != "perturbation_mask"}, **GRID)
    assert rel_err(ours[0][:1], plain[0][:1]) > 1e-3  # the perturbed row changed, the other did not
    assert rel_err(ours[0][1:], plain[0][1:]) <= TOLERANCE


def test_per_token_timesteps_with_explicit_coords(ltx2):
    """Per-token timesteps ([B, N] video, [B, M] audio) and explicit coordinates (the grid's, shifted) in one call."""
    rng = np.random.default_rng(2)
    video = rope.video_coords(B, FRAMES, HEIGHT, WIDTH) + rng.uniform(0, 3, (B, 3, N, 1)).astype(np.float32)
    audio = rope.audio_coords(B, AUDIO) + rng.uniform(0, 0.2, (B, 1, AUDIO, 1)).astype(np.float32)
    x = dict(_inputs(TINY_LTX2, 2), timestep=rng.uniform(0, 1000, (B, N)).astype(np.float32),
             audio_timestep=rng.uniform(0, 1000, (B, AUDIO)).astype(np.float32), video_coords=video,
             audio_coords=audio)
    check("per-token timesteps, explicit coords", run_jax(ltx2["module"], ltx2["params"], x),
          run_torch(ltx2["torch"], x))


def test_isolate_modalities(ltx2):
    x = _inputs(TINY_LTX2, 4)
    ours = run_jax(ltx2["module"], ltx2["params"], x, **GRID, isolate_modalities=True)
    check("isolate_modalities", ours, run_torch(ltx2["torch"], x, **GRID, isolate_modalities=True))
    # per row, traced (the modality-guidance rows in the main batch): row 0 isolated, row 1 not
    rows = run_jax(ltx2["module"], ltx2["params"], dict(x, modality_mask=np.array([0.0, 1.0], np.float32)), **GRID)
    plain = run_jax(ltx2["module"], ltx2["params"], x, **GRID)
    for stream in range(2):
        np.testing.assert_array_equal(rows[stream][1:], plain[stream][1:])
        assert rel_err(rows[stream][:1], ours[stream][:1]) <= TOLERANCE


def _ltx23_inputs():
    rng = np.random.default_rng(5)
    keyframes = np.zeros((B, N, 1), np.float32)
    keyframes[:, : HEIGHT * WIDTH] = 1.0  # the first latent frame
    return dict(_inputs(TINY_LTX23, 5), sigma=np.array([300.0, 850.0], np.float32),
                audio_timestep=np.array([500.0, 100.0], np.float32), video_keyframes_mask=keyframes,
                video_self_attention_mask=rng.uniform(0, 1, (B, N, N)).astype(np.float32))


def _ltx23_case() -> tuple[dict, dict]:
    x = dict(_ltx23_inputs(), perturbation_mask=np.array([1.0, 0.0], np.float32))
    return x, dict(GRID, use_cross_timestep=True, spatio_temporal_guidance_blocks=(1,))


def test_ltx23_features(ltx23):
    """Gated attention, prompt AdaLN (sigma), split RoPE, no caption projection, ff_bias=False, cross timesteps,
    keyframe embedding and a video self-attention mask, with STG on one block."""
    x, static = _ltx23_case()
    ours = run_jax(ltx23["module"], ltx23["params"], x, **static)
    check("LTX-2.3 features", ours, run_torch(ltx23["torch"], x, **dict(static, spatio_temporal_guidance_blocks=[1])))


# Lightricks' native names (ltx-core's LTXModel), spelled out independently of the loader's tables.
_TO_NATIVE_TOP = {"proj_in": "patchify_proj", "audio_proj_in": "audio_patchify_proj", "time_embed": "adaln_single",
                  "audio_time_embed": "audio_adaln_single", "prompt_adaln": "prompt_adaln_single",
                  "audio_prompt_adaln": "audio_prompt_adaln_single",
                  "av_cross_attn_video_scale_shift": "av_ca_video_scale_shift_adaln_single",
                  "av_cross_attn_video_a2v_gate": "av_ca_a2v_gate_adaln_single",
                  "av_cross_attn_audio_scale_shift": "av_ca_audio_scale_shift_adaln_single",
                  "av_cross_attn_audio_v2a_gate": "av_ca_v2a_gate_adaln_single"}
_TO_NATIVE = {"video_a2v_cross_attn_scale_shift_table": "scale_shift_table_a2v_ca_video",
              "audio_a2v_cross_attn_scale_shift_table": "scale_shift_table_a2v_ca_audio",
              "norm_q": "q_norm", "norm_k": "k_norm"}


def _native_key(key: str) -> str:
    first, *rest = key.split(".")
    names = [_TO_NATIVE_TOP.get(first, first)] + [_TO_NATIVE.get(p, p) for p in rest]
    return "model.diffusion_model." + ".".join(names)


def _write_native_file(model, path: str, tensors: dict | None = None) -> str:
    """The model as a Lightricks single file: native names, a connector and a VAE tensor to skip, ltx-core's config
    in the metadata."""
    cfg = model.config
    if tensors is None:
        tensors = {_native_key(k): v.contiguous() for k, v in model.state_dict().items()}
    tensors["model.diffusion_model.video_embeddings_connector.learnable_registers"] = torch.zeros(2, 3)  # connector
    tensors["vae.per_channel_statistics.mean-of-means"] = torch.zeros(3)  # another component
    native = {k: cfg[k] for k in ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                                  "num_layers", "cross_attention_dim", "norm_eps", "audio_num_attention_heads",
                                  "audio_attention_head_dim", "audio_in_channels", "audio_out_channels",
                                  "audio_cross_attention_dim", "caption_channels", "ff_bias",
                                  "use_keyframes_abs_pos_embedding", "timestep_scale_multiplier")}
    native.update(positional_embedding_theta=10000.0, positional_embedding_max_pos=[20, 2048, 2048],
                  audio_positional_embedding_max_pos=[20], av_ca_timestep_scale_multiplier=1000, rope_type="split",
                  frequencies_precision="float64", apply_gated_attention=True, cross_attention_adaln=True,
                  caption_proj_before_connector=True, qk_norm="rms_norm", norm_elementwise_affine=False)
    save_file(tensors, path, metadata={"config": json.dumps({"transformer": native, "vae": {}})})
    return native


def test_lightricks_single_file(ltx23, tmp_path):
    path = os.path.join(tmp_path, "ltx-2.3-tiny.safetensors")
    native = _write_native_file(ltx23["torch"], path)
    assert config_from_native(native) == ltx23["module"].config
    module, params = load_transformer(path)  # the family from the metadata
    assert module == ltx23["module"]
    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), params, ltx23["params"])
    assert all(jax.tree_util.tree_leaves(same))
    x, static = _ltx23_case()  # test_ltx23_features' program (compiled once: the modules are equal)
    ours = run_jax(module, params, x, **static)
    ref = run_torch(ltx23["torch"], x, **dict(static, spatio_temporal_guidance_blocks=[1]))
    check("Lightricks single file", ours, ref)


_BLOCK_LINEAR = re.compile(r"transformer_blocks\.\d+\.\w*(attn\w*|ff)\..*weight$")
FP8_MAX = float(torch.finfo(torch.float8_e4m3fn).max)


def test_fp8_single_file(ltx23, tmp_path):
    """An fp8 file (the blocks' Linear weights in float8_e4m3fn: half as stored, as Lightricks' ``*-fp8`` files, half
    with a per-channel ``weight_scale``) loads dequantised with weights=None (diffusers on torch's upcast of the same
    file: the same outputs) and as stored with weights="fp8"."""
    meant = {}
    tensors = {}
    for i, (key, w) in enumerate(sorted(ltx23["torch"].state_dict().items())):
        native = _native_key(key)
        if _BLOCK_LINEAR.search(key) and w.ndim == 2:
            scale = w.abs().amax(1) / FP8_MAX if i % 2 else torch.ones(w.shape[0])
            q = (w / scale[:, None]).to(torch.float8_e4m3fn)
            if i % 2:
                tensors[native[: -len("weight")] + "weight_scale"] = scale.clone()
            tensors[native], meant[key] = q, q.float() * scale[:, None]
        else:
            tensors[native] = w.contiguous()
    path = os.path.join(tmp_path, "ltx-2.3-tiny-fp8.safetensors")
    _write_native_file(ltx23["torch"], path, tensors)
    upcast = copy.deepcopy(ltx23["torch"])
    upcast.load_state_dict(meant, strict=False)
    module, params = load_transformer(path)
    assert module == ltx23["module"]
    x, static = _ltx23_case()
    ours = run_jax(module, params, x, **static)
    check("fp8 single file, dequantised", ours,
          run_torch(upcast, x, **dict(static, spatio_temporal_guidance_blocks=[1])))
    _, fp8_params = load_transformer(path, weights="fp8")
    kernel = fp8_params["transformer_blocks"]["attn1"]["to_q"]["kernel"]
    assert kernel.dtype == jnp.float8_e4m3fn, kernel.dtype


# ------------------------------------------------------------------------------------------------------ RoPE


def test_rope_against_diffusers_full_width():
    """The RoPE tables of LTX-2's full widths (4096 video, 2048 audio, float64 frequencies) against diffusers':
    identical coordinates and frequency tables; the cos / sin of angles up to ~1.6e4 rad differ by float32 ulps."""
    with torch.device("meta"):
        meta = TorchLTX2(num_layers=1, rope_type="split")
    worst = 0.0
    for name, kind in (("rope", "video"), ("audio_rope", "audio"), ("cross_attn_rope", "video"),
                       ("cross_attn_audio_rope", "audio")):
        torch_rope = getattr(meta, name)  # no parameters: usable as is
        coords = (meta.rope.prepare_video_coords(1, 3, 4, 5, "cpu", fps=25.0) if kind == "video"
                  else meta.audio_rope.prepare_audio_coords(1, 7, "cpu"))  # forward's coords for all four tables
        ours_coords = (rope.video_coords(1, 3, 4, 5, fps=25.0) if kind == "video" else rope.audio_coords(1, 7))
        assert np.array_equal(ours_coords, coords.numpy()), name
        if name.startswith("cross"):
            coords = coords[:, :1]
        cos, sin = torch_rope(coords)
        max_pos = ((torch_rope.base_num_frames, torch_rope.base_height, torch_rope.base_width)[: coords.shape[1]])
        ours = rope.rope_tables(coords.numpy(), torch_rope.dim, max_pos, theta=torch_rope.theta,
                                double_precision=True, rope_type="split", heads=torch_rope.num_attention_heads)
        ref_cos = cos.swapaxes(1, 2).reshape(1, coords.shape[2], -1).numpy()  # (B, H, T, K/2) -> [B, T, D/2]
        ref_sin = sin.swapaxes(1, 2).reshape(1, coords.shape[2], -1).numpy()
        worst = max(worst, float(np.max(np.abs(np.asarray(ours[0]) - ref_cos))),
                    float(np.max(np.abs(np.asarray(ours[1]) - ref_sin))))
    num = 4096 // 6
    exps = torch.linspace(0.0, 1.0, num, dtype=torch.float64)
    table = (torch.pow(10000.0, exps) * torch.pi / 2.0).to(torch.float32).numpy()
    assert np.array_equal(rope.frequency_table(num, 10000.0, True), table)  # float64 table, bit for bit
    report("ltx2 RoPE tables at full width (max abs cos/sin difference)", worst, 2e-3)
    assert worst <= 2e-3


# ------------------------------------------------------------------------------------------------------ full size


@pytest.mark.parametrize("name", sorted(LTX2_TRANSFORMER_PRESETS))
def test_full_size_param_count_matches_diffusers(name):
    config = LTX2_TRANSFORMER_PRESETS[name]  # the released architectures (ltx_jax.releases_ltx2)
    with torch.device("meta"):
        torch_model = TorchLTX2(**config.to_dict())
    expected = sum(p.numel() for p in torch_model.parameters())
    module = LTX2VideoTransformer3DModel(config, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    ours = count_params(abstract_params(module))
    print(f"\n[{name}] params ours {ours:,} diffusers {expected:,}")
    assert ours == expected


# ------------------------------------------------------------------------------------------------------ errors


def test_input_errors(ltx2):
    module, params = ltx2["module"], ltx2["params"]
    x = {k: jnp.asarray(v) for k, v in _inputs(TINY_LTX2, 0).items()}
    apply = functools.partial(module.apply, {"params": params})
    with pytest.raises(ValueError, match="Pass num_frames, height and width"):
        jax.eval_shape(lambda: apply(**x, audio_num_frames=AUDIO))
    with pytest.raises(ValueError, match="has 12 tokens but the RoPE grid"):
        jax.eval_shape(lambda: apply(**x, num_frames=1, height=2, width=3, audio_num_frames=AUDIO))
    with pytest.raises(ValueError, match="indices must be in"):
        jax.eval_shape(lambda: apply(**x, **GRID, spatio_temporal_guidance_blocks=[3]))
    with pytest.raises(ValueError, match="audio_timestep"):
        jax.eval_shape(lambda: apply(**dict(x, timestep=jnp.zeros((B, N))), **GRID))
    no_stg = LTX2VideoTransformer3DModel(module.config.replace(perturbed_attn=False))
    with pytest.raises(ValueError, match="perturbed_attn=True"):
        jax.eval_shape(lambda: no_stg.apply({"params": params}, **x, **GRID, spatio_temporal_guidance_blocks=[0]))


def test_ltx_video_pipelines_refuse_an_ltx2_checkpoint_in_a_line(ltx2):
    with pytest.raises(CheckpointError, match="is an LTX-2 checkpoint, and LTXPipeline runs LTX-Video 0.9.x"):
        LTXPipeline.from_pretrained(ltx2["root"])


def test_diffusers_lora_fused_at_load(ltx2, tmp_path):
    """A PEFT / diffusers LoRA of the LTX-2 transformer (every attention projection of both streams and of the
    audio <-> video attentions, the feed-forwards), fused as the checkpoint is read (``load_transformer(lora=)``:
    the dev two-stage recipe's distilled LoRA), against diffusers' ``LTX2Pipeline.load_lora_weights`` +
    ``set_adapters`` at the same weight."""
    from diffusers import LTX2Pipeline
    from peft import LoraConfig, get_peft_model_state_dict

    base = ltx2["torch"]
    adapted = copy.deepcopy(base)
    config = LoraConfig(r=4, lora_alpha=8.0, init_lora_weights=False,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"])
    torch.manual_seed(3)
    adapted.add_adapter(config, adapter_name="distilled")
    LTX2Pipeline.save_lora_weights(os.fspath(tmp_path), transformer_lora_layers=get_peft_model_state_dict(
        adapted, adapter_name="distilled"), transformer_lora_adapter_metadata=config.to_dict())
    file = os.path.join(os.fspath(tmp_path), "pytorch_lora_weights.safetensors")

    reference = copy.deepcopy(base)
    pipe = LTX2Pipeline(scheduler=None, vae=None, audio_vae=None, text_encoder=None, tokenizer=None, connectors=None,
                        transformer=reference, vocoder=None)
    pipe.load_lora_weights(file, adapter_name="distilled")
    pipe.set_adapters(["distilled"], [0.8])
    module, params = load_transformer(ltx2["root"], lora=[(file, 0.8)])
    x = _inputs(TINY_LTX2, 6)
    ours, ref = run_jax(module, params, x, **GRID), run_torch(reference, x, **GRID)
    check("with a diffusers LoRA fused at load (weight 0.8)", ours, ref)
    assert rel_err(ours[0], run_torch(base, x, **GRID)[0]) > 1e-3  # the adapter changed the output
