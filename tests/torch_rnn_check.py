#!/usr/bin/python3
"""PyTorch side of the parity tests in tests/recurrent_layers_test.cc.

Reads DIR/manifest.json, a list of cases, and the raw little-endian float32 files each names
(DIR/<case>_<tensor>.bin). Per case it builds torch.nn.RNN (tanh or relu), LSTM or GRU with
batch_first=True (one layer, one direction), or torch.nn.Embedding, in float64, loads psgrid's
parameters by name with load_state_dict(strict=True), runs the forward pass on x, takes
y = every step's output (return_sequences) or the last step's, backpropagates the given upstream
gradient dy (full backpropagation through time) and writes, as float32:
  DIR/<case>_out_y.bin, DIR/<case>_out_dx.bin (recurrent layers) and
  DIR/<case>_out_grad_<parameter>.bin for every parameter.
"""
import json
import os
import sys

import numpy as np
import torch


def read(d, name, shape):
    data = np.fromfile(os.path.join(d, name + ".bin"), dtype=np.float32)
    return torch.from_numpy(data.reshape(shape)).double()


def write(d, name, t):
    t.detach().numpy().astype(np.float32).ravel().tofile(os.path.join(d, name + ".bin"))


def run_case(d, c):
    name = c["name"]
    if c["type"] == "embedding":
        m = torch.nn.Embedding(c["vocab"], c["units"]).double()
        m.load_state_dict({"weight": read(d, name + "_weight", [c["vocab"], c["units"]])},
                          strict=True)
        ids = read(d, name + "_x", c["x_shape"]).long()
        y = m(ids)
        y.backward(read(d, name + "_dy", list(y.shape)))
        write(d, name + "_out_y", y)
        write(d, name + "_out_grad_weight", m.weight.grad)
        return
    size, hidden = c["input_size"], c["units"]
    if c["type"] == "rnn":
        m = torch.nn.RNN(size, hidden, nonlinearity=c["activation"], batch_first=True)
    elif c["type"] == "lstm":
        m = torch.nn.LSTM(size, hidden, batch_first=True)
    else:
        m = torch.nn.GRU(size, hidden, batch_first=True)
    m = m.double()
    state = {p["name"]: read(d, name + "_" + p["name"], p["shape"]) for p in c["params"]}
    m.load_state_dict(state, strict=True)
    x = read(d, name + "_x", c["x_shape"]).requires_grad_(True)
    out, _ = m(x)
    y = out if c["return_sequences"] else out[:, -1, :]
    y.backward(read(d, name + "_dy", list(y.shape)))
    write(d, name + "_out_y", y)
    write(d, name + "_out_dx", x.grad)
    named = dict(m.named_parameters())
    for p in c["params"]:
        write(d, name + "_out_grad_" + p["name"], named[p["name"]].grad)


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "manifest.json")) as f:
        cases = json.load(f)["cases"]
    for c in cases:
        run_case(d, c)


if __name__ == "__main__":
    main()
