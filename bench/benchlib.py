"""Shared pieces of the bench/ scripts: running psgrid and the PyTorch peers, reading their
JSON results, comparing medians, and describing the machine."""
import datetime
import json
import os
import platform
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup_with_torch():
    """Installs what is missing (python3-torch included) and builds, quietly when all is there."""
    subprocess.run([os.path.join(ROOT, "scripts", "setup"), "--with-torch"], check=True)


def psgrid_binary():
    build = os.environ.get("PSGRID_BUILD_DIR", os.path.join(ROOT, "build"))
    return os.path.join(build, "client", "psgrid")


def torch_peer():
    return os.path.join(ROOT, "bench", "peers", "torch_mlp.py")


def run_json(cmd, env):
    """Runs `cmd` from the repository root; returns the last JSON object it printed."""
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stderr[-3000:]))
    for line in reversed(p.stdout.strip().splitlines()):
        if line.strip().startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line from %s:\n%s" % (" ".join(cmd), p.stdout[-2000:]))


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


def write_result(name, result, machine_extra):
    """Writes bench/results/NAME.json with the date and a description of the machine."""
    result = dict(result, benchmark=name,
                  date=datetime.datetime.now().isoformat(timespec="seconds"),
                  machine=dict({"cpu": cpu_model(), "cores": os.cpu_count(),
                                "linux": platform.release()}, **machine_extra))
    path = os.path.join(ROOT, "bench", "results", name + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print("written: " + os.path.relpath(path, ROOT))
