#!/usr/bin/env python3
"""The zoo's cells against the same cells written in PyTorch: the same losses from the same weights.

    python3 bench/compare_cells.py --cells DIR [--rewind build/bin/rewind]

DIR holds the zoo's plugins (examples/cells built against an installed rewind, see examples/cells/README.md).
For minGRU, LayerNorm LSTM and Mogrifier LSTM, written here as PyTorch code from their papers' equations,
the same initial weights (handed to rewind as .safetensors under the plugin's parameter names) on the same
text give the same losses for the first three TBPTT(5) updates with SGD; the largest difference is printed
(tolerance 1e-5). Needs PyTorch (apt-get install python3-torch, for /usr/bin/python3); without it, says so
and exits 0.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import save_safetensors, torch_or_reexec  # noqa: E402


def cells(torch):
    F = torch.nn.functional
    sig, tanh = torch.sigmoid, torch.tanh

    def min_gru(p, x, state, hidden):
        (h,) = state
        g = x @ p["rnn.weight_ih_l0"].T + p["rnn.bias_ih_l0"]
        z = sig(g[:, :hidden])
        return ((1 - z) * h + z * g[:, hidden:],)

    def lstm_tail(p, gates, c, hidden, cell_norm=None):
        i, f, g, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
        c = sig(f) * c + sig(i) * tanh(g)
        return sig(o) * tanh(cell_norm(c) if cell_norm else c), c

    def layer_norm_lstm(p, x, state, hidden):
        h, c = state
        ln = lambda v, gain, bias=None: F.layer_norm(v, v.shape[-1:], gain, bias, 1e-5)
        gates = (ln(x @ p["rnn.weight_ih_l0"].T, p["rnn.ln_ih.weight_l0"])
                 + ln(h @ p["rnn.weight_hh_l0"].T, p["rnn.ln_hh.weight_l0"]) + p["rnn.bias_l0"])
        return lstm_tail(p, gates, c, hidden, lambda v: ln(v, p["rnn.ln_c.weight_l0"], p["rnn.ln_c.bias_l0"]))

    def mogrifier_lstm(p, x, state, hidden):
        h, c = state
        for i in range(1, 6):
            if i % 2:
                x = 2 * sig(h @ p[f"rnn.weight_q{i}_l0"].T) * x
            else:
                h = 2 * sig(x @ p[f"rnn.weight_r{i}_l0"].T) * h
        return lstm_tail(p, x @ p["rnn.weight_ih_l0"].T + h @ p["rnn.weight_hh_l0"].T + p["rnn.bias_l0"], c, hidden)

    def shapes(name, e, h):
        lstm = {"rnn.weight_ih_l0": (4 * h, e), "rnn.weight_hh_l0": (4 * h, h), "rnn.bias_l0": (4 * h,)}
        if name == "min_gru":
            return {"rnn.weight_ih_l0": (2 * h, e), "rnn.bias_ih_l0": (2 * h,)}, 1
        if name == "layer_norm_lstm":
            return dict(lstm, **{"rnn.ln_ih.weight_l0": (4 * h,), "rnn.ln_hh.weight_l0": (4 * h,),
                                 "rnn.ln_c.weight_l0": (h,), "rnn.ln_c.bias_l0": (h,)}), 2
        extra = {(f"rnn.weight_q{i}_l0" if i % 2 else f"rnn.weight_r{i}_l0"): ((e, h) if i % 2 else (h, e))
                 for i in range(1, 6)}
        return dict(lstm, **extra), 2

    return {"min_gru": min_gru, "layer_norm_lstm": layer_norm_lstm, "mogrifier_lstm": mogrifier_lstm}, shapes


def torch_losses(torch, step, params, inputs, targets, state_size, hidden, k, lr, updates):
    """TBPTT(k) with SGD, as rewind's truncated trainer runs it: the state carried between windows, detached."""
    steps, batch = inputs.shape
    state = tuple(torch.zeros(batch, hidden, dtype=torch.float64) for _ in range(state_size))
    losses = []
    for start in range(0, steps, k):
        if len(losses) == updates:
            break
        for p in params.values():
            p.grad = None
        outputs = []
        for t in range(start, min(start + k, steps)):
            state = step(params, params["embedding.weight"][inputs[t]], state, hidden)
            outputs.append(state[0])
        logits = torch.stack(outputs) @ params["head.weight"].T + params["head.bias"]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[start:start + k].reshape(-1))
        loss.backward()
        with torch.no_grad():
            for p in params.values():
                p -= lr * p.grad
        state = tuple(s.detach() for s in state)
        losses.append(loss.item())
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rewind", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "rewind"))
    parser.add_argument("--cells", required=True, help="directory of the zoo's built plugins")
    args = parser.parse_args()
    if not torch_or_reexec(__file__):
        return 0
    import torch
    torch.manual_seed(5)
    steps_by_name, shapes = cells(torch)
    vocab, embedding, hidden, batch, k, lr, updates = 6, 5, 7, 3, 5, 0.5, 3
    symbols = "abcdef"
    text = symbols + "".join(symbols[int(i)] for i in torch.randint(0, vocab, (batch * 16,)))
    ids = torch.tensor([symbols.index(ch) for ch in text])
    per_row = (len(ids) - 1) // batch  # rewind's text_streams: B contiguous pieces, target = next character
    inputs = torch.stack([ids[b * per_row:(b + 1) * per_row] for b in range(batch)], 1)
    targets = torch.stack([ids[b * per_row + 1:(b + 1) * per_row + 1] for b in range(batch)], 1)
    worst_overall = 0.0
    print(f"PyTorch {torch.__version__}; TBPTT({k}), SGD lr {lr}, float64 in PyTorch, float32 in rewind")
    with tempfile.TemporaryDirectory() as tmp:
        data, weights, metrics = (os.path.join(tmp, n) for n in ("text.txt", "init.safetensors", "m.jsonl"))
        with open(data, "w") as f:
            f.write(text)
        for name, step in steps_by_name.items():
            cell_shapes, state_size = shapes(name, embedding, hidden)
            all_shapes = dict(cell_shapes, **{"embedding.weight": (vocab, embedding), "head.weight": (vocab, hidden),
                                              "head.bias": (vocab,)})
            params = {n: (torch.rand(s, dtype=torch.float64) - 0.5) * 0.8 for n, s in all_shapes.items()}
            save_safetensors(weights, params)  # written as float32: both sides start from those values
            params = {n: p.float().double().requires_grad_() for n, p in params.items()}
            theirs = torch_losses(torch, step, params, inputs, targets, state_size, hidden, k, lr, updates)
            if os.path.exists(metrics):
                os.remove(metrics)
            plugin = os.path.join(args.cells, f"librewind_model_{name}.so")
            subprocess.run([args.rewind, "train", "--plugin", plugin, "--model", name, "--data", data, "--val-fraction",
                            "0", "--batch", str(batch), "--hidden", str(hidden), "--embedding", str(embedding),
                            "--trainer", "truncated", "--k", str(k), "--optimizer", "sgd", "--lr", str(lr),
                            "--max-updates", str(updates), "--init", weights, "--metrics", metrics,
                            "--sample-length", "0", "--eval-every", "0", "--log-every", "1"], check=True,
                           capture_output=True)
            with open(metrics) as f:
                ours = [json.loads(line)["loss"] for line in f if '"loss"' in line]
            worst = max(abs(a - b) for a, b in zip(ours, theirs))
            worst_overall = max(worst_overall, worst)
            print(f"  {name:16s} rewind {', '.join(f'{x:.6f}' for x in ours)}  PyTorch "
                  f"{', '.join(f'{x:.6f}' for x in theirs)}  max difference {worst:.1e}  {'ok' if worst < 1e-5 else 'MISMATCH'}")
    return 0 if worst_overall < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
