#!/usr/bin/python3
"""Training throughput of the CNN of examples/fmnist_cnn.yaml (batch 64, momentum SGD) on
Fashion-MNIST: psgrid in one process (`psgrid local --single-process --workers 1`) against
PyTorch 1.13 (bench/peers/torch_mlp.py --model cnn) on the same cores, both measured in this
one run: the same number of steps each, runs alternating between the sides, the median
samples/s of each side giving the ratio. Both sides get OPENBLAS_NUM_THREADS=T and the OpenBLAS
kernel psgrid selects (OPENBLAS_CORETYPE); PyTorch runs with torch.set_num_threads(T).

  bench/cnn_vs_torch.py [--steps 200] [--repeats 3] [--threads 1]

Prints a markdown table and writes bench/results/cnn_vs_torch.json."""
import argparse
import sys

import benchlib


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--lr", type=float, default=0.02)
    args = ap.parse_args()
    benchlib.setup_with_torch()
    psgrid = benchlib.psgrid_binary()
    base, kernel = benchlib.pinned_kernel(psgrid)
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        env = benchlib.with_kernel(base, kernel, threads)
        ours, theirs = [], []
        for rep in range(args.repeats):
            for side in (["psgrid", "torch"] if rep % 2 == 0 else ["torch", "psgrid"]):
                if side == "psgrid":
                    r = benchlib.run_json([psgrid, "local", "examples/fmnist_cnn.yaml",
                                           "--single-process", "--workers", "1", "--epochs", "1",
                                           "--max-steps", str(args.steps),
                                           "--blas-threads", str(threads), "--json"], env)
                    ours.append(r)
                else:
                    r = benchlib.run_json([sys.executable, benchlib.torch_peer(), "--model", "cnn",
                                           "--epochs", "1", "--max-steps", str(args.steps),
                                           "--lr", str(args.lr), "--threads", str(threads)], env)
                    theirs.append(r)
                print(f"  cores={threads} {side:6s} {r['samples_per_s']:>8.0f} samples/s", flush=True)
        rows.append(dict({"cores": threads}, **benchlib.compare(ours, theirs)))
    print("\n| cores | psgrid / PyTorch | psgrid samples/s | PyTorch samples/s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['cores']} | **{r['ratio']:.2f}x** | {r['psgrid_samples_per_s']:,} | "
              f"{r['torch_samples_per_s']:,} |")
    print(f"\nCNN of examples/fmnist_cnn.yaml, batch 64, {args.steps} steps per run, median of "
          f"{args.repeats} alternating runs per side (test accuracies after so few steps are "
          "not comparable and not reported).")
    benchlib.write_result("cnn_vs_torch", {
        "model": "conv5x5x32 p2, relu, maxpool2, conv5x5x64 p2, relu, maxpool2, flatten, "
                 "dense 1024, relu, dense 10", "batch": 64, "steps_per_run": args.steps,
        "repeats": args.repeats, "rows": rows}, {"openblas_kernel": kernel})


if __name__ == "__main__":
    main()
