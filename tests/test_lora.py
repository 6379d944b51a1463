"""LoRA adapters against diffusers + PEFT (fp32, CPU, tiny random): random PEFT adapters on diffusers' transformer,
saved with diffusers' ``save_lora_weights``, loaded by diffusers (``load_lora_weights`` + ``set_adapters``) and by
ltx_jax, unfused and fused; the non-diffusers format; two adapters; no recompiles when weights change; the whole
pipeline; and the errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import TINY_TRANSFORMER as ODD_TRANSFORMER
from conftest import build_tiny_reference, compile_counter, psnr, rel_err, report
from diffusers import LTXPipeline as TorchLTXPipeline
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.numpy import load_file, save_file

from weight_conversion import load_transformer
from weight_conversion.lora import (fuse, kernel_deltas, lora_collection, lora_targets, parse_lora_spec,
                                    read_lora)
from weight_conversion.safetensors_io import CheckpointError
from weight_conversion.transformer import torch_key

TOL = 1e-5  # max rel err of the transformer's output, fp32
PSNR_MIN_DB = 50.0
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out", "linear_1",
           "linear_2", "time_embed.linear"]


def make_adapter(base: torch.nn.Module, path, seed: int, rank: int = 4, alpha: float = 8.0, targets=TARGETS,
                 **config) -> str:
    """A random PEFT adapter (both factors random: init_lora_weights=False) on a copy of ``base``, saved as
    diffusers does (``pytorch_lora_weights.safetensors`` with the adapter config in the metadata)."""
    model = copy.deepcopy(base)
    lora_config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False, **config)
    torch.manual_seed(seed)
    model.add_adapter(lora_config, adapter_name="new")
    state = get_peft_model_state_dict(model, adapter_name="new")
    TorchLTXPipeline.save_lora_weights(os.fspath(path), transformer_lora_layers=state,
                                       transformer_lora_adapter_metadata=lora_config.to_dict())
    return os.path.join(os.fspath(path), "pytorch_lora_weights.safetensors")


def to_non_diffusers(file: str, out: str) -> str:
    """The same adapter as ComfyUI / Lightricks' trainer write it: ``diffusion_model.`` + native names, lora_down /
    lora_up, the alpha as a ``.alpha`` tensor per module."""
    tensors = load_file(file)
    from safetensors import safe_open

    with safe_open(file, "np") as f:
        meta = json.loads(f.metadata()["lora_adapter_metadata"])
    rank, alpha = meta["transformer.r"], meta["transformer.lora_alpha"]
    converted = {}
    for key, value in tensors.items():
        name = key.removeprefix("transformer.")
        for new, old in (("proj_in", "patchify_proj"), ("time_embed", "adaln_single")):
            name = name.replace(new, old)
        name = name.replace("lora_A.weight", "lora_down.weight").replace("lora_B.weight", "lora_up.weight")
        converted["diffusion_model." + name] = value
        if name.endswith("lora_down.weight"):
            converted["diffusion_model." + name.replace("lora_down.weight", "alpha")] = np.array(alpha * 1.0,
                                                                                              np.float32)
    assert rank == 4
    save_file(converted, out)
    return out


def torch_reference(base, adapters: dict[str, str], weights: dict[str, float]) -> torch.nn.Module:
    """diffusers' transformer with ``adapters`` loaded through a pipeline's ``load_lora_weights`` and set."""
    model = copy.deepcopy(base)
    pipe = TorchLTXPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=model)
    for name, file in adapters.items():
        pipe.load_lora_weights(file, adapter_name=name)
    pipe.set_adapters(list(weights), list(weights.values()))
    return model


def inputs(config, seed=0, batch=2, frames=2, height=3, width=2, text=7):
    rng = np.random.default_rng(seed)
    tokens = frames * height * width
    return dict(hidden=rng.standard_normal((batch, tokens, config["in_channels"]), dtype=np.float32),
                text=rng.standard_normal((batch, text, config["caption_channels"]), dtype=np.float32),
                mask=np.array([[1] * text, [1] * 4 + [0] * (text - 4)], np.int64)[:batch],
                timestep=np.array([700.0, 150.0], np.float32)[:batch], grid=(frames, height, width))


def torch_forward(model, x) -> np.ndarray:
    f, h, w = x["grid"]
    with torch.no_grad():
        return model(torch.from_numpy(x["hidden"]), torch.from_numpy(x["text"]), torch.from_numpy(x["timestep"]),
                     torch.from_numpy(x["mask"]), num_frames=f, height=h, width=w,
                     rope_interpolation_scale=(8 / 25, 32, 32), return_dict=False)[0].numpy()


def our_forward(module, variables, x) -> np.ndarray:
    f, h, w = x["grid"]
    return np.asarray(module.apply(variables, x["hidden"], x["text"], x["timestep"], x["mask"], num_frames=f,
                                   height=h, width=w, rope_interpolation_scale=(8 / 25, 32, 32)))


@pytest.fixture(scope="module")
def setup(torch_transformer, transformer_checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    module, params = load_transformer(transformer_checkpoints["diffusers"], jnp.float32)
    targets = lora_targets(params, torch_key, {"transformer_blocks": module.config.num_layers})
    files = {"a": make_adapter(torch_transformer, root / "a", seed=1),
             "b": make_adapter(torch_transformer, root / "b", seed=2, rank=3, alpha=1.5,
                               targets=["to_q", "to_v", "ff.net.2"])}
    files["a_native"] = to_non_diffusers(files["a"], os.fspath(root / "a_native.safetensors"))
    return dict(base=torch_transformer, module=module, params=params, targets=targets, files=files, root=root)


def _ours(setup, pairs, fused: bool):
    adapters = [(read_lora(setup["files"][name]), weight) for name, weight in pairs]
    if fused:
        return {"params": fuse(setup["params"], kernel_deltas(adapters, "transformer", setup["targets"]))}
    return {"params": setup["params"], "lora": lora_collection(adapters, "transformer", setup["targets"])}


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("case", ["one adapter 0.7", "non-diffusers format 0.7", "two adapters 0.7 + 0.3"])
def test_transformer_with_lora_matches_diffusers(setup, case, fused):
    files = setup["files"]
    pairs = {"one adapter 0.7": [("a", 0.7)], "non-diffusers format 0.7": [("a_native", 0.7)],
             "two adapters 0.7 + 0.3": [("a", 0.7), ("b", 0.3)]}[case]
    reference_files = {name.replace("_native", ""): files[name.replace("_native", "")] for name, _ in pairs}
    ref_model = torch_reference(setup["base"], reference_files, {n.replace("_native", ""): w for n, w in pairs})
    x = inputs(ODD_TRANSFORMER)
    ref = torch_forward(ref_model, x)
    plain = torch_forward(setup["base"], x)
    assert rel_err(plain, ref) > 1e-2  # the adapters change the output
    out = our_forward(setup["module"], _ours(setup, pairs, fused), x)
    err = rel_err(out, ref)
    report(f"transformer + LoRA ({case}, {'fused' if fused else 'unfused'}) vs diffusers + PEFT", err, TOL)
    assert err <= TOL


def test_alpha_and_ranks(setup):
    """alpha / r from diffusers' metadata (8 / 4 = 2) and from .alpha tensors; rank per module; every module found."""
    a, native = read_lora(setup["files"]["a"]), read_lora(setup["files"]["a_native"])
    assert set(a.modules("transformer")) == set(native.modules("transformer"))
    for name, module in a.modules("transformer").items():
        assert module.rank == 4 and module.scale == 2.0 == native.modules("transformer")[name].scale
    b = read_lora(setup["files"]["b"])
    assert {m.rank for m in b.modules("transformer").values()} == {3}
    assert all(m.scale == 0.5 for m in b.modules("transformer").values())
    assert "transformer_blocks.2.ff.net.2" in b.modules("transformer")
    assert parse_lora_spec("style.safetensors:0.6") == ("style.safetensors", 0.6)
    assert parse_lora_spec("C:/loras/style.safetensors") == ("C:/loras/style.safetensors", 1.0)


def _write(tmp_path, tensors: dict, name="bad.safetensors") -> str:
    path = os.fspath(tmp_path / name)
    save_file({k: np.asarray(v, np.float32) for k, v in tensors.items()}, path)
    return path


def test_errors(setup, tmp_path):
    targets = setup["targets"]
    width = ODD_TRANSFORMER["num_attention_heads"] * ODD_TRANSFORMER["attention_head_dim"]
    cases = [
        ({"transformer.transformer_blocks.0.attn1.to_qq.lora_A.weight": np.zeros((2, width)),
          "transformer.transformer_blocks.0.attn1.to_qq.lora_B.weight": np.zeros((width, 2))},
         r"'transformer_blocks.0.attn1.to_qq' matches no linear layer of the transformer; nearest: "
         r"transformer_blocks.0.attn1.to_q"),
        ({"transformer.proj_in.lora_A.weight": np.zeros((4, 5)),
          "transformer.proj_in.lora_B.weight": np.zeros((16, 3))},
         r"'proj_in' has rank 4 in lora_A \(4, 5\) but 3 in lora_B \(16, 3\)"),
        ({"transformer.proj_in.lora_A.weight": np.zeros((4, 6)),
          "transformer.proj_in.lora_B.weight": np.zeros((16, 4))},
         r"'proj_in' maps 6 -> 16 features but the transformer's layer maps 5 -> 16; the LoRA is for another model"),
        ({"diffusion_model.blocks.0.self_attn.q.lora_A.weight": np.zeros((2, 8)),
          "diffusion_model.blocks.0.self_attn.q.lora_B.weight": np.zeros((8, 2))}, r"is for Wan"),
        ({"diffusion_model.transformer_blocks.0.audio_attn1.to_q.lora_A.weight": np.zeros((2, 8)),
          "diffusion_model.transformer_blocks.0.audio_attn1.to_q.lora_B.weight": np.zeros((8, 2))},
         r"is for LTX-2 \(audio-video\)"),
        ({"transformer.proj_in.lora_A.weight": np.zeros((4, 5))}, r"module 'proj_in' has no lora_B \(up\) weight"),
        ({"transformer.proj_in.weight": np.zeros((16, 5))}, r"is not a LoRA tensor"),
    ]
    from weight_conversion.lora import check_adapter

    for tensors, message in cases:
        with pytest.raises(CheckpointError, match=message):
            check_adapter(read_lora(_write(tmp_path, tensors)), "transformer", targets)
    with pytest.raises(CheckpointError, match="only .safetensors files are read"):
        read_lora(_write(tmp_path, {"a": np.zeros(1)}, "adapter.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        read_lora(tmp_path / "missing.safetensors")


# ------------------------------------------------------------------------------------------ on the pipeline


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """A fresh tiny reference (diffusers' LTXPipeline we may load adapters into), ours over the same folder, and
    adapters for that transformer."""
    from ltx_jax.pipelines import LTXPipeline

    root = tmp_path_factory.mktemp("lora_pipe")
    reference = build_tiny_reference(root / "model")
    ours = LTXPipeline.from_pretrained(reference["root"], dtype="float32", compilation_cache=False, progress=False)
    base = reference["pipe"].transformer
    files = {"a": make_adapter(base, root / "a", seed=4), "b": make_adapter(base, root / "b", seed=5, rank=2)}
    return reference["pipe"], ours, files, reference["root"]


def _call_inputs(seed: int = 0):
    from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER

    gen = torch.Generator().manual_seed(seed)
    embeds = torch.randn(1, 8, TINY_T5.d_model, generator=gen)
    neg = torch.randn(1, 8, TINY_T5.d_model, generator=gen)
    mask = torch.ones(1, 8, dtype=torch.long)
    latents = torch.randn(1, 12, TINY_TRANSFORMER.in_channels, generator=gen)
    return dict(prompt_embeds=embeds, prompt_attention_mask=mask, negative_prompt_embeds=neg,
                negative_prompt_attention_mask=mask, latents=latents)


COMMON = dict(height=64, width=96, num_frames=9, num_inference_steps=3, guidance_scale=3.0, decode_timestep=0.05,
              decode_noise_scale=0.0)


def test_pipeline_with_lora_matches_diffusers(pipelines):
    theirs, ours, files, _ = pipelines
    theirs.load_lora_weights(files["a"], adapter_name="a")
    theirs.load_lora_weights(files["b"], adapter_name="b")
    theirs.set_adapters(["a", "b"], [0.7, 0.4])
    ours.load_lora_weights(files["a"], adapter_name="a")
    ours.load_lora_weights(files["b"], adapter_name="b")
    assert ours.get_active_adapters() == ["b"] and ours.get_list_adapters() == {"transformer": ["a", "b"]}
    ours.set_adapters(["a", "b"], [0.7, 0.4])
    x = _call_inputs()
    with torch.no_grad():
        ref = theirs(**x, output_type="np", **COMMON).frames
    mine = ours(**{k: v.numpy() for k, v in x.items()}, **COMMON)
    value = psnr(mine, ref)
    report("pipeline + 2 LoRA adapters (0.7, 0.4) vs diffusers: PSNR dB", value, PSNR_MIN_DB, at_least=True)
    assert value >= PSNR_MIN_DB

    ours.fuse_lora()
    fused = ours(**{k: v.numpy() for k, v in x.items()}, **COMMON)
    value = psnr(fused, ref)
    report("pipeline + 2 LoRA adapters, fused, vs diffusers: PSNR dB", value, PSNR_MIN_DB, at_least=True)
    assert value >= PSNR_MIN_DB and ours.get_active_adapters() == []
    ours.unfuse_lora()
    assert ours.get_active_adapters() == ["a", "b"]
    again = ours(**{k: v.numpy() for k, v in x.items()}, **COMMON)
    assert psnr(again, mine) >= 100
    ours.unload_lora_weights()
    theirs.unload_lora_weights()
    with torch.no_grad():
        plain_ref = theirs(**x, output_type="np", **COMMON).frames
    plain = ours(**{k: v.numpy() for k, v in x.items()}, **COMMON)
    assert psnr(plain, plain_ref) >= PSNR_MIN_DB and psnr(plain, mine) < 60


def test_new_adapter_weights_compile_nothing(pipelines):
    _, ours, files, _ = pipelines
    ours.unload_lora_weights()
    ours.load_lora_weights(files["a"], adapter_name="a")
    ours.load_lora_weights(files["b"], adapter_name="b")
    x = {k: v.numpy() for k, v in _call_inputs(1).items()}
    ours.set_adapters(["a", "b"], [0.7, 0.4])
    first = ours(**x, **COMMON)
    ours.set_adapters(["a", "b"], [0.2, 1.1])
    with compile_counter() as compiles:
        second = ours(**x, **COMMON)
    print(f"\n[lora] compiles on new adapter weights: {len(compiles)}")
    assert compiles == [] and psnr(first, second) < 60
    with pytest.raises(ValueError, match=r"adapters \['c'\] are not loaded; loaded: \['a', 'b'\]"):
        ours.set_adapters(["c"])
    with pytest.raises(ValueError, match="adapter_name 'a' is already loaded"):
        ours.load_lora_weights(files["a"], adapter_name="a")
    ours.unload_lora_weights()


# int8 weights (transformer and T5) through 3 denoising steps and the VAE: the transformer's ~0.4 % output error
# (test_quantized) moves the frames by ~1e-3 of their range (63 dB measured); 35 dB leaves room for other seeds.
INT8_PIPELINE_PSNR_MIN_DB = 35.0


@pytest.mark.parametrize("weights", [None, "int8"], ids=["float", "int8"])
def test_from_pretrained_fuses_lora_at_load(pipelines, weights):
    """``from_pretrained(..., lora=[(file, 0.7)], weights=...)`` against diffusers with the adapter set to 0.7."""
    from ltx_jax.pipelines import LTXPipeline

    theirs, _, files, root = pipelines
    theirs.unload_lora_weights()
    theirs.load_lora_weights(files["a"], adapter_name="a")
    theirs.set_adapters(["a"], [0.7])
    x = _call_inputs(2)
    with torch.no_grad():
        ref = theirs(**x, output_type="np", **COMMON).frames
    theirs.unload_lora_weights()
    loaded = LTXPipeline.from_pretrained(root, dtype="float32", compilation_cache=False, progress=False,
                                         weights=weights, text_encoder_weights=weights, lora=[(files["a"], 0.7)])
    assert loaded.get_active_adapters() == [] and getattr(loaded.transformer, "weights") == weights
    value = psnr(loaded(**{k: v.numpy() for k, v in x.items()}, **COMMON), ref)
    bound = PSNR_MIN_DB if weights is None else INT8_PIPELINE_PSNR_MIN_DB
    report(f"from_pretrained(lora=0.7, weights={weights}) pipeline vs diffusers: PSNR dB", value, bound, at_least=True)
    assert value >= bound


def test_fusing_into_quantized_kernels_is_refused(setup):
    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel

    module = LTXVideoTransformer3DModel(setup["module"].config, weights="int8")
    params = init_params(module, jax.random.PRNGKey(0))
    deltas = kernel_deltas([(read_lora(setup["files"]["a"]), 1.0)], "transformer", setup["targets"])
    with pytest.raises(ValueError, match="is quantized; fuse LoRA adapters at load time"):
        fuse(params, deltas)


# int8 kernels under an unfused float adapter against the float kernels under the same adapter: the kernels' int8
# rounding alone (3.4e-3 measured, as test_quantized measures int8 kernels without an adapter); the bound is
# test_quantized.INT8_TOL, the same room.
INT8_UNFUSED_LORA_TOL = 3e-2


def test_unfused_lora_runs_on_quantized_weights(setup):
    """The collection is independent of the kernels' storage: the model's own weights in int8 run an unfused adapter
    as the float weights run it, to the int8 rounding."""
    from ltx_jax.models import abstract_params
    from weight_conversion.quantize import quantize_params

    module = setup["module"].clone(weights="int8")
    params = quantize_params(setup["params"], abstract_params(module))
    variables = _ours(setup, [("a", 1.0)], fused=False)
    x = inputs(ODD_TRANSFORMER)
    out = our_forward(module, {"params": params, "lora": variables["lora"]}, x)
    ref = our_forward(setup["module"], variables, x)
    err = rel_err(out, ref)
    report("unfused LoRA on int8 kernels vs on the float kernels", err, INT8_UNFUSED_LORA_TOL)
    assert err <= INT8_UNFUSED_LORA_TOL
    moved = rel_err(our_forward(setup["module"], {"params": setup["params"]}, x), ref)  # 0.96: the adapter counts
    assert moved > 10 * INT8_UNFUSED_LORA_TOL, moved


INT8_LORA_TOL = 3e-2  # int8 weights (test_quantized.INT8_TOL): the adapted kernels quantized after the fuse


@pytest.mark.parametrize("weights", [None, "int8"], ids=["float", "int8"])
def test_load_transformer_fuses_lora_files(setup, transformer_checkpoints, weights, tmp_path):
    """``load_transformer(path, lora=[(file, scale)])``: fused as the kernels are read (before quantizing), against
    diffusers with the adapters set; and from a float Orbax checkpoint (fused after the restore)."""
    from weight_conversion.transformer import save_transformer_orbax

    files = setup["files"]
    ref = torch_forward(torch_reference(setup["base"], {"a": files["a"], "b": files["b"]}, {"a": 0.7, "b": 0.3}),
                        inputs(ODD_TRANSFORMER))
    lora = [(files["a_native"], 0.7), (files["b"], 0.3)]
    module, params = load_transformer(transformer_checkpoints["diffusers"], jnp.float32, weights=weights, lora=lora)
    tol = TOL if weights is None else INT8_LORA_TOL
    err = rel_err(our_forward(module, {"params": params}, inputs(ODD_TRANSFORMER)), ref)
    report(f"load_transformer(lora=two files, weights={weights}) vs diffusers + PEFT", err, tol)
    assert err <= tol
    if weights is None:
        save_transformer_orbax(setup["module"], setup["params"], tmp_path / "orbax")
        module, params = load_transformer(tmp_path / "orbax", jnp.float32, lora=lora)
        err = rel_err(our_forward(module, {"params": params}, inputs(ODD_TRANSFORMER)), ref)
        report("load_transformer(Orbax, lora=two files) vs diffusers + PEFT", err, TOL)
        assert err <= TOL
    else:
        save_transformer_orbax(module, params, tmp_path / "orbax8")
        with pytest.raises(CheckpointError, match="holds int8 weights: LoRA files are fused"):
            load_transformer(tmp_path / "orbax8", jnp.float32, lora=lora)
    bad = os.fspath(tmp_path / "bad.safetensors")
    save_file({"transformer.transformer_blocks.0.attn1.to_qq.lora_A.weight": np.zeros((2, 8), np.float32),
               "transformer.transformer_blocks.0.attn1.to_qq.lora_B.weight": np.zeros((8, 2), np.float32)}, bad)
    with pytest.raises(CheckpointError, match="to_qq' matches no linear layer"):
        load_transformer(transformer_checkpoints["diffusers"], jnp.float32, lora=[(bad, 1.0)])


def test_t5_lora_matches_transformers_with_peft(tmp_path):
    """A file with ``text_encoder.*`` LoRA keys (diffusers' LTX loader takes only the transformer's; transformers +
    PEFT is the reference): ours unfused and fused, and through a pipeline's encode_prompt."""
    from peft import inject_adapter_in_model
    from transformers import T5Config as TorchT5Config
    from transformers import T5EncoderModel as TorchT5

    from ltx_jax.tiny_random import TINY_T5
    from weight_conversion import load_text_encoder
    from weight_conversion.t5 import torch_key as t5_key

    torch.manual_seed(0)
    base = TorchT5(TorchT5Config(**dataclasses.asdict(TINY_T5))).eval()
    base.save_pretrained(tmp_path / "text_encoder")
    model = copy.deepcopy(base)
    config = LoraConfig(r=3, lora_alpha=6, target_modules=["q", "k", "v", "o", "wi_0", "wi_1", "wo"],
                        init_lora_weights=False)
    inject_adapter_in_model(config, model, adapter_name="t5")
    state = get_peft_model_state_dict(model, adapter_name="t5")
    tensors = {f"text_encoder.{k}": v.numpy() for k, v in state.items()}
    file = os.fspath(tmp_path / "t5_lora.safetensors")
    save_file(tensors, file, metadata={"lora_adapter_metadata": json.dumps({"text_encoder.r": 3,
                                                                              "text_encoder.lora_alpha": 6})})
    ids = torch.tensor([[5, 9, 3, 1, 0, 0], [7, 2, 8, 4, 6, 1]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    module, params = load_text_encoder(tmp_path / "text_encoder", jnp.float32)
    targets = lora_targets(params, t5_key, {"block": TINY_T5.num_layers})
    adapter = [(read_lora(file), 1.0)]
    unfused = module.apply({"params": params, "lora": lora_collection(adapter, "text_encoder", targets)},
                           ids.numpy(), mask.numpy())
    fused = module.apply({"params": fuse(params, kernel_deltas(adapter, "text_encoder", targets))}, ids.numpy(),
                         mask.numpy())
    for what, out in (("unfused", unfused), ("fused", fused)):
        err = rel_err(out, ref)
        report(f"T5 + LoRA ({what}) vs transformers + PEFT", err, TOL)
        assert err <= TOL
