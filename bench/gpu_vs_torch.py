#!/usr/bin/env python3
"""Step time on one GPU: psgrid's CUDA backend (`psgrid local --single-process --backend cuda`)
against PyTorch CUDA (bench/peers/torch_mlp.py --device cuda) on the same GPU, for the MLP of
examples/fmnist_mlp.yaml and the CNN of examples/fmnist_cnn.yaml: batch 64 (--batch: others),
momentum SGD,
float32 on both sides (PyTorch with TF32 off), each batch gathered on the host and copied in.

Each run trains --epochs epochs; the first epoch holds the set-up (CUDA context, cuBLAS and
cuDNN handles, first-launch module loading) and is dropped: a run's rate is the median of its
later epochs' samples/s (psgrid's epoch lines, the peer's epoch_samples_per_s). Runs alternate
between the sides, --repeats per side, and the ratio is of the medians. Needs a CUDA device and
a python3 with a CUDA build of torch (any recent version).

  bench/gpu_vs_torch.py [--data DIR] [--epochs 4] [--repeats 2] [--models mlp,cnn]
                        [--batch 64,512]

--data points both sides at another Fashion-MNIST folder (train-* and t10k-* IDX files).
Prints a markdown table and writes bench/results/gpu_vs_torch.json."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

import benchlib

EPOCH_RATE = re.compile(r"^epoch (\d+)/\d+\s+step \d+ .*samples/s (\d+)", re.M)


def spec_copy(spec, data, batch, tmp):
    """A copy of the spec with its batch size, reading its data from `data` (when not "")."""
    with open(os.path.join(benchlib.ROOT, spec)) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^(\s*batch_size:\s*)\d+", lambda m: m.group(1) + str(batch), text,
                      count=1)
    if n != 1:
        raise RuntimeError("no batch_size line in " + spec)
    if data:
        text, n = re.subn(r"(?m)^(\s*path:\s*).*$", lambda m: m.group(1) + data, text, count=1)
        if n != 1:
            raise RuntimeError("no data path line in " + spec)
    path = os.path.join(tmp, "%d_%s" % (batch, os.path.basename(spec)))
    with open(path, "w") as f:
        f.write(text)
    return path


def steady(rates):
    """The median of the rates after the first epoch."""
    if len(rates) < 2:
        raise RuntimeError("need two epochs or more, got %r" % (rates,))
    return statistics.median(rates[1:])


def gpu_name():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="Fashion-MNIST folder for both sides")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--batch", default="64", help="batch sizes, comma-separated")
    ap.add_argument("--device", default="cuda", help="psgrid's backend and torch's device")
    ap.add_argument("--python", default=sys.executable, help="the python3 that has CUDA torch")
    args = ap.parse_args()
    psgrid = benchlib.psgrid_binary()
    env = dict(os.environ)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch, model in [(int(b), m) for b in args.batch.split(",")
                             for m in args.models.split(",")]:
            spec = spec_copy("examples/fmnist_%s.yaml" % model, args.data, batch, tmp)
            ours, theirs = [], []
            for rep in range(args.repeats):
                for side in (["psgrid", "torch"] if rep % 2 == 0 else ["torch", "psgrid"]):
                    if side == "psgrid":
                        r, log = benchlib.run_json_and_log(
                            [psgrid, "local", spec, "--single-process", "--backend", args.device,
                             "--workers", "1", "--epochs", str(args.epochs), "--json"], env)
                        rates = [float(m.group(2)) for m in EPOCH_RATE.finditer(log)]
                        ours.append(steady(rates))
                    else:
                        cmd = [args.python, benchlib.torch_peer(), "--model", model,
                               "--device", args.device, "--epochs", str(args.epochs),
                               "--batch", str(batch)]
                        if args.data:
                            cmd += ["--data", args.data]
                        r = benchlib.run_json(cmd, env)
                        rates = r["epoch_samples_per_s"]
                        theirs.append(steady(rates))
                    print("  %s batch %d %-6s epochs %s samples/s, test accuracy %.4f" %
                          (model, batch, side, [round(x) for x in rates], r["test_acc"]), flush=True)
            o, t = statistics.median(ours), statistics.median(theirs)
            rows.append({"model": model, "batch": batch, "ratio": round(o / t, 3),
                         "psgrid_samples_per_s": round(o), "torch_samples_per_s": round(t),
                         "psgrid_step_ms": round(batch * 1e3 / o, 4),
                         "torch_step_ms": round(batch * 1e3 / t, 4),
                         "psgrid_runs": [round(x) for x in ours],
                         "torch_runs": [round(x) for x in theirs]})
    print("\n| model | batch | psgrid / PyTorch (%s) | psgrid step | PyTorch step |" % args.device)
    print("|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | **%.2fx** | %.3f ms | %.3f ms |" %
              (r["model"], r["batch"], r["ratio"], r["psgrid_step_ms"], r["torch_step_ms"]))
    print("\nsamples/s of the epochs after the first, median of %d alternating runs "
          "per side (ratio > 1: psgrid faster)." % args.repeats)
    torch_version = subprocess.run([args.python, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    benchlib.write_result("gpu_vs_torch", {"epochs": args.epochs,
                                           "repeats": args.repeats, "rows": rows},
                          {"gpu": gpu_name(), "torch": torch_version})


if __name__ == "__main__":
    main()
