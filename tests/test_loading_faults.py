"""Checkpoints, hub ids, tokenizers, configs and training data that are not what they claim fail in one line that
names the file or field and the fix, before anything expensive (issue 21, items 7, 9 and 10). All in process, no
network (huggingface_hub is monkeypatched), no model is built."""

from __future__ import annotations

import json
import logging
import os
import types

import numpy as np
import pytest
from safetensors.numpy import save_file

import huggingface_hub
from ltx_jax.configs import LatentUpsamplerConfig, T5Config, TransformerConfig, VAEConfig
from ltx_jax.pipelines.hub import hub_reference, resolve_path
from ltx_jax.releases import LATENT_UPSAMPLER_PRESETS, T5_PRESETS, TRANSFORMER_PRESETS, VAE_PRESETS
from ltx_jax.text_encoding import load_tokenizer
from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER, TINY_UPSAMPLER, TINY_VAE, write_tiny_tokenizer
from ltx_jax.training.data import Loader
from weight_conversion import load_vae, read_vae_config
from weight_conversion.safetensors_io import CheckpointError, open_safetensors

# ------------------------------------------------------------------------------------------------- shard indexes


def _index(folder, weight_map) -> str:
    path = os.path.join(folder, "model.safetensors.index.json")
    with open(path, "w") as f:
        json.dump({"weight_map": weight_map} if not isinstance(weight_map, str) else json.loads(weight_map), f)
    return path


@pytest.fixture
def checkpoint(tmp_path):
    """ckpt/a.safetensors (tensor "a") and, outside it, secret/b.safetensors (tensor "b")."""
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "secret").mkdir()
    save_file({"a": np.zeros(2, np.float32)}, tmp_path / "ckpt" / "a.safetensors")
    save_file({"b": np.ones(2, np.float32)}, tmp_path / "secret" / "b.safetensors")
    return tmp_path


@pytest.mark.parametrize("shard", ["../secret/b.safetensors", "ABSOLUTE", "link/b.safetensors", "b-link.safetensors"])
def test_a_shard_outside_the_index_folder_is_refused_by_name(checkpoint, shard):
    """Relative escapes, absolute paths, a linked folder and a linked file leading out are all refused, naming the
    entry and not where it leads."""
    (checkpoint / "ckpt" / "link").symlink_to(checkpoint / "secret", target_is_directory=True)
    (checkpoint / "ckpt" / "b-link.safetensors").symlink_to(checkpoint / "secret" / "b.safetensors")
    shard = str(checkpoint / "secret" / "b.safetensors") if shard == "ABSOLUTE" else shard
    index = _index(checkpoint / "ckpt", {"a": "a.safetensors", "b": shard})
    with pytest.raises(CheckpointError, match="not a file in the index's folder") as e:
        open_safetensors(index)
    print(f"\n[shard {shard}] {e.value}")
    assert repr(shard) in str(e.value) and str(e.value).count("secret") <= int("secret" in shard)


def test_a_missing_shard_is_named_as_written(checkpoint):
    index = _index(checkpoint / "ckpt", {"a": "a.safetensors", "b": "gone.safetensors"})
    with pytest.raises(CheckpointError, match=r"missing beside it: \['gone.safetensors'\]"):
        open_safetensors(index)


@pytest.mark.parametrize("index, wanted", [
    ('{"weight_map": ["a.safetensors"]}', "needs a \"weight_map\" object"),
    ('[1, 2]', "needs a \"weight_map\" object"),
    ('{"weight_map": {"a": 3}}', "entry 'a' is 3"),
    ('{"weight_map": {"a": null}}', "entry 'a' is None"),
    ('{"weight_map": {}}', "needs a \"weight_map\" object"),
])
def test_a_malformed_shard_index_is_one_line(checkpoint, index, wanted):
    with pytest.raises(CheckpointError, match=wanted):
        open_safetensors(_index(checkpoint / "ckpt", index))


def test_a_hub_cache_snapshot_with_linked_shards_loads(tmp_path):
    """huggingface_hub's cache links every snapshot file to ``blobs/``: those links stay allowed."""
    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "0123abc" / "transformer"
    snapshot.mkdir(parents=True)
    save_file({"a": np.zeros(2, np.float32)}, repo / "blobs" / "hash-a")
    (snapshot / "a.safetensors").symlink_to("../../../blobs/hash-a")
    assert sorted(open_safetensors(_index(snapshot, {"a": "a.safetensors"}))) == ["a"]


# ------------------------------------------------------------------------------------------------- hub ids

# A repository laid out as Lightricks/LTX-Video is: the diffusers folders plus many multi-GB single files at the root.
LTX_VIDEO_FILES = {
    "model_index.json": 500, "README.md": 9_000, "ltx-video-2b-v0.9.safetensors": 9_370_000_000,
    "ltxv-13b-0.9.8-dev.safetensors": 28_600_000_000, "ltxv-2b-0.9.8-distilled.safetensors": 6_340_000_000,
    "scheduler/scheduler_config.json": 400, "text_encoder/config.json": 800,
    "text_encoder/model-00001-of-00002.safetensors": 4_990_000_000,
    "text_encoder/model-00002-of-00002.safetensors": 4_530_000_000,
    "text_encoder/model.safetensors.index.json": 20_000, "text_encoder/pytorch_model.bin": 9_500_000_000,
    "tokenizer/spiece.model": 792_000, "tokenizer/tokenizer_config.json": 20_000,
    "tokenizer/special_tokens_map.json": 2_000, "transformer/config.json": 600,
    "transformer/diffusion_pytorch_model.safetensors": 3_850_000_000, "vae/config.json": 1_000,
    "vae/diffusion_pytorch_model.safetensors": 1_680_000_000, "media/ltx-video.gif": 20_000_000,
}
LAYOUT = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
          "text_encoder/model-00001-of-00002.safetensors", "text_encoder/model-00002-of-00002.safetensors",
          "text_encoder/model.safetensors.index.json", "tokenizer/spiece.model", "tokenizer/tokenizer_config.json",
          "tokenizer/special_tokens_map.json", "transformer/config.json",
          "transformer/diffusion_pytorch_model.safetensors", "vae/config.json",
          "vae/diffusion_pytorch_model.safetensors"]


@pytest.fixture
def hub(monkeypatch, caplog, tmp_path):
    """huggingface_hub with a fake repository listing (``hub.files``) and recorded downloads (``hub.calls``: the
    call, its arguments and the log lines said before it)."""
    state = types.SimpleNamespace(files=dict(LTX_VIDEO_FILES), calls=[], offline=False, cached=True)

    class FakeApi:
        def model_info(self, repo_id, files_metadata=False, **kwargs):
            assert files_metadata, "the sizes come with files_metadata=True"
            if state.offline:
                raise huggingface_hub.errors.OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
            if repo_id != "Lightricks/LTX-Video":
                error = huggingface_hub.errors.RepositoryNotFoundError  # its __init__ wants an HTTP response
                raise error.__new__(error)
            siblings = [types.SimpleNamespace(rfilename=f, size=n) for f, n in state.files.items()]
            return types.SimpleNamespace(siblings=siblings, sha="c0ffee")

    def record(name):
        def download(*args, **kwargs):
            said = [r.getMessage() for r in caplog.records if r.name == "ltx_jax"]
            state.calls.append((name, args, kwargs, said))
            if kwargs.get("local_files_only") and not state.cached:
                raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache")
            return str(tmp_path)
        return download

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", record("snapshot_download"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", record("hf_hub_download"))
    caplog.set_level(logging.WARNING, logger="ltx_jax")
    return state


def test_a_hub_id_fetches_the_diffusers_layout_only_and_says_its_size_first(hub):
    resolve_path("Lightricks/LTX-Video")
    (name, args, kwargs, said), = hub.calls
    assert name == "snapshot_download" and args == ("Lightricks/LTX-Video",) and kwargs["revision"] == "c0ffee"
    assert sorted(kwargs["allow_patterns"]) == sorted(LAYOUT)  # no single file, no .bin, no media
    total = sum(LTX_VIDEO_FILES[f] for f in LAYOUT) / 1e9
    print(f"\n[hub layout] {said[-1]}")
    assert said and f"{len(LAYOUT)} files, {total:,.2f} GB" in said[-1]


def test_a_hub_file_name_fetches_that_one_file(hub):
    resolve_path("Lightricks/LTX-Video/ltxv-2b-0.9.8-distilled.safetensors")
    (name, args, kwargs, said), = hub.calls
    assert (name, args) == ("hf_hub_download", ("Lightricks/LTX-Video", "ltxv-2b-0.9.8-distilled.safetensors"))
    print(f"\n[hub file] {said[-1]}")
    assert "1 file, 6.34 GB" in said[-1]


def test_a_hub_repository_without_a_layout_lists_its_single_files(hub):
    for f in [f for f in hub.files if "/" in f or f == "model_index.json"]:
        del hub.files[f]
    with pytest.raises(CheckpointError, match="no diffusers layout") as e:
        resolve_path("Lightricks/LTX-Video")
    print(f"\n[hub no layout] {e.value}")
    assert "Lightricks/LTX-Video/ltxv-2b-0.9.8-distilled.safetensors (6.34 GB)" in str(e.value) and not hub.calls


def test_a_missing_hub_file_or_repository_is_one_line(hub):
    with pytest.raises(CheckpointError, match="has no file ltxv-9b.safetensors; its single files: .*ltxv-13b"):
        resolve_path("Lightricks/LTX-Video/ltxv-9b.safetensors")
    with pytest.raises(CheckpointError, match="no repository Lightricks/Nothing"):
        resolve_path("Lightricks/Nothing")
    assert not hub.calls


def test_offline_a_hub_id_is_taken_from_the_cache_or_refused_in_one_line(hub):
    hub.offline = True
    resolve_path("Lightricks/LTX-Video")
    assert [(name, kwargs) for name, _, kwargs, _ in hub.calls] == [("snapshot_download", {"local_files_only": True})]
    hub.cached = False
    with pytest.raises(CheckpointError, match="cannot be reached .* the local cache does not hold it"):
        resolve_path("Lightricks/LTX-Video/ltxv-2b-0.9.8-distilled.safetensors")


def test_generate_takes_a_hub_file_name_and_asks_for_its_text_encoder_first(tmp_path, capsys):
    from ltx_jax.__main__ import main

    code = main(["ltx_jax", "generate", "--model", "Lightricks/LTX-Video/ltxv-2b-0.9.8-distilled.safetensors",
                 "--prompt", "a fox", "--output", str(tmp_path / "fox.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is a single file without the T5 text encoder; pass --text_encoder" in err, err


@pytest.mark.parametrize("path, reference", [
    ("Lightricks/LTX-Video", ("Lightricks/LTX-Video", None)),
    ("Lightricks/LTX-Video/ltxv-2b-0.9.8-distilled.safetensors",
     ("Lightricks/LTX-Video", "ltxv-2b-0.9.8-distilled.safetensors")),
    ("checkpoints/ltxv.safetensors", None),  # a missing local file, not a repository
    ("org/name/../x.safetensors", None),
    ("org/name/notes.txt", None),
    ("./org/name", None),
])
def test_hub_references(path, reference):
    assert hub_reference(path) == reference


# ------------------------------------------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory) -> dict:
    folder = write_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")
    return {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)}


def _root(tmp_path, files: dict) -> str:
    (tmp_path / "text_encoder").mkdir()
    if files is not None:
        (tmp_path / "tokenizer").mkdir()
        for name, data in files.items():
            (tmp_path / "tokenizer" / name).write_bytes(data)
    return str(tmp_path)


def test_a_missing_tokenizer_folder_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="has no tokenizer/ folder beside its text_encoder/"):
        load_tokenizer(_root(tmp_path, None))


@pytest.mark.parametrize("fault, wanted", [
    ("corrupt spiece.model", r"spiece.model is unreadable: its 70 bytes are not a sentencepiece model"),
    ("no spiece.model", "has neither spiece.model nor tokenizer.json"),
    ("no tokenizer_config.json", "has no tokenizer_config.json"),
    ("corrupt tokenizer_config.json", r"tokenizer_config.json is unreadable"),
])
def test_a_missing_or_unreadable_tokenizer_file_is_named(tmp_path, tokenizer_files, fault, wanted):
    files = dict(tokenizer_files)
    what, name = fault.split(" ", 1)
    if what == "no":
        del files[name]
    else:
        files[name] = b"x" * 70
    with pytest.raises(CheckpointError, match=wanted) as e:
        load_tokenizer(_root(tmp_path, files))
    print(f"\n[tokenizer: {fault}] {e.value}")


def test_a_whole_tokenizer_loads(tmp_path, tokenizer_files):
    assert load_tokenizer(_root(tmp_path, tokenizer_files)).eos_token_id == 1


# ------------------------------------------------------------------------------------------------- config ranges


@pytest.mark.parametrize("cls, changes, wanted", [
    (VAEConfig, dict(patch_size=0), "patch_size=0; must be an int >= 1"),
    (VAEConfig, dict(upsample_factor=(2, 0, 1, 1)), r"upsample_factor=\(2, 0, 1, 1\); each entry must be"),
    (VAEConfig, dict(block_out_channels=(128, -1, 512, 512)), "block_out_channels="),
    (VAEConfig, dict(latent_channels=0), "latent_channels=0"),
    (VAEConfig, dict(scaling_factor=0.0), "scaling_factor=0.0; must be a number > 0"),
    (VAEConfig, dict(spatial_compression_ratio=0), "spatial_compression_ratio=0"),
    (VAEConfig, dict(spatio_temporal_scaling=(True, True)), "spatio_temporal_scaling has 2 entries, 4 wanted"),
    (VAEConfig, dict(layers_per_block=(4, 3, 3, 3)), "layers_per_block has 4 entries, 5 wanted"),
    (VAEConfig, dict(decoder_block_out_channels=()), "decoder_block_out_channels has 0 entries, 1 wanted"),
    (TransformerConfig, dict(num_layers=0), "num_layers=0"),
    (TransformerConfig, dict(patch_size=0), "patch_size=0"),
    (TransformerConfig, dict(norm_eps=-1.0), "norm_eps=-1.0; must be a number >= 0"),
    (T5Config, dict(relative_attention_num_buckets=2), "relative_attention_num_buckets=2"),
    (T5Config, dict(relative_attention_num_buckets=32, relative_attention_max_distance=8), "max_distance=8"),
    (T5Config, dict(num_heads=0), "num_heads=0"),
    (LatentUpsamplerConfig, dict(mid_channels=0), "mid_channels=0"),
    (LatentUpsamplerConfig, dict(num_blocks_per_stage=-1), "num_blocks_per_stage=-1"),
])
def test_configs_check_their_ranges(cls, changes, wanted):
    with pytest.raises(ValueError, match=wanted) as e:
        cls(**changes)
    assert "\n" not in str(e.value) and cls.__name__ in str(e.value)


def test_released_and_tiny_configs_are_in_range():
    configs = [*TRANSFORMER_PRESETS.values(), *VAE_PRESETS.values(), *T5_PRESETS.values(),
               *LATENT_UPSAMPLER_PRESETS.values(), TINY_T5, TINY_TRANSFORMER, TINY_VAE, TINY_UPSAMPLER]
    for config in configs:
        assert type(config)(**{f: getattr(config, f) for f in config.__dataclass_fields__}) == config


def test_a_vae_with_patch_size_0_fails_in_the_loaders_by_file_and_field(tmp_path):
    """A diffusers vae/config.json and a single file's metadata, through read_vae_config and load_vae."""
    folder = tmp_path / "vae"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**TINY_VAE.to_dict(), "patch_size": 0}))
    save_file({"x": np.zeros(1, np.float32)}, folder / "diffusion_pytorch_model.safetensors")
    single = tmp_path / "ltxv.safetensors"
    metadata = {"config": json.dumps({"vae": {**TINY_VAE.to_dict(), "patch_size": 0}})}
    save_file({"vae.x": np.zeros(1, np.float32)}, single, metadata=metadata)
    for path, file in [(tmp_path, folder / "config.json"), (single, single)]:
        for read in (read_vae_config, load_vae):
            with pytest.raises(CheckpointError, match="patch_size=0; must be an int >= 1") as e:
                read(path)
            assert str(file) in str(e.value), e.value
    print(f"\n[vae patch_size 0] {e.value}")


# ------------------------------------------------------------------------------------------------- training data


@pytest.fixture
def fake_sample(tmp_path):
    """A folder with one good sample and one *.latents.safetensors file that is not one of ours."""
    data = tmp_path / "data"
    data.mkdir()
    save_file({"latents": np.zeros((2, 2, 3, 8), np.float32), "prompt_embeds": np.zeros((4, 16), np.float32),
               "prompt_attention_mask": np.ones(4, np.int32)}, data / "good.latents.safetensors",
              metadata={"fps": "24"})
    return data


@pytest.mark.parametrize("fault, wanted", [
    ("other tensors", "it has no latents or prompt_embeds or prompt_attention_mask tensor"),
    ("not safetensors", "too short for a header"),
    ("wrong ranks", r"its tensors are latents \[2, 3\]"),
])
def test_a_file_that_is_not_a_sample_is_named_by_the_loader(fake_sample, fault, wanted):
    bad = fake_sample / "bad.latents.safetensors"
    if fault == "other tensors":
        save_file({"x": np.zeros(2, np.float32)}, bad)
    elif fault == "not safetensors":
        bad.write_bytes(b"junk")
    else:
        save_file({"latents": np.zeros((2, 3), np.float32), "prompt_embeds": np.zeros((4, 16), np.float32),
                   "prompt_attention_mask": np.ones(4, np.int32)}, bad)
    with pytest.raises(ValueError, match=wanted) as e:
        Loader(str(fake_sample), batch_size=1)
    assert str(bad) in str(e.value) and "preprocess" in str(e.value)
    print(f"\n[data: {fault}] {e.value}")
    bad.unlink()
    batch = next(Loader(str(fake_sample), batch_size=1).batches())  # the good one still reads
    assert batch.prompt_embeds.shape == (1, 4, 16)


def test_train_with_a_fake_sample_exits_2_with_one_line(fake_sample, tmp_path, capsys):
    from ltx_jax.training.cli import main

    save_file({"x": np.zeros(2, np.float32)}, fake_sample / "bad.latents.safetensors")
    code = main(["ltx_jax", "train", "--data", str(fake_sample), "--model", "unused", "--output",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    print(f"\n[train --data] exit {code}: {err}")
    assert code == 2 and err.startswith("error: ") and "bad.latents.safetensors" in err and "\n" not in err
