#!/usr/bin/python3
"""PyTorch side of tests/torch_reference_test.cc.

Reads DIR/manifest.json (layers, loss, tensor shapes) and the raw little-endian float32 files it
names, builds the equivalent torch.nn.Sequential, loads psgrid's parameters with
load_state_dict(strict=True), runs forward, loss and backward in float64, and writes
DIR/loss.txt and DIR/grads.bin (the gradients in state-dict order, float32).
With "optimizer" in the manifest it instead applies torch.optim.<class>(**kwargs) with the given gradient
sequence and writes DIR/weights.bin.
"""
import json
import os
import sys

import numpy as np
import torch


def read(d, name, shape, dtype=np.float32):
    return torch.from_numpy(np.fromfile(os.path.join(d, name + ".bin"), dtype=dtype).reshape(shape))


def build(layers, in_features):
    mods, width = [], in_features
    for layer in layers:
        t = layer["type"]
        if t == "dense":
            mods.append(torch.nn.Linear(width, layer["units"]))
            width = layer["units"]
        else:
            mods.append({"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[t]())
    return torch.nn.Sequential(*mods)


def gradients(d, m):
    x = read(d, "x", m["x_shape"]).double()
    model = build(m["layers"], m["x_shape"][1]).double()
    state = {p["name"]: read(d, "param_" + p["name"], p["shape"]).double() for p in m["params"]}
    model.load_state_dict(state, strict=True)
    out = model(x)
    if m["loss"] == "softmax_cross_entropy":
        labels = read(d, "labels", [m["x_shape"][0]], np.int32).long()
        loss = torch.nn.functional.cross_entropy(out, labels)
    else:
        loss = torch.nn.functional.mse_loss(out, read(d, "targets", list(out.shape)).double())
    loss.backward()
    named = dict(model.named_parameters())
    grads = [named[p["name"]].grad.numpy().astype(np.float32).ravel() for p in m["params"]]
    np.concatenate(grads).tofile(os.path.join(d, "grads.bin"))
    with open(os.path.join(d, "loss.txt"), "w") as f:
        f.write(repr(loss.item()))


def optimizer_steps(d, m):
    o = m["optimizer"]
    w = torch.nn.Parameter(read(d, "w", [m["n"]]).double())
    kwargs = dict(o["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    opt = getattr(torch.optim, o["class"])([w], **kwargs)
    sched = None
    if "scheduler" in o:
        sched = getattr(torch.optim.lr_scheduler, o["scheduler"]["class"])(
            opt, **o["scheduler"]["kwargs"])
    grads = read(d, "g", [o["steps"], m["n"]]).double()
    for s in range(o["steps"]):
        w.grad = grads[s].clone()
        if "clip_norm" in o:
            torch.nn.utils.clip_grad_norm_([w], o["clip_norm"])
        opt.step()
        if sched is not None:
            sched.step()
    w.detach().numpy().astype(np.float32).tofile(os.path.join(d, "weights.bin"))


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "manifest.json")) as f:
        m = json.load(f)
    if "optimizer" in m:
        optimizer_steps(d, m)
    else:
        gradients(d, m)


if __name__ == "__main__":
    main()
