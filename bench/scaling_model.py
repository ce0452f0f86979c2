"""The analytic model of a synchronous parameter-server step (docs/performance.md, "Scaling
model"): W workers, each computing a gradient of `nbytes` bytes (`params` float32 values) in
t_compute, against S server shards, each holding 1/S of the parameters on its own link of B
bytes/s each way.

  t_step(W, S) = t_compute * max(1, W / C)   C: cores per machine when the workers share one
               + 2 * nbytes * max(W / S, 1) / B
                     push, then pull: a shard's link carries W * nbytes / S each way, a
                     worker's link its own nbytes; the larger is the bottleneck
               + (W * nbytes / S) / R_sum + (params / S) / R_update
                     the shard sums W gradients (streaming), then updates its slice once
               + t_fixed   the per-step cost of an exchange with no bytes in it
  efficiency   = t_compute / t_step   (samples/s over W independent single processes)

Push and pull do not overlap with compute here (psgrid overlaps part of the push with
backward; the model leaves that out, so it errs on the slow side)."""

GBIT = 1e9 / 8  # bytes/s of one Gb/s


def step_time(t_compute, nbytes, params, workers, shards, link_bps, sum_bps, update_pps,
              fixed_s=0.0, cores=None):
    compute = t_compute * (max(1.0, workers / cores) if cores else 1.0)
    exchange = 2 * nbytes * max(workers / shards, 1.0) / link_bps if link_bps else 0.0
    server = (workers * nbytes / shards) / sum_bps + (params / shards) / update_pps
    return compute + exchange + server + fixed_s


def efficiency(t_compute, t_step):
    return t_compute / t_step


def table(name, t_compute, nbytes, params, sum_bps, update_pps, fixed_s,
          workers=(8, 16, 32, 64, 128, 256), shards=(1, 4, 16), links_gbit=(10, 25)):
    """A markdown table: a row per W, a column per (link, S): efficiency and step time."""
    cols = [(g, s) for g in links_gbit for s in shards]
    lines = ["%s: t_compute %.2f ms, %.2f MB per step each way" % (name, 1e3 * t_compute, nbytes / 1e6),
             "",
             "| W | " + " | ".join("%d Gb/s, S = %d" % c for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for w in workers:
        cells = []
        for g, s in cols:
            t = step_time(t_compute, nbytes, params, w, s, g * GBIT, sum_bps, update_pps, fixed_s)
            cells.append("%.0f%% (%.1f ms)" % (100 * efficiency(t_compute, t), 1e3 * t))
        lines.append("| %d | %s |" % (w, " | ".join(cells)))
    return "\n".join(lines)
