#!/usr/bin/env python3
"""rewind vs PyTorch on a real time series: the same LSTM, the same data, the same initial weights.

    python3 bench/compare_timeseries.py [--rewind build/bin/rewind] [--epochs 20] [--batch 1] [--seeds 1,2,3]

The data: data/co2_weekly.csv (Mauna Loa CO2, weekly, 2,284 rows, 59 gaps), gaps interpolated linearly by row,
each value replaced by its change from the week before (0 at the first row), standardised with the mean and
standard deviation of the training rows' changes; training on the first 80% of the rows, the one-step RMSE in
ppm on the last 20%, predicted from one stream whose state runs through the whole file (rewind train
--missing interpolate --difference --val-fraction 0.2 does exactly this).

The model: LSTM(1 -> 32) and a linear head, TBPTT(52) over --batch contiguous streams of the training rows,
Adam (lr 0.002), mean squared error over the window's targets, --epochs passes, float32, one thread each
(OMP_NUM_THREADS=1, REWIND_NUM_THREADS=1): PyTorch written the usual way (nn.LSTM over each window, h.detach()
between windows); rewind with `rewind train`. Both start from the same weights, drawn by PyTorch and handed
to rewind with --init. Printed per seed: each side's RMSE, persistence's, the ratio of the two RMSEs, and the
training time of each (PyTorch's loop; rewind's 'trained ... in S s').

Needs PyTorch (apt-get install python3-torch); without it the script says so and exits 0.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import save_safetensors, torch_or_reexec  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "co2_weekly.csv")


def read_series(path):
    """The co2 column, gaps interpolated linearly by row (the ends take the nearest value)."""
    values = []
    with open(path) as f:
        next(f)
        for line in f:
            cell = line.strip().split(",")[1]
            values.append(float(cell) if cell else None)
    known = [i for i, v in enumerate(values) if v is not None]
    for i, v in enumerate(values):
        if v is not None:
            continue
        after = next((k for k in known if k > i), None)
        before = max((k for k in known if k < i), default=None)
        if before is None:
            values[i] = values[after]
        elif after is None:
            values[i] = values[before]
        else:
            values[i] = values[before] + (i - before) / (after - before) * (values[after] - values[before])
    return values


def torch_run(torch, values, split, init, args, max_updates=None):
    """Trains from `init` (a state_dict), returns (RMSE on the last rows, seconds of training, the losses of the
    first max_updates updates when given)."""
    nn = torch.nn
    torch.manual_seed(0)
    changes = [0.0] + [values[i] - values[i - 1] for i in range(1, len(values))]
    train = changes[1:split]
    mean = sum(train) / len(train)
    sd = math.sqrt(sum((c - mean) ** 2 for c in train) / len(train))
    z = torch.tensor([(c - mean) / sd for c in changes], dtype=torch.float32)
    rnn, head = nn.LSTM(1, args.hidden), nn.Linear(args.hidden, 1)
    rnn.load_state_dict({k[4:]: v for k, v in init.items() if k.startswith("rnn.")})
    head.load_state_dict({k[5:]: v for k, v in init.items() if k.startswith("head.")})
    optimizer = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=args.lr)
    # B contiguous streams of the training rows: input row t predicts row t + 1 (rewind's series_streams).
    steps = (split - 1) // args.batch
    inputs = torch.stack([z[b * steps:(b + 1) * steps] for b in range(args.batch)], 1).unsqueeze(2)
    targets = torch.stack([z[b * steps + 1:(b + 1) * steps + 1] for b in range(args.batch)], 1).unsqueeze(2)
    started, losses = time.perf_counter(), []
    for _ in range(args.epochs):
        state = None
        for begin in range(0, steps, args.k):
            x, y = inputs[begin:begin + args.k], targets[begin:begin + args.k]
            out, state = rnn(x, state)
            loss = ((head(out) - y) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            state = tuple(s.detach() for s in state)
            losses.append(loss.item())
            if max_updates and len(losses) == max_updates:
                return None, None, losses
    seconds = time.perf_counter() - started
    with torch.no_grad():  # one stream through the whole file; row t's prediction is row t + 1's value
        out, _ = rnn(z[:-1].reshape(-1, 1, 1))
        predicted = (head(out).reshape(-1) * sd + mean).tolist()
    errors = [values[t] + predicted[t] - values[t + 1] for t in range(split - 1, len(values) - 1)]
    return math.sqrt(sum(e * e for e in errors) / len(errors)), seconds, losses


def rewind_command(rewind, init_path, args):
    return [rewind, "train", "--data", DATA, "--key-columns", "date", "--targets", "co2", "--missing", "interpolate",
            "--difference", "--val-fraction", "0.2", "--hidden", str(args.hidden), "--k", str(args.k), "--batch",
            str(args.batch), "--lr", str(args.lr), "--eval-every", "0", "--init", init_path, "--sample-length", "0"]


def rewind_first_losses(rewind, init_path, args, updates, metrics):
    subprocess.run(rewind_command(rewind, init_path, args) + ["--max-updates", str(updates), "--metrics", metrics,
                                                              "--log-every", "1"],
                   check=True, capture_output=True, env=dict(os.environ, REWIND_NUM_THREADS="1"))
    with open(metrics) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


def rewind_run(rewind, init_path, args):
    out = subprocess.run(rewind_command(rewind, init_path, args) + ["--epochs", str(args.epochs)], check=True,
                         capture_output=True, text=True, env=dict(os.environ, REWIND_NUM_THREADS="1")).stdout
    rmse = float(re.search(r"validation \(final\):.*co2: RMSE ([0-9.e+-]+)", out).group(1))
    persistence = float(re.search(r"persistence: RMSE ([0-9.e+-]+)", out).group(1))
    seconds = float(re.search(r"trained \d+ updates \(to update \d+\) in ([0-9.]+) s", out).group(1))
    return rmse, persistence, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rewind", default=os.path.join(HERE, "..", "build", "bin", "rewind"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--k", type=int, default=52)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    if not torch_or_reexec(os.path.abspath(__file__)):
        return 0
    import torch
    torch.set_num_threads(1)
    values = read_series(DATA)
    split = int(len(values) * 0.8)
    print(f"co2_weekly.csv: {len(values)} rows, training on the first {split}; LSTM {args.hidden}, TBPTT({args.k}), "
          f"batch {args.batch}, Adam {args.lr}, {args.epochs} epochs, one thread each")
    ratios, speedups = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            torch.manual_seed(seed)
            init = {f"rnn.{k}": v for k, v in torch.nn.LSTM(1, args.hidden).state_dict().items()}
            init.update({f"head.{k}": v for k, v in torch.nn.Linear(args.hidden, 1).state_dict().items()})
            path = os.path.join(tmp, f"init{seed}.safetensors")
            save_safetensors(path, init)
            if seed == 1:  # the same function, update by update, before anything is timed
                first = torch_run(torch, values, split, init, args, max_updates=5)[2]
                ours = rewind_first_losses(args.rewind, path, args, 5, os.path.join(tmp, "m.jsonl"))
                worst = max(abs(a - b) / abs(b) for a, b in zip(ours, first))
                print(f"first 5 losses from the same weights: PyTorch {', '.join(f'{x:.6f}' for x in first)}; "
                      f"rewind {', '.join(f'{x:.6f}' for x in ours)}; largest relative difference {worst:.1e}")
                print(f"{'seed':>4} {'PyTorch RMSE':>13} {'rewind RMSE':>12} {'ratio':>7} {'persistence':>12} "
                      f"{'PyTorch s':>10} {'rewind s':>9} {'speed-up':>9}")
            theirs, torch_seconds, _ = torch_run(torch, values, split, init, args)
            ours, persistence, rewind_seconds = rewind_run(args.rewind, path, args)
            ratios.append(ours / theirs)
            speedups.append(torch_seconds / rewind_seconds)
            print(f"{seed:>4} {theirs:>13.4f} {ours:>12.4f} {ours / theirs:>7.4f} {persistence:>12.4f} "
                  f"{torch_seconds:>10.3f} {rewind_seconds:>9.3f} {torch_seconds / rewind_seconds:>8.1f}x")
    print(f"mean ratio of RMSEs {sum(ratios) / len(ratios):.4f}; speed-up {min(speedups):.1f}x to {max(speedups):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
