"""LTX-2 text to video with sound, end to end from a diffusers-style folder (diffusers' ``LTX2Pipeline``).

    # a folder with tokenizer/ text_encoder/ connectors/ transformer/ vae/ audio_vae/ vocoder/ scheduler/
    pipe = LTX2Pipeline.from_pretrained("LTX-2", dtype="bfloat16")
    out = pipe(prompt="a fox in the snow", num_frames=121, seed=0)
    out.frames          # np [B, F, H, W, 3] float32 in [0, 1] (diffusers' output_type="np")
    out.audio           # np [B, channels, samples] float32 at pipe.audio_sample_rate (the vocoder's output rate)
    pipe.last_timings   # StageTimings: text_encoding, denoise_decode, total

A call is a value: ``LTX2Request`` (frozen, one field per argument with diffusers' name and default) is built from
``pipe.defaults`` with ``dataclasses.replace`` and checked (one ValueError line) before any expensive work; then
Gemma encodes the prompts (``LTX2PromptEncoder.encode_prompt``, skipped for given ``prompt_embeds``) and
``LTX2Core`` runs the connectors, the joint denoising loop and the video / audio decode as one compiled program.

Defaults: diffusers' ``LTX2Pipeline.__call__`` signature (30 steps, guidance 3 / stg 1 / modality 3 / rescale 0.7,
audio 7 / 1 / 3 / 0.7, STG blocks [28], 512 x 768 x 121 at 24 fps), except where ``detect_ltx2_release`` recognises
the checkpoint (with the release's depth: a tiny or cut model keeps diffusers' defaults): then its ``LTX2Defaults``
give the size, frame rate, step count and each modality's guidance (scales,
rescale, STG blocks: LTX-2.0 perturbs block 29, not diffusers' 28), as Lightricks ship them. A distilled release's
sigma list comes with its defaults (``sigmas=``; Lightricks' list without its final 0, as diffusers' constant).
Anything passed to the call wins over either.

Noise: without ``latents`` / ``audio_latents`` the initial noise comes from ``seed`` with JAX's PRNG (video noise
drawn channels-last then packed, audio noise drawn packed; both standard normal, as diffusers' ``randn_tensor``), so
a seed does not reproduce torch's noise; ``noise`` / ``audio_noise`` pin it (a parity test's torch noise). Given
latents are diffusers' ([B, N, C pt p p] packed video used as it is, or [B, C, F, H, W] denormalised as
``output_type="latent"`` returns it; [B, T', L M'] or [B, L, T', M'] audio, normalised with the audio VAE's
statistics), with noise mixed in at ``noise_scale`` (a second stage's re-noising), exactly as diffusers takes them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import validation
from ltx_jax.models import as_variables
from ltx_jax.models.ltx2.audio_vae import pack_audio_latents
from ltx_jax.pipelines.ltx2_core import OUTPUT_TYPES, LTX2Core
from ltx_jax.models.ltx2.duration_head import snap_num_frames
from ltx_jax.pipelines.ltx2_latents import pack_video_latents, vae_compression
from ltx_jax.programs import Program
from ltx_jax.pipelines.reporting import StageTimings
from ltx_jax.releases_ltx2 import LTX2Release, detect_ltx2_release
from ltx_jax.requests import Request, arg
from ltx_jax.scheduler import FlowMatchSchedulerConfig
from ltx_jax.sharding import ShardingPlan
from ltx_jax.text_encoding_ltx2 import DEFAULT_MAX_SEQUENCE_LENGTH, LTX2PromptEncoder, load_ltx2_tokenizer
from weight_conversion import (load_audio_vae, load_duration_head, load_gemma_text_encoder, load_text_connectors,
                               load_transformer, load_vae, load_vocoder)

SMALL_COMPONENTS = ("connectors", "vae", "audio_vae", "vocoder")  # replicated over a mesh
SIZE_MULTIPLE = 32  # diffusers' check_inputs: height and width divisible by 32
TEMPORAL_RATIO = 8  # LTX-2's video VAE: num_frames = 8 k + 1


class LTX2PipelineOutput(NamedTuple):
    """diffusers' ``LTX2PipelineOutput``: for ``output_type="np"`` frames [B, F, H, W, 3] float32 in [0, 1] and
    audio [B, channels, samples] float32; for ``"latent"`` video latents [B, C, F, H, W] and audio latents
    [B, L, T', M'] (denormalised, as diffusers returns them)."""

    frames: np.ndarray
    audio: np.ndarray


def _int(**bounds):
    return lambda name, value: validation.check_int(name, value, **bounds)


def _number(**bounds):
    return lambda name, value: validation.check_number(name, value, **bounds)


def _optional_number(**bounds):  # audio_* scales: None or 0 take the video's (diffusers' ``audio_x or x``)
    return lambda name, value: None if value is None else validation.check_number(name, value, **bounds)


def _size(name: str, value: Any) -> None:
    validation.check_int(name, value, minimum=SIZE_MULTIPLE)
    if value % SIZE_MULTIPLE:
        raise ValueError(f"{name} must be a multiple of {SIZE_MULTIPLE}, got {value} (try "
                         f"{max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)}).")


def _frames(name: str, value: Any) -> None:
    validation.check_int(name, value, minimum=1)
    if (value - 1) % TEMPORAL_RATIO:
        raise ValueError(f"{name} must be 8 k + 1 (1, 9, 17, ..., 121), got {value} (try "
                         f"{(value - 1) // TEMPORAL_RATIO * TEMPORAL_RATIO + 1}).")


def _blocks(name: str, value: Any) -> None:
    if not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) and b >= 0 for b in value):
        raise ValueError(f"{name} must be a list of block indices (ints >= 0), got {value!r}.")


def _prompt(name: str, value: Any) -> None:
    if not (isinstance(value, str) or (isinstance(value, (list, tuple)) and value
                                      and all(isinstance(p, str) for p in value))):
        raise ValueError(f"{name} must be a string or a non-empty list of strings, got {value!r}.")


def _sigmas(name: str, value: Any) -> None:
    if value is None:
        return
    values = [float(v) for v in value]
    if not values or any(not 0 < v <= 1 for v in values) or any(a <= b for a, b in zip(values, values[1:])):
        raise ValueError(f"{name}={list(value)!r}; give sigmas that decrease within (0, 1], one per step.")


def _output_type(name: str, value: Any) -> None:
    if value not in OUTPUT_TYPES:
        raise ValueError(f"{name}={value!r}; expected 'np' (frames [B, F, H, W, 3] in [0, 1] and the waveform) or "
                         "'latent' (the denormalised latents, diffusers' layouts).")


@dataclasses.dataclass(frozen=True)
class LTX2Request(Request):
    """One ``LTX2Pipeline`` call: diffusers' ``LTX2Pipeline.__call__`` arguments with its defaults (``check()``: each
    field's one-line ValueError, then the rules between fields; nothing here needs the model)."""

    prompt: str | Sequence[str] | None = arg(None, "the prompt(s); or prompt_embeds.", _prompt)
    negative_prompt: str | Sequence[str] | None = arg(None, "negative prompt(s) for CFG (None: '').", _prompt)
    height: int = arg(512, "frame height in pixels (multiple of 32).", _size)
    width: int = arg(768, "frame width in pixels (multiple of 32).", _size)
    num_frames: int | None = arg(121, "frames, 8 k + 1; None: predicted from the prompt by the duration head "
                                      "(LTX-2.5), else 121.", _frames)
    min_seconds: float = arg(1.0, "the predicted duration's lower bound.", _number(above=0))
    max_seconds: float = arg(20.0, "the predicted duration's upper bound.", _number(above=0))
    frame_rate: float = arg(24.0, "frames per second (sets the audio length and the video RoPE).",
                            _number(above=0))
    motion_speed: float = arg(1.0, "the RoPE's frame rate is frame_rate / motion_speed.", _number(above=0))
    num_inference_steps: int = arg(30, "denoising steps.", _int(minimum=1, maximum=validation.MAX_STEPS))
    sigmas: Sequence[float] | None = arg(None, "custom sigmas, one per step, decreasing in (0, 1] (the distilled "
                                               "models' list); None: linspace(1, 1/N, N).", _sigmas)
    guidance_scale: float = arg(3.0, "video CFG scale (> 1: CFG on).", _number(minimum=0))
    stg_scale: float = arg(1.0, "video spatio-temporal guidance scale (> 0: STG on).", _number(minimum=0))
    modality_scale: float = arg(3.0, "video cross-modal guidance scale (> 1: modality guidance on).",
                                _number(minimum=0))
    guidance_rescale: float = arg(0.7, "video CFG rescale, 0 .. 1.", _number(minimum=0, maximum=1))
    audio_guidance_scale: float | None = arg(7.0, "audio CFG scale (None / 0: the video's).",
                                             _optional_number(minimum=0))
    audio_stg_scale: float | None = arg(1.0, "audio STG scale (None / 0: the video's).", _optional_number(minimum=0))
    audio_modality_scale: float | None = arg(3.0, "audio modality scale (None / 0: the video's).",
                                             _optional_number(minimum=0))
    audio_guidance_rescale: float | None = arg(0.7, "audio CFG rescale (None / 0: the video's).",
                                               _optional_number(minimum=0, maximum=1))
    spatio_temporal_guidance_blocks: Sequence[int] | None = arg((28,), "blocks STG perturbs.", _blocks)
    num_videos_per_prompt: int = arg(1, "videos per prompt.", _int(minimum=1))
    seed: int = arg(0, "JAX PRNG seed of the initial noise (does not reproduce torch's).", _int(minimum=0))
    latents: Any = arg(None, "initial video latents: packed [B, N, C] (used as they are) or [B, C, F, H, W] "
                             "(denormalised, as output_type='latent' returns them: normalised and packed here).")
    audio_latents: Any = arg(None, "initial audio latents: packed [B, T', L M'] or [B, L, T', M'] (raw; normalised "
                                   "here).")
    noise_scale: float = arg(0.0, "noise mixed into given latents: noise_scale noise + (1 - noise_scale) latents "
                                  "(a second stage's first sigma).", _number(minimum=0, maximum=1))
    noise: Any = arg(None, "the standard normal noise of that mixing, packed [B, N, C] (else drawn from seed).")
    audio_noise: Any = arg(None, "the audio's, packed [B, T', L M'] (and the start of fresh audio; else drawn from "
                                 "seed).")
    prompt_embeds: Any = arg(None, "Gemma's packed hidden states [B, T, E] instead of prompt.")
    prompt_attention_mask: Any = arg(None, "[B, T] mask of prompt_embeds.")
    negative_prompt_embeds: Any = arg(None, "[B, T, E] negative embeddings (else negative_prompt is encoded).")
    negative_prompt_attention_mask: Any = arg(None, "[B, T] mask of negative_prompt_embeds.")
    decode_timestep: float | Sequence[float] = arg(0.0, "the VAE's decode timestep (timestep-conditioned VAEs).")
    decode_noise_scale: float | Sequence[float] | None = arg(None, "decode noise mix (None: decode_timestep).")
    use_cross_timestep: bool = arg(True, "LTX-2.3's cross-modal timestep (diffusers' default).")
    output_type: str = arg("np", "'np' (frames and waveform) or 'latent' (video [B, C, F, H, W] and audio "
                                 "[B, L, T', M'] latents, denormalised).", _output_type)
    max_sequence_length: int = arg(DEFAULT_MAX_SEQUENCE_LENGTH, "prompt tokens (left-padded).", _int(minimum=1))
    tiling: Any = arg("auto", "the video decode's tiling: 'auto' (whole where the device's free memory holds it, "
                              "else the fewest uniform tiles), None (whole), True (diffusers' tiles) or a dict of "
                              "VAETiling fields.")

    @property
    def start_noise_scale(self) -> float:
        """The noise level mixed into given latents (the condition pipeline infers it when None)."""
        return float(self.noise_scale)

    @property
    def do_classifier_free_guidance(self) -> bool:
        """diffusers' rule: CFG runs when either modality's guidance scale is above 1."""
        return self.guidance_scale > 1 or (self.audio_guidance_scale or self.guidance_scale) > 1

    def _check_together(self) -> None:
        if self.min_seconds >= self.max_seconds:
            raise ValueError(f"min_seconds ({self.min_seconds}) must be less than max_seconds ({self.max_seconds}).")
        if (self.prompt is None) == (self.prompt_embeds is None):
            raise ValueError("give exactly one of prompt and prompt_embeds.")
        if self.prompt_embeds is not None and self.prompt_attention_mask is None:
            raise ValueError("prompt_embeds needs prompt_attention_mask.")
        if self.sigmas is not None and len(self.sigmas) != self.num_inference_steps:
            raise ValueError(f"{len(self.sigmas)} sigmas for num_inference_steps={self.num_inference_steps}; give one "
                             "per step (or no sigmas).")
        if (self.negative_prompt_embeds is None) != (self.negative_prompt_attention_mask is None):
            raise ValueError("give negative_prompt_embeds and negative_prompt_attention_mask together.")
        stg = self.stg_scale > 0 or (self.audio_stg_scale or self.stg_scale) > 0
        if stg and not self.spatio_temporal_guidance_blocks:
            raise ValueError("stg_scale > 0 needs spatio_temporal_guidance_blocks (e.g. [29] for LTX-2.0, [28] for "
                             "LTX-2.3).")


def register_multiple(connectors_config) -> int:
    """The prompt length the text connectors take a multiple of: the lcm of their learned register counts (diffusers'
    connectors tile the registers over the padding and refuse other lengths)."""
    registers = [n for n in (connectors_config.video_connector_num_learnable_registers,
                             connectors_config.audio_connector_num_learnable_registers) if n]
    return math.lcm(*registers) if registers else 1


def release_defaults(release: LTX2Release | None) -> LTX2Request:
    """``LTX2Request()`` (diffusers' defaults), with a detected release's size, steps and guidance over them."""
    if release is None or getattr(release, "defaults", None) is None:
        return LTX2Request()
    d = release.defaults
    v, a = d.video, d.audio
    return LTX2Request(height=d.height, width=d.width, num_frames=d.num_frames, frame_rate=d.frame_rate,
                       num_inference_steps=d.num_inference_steps,
                       sigmas=None if d.sigmas is None else tuple(x for x in d.sigmas if x > 0),
                       guidance_scale=v.guidance_scale,
                       stg_scale=v.stg_scale, modality_scale=v.modality_scale, guidance_rescale=v.guidance_rescale,
                       audio_guidance_scale=a.guidance_scale, audio_stg_scale=a.stg_scale,
                       audio_modality_scale=a.modality_scale, audio_guidance_rescale=a.guidance_rescale,
                       spatio_temporal_guidance_blocks=tuple(v.stg_blocks or a.stg_blocks) or None)


class LTX2Pipeline:
    """diffusers' ``LTX2Pipeline`` (text to video with sound) on our modules.

    Attributes:
      encoder: ``LTX2PromptEncoder`` (tokenizer, Gemma, the connectors shared with ``core``).
      core: ``LTX2Core`` (modules + scheduler config); params: ``{component: params}`` for ``ltx2_core.COMPONENTS``.
      release: the detected ``LTX2Release`` or None; defaults: the ``LTX2Request`` a call starts from.
      audio_sample_rate: the vocoder's output rate (Hz) of ``out.audio``.
      last_timings: ``StageTimings`` of the last call (text_encoding, denoise_decode).
    """

    def __init__(self, encoder: LTX2PromptEncoder, core: LTX2Core, params: dict, release: LTX2Release | None = None,
                 defaults: LTX2Request | None = None, progress: bool = True, duration_head: Any = None):
        self.encoder, self.core, self.params, self.release = encoder, core, params, release
        self.progress, self.duration_head = progress, duration_head
        self.defaults = defaults if defaults is not None else release_defaults(release)
        self.audio_sample_rate = int(core.vocoder.config.output_sampling_rate)
        self.last_timings = StageTimings()

    def with_params(self, **params) -> "LTX2Pipeline":
        """A pipeline of this class sharing this one's modules, encoder, release, defaults and parameters, with
        ``params`` ({component: tree}) in place of its own (the two-stage dev recipe's stage 2: another transformer)."""
        return type(self)(self.encoder, self.core, {**self.params, **params}, self.release, self.defaults,
                          self.progress, self.duration_head)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: Any = "float32", *, progress: bool = True,
                        transformer_weights: str | None = None,
                        lora: Sequence[tuple[str | os.PathLike, float]] | None = None, mesh: Any = None,
                        **gemma_kwargs) -> "LTX2Pipeline":
        """Loads a diffusers LTX-2 folder (tokenizer/, text_encoder/, connectors/, transformer/, vae/, audio_vae/,
        vocoder/, scheduler/scheduler_config.json) in ``dtype`` ("float32" / "bfloat16" or a jnp dtype):
        ``transformer_weights`` "int8" / "fp8" stores the transformer's kernels so, ``lora`` ``[(file, scale)]`` is
        fused into it as it is read; ``mesh`` (a spec such as "fsdp=2,tensor=2", a Mesh or a ShardingPlan) loads
        the transformer and Gemma straight onto their shards (the small components replicated); ``gemma_kwargs``
        go to ``load_gemma_text_encoder`` (``weights``); ``progress``: a progress bar while denoising."""
        path, dtype = os.fspath(path), jnp.dtype(dtype)
        plan = ShardingPlan.create(mesh)  # a bad spec or device count fails before anything is loaded
        tokenizer = load_ltx2_tokenizer(path)  # cheap, and names a missing folder first
        loaded = dict(transformer=load_transformer(path, dtype, weights=transformer_weights, lora=lora,
                                                   sharding=plan),
                      connectors=load_text_connectors(path, dtype), vae=load_vae(path, dtype),
                      audio_vae=load_audio_vae(path, dtype), vocoder=load_vocoder(path, dtype))
        if plan is not None:
            for name in SMALL_COMPONENTS:
                loaded[name] = (loaded[name][0], jax.device_put(loaded[name][1], plan.replicated()))
        scheduler = FlowMatchSchedulerConfig.from_json(os.path.join(path, "scheduler", "scheduler_config.json"))
        gemma, gemma_params = load_gemma_text_encoder(os.path.join(path, "text_encoder"), dtype, sharding=plan,
                                                      **gemma_kwargs)
        connectors, connector_params = loaded["connectors"]
        encoder = LTX2PromptEncoder(tokenizer, gemma, gemma_params, connectors, connector_params)
        core = LTX2Core(*(loaded[k][0] for k in ("transformer", "connectors", "vae", "audio_vae", "vocoder")),
                        scheduler)
        config = loaded["transformer"][0].config
        release = detect_ltx2_release(path, config)
        if release is not None and release.transformer.num_layers != config.num_layers:
            release = None  # a name with another model's depth (a tiny or cut model): its STG blocks would not exist
        duration_head, defaults = None, None
        if os.path.isdir(os.path.join(path, "duration_head")):  # LTX-2.5: num_frames=None predicts the duration
            duration_head = load_duration_head(path, dtype)
            defaults = dataclasses.replace(release_defaults(release), num_frames=None)
        return cls(encoder, core, {k: v[1] for k, v in loaded.items()}, release, defaults, progress, duration_head)

    def to_mesh(self, mesh) -> "LTX2Pipeline":
        """This pipeline over several devices (a new one of the same class): the transformer and Gemma on their
        shards (their logical axes), the small components replicated; ``mesh`` as ``from_pretrained``'s."""
        plan = ShardingPlan.create(mesh)
        if plan is None:
            raise ValueError("to_mesh(None): pass a mesh spec such as 'fsdp=2,tensor=2', a Mesh or a ShardingPlan.")
        core, encoder = self.core, self.encoder
        transformer = core.transformer.clone(sharding=plan)
        params = {name: jax.device_put(tree, plan.replicated()) for name, tree in self.params.items()}
        params["transformer"] = plan.place(self.params["transformer"], transformer)
        gemma = encoder.gemma.clone(sharding=plan)
        encoder = LTX2PromptEncoder(encoder.tokenizer, gemma, plan.place(encoder.gemma_params, gemma),
                                    encoder.connectors, params["connectors"])
        return type(self)(encoder, dataclasses.replace(core, transformer=transformer), params, self.release,
                          self.defaults, self.progress, self.duration_head)

    def encode_prompt(self, prompt, negative_prompt=None, do_classifier_free_guidance: bool = True,
                      num_videos_per_prompt: int = 1, max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH,
                      dtype: Any = None):
        """diffusers' four outputs: ``(prompt_embeds [B n, T, E], prompt_attention_mask [B n, T],
        negative_prompt_embeds, negative_prompt_attention_mask)`` (the negatives None without CFG)."""
        return self.encoder.encode_prompt(prompt, negative_prompt, do_classifier_free_guidance,
                                          num_videos_per_prompt, max_sequence_length, dtype)

    def request(self, **kwargs) -> LTX2Request:
        """``pipe.defaults`` with ``kwargs`` replaced, checked (one ValueError line for a wrong argument)."""
        unknown = sorted(set(kwargs) - set(type(self.defaults).field_names()))
        if unknown:
            raise ValueError(f"{type(self).__name__} got unknown argument(s) {', '.join(unknown)}; see "
                             f"{type(self.defaults).__name__}'s fields.")
        return self.check_fit(dataclasses.replace(self.defaults, **kwargs).check())

    def check_fit(self, r: LTX2Request) -> LTX2Request:
        """The rules between a request and this model (one ValueError line, before any work): the prompt length a
        multiple of the connectors' learned registers (diffusers' connectors refuse others), STG blocks that exist
        in a transformer that can perturb them."""
        t = self.core.transformer.config
        multiple = register_multiple(self.core.connectors.config)
        length = r.max_sequence_length if r.prompt_embeds is None else int(np.shape(r.prompt_embeds)[1])
        if length % multiple:
            name = "max_sequence_length" if r.prompt_embeds is None else "prompt_embeds' length"
            raise ValueError(f"{name}={length} is not a multiple of the connectors' {multiple} learned registers; use "
                             f"{-(-length // multiple) * multiple}.")
        stg = r.stg_scale > 0 or (r.audio_stg_scale or r.stg_scale) > 0
        blocks = tuple(r.spatio_temporal_guidance_blocks or ())
        if stg and any(b >= t.num_layers for b in blocks):
            raise ValueError(f"spatio_temporal_guidance_blocks={list(blocks)}: this transformer has {t.num_layers} "
                             f"blocks (0 .. {t.num_layers - 1}).")
        if stg and not t.perturbed_attn:
            raise ValueError("stg_scale > 0 needs a transformer with perturbed_attn (this one has none): set stg_scale "
                             "and audio_stg_scale to 0.")
        return r

    def __call__(self, **kwargs) -> LTX2PipelineOutput:
        """Generates video and audio: ``pipe(prompt=..., ...)`` with ``LTX2Request``'s fields (diffusers' names)."""
        return self.generate(self.request(**kwargs))

    def generate(self, request: LTX2Request) -> LTX2PipelineOutput:
        """Runs one checked request: prompts -> embeddings -> the start latents -> ``LTX2Core`` -> numpy frames
        and waveform (or latents)."""
        r = self.check_fit(request.check())
        self.last_timings = timings = StageTimings()
        start = time.perf_counter()
        cfg = r.do_classifier_free_guidance
        pe, pm, npe, npm = self._embeddings(r, cfg)
        jax.block_until_ready(pe)
        timings.stages["text_encoding"] = time.perf_counter() - start

        mid = time.perf_counter()
        r = self.resolve_num_frames(r, pe, pm)
        batch = pe.shape[0]
        grid = self.core.grid(height=r.height, width=r.width, num_frames=r.num_frames, frame_rate=r.frame_rate,
                              motion_speed=r.motion_speed)
        keys = dict(zip(("video", "audio", "decode"), jax.random.split(jax.random.key(r.seed), 3)))
        starts = {**self._video_start(r, batch, grid, keys["video"]), **self._audio_start(r, batch, grid,
                                                                                           keys["audio"])}
        shared = {name: getattr(r, name) for name in _CORE_FIELDS}
        out = self.core(self.params, prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=npe,
                        negative_prompt_attention_mask=npm, **starts, **shared,
                        decode_noise=self._decode_noise(r, batch, grid, keys["decode"]), progress=self.progress)
        frames, audio = np.asarray(out.frames), np.asarray(out.audio)
        timings.stages["denoise_decode"] = time.perf_counter() - mid
        timings.total = time.perf_counter() - start
        return LTX2PipelineOutput(frames, audio)

    # ------------------------------------------------------------------------------------------ stages

    def _embeddings(self, r: LTX2Request, cfg: bool):
        """(prompt_embeds, mask, negative_embeds, negative_mask), from the prompts or as given (a missing negative
        side encoded from ``negative_prompt``, "" by default, as diffusers' ``encode_prompt`` does)."""
        n = r.num_videos_per_prompt
        if r.prompt_embeds is None:
            return self.encode_prompt(r.prompt, r.negative_prompt, cfg, n, r.max_sequence_length)
        pe, pm = jnp.asarray(r.prompt_embeds), jnp.asarray(r.prompt_attention_mask)
        npe, npm = r.negative_prompt_embeds, r.negative_prompt_attention_mask
        if cfg and npe is None:
            negatives = r.negative_prompt if r.negative_prompt is not None else ""
            negatives = [negatives] * pe.shape[0] if isinstance(negatives, str) else list(negatives)
            if len(negatives) != pe.shape[0]:
                raise ValueError(f"negative_prompt has {len(negatives)} prompts but prompt_embeds has "
                                 f"{pe.shape[0]} rows.")
            npe, npm, _, _ = self.encode_prompt(negatives, None, False, 1, pe.shape[1])
        repeat = lambda x: None if x is None else jnp.repeat(jnp.asarray(x), n, axis=0)  # noqa: E731
        pe, pm, npe, npm = (repeat(x) for x in (pe, pm, npe, npm))
        return pe, pm, (npe if cfg else None), (npm if cfg else None)

    def resolve_num_frames(self, r: LTX2Request, prompt_embeds, prompt_attention_mask) -> LTX2Request:
        """``r`` with ``num_frames`` set: as given; else the duration head's prediction for the first prompt (its
        connector tokens; clamped to ``min_seconds`` .. ``max_seconds`` and snapped to 8 k + 1, as diffusers'
        ``predict_num_frames``), or 121 without a duration head (diffusers' fallback)."""
        if r.num_frames is not None:
            return r
        if self.duration_head is None:
            return dataclasses.replace(r, num_frames=121)
        head, head_params = self.duration_head
        seconds = _predict_seconds(connectors=self.core.connectors, head=head, variables=dict(
            connectors=as_variables(self.params["connectors"]), head=as_variables(head_params)),
            embeds=jnp.asarray(prompt_embeds[:1], jnp.float32), mask=jnp.asarray(prompt_attention_mask[:1]))
        _, temporal = vae_compression(self.core.vae.config)
        frames = snap_num_frames(float(np.asarray(seconds)[0]), frame_rate=r.frame_rate,
                                 temporal_compression_ratio=temporal, min_seconds=r.min_seconds,
                                 max_seconds=r.max_seconds)
        return dataclasses.replace(r, num_frames=frames)

    def packed_video_latents(self, latents) -> jax.Array:
        """Given video latents as the core takes them: packed [B, N, C] as they are; [B, C, F, H, W] (diffusers'
        ``output_type="latent"``, denormalised) normalised with the VAE's statistics and packed."""
        latents = jnp.asarray(latents, jnp.float32)
        if latents.ndim == 3:
            return latents
        if latents.ndim != 5:
            raise ValueError(f"latents has shape {tuple(latents.shape)}; expected packed [B, N, C] or [B, C, F, H, W].")
        t = self.core.transformer.config
        return _pack_given_latents(vae=self.core.vae, patch=(t.patch_size, t.patch_size_t),
                                   variables=as_variables(self.params["vae"]), latents=latents)

    def _noise(self, given, key, shape):
        """Given noise (checked against ``shape``) or standard normal noise from ``key``."""
        if given is None:
            return jax.random.normal(key, shape, jnp.float32)
        given = jnp.asarray(given, jnp.float32)
        if given.shape != tuple(shape):
            raise ValueError(f"noise of shape {tuple(given.shape)}; expected {tuple(shape)} (packed).")
        return given

    def _fresh_video(self, given, batch: int, grid, key) -> jax.Array:
        """Packed standard normal video latents: the ``given`` noise, else drawn channels-last from ``key`` and
        packed (diffusers draws [B, C, F, H, W] and packs)."""
        t = self.core.transformer.config
        if given is not None:
            return self._noise(given, key, self.core.latent_shapes(grid, batch)[0])
        noise = jax.random.normal(key, (batch, grid.frames, grid.height, grid.width, t.in_channels), jnp.float32)
        return pack_video_latents(noise, t.patch_size, t.patch_size_t)

    def _video_start(self, r: LTX2Request, batch: int, grid, key) -> dict:
        """The core's video start (diffusers' ``LTX2Pipeline.prepare_latents``): fresh noise, or the given latents
        with noise mixed in at ``noise_scale``."""
        if r.latents is None:
            return dict(latents=self._fresh_video(r.noise, batch, grid, key))
        latents = self.packed_video_latents(r.latents)
        noise = self._noise(r.noise, key, latents.shape) if r.noise_scale > 0 else None
        return dict(latents=latents, noise=noise, noise_scale=r.noise_scale)

    def _audio_start(self, r: LTX2Request, batch: int, grid, key) -> dict:
        """The core's audio start (diffusers' ``prepare_audio_latents``): fresh packed noise (not normalised), or
        the given latents (packed; [B, L, T', M'] packed here) with noise mixed in at ``noise_scale``."""
        shape = self.core.latent_shapes(grid, batch)[1]
        if r.audio_latents is None:
            return dict(audio_noise=self._noise(r.audio_noise, key, shape))
        latents = jnp.asarray(r.audio_latents, jnp.float32)
        if latents.ndim == 4:  # diffusers' [B, C, L, M] -> ours [B, T', M', L] -> packed
            latents = pack_audio_latents(jnp.transpose(latents, (0, 2, 3, 1)))
        scale = r.start_noise_scale
        noise = self._noise(r.audio_noise, key, latents.shape) if scale > 0 else None
        return dict(audio_latents=latents, audio_noise=noise, audio_noise_scale=scale)

    def _decode_noise(self, r: LTX2Request, batch: int, grid, key):
        """[B, F, H, W, C] decode noise for a timestep-conditioned VAE with a non-zero decode noise scale."""
        scale = r.decode_timestep if r.decode_noise_scale is None else r.decode_noise_scale
        if r.output_type != "np" or not self.core.vae.config.timestep_conditioning or not np.any(np.asarray(scale)):
            return None
        shape = (batch, grid.frames, grid.height, grid.width, self.core.vae.config.latent_channels)
        return jax.random.normal(key, shape, jnp.float32)


#: The request fields the core takes as they are (the rest become embeddings and start latents first).
_CORE_FIELDS = ("height", "width", "num_frames", "frame_rate", "motion_speed", "num_inference_steps", "sigmas",
                "guidance_scale", "stg_scale", "modality_scale", "guidance_rescale", "audio_guidance_scale",
                "audio_stg_scale", "audio_modality_scale", "audio_guidance_rescale",
                "spatio_temporal_guidance_blocks", "use_cross_timestep", "decode_timestep", "decode_noise_scale",
                "output_type", "tiling")


def _predict_seconds_program(connectors, head, variables, embeds, mask):
    """[1, T, E] prompt embeddings -> [1] predicted seconds (the connectors, then the duration head)."""
    video, audio, _ = connectors.apply(variables["connectors"], embeds, mask, padding_side="left")
    return head.apply(variables["head"], video, audio).astype(jnp.float32)


def _pack_given_latents_program(vae, patch, variables, latents):
    """[B, C, F, H, W] denormalised video latents -> packed [B, N, C], normalised with the VAE's statistics."""
    z = vae.apply(variables, jnp.moveaxis(latents, 1, -1), method="normalize_latents")
    return pack_video_latents(z, *patch)


_pack_given_latents = Program(_pack_given_latents_program, "video latents in", static=("vae", "patch"),
                              params=("variables",))
_predict_seconds = Program(_predict_seconds_program, "duration prediction", static=("connectors", "head"),
                           params=("variables",))
