"""Shared pieces of the bench/ scripts: running psgrid and the PyTorch peers, reading their
JSON results, comparing medians, and describing the machine."""
import datetime
import json
import os
import platform
import re
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup_with_torch():
    """Installs what is missing (python3-torch included) and builds, quietly when all is there.
    Under bench/run (PSGRID_BENCH_PREPARED=1), which has done both once, nothing: every part of
    a run measures the same build."""
    if os.environ.get("PSGRID_BENCH_PREPARED") == "1":
        return
    subprocess.run([os.path.join(ROOT, "scripts", "setup"), "--with-torch"], check=True)


def psgrid_binary():
    build = os.environ.get("PSGRID_BUILD_DIR", os.path.join(ROOT, "build"))
    return os.path.join(build, "client", "psgrid")


def torch_peer():
    return os.path.join(ROOT, "bench", "peers", "torch_mlp.py")


def run_json(cmd, env):
    """Runs `cmd` from the repository root; returns the last JSON object it printed."""
    return run_json_and_log(cmd, env)[0]


def run_json_and_log(cmd, env, timeout=1800):
    """As run_json, and what the command wrote to stderr."""
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stderr[-3000:]))
    for line in reversed(p.stdout.strip().splitlines()):
        if line.strip().startswith("{"):
            return json.loads(line), p.stderr
    raise RuntimeError("no JSON line from %s:\n%s" % (" ".join(cmd), p.stdout[-2000:]))


def run_json_concurrently(cmds, env, timeout=1800):
    """Runs every command of `cmds` at once from the repository root; returns the last JSON
    object each printed, in order."""
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for cmd in cmds]
    results = []
    for cmd, p in zip(cmds, procs):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, err[-3000:]))
        lines = [line for line in out.strip().splitlines() if line.strip().startswith("{")]
        if not lines:
            raise RuntimeError("no JSON line from %s:\n%s" % (" ".join(cmd), out[-2000:]))
        results.append(json.loads(lines[-1]))
    return results


# psgrid's epoch lines: "epoch 3/15 ... test-acc 0.8712  elapsed 1m2.5s".
EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ .*test-acc ([0-9.]+)\s+elapsed (?:(\d+)h)?(?:(\d+)m)?([0-9.]+)s")


def epoch_curve(log):
    """[(epoch, test accuracy, seconds since the job began)] from psgrid's epoch lines."""
    curve = []
    for m in map(EPOCH_LINE.search, log.splitlines()):
        if m:
            seconds = int(m.group(3) or 0) * 3600 + int(m.group(4) or 0) * 60 + float(m.group(5))
            curve.append((int(m.group(1)), float(m.group(2)), seconds))
    return curve


def first_at(curve, target):
    """(epoch, seconds) of the first point of `curve` at or above `target`, else None."""
    return next(((e, t) for e, acc, t in curve if acc >= target), None)


def kernel_of(psgrid, env):
    """The OpenBLAS kernel `psgrid version` reports under `env`."""
    out = subprocess.run([psgrid, "version"], env=env, check=True, capture_output=True,
                         text=True).stdout
    return out.split("OpenBLAS ")[1].split(" kernel")[0]


def pinned_kernel(psgrid):
    """(the environment without OPENBLAS_CORETYPE, the kernel psgrid selects there): a run sets
    OPENBLAS_CORETYPE to it (see with_kernel), so that psgrid and its peer use the same one."""
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    return base, kernel_of(psgrid, base)


def with_kernel(base, kernel, threads):
    """`base` with the OpenBLAS kernel and thread count set."""
    return dict(base, OPENBLAS_CORETYPE=kernel, OPENBLAS_NUM_THREADS=str(threads))


def parameter_count(psgrid, spec):
    """(parameters, bytes as float32) of a spec's model, from `psgrid summary`."""
    out = subprocess.run([psgrid, "summary", spec], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    m = re.search(r"parameters: (\d+) .*?, (\d+) bytes as float32", out)
    return int(m.group(1)), int(m.group(2))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def compare(ours, theirs):
    """Ratio of medians of samples/s, with every run kept."""
    o = statistics.median(r["samples_per_s"] for r in ours)
    t = statistics.median(r["samples_per_s"] for r in theirs)
    return {"ratio": round(o / t, 3), "psgrid_samples_per_s": round(o),
            "torch_samples_per_s": round(t),
            "psgrid_runs": [round(r["samples_per_s"]) for r in ours],
            "torch_runs": [round(r["samples_per_s"]) for r in theirs],
            "psgrid_test_acc": [r["test_acc"] for r in ours],
            "torch_test_acc": [r["test_acc"] for r in theirs]}


def results_dir():
    """bench/results, or $PSGRID_RESULTS_DIR (bench/run keeps its own run's files apart)."""
    return os.environ.get("PSGRID_RESULTS_DIR", os.path.join(ROOT, "bench", "results"))


def memory_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def git_commit():
    """The checked-out commit, read from .git (no git process), or None."""
    git = os.path.join(ROOT, ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if os.path.exists(os.path.join(git, ref)):
            with open(os.path.join(git, ref)) as f:
                return f.read().strip()
        with open(os.path.join(git, "packed-refs")) as f:
            for line in f:
                if line.strip().endswith(" " + ref):
                    return line.split()[0]
    except OSError:
        pass
    return None


def machine_description(extra=None):
    return dict({"cpu": cpu_model(), "cores": os.cpu_count(), "memory_bytes": memory_bytes(),
                 "linux": platform.release()}, **(extra or {}))


def write_result(name, result, machine_extra):
    """Writes bench/results/NAME.json with the date and a description of the machine."""
    result = dict(result, benchmark=name,
                  date=datetime.datetime.now().isoformat(timespec="seconds"),
                  machine=machine_description(machine_extra))
    path = os.path.join(results_dir(), name + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print("written: " + os.path.relpath(path, ROOT))
