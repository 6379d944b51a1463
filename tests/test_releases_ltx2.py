"""The LTX-2 release records: sound against their own architectures, found from configs first and names second, and
every config round-tripping through config.json as diffusers writes it."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from ltx_jax.configs_ltx2 import LTX2_CONFIG_CLASSES, LTX2TransformerConfig, LTX2VideoVAEConfig
from ltx_jax.releases import LTX2_RELEASES, LTX2_TRANSFORMER_PRESETS, detect_ltx2_release, ltx2_release_problems


@pytest.mark.parametrize("name", sorted(LTX2_RELEASES))
def test_every_release_agrees_with_its_own_architectures(name):
    assert ltx2_release_problems(LTX2_RELEASES[name]) == []


@pytest.mark.parametrize("release_name,file_name",
                         [(r.name, f) for r in LTX2_RELEASES.values() for f in r.files])
def test_every_published_file_name(release_name, file_name):
    """A released file's name alone finds its release; with its transformer config too."""
    release = LTX2_RELEASES[release_name]
    assert detect_ltx2_release(file_name).name == release_name
    assert detect_ltx2_release(file_name, release.transformer).name == release_name


def test_configs_win_over_a_contradicting_name():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = detect_ltx2_release("ltx-2.3-22b-distilled.safetensors", LTX2_TRANSFORMER_PRESETS["ltx-2-19b"])
    assert found.version == "2.0"
    assert detect_ltx2_release("my-model.safetensors") is None
    with pytest.warns(UserWarning, match="does not say which"):
        assert detect_ltx2_release("folder", LTX2_TRANSFORMER_PRESETS["ltx-2.3-22b"]).name == "ltx-2.3-22b-dev"


@pytest.mark.parametrize("class_name", sorted(LTX2_CONFIG_CLASSES))
def test_configs_round_trip_and_refuse_unknown_keys(class_name):
    cls = LTX2_CONFIG_CLASSES[class_name]
    config = cls().to_dict()
    assert config["_class_name"] == class_name
    assert cls.from_dict({**config, "_diffusers_version": "0.42.1"}) == cls()
    with pytest.raises(ValueError, match="unknown config keys"):
        cls.from_dict({**config, "a_new_switch": True})


def test_bad_values_are_refused_in_one_line():
    with pytest.raises(ValueError, match="rope_type='complex' is not supported"):
        LTX2TransformerConfig(rope_type="complex")
    with pytest.raises(ValueError, match="num_layers=0"):
        LTX2TransformerConfig(num_layers=0)
    with pytest.raises(ValueError, match="upsample_type entry 'bogus'"):
        LTX2VideoVAEConfig(upsample_type=("bogus",))


def test_defaults_are_checked_against_the_record():
    release = LTX2_RELEASES["ltx-2-19b-distilled"]
    assert release.defaults.sigmas[0] == 1.0 and release.defaults.stage_2_sigmas[0] == 0.909375
    bad = dataclasses.replace(release, defaults=dataclasses.replace(
        release.defaults, sigmas=(1.0, 0.5, 0.7), video=dataclasses.replace(release.defaults.video, stg_blocks=(48,))))
    problems = " ".join(ltx2_release_problems(bad))
    assert "do not decrease" in problems and "3 sigmas for 8 steps" in problems and "block(s) [48]" in problems
