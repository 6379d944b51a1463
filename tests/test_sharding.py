"""XLA SPMD sharding on 8 host devices (CPU): the transformer over each mesh axis and a mixed mesh, context-parallel
attention, whole pipelines, sharded loading, parameter bytes per device, the collectives of the compiled program, the
2B config's memory per device and the denoising loop's step caches, against one device. The checks run in one child
process (``tests/sharding_cases.py``) with ``--xla_force_host_platform_device_count=8``; the rest of the suite keeps
one device. fp32; the references are the same computations unsharded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import report

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-5  # max rel err, sharded vs one device (fp32: only the reduction order differs)
PSNR_MIN_DB = 60.0
BYTES_SLACK = 1.15  # per-device param bytes <= 1.15 / (fsdp * tensor) of the total: norms and biases
                    # replicate on tensor


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "sharding_cases.py")], capture_output=True, text=True,
                          env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _case(results, name):
    out = results[name]
    assert "error" not in out, out.get("error")
    return out


def test_transformer_forward_on_each_axis_and_a_mixed_mesh(results):
    for spec, err in _case(results, "transformer_forward").items():
        report(f"transformer sharded {spec} vs one device", err, TOL)
        assert err <= TOL, spec


def test_context_parallel_attention_alone(results):
    for spec, err in _case(results, "attention_alone").items():
        report(f"Ulysses attention {spec} (45 tokens padded, key mask) vs plain", err, TOL)
        assert err <= TOL, spec


def test_pipelines_sharded_equal_one_device(results):
    for name, value in _case(results, "pipelines").items():
        report(f"pipeline {name}: PSNR dB vs one device", value, PSNR_MIN_DB, at_least=True)
        assert value >= PSNR_MIN_DB, name


def test_loaders_place_params_on_their_shards_and_bytes_shrink(results):
    out = _case(results, "loading")
    for spec, row in out["loaded"].items():
        assert row["max_diff"] == 0.0 and row["on_planned_shardings"] and row["module_has_plan"], (spec, row)
    for spec, ratio in out["bytes"].items():
        sizes = dict(part.split("=") for part in spec.split(","))
        ideal = 1.0 / (int(sizes["fsdp"]) * int(sizes["tensor"]))
        report(f"param bytes per device / total, {spec} (ideal {ideal:.3f})", ratio, BYTES_SLACK * ideal)
        assert ratio <= BYTES_SLACK * ideal, spec


def test_collectives_gather_one_layer_at_a_time(results):
    out = _case(results, "collectives")
    print(f"\n[sharding] collectives of the data=2,fsdp=2,context=2 forward: {out['counts']}")
    assert out["counts"]["all-to-all"] >= 4  # Ulysses: q, k, v and the output of each self-attention
    assert out["counts"]["all-gather"] > 0  # FSDP gathers the layer's params inside the scanned loop
    assert out["full_stack_gathers"] == [], "a whole stacked [L, ...] param is gathered"


def test_memory_of_the_2b_config_per_device(results):
    out = _case(results, "memory_2b")
    for spec, row in out.items():
        print(f"\n[sharding] 2B at 768x512x121 (CFG batch 2), {spec}: arguments {row['argument_bytes'] / 2**30:.2f} "
              f"GiB, temporaries {row['temp_bytes'] / 2**30:.2f} GiB per device")
    ratio = out["fsdp=8"]["argument_bytes"] / out["one device"]["argument_bytes"]
    report("2B argument bytes per device, fsdp=8 / one device", ratio, BYTES_SLACK / 8)
    assert ratio <= BYTES_SLACK / 8
    assert out["data=2,fsdp=2,context=2"]["temp_bytes"] < out["one device"]["temp_bytes"] / 2
    # a CFG pair cannot split 8 ways: the tokens take fsdp, so the activations split too (24.6 -> 3.4 GiB)
    assert out["fsdp=8"]["temp_bytes"] < out["one device"]["temp_bytes"] / 4


def test_mesh_flag(results):
    out = _case(results, "cli")
    assert out["folder"] == 0 and out["folder frames"] == [9, 64, 96, 3], out


def test_mesh_errors_before_loading(capsys, tmp_path):
    from ltx_jax.__main__ import main
    from ltx_jax.sharding import ShardingPlan, make_mesh, parse_mesh_spec

    code = main(["ltx_jax", "generate", "--model", "tiny-random", "--prompt", "x", "--output",
                 str(tmp_path / "o.mp4"), "--mesh", "data=3"])
    err = capsys.readouterr().err
    assert code == 2 and "--mesh data=3 needs 3 devices but 1 are visible" in err and "loading" not in err, err
    with pytest.raises(ValueError, match=r"'pipeline=2' is not AXIS=SIZE with AXIS one of data, fsdp, context"):
        parse_mesh_spec("pipeline=2")
    with pytest.raises(ValueError, match="data is given twice"):
        parse_mesh_spec("data=1,data=1")
    assert ShardingPlan.create(None) is None
    plan = ShardingPlan.create("data=1")
    assert plan.spec(("batch", "tokens", None), (3, 5, 2)) == plan.spec((None, None, None))
    assert make_mesh({"context": 1}).axis_names == ("data", "fsdp", "context", "tensor")


def test_sharded_training_equals_one_device(results):
    for mode, row in _case(results, "training").items():
        report(f"3 train steps ({mode}) sharded data=2,fsdp=2,context=2: losses vs one device", row["loss"], TOL)
        report(f"train step ({mode}) sharded: worst gradient leaf vs one device", row["grads"], 1e-4)
        assert row["loss"] <= TOL and row["grads"] <= 1e-4, row


def test_vae_decode_deals_its_tiles_over_the_devices(results):
    """A tiled decode on 8 devices: each device loops over ceil(tiles / 8) of the largest tile group instead of all
    of them, and the frames are one device's (the blend is unchanged)."""
    out = _case(results, "vae_decode")
    one = out["tiled, one device"]["longest_tile_loop"]
    for name, row in out.items():
        report(f"VAE decode {name} vs one device", row["err"], TOL)
        assert row["err"] <= TOL, name
        if name.startswith("tiled,") and "one device" not in name:
            print(f"\n[sharding] {name}: longest tile loop {row['longest_tile_loop']} (one device: {one})")
            # the 20-tile loop becomes ceil(20 / 8) = 3 per device; what is left is the decoder's own loop
            assert row["longest_tile_loop"] <= max(out["whole, one device"]["longest_tile_loop"], -(-one // 8)) < one
    # the uniform layout: one scan of 20 tiles on one device, ceil(20 / 8) = 3 steps of 8 tiles on 8
    assert out["uniform, one device"]["longest_tile_loop"] == 20
    for spec in ("data=2,context=4", "fsdp=8"):
        assert out[f"uniform, {spec}"]["longest_tile_loop"] <= max(out["whole, one device"]["longest_tile_loop"], 3)


def test_step_caches_sharded_equal_one_device(results):
    """The loop with each step cache (CFG, 2 videos) on data=2,fsdp=2,context=2: the decision of every step (a
    replicated reduction over the sharded rows and tokens) and the latents are one device's."""
    for kind, row in _case(results, "step_cache").items():
        print(f"\n[sharding] {kind}: skipped {row['skipped']} on one device, {row['sharded_skipped']} sharded")
        report(f"{kind} step cache sharded data=2,fsdp=2,context=2: latents vs one device", row["err"], TOL)
        assert row["sharded_skipped"] == row["skipped"] and 0 < sum(row["skipped"]) < len(row["skipped"]) - 1
        assert row["err"] <= TOL, kind
