#!/usr/bin/env python3
"""What fraction of this machine's floating-point peak rewind's training reaches.

    python3 bench/peak.py [--rewind build/bin/rewind] [--quick] [--repeats N] [--bf16]

First build/bin/peak_fma measures the peak: independent chains of FMAs in registers, AVX2 and (where the CPU
has it) AVX-512, on one core and on all of them, and bf16 dot products where the CPU has AVX512_BF16. Then,
for every row of compare_pytorch.py (LSTM, GRU, RNN; hidden 64, 256, 1024; truncated:20 and full; T 1000,
batch 32, 64 symbols, embedding 64; `rewind bench-memory`, 2 threads) and for the character LM (1 x 256
LSTM, embedding 64, batch 32, TBPTT(64), Adam, on the bundled text; `rewind train`), rewind's throughput times
the flops of one time step of one row gives the GFLOP/s achieved, and its fraction of the FP32 peak of every
core (AVX-512's where the CPU has it, else AVX2's) and of AVX2's.

Flops per time step and batch row: the cell's two products, 2 G H (E + H) (G gates: 1 RNN, 3 GRU, 4 LSTM; E
the input width), and the head's, 2 H V, forward; backward twice that (input and weight gradients): 6 (G H
(E + H) + H V) in all. The pointwise work, the embedding and the optimizer are O(H), not O(H^2), and left out.

With --bf16 every row also runs with --precision bf16 (products on AVX512_BF16, sums in f32), alternating with
f32: its rate, GFLOP/s, fraction of the bf16 peak and speed-up over f32; and the character LM's validation
loss after the same updates in both precisions. docs/performance.md.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import run_rewind  # noqa: E402  (the same rows, run the same way)

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def flops_per_step(cell, hidden, inputs, outputs):
    return 6 * (GATES[cell] * hidden * (inputs + hidden) + hidden * outputs)


def char_lm(rewind, data, updates, precision="f32"):
    """The character LM's time steps x batch per second, its vocabulary and its validation loss after the
    updates (`rewind train` records all three)."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.jsonl")
        subprocess.run([rewind, "train", "--data", data, "--hidden", "256", "--embedding", "64", "--batch", "32",
                        "--k", "64", "--optimizer", "adam", "--max-updates", str(updates), "--eval-every", "0",
                        "--sample-length", "0", "--precision", precision, "--save", os.path.join(tmp, "run"),
                        "--metrics", metrics], check=True, capture_output=True)
        records = [json.loads(line) for line in open(metrics)]
        rate = [r for r in records if "steps_x_batch_per_second" in r][-1]["steps_x_batch_per_second"]
        loss = [r for r in records if "eval_loss" in r][-1]["eval_loss"]
        with open(os.path.join(tmp, "run", "model.safetensors"), "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        vocab = header["head.bias"]["shape"][0]
        return rate, vocab, loss


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rewind", default=os.path.join(here, "..", "build", "bin", "rewind"))
    parser.add_argument("--quick", action="store_true", help="hidden 64 and 256 only")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (median kept)")
    parser.add_argument("--steps", type=int, default=1000, help="T")
    parser.add_argument("--bf16", action="store_true", help="each row in bf16 products too, side by side")
    parser.add_argument("--lm-updates", type=int, default=150, help="the character LM's updates")
    args = parser.parse_args()
    rewind = os.path.abspath(args.rewind)
    probe = os.path.join(os.path.dirname(rewind), "peak_fma")
    if not os.access(probe, os.X_OK):
        print(f"{probe} not found (x86 only; build it with the benchmarks)")
        return 1

    peak = json.loads(subprocess.run([probe], check=True, capture_output=True, text=True).stdout)
    fp32 = peak.get("fp32_avx512_all", peak["fp32_avx2_all"])
    avx2 = peak["fp32_avx2_all"]
    print(f"peak of {peak['threads']} cores, GFLOP/s: FP32 AVX2 {avx2:.0f} (one core {peak['fp32_avx2_1']:.0f})"
          + (f", FP32 AVX-512 {peak['fp32_avx512_all']:.0f} (one core {peak['fp32_avx512_1']:.0f})"
             if "fp32_avx512_all" in peak else ", no AVX-512")
          + (f", bf16 AVX512_BF16 {peak['bf16_avx512_all']:.0f}" if "bf16_avx512_all" in peak else ", no AVX512_BF16"))
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; medians of {args.repeats} run(s)\n")
    bf16_peak = peak.get("bf16_avx512_all")
    if args.bf16 and bf16_peak is None:
        print("--bf16: this CPU has no AVX512_BF16")
        return 1
    print(f"{'row':32s} {'steps x B/s':>12s} {'GFLOP/s':>8s} {'of FP32 peak':>13s} {'of AVX2 peak':>13s}"
          + (f" {'bf16 steps x B/s':>17s} {'GFLOP/s':>8s} {'of bf16 peak':>13s} {'bf16 / f32':>11s}" if args.bf16 else ""))

    def row(name, rate, flops, bf16_rate=None):
        achieved = rate * flops / 1e9
        line = f"{name:32s} {rate:12.0f} {achieved:8.1f} {achieved / fp32:12.0%} {achieved / avx2:13.0%}"
        if bf16_rate is not None:
            fast = bf16_rate * flops / 1e9
            line += f" {bf16_rate:17.0f} {fast:8.1f} {fast / bf16_peak:12.0%} {bf16_rate / rate:11.2f}"
        print(line, flush=True)

    def median(values):
        return sorted(values)[len(values) // 2]

    precisions = ["f32", "bf16"] if args.bf16 else ["f32"]
    hiddens = [64, 256] if args.quick else [64, 256, 1024]
    batch, vocab = 32, 64
    for cell in ("lstm", "gru", "rnn"):
        for hidden in hiddens:
            for k in (20, 0):
                runs = {p: [] for p in precisions}
                for _ in range(args.repeats):  # alternating, so that a slow spell of the machine hits both
                    for p in precisions:
                        runs[p].append(run_rewind(rewind, cell, hidden, args.steps, batch, vocab, k, p)
                                       ["steps_x_batch_per_second"])
                row(f"{cell} {hidden} {'truncated:20' if k else 'full'}", median(runs["f32"]),
                    flops_per_step(cell, hidden, vocab, vocab), median(runs["bf16"]) if args.bf16 else None)
    data = os.path.join(here, "..", "data", "tinyshakespeare.txt")
    lm = {p: [] for p in precisions}
    for _ in range(args.repeats):
        for p in precisions:
            lm[p].append(char_lm(rewind, data, args.lm_updates, p))
    rate = {p: median([r[0] for r in lm[p]]) for p in precisions}
    lm_vocab = lm["f32"][0][1]
    row("char LM 1 x 256, E 64, TBPTT(64)", rate["f32"], flops_per_step("lstm", 256, 64, lm_vocab),
        rate["bf16"] if args.bf16 else None)
    if args.bf16:
        f32_loss, bf16_loss = lm["f32"][0][2], lm["bf16"][0][2]
        print(f"\nchar LM validation loss after {args.lm_updates} updates: f32 {f32_loss:.4f}, bf16 {bf16_loss:.4f}"
              f" ({(bf16_loss - f32_loss) / f32_loss:+.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
