#!/usr/bin/python3
"""Loads a psgrid safetensors export into torch.nn.Sequential (load_state_dict strict=True)
and prints its test accuracy on an MNIST-format test set, for tests/export_test.cc.

  torch_export_check.py FILE.safetensors DATA_DIR LAYERS_JSON
  LAYERS_JSON: [["dense", 32], ["relu", 0], ["dense", 10]]

The file is parsed by hand (8-byte little-endian header length, JSON header, raw data), so the
check needs no safetensors package: it checks the format's rules as it goes.
"""
import gzip
import json
import struct
import sys

import numpy as np
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0, "header length is not a multiple of 8"
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    tensors, end = {}, 0
    for name, info in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                             key=lambda kv: kv[1]["data_offsets"][0]):
        assert info["dtype"] == "F32", name
        begin, stop = info["data_offsets"]
        assert begin == end, f"{name}: gap or overlap at {begin}"
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        assert stop - begin == 4 * count, f"{name}: offsets do not fit the shape"
        tensors[name] = torch.from_numpy(
            np.frombuffer(data[begin:stop], dtype="<f4").reshape(info["shape"]).copy())
        end = stop
    assert end == len(data), "bytes after the last tensor"
    return tensors


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return np.frombuffer(raw[4 + 4 * dims:], dtype=np.uint8).reshape(shape)


def main():
    path, data_dir, layers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    modules, width = [], 28 * 28
    for kind, units in layers:
        if kind == "dense":
            modules.append(torch.nn.Linear(width, units))
            width = units
        else:
            modules.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh,
                            "sigmoid": torch.nn.Sigmoid}[kind]())
    model = torch.nn.Sequential(*modules)
    model.load_state_dict(read_safetensors(path), strict=True)
    images = idx(data_dir + "/t10k-images-idx3-ubyte.gz").reshape(-1, 28 * 28)
    labels = idx(data_dir + "/t10k-labels-idx1-ubyte.gz")
    with torch.no_grad():
        x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0))
        predicted = model(x).argmax(dim=1).numpy()
    print(json.dumps({"test_accuracy": float((predicted == labels).mean())}))


if __name__ == "__main__":
    main()
