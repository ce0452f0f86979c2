#!/usr/bin/python3
"""Training throughput of the MLP 784-256-128-10 (batch 64, momentum SGD) on Fashion-MNIST:
psgrid against PyTorch 1.13 on the same cores, both measured in this one run.

Both sides always run the same OpenBLAS kernel: first the one OpenBLAS detects by itself, then
(when it differs) the one psgrid selects for this CPU (see core/backend/blas_kernel.h: Debian's
OpenBLAS 0.3.21 falls back to generic kernels on CPUs newer than itself), set for both sides
with OPENBLAS_CORETYPE. For each core count T (default 1 and 2), both sides get
OPENBLAS_NUM_THREADS=T; PyTorch runs with torch.set_num_threads(1) (its fastest setting with Debian's OpenBLAS-backed torch; more
torch threads oversubscribe the cores). Runs alternate between the two sides, R repeats each,
and the median samples/s of each side gives the ratio. Prints a markdown table (ratios first)
and writes the same as JSON to bench/results/mlp_vs_torch.json.

  bench/mlp_vs_torch.py [--epochs 2] [--repeats 3] [--threads 1,2]
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


def blas_env(threads, kernel):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    env.pop("OPENBLAS_CORETYPE", None)
    if kernel == "detected":
        env["PSGRID_BLAS_KERNEL"] = "auto-off"
    else:
        env["OPENBLAS_CORETYPE"] = kernel
    return env


def run_json(cmd, threads, kernel):
    env = blas_env(threads, kernel)
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True,
                         timeout=1800).stdout
    return json.loads(out.strip().splitlines()[-1])


def kernel_of(psgrid, env):
    """The OpenBLAS kernel `psgrid version` reports under `env`."""
    out = subprocess.run([psgrid, "version"], env=env, check=True, capture_output=True,
                         text=True).stdout
    return out.split("OpenBLAS ")[1].split(" kernel")[0]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "mlp_vs_torch.json"))
    args = ap.parse_args()

    subprocess.run([os.path.join(ROOT, "scripts", "setup"), "--with-torch"], check=True)
    build = os.environ.get("PSGRID_BUILD_DIR", os.path.join(ROOT, "build"))
    psgrid = os.path.join(build, "client", "psgrid")
    # The kernel OpenBLAS detects by itself, and the one psgrid selects (its default).
    plain = kernel_of(psgrid, blas_env(1, "detected"))
    best = kernel_of(psgrid, {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"})
    kernels = ["detected"] + ([best] if best != plain else [])
    rows = []
    for kernel, threads in [(k, int(t)) for k in kernels for t in args.threads.split(",")]:
        ours, theirs = [], []
        kernel_name = plain if kernel == "detected" else kernel
        for rep in range(args.repeats):
            sides = ["psgrid", "torch"] if rep % 2 == 0 else ["torch", "psgrid"]
            for side in sides:
                if side == "psgrid":
                    r = run_json([psgrid, "local", "examples/fmnist_mlp.yaml", "--single-process", "--workers", "1", "--epochs", str(args.epochs),
                                  "--blas-threads", str(threads), "--json"], threads, kernel)
                    ours.append(r)
                else:
                    r = run_json([sys.executable, os.path.join(ROOT, "bench", "peers", "torch_mlp.py"),
                                  "--epochs", str(args.epochs), "--lr", str(args.lr), "--threads", "1"],
                                 threads, kernel)
                    theirs.append(r)
                print(f"  kernel={kernel_name} cores={threads} {side:6s} {r['samples_per_s']:>9.0f} samples/s  "
                      f"test_acc={r.get('test_acc', 0):.4f}", flush=True)
        ours_med = statistics.median(r["samples_per_s"] for r in ours)
        theirs_med = statistics.median(r["samples_per_s"] for r in theirs)
        rows.append({"blas_kernel": kernel_name, "cores": threads, "ratio": round(ours_med / theirs_med, 3),
                     "psgrid_samples_per_s": round(ours_med), "torch_samples_per_s": round(theirs_med),
                     "psgrid_runs": [r["samples_per_s"] for r in ours],
                     "torch_runs": [r["samples_per_s"] for r in theirs],
                     "psgrid_test_acc": [r["test_acc"] for r in ours],
                     "torch_test_acc": [r["test_acc"] for r in theirs]})

    print("\n| OpenBLAS kernel | cores | psgrid / PyTorch | psgrid samples/s | PyTorch samples/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['blas_kernel']} | {r['cores']} | **{r['ratio']:.2f}x** | {r['psgrid_samples_per_s']:,} | "
              f"{r['torch_samples_per_s']:,} |")
    print(f"\nMLP 784-256-128-10, batch 64, momentum SGD, {args.epochs} epoch(s) per run, "
          f"median of {args.repeats} alternating runs per side.")
    result = {
        "benchmark": "mlp_vs_torch", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "linux": platform.release(),
                    "openblas_detected_kernel": plain, "psgrid_selected_kernel": best},
        "model": "784-256-128-10 relu, softmax cross-entropy", "batch": 64,
        "optimizer": f"momentum 0.9, lr {args.lr} (both sides)", "epochs_per_run": args.epochs,
        "repeats": args.repeats, "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written: {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
