"""Runs one job on the ORIGINAL Lightricks LTX-Video package (``ltx-video==0.1.2``, module ``ltx_video``).

This file runs INSIDE the package's own virtual environment (``tests/original_ltx.py`` builds it and starts this
script); it imports only ltx_video, torch, numpy and the standard library (ltx_video brings diffusers 0.39 and
transformers < 4.52 with it). Usage: ``python original_runner.py JOB.json INPUTS.npz OUTPUTS.npz``.

The job is JSON; any string value ``"@name"`` anywhere in it stands for the array ``name`` of INPUTS.npz (as a torch
tensor). Three kinds:

``{"kind": "transformer", "checkpoint": FILE, "kwargs": {...}, "coords": {...}}``
    ``Transformer3DModel.from_pretrained(FILE)`` and one forward with ``kwargs`` (``hidden_states`` [B, N, C],
    ``encoder_hidden_states`` [B, T, D], ``encoder_attention_mask`` [B, T] (1 = keep), ``timestep`` [B, 1] or
    [B, N] in [0, 1] (the model multiplies by 1000), ``indices_grid`` [B, 3, N], optional ``skip_layer_mask``
    [layers, B] and ``skip_layer_strategy`` (a SkipLayerStrategy name)). ``coords = {"latent_frames": F,
    "latent_height": H, "latent_width": W, "frame_rate": fps}`` builds ``indices_grid`` the way
    ``LTXVideoPipeline.__call__`` does (patchifier corner coordinates, ``latent_to_pixel_coords`` with the VAE of the
    same file and the transformer's ``causal_temporal_positioning``, frame axis divided by the frame rate).
    Outputs: ``sample`` [B, N, C_out] and ``indices_grid``.

``{"kind": "latent_upsampler", "checkpoint": FILE, "kwargs": {"latent": "@x"}}``
    ``LatentUpsampler.from_pretrained(FILE)`` (a single .safetensors file whose metadata ``config`` it reads with
    ``LatentUpsampler.from_config``: its own defaults for missing keys; strict ``load_state_dict``) and one forward
    on ``latent`` [B, C, F, H, W] (raw VAE latents). Outputs: ``sample`` [B, C, F', H', W'].

``{"kind": "schedule", "scheduler": {...}, "cases": [[steps, [B, C, F, H, W]], ...]}``
    ``RectifiedFlowScheduler(**scheduler).set_timesteps(steps, samples_shape=shape)`` per case. Outputs:
    ``timesteps.<i>`` [steps] (the 0-1 scale).

``{"kind": "pipeline", "checkpoint": FILE, "kwargs": {...}, "conditioning_items": [...], "seed": 0, ...}``
    ``LTXVideoPipeline`` over the file's transformer, VAE and scheduler, ``SymmetricPatchifier(patch_size=1)``,
    no tokenizer / text encoder (pass ``prompt_embeds``, ``prompt_attention_mask``, ``negative_prompt_embeds``,
    ``negative_prompt_attention_mask``; negatives absent -> zeros, as the pipeline itself substitutes). ``kwargs`` go
    to ``__call__`` unchanged except: ``skip_layer_strategy`` may be a name ("AttentionValues"); ``is_video=True``
    and ``vae_per_channel_normalize=True`` are the defaults (``inference.py`` always passes both; decoding raises a
    KeyError without the second); ``output_type`` is "pt" (frames) or "latent". ``conditioning_items`` are
    ``ConditioningItem`` fields (``media_item`` an array [b, 3, f, h, w] in [-1, 1], ``media_frame_number``,
    ``conditioning_strength``, ``media_x``, ``media_y``). ``scheduler`` (optional) replaces the file's scheduler
    config by ``RectifiedFlowScheduler(**scheduler)``. ``multi_scale = {"latent_upsampler": FILE,
    "downscale_factor": x, "first_pass": {...}, "second_pass": {...}}`` runs ``LTXMultiScalePipeline`` instead.

    Random draws. Every draw the pipeline makes goes through one of four functions, all intercepted here, and is
    named by the site that makes it:

    =============  ==================================================  ===============================================
    site           made by                                             shape
    =============  ==================================================  ===============================================
    latents        ``prepare_latents``: the initial noise              [B, F*H*W, C] (packed tokens, frame-major)
    vae_encode     ``DiagonalGaussianDistribution.sample`` in          [b, C, f, h, w] per conditioning item / media
                   ``vae_encode`` (posterior sample, global RNG)
    conditioning   ``prepare_conditioning``: noise lerped into          [b, C, f, h, w] per non-frame-0 item
                   extra (non-frame-0) conditioning latents
    image_cond     ``add_noise_to_image_conditioning_latents``          [B, N, C] once per step (N incl. extra tokens)
                   (only when ``image_cond_noise_scale`` > 0)
    decode         ``torch.randn_like`` in ``__call__`` before decoding [B, C, F, H, W] (only with a timestep-
                   (normalised latent space)                           conditioned decoder and output_type != latent)
    stochastic     ``torch.randn_like`` in ``RectifiedFlowScheduler``   [B, N, C] per step (``stochastic_sampling``)
    vae_inject     ``torch.randn`` in the decoder's noise injection     [h, w] per resnet (``inject_noise`` blocks)
    =============  ==================================================  ===============================================

    The k-th draw of a site (counted over the whole job: a multi-scale second pass goes on from the first's
    numbers) takes the input array ``noise.<site>.<k>`` when there is one (its shape must match);
    sites listed in ``zero_noise`` get zeros (``"vae_encode"`` turns the posterior sample into its mode); any other
    draw comes from a torch generator seeded with ``seed``, or raises when ``strict_noise`` is true. Every draw is
    returned as ``noise.<site>.<k>``, with one line per draw in ``draw_log``, so a second run (or diffusers) can be
    given exactly the same numbers.

    Outputs: ``frames`` [B, F, H, W, 3] float32 in [0, 1] (output_type "pt"), ``latents`` [B, C, F, H, W] (denoised,
    normalised, conditioning tokens removed: what the pipeline unpatchifies), ``decoder_latents`` (what goes into
    ``vae_decode``: after decode noise and tone mapping), ``timesteps`` (the schedule), ``init_latents`` [B, N, C],
    ``pixel_coords`` [B, 3, N] and ``conditioning_mask`` [B, N] (after ``prepare_conditioning``), ``step_latents``
    [S, B, N, C] and ``step_timesteps`` [S, 1, N or 1] (after / at each denoising step). A second pipeline call
    (multi-scale) prefixes its records with ``pass1.``.
"""

from __future__ import annotations

import contextlib
import json
import sys

import numpy as np
import torch

import diffusers.models.autoencoders.vae as diffusers_vae
import ltx_video.pipelines.pipeline_ltx_video as ltx_pipeline
from ltx_video.models.autoencoders.causal_video_autoencoder import CausalVideoAutoencoder
from ltx_video.models.autoencoders.latent_upsampler import LatentUpsampler
from ltx_video.models.autoencoders.vae_encode import latent_to_pixel_coords
from ltx_video.models.transformers.symmetric_patchifier import SymmetricPatchifier
from ltx_video.models.transformers.transformer3d import Transformer3DModel
from ltx_video.schedulers.rf import RectifiedFlowScheduler
from ltx_video.utils.skip_layer_strategy import SkipLayerStrategy

# Caller function name -> draw site (see the module docstring).
SITES = {
    "prepare_latents": "latents",
    "sample": "vae_encode",
    "prepare_conditioning": "conditioning",
    "add_noise_to_image_conditioning_latents": "image_cond",
    "__call__": "decode",
    "step": "stochastic",
    "_feed_spatial_noise": "vae_inject",
}


def resolve(value, arrays):
    """Replaces every ``"@name"`` in a JSON value by ``torch.from_numpy(arrays[name])``."""
    if isinstance(value, str) and value.startswith("@"):
        return torch.from_numpy(np.array(arrays[value[1:]]))
    if isinstance(value, list):
        return [resolve(v, arrays) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, arrays) for k, v in value.items()}
    return value


def to_numpy(x) -> np.ndarray:
    return x.detach().to(torch.float32).cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


class Draws:
    """Serves the pipeline's random draws: supplied arrays, zeros, or a seeded generator; records each one."""

    def __init__(self, arrays, seed: int, strict: bool, zero_sites):
        self.arrays, self.strict, self.zero_sites = arrays, strict, set(zero_sites)
        self.generator = torch.Generator().manual_seed(seed)
        self.counts: dict[str, int] = {}
        self.drawn: dict[str, np.ndarray] = {}
        self.log: list[str] = []
        self._randn = torch.randn  # the real one, kept before patching

    def draw(self, shape, dtype=None, device=None) -> torch.Tensor:
        caller = sys._getframe(2).f_code.co_name
        site = SITES.get(caller, caller)
        k = self.counts.get(site, 0)
        self.counts[site] = k + 1
        name = f"noise.{site}.{k}"
        shape = tuple(int(s) for s in shape)
        if name in self.arrays:
            value = torch.from_numpy(np.array(self.arrays[name], np.float32))
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}; the pipeline draws {shape} here.")
            how = "supplied"
        elif site in self.zero_sites:
            value, how = torch.zeros(shape), "zeros"
        elif self.strict:
            raise RuntimeError(f"strict_noise: the pipeline draws {name} {shape} ({caller}) and the job supplies none.")
        else:
            value, how = self._randn(shape, generator=self.generator, dtype=torch.float32), "generated"
        self.drawn[name] = value.numpy().copy()
        self.log.append(f"{name} {list(shape)} {how} ({caller})")
        return value.to(dtype=dtype or torch.float32, device=device or "cpu")

    @contextlib.contextmanager
    def patched(self):
        """Routes randn_tensor (pipeline, posterior sample), torch.randn_like and torch.randn through ``draw``."""
        def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
            return self.draw(shape, dtype, device)

        def randn_like(x, *args, dtype=None, device=None, **kwargs):
            return self.draw(x.shape, dtype or x.dtype, device or x.device)

        def randn(*size, generator=None, dtype=None, device=None, **kwargs):
            shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
            return self.draw(shape, dtype, device)

        saved = [(ltx_pipeline, "randn_tensor"), (diffusers_vae, "randn_tensor"),
                 (torch, "randn_like"), (torch, "randn")]
        originals = [getattr(m, n) for m, n in saved]
        for (module, name), fn in zip(saved, (randn_tensor, randn_tensor, randn_like, randn)):
            setattr(module, name, fn)
        try:
            yield
        finally:
            for (module, name), fn in zip(saved, originals):
                setattr(module, name, fn)


class Records:
    """Intermediate tensors of each pipeline call, by name (``pass<k>.`` prefix from the second call on)."""

    def __init__(self):
        self.passes: list[dict[str, list]] = []

    def new_pass(self):
        self.passes.append({})

    def add(self, name, value):
        self.passes[-1].setdefault(name, []).append(to_numpy(value))

    def arrays(self) -> dict[str, np.ndarray]:
        stacked = {"step_latents", "step_timesteps"}
        out = {}
        for k, rec in enumerate(self.passes):
            prefix = f"pass{k}." if k else ""
            for name, values in rec.items():
                out[prefix + name] = np.stack(values) if name in stacked else values[-1]
        return out


def load_transformer(ckpt: str) -> Transformer3DModel:
    return Transformer3DModel.from_pretrained(ckpt).eval()


def load_vae(ckpt: str) -> CausalVideoAutoencoder:
    return CausalVideoAutoencoder.from_pretrained(ckpt).eval()


def run_transformer(job, arrays) -> dict[str, np.ndarray]:
    transformer = load_transformer(job["checkpoint"])
    kwargs = resolve(job.get("kwargs", {}), arrays)
    if isinstance(kwargs.get("skip_layer_strategy"), str):
        kwargs["skip_layer_strategy"] = SkipLayerStrategy[kwargs["skip_layer_strategy"]]
    if "coords" in job:  # the pipeline's coordinates (pipeline_ltx_video.py: prepare_conditioning, __call__)
        c = job["coords"]
        batch = kwargs["hidden_states"].shape[0]
        latent_coords = SymmetricPatchifier(patch_size=1).get_latent_coords(
            c["latent_frames"], c["latent_height"], c["latent_width"], batch, "cpu")
        pixel = latent_to_pixel_coords(latent_coords, load_vae(job["checkpoint"]),
                                       causal_fix=transformer.config.causal_temporal_positioning)
        grid = pixel.to(torch.float32)
        grid[:, 0] = grid[:, 0] * (1.0 / c["frame_rate"])
        kwargs["indices_grid"] = grid
    with torch.no_grad():
        sample = transformer(**kwargs, return_dict=False)[0]
    return {"sample": to_numpy(sample), "indices_grid": to_numpy(kwargs["indices_grid"])}


def run_latent_upsampler(job, arrays) -> dict[str, np.ndarray]:
    upsampler = LatentUpsampler.from_pretrained(job["checkpoint"]).eval()
    kwargs = resolve(job.get("kwargs", {}), arrays)
    with torch.no_grad():
        sample = upsampler(**kwargs)
    return {"sample": to_numpy(sample)}


def run_schedule(job, arrays) -> dict[str, np.ndarray]:
    scheduler = RectifiedFlowScheduler(**job["scheduler"])
    out = {}
    for i, (steps, shape) in enumerate(job["cases"]):
        scheduler.set_timesteps(steps, samples_shape=torch.Size(shape))
        out[f"timesteps.{i}"] = to_numpy(scheduler.timesteps)
    return out


def build_pipeline(job) -> ltx_pipeline.LTXVideoPipeline:
    ckpt = job["checkpoint"]
    from safetensors import safe_open

    with safe_open(ckpt, framework="pt") as f:
        allowed = json.loads(f.metadata()["config"]).get("allowed_inference_steps")
    scheduler = (RectifiedFlowScheduler(**job["scheduler"]) if job.get("scheduler")
                 else RectifiedFlowScheduler.from_pretrained(ckpt))
    pipe = ltx_pipeline.LTXVideoPipeline(
        tokenizer=None, text_encoder=None, vae=load_vae(ckpt), transformer=load_transformer(ckpt),
        scheduler=scheduler, patchifier=SymmetricPatchifier(patch_size=1),
        prompt_enhancer_image_caption_model=None, prompt_enhancer_image_caption_processor=None,
        prompt_enhancer_llm_model=None, prompt_enhancer_llm_tokenizer=None, allowed_inference_steps=allowed,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def instrument(pipe, records: Records):
    """Wraps the pipeline's stages so that their inputs and outputs are recorded (behaviour unchanged)."""
    prepare_conditioning, denoising_step = pipe.prepare_conditioning, pipe.denoising_step
    unpatchify, vae_decode = pipe.patchifier.unpatchify, ltx_pipeline.vae_decode

    def recorded_prepare_conditioning(*args, **kwargs):
        records.new_pass()
        records.add("timesteps", pipe.scheduler.timesteps)
        latents, coords, mask, num_cond = prepare_conditioning(*args, **kwargs)
        records.add("init_latents", latents)
        records.add("pixel_coords", coords)
        if mask is not None:
            records.add("conditioning_mask", mask)
        return latents, coords, mask, num_cond

    def recorded_denoising_step(latents, noise_pred, current_timestep, *args, **kwargs):
        out = denoising_step(latents, noise_pred, current_timestep, *args, **kwargs)
        records.add("step_latents", out)
        records.add("step_timesteps", current_timestep)
        return out

    def recorded_unpatchify(*args, **kwargs):
        out = unpatchify(*args, **kwargs)
        records.add("latents", out)
        return out

    def recorded_vae_decode(latents, *args, **kwargs):
        records.add("decoder_latents", latents)
        return vae_decode(latents, *args, **kwargs)

    pipe.prepare_conditioning, pipe.denoising_step = recorded_prepare_conditioning, recorded_denoising_step
    pipe.patchifier.unpatchify = recorded_unpatchify
    ltx_pipeline.vae_decode = recorded_vae_decode


def pipeline_kwargs(job, arrays) -> dict:
    kwargs = resolve(job.get("kwargs", {}), arrays)
    if isinstance(kwargs.get("skip_layer_strategy"), str):
        kwargs["skip_layer_strategy"] = SkipLayerStrategy[kwargs["skip_layer_strategy"]]
    kwargs.setdefault("is_video", True)
    kwargs.setdefault("vae_per_channel_normalize", True)
    kwargs.setdefault("output_type", "pt")
    if kwargs["output_type"] not in ("pt", "latent"):
        raise ValueError(f"output_type must be 'pt' or 'latent' here, got {kwargs['output_type']!r}.")
    embeds, mask = kwargs["prompt_embeds"], kwargs["prompt_attention_mask"]
    kwargs.setdefault("negative_prompt_embeds", torch.zeros_like(embeds))
    kwargs.setdefault("negative_prompt_attention_mask", torch.zeros_like(mask))
    kwargs["negative_prompt"] = None  # check_inputs refuses a negative prompt next to negative embeddings
    items = resolve(job.get("conditioning_items") or [], arrays)
    if items:
        kwargs["conditioning_items"] = [ltx_pipeline.ConditioningItem(**item) for item in items]
    return kwargs


def run_pipeline(job, arrays) -> dict[str, np.ndarray]:
    pipe = build_pipeline(job)
    records = Records()
    instrument(pipe, records)
    kwargs = pipeline_kwargs(job, arrays)
    draws = Draws(arrays, int(job.get("seed", 0)), bool(job.get("strict_noise", False)), job.get("zero_noise", ()))
    torch.manual_seed(int(job.get("seed", 0)))  # anything not intercepted (there should be nothing)
    with draws.patched(), torch.no_grad():
        if job.get("multi_scale"):
            ms = dict(job["multi_scale"])
            upsampler = LatentUpsampler.from_pretrained(ms.pop("latent_upsampler")).eval()
            result = ltx_pipeline.LTXMultiScalePipeline(pipe, latent_upsampler=upsampler)(**ms, **kwargs)
        else:
            result = pipe(**kwargs)
    out = records.arrays()
    images = result.images
    if kwargs["output_type"] == "pt":  # [B, C, F, H, W] in [0, 1] -> [B, F, H, W, C]
        out["frames"] = to_numpy(images.permute(0, 2, 3, 4, 1))
    out.update(draws.drawn)
    out["draw_log"] = np.array(draws.log, dtype=str)
    return out


def main(argv):
    job_path, inputs_path, outputs_path = argv[1:4]
    with open(job_path) as f:
        job = json.load(f)
    with np.load(inputs_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    kinds = {"transformer": run_transformer, "latent_upsampler": run_latent_upsampler, "schedule": run_schedule,
             "pipeline": run_pipeline}
    if job.get("kind") not in kinds:
        raise ValueError(f"job kind must be one of {sorted(kinds)}, got {job.get('kind')!r}")
    torch.set_grad_enabled(False)
    out = kinds[job["kind"]](job, arrays)
    np.savez(outputs_path, **out)


if __name__ == "__main__":
    main(sys.argv)
