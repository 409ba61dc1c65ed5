#!/usr/bin/env python3
"""Writes a safetensors file's tensors as a PyTorch `pytorch_model.bin` (the zip format
`torch.save` writes since PyTorch 1.6), without PyTorch: for testing the loader of the
checkpoints that ship only a `pytorch_model.bin`.

  pytorch_bin.py IN.safetensors OUT.bin [--dtype f32|f16]

The archive holds `archive/data.pkl` — a pickled `OrderedDict` of tensors, each rebuilt by
`torch._utils._rebuild_tensor_v2` from a persistent storage id, as torch pickles them —
`archive/data/N` (each tensor's raw little-endian storage), `archive/version` and
`archive/byteorder`. Integer tensors are written as int64. Only numpy and the standard library.
"""
import collections
import io
import json
import pickle
import struct
import sys
import types
import zipfile

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}
    out = collections.OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


# Stand-ins for the torch objects a checkpoint's pickle names: pickle records a class or
# function by its module and name, so these pickle exactly as torch's own do.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils
sys.modules.setdefault("torch", torch)
sys.modules.setdefault("torch._utils", torch_utils)


def _rebuild_tensor_v2(*args):
    raise RuntimeError("only for pickling")


_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class FloatStorage:
    pass


class HalfStorage:
    pass


class LongStorage:
    pass


for cls in (FloatStorage, HalfStorage, LongStorage):
    cls.__module__ = "torch"
    setattr(torch, cls.__name__, cls)


class Storage:
    def __init__(self, key, kind, numel):
        self.key, self.kind, self.numel = key, kind, numel


class Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride, step = [], 1
        for size in reversed(self.shape):
            stride.insert(0, step)
            step *= size
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.kind, obj.key, "cpu", obj.numel)
        return None


def write(path, tensors, dtype="f32"):
    floats = (FloatStorage, "<f4") if dtype == "f32" else (HalfStorage, "<f2")
    state, blobs = collections.OrderedDict(), []
    for i, (name, array) in enumerate(tensors.items()):
        # Integer buffers (an old checkpoint's `position_ids`) stay int64.
        kind, np_dtype = (LongStorage, "<i8") if array.dtype.kind == "i" else floats
        data = np.ascontiguousarray(array, dtype=np_dtype)
        state[name] = Tensor(Storage(str(i), kind, data.size), list(data.shape))
        blobs.append((str(i), data.tobytes()))
    buffer = io.BytesIO()
    TorchPickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, blob in blobs:
            archive.writestr(f"archive/data/{key}", blob)
        archive.writestr("archive/version", "3\n")


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--dtype"):
        sys.exit(__doc__)
    write(argv[1], read_safetensors(argv[0]), argv[3] if len(argv) == 4 else "f32")


if __name__ == "__main__":
    main(sys.argv[1:])
