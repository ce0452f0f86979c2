#!/usr/bin/python3
"""Scaling on this machine: `psgrid local examples/fmnist_mlp.yaml --workers W --threads 1` for
W = 1, 2 and 4, through shared memory (psgrid local's default) and over gRPC on loopback
(--no-shared-memory), against the scaling model of bench/scaling_model.py (one server, S = 1).

Two predictions of each step time:
  model        from independent measurements alone: t_compute = one single-process step
               (`psgrid local --single-process --workers 1 --blas-threads 1`, batch 64) times
               max(1, W / cores); B = none for shared memory (workers train in the shared
               arenas: no bytes move), over gRPC psgrid's own push + pull throughput at the size
               nearest the MLP's 0.94 MB (1 worker's for W = 1, 2 workers' aggregate beyond;
               the transport benchmark's JSON); R_sum and R_update from update_bench's JSON.
  measured compute   t_compute measured with W single-process runs at once (what the cores,
               shared with whatever else runs on this machine, give each of W workers), and the
               exchange taken from the 1-worker run of the same path (its step time less
               t_compute and the server's update): a constant for shared memory, W times it over
               gRPC (one server link carries every worker's bytes). This checks how the
               exchange term grows with W once the compute term is measured.
Measured step time = the job's wall time / its steps (rank 0's evaluation after every epoch
included). The load average before each run is recorded (other processes share this
machine). The OpenBLAS kernel psgrid selects, 1 thread per process. Prints a markdown table and
writes bench/results/scaling.json.

  bench/scaling.py [--epochs 2] [--repeats 1] [--transport-json F] [--update-json F]
"""
import argparse
import json
import os
import statistics

import benchlib
import scaling_model

BATCH = 64
SPEC = "examples/fmnist_mlp.yaml"
WORKERS = (1, 2, 4)


def nearest(rows, nbytes):
    return min(rows, key=lambda r: abs(r["bytes"] - nbytes))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--transport-json", default=os.path.join(benchlib.results_dir(), "transport.json"))
    ap.add_argument("--update-json", default=os.path.join(benchlib.results_dir(), "update_bench.json"))
    args = ap.parse_args()
    benchlib.setup_with_torch()
    psgrid = benchlib.psgrid_binary()
    base, kernel = benchlib.pinned_kernel(psgrid)
    env = benchlib.with_kernel(base, kernel, 1)
    params, nbytes = benchlib.parameter_count(psgrid, SPEC)
    with open(args.transport_json) as f:
        near = nearest(json.load(f)["rows"], nbytes)
    with open(args.update_json) as f:
        update = json.load(f)
    sum_bps = update["stream"]["bound_bytes_per_s"] / 3  # a gradient read, the sum read and written
    update_pps = next(r for r in update["rows"] if r["optimizer"] == "momentum")["achieved_params_per_s_best"]
    cores = os.cpu_count()

    # One step's compute with W single processes at once.
    single = [psgrid, "local", SPEC, "--single-process", "--workers", "1", "--epochs", str(args.epochs),
              "--blas-threads", "1", "--json"]
    t_compute = {}
    for w in WORKERS:
        runs = [r for _ in range(args.repeats) for r in benchlib.run_json_concurrently([single] * w, env)]
        t_compute[w] = BATCH / statistics.median(r["samples_per_s"] for r in runs)
    print("  t_compute with 1, 2, 4 processes at once: %s ms" % ", ".join(
        "%.3f" % (1e3 * t_compute[w]) for w in WORKERS), flush=True)

    def server(w):
        return scaling_model.step_time(0, nbytes, params, w, 1, None, sum_bps, update_pps)

    rows = []
    for mode, extra in (("shared memory", []), ("gRPC", ["--no-shared-memory"])):
        exchange_1 = 0.0
        for w in WORKERS:
            load = os.getloadavg()[0]
            runs = [benchlib.run_json([psgrid, "local", SPEC, "--workers", str(w), "--threads", "1",
                                       "--epochs", str(args.epochs), "-o", "json"] + extra, env)
                    for _ in range(args.repeats)]
            t_step = statistics.median(r["wall_seconds"] / r["steps"] for r in runs)
            link = near["psgrid_1w" if w == 1 else "psgrid_2w"]["bytes_per_s"] if mode == "gRPC" else None
            model = scaling_model.step_time(t_compute[1], nbytes, params, w, 1, link, sum_bps, update_pps,
                                            cores=cores)
            if w == 1:
                exchange_1 = max(t_step - t_compute[1] - server(1), 0.0)
            measured = t_compute[w] + server(w) + exchange_1 * (w if mode == "gRPC" else 1)
            rows.append({"mode": mode, "workers": w, "samples_per_s": round(w * BATCH / t_step),
                         "step_ms": round(1e3 * t_step, 3), "model_step_ms": round(1e3 * model, 3),
                         "measured_compute_step_ms": round(1e3 * measured, 3),
                         "model_over_measured": round(model / t_step, 3),
                         "measured_compute_over_measured": round(measured / t_step, 3),
                         "efficiency": round(t_compute[1] / t_step, 3), "core_bound": w > cores,
                         "load_average_before": round(load, 2),
                         "runs_samples_per_s": [round(r["samples"] / r["wall_seconds"]) for r in runs]})
            print(f"  {mode:13s} workers={w} {rows[-1]['samples_per_s']:>7,} samples/s  step "
                  f"{rows[-1]['step_ms']:.3f} ms, model {rows[-1]['model_step_ms']:.3f} ms, with measured "
                  f"compute {rows[-1]['measured_compute_step_ms']:.3f} ms (load {load:.1f})", flush=True)
    for r in rows:
        one = next(x for x in rows if x["mode"] == r["mode"] and x["workers"] == 1)
        r["speedup_vs_1_worker"] = round(r["samples_per_s"] / one["samples_per_s"], 3)

    print("\n| exchange | workers | speedup vs 1 worker | efficiency | model / measured | with measured "
          "compute / measured | samples/s | step | model | with measured compute | load average |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        note = " (core-bound: %d cores)" % cores if r["core_bound"] else ""
        print(f"| {r['mode']} | {r['workers']}{note} | **{r['speedup_vs_1_worker']:.2f}x** | "
              f"{100 * r['efficiency']:.0f}% | {r['model_over_measured']:.2f} | "
              f"{r['measured_compute_over_measured']:.2f} | {r['samples_per_s']:,} | {r['step_ms']:.3f} ms | "
              f"{r['model_step_ms']:.3f} ms | {r['measured_compute_step_ms']:.3f} ms | "
              f"{r['load_average_before']:.1f} |")
    print(f"\nMLP 784-256-128-10, batch {BATCH} per worker, {args.epochs} epoch(s), median of {args.repeats}; "
          f"this machine has {cores} cores, so beyond {cores} workers they share them. Efficiency = "
          f"t_compute ({1e3 * t_compute[1]:.3f} ms, one process alone) / step time.")
    benchlib.write_result("scaling", {
        "spec": SPEC, "epochs_per_run": args.epochs, "repeats": args.repeats, "batch_per_worker": BATCH,
        "model_inputs": {"t_compute_s": t_compute[1], "t_compute_concurrent_s": t_compute, "bytes": nbytes,
                         "params": params, "cores": cores, "transport_size": near["label"],
                         "psgrid_1w_bytes_per_s": near["psgrid_1w"]["bytes_per_s"],
                         "psgrid_2w_bytes_per_s": near["psgrid_2w"]["bytes_per_s"],
                         "sum_bytes_per_s": sum_bps, "update_params_per_s": update_pps},
        "rows": rows}, {"openblas_kernel": kernel})


if __name__ == "__main__":
    main()
