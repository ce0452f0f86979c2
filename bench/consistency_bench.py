#!/usr/bin/env python3
"""Consistency models with a straggler: the Fashion-MNIST MLP (examples/fmnist_mlp.yaml) through
`psgrid local` with 2 workers over gRPC on loopback, the second slowed 2x (psgrid local --slow-worker 2, i.e.
psgrid-worker --slowdown 2: each step's computation and push made twice as long), under sync, SSP (s = 2),
async and sync with one backup worker. Reports, per model, samples/s (samples whose gradients
went into updates, over the whole run), the wall time and epoch at which the test accuracy
first reached the target (rank 0 evaluates at every epoch's end), and the final accuracy.

  bench/consistency_bench.py [--epochs 15] [--target 0.88] [--slowdown 2]

Writes bench/results/consistency.json and prints a markdown table."""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

# Every mode over gRPC on loopback (shared memory serves plain sync only), so that the rows
# differ in the consistency model alone; sync through shared memory is the last row, for scale.
GRPC = ["--no-shared-memory"]
MODES = [
    ("sync", GRPC),
    ("ssp s=2", GRPC + ["--consistency", "ssp", "--staleness", "2"]),
    ("async", GRPC + ["--consistency", "async"]),
    ("sync + 1 backup", GRPC + ["--backup-workers", "1"]),
    ("sync, shared memory", []),
]


def run(psgrid, spec, epochs, slowdown, extra):
    cmd = [psgrid, "local", spec, "--epochs", str(epochs), "--slow-worker", str(slowdown),
           "-o", "json"] + extra
    p = subprocess.run(cmd, cwd=benchlib.ROOT, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stderr[-3000:]))
    result = benchlib.json.loads(p.stdout.strip().splitlines()[-1])
    return result, benchlib.epoch_curve(p.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--target", type=float, default=0.88)
    parser.add_argument("--slowdown", type=float, default=2.0)
    args = parser.parse_args()
    benchlib.setup_with_torch()
    psgrid = benchlib.psgrid_binary()
    spec = os.path.join(benchlib.ROOT, "examples", "fmnist_mlp.yaml")
    rows = []
    for name, extra in MODES:
        result, curve = run(psgrid, spec, args.epochs, args.slowdown, extra)
        reached = benchlib.first_at(curve, args.target)
        rows.append({
            "mode": name,
            "samples_per_s": round(result["samples_per_second"]),
            "seconds_to_target": reached[1] if reached else None,
            "epoch_at_target": reached[0] if reached else None,
            "final_test_accuracy": result["test_accuracy"],
            "wall_seconds": round(result["wall_seconds"], 2),
            "staleness_histogram": result.get("staleness_histogram"),
            "late_gradients": result.get("late_gradients"),
            "curve": [{"epoch": e, "test_accuracy": a, "elapsed_s": t} for e, a, t in curve],
        })
        print("%-16s done: %s" % (name, rows[-1]["final_test_accuracy"]), file=sys.stderr)
    sync_time = rows[0]["seconds_to_target"]
    print("\n| consistency | time to %.2f vs sync | samples/s | time to %.2f | epoch | final acc | "
          "wall | staleness histogram | late |" % (args.target, args.target))
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["seconds_to_target"]
        ratio = "%.2fx" % (sync_time / t) if t and sync_time else "n/a"
        print("| %s | %s | %d | %s | %s | %.4f | %.1fs | %s | %s |" % (
            r["mode"], ratio, r["samples_per_s"], "%.1fs" % t if t else "not reached",
            r["epoch_at_target"] or "-", r["final_test_accuracy"], r["wall_seconds"],
            r["staleness_histogram"], r["late_gradients"]))
    benchlib.write_result("consistency", {
        "description": "MLP 784-256-128-10 on Fashion-MNIST, 2 workers, the second slowed %gx; "
                       "ratio = sync's time to target / this mode's" % args.slowdown,
        "epochs": args.epochs, "target": args.target, "slowdown": args.slowdown,
        "rows": rows}, {})


if __name__ == "__main__":
    main()
