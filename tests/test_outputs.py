"""Frames leave the device once: output_type="uint8" is made on the device (after the multi-scale resize there too)
and equals round(clip(float frames, 0, 1) * 255) of output_type="np"."""

from __future__ import annotations

import numpy as np
import pytest

from ltx_jax.tiny_random import tiny_random_multi_scale_pipeline, tiny_random_pipeline
from ltx_jax.video import to_uint8


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline(progress=False)


def test_uint8_frames_are_the_float_frames_rounded(pipe):
    call = dict(prompt="a fox", height=64, width=96, num_frames=9, num_inference_steps=2, seed=5)
    floats = pipe(**call)
    frames = pipe(**call, output_type="uint8")
    assert frames.dtype == np.uint8 and frames.shape == floats.shape == (1, 9, 64, 96, 3)
    np.testing.assert_array_equal(frames, to_uint8(floats))
    print(f"\n[outputs] uint8 {frames.nbytes} bytes against float32 {floats.nbytes}: one transfer of a quarter")


def test_the_multi_scale_resize_runs_on_the_device_before_the_uint8_transfer():
    pipe = tiny_random_multi_scale_pipeline(progress=False)
    call = dict(prompt="a fox", height=70, width=100, num_frames=9, seed=2)  # not the second pass's size: a resize
    floats = pipe(**call)
    frames = pipe(**call, output_type="uint8")
    assert frames.dtype == np.uint8 and frames.shape == floats.shape == (1, 9, 70, 100, 3)
    np.testing.assert_array_equal(frames, to_uint8(floats))
    assert {"decoding", "resizing"} <= set(pipe.last_timings.stages)


def test_a_wrong_output_type_names_the_choices(pipe):
    with pytest.raises(ValueError, match="output_type='pil'; use 'np' \\(frames in \\[0, 1\\]\\), 'uint8' or 'latent'"):
        pipe.request(prompt="a fox", height=64, width=96, num_frames=9, output_type="pil")
