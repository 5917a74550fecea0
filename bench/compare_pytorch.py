#!/usr/bin/env python3
"""rewind vs PyTorch on the same recurrent training configurations, side by side.

    python3 bench/compare_pytorch.py [--quick] [--repeats N] [--rewind build/bin/rewind]

Needs PyTorch (Debian: apt-get install python3-torch; it installs for /usr/bin/python3, which this script
switches to when the python3 on PATH has no torch). Without it, the script says so and exits 0.

For each cell (LSTM, GRU, RNN, PyTorch's equations), hidden size and trainer (truncated k=20 and full), both
sides train one pass over T time steps of B=32 parallel streams of random tokens (64 symbols, embedding 64,
linear head, softmax cross-entropy, SGD): PyTorch with nn.Embedding + nn.LSTM/GRU/RNN + nn.Linear, one
module call per window and h.detach() between windows, float32, 2 threads, at its best settings here
(OMP_WAIT_POLICY=PASSIVE, glibc malloc thresholds raised); rewind with `rewind bench-memory`. Runs
alternate between the two sides. Each figure is printed with the ratio rewind / PyTorch.

Before timing, one small configuration checks that both produce the same losses for their first two
updates from the same initial weights (handed to rewind as .safetensors, PyTorch names) on the same text.
"""
import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time

TORCH_ENV = {
    "OMP_NUM_THREADS": "2",
    "OMP_WAIT_POLICY": "PASSIVE",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184",
}


def have_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def torch_or_reexec(script):
    """Whether torch imports here. If not, and Debian's /usr/bin/python3 has it (python3-torch installs there), runs
    `script` again under that interpreter (does not return); otherwise says how to install it."""
    if have_torch():
        return True
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        if subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0:
            os.execv("/usr/bin/python3", ["/usr/bin/python3", script] + sys.argv[1:])
    print("PyTorch is not installed; install it with: apt-get install python3-torch   (then run this again)")
    return False



# ---- safetensors, written by hand (the format is 8 bytes of header length, a JSON header, raw data) ----

def save_safetensors(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# ---- the PyTorch side ----

class Net:
    def __init__(self, torch, cell, vocab, embedding, hidden):
        nn = torch.nn
        self.embedding = nn.Embedding(vocab, embedding)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](embedding, hidden)
        self.head = nn.Linear(hidden, vocab)
        self.cell = cell
        self.modules = nn.ModuleDict({"embedding": self.embedding, "rnn": self.rnn, "head": self.head})

    def zero_state(self, torch, batch, hidden):
        h = torch.zeros(1, batch, hidden)
        return (h, torch.zeros(1, batch, hidden)) if self.cell == "lstm" else h


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def torch_train(torch, net, inputs, targets, k, lr, hidden):
    """One pass of TBPTT(k) (k >= T: full BPTT). inputs, targets: [T, B] long. Returns the update losses."""
    opt = torch.optim.SGD(net.modules.parameters(), lr=lr)
    steps, batch = inputs.shape
    state = net.zero_state(torch, batch, hidden)
    losses = []
    for start in range(0, steps, k):
        end = min(start + k, steps)
        opt.zero_grad()
        out, state = net.rnn(net.embedding(inputs[start:end]), state)
        logits = net.head(out)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[start:end].reshape(-1))
        loss.backward()
        opt.step()
        state = detach(state)
        losses.append(loss.item())
    return losses


def torch_worker(args):
    import torch
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    net = Net(torch, args.cell, args.vocab, args.vocab, args.hidden)
    inputs = torch.randint(0, args.vocab, (args.steps, args.batch))
    targets = torch.randint(0, args.vocab, (args.steps, args.batch))
    k = args.k if args.k > 0 else args.steps
    began = time.perf_counter()
    torch_train(torch, net, inputs, targets, k, 1e-3, args.hidden)
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "steps_x_batch_per_second": args.steps * args.batch / seconds,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def run_torch(cell, hidden, steps, batch, vocab, k, seed=1):
    env = dict(os.environ, **TORCH_ENV)
    out = subprocess.run([sys.executable, __file__, "--worker", cell, str(hidden), str(steps), str(batch), str(vocab),
                          str(k), str(seed)], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_rewind(rewind, cell, hidden, steps, batch, vocab, k, precision="f32"):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        spec = f"truncated:{k}" if k > 0 else "full"
        subprocess.run([rewind, "bench-memory", "--model", cell, "--seq", str(steps), "--trainers", spec, "--hidden",
                        str(hidden), "--batch", str(batch), "--input", str(vocab), "--precision", precision,
                        "--json", out],
                       check=True, capture_output=True)
        with open(out) as f:
            return json.load(f)[0]


# ---- the same-loss check ----

def same_loss_check(torch, rewind):
    torch.manual_seed(3)
    vocab, hidden, batch, steps, k = 5, 8, 4, 10, 5
    symbols = "abcde"
    rng = torch.Generator().manual_seed(4)
    text = symbols + "".join(symbols[int(i)] for i in torch.randint(0, vocab, (batch * steps + 1 - vocab,), generator=rng))
    ids = torch.tensor([symbols.index(c) for c in text])
    per_row = (len(ids) - 1) // batch  # rewind's text_streams: B contiguous pieces, target = next character
    inputs = torch.stack([ids[b * per_row: b * per_row + per_row] for b in range(batch)], 1)
    targets = torch.stack([ids[b * per_row + 1: b * per_row + per_row + 1] for b in range(batch)], 1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data, weights, metrics = (os.path.join(tmp, n) for n in ("text.txt", "init.safetensors", "m.jsonl"))
        with open(data, "w") as f:
            f.write(text)
        for cell in ("lstm", "gru", "rnn"):
            net = Net(torch, cell, vocab, hidden, hidden)
            save_safetensors(weights, net.modules.state_dict())
            theirs = torch_train(torch, net, inputs, targets, k, 0.5, hidden)[:2]
            if os.path.exists(metrics):
                os.remove(metrics)
            subprocess.run([rewind, "train", "--model", cell, "--data", data, "--val-fraction", "0", "--batch",
                            str(batch), "--hidden", str(hidden), "--embedding", str(hidden), "--trainer", "truncated",
                            "--k", str(k), "--optimizer", "sgd", "--lr", "0.5", "--max-updates", "2", "--init", weights,
                            "--metrics", metrics, "--sample-length", "0", "--eval-every", "0", "--log-every", "1"],
                           check=True, capture_output=True)
            with open(metrics) as f:
                ours = [json.loads(line)["loss"] for line in f if '"loss"' in line]
            results[cell] = (ours, theirs)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rewind", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "rewind"))
    parser.add_argument("--quick", action="store_true", help="hidden 64 and 256 only")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per configuration (median kept)")
    parser.add_argument("--steps", type=int, default=1000, help="T")
    parser.add_argument("--cells", default="lstm,gru,rnn")
    args = parser.parse_args()

    if not torch_or_reexec(__file__):
        return 0
    import torch
    rewind = os.path.abspath(args.rewind)
    if not os.access(rewind, os.X_OK):
        print(f"rewind executable not found at {rewind}; build it first (bash scripts/build.sh) or pass --rewind")
        return 1

    print(f"PyTorch {torch.__version__}, {sys.executable}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print("\nSame losses from the same initial weights (first two updates, TBPTT(5), SGD lr 0.5):")
    for cell, (ours, theirs) in same_loss_check(torch, rewind).items():
        worst = max(abs(a - b) for a, b in zip(ours, theirs))
        print(f"  {cell:5s} rewind {', '.join(f'{x:.6f}' for x in ours)}  PyTorch {', '.join(f'{x:.6f}' for x in theirs)}"
              f"  max difference {worst:.1e}  {'ok' if worst < 1e-4 else 'MISMATCH'}")

    hiddens = [64, 256] if args.quick else [64, 256, 1024]
    batch, vocab, steps = 32, 64, args.steps
    print(f"\nThroughput, time steps x batch / s (T = {steps}, batch {batch}, input {vocab}, float32, 2 threads;"
          f" medians of {args.repeats} alternating run(s)):")
    print(f"{'cell':5s} {'hidden':>6s} {'trainer':>13s} {'rewind':>10s} {'PyTorch':>10s} {'ratio':>7s}"
          f" {'rewind RSS MiB':>15s} {'PyTorch RSS MiB':>16s}")
    for cell in args.cells.split(","):
        for hidden in hiddens:
            for k in (20, 0):
                ours, theirs = [], []
                for _ in range(args.repeats):
                    ours.append(run_rewind(rewind, cell, hidden, steps, batch, vocab, k))
                    theirs.append(run_torch(cell, hidden, steps, batch, vocab, k))
                median = lambda runs, key: sorted(r[key] for r in runs)[len(runs) // 2]
                r, t = median(ours, "steps_x_batch_per_second"), median(theirs, "steps_x_batch_per_second")
                print(f"{cell:5s} {hidden:6d} {('truncated:20' if k else 'full'):>13s} {r:10.0f} {t:10.0f} {r / t:7.2f}"
                      f" {median(ours, 'peak_rss_bytes') / 2**20:15.0f} {median(theirs, 'peak_rss_bytes') / 2**20:16.0f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        cell, hidden, steps, batch, vocab, k, seed = sys.argv[2:9]
        torch_worker(argparse.Namespace(cell=cell, hidden=int(hidden), steps=int(steps), batch=int(batch),
                                        vocab=int(vocab), k=int(k), seed=int(seed)))
    else:
        sys.exit(main())
