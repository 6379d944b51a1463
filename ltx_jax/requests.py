"""What a generation call asks for, as typed values: one frozen dataclass per kind of call. Each field is one argument,
declared once with its name (diffusers'), type, default, meaning and check; the pipelines' ``__call__`` signatures
and docstrings are generated from these fields.

    request = TextToVideoRequest(prompt="a fox", height=512, width=768, num_frames=121)
    request = dataclasses.replace(pipe.defaults, prompt="a fox", num_frames=121)   # the release's defaults, then yours
    request.check()                                     # the one-line error of a wrong argument, before any work
    frames = pipe.generate(request)                     # what pipe(prompt="a fox", num_frames=121) does

The kinds, each extending a common base rather than copying it:

    SamplingRequest          schedule, guidance, decode: what a release's defaults and a multi-scale pass set
    GenerationRequest        prompts, size, frame rate, batch, seed, given embeddings and noise, output
    TextToVideoRequest       SamplingRequest + GenerationRequest + latents
    ImageToVideoRequest      TextToVideoRequest + image, resize_mode
    ConditionRequest         TextToVideoRequest + ConditionFields (conditions, image, video, ...) + denoise_strength
    MultiScaleRequest        GenerationRequest + ConditionFields + the two passes (SamplingRequest each)
    LongVideoRequest         TextToVideoRequest + temporal windows, per-window prompts, cond_image

Checks here need nothing but the values; the rules that depend on the loaded model (sizes against the VAE's ratios,
skipped blocks against the transformer's depth) are the pipeline's (``PipelineBase.check_request``).
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Any, Callable, Sequence

from ltx_jax import validation

# The groups of fields the stages take together.
SCHEDULE, GUIDANCE, STEP_CACHE, DECODE = "schedule", "guidance", "step_cache", "decode"


def arg(default: Any, doc: str, check: Callable[[str, Any], None] | None = None, *, group: str | None = None) -> Any:
    """A request field: its default, its meaning (for ``help()`` and the README), and its check (called with the
    field's name and value; None values are left to the cross-field rules)."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check, "group": group})


def _int(**bounds) -> Callable[[str, Any], None]:
    return lambda name, value: validation.check_int(name, value, **bounds)


def _number(**bounds) -> Callable[[str, Any], None]:
    return lambda name, value: validation.check_number(name, value, **bounds)


def _per_step(**bounds) -> Callable[[str, Any], None]:
    return lambda name, value: validation.check_number(name, value, per_step=True, **bounds)


def _one_of(*choices: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{name}={value!r}; use one of {', '.join(map(repr, choices))}.")
    return check


@dataclasses.dataclass(frozen=True)
class Request:
    """The fields' checks and the groups, shared by every kind."""

    def check(self) -> "Request":
        """Every field's own check (types, then ranges) in declaration order, then the rules between fields; returns
        the request. Each failure is one ValueError line naming the argument and the fix."""
        for f in dataclasses.fields(self):
            check, value = f.metadata.get("check"), getattr(self, f.name)
            if check is not None and value is not None:
                check(f.name, value)
        self._check_together()
        return self

    def _check_together(self) -> None:
        """Rules between fields (the kinds add theirs)."""

    def group(self, name: str) -> dict[str, Any]:
        """{field: value} of one group (``SCHEDULE``, ``GUIDANCE``, ``DECODE``): the keyword arguments of a stage."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("group") == name}

    @classmethod
    def field_names(cls, group: str | None = None) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if group is None or f.metadata.get("group") == group)

    def updated(self, **given) -> "Request":
        """``dataclasses.replace(self, **given)`` with the one rule a bare replace cannot know: a step count given
        without timesteps replaces the defaults' timesteps (a distilled release's list), rather than losing to them."""
        if "num_inference_steps" in given and "timesteps" not in given and "timesteps" in self.field_names():
            given = {**given, "timesteps": None}
        return dataclasses.replace(self, **given)


@dataclasses.dataclass(frozen=True)
class SamplingRequest(Request):
    """The schedule, guidance and decode settings of a pass: a release's defaults (``ltx_jax.releases``), and each
    pass of the multi-scale recipe. ``SamplingRequest()`` is diffusers' ``LTXPipeline`` defaults with no
    spatio-temporal guidance. The guidance fields take the original package's names and meaning (see
    ``ltx_jax.sampling.guidance``): values, or tuples with one value per step or per ``guidance_timesteps`` entry."""

    num_inference_steps: int = arg(50, "denoising steps, without timesteps=.",
                                   _int(minimum=1, maximum=validation.MAX_STEPS), group=SCHEDULE)
    timesteps: tuple[float, ...] | None = arg(
        None, "explicit timesteps (0-1000), e.g. a distilled checkpoint's; replaces num_inference_steps.",
        _per_step(minimum=0), group=SCHEDULE)
    skip_initial_inference_steps: int = arg(0, "steps dropped from the start of a num_inference_steps schedule.",
                                            _int(minimum=0), group=SCHEDULE)
    skip_final_inference_steps: int = arg(0, "steps dropped from its end (the last kept step goes to sigma 0).",
                                          _int(minimum=0), group=SCHEDULE)
    guidance_scale: float | tuple[float, ...] = arg(
        3.0, "classifier-free guidance scale; a step runs CFG when its scale is above 1.",
        _per_step(minimum=0, maximum=validation.MAX_GUIDANCE, note=" (values up to 1 turn classifier-free guidance "
                  "off)"), group=GUIDANCE)
    guidance_rescale: float | tuple[float, ...] = arg(0.0, "diffusers' CFG rescale (0 = none).", _per_step(minimum=0),
                                                      group=GUIDANCE)
    stg_scale: float | tuple[float, ...] = arg(
        0.0, "spatio-temporal guidance scale; a step runs STG when its scale is above 0.",
        _per_step(minimum=0), group=GUIDANCE)
    rescaling_scale: float | tuple[float, ...] = arg(
        1.0, "the original package's std rescaling of the guided prediction (with STG, where not 1).", _per_step(),
        group=GUIDANCE)
    skip_block_list: tuple | None = arg(None, "the transformer blocks STG perturbs (one list, or one per "
                                              "guidance_timesteps entry).", group=GUIDANCE)
    skip_layer_strategy: str = arg("attention_values", "how STG perturbs its blocks: attention_values, "
                                                       "attention_skip, residual or transformer_block.",
                                   group=GUIDANCE)
    cfg_star_rescale: bool = arg(False, "CFG-star: rescale the unconditional prediction before guidance.",
                                 group=GUIDANCE)
    guidance_timesteps: tuple[float, ...] | None = arg(
        None, "the original's guidance schedule: timesteps in [0, 1]; each step takes the values of the first entry "
              "at or below its timestep / 1000. Without it, lists are one value per step.", group=GUIDANCE)
    cache: str | None = arg(
        None, "step caching: None; 'first_block' (diffusers' FirstBlockCacheConfig: a step runs only the first "
              "block while its residual moves by at most cache_threshold); or 'teacache' (ComfyUI's TeaCache: a step "
              "runs no block while the rescaled change of the first block's modulated input, accumulated since the "
              "last step that ran them, stays below cache_threshold). Pays on many-step runs, little on 8-step "
              "distilled ones.", _one_of(*validation.STEP_CACHE_THRESHOLDS), group=STEP_CACHE)
    cache_threshold: float | None = arg(
        None, "the step cache's threshold (None: the kind's default, 0.05 first_block, 0.06 teacache); traced: a new "
              "value recompiles nothing.", _number(minimum=0), group=STEP_CACHE)
    cache_exclude_conditioning: bool = arg(
        False, "the step cache's distances leave out clean conditioning tokens (conditioning mask 1: an image or "
               "video condition), counting only the tokens being generated; False counts all, as diffusers and "
               "ComfyUI do.", group=STEP_CACHE)
    decode_timestep: float | tuple[float, ...] = arg(
        0.0, "the VAE's decode timestep (timestep-conditioned VAEs, 0.9.1+); one value or one per video.",
        _per_step(minimum=0), group=DECODE)
    decode_noise_scale: float | tuple[float, ...] | None = arg(
        None, "noise mixed into the latents before decoding (None: as much as decode_timestep, as diffusers).",
        _per_step(minimum=0), group=DECODE)

    def _check_together(self) -> None:
        super()._check_together()
        validation.check_schedule(self.num_inference_steps, self.timesteps)

    def steps(self) -> int:
        """The number of steps before the skips: the timesteps' count, else num_inference_steps."""
        return len(self.timesteps) if self.timesteps is not None else self.num_inference_steps

    @property
    def skipped_blocks(self) -> tuple[int, ...]:
        """Every block ``skip_block_list`` names, at any step, sorted."""
        blocks = self.skip_block_list or ()
        nested = bool(blocks) and isinstance(blocks[0], (tuple, list))
        return tuple(sorted({b for bs in blocks for b in bs} if nested else set(blocks)))

    def for_layers(self, num_layers: int, what: str = "these defaults") -> "SamplingRequest":
        """These settings for a model of ``num_layers`` blocks (a fine-tune or tiny model named after a release):
        the skipped blocks it does not have are dropped, with a warning that names them."""
        dropped = [b for b in self.skipped_blocks if b >= num_layers]
        if not dropped:
            return self
        warnings.warn(f"{what} perturb block{'s' * (len(dropped) > 1)} {', '.join(map(str, dropped))} with "
                      f"spatio-temporal guidance, which this model of {num_layers} blocks (0 .. {num_layers - 1}) "
                      "lacks: dropped. Pass skip_block_list= (--stg_blocks) to choose blocks it has.", UserWarning,
                      stacklevel=3)
        keep = lambda bs: tuple(b for b in bs if b < num_layers)  # noqa: E731
        blocks = self.skip_block_list
        nested = isinstance(blocks[0], (tuple, list))
        return dataclasses.replace(self, skip_block_list=tuple(keep(b) for b in blocks) if nested else keep(blocks))

    def sampling(self) -> "SamplingRequest":
        """This request's sampling settings alone (a ``SamplingRequest``)."""
        return SamplingRequest(**{name: getattr(self, name) for name in SamplingRequest.field_names()})

    def with_sampling(self, settings: "SamplingRequest") -> "SamplingRequest":
        """This request with every sampling field taken from ``settings`` (a release's defaults, a pass)."""
        return dataclasses.replace(self, **{name: getattr(settings, name) for name in SamplingRequest.field_names()})


@dataclasses.dataclass(frozen=True)
class GenerationRequest(Request):
    """What every generation takes besides its sampling settings."""

    prompt: str | Sequence[str] | None = arg(None, "the text; a list for several videos.", validation.check_text)
    negative_prompt: str | Sequence[str] | None = arg(
        None, "what to steer away from with classifier-free guidance (default: the empty prompt).",
        validation.check_text)
    height: int = arg(512, "pixels; a multiple of the VAE's spatial ratio x patch size (32 for the releases).",
                      _int(maximum=validation.MAX_SIDE))
    width: int = arg(704, "pixels; as height.", _int(maximum=validation.MAX_SIDE))
    num_frames: int = arg(161, "k * the VAE's temporal ratio + 1 (8k + 1 for the releases).",
                          _int(maximum=validation.MAX_FRAMES))
    frame_rate: float = arg(25, "frames per second; scales the temporal positions (RoPE).",
                            _number(above=0, maximum=validation.MAX_FRAME_RATE))
    num_videos_per_prompt: int = arg(1, "videos per prompt (each from its own noise).", _int(minimum=1))
    seed: int = arg(0, "seeds every random draw of the call: noise, image encodes, decode noise.",
                    _int(minimum=0, maximum=validation.MAX_SEED))
    noise: Any = arg(None, "the initial Gaussian noise on the latent grid (packed [B, N, C] or channels-last "
                           "[B, F, H, W, C]) instead of drawing it from seed: to compare with another implementation.")
    prompt_embeds: Any = arg(None, "T5 embeddings [B, T, E] instead of prompt (with prompt_attention_mask [B, T]).")
    prompt_attention_mask: Any = arg(None, "[B, T], 1 = a real token.")
    negative_prompt_embeds: Any = arg(None, "the negative embeddings [B, T, E] (with guidance).")
    negative_prompt_attention_mask: Any = arg(None, "[B, T].")
    output_type: str = arg("np", "'np': frames [B, F, H, W, 3] float32 in [0, 1]; 'uint8': the same frames as "
                                 "uint8 round(clip(frames, 0, 1) * 255), made on the device (a quarter of the "
                                 "transfer); 'latent': packed latents [B, N, C].",
                           lambda _, value: validation.check_output_type(value))
    max_sequence_length: int = arg(128, "prompt tokens T5 reads (longer prompts are cut, with a warning).",
                                   _int(minimum=1, maximum=validation.MAX_SEQUENCE_LENGTH))
    tiling: Any = arg("auto", "VAE decode tiling: 'auto' (whole when the device's free memory holds it, else the "
                              "fewest uniform tiles that fit), None/False (whole), True (diffusers' default tiles, "
                              "decoded exactly as diffusers does), or a dict of VAETiling fields (diffusers' "
                              "enable_tiling arguments, and layout='uniform' for tiles of one shape).")

    def _check_together(self) -> None:
        super()._check_together()
        validation.check_prompts(self.prompt, self.negative_prompt, self.prompt_embeds, self.prompt_attention_mask,
                                 self.negative_prompt_embeds, self.negative_prompt_attention_mask,
                                 self.num_videos_per_prompt)

    @property
    def batch_size(self) -> int:
        """Videos in the call: prompts (or embedding rows) x num_videos_per_prompt."""
        prompts = (1 if isinstance(self.prompt, str) else len(self.prompt)) if self.prompt is not None else int(
            self.prompt_embeds.shape[0])
        return prompts * self.num_videos_per_prompt


@dataclasses.dataclass(frozen=True)
class TextToVideoRequest(SamplingRequest, GenerationRequest):
    """Text-to-video (diffusers' ``LTXPipeline.__call__``, plus ``seed`` and the original package's guidance)."""

    latents: Any = arg(None, "initial packed latents [B, N, C] (or channels-last [B, F, H, W, C]), float32.")


@dataclasses.dataclass(frozen=True)
class ImageToVideoRequest(TextToVideoRequest):
    """Image-to-video (diffusers' ``LTXImageToVideoPipeline.__call__``): the image is latent frame 0."""

    image: Any = arg(None, "a numpy array [H, W, 3] (uint8, or float in [0, 1]), a PIL image or a path; or one per "
                           "video. New images of the same size never recompile.")
    resize_mode: str = arg("stretch", "'stretch' (diffusers) or 'crop' (center-crop to the aspect ratio, then "
                                      "resize: Lightricks' inference script).", _one_of("stretch", "crop"))

    def _check_together(self) -> None:
        super()._check_together()
        if self.image is None and self.latents is None:
            raise ValueError("image-to-video needs an image (or latents=).")


@dataclasses.dataclass(frozen=True)
class ConditionFields(Request):
    """The conditions of conditioned and multi-scale generation (diffusers' ``LTXConditionPipeline``)."""

    conditions: Any = arg(None, "LTXVideoCondition s (images and clips at chosen frames); or the shorthand image= / "
                                "video= with frame_index= and strength= for one condition.")
    image: Any = arg(None, "one image condition (shorthand).")
    video: Any = arg(None, "one clip condition (shorthand): frames, or a path.")
    # (checked with each condition: ``conditioning.prepare_conditions``)
    frame_index: int = arg(0, "the shorthand condition's first frame.")
    strength: float = arg(1.0, "the shorthand condition's strength in [0, 1] (1 = kept as it is).")
    image_cond_noise_scale: float = arg(0.15, "noise put back on the strength-1 conditioning tokens before each "
                                              "step, times (t / 1000)^2.", _number(minimum=0))
    resize_mode: str = arg("stretch", "'stretch' (diffusers) or 'crop' (center-crop to the aspect ratio, then "
                                      "resize: Lightricks' inference script).", _one_of("stretch", "crop"))


@dataclasses.dataclass(frozen=True)
class ConditionRequest(TextToVideoRequest, ConditionFields):
    """Conditioned generation and video-to-video (diffusers' ``LTXConditionPipeline.__call__``); without
    ``timesteps``, ``num_inference_steps`` is diffusers' linear-quadratic schedule of that many steps."""

    max_sequence_length: int = arg(256, "prompt tokens T5 reads (longer prompts are cut, with a warning).",
                                   _int(minimum=1, maximum=validation.MAX_SEQUENCE_LENGTH))
    denoise_strength: float = arg(
        1.0, "< 1 starts from latents= (normalised, e.g. encode_video of a video) noised to the schedule's sigma at "
             "that depth, and runs only the remaining steps (video-to-video).", _number(above=0))

    def _check_together(self) -> None:
        super()._check_together()
        if self.denoise_strength > 1:
            raise ValueError(f"denoise_strength must be in (0, 1], got {self.denoise_strength}.")
        if self.denoise_strength < 1 and self.latents is None:
            raise ValueError("denoise_strength < 1 starts from latents=: pass the normalised latents of the video to "
                             "re-render (pipe.encode_video(frames, key)), or denoise_strength=1.")


@dataclasses.dataclass(frozen=True)
class MultiScaleRequest(GenerationRequest, ConditionFields):
    """Two-pass generation around the latent upsampler (the original's ``LTXMultiScalePipeline``). Each pass has its
    own schedule and guidance; the decode settings are the second pass's."""

    max_sequence_length: int = arg(256, "prompt tokens T5 reads (longer prompts are cut, with a warning).",
                                   _int(minimum=1, maximum=validation.MAX_SEQUENCE_LENGTH))
    height: int = arg(512, "the output size in pixels (any positive size: the frames are resized to it at the end).",
                      _int(minimum=1, maximum=validation.MAX_SIDE))
    width: int = arg(704, "as height.", _int(minimum=1, maximum=validation.MAX_SIDE))
    downscale_factor: float = arg(2 / 3, "the first pass's share of the size (rounded down to the VAE's ratio).",
                                  _number(above=0, maximum=1))
    first_pass: SamplingRequest = arg(SamplingRequest(), "the first pass's schedule and guidance: a dict over the "
                                                         "recipe's (num_inference_steps, timesteps, guidance_scale, "
                                                         "stg_scale, ...), or a SamplingRequest.")
    second_pass: SamplingRequest = arg(SamplingRequest(), "the second pass's, the decode settings included "
                                                          "(decode_timestep, decode_noise_scale, "
                                                          "tone_map_compression_ratio). It must start below "
                                                          "timestep 1000.")
    tone_map_compression_ratio: float = arg(0.0, "tone mapping of the second pass's latents before decoding "
                                                 "(0 = none); set through second_pass=.", _number(minimum=0, maximum=1))
    second_pass_noise: Any = arg(None, "the second pass's initial noise on its latent grid, instead of drawing it "
                                       "from seed.")
    decode_timestep: float | tuple[float, ...] | None = arg(None, "the decode timestep (None: the second pass's).",
                                                            _per_step(minimum=0))
    decode_noise_scale: float | tuple[float, ...] | None = arg(None, "the decode noise (None: the second pass's).",
                                                               _per_step(minimum=0))

    def _check_together(self) -> None:
        super()._check_together()
        self.first_pass.check()
        self.second_pass.check()


def _segments(name: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(s, dict) and isinstance(s.get("text", ""), str) and all(
                isinstance(s.get(k, 0), int) and s.get(k, 0) >= 0 for k in ("start_window", "end_window"))
            for s in value):
        raise ValueError(f"{name} must be a non-empty list of {{'start_window': int, 'end_window': int, 'text': str}} "
                         f"dicts (windows counted from 0), got {value!r}.")


@dataclasses.dataclass(frozen=True)
class LongVideoRequest(TextToVideoRequest):
    """Long videos in temporal windows (diffusers' ``LTXI2VLongMultiPromptPipeline.__call__``): one video, a prompt per
    window, each window conditioned on the previous one's tail. Sizes in frames are pixel frames; they are divided by
    the VAE's temporal ratio (8) as diffusers does."""

    prompt_segments: tuple | None = arg(None, "per-window prompts: [{'start_window': 0, 'end_window': 1, 'text': "
                                              "...}, ...] instead of prompt's '|'-separated parts.", _segments)
    sigmas: tuple[float, ...] | None = arg(
        None, "each window's sigma schedule, ComfyUI style (terminal 0 included); replaces timesteps and "
              "num_inference_steps.", _per_step(minimum=0, maximum=1))
    cond_image: Any = arg(None, "the first frame's image (an array, PIL image or path), encoded to its mode.")
    cond_strength: float = arg(0.5, "how strongly frame 0 keeps cond_image (1 = kept as it is).",
                               _number(minimum=0, maximum=1))
    temporal_tile_size: int = arg(80, "window length in frames: a multiple of the VAE's temporal ratio (8k) or "
                                      "8k + 1.", _int(minimum=1))
    temporal_overlap: int = arg(24, "frames each window shares with the previous one: a multiple of the temporal "
                                    "ratio, smaller than the window.", _int(minimum=0))
    temporal_overlap_cond_strength: float = arg(0.5, "how strongly a window keeps the previous window's tail.",
                                                _number(minimum=0, maximum=1))
    adain_factor: float = arg(0.25, "AdaIN of each later window towards the first window's channel statistics "
                                    "(0 = none).", _number(minimum=0, maximum=1))
    guidance_latents: Any = arg(None, "reference latents [1, F, H, W, C] (channels-last, normalised) appended to "
                                      "each window.")
    guiding_strength: float = arg(1.0, "how strongly windows keep guidance_latents.", _number(minimum=0, maximum=1))
    negative_index_latents: Any = arg(None, "one latent frame [1, 1, H, W, C] placed one frame before each window "
                                            "(default: cond_image's latents).")
    negative_index_strength: float = arg(1.0, "how strongly windows keep it.", _number(minimum=0, maximum=1))
    skip_steps_sigma_threshold: float | None = arg(1.0, "steps whose sigma is above this are skipped (None: none).",
                                                   _number(minimum=0))

    def _check_together(self) -> None:
        super()._check_together()
        if self.batch_size != 1:
            raise ValueError("the long-video pipeline makes one video: give one prompt (windows split at '|') and "
                             "num_videos_per_prompt=1.")
        if self.temporal_overlap >= self.temporal_tile_size:
            raise ValueError(f"temporal_overlap={self.temporal_overlap} must be smaller than temporal_tile_size="
                             f"{self.temporal_tile_size}.")


# ------------------------------------------------------------------------------------------ the generated interface

def call_signature(request_type: type[Request], positional: Sequence[str], from_defaults: Sequence[str] = ()):
    """The ``inspect.Signature`` of a pipeline's ``__call__`` over ``request_type``: ``positional`` first (as
    diffusers' order), every other field keyword-only; fields the release fills (``from_defaults``) show None."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    fields = {f.name: f for f in dataclasses.fields(request_type)}
    for name in list(positional) + [n for n in fields if n not in positional]:
        f = fields[name]
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if name in positional else inspect.Parameter.KEYWORD_ONLY
        default = None if name in from_defaults else f.default
        params.append(inspect.Parameter(name, kind, default=default, annotation=f.type))
    return inspect.Signature(params)


def arguments_doc(request_type: type[Request], from_defaults: Sequence[str] = ()) -> str:
    """The "Args:" section of a ``__call__`` docstring, one entry per field of ``request_type``."""
    lines = ["Args:"]
    for f in dataclasses.fields(request_type):
        default = "the release's" if f.name in from_defaults else repr(f.default)
        lines.append(f"  {f.name}: {f.metadata.get('doc', '')} (default: {default})")
    return "\n".join(lines)


# The kinds in the order the README lists them, each with the fields it declares itself.
KINDS = ("SamplingRequest", "GenerationRequest", "TextToVideoRequest", "ImageToVideoRequest", "ConditionFields",
         "ConditionRequest", "MultiScaleRequest", "LongVideoRequest")


def arguments_markdown() -> str:
    """The README's table of every request field (the "Arguments" section is this text, checked by a test): one
    row per field, under the kind that declares it."""
    rows = ["| request | argument | default | meaning |", "| --- | --- | --- | --- |"]
    for name in KINDS:
        kind = globals()[name]
        own = kind.__dict__.get("__annotations__", {})
        for f in dataclasses.fields(kind):
            if f.name in own:
                rows.append(f"| `{name}` | `{f.name}` | {_shown(f.default)} | {f.metadata.get('doc', '')} |")
    return "\n".join(rows)


def _shown(default: Any) -> str:
    if isinstance(default, Request):
        return "the recipe's"
    return f"`{default:.4g}`" if isinstance(default, float) else f"`{default!r}`"
