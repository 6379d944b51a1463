"""Training data: a folder of videos with captions, encoded once (VAE latents, T5 prompt embeddings) into one
safetensors file per clip, and a loader that batches them by bucket and prefetches on a thread.

Captions: ``clip.txt`` beside ``clip.mp4``, or a ``captions.jsonl`` (``{"video": "clip.mp4", "caption": "..."}``
per line) in the folder. Buckets: ``WxHxF`` sizes (e.g. ``768x512x49``); a clip goes to the bucket nearest its
aspect ratio among those it has frames for, is resized to it (center-crop to the aspect ratio, then bilinear) and
cut to its first F frames. F must be 8k + 1 (the VAE's temporal ratio).

The loader is a plain prefetching iterator rather than grain: the inputs are small precomputed tensors read from
local files (no decoding, no augmentation), so one thread that reads the next batches while the step runs keeps it
fed, with no extra dependency; the order is a function of (seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import threading
from typing import Iterator, Mapping, Sequence

import jax
import numpy as np
from safetensors.numpy import save_file
from tqdm import tqdm

from ltx_jax.files import atomic_file
from ltx_jax.pipelines.conditioning import resize_bilinear
from ltx_jax.sampling.latents import pack_latents
from ltx_jax.training.step import Batch
from ltx_jax.video import read_video
from weight_conversion.safetensors_io import CheckpointError, SafetensorsFile

logger = logging.getLogger("ltx_jax")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".gif", ".mkv", ".avi")
CAPTIONS_JSONL = "captions.jsonl"
SAMPLE_SUFFIX = ".latents.safetensors"


@dataclasses.dataclass(frozen=True)
class Bucket:
    width: int
    height: int
    frames: int

    @classmethod
    def parse(cls, spec: str) -> "Bucket":
        try:
            w, h, f = (int(x) for x in spec.lower().split("x"))
        except ValueError:
            raise ValueError(f"bucket {spec!r}: write WIDTHxHEIGHTxFRAMES, e.g. 768x512x49.") from None
        if w % 32 or h % 32 or f % 8 != 1:
            raise ValueError(f"bucket {spec!r}: width and height must be multiples of 32 and frames 8k + 1.")
        return cls(w, h, f)


def parse_buckets(specs: str | Sequence[str]) -> list[Bucket]:
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    return [Bucket.parse(s.strip()) for s in items if s.strip()]


def find_clips(folder: str) -> tuple[list[tuple[str, str]], list[str]]:
    """[(video path, caption)] and the problems found (a missing caption: the clip is left out, and said)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"--data {folder} is not a folder of videos.")
    captions: dict[str, str] = {}
    jsonl = os.path.join(folder, CAPTIONS_JSONL)
    problems = []
    if os.path.exists(jsonl):
        with open(jsonl) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    captions[os.path.basename(record["video"])] = str(record["caption"])
                except (ValueError, KeyError, TypeError):
                    problems.append(f"{jsonl}:{n}: not a {{\"video\": ..., \"caption\": ...}} record; skipped")
    clips = []
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(VIDEO_SUFFIXES):
            continue
        path = os.path.join(folder, name)
        caption = captions.get(name)
        txt = os.path.splitext(path)[0] + ".txt"
        if caption is None and os.path.exists(txt):
            with open(txt) as f:
                caption = f.read().strip()
        if not caption:
            problems.append(f"{path}: no caption ({os.path.basename(txt)} or a {CAPTIONS_JSONL} entry); skipped")
            continue
        clips.append((path, caption))
    return clips, problems


def choose_bucket(frames: int, height: int, width: int, buckets: Sequence[Bucket]) -> Bucket | None:
    """The bucket with the nearest aspect ratio among those the clip has enough frames for."""
    fitting = [b for b in buckets if b.frames <= frames]
    if not fitting:
        return None
    return min(fitting, key=lambda b: (abs(np.log((b.width / b.height) / (width / height))), -b.frames))


def fit_clip(video: np.ndarray, bucket: Bucket) -> np.ndarray:
    """uint8 [F, H, W, 3] -> float32 [bucket.frames, bucket.height, bucket.width, 3] in [-1, 1]: the first frames,
    center-cropped to the bucket's aspect ratio, resized bilinearly."""
    clip = video[: bucket.frames].astype(np.float32) / 127.5 - 1.0
    _, h, w, _ = clip.shape
    target = bucket.width / bucket.height
    if w / h > target:  # too wide: crop the width
        cw = int(round(h * target))
        clip = clip[:, :, (w - cw) // 2:(w - cw) // 2 + cw]
    else:
        ch = int(round(w / target))
        clip = clip[:, (h - ch) // 2:(h - ch) // 2 + ch]
    return np.asarray(resize_bilinear(clip, bucket.height, bucket.width), np.float32)


def preprocess(pipe, folder: str, output: str, buckets: Sequence[Bucket], *, fps: float = 24.0,
               max_sequence_length: int = 128, seed: int = 0, progress: bool = True) -> dict:
    """Encodes every captioned clip of ``folder`` with ``pipe``'s VAE and T5 into ``output/<clip>.latents.safetensors``
    (latents [F', H', W', C] normalised, prompt_embeds [T, E], prompt_attention_mask [T], and the grid, fps and
    caption in the metadata). Each file is written atomically; a clip that cannot be read or is too short for every
    bucket is reported and skipped, and the rest go on. Returns {"written": [...], "skipped": [...]}."""
    clips, problems = find_clips(folder)
    os.makedirs(output, exist_ok=True)
    written = []
    bar = _progress(len(clips), "preprocessing", progress)
    for index, (path, caption) in enumerate(clips):
        bar.update(1)
        try:
            video = read_video(path)
        except ValueError as e:
            problems.append(f"{e}; skipped")
            continue
        frames, height, width = video.shape[:3]
        bucket = choose_bucket(frames, height, width, buckets)
        if bucket is None:
            problems.append(f"{path}: {frames} frames, fewer than every bucket's "
                            f"({', '.join(str(b.frames) for b in buckets)}); skipped")
            continue
        if frames != bucket.frames:
            logger.warning("%s: %d frames; the first %d are used (bucket %dx%dx%d), %d trimmed", path, frames,
                           bucket.frames, bucket.width, bucket.height, bucket.frames, frames - bucket.frames)
        clip = fit_clip(video, bucket)
        latents = pipe.encode_video(clip[None], jax.random.fold_in(jax.random.PRNGKey(seed), index))[0]
        embeds, mask, _, _ = pipe.encode_prompt(caption, do_classifier_free_guidance=False,
                                                max_sequence_length=max_sequence_length)
        name = os.path.splitext(os.path.basename(path))[0]
        target = os.path.join(output, name + SAMPLE_SUFFIX)
        tensors = {"latents": np.asarray(latents, np.float32), "prompt_embeds": np.asarray(embeds[0], np.float32),
                   "prompt_attention_mask": np.asarray(mask[0], np.int32)}
        metadata = {"grid": json.dumps(list(latents.shape[:3])), "fps": str(fps), "caption": caption,
                    "video": os.path.basename(path), "bucket": f"{bucket.width}x{bucket.height}x{bucket.frames}"}
        with atomic_file(target, overwrite=True) as tmp:  # complete or absent, with the umask's mode
            save_file(tensors, tmp, metadata=metadata)
        written.append(target)
    bar.close()
    for problem in problems:
        logger.warning("%s", problem)
    return {"written": written, "skipped": problems}


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, disable=not enabled, unit="clip")


@dataclasses.dataclass
class Sample:
    latents: np.ndarray  # [F', H', W', C]
    prompt_embeds: np.ndarray  # [T, E]
    prompt_attention_mask: np.ndarray  # [T]
    fps: float


# What ``preprocess`` writes into a sample, by tensor: its axes.
SAMPLE_TENSORS = {"latents": "[F', H', W', C]", "prompt_embeds": "[T, E]", "prompt_attention_mask": "[T]"}


def _open_sample(path: str):
    """A preprocessed sample's ``SafetensorsFile``, checked to be one of ours (the three tensors with their ranks, the
    embeddings and mask of one length, a numeric fps); else a ValueError that names the file and what it lacks."""
    fix = "remove it from the folder, or write it again with `python -m ltx_jax preprocess`"
    try:
        f = SafetensorsFile(path)
    except CheckpointError as e:
        raise ValueError(f"{e} So it is not a preprocessed sample: {fix}.") from None
    missing = [k for k in SAMPLE_TENSORS if k not in f.keys()]
    shapes = {k: f.shape(k) for k in SAMPLE_TENSORS if k not in missing}
    fps = f.metadata.get("fps", "24")
    problem = None
    if missing:
        problem = f"it has no {' or '.join(missing)} tensor (it holds {', '.join(f.keys()[:5]) or 'none'})"
    elif [len(s) for s in shapes.values()] != [4, 2, 1] or shapes["prompt_embeds"][0] != shapes[
            "prompt_attention_mask"][0]:
        problem = (f"its tensors are {', '.join(f'{k} {list(s)}' for k, s in shapes.items())}, not "
                   f"{', '.join(f'{k} {axes}' for k, axes in SAMPLE_TENSORS.items())}")
    elif any(f.dtype(k).kind not in "fiub" for k in SAMPLE_TENSORS):
        problem = f"its tensors are {', '.join(f'{k} {f.dtype(k)}' for k in SAMPLE_TENSORS)}, not numbers"
    else:
        try:
            float(fps)
        except ValueError:
            problem = f"its fps metadata {fps!r} is not a number"
    if problem:
        f.close()
        raise ValueError(f"{path} is not a preprocessed sample: {problem}; {fix}.")
    return f


def vae_ratios(metadata: Mapping[str, str]) -> tuple[int | None, int | None]:
    """(temporal, spatial) compression of the VAE that encoded a sample: its clip's size (the ``bucket`` preprocess
    records, WxHxF) over its latent grid (``grid``, [F', H', W']); None where the sample does not show it (no such
    metadata; one latent frame shows no temporal ratio, and RoPE needs none there: its only frame position is 0)."""
    try:
        bucket = Bucket.parse(metadata["bucket"])
        frames, height, _ = json.loads(metadata["grid"])
    except (KeyError, ValueError, TypeError):
        return None, None
    return ((bucket.frames - 1) // (frames - 1) if frames > 1 else None), bucket.height // height


def read_sample(path: str) -> Sample:
    f = _open_sample(path)
    try:
        return Sample(np.asarray(f.read("latents"), np.float32), np.asarray(f.read("prompt_embeds"), np.float32),
                      np.asarray(f.read("prompt_attention_mask")), float(f.metadata.get("fps", 24.0)))
    finally:
        f.close()


class Loader:
    """Batches of the preprocessed samples in ``folder``: same-shape samples together, shuffled per epoch from
    ``seed``, ``batch_size`` each (a bucket with fewer samples gives a smaller batch), read ``prefetch`` batches ahead
    on a thread. ``batches(start)`` resumes at batch number ``start`` of the infinite sequence."""

    def __init__(self, folder: str, batch_size: int, seed: int = 0, prefetch: int = 2):
        folder = os.fspath(folder)
        self.files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(SAMPLE_SUFFIX)) \
            if os.path.isdir(folder) else []
        if not self.files:
            raise ValueError(f"{folder} holds no *{SAMPLE_SUFFIX} files; run `python -m ltx_jax preprocess` first.")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1.")
        self.batch_size, self.seed, self.prefetch = batch_size, seed, prefetch
        groups: dict[tuple, list[str]] = {}
        ratios: list[dict[int, str]] = [{}, {}]  # (temporal, spatial) ratio -> a file that shows it
        for path in self.files:  # each file's header checked: a file that is not a sample fails here, by name
            f = _open_sample(path)
            shape = f.shape("latents") + f.shape("prompt_embeds")
            for seen, ratio in zip(ratios, vae_ratios(f.metadata)):
                if ratio is not None:
                    seen.setdefault(ratio, path)
            f.close()
            groups.setdefault(shape, []).append(path)
        self.groups = [groups[k] for k in sorted(groups)]
        for axis, seen in zip(("temporal", "spatial"), ratios):
            if len(seen) > 1:
                raise ValueError(f"{folder} holds latents of VAEs with different {axis} compression ("
                                 + ", ".join(f"{r}x in {os.path.basename(p)}" for r, p in sorted(seen.items()))
                                 + "); train on the samples of one VAE.")
        #: (temporal, spatial) compression of the VAE that encoded the samples (``vae_ratios``); None: not shown.
        self.vae_ratios = tuple(next(iter(seen), None) for seen in ratios)

    def epoch(self, number: int) -> list[list[str]]:
        """The batches (lists of files) of one epoch, in order."""
        rng = np.random.default_rng([self.seed, number])
        batches = []
        for files in self.groups:
            order = [files[i] for i in rng.permutation(len(files))]
            batches += [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def batch_files(self, start: int = 0) -> Iterator[list[str]]:
        per_epoch = len(self.epoch(0))
        number, skip = divmod(start, per_epoch)
        while True:
            yield from self.epoch(number)[skip:]
            number, skip = number + 1, 0

    def batches(self, start: int = 0):
        """Iterator of ``training.step.Batch`` (numpy arrays), from batch number ``start``; reads ahead."""
        def build(files):
            samples = [read_sample(f) for f in files]
            latents = np.stack([s.latents for s in samples])  # [B, F, H, W, C]
            return Batch(np.asarray(pack_latents(latents)), np.stack([s.prompt_embeds for s in samples]),
                         np.stack([s.prompt_attention_mask for s in samples]), grid=tuple(latents.shape[1:4]),
                         fps=samples[0].fps)

        out: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def worker():
            try:
                for files in self.batch_files(start):
                    item = build(files)
                    while not stop.is_set():
                        try:
                            out.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                out.put(e)

        thread = threading.Thread(target=worker, daemon=True, name="ltx_jax-loader")
        thread.start()
        try:
            while True:
                item = out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
