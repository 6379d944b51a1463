"""Release detection: every published file name, diffusers-style folder names, renamed files (configs and metadata
only), tiny models named after a release, and the record's contents."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from ltx_jax.releases import (LTX_DISTILLED_TIMESTEPS, RELEASES, TRANSFORMER_PRESETS, VAE_PRESETS, detect_release,
                              get_release, release_problems)
from ltx_jax.tiny_random import TINY_TRANSFORMER, TINY_VAE

FILES = [(release.name, name) for release in RELEASES.values() for name in release.files]
# Folder names of the diffusers-format repositories of these releases.
FOLDERS = {
    "LTX-Video-0.9.1": "ltx-video-0.9.1",
    "LTX-Video-0.9.5": "ltx-video-0.9.5",
    "LTX-Video-0.9.7-dev": "ltx-video-0.9.7-13b-dev",
    "LTX-Video-0.9.7-distilled": "ltx-video-0.9.7-13b-distilled",
    "LTX-Video-0.9.8-13B-distilled": "ltx-video-0.9.8-13b-distilled",
}


@pytest.mark.parametrize("release_name, file_name", FILES)
def test_every_published_file_name(release_name, file_name):
    release = RELEASES[release_name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unambiguous name never warns
        assert detect_release(f"/models/{file_name}", release.transformer, release.vae) is release


@pytest.mark.parametrize("folder, release_name", sorted(FOLDERS.items()))
def test_diffusers_folder_names(folder, release_name):
    release = RELEASES[release_name]
    assert detect_release(f"/models/{folder}/", release.transformer, release.vae) is release


@pytest.mark.parametrize("release_name", sorted(RELEASES))
def test_renamed_files_are_told_apart_by_configs_and_metadata(release_name):
    """A file called model.safetensors: the architectures give the family, allowed_inference_steps (in distilled
    single files' metadata) the variant; what is left ambiguous gets a warning and a release with equal defaults."""
    release = RELEASES[release_name]
    metadata = {"allowed_inference_steps": [1.0, 0.99]} if release.distilled else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = detect_release("/models/model.safetensors", release.transformer, release.vae, metadata)
    assert found.transformer == release.transformer and found.vae == release.vae
    assert found.distilled == release.distilled or release.variant == ""
    if found is not release:
        assert caught and "preset=" in str(caught[0].message)
        assert release.name in str(caught[0].message)
    if release.version in ("0.9.0", "0.9.1"):  # a VAE of its own: the configs alone decide
        assert found is release and not caught


def test_configs_win_over_a_contradicting_name():
    big = RELEASES["ltx-video-0.9.8-13b-dev"]
    with pytest.warns(UserWarning, match="fits 4 releases"):  # 13B: four releases share the architecture
        assert detect_release("ltx-video-2b-v0.9.1.safetensors", big.transformer, big.vae).size == "13b"


def test_tiny_models_take_the_release_their_name_says():
    assert detect_release("ltxv-tiny-0.9.1.safetensors", TINY_TRANSFORMER, TINY_VAE).name == "ltx-video-0.9.1"
    assert detect_release("/tmp/tiny_ltx0", TINY_TRANSFORMER, TINY_VAE) is None  # nothing says: diffusers' defaults


def test_records():
    assert RELEASES["ltx-video-0.9.8-2b-distilled"].defaults.timesteps == LTX_DISTILLED_TIMESTEPS
    assert RELEASES["ltx-video-0.9.7-13b-dev"].transformer == TRANSFORMER_PRESETS["ltx-video-13b"]
    assert {r.vae for r in RELEASES.values() if r.version >= "0.9.5"} == {VAE_PRESETS["ltx-video-0.9.5"]}
    assert all(r.name.startswith(f"ltx-video-{r.version}") for r in RELEASES.values())
    with pytest.raises(ValueError, match=r"unknown release 'ltx-video-0.9.9'; did you mean ltx-video-0.9.5 or .*"
                                         r"Known releases: ltx-video-0.9.0, ltx-video-0.9.1"):
        get_release("ltx-video-0.9.9")


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_every_release_agrees_with_its_own_architectures(name):
    RELEASES[name].validate()


def test_a_recipe_with_another_models_blocks_is_refused_by_name():
    """The defect the first GPU run found: the 2B distilled recipe carried the 13B's STG block 42 (at STG scale 0)."""
    release = RELEASES["ltx-video-0.9.8-2b-distilled"]
    first = dataclasses.replace(release.multi_scale.first_pass, skip_block_list=(42,))
    broken = dataclasses.replace(release, multi_scale=dataclasses.replace(release.multi_scale, first_pass=first))
    problems = release_problems(broken)
    assert any("block(s) [42]" in p and "0 .. 27" in p for p in problems), problems
    assert any("STG scale is 0 at every step" in p for p in problems), problems
    with pytest.raises(ValueError, match="release ltx-video-0.9.8-2b-distilled: multi_scale.first_pass"):
        broken.validate()


def test_blocks_dropped_for_a_shallower_model_are_named_in_a_warning():
    defaults = RELEASES["ltx-video-0.9.8-13b-dev"].defaults
    with pytest.warns(UserWarning, match=r"perturb blocks 11, 22, 25, 28, 35, 39 .* 8 blocks \(0 \.\. 7\)"):
        smaller = defaults.for_layers(8, "ltx-video-0.9.8-13b-dev's defaults")
    assert smaller.skip_block_list == ((), (), (), (), (), (), ())
