"""The denoising loop of LTX-Video as one jit-compiled program.

A ``Sampler`` is a frozen, hashable description of everything that fixes the program's structure: the model, the
latent grid, the guidance branches of each run of steps, the stepping rule. Everything that may change between
calls without changing shapes (text embeddings, sigmas, timesteps, per-step guidance strengths and skipped blocks,
RoPE scale or coordinates, conditioning mask) travels in a ``SamplingInputs`` pytree of arrays, and the initial
latents next to it (donated: the loop writes its result into their buffer), so a second call with the same shapes
never recompiles.

Per call, before the loop, the transformer's step-invariant work runs once per prompt (``prepare``: RoPE tables,
caption projection, every layer's text keys and values). The steps are grouped into ``Segment`` s, consecutive steps
with the same branches (a step with CFG 1 and STG 0 runs the conditional branch alone, one with both runs three);
each segment is a ``lax.while_loop`` inside the one program. Each step runs one batched forward over its branches,
combines them (``Guidance.combine``) and takes the Euler step in float32 (as diffusers keeps latents in float32
whatever the model dtype). After each step the loop checks its latents are finite and calls the host once
(``control.poll``: progress, and whether to stop); it ends early on a stop request or on the first non-finite step,
and says so in its ``SamplingResult``.

Step caching (``Sampler.cache``, ``step_cache.py``): with ``cache="first_block"`` each forward runs the first block,
and the other blocks only when its residual moved by more than ``SamplingInputs.cache_threshold`` (traced: changing
it never recompiles) since the last forward that ran them; otherwise it reuses that forward's contribution of the
other blocks. With ``cache="teacache"`` (ComfyUI's TeaCache) a forward runs no block while the rescaled change of the
first block's modulated input, accumulated since the last forward that ran them, stays below the threshold, and
reuses that forward's residual over all of them. Each segment has its own cache state in the loop's carry (a segment
with other branches starts empty), and the result says which steps reused it.

Two stepping rules, as diffusers' pipelines have them:
  * global (``LTXPipeline``, ``LTXImageToVideoPipeline``): timestep ``t * (1 - mask)`` per token, one Euler step
    from ``sigmas[i]`` to ``sigmas[i + 1]``; tokens whose conditioning mask is 1 keep their values;
  * per token (``LTXConditionPipeline``): timestep ``min(t, (1 - mask) * 1000)`` per token, each token stepped from
    its own sigma to the next lower one of the schedule (``scheduler.step_per_token``), and a token is updated only
    where ``t / 1000 - 1e-6 < 1 - mask``.

Axis letters: B batch (videos), G guidance branches, N latent tokens, C latent channels, T text tokens, E text
channels, S steps, L layers.
"""

from __future__ import annotations

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from ltx_jax import interrupts
from ltx_jax import scheduler as sched
from ltx_jax.models import as_variables
from ltx_jax.models.transformer import LTXVideoTransformer3DModel, TransformerConstants
from ltx_jax.programs import Program, matmul_flops
from ltx_jax.sampling import control, step_cache
from ltx_jax.sampling.guidance import BRANCH_PROMPTS, Guidance
from ltx_jax.sampling.latents import LatentGrid
from ltx_jax.scheduler_ancestral import ancestral_step


@flax.struct.dataclass
class SamplingInputs:
    """Arrays consumed by the loop. Shapes are what a compiled program is specialised on."""

    prompt_embeds: jax.Array  # [B, T, E]
    prompt_attention_mask: jax.Array  # [B, T]
    sigmas: jax.Array  # [S + 1] float32, ending with the terminal sigma
    timesteps: jax.Array  # [S] float32, 0-1000 scale
    guidance: dict  # name -> [S] float32 per-step strengths (guidance.SCALES)
    negative_prompt_embeds: jax.Array | None = None  # [B, T, E] (runs with CFG)
    negative_prompt_attention_mask: jax.Array | None = None  # [B, T]
    skip_masks: jax.Array | None = None  # [S, L] float32, 0 = the perturbed branch skips layer l at step s (STG)
    rope_interpolation_scale: jax.Array | None = None  # [3] float32 (temporal ratio / frame rate, spatial, spatial)
    video_coords: jax.Array | None = None  # [B, 3, N] float32 token coordinates; replaces the grid + scale
    conditioning_mask: jax.Array | None = None  # [B, N] float32 in [0, 1], 1 = clean conditioning token
    control_token: jax.Array | int = control.NO_CONTROL  # [] int32, see ltx_jax.sampling.control
    image_cond_noise_scale: jax.Array | None = None  # [] float32, per-token rule: noise on mask-1 tokens each step
    noise_key: jax.Array | None = None  # PRNG key of that noise (folded with the step index)
    cache_threshold: jax.Array | None = None  # [] float32, with Sampler.cache: the relative change that reruns blocks
    conditioning_latents: jax.Array | None = None  # [B, N, C] float32, Sampler.blend_conditioning: what mask blends to
    eta: jax.Array | None = None  # [] float32, Sampler.ancestral: the step's stochasticity
    s_noise: jax.Array | None = None  # [] float32, Sampler.ancestral: the scale of its noise (from noise_key)


@flax.struct.dataclass
class SamplingResult:
    """What a loop returns."""

    latents: jax.Array  # [B, N, C] float32, after the last step taken
    steps: jax.Array  # [] int32, steps taken (fewer than S when stopped or non-finite)
    nonfinite_step: jax.Array  # [] int32, the first step whose latents held NaN or Inf, or -1
    cached_steps: jax.Array  # [S] bool, the steps whose forward reused the step cache (first block only / no block)


@dataclasses.dataclass(frozen=True)
class Segment:
    """Steps ``start`` .. ``stop - 1``, all with the branches of ``guidance``."""

    start: int
    stop: int
    guidance: Guidance


def segments_for(guidance_scale: np.ndarray, stg_scale: np.ndarray, skip_layer_strategy: str = "attention_values"
                 ) -> tuple[Segment, ...]:
    """Consecutive steps with the same branches, as the original package decides them per step: CFG where the
    scale is above 1, STG where its scale is above 0."""
    out: list[Segment] = []
    for i, (g, s) in enumerate(zip(np.asarray(guidance_scale), np.asarray(stg_scale))):
        guidance = Guidance(cfg=bool(g > 1.0), stg=bool(s > 0.0), skip_layer_strategy=skip_layer_strategy)
        if out and out[-1].guidance == guidance:
            out[-1] = dataclasses.replace(out[-1], stop=i + 1)
        else:
            out.append(Segment(i, i + 1, guidance))
    return tuple(out)


def _join(constants: list[TransformerConstants]) -> TransformerConstants:
    """Branch blocks of prepared constants stacked along the batch (a grid's RoPE table stays shared)."""
    if len(constants) == 1:
        return constants[0]
    first = constants[0]
    rope_shared = first.rope_cos.shape[0] == 1
    cat = lambda name, axis: jnp.concatenate([getattr(c, name) for c in constants], axis=axis)  # noqa: E731
    return TransformerConstants(
        rope_cos=first.rope_cos if rope_shared else cat("rope_cos", 0),
        rope_sin=first.rope_sin if rope_shared else cat("rope_sin", 0),
        text_key=cat("text_key", 1), text_value=cat("text_value", 1),
        text_mask=None if first.text_mask is None else cat("text_mask", 0))


@dataclasses.dataclass(frozen=True)
class Sampler:
    """Static structure of a denoising run; ``sample`` is jitted with ``self`` static (``jitted_sample``).

    Attributes:
      transformer: the (hashable) Flax module.
      grid: the latent grid of the video.
      segments: the runs of steps and their branches (``segments_for``); they cover the steps in order.
      per_token_timesteps: step each token from its own timestep (diffusers' ``LTXConditionPipeline``); False takes
        one global step (``LTXPipeline``, ``LTXImageToVideoPipeline``).
      host_callbacks: call the host after each step (progress, stop requests); False runs without any callback
        (inside other programs, or to measure what the callback costs).
      cache: step caching, one of ``step_cache.CACHE_KINDS`` ("first_block", "teacache"; with
        ``SamplingInputs.cache_threshold``) or None.
      cache_exclude_conditioning: the step cache's distances count only the tokens whose
        ``SamplingInputs.conditioning_mask`` is below 1 (False: every token, as diffusers and ComfyUI count them).
      blend_conditioning: the long-video rule (diffusers' ``LTXI2VLongMultiPromptPipeline``): the model sees the
        latents at timestep ``t * (1 - mask)``; the step starts from, and its result is, ``latents * (1 - mask) +
        conditioning_latents * mask`` (a soft mask blends; mask 1 keeps the given latents). Global steps only.
      ancestral: step with ``scheduler_ancestral.ancestral_step`` (``SamplingInputs.eta``, ``s_noise``, noise from
        ``noise_key`` folded with the step index) instead of the Euler step.
    """

    transformer: LTXVideoTransformer3DModel
    grid: LatentGrid
    segments: tuple[Segment, ...]
    per_token_timesteps: bool = False
    host_callbacks: bool = True
    cache: str | None = None
    cache_exclude_conditioning: bool = False
    blend_conditioning: bool = False
    ancestral: bool = False

    def __post_init__(self):
        if self.transformer is not None:
            step_cache.check_cache(self.cache, self.transformer.config.num_layers)
        if self.per_token_timesteps and (self.blend_conditioning or self.ancestral):
            raise ValueError("blend_conditioning and ancestral steps take the global stepping rule "
                             "(per_token_timesteps=False).")

    def prepare(self, params, inputs: SamplingInputs) -> dict[str, TransformerConstants]:
        """The transformer's step-invariant work, once per call for each prompt the branches use."""
        prompts = {"positive": (inputs.prompt_embeds, inputs.prompt_attention_mask)}
        if any(s.guidance.cfg for s in self.segments):
            prompts["negative"] = (inputs.negative_prompt_embeds, inputs.negative_prompt_attention_mask)
        grid = self.grid
        return {name: self.transformer.apply(
            as_variables(params), embeds, mask, num_frames=grid.token_frames, height=grid.token_height,
            width=grid.token_width, rope_interpolation_scale=inputs.rope_interpolation_scale,
            video_coords=inputs.video_coords, method="prepare") for name, (embeds, mask) in prompts.items()}

    def timestep(self, t: jax.Array, batch: int, inputs: SamplingInputs) -> jax.Array:
        """The model's timestep for one video batch: [B], or per token [B, 1] / [B, N], following the stepping rule."""
        mask = inputs.conditioning_mask
        if self.per_token_timesteps:
            timestep = jnp.broadcast_to(t, (batch, 1))
            return timestep if mask is None else jnp.minimum(timestep, (1.0 - mask) * 1000.0)
        timestep = jnp.broadcast_to(t, (batch,))
        return timestep if mask is None else timestep[:, None] * (1.0 - mask)

    def velocity(self, params, guidance: Guidance, constants: TransformerConstants, latents: jax.Array,
                 timestep: jax.Array, i, inputs: SamplingInputs,
                 cache: step_cache.FirstBlockCache | step_cache.TeaCache | None = None
                 ) -> tuple[jax.Array, step_cache.FirstBlockCache | step_cache.TeaCache | None]:
        """Guided flow velocity for latents [B, N, C] at this step's timestep, float32 [B, N, C]; and the segment's
        step cache after this forward (``cache``: before it; None without ``self.cache``)."""
        branches = guidance.branches
        tile = lambda x: x if len(branches) == 1 else jnp.concatenate([x] * len(branches), axis=0)  # noqa: E731
        skip_mask = None
        if guidance.stg:  # [L, G*B]: the perturbed branch's rows take the step's mask, the others run every layer
            batch, layers_ = latents.shape[0], self.transformer.config.num_layers
            rows = [jnp.ones((layers_, batch), jnp.float32) if b != "perturbed" else
                    jnp.broadcast_to(inputs.skip_masks[i][:, None], (layers_, batch)) for b in branches]
            skip_mask = jnp.concatenate(rows, axis=1)
        args = (tile(latents).astype(self.transformer.dtype), tile(timestep), constants, skip_mask,
                guidance.skip_layer_strategy if guidance.stg else None)
        if self.cache is None:
            out = self.transformer.apply(as_variables(params), *args, method="predict")
        else:
            weights = step_cache.free_token_weights(inputs.conditioning_mask, len(branches)) if (
                self.cache_exclude_conditioning) else None
            out, cache = step_cache.cached_predict(self.cache, self.transformer, params, *args, cache,
                                                   inputs.cache_threshold, weights)
        outputs = dict(zip(branches, jnp.split(out.astype(jnp.float32), len(branches), axis=0)))
        return guidance.combine(outputs, {name: values[i] for name, values in inputs.guidance.items()}), cache

    def noise_conditioning(self, latents, initial, t, i, inputs: SamplingInputs) -> jax.Array:
        """diffusers' ``add_noise_to_image_conditioning_latents``: tokens whose mask is 1 (within 1e-6) become their
        initial latents plus ``image_cond_noise_scale * N(0, 1) * (t / 1000)^2``."""
        noise = jax.random.normal(jax.random.fold_in(inputs.noise_key, i), latents.shape, jnp.float32)
        hard = (inputs.conditioning_mask > 1.0 - 1e-6)[..., None]
        return jnp.where(hard, initial + inputs.image_cond_noise_scale * noise * (t / 1000.0) ** 2, latents)

    def step(self, params, guidance: Guidance, constants: TransformerConstants, latents: jax.Array, i,
             inputs: SamplingInputs, initial: jax.Array | None = None,
             cache: step_cache.FirstBlockCache | None = None) -> tuple[jax.Array, step_cache.FirstBlockCache | None]:
        """One denoising step i: latents [B, N, C] float32 -> the next latents, and the step cache after it
        (``initial``: the loop's first latents, for the conditioning noise; ``cache``: the segment's step cache, None
        without ``self.cache``)."""
        t = inputs.timesteps[i]
        mask = inputs.conditioning_mask
        if self.per_token_timesteps and mask is not None and inputs.image_cond_noise_scale is not None:
            latents = self.noise_conditioning(latents, initial, t, i, inputs)
        timestep = self.timestep(t, latents.shape[0], inputs)
        velocity, cache = self.velocity(params, guidance, constants, latents, timestep, i, inputs, cache)
        if self.per_token_timesteps:
            per_token = jnp.broadcast_to(timestep, latents.shape[:2])  # [B, N]
            new = sched.step_per_token(-velocity, latents, per_token, inputs.sigmas)
            if mask is None:
                return new, cache
            denoise = (t / 1000.0 - 1e-6) < (1.0 - mask)  # [B, N]
            return jnp.where(denoise[..., None], new, latents), cache
        if self.blend_conditioning:  # the model saw the latents as they were; the step starts from the blend
            latents = self.blend(latents, inputs)
        if self.ancestral:
            new = ancestral_step(velocity, latents, inputs.sigmas[i], inputs.sigmas[i + 1], eta=inputs.eta,
                                 s_noise=inputs.s_noise, key=jax.random.fold_in(inputs.noise_key, i))
        else:
            new = sched.step(velocity, latents, inputs.sigmas[i], inputs.sigmas[i + 1])
        if self.blend_conditioning:
            return self.blend(new, inputs), cache
        return (new if mask is None else jnp.where((mask >= 1.0)[..., None], latents, new)), cache

    @staticmethod
    def blend(latents: jax.Array, inputs: SamplingInputs) -> jax.Array:
        """``latents * (1 - mask) + conditioning_latents * mask`` ([B, N, C] float32; diffusers' inpainting blend,
        ComfyUI's ``KSamplerX0Inpaint``)."""
        keep = inputs.conditioning_mask[..., None]
        return latents * (1.0 - keep) + inputs.conditioning_latents * keep

    def initial_carry(self, initial: jax.Array) -> tuple:
        """The carry of ``advance`` before step 0, from the first latents [B, N, C] float32: (next step, latents, stop
        requested, first non-finite step or -1, each segment's step cache (None without ``self.cache``), the steps
        that reused it [S] bool)."""
        caches = tuple(None if self.cache is None else step_cache.empty_state(
            self.cache, len(s.guidance.branches), initial.shape[0], initial.shape[1], self.transformer.config.inner_dim,
            self.transformer.dtype) for s in self.segments)
        cached_steps = jnp.zeros((self.segments[-1].stop,), jnp.bool_)
        return jnp.int32(0), initial, jnp.bool_(False), jnp.int32(-1), caches, cached_steps

    def advance(self, params, prepared: dict[str, TransformerConstants], carry, initial: jax.Array,
                inputs: SamplingInputs, stop_at=None):
        """Runs the steps from ``carry`` (``initial_carry``'s layout) until the last step (or step ``stop_at``,
        traced), a stop request or non-finite latents; one ``lax.while_loop`` per segment, each with its own step
        cache. ``initial``: the loop's first latents (the conditioning noise's base)."""
        if self.cache is not None and inputs.cache_threshold is None:
            raise ValueError(f"Sampler(cache={self.cache!r}) needs SamplingInputs.cache_threshold.")
        *state, caches, cached_steps = carry
        caches = list(caches)
        for k, segment in enumerate(self.segments):
            constants = _join([prepared[BRANCH_PROMPTS[b]] for b in segment.guidance.branches])
            limit = segment.stop if stop_at is None else jnp.minimum(segment.stop, stop_at)

            def running(carry, limit=limit):
                i, _, stop, nonfinite, _, _ = carry
                return (i < limit) & ~stop & (nonfinite < 0)

            def body(carry, segment=segment, constants=constants):
                i, latents, _, nonfinite, cache, cached_steps = carry
                latents, cache = self.step(params, segment.guidance, constants, latents, i, inputs, initial, cache)
                if cache is not None:
                    cached_steps = cached_steps.at[i].set(cache.skipped)
                nonfinite = jnp.where(jnp.all(jnp.isfinite(latents)), nonfinite, i)
                stop = jnp.bool_(False)
                if self.host_callbacks:
                    stop = io_callback(control.poll, jax.ShapeDtypeStruct((), jnp.bool_), inputs.control_token, i,
                                       ordered=True)
                return i + 1, latents, stop, nonfinite, cache, cached_steps

            *state, caches[k], cached_steps = jax.lax.while_loop(running, body, (*state, caches[k], cached_steps))
        return (*state, tuple(caches), cached_steps)

    def sample(self, params, latents: jax.Array, inputs: SamplingInputs) -> SamplingResult:
        """Runs the steps from latents [B, N, C] (packed initial noise at sigma 1, or a partially noised start) until
        the last one, a stop request or non-finite latents. Call through ``jitted_sample``."""
        prepared = self.prepare(params, inputs)
        initial = latents.astype(jnp.float32)
        carry = self.advance(params, prepared, self.initial_carry(initial), initial, inputs)
        return _result(carry)


def _result(carry) -> SamplingResult:
    steps, latents, _, nonfinite, _, cached_steps = carry
    return SamplingResult(latents, steps, nonfinite, cached_steps)


def _sample(sampler: Sampler, params, latents: jax.Array, inputs: SamplingInputs) -> SamplingResult:
    return sampler.sample(params, latents, inputs)


def loop_flops(sampler: Sampler, params, latents, inputs: SamplingInputs) -> float:
    """FLOPs of a whole run (``programs.matmul_flops``): the per-call work (``prepare``), then each segment's step
    times the steps it runs (a while loop's count is not in the program, so the steps are traced one by one)."""
    prepared_jaxpr, prepared = jax.make_jaxpr(sampler.prepare, return_shape=True)(params, inputs)
    total = matmul_flops(prepared_jaxpr)
    index = jax.ShapeDtypeStruct((), jnp.int32)
    caches = sampler.initial_carry(latents)[4]  # with a step cache: counted as if every step ran every block
    for segment, cache in zip(sampler.segments, caches):
        constants = jax.eval_shape(_join, [prepared[BRANCH_PROMPTS[b]] for b in segment.guidance.branches])
        step = functools.partial(sampler.step, guidance=segment.guidance, cache=cache)
        jaxpr = jax.make_jaxpr(lambda p, c, x, i, s: step(p, constants=c, latents=x, i=i, inputs=s, initial=x)[0])(
            params, constants, latents, index, inputs)
        total += (segment.stop - segment.start) * matmul_flops(jaxpr)
    return total


# The initial latents are consumed by the loop; donating them lets XLA write the result into the same buffer.
jitted_sample = Program(_sample, "denoising", static=("sampler",), donate=("latents",), params=("params",),
                        flops=loop_flops)


# -- stepping from the host: programs without callbacks, which the persistent compilation cache keeps ---------------

def _prepare(sampler: Sampler, params, latents: jax.Array, inputs: SamplingInputs):
    return sampler.prepare(params, inputs), latents.astype(jnp.float32)


def _advance(sampler: Sampler, params, prepared, carry, initial: jax.Array, inputs: SamplingInputs, stop_at):
    return sampler.advance(params, prepared, carry, initial, inputs, stop_at)


jitted_prepare = Program(_prepare, "denoising", static=("sampler",), params=("params",))
jitted_advance = Program(_advance, "denoising", static=("sampler",), params=("params",))


def sample_stepwise(sampler: Sampler, params, latents: jax.Array, inputs: SamplingInputs,
                    run_control: control.RunControl | None = None) -> SamplingResult:
    """``jitted_sample``'s result, one step per program call: the host waits for each step, reports it to
    ``run_control`` (progress) and stops there on a stop request.

    JAX never writes a program holding host callbacks to its persistent compilation cache, so ``jitted_sample``'s
    loop (a callback per step) is compiled again by every new process. Here the programs (``jitted_prepare`` and
    ``jitted_advance``: ``Sampler.advance`` up to a traced step) hold none, so a second process reads them from the
    cache; the price is one host round trip per step (a step of a real-size model takes tens of milliseconds). The
    same steps run in the same order, so the latents equal ``jitted_sample``'s. ``sampler.host_callbacks`` must be
    False.
    """
    if sampler.host_callbacks:
        raise ValueError("sample_stepwise runs programs without host callbacks: pass a Sampler with "
                         "host_callbacks=False.")
    prepared, initial = jitted_prepare(sampler, params, latents, inputs)
    carry = sampler.initial_carry(initial)
    for i in range(sampler.segments[-1].stop):  # from step 0, as jitted_sample's loop
        carry = jitted_advance(sampler, params, prepared, carry, initial, inputs, np.int32(i + 1))
        if int(carry[3]) >= 0:  # waits for the step: non-finite latents end the run there
            break
        # several processes: they stop at the same step, whichever asked (ltx_jax.interrupts.agreed)
        if run_control is not None and interrupts.agreed(run_control.poll(i)) is not None:
            break
    return _result(carry)
