"""Every parameter of every model declares its logical axes where it is created (``ltx_jax.sharding``): one name per
dimension, each a name of ``DEFAULT_RULES``; nothing is inferred from paths or sizes. Full-size configs are checked
abstractly (``jax.eval_shape``, no memory); quantized kernels, their scales and unfused LoRA adapters included. The
param trees themselves stay plain arrays with the checkpoints' names.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.models import abstract_params, init_params, param_axes
from ltx_jax.models.latent_upsampler import LatentUpsampler
from ltx_jax.models.ltx2 import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2LatentUpsampler, LTX2Vocoder,
                                 LTX2VocoderWithBWE, LTX2VideoTransformer3DModel)
from ltx_jax.models.layers import lora_axes
from ltx_jax.models.t5 import T5EncoderModel
from ltx_jax.models.transformer import LTXVideoTransformer3DModel
from ltx_jax.models.vae import AutoencoderKLLTXVideo, Decoder3d
from ltx_jax.releases import LATENT_UPSAMPLER_PRESETS, RELEASES, T5_PRESETS, TRANSFORMER_PRESETS
from ltx_jax.releases_ltx2 import (LTX2_AUDIO_VAE_PRESETS, LTX2_LATENT_UPSAMPLER_PRESETS, LTX2_TRANSFORMER_PRESETS,
                                   LTX2_VIDEO_VAE_PRESETS, LTX2_VOCODER_PRESETS)
from ltx_jax.sharding import DEFAULT_RULES, ShardingPlan, flat_axes, make_mesh
from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER, TINY_UPSAMPLER, TINY_VAE
from weight_conversion.lora import LoraAdapter, LoraModule, lora_collection, lora_targets
from weight_conversion.mapping import flatten
from weight_conversion.t5 import torch_key as t5_key
from weight_conversion.transformer import torch_key as transformer_key

RULE_NAMES = {name for name, _ in DEFAULT_RULES}
BF16 = dict(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)


def _vae_configs():
    configs = {}
    for release in RELEASES.values():
        configs.setdefault(release.vae, release.name)
    return {name: config for config, name in configs.items()}


MODULES = {
    "transformer tiny": LTXVideoTransformer3DModel(TINY_TRANSFORMER),
    "transformer tiny int8": LTXVideoTransformer3DModel(TINY_TRANSFORMER, weights="int8"),
    "transformer tiny fp8": LTXVideoTransformer3DModel(TINY_TRANSFORMER, weights="fp8"),
    "transformer tiny remat, cudnn": LTXVideoTransformer3DModel(TINY_TRANSFORMER, remat=True,
                                                                attention_implementation="cudnn"),
    **{f"transformer {name}": LTXVideoTransformer3DModel(cfg, **BF16) for name, cfg in TRANSFORMER_PRESETS.items()},
    **{f"transformer {name} fp8": LTXVideoTransformer3DModel(cfg, weights="fp8", **BF16)
       for name, cfg in TRANSFORMER_PRESETS.items()},
    "t5 tiny": T5EncoderModel(TINY_T5),
    "t5 tiny int8": T5EncoderModel(TINY_T5, weights="int8"),
    **{f"t5 {name}": T5EncoderModel(cfg, **BF16) for name, cfg in T5_PRESETS.items()},
    **{f"t5 {name} int8": T5EncoderModel(cfg, weights="int8", **BF16) for name, cfg in T5_PRESETS.items()},
    "vae tiny": AutoencoderKLLTXVideo(TINY_VAE),
    "vae tiny decoder": Decoder3d(TINY_VAE),
    **{f"vae of {name}": AutoencoderKLLTXVideo(cfg, **BF16) for name, cfg in _vae_configs().items()},
    "upsampler tiny": LatentUpsampler(TINY_UPSAMPLER),
    **{f"upsampler {name}": LatentUpsampler(cfg, **BF16) for name, cfg in LATENT_UPSAMPLER_PRESETS.items()},
    # LTX-2 at the releases' real configs
    "ltx2 transformer ltx-2-19b": LTX2VideoTransformer3DModel(LTX2_TRANSFORMER_PRESETS["ltx-2-19b"], **BF16),
    "ltx2 transformer ltx-2.5-22b fp8": LTX2VideoTransformer3DModel(LTX2_TRANSFORMER_PRESETS["ltx-2.5-22b"],
                                                                    weights="fp8", **BF16),  # 2.3's layers and more
    **{f"ltx2 video vae {name}": AutoencoderKLLTX2Video(cfg, **BF16) for name, cfg in LTX2_VIDEO_VAE_PRESETS.items()},
    **{f"ltx2 audio vae {name}": AutoencoderKLLTX2Audio(cfg, **BF16) for name, cfg in LTX2_AUDIO_VAE_PRESETS.items()},
    "ltx2 vocoder ltx-2": LTX2Vocoder(LTX2_VOCODER_PRESETS["ltx-2"], **BF16),
    "ltx2 vocoder ltx-2.3": LTX2VocoderWithBWE(LTX2_VOCODER_PRESETS["ltx-2.3"], **BF16),
    **{f"ltx2 upsampler {name}": LTX2LatentUpsampler(cfg, **BF16)
       for cfg, name in {cfg: name for name, cfg in LTX2_LATENT_UPSAMPLER_PRESETS.items()}.items()},
}


@pytest.mark.parametrize("name", list(MODULES))
def test_every_param_declares_its_axes(name):
    module = MODULES[name]
    shapes = flatten(abstract_params(module))
    axes = flat_axes(param_axes(module))
    assert set(axes) == set(shapes), sorted(set(axes) ^ set(shapes))
    for path, leaf in shapes.items():
        names = axes[path]
        assert len(names) == leaf.ndim, ("/".join(path), names, leaf.shape)
        assert set(names) <= RULE_NAMES, ("/".join(path), names)
        if path[-1] == "kernel_scale":  # a quantized kernel's scale is per output column: the kernel's out axis
            assert names == axes[path[:-1] + ("kernel",)][:-2] + axes[path[:-1] + ("kernel",)][-1:], path
    scanned = [p for p in shapes if p[0] in ("transformer_blocks", "block")]
    assert all(axes[p][0] == "layers" for p in scanned)  # nn.scan's metadata adds the stacked axis
    print(f"\n[param axes] {name}: {len(shapes)} params, all declared")


def test_the_shardings_follow_the_declarations():
    """One device: the declared names reach ``param_shardings``; the transformer's blocks, by name."""
    module = MODULES["transformer tiny int8"]
    plan = ShardingPlan(make_mesh({"fsdp": 1}))
    shardings = flatten(plan.param_shardings(abstract_params(module), module))
    assert set(shardings) == set(flatten(abstract_params(module)))
    axes = param_axes(module)["transformer_blocks"]
    assert axes["attn1"]["to_q"]["kernel"] == ("layers", "embed", "heads")
    assert axes["attn1"]["to_q"]["kernel_scale"] == ("layers", "heads")
    assert axes["attn1"]["to_out_0"]["kernel"] == ("layers", "heads", "embed")
    assert axes["ff"]["net_0_proj"]["kernel"] == ("layers", "embed", "mlp")
    assert axes["ff"]["net_2"]["kernel"] == ("layers", "mlp", "embed")
    t5 = param_axes(MODULES["t5 tiny"])
    assert t5["shared"]["embedding"] == ("vocab", "embed")
    assert t5["relative_attention_bias"] == ("replicated", "heads")


def test_params_stay_plain_arrays():
    module = MODULES["transformer tiny int8"]
    params = init_params(module, jax.random.PRNGKey(0))
    leaves = jax.tree_util.tree_leaves(params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(x, jax.Array) for x in leaves)
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(abstract_params(module)))
    assert set(flatten(params)) == set(flat_axes(param_axes(module)))


def _adapter(targets, names, rank=2, seed=0):
    rng = np.random.default_rng(seed)
    modules = {n: LoraModule(rng.standard_normal((targets[n].in_features, rank)).astype(np.float32),
                             rng.standard_normal((rank, targets[n].out_features)).astype(np.float32), 0.5)
               for n in names}
    return LoraAdapter("synthetic.safetensors", {"transformer": modules, "text_encoder": modules})


@pytest.mark.parametrize("which", ["transformer", "text_encoder"])
def test_lora_adapters_take_their_kernels_axes(which):
    if which == "transformer":
        module = MODULES["transformer tiny"]
        targets = lora_targets(abstract_params(module), transformer_key,
                               {"transformer_blocks": TINY_TRANSFORMER.num_layers})
        names = ["proj_in", "transformer_blocks.0.attn1.to_q", "transformer_blocks.1.ff.net.2"]
    else:
        module = MODULES["t5 tiny"]
        targets = lora_targets(abstract_params(module), t5_key, {"block": TINY_T5.num_layers})
        names = [n for n in targets if n.endswith(("SelfAttention.q", "DenseReluDense.wo"))][:2]
    collection = lora_collection([(_adapter(targets, names), 1.0)], which, targets)
    axes = param_axes(module)
    declared = flat_axes(lora_axes(axes, collection))
    kernels = flat_axes(axes)
    flat = flatten(collection)
    assert set(declared) == set(flat)
    for path, value in flat.items():
        names_ = declared[path]
        kernel = kernels[path[:-1] + ("kernel",)]
        assert len(names_) == value.ndim and set(names_) <= RULE_NAMES, (path, names_)
        expected = {"a": kernel[:-1] + ("replicated",), "b": kernel[:-2] + ("replicated", kernel[-1]),
                    "scale": kernel[:-2] + ("replicated",)}[path[-1]]
        assert names_ == expected, (path, names_, kernel)
    variables = {"params": init_params(module, jax.random.PRNGKey(0)), "lora": collection}
    placed = ShardingPlan(make_mesh({"fsdp": 1})).place(variables,
                                                        {"params": axes, "lora": lora_axes(axes, collection)})
    assert set(flatten(placed["lora"])) == set(flat)


class _Undeclared(nn.Module):
    def init_inputs(self):
        return (jnp.zeros((1, 3)),), {}

    @nn.compact
    def __call__(self, x):
        w = self.param("w", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (3,))
        b = self.param("b", nn.initializers.zeros, (3,))
        return x * w + b


def test_an_undeclared_param_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"param b \(3,\) declares no logical axes"):
        param_axes(_Undeclared())
    plan = ShardingPlan(make_mesh({"fsdp": 1}))
    shapes = {"w": jax.ShapeDtypeStruct((3,), jnp.float32), "inner": {"b": jax.ShapeDtypeStruct((3, 2), jnp.float32)}}
    with pytest.raises(ValueError, match=r"param inner/b \(3, 2\) has no declared logical axes"):
        plan.param_shardings(shapes, {"w": ("embed",)})
    with pytest.raises(ValueError, match=r"param inner/b has shape \(3, 2\) but logical axes \('embed',\)"):
        plan.param_shardings(shapes, {"w": ("embed",), "inner": {"b": ("embed",)}})
