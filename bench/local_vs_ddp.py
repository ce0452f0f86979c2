#!/usr/bin/python3
"""Distributed training throughput: `psgrid local` (in-process parameter server, W worker
processes) against PyTorch DistributedDataParallel (gloo on loopback, W processes), training the
MLP 784-256-128-10 on Fashion-MNIST with the same per-process batch (64) and momentum SGD.
Also 1 psgrid worker against one PyTorch process.

Both sides run the same OpenBLAS kernel (the one psgrid selects, set for both with
OPENBLAS_CORETYPE), one BLAS thread and one torch thread per process. psgrid's samples/s is the
job's samples over its wall time from the first gradient to the end (per-epoch evaluation by
rank 0 included); PyTorch's is the training loop's (evaluation excluded). Runs alternate, R
repeats each; ratios are of medians; the load average before each run is recorded. Prints a markdown table (ratios first) and writes
bench/results/local_vs_ddp.json.

--target ACC also reports each side's time to that test accuracy: psgrid's job time at the first
epoch-end evaluation (rank 0's) at or above it, PyTorch's wall time since training began at the
first epoch end at or above it (bench/peers/torch_mlp.py --curve; its evaluations included, as
psgrid's are). The ratio is PyTorch's median time over psgrid's (> 1: psgrid is there sooner).
--peer-stops-at-target lets PyTorch stop at the target (shorter runs; its samples/s then covers
the epochs it ran).

  bench/local_vs_ddp.py [--epochs 2] [--repeats 3] [--target 0.88 [--peer-stops-at-target]]
"""
import argparse
import os
import statistics
import sys

import benchlib


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--target", type=float, default=0, help="> 0: report the time to this test accuracy")
    ap.add_argument("--peer-stops-at-target", action="store_true")
    args = ap.parse_args()

    benchlib.setup_with_torch()
    psgrid = benchlib.psgrid_binary()
    base, kernel = benchlib.pinned_kernel(psgrid)
    env = benchlib.with_kernel(base, kernel, 1)
    peer = [sys.executable, benchlib.torch_peer(), "--epochs", str(args.epochs),
            "--lr", str(args.lr), "--threads", "1"] + (["--curve"] if args.target else [])
    if args.target and args.peer_stops_at_target:
        peer += ["--stop-at", str(args.target)]

    rows = []
    for workers in (1, 2):
        ours, theirs = [], []
        for rep in range(args.repeats):
            for side in (["psgrid", "torch"] if rep % 2 == 0 else ["torch", "psgrid"]):
                load = os.getloadavg()[0]  # other processes on this machine
                if side == "psgrid":
                    r, log = benchlib.run_json_and_log([psgrid, "local", "examples/fmnist_mlp.yaml",
                                                        "--workers", str(workers), "--epochs", str(args.epochs),
                                                        "--threads", "1", "-o", "json"], env)
                    r["samples_per_s"] = r["samples"] / r["wall_seconds"]
                    r["test_acc"] = r["test_accuracy"]
                    r["curve"] = benchlib.epoch_curve(log)
                    ours.append(r)
                else:
                    r = benchlib.run_json(peer + (["--ddp", str(workers)] if workers > 1 else []), env)
                    r["curve"] = [(c["epoch"], c["test_acc"], c["elapsed_s"]) for c in r.get("curve", [])]
                    theirs.append(r)
                r["load_average_before"] = round(load, 2)
                reached = benchlib.first_at(r["curve"], args.target) if args.target else None
                print(f"  workers={workers} {side:6s} {r['samples_per_s']:>9.0f} samples/s  "
                      f"test_acc={r['test_acc']:.4f}" +
                      (f"  {args.target} at {reached[1]:.1f}s (epoch {reached[0]})" if reached else ""),
                      flush=True)
        row = dict({"processes": workers,
                    "peer": "PyTorch DDP (gloo)" if workers > 1 else "PyTorch, one process"},
                   **benchlib.compare(ours, theirs))
        row["load_average_before"] = {"psgrid": [r["load_average_before"] for r in ours],
                                      "torch": [r["load_average_before"] for r in theirs]}
        if args.target:
            row.update(time_to_target(ours, theirs, args.target))
        rows.append(row)

    if args.target:
        print(f"\n| processes | psgrid / peer samples/s | peer time / psgrid time to {args.target} | peer | "
              f"psgrid samples/s | peer samples/s | psgrid time (epoch) | peer time (epoch) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['processes']} | **{r['ratio']:.2f}x** | **{fmt_ratio(r['time_to_target_ratio'])}** | "
                  f"{r['peer']} | {r['psgrid_samples_per_s']:,} | {r['torch_samples_per_s']:,} | "
                  f"{fmt_time(r, 'psgrid')} | {fmt_time(r, 'torch')} |")
    else:
        print("\n| processes | psgrid / peer | peer | psgrid samples/s | peer samples/s |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['processes']} | **{r['ratio']:.2f}x** | {r['peer']} | "
                  f"{r['psgrid_samples_per_s']:,} | {r['torch_samples_per_s']:,} |")
    print(f"\nMLP 784-256-128-10, batch 64 per process, momentum SGD, {args.epochs} epoch(s) per "
          f"run, OpenBLAS {kernel} kernel, 1 thread per process, median of {args.repeats}.")
    benchlib.write_result("local_vs_ddp", {"epochs_per_run": args.epochs, "repeats": args.repeats,
                                           "target": args.target or None,
                                           "peer_stops_at_target": args.peer_stops_at_target, "rows": rows},
                          {"openblas_kernel": kernel})


def time_to_target(ours, theirs, target):
    """Medians of each side's time to `target` over the runs that reached it."""
    out = {}
    for side, runs in (("psgrid", ours), ("torch", theirs)):
        reached = [benchlib.first_at(r["curve"], target) for r in runs]
        hits = [x for x in reached if x]
        out[side + "_seconds_to_target"] = round(statistics.median(t for _, t in hits), 2) if hits else None
        out[side + "_epoch_at_target"] = statistics.median_low(e for e, _ in hits) if hits else None
        out[side + "_runs_reaching_target"] = len(hits)
        out[side + "_curves"] = [r["curve"] for r in runs]
    p, t = out["psgrid_seconds_to_target"], out["torch_seconds_to_target"]
    out["time_to_target_ratio"] = round(t / p, 3) if p and t else None
    return out


def fmt_ratio(x):
    return "%.2fx" % x if x else "n/a"


def fmt_time(row, side):
    t = row[side + "_seconds_to_target"]
    return "%.1f s (%d)" % (t, row[side + "_epoch_at_target"]) if t else "not reached"


if __name__ == "__main__":
    main()
