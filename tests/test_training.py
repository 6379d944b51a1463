"""Fine-tuning against PyTorch (fp32, CPU, tiny random): the flow-matching loss and every gradient leaf of LoRA and
full fine-tuning against diffusers' transformer (+ PEFT) running LTX-Video-Trainer's objective on the same batch,
noise, sigmas and conditioning mask; a tiny model overfitting two clips; exact resume; exported LoRAs in diffusers;
preprocessing and the loader with bad data; the command line."""

from __future__ import annotations

import copy
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import TINY_TRANSFORMER, ended_by_interrupt, interrupt_at, randomize_, rel_err, report
from peft import LoraConfig

from ltx_jax.training import (Batch, Trainer, TrainConfig, export_lora, flow_matching_loss, latest_checkpoint,
                              restore_checkpoint, save_checkpoint)
from weight_conversion import load_transformer
from weight_conversion.lora import lora_collection, lora_targets, read_lora
from weight_conversion.mapping import flatten
from weight_conversion.transformer import torch_key, transformer_rules

LOSS_TOL = 1e-5
GRAD_TOL = 1e-4
GRID = (3, 2, 3)  # latent frames, height, width: 18 tokens, 6 per frame
FPS = 24.0
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj"]


def batch_arrays(seed=0):
    rng = np.random.default_rng(seed)
    n, c = int(np.prod(GRID)), TINY_TRANSFORMER["in_channels"]
    latents = rng.standard_normal((2, n, c)).astype(np.float32)
    noise = rng.standard_normal((2, n, c)).astype(np.float32)
    embeds = rng.standard_normal((2, 7, TINY_TRANSFORMER["caption_channels"])).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 5 + [0] * 2], np.int64)
    sigmas = np.array([0.3, 0.85], np.float32)
    cond = np.zeros((2, n), np.float32)
    cond[:, : GRID[1] * GRID[2]] = 1.0  # first-frame conditioning (image-to-video training)
    return latents, noise, embeds, mask, sigmas, cond


def torch_trainer_loss(model, latents, noise, embeds, mask, sigmas, cond):
    """LTX-Video-Trainer's StandardTrainingStrategy (prepare_batch + compute_loss), its timesteps unrounded."""
    x, eps = torch.from_numpy(latents), torch.from_numpy(noise)
    s = torch.from_numpy(sigmas).view(-1, 1, 1)
    conditioning = torch.from_numpy(cond).bool()
    noisy = torch.where(conditioning.unsqueeze(-1), x, (1 - s) * x + s * eps)
    timesteps = torch.where(conditioning, 0.0, (s.view(-1, 1) * 1000.0).expand_as(conditioning))
    pred = model(noisy, torch.from_numpy(embeds), timesteps, torch.from_numpy(mask), num_frames=GRID[0],
                 height=GRID[1], width=GRID[2], rope_interpolation_scale=(8 / FPS, 32, 32), return_dict=False)[0]
    loss = (pred - (eps - x)).pow(2)
    loss_mask = (~conditioning.unsqueeze(-1)).float()
    return loss.mul(loss_mask).div(loss_mask.mean()).mean()


def our_loss_fn(module, arrays):
    latents, noise, embeds, mask, sigmas, cond = arrays
    return lambda params, lora=None: flow_matching_loss(
        module, params, latents, noise, sigmas, embeds, mask, num_frames=GRID[0], height=GRID[1], width=GRID[2],
        rope_interpolation_scale=(8 / FPS, 32, 32), conditioning_mask=cond, lora=lora)


CONFIG = dict(TINY_TRANSFORMER, out_channels=TINY_TRANSFORMER["in_channels"])  # velocity has the latents' width


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory):
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    model = randomize_(LTXVideoTransformer3DModel(**CONFIG), seed=21)
    folder = tmp_path_factory.mktemp("train_model")
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def ours(torch_model):
    return load_transformer(torch_model[1], jnp.float32)


def test_lora_loss_and_gradients_match_pytorch(torch_model, ours, tmp_path):
    from diffusers import LTXPipeline as TorchLTXPipeline
    from peft import get_peft_model_state_dict

    module, params = ours
    model = copy.deepcopy(torch_model[0])
    torch.manual_seed(3)
    lora_config = LoraConfig(r=3, lora_alpha=6, target_modules=TARGETS, init_lora_weights=False)
    model.add_adapter(lora_config)
    TorchLTXPipeline.save_lora_weights(str(tmp_path), transformer_lora_layers=get_peft_model_state_dict(model),
                                       transformer_lora_adapter_metadata=lora_config.to_dict())
    arrays = batch_arrays()
    loss = torch_trainer_loss(model, *arrays)
    loss.backward()
    targets = lora_targets(params, torch_key, {"transformer_blocks": module.config.num_layers})
    collection = lora_collection([(read_lora(tmp_path / "pytorch_lora_weights.safetensors"), 1.0)], "transformer",
                                 targets)
    flat = flatten(collection)
    trainable = {p: jnp.asarray(v) for p, v in flat.items() if p[-1] in ("a", "b")}
    fixed = {p: jnp.asarray(v) for p, v in flat.items() if p[-1] == "scale"}
    from weight_conversion.mapping import unflatten

    fn = our_loss_fn(module, arrays)
    value, grads = jax.value_and_grad(lambda t: fn(params, unflatten({**t, **fixed})))(trainable)
    err = abs(float(value) - loss.item()) / abs(loss.item())
    report("training loss (LoRA) vs LTX-Video-Trainer's on diffusers + PEFT", err, LOSS_TOL)
    assert err <= LOSS_TOL
    worst = 0.0
    for name, p in model.named_parameters():
        if "lora_" not in name:
            continue
        module_name = name.split(".lora_")[0]
        target = targets[module_name]
        leaf = "a" if ".lora_A." in name else "b"
        ours_grad = np.asarray(grads[target.path + (leaf,)])
        ours_grad = ours_grad[target.layer] if target.layer is not None else ours_grad
        worst = max(worst, rel_err(ours_grad, p.grad.numpy().T))
    report("training gradients (LoRA), worst leaf vs diffusers + PEFT", worst, GRAD_TOL)
    assert worst <= GRAD_TOL


def test_full_fine_tuning_gradients_match_pytorch(torch_model, ours):
    module, params = ours
    model = copy.deepcopy(torch_model[0])
    arrays = batch_arrays(1)
    loss = torch_trainer_loss(model, *arrays)
    loss.backward()
    value, grads = jax.value_and_grad(our_loss_fn(module, arrays))(params)
    err = abs(float(value) - loss.item()) / abs(loss.item())
    report("training loss (full) vs LTX-Video-Trainer's on diffusers", err, LOSS_TOL)
    assert err <= LOSS_TOL
    torch_grads = {k: v.grad.numpy() for k, v in model.named_parameters() if v.grad is not None}
    flat_grads, worst, checked = flatten(grads), 0.0, 0
    for rule in transformer_rules(module.config, params):
        per_layer = [rule.transform.apply(torch_grads[k]) for k in rule.sources]
        ref = np.stack(per_layer) if rule.stacked else per_layer[0]
        worst = max(worst, rel_err(np.asarray(flat_grads[rule.target]), ref))
        checked += 1
    report(f"training gradients (full, {checked} leaves), worst leaf vs diffusers", worst, GRAD_TOL)
    assert worst <= GRAD_TOL and checked == len(flat_grads)


def _trainer(ours, **overrides):
    module, params = ours
    config = TrainConfig(**{**dict(mode="lora", lora_rank=4, lora_alpha=4, learning_rate=3e-3, steps=60,
                                   warmup_steps=5, first_frame_conditioning_p=0.5, lora_targets=tuple(TARGETS)),
                            **overrides})
    return Trainer.create(module, params, config, jax.random.PRNGKey(0))


def _clips(n=2, seed=5):
    latents, _, embeds, mask, _, _ = batch_arrays(seed)
    return Batch(jnp.asarray(latents[:n]), jnp.asarray(embeds[:n]), jnp.asarray(mask[:n]), grid=GRID, fps=FPS)


OVERFIT_STEPS = 150
OVERFIT_FACTOR = 10.0  # the loss of the two clips falls at least 10x within OVERFIT_STEPS steps


def test_a_tiny_model_overfits_two_clips(ours):
    """Full fine-tuning of the tiny model on two clips, with the same noise every step (so that a perfect fit
    exists), falls >= 10x within 150 steps; LoRA training on the same lowers it too (rank 4: far fewer weights)."""
    batch = _clips()
    for mode, factor in (("full", OVERFIT_FACTOR), ("lora", 1.5)):
        trainer = _trainer(ours, mode=mode, steps=OVERFIT_STEPS, learning_rate=1e-2 if mode == "full" else 2e-2,
                           sigma_sampler="uniform", first_frame_conditioning_p=0.0, same_noise_every_step=True)
        state = trainer.init_state()
        losses = []
        for _ in range(OVERFIT_STEPS):
            state, metrics = trainer.step(state, batch)
            losses.append(float(metrics["loss"]))
        first, last = np.mean(losses[:5]), np.mean(losses[-5:])
        print(f"\n[training] {mode}: loss {first:.3f} -> {last:.4f} in {OVERFIT_STEPS} steps ({first / last:.1f}x)")
        report(f"overfit two clips ({mode}): loss reduction in {OVERFIT_STEPS} steps", first / last, factor,
               at_least=True)
        assert first / last >= factor and np.isfinite(losses).all()


def test_resume_reproduces_the_next_losses(ours, tmp_path):
    batch = _clips()
    trainer = _trainer(ours, gradient_accumulation_steps=2)
    state = trainer.init_state()
    straight = []
    for i in range(6):
        state, metrics = trainer.step(state, batch)
        straight.append(float(metrics["loss"]))
        if i == 2:
            path = save_checkpoint(tmp_path, state, trainer.config)
    assert latest_checkpoint(tmp_path) == path
    resumed_trainer = _trainer(ours, gradient_accumulation_steps=2)
    state = restore_checkpoint(path, resumed_trainer.init_state())
    assert int(state.step) == 3
    again = []
    for _ in range(3):
        state, metrics = resumed_trainer.step(state, batch)
        again.append(float(metrics["loss"]))
    print(f"\n[training] losses {straight[3:]} resumed {again}")
    assert again == straight[3:]


def test_exported_lora_loads_in_diffusers_and_ours(ours, torch_model, tmp_path):
    from diffusers import LTXPipeline as TorchLTXPipeline

    from ltx_jax.training import merge_lora

    trainer = _trainer(ours)
    state = trainer.init_state()
    for _ in range(4):
        state, _ = trainer.step(state, _clips())
    module, params = ours
    args = dict(rank=4, alpha=4, target_modules=TARGETS)
    files = {fmt: export_lora(state.trainable, trainer.lora_fixed, tmp_path / f"{fmt}.safetensors", format=fmt,
                              **args) for fmt in ("diffusers", "comfyui")}
    latents, _, embeds, mask, sigmas, _ = batch_arrays(2)
    kw = dict(num_frames=GRID[0], height=GRID[1], width=GRID[2], rope_interpolation_scale=(8 / FPS, 32, 32))
    lora = merge_lora(state.trainable, trainer.lora_fixed)
    mine = np.asarray(module.apply({"params": params, "lora": lora}, latents, embeds, sigmas * 1000, mask, **kw))
    plain = np.asarray(module.apply({"params": params}, latents, embeds, sigmas * 1000, mask, **kw))
    model = copy.deepcopy(torch_model[0])
    pipe = TorchLTXPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=model)
    pipe.load_lora_weights(files["diffusers"], adapter_name="trained")
    with torch.no_grad():
        theirs = model(torch.from_numpy(latents), torch.from_numpy(embeds), torch.from_numpy(sigmas * 1000),
                       torch.from_numpy(mask), return_dict=False, **kw)[0].numpy()
    err = rel_err(theirs, mine)
    report("exported LoRA (diffusers format) in diffusers vs ours", err, 1e-5)
    assert err <= 1e-5 and rel_err(plain, mine) > 1e-4  # the adapter trained away from zero
    targets = lora_targets(params, torch_key, {"transformer_blocks": module.config.num_layers})
    for fmt, file in files.items():
        again = lora_collection([(read_lora(file), 1.0)], "transformer", targets)
        out = np.asarray(module.apply({"params": params, "lora": again}, latents, embeds, sigmas * 1000, mask, **kw))
        err = rel_err(out, mine)
        report(f"exported LoRA ({fmt} format) read back by ours", err, 1e-5)
        assert err <= 1e-5


def test_config_errors():
    with pytest.raises(ValueError, match="mode='half'"):
        TrainConfig(mode="half")
    with pytest.raises(ValueError, match="gradient_accumulation_steps=0 must be >= 1"):
        TrainConfig(gradient_accumulation_steps=0)
    with pytest.raises(ValueError, match="sigma_sampler='beta'"):
        TrainConfig(sigma_sampler="beta")


# --------------------------------------------------------------------------------------- data and the command line

def _write_clips(folder, tiny_root):
    from ltx_jax.video import write_video

    rng = np.random.default_rng(0)
    os.makedirs(folder)
    for name, frames in (("a", 17), ("b", 9), ("nocaption", 9), ("short", 5)):
        write_video(rng.random((frames, 64, 96, 3)).astype(np.float32), os.path.join(folder, f"{name}.mp4"), fps=24)
    with open(os.path.join(folder, "bad.mp4"), "wb") as f:
        f.write(b"not a video at all")
    for name in ("a", "short", "bad"):
        with open(os.path.join(folder, f"{name}.txt"), "w") as f:
            f.write(f"clip {name}, a fox in the snow")
    with open(os.path.join(folder, "captions.jsonl"), "w") as f:
        f.write('{"video": "b.mp4", "caption": "clip b, a fox"}\nnot json\n')


def test_rope_scale_follows_the_vae_that_encoded_the_data(ours, tmp_path):
    """RoPE's scale is (temporal ratio / fps, spatial ratio, spatial ratio) of the VAE that encoded the samples, as the
    pipelines scale it: the loader reads the ratios off what preprocess records (the clip's bucket over its latent
    grid; all samples must agree), ``train`` hands them to the config, whose defaults are the releases' 8 and 32."""
    from safetensors.numpy import save_file

    from ltx_jax.sampling import rope_interpolation_scale
    from ltx_jax.training.data import Loader, vae_ratios

    assert rope_interpolation_scale(FPS, temporal_ratio=8, spatial_ratio=32) == (8 / FPS, 32, 32)
    assert vae_ratios({"bucket": "96x64x9", "grid": "[2, 2, 3]"}) == (8, 32)
    assert vae_ratios({"bucket": "128x128x1", "grid": "[1, 2, 2]"}) == (None, 64)  # one frame shows no time ratio
    assert vae_ratios({"fps": "24"}) == (None, None)  # written by hand, or before preprocess recorded its bucket

    def write(name, bucket):
        latents, _, embeds, mask, _, _ = batch_arrays()
        save_file({"latents": latents[0].reshape(*GRID, -1), "prompt_embeds": embeds[0],
                   "prompt_attention_mask": mask[0].astype(np.int32)}, str(tmp_path / f"{name}.latents.safetensors"),
                  metadata={"fps": str(FPS), "grid": str(list(GRID)), "bucket": bucket})

    write("a", "96x64x17")  # GRID: 3 latent frames of 2x3
    write("b", "96x64x17")
    assert Loader(str(tmp_path), batch_size=1).vae_ratios == (8, 32)
    write("c", "192x128x33")
    with pytest.raises(ValueError, match=r"VAEs with different temporal compression \(8x in a.latents.safetensors, "
                                         r"16x in c.latents.safetensors\)"):
        Loader(str(tmp_path), batch_size=1)

    batch, key = _clips(), jax.random.PRNGKey(3)

    def loss(**ratios) -> float:  # the same adapter, batch and draws; only RoPE's scale differs
        trainer = _trainer(ours, **ratios)
        return float(trainer.loss(trainer.initial, batch, key))

    default = loss()
    assert default == loss(vae_temporal_ratio=8, vae_spatial_ratio=32)
    assert default != loss(vae_temporal_ratio=16, vae_spatial_ratio=64)


def test_preprocess_train_resume_and_export_from_the_command_line(tmp_path, tiny_reference, caplog):
    """preprocess with bad data (unreadable, uncaptioned, too short, trimmed: each said, the rest kept), train a
    LoRA with checkpoints and a validation video, resume, export; full fine-tuning to an Orbax transformer."""
    import logging

    from ltx_jax.__main__ import main
    from ltx_jax.pipelines import LTXPipeline
    from ltx_jax.training.data import Loader

    clips, latents, run = tmp_path / "clips", tmp_path / "latents", tmp_path / "run"
    _write_clips(clips, tiny_reference["root"])
    with caplog.at_level(logging.WARNING, logger="ltx_jax"):
        code = main(["ltx_jax", "preprocess", "--data", str(clips), "--model", tiny_reference["root"], "--output",
                     str(latents), "--buckets", "96x64x9", "--noprogress"])
    assert code == 0
    assert sorted(os.listdir(latents)) == ["a.latents.safetensors", "b.latents.safetensors"]
    said = caplog.text
    assert "a.mp4: 17 frames; the first 9 are used (bucket 96x64x9), 8 trimmed" in said
    assert "nocaption.mp4: no caption" in said and "cannot read the video" in said and "bad.mp4" in said
    assert "short.mp4: 5 frames, fewer than every bucket's (9)" in said and "captions.jsonl:2: not a" in said
    batch = next(Loader(str(latents), batch_size=2).batches())
    assert batch.latents.shape == (2, 2 * 2 * 3, 8) and batch.grid == (2, 2, 3) and batch.fps == 24.0

    common = ["--data", str(latents), "--model", tiny_reference["root"], "--output", str(run), "--noprogress",
              "--lora_rank", "2", "--lora_targets", "to_q,to_v", "--checkpoint_every", "2", "--warmup_steps", "1"]
    assert main(["ltx_jax", "train", *common, "--steps", "4", "--validation_prompt", "a fox", "--validation_every",
                 "2", "--validation_size", "96x64x9", "--validation_steps", "2"]) == 0
    assert sorted(os.listdir(run / "checkpoints")) == ["step_2", "step_4"]
    assert os.path.exists(run / "validation" / "step_2.mp4") and os.path.exists(run / "validation" / "step_4.mp4")
    assert main(["ltx_jax", "train", *common, "--steps", "5"]) == 0
    assert sorted(os.listdir(run / "checkpoints")) == ["step_4", "step_5"]
    caplog.clear()
    assert main(["ltx_jax", "train", *common, "--steps", "6", "--lora_rank", "3"]) == 2  # another run's settings
    pipe = LTXPipeline.from_pretrained(tiny_reference["root"], dtype="float32", compilation_cache=False,
                                       progress=False)
    pipe.load_lora_weights(str(run / "lora"), weight_name="pytorch_lora_weights.safetensors", adapter_name="trained")
    pipe.load_lora_weights(str(run / "lora" / "lora_comfyui.safetensors"), adapter_name="comfy")
    assert main(["ltx_jax", "train", "--data", str(latents), "--model", tiny_reference["root"], "--output",
                 str(tmp_path / "full"), "--mode", "full", "--steps", "2", "--noprogress"]) == 0
    module, params = load_transformer(tmp_path / "full" / "transformer", jnp.float32)
    assert module.config.num_layers == 2 and params["proj_in"]["kernel"].dtype == jnp.float32
    assert main(["ltx_jax", "train", "--data", str(tmp_path / "nothing"), "--model", "x", "--output", "y"]) == 2
    assert main(["ltx_jax", "preprocess", "--data", str(clips), "--model", "x", "--output", "y", "--buckets",
                 "100x64x9"]) == 2


# --------------------------------------------------------------------------------------- Ctrl-C and SIGTERM

def _popen_cli(args, **kwargs):
    """``python -m ltx_jax ARGS`` with Ctrl-C's default action (a background job starts with SIGINT ignored) and
    stdout / stderr piped."""
    import signal
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen([sys.executable, *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


# Runs `train` with a real SIGINT sent from inside train step 3, after the step has donated (deleted) its input state,
# and a second one as the checkpoint starts to be written (a user pressing Ctrl-C twice).
_SIGNALS_IN_A_STEP = """
import os, signal, sys
from ltx_jax.training import checkpoint, step
from ltx_jax.__main__ import run

take, save = step.Trainer.step, checkpoint.save_checkpoint

def step_then_signal(self, state, batch):
    out = take(self, state, batch)
    if int(out[0].step) == 3:
        os.kill(os.getpid(), signal.SIGINT)
    return out

def signal_then_save(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    return save(*args, **kwargs)

step.Trainer.step, checkpoint.save_checkpoint = step_then_signal, signal_then_save
sys.argv = ["ltx_jax", *sys.argv[1:]]
run()
"""


def test_ctrl_c_during_a_train_step_saves_what_the_step_returned(ours, torch_model, tmp_path):
    """A signal during a step only asks the run to stop: the step finishes, its result (not the donated input) is
    saved as a readable checkpoint, a second Ctrl-C does not break the save, and the run exits 130 with one line."""
    import time

    from safetensors.numpy import save_file

    latents = tmp_path / "latents"
    latents.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        save_file({"latents": rng.standard_normal((*GRID, CONFIG["in_channels"])).astype(np.float32),
                   "prompt_embeds": rng.standard_normal((7, CONFIG["caption_channels"])).astype(np.float32),
                   "prompt_attention_mask": np.ones(7, np.int32)},
                  str(latents / f"{name}.latents.safetensors"), metadata={"fps": str(FPS)})
    run = tmp_path / "run"
    began = time.time()
    proc = _popen_cli(["-c", _SIGNALS_IN_A_STEP, "train", "--data", str(latents), "--model", str(torch_model[1]),
                       "--output", str(run), "--steps", "40000", "--lora_rank", "2", "--checkpoint_every", "10000",
                       "--noprogress"])
    err = ended_by_interrupt(proc, "training] SIGINT in step 3", began, timeout=240)
    checkpoint = run / "checkpoints" / "step_3"
    assert err.strip().splitlines()[-1] == (f"interrupted: stopped at step 3; checkpoint {checkpoint} (run the same "
                                            "command to resume)")
    assert os.listdir(run / "checkpoints") == ["step_3"] and not os.path.exists(run / "lora")
    trainer = _trainer(ours, lora_rank=2, lora_alpha=2, lora_targets=("to_k", "to_q", "to_v", "to_out.0"))
    state = restore_checkpoint(str(checkpoint), trainer.init_state())
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(state.trainable),
                                                                 jax.tree_util.tree_leaves(trainer.initial)))
    assert int(state.step) == 3 and moved > 0


def test_ctrl_c_early_in_preprocess_exits_130_and_writes_nothing(tmp_path, tiny_reference):
    """SIGINT at moments in the first seconds (imports, JAX's start, loading): exit 130, one line, no traceback, no
    file; never swallowed by a callback (the run would go on and write)."""
    clips = tmp_path / "clips"
    _write_clips(clips, tiny_reference["root"])
    for moment in (0.3, 1.0, 2.0):
        output = tmp_path / f"latents_{moment}"
        _, err = interrupt_at(lambda: _popen_cli(["-m", "ltx_jax", "preprocess", "--data", str(clips), "--model",
                                                  tiny_reference["root"], "--output", str(output), "--buckets",
                                                  "96x64x9", "--noprogress"]), moment, "training: preprocess")
        assert err.strip().splitlines()[-1].endswith("; nothing was written."), err[-3000:]
        assert not output.exists() or not os.listdir(output)
