#!/usr/bin/python3
"""Training throughput of the MLP 784-256-128-10 (batch 64, momentum SGD) on Fashion-MNIST:
psgrid in one process (`psgrid local --single-process --workers 1`) against PyTorch 1.13 on the
same cores, both measured in this one run.

Both sides always run the same OpenBLAS kernel: first the one OpenBLAS detects by itself, then
(when it differs) the one psgrid selects for this CPU (see core/backend/blas_kernel.h: Debian's
OpenBLAS 0.3.21 falls back to generic kernels on CPUs newer than itself), set for both sides
with OPENBLAS_CORETYPE. For each core count T (default 1 and 2), both sides get
OPENBLAS_NUM_THREADS=T; PyTorch runs with torch.set_num_threads(1) (its fastest setting with
Debian's OpenBLAS-backed torch; more torch threads oversubscribe the cores). Runs alternate
between the two sides, R repeats each, and the median samples/s of each side gives the ratio.
Prints a markdown table (ratios first) and writes bench/results/mlp_vs_torch.json.

  bench/mlp_vs_torch.py [--epochs 2] [--repeats 3] [--threads 1,2] [--kernels both|selected]

--kernels selected runs psgrid's selected kernel alone (bench/run --quick).
"""
import argparse
import os
import sys

import benchlib


def blas_env(threads, kernel):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    env.pop("OPENBLAS_CORETYPE", None)
    if kernel == "detected":
        env["PSGRID_BLAS_KERNEL"] = "auto-off"
    else:
        env["OPENBLAS_CORETYPE"] = kernel
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--kernels", choices=["both", "selected"], default="both")
    args = ap.parse_args()

    benchlib.setup_with_torch()
    psgrid = benchlib.psgrid_binary()
    # The kernel OpenBLAS detects by itself, and the one psgrid selects (its default).
    plain = benchlib.kernel_of(psgrid, blas_env(1, "detected"))
    best = benchlib.kernel_of(psgrid, {k: v for k, v in os.environ.items()
                                       if k != "OPENBLAS_CORETYPE"})
    kernels = ["detected"] + ([best] if best != plain else [])
    if args.kernels == "selected":
        kernels = kernels[-1:]
    rows = []
    for kernel, threads in [(k, int(t)) for k in kernels for t in args.threads.split(",")]:
        kernel_name = plain if kernel == "detected" else kernel
        env = blas_env(threads, kernel)
        ours, theirs = [], []
        for rep in range(args.repeats):
            for side in (["psgrid", "torch"] if rep % 2 == 0 else ["torch", "psgrid"]):
                if side == "psgrid":
                    r = benchlib.run_json([psgrid, "local", "examples/fmnist_mlp.yaml",
                                           "--single-process", "--workers", "1",
                                           "--epochs", str(args.epochs),
                                           "--blas-threads", str(threads), "--json"], env)
                    ours.append(r)
                else:
                    r = benchlib.run_json([sys.executable, benchlib.torch_peer(),
                                           "--epochs", str(args.epochs), "--lr", str(args.lr),
                                           "--threads", "1"], env)
                    theirs.append(r)
                print(f"  kernel={kernel_name} cores={threads} {side:6s} "
                      f"{r['samples_per_s']:>9.0f} samples/s  test_acc={r['test_acc']:.4f}",
                      flush=True)
        rows.append(dict({"blas_kernel": kernel_name, "cores": threads},
                         **benchlib.compare(ours, theirs)))

    print("\n| OpenBLAS kernel | cores | psgrid / PyTorch | psgrid samples/s | PyTorch samples/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['blas_kernel']} | {r['cores']} | **{r['ratio']:.2f}x** | "
              f"{r['psgrid_samples_per_s']:,} | {r['torch_samples_per_s']:,} |")
    print(f"\nMLP 784-256-128-10, batch 64, momentum SGD, {args.epochs} epoch(s) per run, "
          f"median of {args.repeats} alternating runs per side.")
    benchlib.write_result(
        "mlp_vs_torch",
        {"model": "784-256-128-10 relu, softmax cross-entropy", "batch": 64,
         "optimizer": f"momentum 0.9, lr {args.lr} (both sides)", "epochs_per_run": args.epochs,
         "repeats": args.repeats, "rows": rows},
        {"openblas_detected_kernel": plain, "psgrid_selected_kernel": best})


if __name__ == "__main__":
    main()
