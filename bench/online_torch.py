#!/usr/bin/env python3
"""The PyTorch eager loop that does rewind online's work, for bench/online.sh.

    python3 bench/online_torch.py ROWS.csv [--k1 K1 --k2 K2 | --no-learn] [--hidden 32] [--lr 0.002]

Reads a CSV of one column after a key (t,x) row by row, as rewind online does: parse the row, predict the next
x with an LSTM cell (one input, --hidden units) and a linear head, write the prediction as a CSV line and flush
it (to /dev/null), then learn: every k1 rows one Adam update whose loss is the mean squared error over the last
k1 predictions, backpropagated through the last k2 rows from the state stored k2 rows back (TBPTT(k1, k2), as
rewind online; torch's usual h.detach() at the window's start). One thread (torch.set_num_threads(1)), float32.
Prints one JSON line: rows, rows_per_second, and the latency per row of predicting (parse, step, write) and per
update of learning, p50/p99/max in microseconds.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import torch_or_reexec  # noqa: E402


def percentiles(values):
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "count": 0}
    s = sorted(values)
    at = lambda q: s[int(q * (len(s) - 1) + 0.5)] / 1e3  # ns -> us
    return {"p50": at(0.5), "p99": at(0.99), "max": s[-1] / 1e3, "count": len(s)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rows")
    parser.add_argument("--k1", type=int, default=1)
    parser.add_argument("--k2", type=int, default=24)
    parser.add_argument("--no-learn", action="store_true")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.002)
    args = parser.parse_args()
    if not torch_or_reexec(os.path.abspath(__file__)):
        return 0
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(1)
    cell = torch.nn.LSTMCell(1, args.hidden)
    head = torch.nn.Linear(args.hidden, 1)
    params = list(cell.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=args.lr)
    k1, k2, learn = args.k1, args.k2, not args.no_learn

    zeros = lambda: (torch.zeros(1, args.hidden), torch.zeros(1, args.hidden))
    state = zeros()      # the prediction's state, carried row to row
    stored = zeros()     # the state where the next update's unroll starts
    stored_row = 0       # ... the row it is the state before
    inputs = []          # the rows not yet left behind by the unroll: bounded by k2 + k1
    first_row = 0        # the row inputs[0] is
    learnt = 0           # rows whose prediction has been learnt from
    predict_ns, learn_ns = [], []
    out = open(os.devnull, "w")
    started = time.perf_counter()
    rows = 0
    with open(args.rows) as f:
        f.readline()  # the header
        for line in f:
            t0 = time.perf_counter_ns()
            key, value = line.rstrip("\n").split(",")
            x = float(value)
            with torch.no_grad():
                state = cell(torch.tensor([[x]]), state)
                predicted = head(state[0]).item()
            out.write(f"{key},{rows + 1},{rows},1,,{predicted}\n")
            out.flush()
            t1 = time.perf_counter_ns()
            predict_ns.append(t1 - t0)
            inputs.append(x)
            rows += 1
            # Row r's prediction is of row r + 1: rows - 1 predictions can be scored; update every k1 of them.
            if learn and rows - 1 - learnt >= k1:
                end = learnt + k1                  # predictions [learnt, end) are learnt from
                start = max(0, end - k2)           # the unroll: rows [start, end)
                next_start = max(start, min(end, end + k1 - k2))
                assert stored_row == start
                h = (stored[0].detach(), stored[1].detach())
                loss = 0
                for r in range(start, end):
                    if r == next_start:
                        stored = (h[0].detach(), h[1].detach())
                    h = cell(torch.tensor([[inputs[r - first_row]]]), h)
                    if r >= learnt:
                        loss = loss + (head(h[0]) - inputs[r + 1 - first_row]) ** 2
                if next_start == end:
                    stored = (h[0].detach(), h[1].detach())
                stored_row = next_start
                optimizer.zero_grad()
                (loss / (end - learnt)).backward()
                optimizer.step()
                learnt = end
                drop = stored_row - first_row      # rows before the next unroll are not needed again
                del inputs[:drop]
                first_row += drop
                learn_ns.append(time.perf_counter_ns() - t1)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "rows_per_second": rows / seconds, "updates": len(learn_ns),
                      "predict_us": percentiles(predict_ns), "learn_us": percentiles(learn_ns)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
