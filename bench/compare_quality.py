#!/usr/bin/env python3
"""Training quality against PyTorch: the same recipe on both sides, validation curves side by side.

    python3 bench/compare_quality.py char [--minutes 20] [--rewind build/bin/rewind] [--out DIR]
    python3 bench/compare_quality.py words [--minutes 20] ...
    python3 bench/compare_quality.py char|words --report --out DIR   # the comparison of an earlier run again
    python3 bench/compare_quality.py words --seed 2 --out DIR2        # other initial weights on both sides
    python3 bench/compare_quality.py words --report DIR DIR2 ...      # both sides averaged over runs

char: the bundled text at the character level (every byte a symbol), 2 x 512 LSTM, embedding 64, dropout 0.25
on the embedding's output, between the layers and before the head, batch 32, TBPTT(64), Adam 2e-3, clip 5.
words: ../shared/data/kjv.txt (or --data) at the word level (`--tokens words`, 10k vocabulary), 2 x 200 LSTM,
the "small" model of Zaremba et al. 2014: SGD lr 1, clip 5, TBPTT(35), batch 20, init U(-0.1, 0.1), the rate
halved when a validation run does not improve (torch's ReduceLROnPlateau(factor=0.5, patience=0) on the PyTorch
side, `--lr-schedule plateau --patience 0 --lr-gamma 0.5` on rewind's; word_language_model anneals the same way).

Both sides start from the same initial weights (PyTorch's initialisation, handed to rewind with --init), cut the
data the same way (the first 90% into B contiguous streams, the last 10% into 10 validation streams, each carried
from a zero state; rewind's layout) and validate every --eval-every updates. PyTorch runs first for --minutes,
then rewind for the same time or until it has made a quarter more updates than PyTorch (2 threads each;
PyTorch with compare_pytorch.py's settings). Each side writes metrics in rewind's format, so
`rewind plot DIR/rewind.jsonl --compare DIR/pytorch.jsonl --out q.png` draws them; the script prints the
validation losses at equal updates, their ratio, and how long each side took to reach PyTorch's best
validation loss. Needs PyTorch (apt-get install python3-torch, for /usr/bin/python3).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import TORCH_ENV, save_safetensors, torch_or_reexec  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = {
    "char": dict(data=os.path.join(HERE, "..", "data", "tinyshakespeare.txt"), tokens="bytes", vocab_size=0,
                 layers=2, hidden=512, embedding=64, dropout=0.25, batch=32, k=64, optimizer="adam", lr=2e-3,
                 clip=5.0, init_range=0.0, plateau=False, eval_every=250),
    "words": dict(data=os.path.join(HERE, "..", "..", "shared", "data", "kjv.txt"), tokens="words",
                  vocab_size=10000, layers=2, hidden=200, embedding=200, dropout=0.0, batch=20, k=35,
                  optimizer="sgd", lr=1.0, clip=5.0, init_range=0.1, plateau=True, eval_every=500),
}
VALIDATION_STREAMS, VAL_FRACTION = 10, 0.1


def tokenize(text, recipe):
    """rewind's tokenisation: bytes (every byte a symbol, sorted), or words with <eos> at line ends."""
    if recipe["tokens"] == "bytes":
        symbols = sorted(set(text))
        index = {s: i for i, s in enumerate(symbols)}
        return [index[b] for b in text], len(symbols)
    words = []
    for line in text.decode("utf-8").split("\n"):
        words.extend(line.split())
        words.append("<eos>")
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    kept = sorted(counts, key=lambda w: (-counts[w], w))[:recipe["vocab_size"]]
    index = {w: i for i, w in enumerate(kept)}
    unk = len(kept)
    return [index.get(w, unk) for w in words], len(kept) + 1


def streams(torch, ids, batch):
    per_row = (len(ids) - 1) // batch
    t = torch.tensor(ids)
    inputs = torch.stack([t[b * per_row:(b + 1) * per_row] for b in range(batch)], 1)
    targets = torch.stack([t[b * per_row + 1:(b + 1) * per_row + 1] for b in range(batch)], 1)
    return inputs, targets


class Net:
    def __init__(self, torch, vocab, r):
        nn = torch.nn
        self.embedding = nn.Embedding(vocab, r["embedding"])
        self.rnn = nn.LSTM(r["embedding"], r["hidden"], r["layers"], dropout=r["dropout"])
        self.head = nn.Linear(r["hidden"], vocab)
        self.drop = nn.Dropout(r["dropout"])
        self.modules = nn.ModuleDict({"embedding": self.embedding, "rnn": self.rnn, "head": self.head})
        self.all = nn.ModuleDict({"weights": self.modules, "drop": self.drop})  # eval() must reach the dropout
        if r["init_range"] > 0:
            for p in self.modules.parameters():
                nn.init.uniform_(p, -r["init_range"], r["init_range"])

    def forward(self, x, state):
        out, state = self.rnn(self.drop(self.embedding(x)), state)
        return self.head(self.drop(out)), state


def torch_worker(kind, seconds, init_path, metrics_path):
    import torch
    torch.set_num_threads(2)
    torch.manual_seed(RECIPES[kind].get("seed", 1))
    r = RECIPES[kind]
    with open(r["data"], "rb") as f:
        ids, vocab = tokenize(f.read(), r)
    split = int(len(ids) * (1 - VAL_FRACTION))
    inputs, targets = streams(torch, ids[:split], r["batch"])
    val_inputs, val_targets = streams(torch, ids[split:], VALIDATION_STREAMS)
    net = Net(torch, vocab, r)
    save_safetensors(init_path, net.modules.state_dict())
    params = list(net.modules.parameters())
    opt = (torch.optim.Adam(params, lr=r["lr"]) if r["optimizer"] == "adam" else torch.optim.SGD(params, lr=r["lr"]))
    zero = lambda b: tuple(torch.zeros(r["layers"], b, r["hidden"]) for _ in range(2))

    def validate():
        net.all.eval()
        total, count, state = 0.0, 0, zero(VALIDATION_STREAMS)
        with torch.no_grad():
            for start in range(0, val_inputs.shape[0], r["k"]):
                logits, state = net.forward(val_inputs[start:start + r["k"]], state)
                y = val_targets[start:start + r["k"]].reshape(-1)
                total += torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y, reduction="sum").item()
                count += y.numel()
        net.all.train()
        return total / count

    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0) if r["plateau"] else None
    out = open(metrics_path, "w")
    began, update = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        state = zero(r["batch"])
        for start in range(0, inputs.shape[0], r["k"]):
            opt.zero_grad()
            logits, state = net.forward(inputs[start:start + r["k"]], state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets[start:start + r["k"]].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, r["clip"])
            opt.step()
            state = tuple(s.detach() for s in state)
            update += 1
            now = time.perf_counter() - began
            out.write(json.dumps({"update": update, "loss": loss.item(), "lr": opt.param_groups[0]["lr"],
                                  "seconds": now}) + "\n")
            if update % r["eval_every"] == 0:
                loss = validate()
                out.write(json.dumps({"update": update, "eval_loss": loss}) + "\n")
                out.flush()
                if plateau:
                    plateau.step(loss)
            if now >= seconds:
                break
    out.close()


def run_rewind(rewind, kind, seconds, updates, init_path, metrics_path):
    r = RECIPES[kind]
    command = [rewind, "train", "--max-updates", str(updates), "--data", r["data"], "--layers", str(r["layers"]), "--hidden", str(r["hidden"]),
               "--embedding", str(r["embedding"]), "--batch", str(r["batch"]), "--k", str(r["k"]),
               "--optimizer", r["optimizer"], "--lr", str(r["lr"]), "--clip", str(r["clip"]),
               "--eval-every", str(r["eval_every"]), "--time-limit", str(seconds), "--init", init_path,
               "--metrics", metrics_path, "--log-every", "1", "--sample-length", "0", "--seed", str(r.get("seed", 1))]
    if r["dropout"] > 0:
        command += ["--option", f"dropout={r['dropout']}"]
    if r["tokens"] != "bytes":
        # rewind's --vocab-size counts <unk>: the vocab_size most frequent words and <unk>, as tokenize() here.
        command += ["--tokens", r["tokens"], "--vocab-size", str(r["vocab_size"] + 1)]
    if r["plateau"]:
        command += ["--lr-schedule", "plateau", "--patience", "0", "--lr-gamma", "0.5"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def read_curves(path):
    evals, seconds = {}, {}
    with open(path) as f:
        for record in map(json.loads, f):
            if "eval_loss" in record:
                evals[record["update"]] = record["eval_loss"]
            else:
                seconds[record["update"]] = record["seconds"]
    return evals, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(RECIPES))
    parser.add_argument("--rewind", default=os.path.join(HERE, "..", "build", "bin", "rewind"))
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--out", default="quality", help="directory for the metrics and initial weights")
    parser.add_argument("--hidden", type=int, help="override the recipe's hidden size (a quick trial)")
    parser.add_argument("--eval-every", type=int, help="override the recipe's validation interval")
    parser.add_argument("--data", help="override the recipe's data file")
    parser.add_argument("--dropout", type=float, help="override the recipe's dropout (0: a deterministic check)")
    parser.add_argument("--seed", type=int, help="seed of the initial weights (and dropout) on both sides")
    parser.add_argument("--report", nargs="*", metavar="DIR",
                        help="only compare the metrics already in --out, or averaged over the runs in DIR...")
    args = parser.parse_args()
    if args.report is not None:
        runs = args.report or [args.out]
        return report([os.path.join(d, "rewind.jsonl") for d in runs], [os.path.join(d, "pytorch.jsonl") for d in runs],
                      args.out)
    if not torch_or_reexec(__file__):
        return 0
    import torch
    r = RECIPES[args.kind]
    overrides = {"hidden": args.hidden, "eval_every": args.eval_every, "data": args.data, "dropout": args.dropout,
                 "seed": args.seed}
    for key, value in overrides.items():
        if value is not None:
            r[key] = value
    if r["tokens"] == "bytes" and args.hidden:
        r["embedding"] = min(r["embedding"], args.hidden)
    if args.kind == "words" and args.hidden:
        r["embedding"] = args.hidden
    os.makedirs(args.out, exist_ok=True)
    init, ours, theirs = (os.path.join(args.out, n) for n in ("init.safetensors", "rewind.jsonl", "pytorch.jsonl"))
    seconds = args.minutes * 60
    print(f"PyTorch {torch.__version__}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
          f"recipe {args.kind}: {json.dumps(r)}; {args.minutes} minutes per side", flush=True)
    env = dict(os.environ, **TORCH_ENV, REWIND_QUALITY_RECIPE=json.dumps(r))
    subprocess.run([sys.executable, __file__, "--worker", args.kind, str(seconds), init, theirs], env=env, check=True)
    _, theirs_time = read_curves(theirs)
    # rewind stops at the same time or a quarter more updates than PyTorch made, whichever comes first: enough
    # to compare every update PyTorch validated at and to reach its best loss, without a second 20 minutes.
    run_rewind(os.path.abspath(args.rewind), args.kind, seconds, max(theirs_time) * 5 // 4, init, ours)
    return report([ours], [theirs], args.out)


def mean_curves(paths):
    """The validation losses and times of several runs, averaged at the updates every run has."""
    curves = [read_curves(p) for p in paths]
    mean = lambda series: {u: sum(c[u] for c in series) / len(series) for u in set.intersection(*map(set, series))}
    return mean([c[0] for c in curves]), mean([c[1] for c in curves])


def report(ours_paths, theirs_paths, out):
    ours_eval, ours_time = mean_curves(ours_paths)
    theirs_eval, theirs_time = mean_curves(theirs_paths)
    ours = ours_paths[0]
    theirs = theirs_paths[0]
    if len(ours_paths) > 1:
        print(f"averaged over {len(ours_paths)} runs: {', '.join(os.path.dirname(p) for p in ours_paths)}")
    print(f"\n| update | rewind validation | PyTorch validation | rewind / PyTorch | perplexity ratio | rewind s "
          f"| PyTorch s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    worst = worst_perplexity = 0.0
    for u in sorted(set(ours_eval) & set(theirs_eval)):
        ratio = ours_eval[u] / theirs_eval[u]
        perplexity_ratio = math.exp(ours_eval[u] - theirs_eval[u])
        worst = max(worst, abs(ratio - 1))
        worst_perplexity = max(worst_perplexity, abs(perplexity_ratio - 1))
        print(f"| {u} | {ours_eval[u]:.4f} | {theirs_eval[u]:.4f} | {ratio:.4f} | {perplexity_ratio:.4f} "
              f"| {ours_time.get(u, math.nan):.0f} | {theirs_time.get(u, math.nan):.0f} |")
    if not theirs_eval:
        print("PyTorch made no validation run: lengthen --minutes or shorten --eval-every")
        return 1
    best_update = min(theirs_eval, key=theirs_eval.get)
    best = theirs_eval[best_update]
    reached = [u for u in sorted(ours_eval) if ours_eval[u] <= best]
    print(f"\nlargest difference at equal updates: {100 * worst:.2f}% in loss, {100 * worst_perplexity:.2f}% in "
          f"perplexity")
    print(f"PyTorch's best validation loss {best:.4f} at update {best_update}, {theirs_time[best_update]:.0f} s")
    if reached:
        print(f"rewind reached it at update {reached[0]}, {ours_time[reached[0]]:.0f} s "
              f"({100 * ours_time[reached[0]] / theirs_time[best_update]:.0f}% of PyTorch's time)")
    else:
        print(f"rewind did not reach it (best {min(ours_eval.values()):.4f})")
    print(f"plot: rewind plot {ours} --compare {theirs} --out {os.path.join(out, 'quality.png')}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind = sys.argv[2]
        RECIPES[kind] = json.loads(os.environ["REWIND_QUALITY_RECIPE"])
        torch_worker(kind, float(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        sys.exit(main())
