"""Lazy, memory-mapped reading of safetensors files (single or sharded), with bf16 support.

The format is an 8-byte little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets}}`` and
the raw bytes. We parse it ourselves (rather than ``safetensors.safe_open(framework="np")``) because numpy has no
bfloat16: we map BF16/F8 to ``ml_dtypes`` so a bf16 checkpoint is read as bf16 without a float32 copy. Tensors are
views into a memory map until they are cast, so a whole model never sits in host memory twice. Nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from typing import Iterator, Mapping

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def _is_entry(entry) -> bool:
    """Whether a header entry is ``{"dtype": str, "shape": [int, ...], "data_offsets": [begin, end]}``."""
    ints = lambda values: isinstance(values, list) and all(  # noqa: E731
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
    return (isinstance(entry, dict) and isinstance(entry.get("dtype"), str) and ints(entry.get("shape"))
            and ints(entry.get("data_offsets")) and len(entry["data_offsets"]) == 2
            and entry["data_offsets"][0] <= entry["data_offsets"][1])


class CheckpointError(ValueError):
    """A checkpoint file or folder cannot be read or does not fit the model; the message says what to fix."""


class SafetensorsFile:
    """One safetensors file, opened lazily: ``keys()``, ``shape(k)``, ``read(k)`` and the ``metadata`` dict."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as e:
            raise CheckpointError(f"Cannot open checkpoint file {self.path}: {e}") from e
        size = os.fstat(self._file.fileno()).st_size
        raw = self._file.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{self.path} is not a safetensors file: it is {size} bytes long, "
                                  "too short for a header.")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > min(size - 8, _MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{self.path} is not a safetensors file (header length {header_len} does not fit a {size}-byte file). "
                "Only .safetensors checkpoints are read; convert .bin/.pt files with safetensors first."
            )
        try:
            header = json.loads(self._file.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.path} is not a safetensors file: its header is not JSON ({e}).") from e
        if not isinstance(header, dict):
            raise CheckpointError(f"{self.path} is not a safetensors file: its header is not a JSON object.")
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        if not isinstance(self.metadata, dict):
            raise CheckpointError(f"{self.path} is not a safetensors file: its __metadata__ is not a JSON object.")
        self._data_start = 8 + header_len
        self._entries = header
        data_len = size - self._data_start
        for name, entry in header.items():
            if not _is_entry(entry):
                raise CheckpointError(f"{self.path} is not a safetensors file: its header's entry {name!r} is not "
                                      "{dtype, shape, data_offsets}.")
            begin, end = entry["data_offsets"]
            if end > data_len:
                raise CheckpointError(
                    f"{self.path} is truncated: tensor {name!r} ends at byte {end} of the data section, which holds "
                    f"only {data_len} bytes. Download or copy the file again."
                )
            if entry["dtype"] not in _DTYPES:
                raise CheckpointError(f"{self.path}: tensor {name!r} has unsupported dtype {entry['dtype']}.")
            if end - begin != math.prod(entry["shape"]) * _DTYPES[entry["dtype"]].itemsize:
                raise CheckpointError(f"{self.path} is not a safetensors file: tensor {name!r} of shape "
                                      f"{entry['shape']} has {end - begin} bytes of {entry['dtype']}.")
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size > 0 else None

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._entries[key]["shape"])

    def dtype(self, key: str) -> np.dtype:
        return _DTYPES[self._entries[key]["dtype"]]

    def read(self, key: str) -> np.ndarray:
        """A read-only view of the tensor in the memory map (no copy)."""
        entry = self._entries[key]
        begin, end = entry["data_offsets"]
        dtype = _DTYPES[entry["dtype"]]
        count = (end - begin) // dtype.itemsize
        array = np.frombuffer(self._map, dtype=dtype, count=count, offset=self._data_start + begin)
        return array.reshape(entry["shape"])

    def release(self, key: str) -> None:
        """Lets the OS drop this process's mapped pages of ``key`` once it has been converted, so a whole checkpoint
        never counts in the resident memory at once; a view that is touched again reads the file again."""
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        begin, end = self._entries[key]["data_offsets"]
        start = (self._data_start + begin) // mmap.PAGESIZE * mmap.PAGESIZE
        if self._data_start + end > start:
            try:
                self._map.madvise(mmap.MADV_DONTNEED, start, self._data_start + end - start)
            except OSError:  # an advice, never an error
                pass

    def close(self):
        # Views handed out by read() keep the map alive through the buffer protocol; closing would break them,
        # so we only drop our references and let the garbage collector release the mapping.
        self._map = None
        self._file.close()


class TensorSource(Mapping[str, np.ndarray]):
    """A read-only mapping ``key -> np.ndarray`` over one or more safetensors files, read on access."""

    def __init__(self, files: list[SafetensorsFile]):
        self.files = files
        self._where: dict[str, SafetensorsFile] = {}
        for f in files:
            for k in f.keys():
                if k in self._where:
                    raise CheckpointError(f"Tensor {k!r} appears in both {self._where[k].path} and {f.path}.")
                self._where[k] = f

    def __getitem__(self, key: str) -> np.ndarray:
        return self._where[key].read(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._where[key].shape(key)

    def dtype(self, key: str) -> np.dtype:
        return self._where[key].dtype(key)

    def release(self, key: str) -> None:
        self._where[key].release(key)

    @property
    def metadata(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for f in self.files:
            merged.update(f.metadata)
        return merged


def open_safetensors(path: str | os.PathLike) -> TensorSource:
    """Opens a .safetensors file, a sharded ``*.safetensors.index.json``, or a folder holding either."""
    path = os.fspath(path)
    if os.path.isdir(path):
        indexes = sorted(f for f in os.listdir(path) if f.endswith(".safetensors.index.json"))
        if indexes:
            if len(indexes) > 1:
                raise CheckpointError(f"{path} holds several shard indexes {indexes}; keep one.")
            return open_safetensors(os.path.join(path, indexes[0]))
        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        if not files:
            others = sorted(f for f in os.listdir(path) if f.endswith((".bin", ".pt", ".pth", ".ckpt")))
            hint = (f" It holds {others}: pickled checkpoints are never loaded; convert them to safetensors."
                    if others else "")
            raise CheckpointError(f"No .safetensors file in {path}.{hint}")
        if len(files) > 1:
            raise CheckpointError(
                f"{path} holds several .safetensors files {files} but no *.safetensors.index.json naming the shards."
            )
        return TensorSource([SafetensorsFile(os.path.join(path, files[0]))])
    if path.endswith(".index.json"):
        return _open_shards(path)
    if not os.path.exists(path):
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    return TensorSource([SafetensorsFile(path)])


def _read_weight_map(path: str) -> dict[str, str]:
    """The ``weight_map`` of a shard index (tensor name -> shard file name), checked to be one."""
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"Cannot read shard index {path}: {e}") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"Shard index {path} is not a safetensors index: it needs a \"weight_map\" object of "
                              "tensor name -> shard file name.")
    for key, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise CheckpointError(f"Shard index {path}: the weight_map entry {key!r} is {shard!r}, not a shard's file "
                                  "name.")
    return weight_map


def _shard_roots(folder: str) -> list[str]:
    """Where a shard may lie once links are resolved: the index's folder; and, in a huggingface_hub cache snapshot
    (``models--org--name/snapshots/<revision>/...``, whose files are links into the repository's ``blobs/``), that
    ``blobs/`` folder."""
    roots = [os.path.realpath(folder)]
    parts = os.path.abspath(folder).split(os.sep)
    if "snapshots" in parts:
        at = len(parts) - 1 - parts[::-1].index("snapshots")
        blobs = os.sep.join(parts[:at] + ["blobs"])
        if os.path.isdir(blobs):
            roots.append(os.path.realpath(blobs))
    return roots


def _open_shards(path: str) -> TensorSource:
    """The shards a ``*.safetensors.index.json`` names, each confined to the index's folder (links resolved)."""
    weight_map = _read_weight_map(path)
    folder = os.path.dirname(os.path.abspath(path))
    roots = _shard_roots(folder)
    shard_names = sorted(set(weight_map.values()))
    for name in shard_names:
        parts = name.replace("\\", "/").split("/")
        inside = not os.path.isabs(name) and ".." not in parts and "\0" not in name
        target = os.path.realpath(os.path.join(folder, name)) if inside else ""
        if not inside or not any(os.path.commonpath([target, root]) == root for root in roots):
            raise CheckpointError(f"Shard index {path} names the shard {name!r}, which is not a file in the index's "
                                  "folder; shards are read from beside their index only.")
    missing = [s for s in shard_names if not os.path.isfile(os.path.join(folder, s))]
    if missing:
        raise CheckpointError(f"Shard index {path} names files that are missing beside it: {missing}.")
    source = TensorSource([SafetensorsFile(os.path.join(folder, s)) for s in shard_names])
    unlisted = sorted(set(source) ^ set(weight_map))
    if unlisted:
        raise CheckpointError(f"Shard index {path} and the shards disagree on these keys: {unlisted[:10]}.")
    return source
