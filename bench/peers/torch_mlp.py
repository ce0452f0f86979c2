#!/usr/bin/python3
"""PyTorch side of bench/mlp_vs_torch.py (the MLP 784-256-128-10 on Fashion-MNIST) and of
bench/cnn_vs_torch.py (--model cnn: examples/fmnist_cnn.yaml's CNN, conv 5x5x32 pad 2, ReLU,
maxpool 2, conv 5x5x64 pad 2, ReLU, maxpool 2, flatten, Linear(3136, 1024), ReLU, Linear(1024,
10), on [N, 1, 28, 28] images).

Trains torch.nn.Sequential(Linear(784,256), ReLU, Linear(256,128), ReLU, Linear(128,10)) with
cross-entropy and torch.optim.SGD(momentum) at the given batch, the same loop psgrid runs: a
shuffled pass per epoch, one gather per batch. Prints one JSON line with training samples/s
(training loop only) and the test accuracy. OpenBLAS threads come from OPENBLAS_NUM_THREADS in
the environment (Debian's torch runs GEMM in OpenBLAS); torch's own threads from --threads.

--ddp N runs N processes of DistributedDataParallel (gloo on 127.0.0.1, one torch thread each),
each on its strided 1/N of every epoch's permutation with --batch samples per process per
step; samples/s is the total over the processes divided by the slowest one's training time.

--curve also evaluates the test accuracy after every epoch (rank 0 under DDP, the others waiting
at the next epoch's barrier) and reports it with the wall time since training began, those
evaluations included (as psgrid's job time includes rank 0's); samples/s is unchanged.
--stop-at ACC (with --curve) ends training after the first epoch at or above that accuracy.

--device cuda trains on the GPU (bench/gpu_vs_torch.py): model and optimizer state on the device,
each batch gathered on the host and copied in, as psgrid's GPU worker does; float32 throughout
(TF32 off for cuBLAS and cuDNN, psgrid computes in float32). Timings wait for the device
(torch.cuda.synchronize) at the end of each epoch. The JSON line also has each epoch's own
samples/s (epoch_samples_per_s): the first epoch's holds the CUDA and cuDNN set-up.
"""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir, prefix):
    x = read_idx(os.path.join(data_dir, prefix + "-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, prefix + "-labels-idx1-ubyte.gz"))
    return (torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0),
            torch.from_numpy(y.astype(np.int64)))


def train(model, opt, xtr, ytr, args, rank=0, world=1, barrier=None, on_epoch_end=None,
          should_stop=None):
    loss_fn = torch.nn.CrossEntropyLoss()
    device = torch.device(args.device)
    seconds, samples = 0.0, 0
    args.epoch_rates = []
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(args.seed + epoch))
        perm = perm[rank::world][:len(xtr) // world]
        if barrier:
            barrier()
        start = time.perf_counter()
        epoch_samples = samples
        for b in range(0, len(perm), args.batch):
            if args.max_steps and samples >= args.max_steps * args.batch:
                break
            idx = perm[b:b + args.batch]
            xb, yb = xtr[idx].to(device), ytr[idx].to(device)
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            opt.step()
            samples += len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if barrier:
            barrier()
        elapsed = time.perf_counter() - start
        seconds += elapsed
        if samples > epoch_samples:
            args.epoch_rates.append(round((samples - epoch_samples) / elapsed, 1))
        if on_epoch_end:
            on_epoch_end(epoch + 1)
        if should_stop and should_stop():
            break
    return seconds, samples


def make_model(kind="mlp"):
    nn = torch.nn
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Linear(1024, 10))
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10))


def shaped(x, kind):
    """Images as the model takes them: [N, 784] for the MLP, [N, 1, 28, 28] for the CNN."""
    return x.reshape(len(x), 1, 28, 28) if kind == "cnn" else x


def accuracy(model, xte, yte):
    device = next(model.parameters()).device
    with torch.no_grad():
        correct = sum((model(xte[i:i + 1000].to(device)).argmax(1).cpu() == yte[i:i + 1000])
                      .sum().item()
                      for i in range(0, len(xte), 1000))
        return correct / len(xte)


def report(args, mode, procs, seconds, samples, acc, curve=None):
    result = {"peer": "pytorch", "model": args.model, "mode": mode, "procs": procs, "torch": torch.__version__,
              "threads": args.threads,
              "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
              "samples": samples, "train_seconds": round(seconds, 4),
              "samples_per_s": round(samples / seconds, 1), "test_acc": round(acc, 4),
              "device": args.device, "epoch_samples_per_s": getattr(args, "epoch_rates", [])}
    if curve is not None:
        result["curve"] = curve
    print(json.dumps(result), flush=True)


def curve_recorder(model, xte, yte):
    """An on_epoch_end callback recording the test accuracy and the wall time since start(),
    evaluations included."""
    curve = []
    began = [time.perf_counter()]

    def on_epoch_end(epoch):
        curve.append({"epoch": epoch, "test_acc": round(accuracy(model, xte, yte), 4),
                      "elapsed_s": round(time.perf_counter() - began[0], 4)})

    def start():
        began[0] = time.perf_counter()

    return curve, start, on_epoch_end


def ddp_process(rank, args):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % args.port, rank=rank,
                            world_size=args.ddp)
    xtr, ytr = load(args.data, "train")
    xte, yte = load(args.data, "t10k")
    xtr, xte = shaped(xtr, args.model), shaped(xte, args.model)
    model = DistributedDataParallel(make_model(args.model))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    curve, start, on_epoch_end = curve_recorder(model.module, xte, yte)
    dist.barrier()
    start()

    def reached():  # rank 0 knows; everyone stops together
        flag = torch.tensor([int(rank == 0 and bool(curve) and curve[-1]["test_acc"] >= args.stop_at)])
        dist.broadcast(flag, 0)
        return bool(flag.item())

    seconds, samples = train(model, opt, xtr, ytr, args, rank, args.ddp, dist.barrier,
                             on_epoch_end if args.curve and rank == 0 else None,
                             reached if args.curve and args.stop_at else None)
    totals = torch.tensor([seconds, float(samples)], dtype=torch.float64)
    slowest = totals[:1].clone()
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    if rank == 0:
        report(args, "ddp", args.ddp, slowest.item(), int(totals[1].item()),
               accuracy(model.module, xte, yte), curve if args.curve else None)
    dist.barrier()
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=0, help="> 0: stop after this many steps")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (float32: TF32 off)")
    ap.add_argument("--ddp", type=int, default=0, help="N > 0: DDP with N gloo processes")
    ap.add_argument("--port", type=int, default=29541, help="DDP rendezvous port on 127.0.0.1")
    ap.add_argument("--curve", action="store_true",
                    help="test accuracy and elapsed wall time after every epoch")
    ap.add_argument("--stop-at", type=float, default=0,
                    help="with --curve: stop after the first epoch at or above this test accuracy")
    args = ap.parse_args()
    if args.ddp > 0 and args.device != "cpu":
        ap.error("--ddp runs on the CPU (gloo); --device must be cpu")
    if args.ddp > 0:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        import torch.multiprocessing as mp
        mp.spawn(ddp_process, args=(args,), nprocs=args.ddp, join=True)
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    xtr, ytr = load(args.data, "train")
    xte, yte = load(args.data, "t10k")
    xtr, xte = shaped(xtr, args.model), shaped(xte, args.model)
    model = make_model(args.model).to(args.device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    curve, start, on_epoch_end = curve_recorder(model, xte, yte)
    start()
    seconds, samples = train(model, opt, xtr, ytr, args,
                             on_epoch_end=on_epoch_end if args.curve else None,
                             should_stop=(lambda: curve[-1]["test_acc"] >= args.stop_at)
                             if args.curve and args.stop_at else None)
    report(args, "single", 1, seconds, samples, accuracy(model, xte, yte),
           curve if args.curve else None)


if __name__ == "__main__":
    main()
