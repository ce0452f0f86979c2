#!/usr/bin/python3
"""PyTorch side of tests/conv_layers_test.cc (the TorchConvParity tests).

Reads DIR/manifest.json, a list of cases, each
  {"name": N, "op": "conv2d" | "max_pool2d" | "avg_pool2d", "x_shape": [B, C, H, W],
   conv2d: "w_shape": [F, C, k, k], "bias": bool, "stride": s, "padding": p;
   pooling: "size": k, "stride": s}
with the raw little-endian float32 inputs DIR/N_x.bin, DIR/N_dy.bin (upstream gradient of the
output) and, for conv2d, DIR/N_w.bin and DIR/N_b.bin. Runs torch.nn.functional's op forward
and backward in float64 and writes DIR/N_y.bin, DIR/N_dx.bin and, for conv2d, DIR/N_dw.bin
and DIR/N_db.bin (float64), the output and the gradients of sum(y * dy).
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def read(d, name, shape):
    data = np.fromfile(os.path.join(d, name + ".bin"), dtype=np.float32).reshape(shape)
    return torch.from_numpy(data).double()


def write(d, name, t):
    t.detach().numpy().astype(np.float64).tofile(os.path.join(d, name + ".bin"))


def run_case(d, c):
    n = c["name"]
    x = read(d, n + "_x", c["x_shape"]).requires_grad_(True)
    op = c["op"]
    params = []
    if op == "conv2d":
        w = read(d, n + "_w", c["w_shape"]).requires_grad_(True)
        params.append(("dw", w))
        b = None
        if c["bias"]:
            b = read(d, n + "_b", [c["w_shape"][0]]).requires_grad_(True)
            params.append(("db", b))
        y = F.conv2d(x, w, b, stride=c["stride"], padding=c["padding"])
    elif op == "max_pool2d":
        y = F.max_pool2d(x, c["size"], stride=c["stride"])
    elif op == "avg_pool2d":
        y = F.avg_pool2d(x, c["size"], stride=c["stride"])
    else:
        raise ValueError("unknown op " + op)
    dy = read(d, n + "_dy", list(y.shape))
    y.backward(dy)
    write(d, n + "_y", y)
    write(d, n + "_dx", x.grad)
    for suffix, p in params:
        write(d, n + "_" + suffix, p.grad)


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "manifest.json")) as f:
        m = json.load(f)
    torch.set_num_threads(1)
    for c in m["cases"]:
        run_case(d, c)


if __name__ == "__main__":
    main()
