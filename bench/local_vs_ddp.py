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
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def last_json(out):
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line in:\n" + out[-2000:])


def run(cmd, env):
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stderr[-3000:]))
    return last_json(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "local_vs_ddp.json"))
    args = ap.parse_args()

    subprocess.run([os.path.join(ROOT, "scripts", "setup"), "--with-torch"], check=True)
    psgrid = os.path.join(os.environ.get("PSGRID_BUILD_DIR", os.path.join(ROOT, "build")),
                          "client", "psgrid")
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    version = subprocess.run([psgrid, "version"], env=base, capture_output=True, text=True,
                             check=True).stdout
    kernel = version.split("OpenBLAS ")[1].split(" kernel")[0]
    env = dict(base, OPENBLAS_CORETYPE=kernel, OPENBLAS_NUM_THREADS="1")
    peer = [sys.executable, os.path.join(ROOT, "bench", "peers", "torch_mlp.py"),
            "--epochs", str(args.epochs), "--lr", str(args.lr), "--threads", "1"]

    rows = []
    for workers in (1, 2):
        ours, theirs = [], []
        for rep in range(args.repeats):
            for side in (["psgrid", "torch"] if rep % 2 == 0 else ["torch", "psgrid"]):
                if side == "psgrid":
                    r = run([psgrid, "local", "examples/fmnist_mlp.yaml", "--workers", str(workers),
                             "--epochs", str(args.epochs), "--threads", "1", "-o", "json"], env)
                    samples = r.get("samples") or 60000 * args.epochs
                    r["samples_per_s"] = samples / r["wall_seconds"]
                    r["test_acc"] = r["test_accuracy"]
                    ours.append(r)
                else:
                    cmd = peer + (["--ddp", str(workers)] if workers > 1 else [])
                    r = run(cmd, env)
                    theirs.append(r)
                print(f"  workers={workers} {side:6s} {r['samples_per_s']:>9.0f} samples/s  "
                      f"test_acc={r['test_acc']:.4f}", flush=True)
        o = statistics.median(r["samples_per_s"] for r in ours)
        t = statistics.median(r["samples_per_s"] for r in theirs)
        rows.append({"processes": workers, "peer": "PyTorch DDP (gloo)" if workers > 1 else "PyTorch, one process",
                     "ratio": round(o / t, 3), "psgrid_samples_per_s": round(o),
                     "torch_samples_per_s": round(t),
                     "psgrid_runs": [round(r["samples_per_s"]) for r in ours],
                     "torch_runs": [r["samples_per_s"] for r in theirs],
                     "psgrid_test_acc": [r["test_acc"] for r in ours],
                     "torch_test_acc": [r["test_acc"] for r in theirs]})

    print("\n| processes | psgrid / peer | peer | psgrid samples/s | peer samples/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | **{r['ratio']:.2f}x** | {r['peer']} | "
              f"{r['psgrid_samples_per_s']:,} | {r['torch_samples_per_s']:,} |")
    print(f"\nMLP 784-256-128-10, batch 64 per process, momentum SGD, {args.epochs} epoch(s) per "
          f"run, OpenBLAS {kernel} kernel, 1 thread per process, median of {args.repeats}.")
    result = {"benchmark": "local_vs_ddp", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": {"cpu": platform.processor() or "", "cores": os.cpu_count(),
                          "linux": platform.release(), "openblas_kernel": kernel},
              "epochs_per_run": args.epochs, "repeats": args.repeats, "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written: {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
