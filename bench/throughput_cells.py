#!/usr/bin/env python3
"""Training throughput of the zoo's cells: rewind against the same cells as PyTorch eager modules and under
TorchScript.

    python3 bench/throughput_cells.py --cells DIR [--hidden 64,256] [--updates 40] [--repeats 3]

DIR holds the zoo's plugins (examples/cells built against an installed rewind, see examples/cells/README.md).
The configuration is a character model as `rewind train` runs it: embedding 64, one layer of the cell, a
linear head, batch 32, TBPTT(64), Adam 2e-3, float32, on the bundled text. rewind runs
`rewind train --plugin ... --model NAME`; PyTorch runs the cell's equations (as in each zoo file's header) in
a loop over the window's steps, eager and under torch.jit.script, 2 threads, with compare_pytorch.py's
settings. Throughput is time steps x batch per second over the updates after the first 5 (warm-up); the three
sides alternate, the median of --repeats runs is kept. Needs PyTorch (apt-get install python3-torch, for
/usr/bin/python3); without it, says so and exits 0.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import TORCH_ENV, torch_or_reexec  # noqa: E402

CELLS = ["min_gru", "ind_rnn", "peephole_lstm", "layer_norm_lstm", "mogrifier_lstm", "sru", "zoneout_gru"]
EMBEDDING, BATCH, K, LR, WARMUP = 64, 32, 64, 2e-3, 5
TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tinyshakespeare.txt")


def torch_cells(torch):
    """nn.Modules whose forward(xs [T, B, E], h, c) runs the cell over T steps; c is unused by 1-state cells."""
    nn, F = torch.nn, torch.nn.functional
    from typing import Tuple

    def uniform(*shape, bound):
        return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

    class MinGru(nn.Module):  # z = sigma(W_z x + b_z); h = (1 - z) h + z (W_h x + b_h)
        def __init__(self, e: int, h: int):
            super().__init__()
            self.w, self.b, self.hidden = uniform(2 * h, e, bound=h ** -0.5), uniform(2 * h, bound=h ** -0.5), h

        def forward(self, xs, h, c) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            outs = []
            for t in range(xs.shape[0]):
                g = F.linear(xs[t], self.w, self.b)
                z = torch.sigmoid(g[:, :self.hidden])
                h = (1 - z) * h + z * g[:, self.hidden:]
                outs.append(h)
            return torch.stack(outs), h, c

    class IndRnn(nn.Module):  # h = relu(W x + b + u * h)
        def __init__(self, e: int, h: int):
            super().__init__()
            self.w, self.u, self.b = uniform(h, e, bound=h ** -0.5), uniform(h, bound=1.0), uniform(h, bound=h ** -0.5)

        def forward(self, xs, h, c) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            outs = []
            for t in range(xs.shape[0]):
                h = torch.relu(F.linear(xs[t], self.w, self.b) + self.u * h)
                outs.append(h)
            return torch.stack(outs), h, c

    class PeepholeLstm(nn.Module):  # i, f see c; o sees the new c
        def __init__(self, e: int, h: int):
            super().__init__()
            b = h ** -0.5
            self.w, self.u, self.b = uniform(4 * h, e, bound=b), uniform(4 * h, h, bound=b), uniform(4 * h, bound=b)
            self.p, self.hidden = uniform(3 * h, bound=b), h

        def forward(self, xs, h, c) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            outs, n = [], self.hidden
            for t in range(xs.shape[0]):
                g = F.linear(xs[t], self.w, self.b) + F.linear(h, self.u)
                i = torch.sigmoid(g[:, :n] + self.p[:n] * c)
                f = torch.sigmoid(g[:, n:2 * n] + self.p[n:2 * n] * c)
                c = f * c + i * torch.tanh(g[:, 2 * n:3 * n])
                h = torch.sigmoid(g[:, 3 * n:] + self.p[2 * n:] * c) * torch.tanh(c)
                outs.append(h)
            return torch.stack(outs), h, c

    class LayerNormLstm(nn.Module):  # LN(W x; g_x) + LN(U h; g_h) + b; h = o tanh(LN(c; g_c, b_c))
        def __init__(self, e: int, h: int):
            super().__init__()
            b = h ** -0.5
            self.w, self.u, self.b = uniform(4 * h, e, bound=b), uniform(4 * h, h, bound=b), uniform(4 * h, bound=b)
            self.gx, self.gh = nn.Parameter(torch.ones(4 * h)), nn.Parameter(torch.ones(4 * h))
            self.gc, self.bc, self.hidden = nn.Parameter(torch.ones(h)), nn.Parameter(torch.zeros(h)), h

        def forward(self, xs, h, c) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            outs, n = [], self.hidden
            for t in range(xs.shape[0]):
                g = (F.layer_norm(F.linear(xs[t], self.w), [4 * n], self.gx, None, 1e-5)
                     + F.layer_norm(F.linear(h, self.u), [4 * n], self.gh, None, 1e-5) + self.b)
                c = torch.sigmoid(g[:, n:2 * n]) * c + torch.sigmoid(g[:, :n]) * torch.tanh(g[:, 2 * n:3 * n])
                h = torch.sigmoid(g[:, 3 * n:]) * torch.tanh(F.layer_norm(c, [n], self.gc, self.bc, 1e-5))
                outs.append(h)
            return torch.stack(outs), h, c

    class MogrifierLstm(nn.Module):  # 5 rounds: x = 2 sigma(Q h) x, h = 2 sigma(R x) h; then an LSTM step
        def __init__(self, e: int, h: int):
            super().__init__()
            b = h ** -0.5
            self.w, self.u, self.b = uniform(4 * h, e, bound=b), uniform(4 * h, h, bound=b), uniform(4 * h, bound=b)
            self.q = nn.ParameterList([uniform(e, h, bound=b) for _ in range(3)])
            self.r = nn.ParameterList([uniform(h, e, bound=b) for _ in range(2)])
            self.hidden = h

        def forward(self, xs, h, c) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            outs, n = [], self.hidden
            q0, q1, q2 = self.q[0], self.q[1], self.q[2]
            r0, r1 = self.r[0], self.r[1]
            for t in range(xs.shape[0]):
                x = 2 * torch.sigmoid(F.linear(h, q0)) * xs[t]
                h = 2 * torch.sigmoid(F.linear(x, r0)) * h
                x = 2 * torch.sigmoid(F.linear(h, q1)) * x
                h = 2 * torch.sigmoid(F.linear(x, r1)) * h
                x = 2 * torch.sigmoid(F.linear(h, q2)) * x
                g = F.linear(x, self.w, self.b) + F.linear(h, self.u)
                c = torch.sigmoid(g[:, n:2 * n]) * c + torch.sigmoid(g[:, :n]) * torch.tanh(g[:, 2 * n:3 * n])
                h = torch.sigmoid(g[:, 3 * n:]) * torch.tanh(c)
                outs.append(h)
            return torch.stack(outs), h, c

    class Sru(nn.Module):  # f, r from W x + v * c + b; c = f c + (1 - f) W_c x; h = r c + (1 - r) skip(x)
        def __init__(self, e: int, h: int):
            super().__init__()
            b = h ** -0.5
            self.w, self.v, self.b = uniform(3 * h, e, bound=b), uniform(2 * h, bound=b), uniform(2 * h, bound=b)
            self.skip, self.hidden = uniform(h, e, bound=b), h
            self.project = e != h

        def forward(self, xs, h, c) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            outs, n = [], self.hidden
            for t in range(xs.shape[0]):
                wx = F.linear(xs[t], self.w)
                f = torch.sigmoid(wx[:, n:2 * n] + self.b[:n] + self.v[:n] * c)
                r = torch.sigmoid(wx[:, 2 * n:] + self.b[n:] + self.v[n:] * c)
                c = f * c + (1 - f) * wx[:, :n]
                highway = F.linear(xs[t], self.skip) if self.project else xs[t]
                h = r * c + (1 - r) * highway
                outs.append(h)
            return torch.stack(outs), h, c

    class ZoneoutGru(nn.Module):  # PyTorch's GRU step; each unit keeps its h with probability 0.1 (training)
        def __init__(self, e: int, h: int):
            super().__init__()
            b = h ** -0.5
            self.w, self.u = uniform(3 * h, e, bound=b), uniform(3 * h, h, bound=b)
            self.bi, self.bh, self.hidden, self.p = uniform(3 * h, bound=b), uniform(3 * h, bound=b), h, 0.1

        def forward(self, xs, h, c) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            outs, n = [], self.hidden
            for t in range(xs.shape[0]):
                gi, gh = F.linear(xs[t], self.w, self.bi), F.linear(h, self.u, self.bh)
                r = torch.sigmoid(gi[:, :n] + gh[:, :n])
                z = torch.sigmoid(gi[:, n:2 * n] + gh[:, n:2 * n])
                cand = torch.tanh(gi[:, 2 * n:] + r * gh[:, 2 * n:])
                update = (1 - z) * cand + z * h
                moves = torch.bernoulli(torch.full_like(h, 1 - self.p))
                h = torch.where(moves > 0, update, h)
                outs.append(h)
            return torch.stack(outs), h, c

    return {"min_gru": MinGru, "ind_rnn": IndRnn, "peephole_lstm": PeepholeLstm, "layer_norm_lstm": LayerNormLstm,
            "mogrifier_lstm": MogrifierLstm, "sru": Sru, "zoneout_gru": ZoneoutGru}


def torch_worker(cell, hidden, updates, scripted):
    import torch
    torch.set_num_threads(2)
    torch.manual_seed(1)
    with open(TEXT, "rb") as f:
        data = f.read()
    symbols = sorted(set(data))
    ids = torch.tensor([symbols.index(b) for b in data[:BATCH * (K * updates + 1)]])
    per_row = (len(ids) - 1) // BATCH  # B contiguous streams, the target the next character, as rewind
    inputs = torch.stack([ids[b * per_row:(b + 1) * per_row] for b in range(BATCH)], 1)
    targets = torch.stack([ids[b * per_row + 1:(b + 1) * per_row + 1] for b in range(BATCH)], 1)
    vocab = len(symbols)
    embedding, head = torch.nn.Embedding(vocab, EMBEDDING), torch.nn.Linear(hidden, vocab)
    rnn = torch_cells(torch)[cell](EMBEDDING, hidden)
    params = list(embedding.parameters()) + list(rnn.parameters()) + list(head.parameters())
    if scripted:
        rnn = torch.jit.script(rnn)
    opt = torch.optim.Adam(params, lr=LR)
    h, c = torch.zeros(BATCH, hidden), torch.zeros(BATCH, hidden)
    began = None
    for u in range(updates):
        if u == WARMUP:
            began = time.perf_counter()
        window = slice(u * K, (u + 1) * K)
        opt.zero_grad()
        out, h, c = rnn(embedding(inputs[window]), h, c)
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, vocab), targets[window].reshape(-1))
        loss.backward()
        opt.step()
        h, c = h.detach(), c.detach()
    seconds = time.perf_counter() - began
    print(json.dumps({"steps_x_batch_per_second": (updates - WARMUP) * K * BATCH / seconds}))


def run_torch(cell, hidden, updates, scripted):
    env = dict(os.environ, **TORCH_ENV)
    out = subprocess.run([sys.executable, __file__, "--worker", cell, str(hidden), str(updates), str(int(scripted))],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["steps_x_batch_per_second"]


def run_rewind(rewind, plugins, cell, hidden, updates):
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.jsonl")
        subprocess.run([rewind, "train", "--plugin", os.path.join(plugins, f"librewind_model_{cell}.so"),
                        "--model", cell, "--data", TEXT, "--embedding", str(EMBEDDING), "--hidden", str(hidden),
                        "--batch", str(BATCH), "--k", str(K), "--optimizer", "adam", "--lr", str(LR),
                        "--max-updates", str(updates), "--eval-every", "0", "--val-fraction", "0",
                        "--sample-length", "0", "--metrics", metrics, "--log-every", "1"], check=True,
                       capture_output=True)
        with open(metrics) as f:
            seconds = {r["update"]: r["seconds"] for r in map(json.loads, f) if "loss" in r}
    return (updates - WARMUP) * K * BATCH / (seconds[updates] - seconds[WARMUP])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rewind", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "rewind"))
    parser.add_argument("--cells", required=True, help="directory of the zoo's built plugins")
    parser.add_argument("--only", default=",".join(CELLS), help="cells to run, comma-separated")
    parser.add_argument("--hidden", default="64,256")
    parser.add_argument("--updates", type=int, default=40, help="updates per run (the first 5 are not timed)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per configuration (median kept)")
    args = parser.parse_args()
    if not torch_or_reexec(__file__):
        return 0
    import torch
    rewind = os.path.abspath(args.rewind)
    print(f"PyTorch {torch.__version__}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}")
    print(f"time steps x batch / s: embedding {EMBEDDING}, batch {BATCH}, TBPTT({K}), Adam, float32, "
          f"{args.updates} updates (first {WARMUP} not timed), medians of {args.repeats} alternating runs")
    print(f"| cell | hidden | rewind | PyTorch eager | TorchScript | rewind / eager | rewind / TorchScript |")
    print(f"|---|---:|---:|---:|---:|---:|---:|")
    median = lambda xs: sorted(xs)[len(xs) // 2]
    for hidden in map(int, args.hidden.split(",")):
        for cell in args.only.split(","):
            ours, eager, script = [], [], []
            for _ in range(args.repeats):
                ours.append(run_rewind(rewind, args.cells, cell, hidden, args.updates))
                eager.append(run_torch(cell, hidden, args.updates, False))
                script.append(run_torch(cell, hidden, args.updates, True))
            r, e, s = median(ours), median(eager), median(script)
            print(f"| {cell} | {hidden} | {r:.0f} | {e:.0f} | {s:.0f} | {r / e:.2f} | {r / s:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        cell, hidden, updates, scripted = sys.argv[2:6]
        torch_worker(cell, int(hidden), int(updates), scripted == "1")
    else:
        sys.exit(main())
