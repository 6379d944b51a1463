"""A pipeline call as a typed request: ``pipe(**given)`` is ``pipe.generate(pipe.request(**given))``.

    request = pipe.request(prompt="a fox", num_frames=121)   # replace(pipe.defaults, ...), checked: one-line errors
    frames = pipe.generate(request)                          # the stages, each reading the request's fields

``pipe.defaults`` is the release's defaults as a request of the pipeline's kind (``ltx_jax.requests``); a value
given as None means "the default", as diffusers' ``__call__`` arguments do. Each pipeline class names its request
type, and its ``__call__`` (signature and docstring, so ``help(pipe.__call__)`` shows every argument) is generated
from that type's fields.
"""

from __future__ import annotations

import difflib
import time

import numpy as np

from ltx_jax import sampling
from ltx_jax.sampling import step_cache
from ltx_jax.pipelines.reporting import StageTimings
from ltx_jax.requests import (GUIDANCE, GenerationRequest, SamplingRequest, TextToVideoRequest, arguments_doc,
                              call_signature)


class RequestCalls:
    """The request side of a pipeline (``PipelineBase`` mixes it in): defaults, checks, the generated ``__call__``.

    Class attributes:
      request_type: the kind of call (a ``GenerationRequest`` subclass).
      positional: the arguments ``__call__`` also takes by position, in diffusers' order.
      summary: the first paragraph of the generated ``__call__`` docstring.
    """

    request_type: type[GenerationRequest] = TextToVideoRequest
    positional: tuple[str, ...] = ("prompt", "negative_prompt")
    summary: str = "Generates videos."

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            return  # a pipeline of another shape (the latent upsampler) keeps its own
        request_type, positional = cls.request_type, cls.positional
        filled = SamplingRequest.field_names() if issubclass(request_type, SamplingRequest) else ()

        def __call__(self, *args, **given) -> np.ndarray:
            return self.generate(self.request(*args, **given))

        __call__.__signature__ = call_signature(request_type, positional, filled)
        __call__.__doc__ = (f"{cls.summary}\n\nEvery argument is a field of ``{request_type.__name__}`` "
                            "(``ltx_jax.requests``); one left out or None takes ``self.defaults``' value (the "
                            "release's, else diffusers'). Returns frames np.ndarray [B, F, H, W, 3] float32 in "
                            "[0, 1] (uint8 with output_type='uint8', packed latents with output_type='latent').\n\n"
                            + arguments_doc(request_type, filled))
        __call__.__qualname__ = f"{cls.__qualname__}.__call__"
        cls.__call__ = __call__

    # ------------------------------------------------------------------------------------------ defaults

    @property
    def sampling_defaults(self) -> SamplingRequest:
        """The release's schedule, guidance and decode settings, or diffusers' own; for another architecture named
        after a release (a fine-tune, a tiny model), without the skipped blocks it does not have."""
        if self.release is None:
            return SamplingRequest()
        if self.release.transformer != self.transformer.config:
            return self.release.defaults.for_layers(self.transformer.config.num_layers,
                                                    f"{self.release.name}'s defaults")
        return self.release.defaults

    @property
    def defaults(self) -> GenerationRequest:
        """A call's defaults: a request of this pipeline's kind carrying the release's settings."""
        return self.request_type().with_sampling(self.sampling_defaults)

    # ------------------------------------------------------------------------------------------ requests

    def request(self, *args, **given) -> GenerationRequest:
        """``__call__``'s arguments as a checked request: ``self.defaults`` updated with the given values (None =
        the default), checked field by field and then against the loaded model (``check_request``)."""
        names = self.request_type.field_names()
        if len(args) > len(self.positional):
            raise TypeError(f"{type(self).__name__}() takes {len(self.positional)} positional arguments "
                            f"({', '.join(self.positional)}); pass the others by name.")
        for name, value in zip(self.positional, args):
            if name in given:
                raise TypeError(f"{type(self).__name__}() got {name} twice (by position and by name).")
            given[name] = value
        for name in given:
            if name not in names:
                near = difflib.get_close_matches(name, names, n=1)
                hint = f"; did you mean {near[0]}?" if near else f"; it takes {', '.join(names)}."
                raise TypeError(f"{type(self).__name__}() got an unexpected argument {name!r}{hint}")
        request = self.defaults.updated(**{k: v for k, v in given.items() if v is not None})
        request.check()
        self.check_request(request)
        return request

    def check_request(self, request: GenerationRequest) -> sampling.LatentGrid:
        """The rules that depend on the loaded model: the size against the VAE's ratios and the transformer's
        patches, the guidance against its blocks; returns the request's latent grid."""
        grid = self.latent_grid(request.height, request.width, request.num_frames)
        if isinstance(request, SamplingRequest):
            self.check_sampling(request)
        return grid

    def check_sampling(self, settings: SamplingRequest) -> None:
        """Every guidance rule of ``settings`` (skipped blocks against this transformer's depth, lists against the
        step count) on a stand-in schedule of its length, and the step cache against the depth, before any work."""
        kept = settings.steps() - settings.skip_initial_inference_steps - settings.skip_final_inference_steps
        stand_in = np.linspace(1000.0, 0.0, max(1, kept), endpoint=False)
        num_layers = self.transformer.config.num_layers
        sampling.guidance_plan(stand_in, num_layers=num_layers, **settings.group(GUIDANCE))
        step_cache.check_cache(settings.cache, num_layers)

    # ------------------------------------------------------------------------------------------ one call

    def _begin(self, request: GenerationRequest) -> sampling.LatentGrid:
        """A call's start: new timings, the request's latent grid."""
        self.last_timings = StageTimings()
        self._call_started = time.perf_counter()
        return self.check_request(request)

    def prompt_embeddings(self, request: GenerationRequest, classifier_free_guidance: bool):
        """``encode_prompt`` of the request's prompts (or given embeddings): (embeds [B, T, E], mask [B, T], negative
        embeds, negative mask), the negative pair None without classifier-free guidance."""
        return self.encode_prompt(request.prompt, request.negative_prompt, classifier_free_guidance,
                                  request.num_videos_per_prompt, request.prompt_embeds, request.prompt_attention_mask,
                                  request.negative_prompt_embeds, request.negative_prompt_attention_mask,
                                  request.max_sequence_length)

    def _finish(self, request: GenerationRequest, latents, grid: sampling.LatentGrid, settings: SamplingRequest, key,
                tone_map_compression_ratio: float = 0.0, size: tuple[int, int] | None = None) -> np.ndarray:
        """The call's output from packed latents [B, N, C] of the video's tokens: the decoded frames (at
        ``settings``' decode timestep and noise; resized to ``size`` on the device; float32 in [0, 1], or uint8 for
        output_type='uint8'), or the latents themselves for output_type='latent'."""
        if request.output_type == "latent":
            out = np.asarray(latents)
        else:
            out = self.decode(latents, grid, decode_timestep=settings.decode_timestep,
                              decode_noise_scale=settings.decode_noise_scale, key=key, tiling=request.tiling,
                              tone_map_compression_ratio=tone_map_compression_ratio, size=size,
                              uint8=request.output_type == "uint8")
        self.last_timings.total = time.perf_counter() - self._call_started
        return out


def uses_guidance(settings: SamplingRequest) -> bool:
    """Whether any step of ``settings`` runs classifier-free guidance (a scale above 1)."""
    return bool(np.max(settings.guidance_scale) > 1.0)
