#!/usr/bin/python3
"""Distributed training throughput: `psgrid local` (in-process parameter server, W worker
processes) against PyTorch DistributedDataParallel (gloo on loopback, W processes), training the
MLP 784-256-128-10 on Fashion-MNIST with the same per-process batch (64) and momentum SGD.
Also 1 psgrid worker against one PyTorch process.

Both sides run the same OpenBLAS kernel (the one psgrid selects, set for both with
OPENBLAS_CORETYPE), one BLAS thread and one torch thread per process. psgrid's samples/s is the
job's samples over its wall time from the first gradient to the end (per-epoch evaluation by
rank 0 included); PyTorch's is the training loop's (evaluation excluded). Runs alternate, R
repeats each; ratios are of medians. Prints a markdown table (ratios first) and writes
bench/results/local_vs_ddp.json.

  bench/local_vs_ddp.py [--epochs 2] [--repeats 3]
"""
import argparse
import os
import sys

import benchlib


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.02)
    args = ap.parse_args()

    benchlib.setup_with_torch()
    psgrid = benchlib.psgrid_binary()
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    kernel = benchlib.kernel_of(psgrid, base)
    env = dict(base, OPENBLAS_CORETYPE=kernel, OPENBLAS_NUM_THREADS="1")
    peer = [sys.executable, benchlib.torch_peer(), "--epochs", str(args.epochs),
            "--lr", str(args.lr), "--threads", "1"]

    rows = []
    for workers in (1, 2):
        ours, theirs = [], []
        for rep in range(args.repeats):
            for side in (["psgrid", "torch"] if rep % 2 == 0 else ["torch", "psgrid"]):
                if side == "psgrid":
                    r = benchlib.run_json([psgrid, "local", "examples/fmnist_mlp.yaml",
                                           "--workers", str(workers), "--epochs", str(args.epochs),
                                           "--threads", "1", "-o", "json"], env)
                    r["samples_per_s"] = r["samples"] / r["wall_seconds"]
                    r["test_acc"] = r["test_accuracy"]
                    ours.append(r)
                else:
                    r = benchlib.run_json(peer + (["--ddp", str(workers)] if workers > 1 else []), env)
                    theirs.append(r)
                print(f"  workers={workers} {side:6s} {r['samples_per_s']:>9.0f} samples/s  "
                      f"test_acc={r['test_acc']:.4f}", flush=True)
        rows.append(dict({"processes": workers,
                          "peer": "PyTorch DDP (gloo)" if workers > 1 else "PyTorch, one process"},
                         **benchlib.compare(ours, theirs)))

    print("\n| processes | psgrid / peer | peer | psgrid samples/s | peer samples/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | **{r['ratio']:.2f}x** | {r['peer']} | "
              f"{r['psgrid_samples_per_s']:,} | {r['torch_samples_per_s']:,} |")
    print(f"\nMLP 784-256-128-10, batch 64 per process, momentum SGD, {args.epochs} epoch(s) per "
          f"run, OpenBLAS {kernel} kernel, 1 thread per process, median of {args.repeats}.")
    benchlib.write_result("local_vs_ddp", {"epochs_per_run": args.epochs, "repeats": args.repeats,
                                           "rows": rows}, {"openblas_kernel": kernel})


if __name__ == "__main__":
    main()
