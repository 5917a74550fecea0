#!/usr/bin/env python3
"""Predicted scaling efficiency of rewind's data parallelism: an alpha-beta model of ring allreduce.

    python3 bench/scaling_model.py --compute 256:20:0.061,256:64:0.19,1024:20:0.49,1024:64:1.5 \
        --bytes 256:2238748,1024:34119964

Weak scaling: every node trains its own 32 streams, so an update's compute time C (measured on one node:
seconds per update at hidden H and window k, from bench/mpi_scaling.sh or the progress line) stays the same
as nodes are added, and the gradient exchange is added to it (no overlap with backward). A ring allreduce of n
bytes over R nodes takes T(R) = 2 (R - 1) alpha + 2 (R - 1) / R * n / bandwidth. Efficiency E = C / (C + T).
With --accumulate N an update computes N windows and exchanges once: E = N C / (N C + T); the table gives the
smallest N (1, 2, 4, 8, ...) reaching --target. Networks: 10 GbE (alpha 50 us, 1.25 GB/s) and InfiniBand HDR
(alpha 2 us, 12.5 GB/s), or --alpha/--bandwidth.
"""
import argparse


def allreduce_seconds(ranks, nbytes, alpha, bandwidth):
    return 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * nbytes / bandwidth


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compute", required=True, help="H:k:seconds per update, comma-separated")
    parser.add_argument("--bytes", required=True, help="H:gradient bytes, comma-separated")
    parser.add_argument("--alpha", type=float, help="latency, seconds (with --bandwidth: one custom network)")
    parser.add_argument("--bandwidth", type=float, help="bytes per second")
    parser.add_argument("--target", type=float, default=0.9)
    args = parser.parse_args()
    compute = [(int(h), int(k), float(s)) for h, k, s in (c.split(":") for c in args.compute.split(","))]
    nbytes = {int(h): float(b) for h, b in (c.split(":") for c in args.bytes.split(","))}
    networks = ([("custom", args.alpha, args.bandwidth)] if args.alpha is not None
                else [("10 GbE (alpha 50 us, 1.25 GB/s)", 50e-6, 1.25e9),
                      ("InfiniBand HDR (alpha 2 us, 12.5 GB/s)", 2e-6, 12.5e9)])
    ranks = [2, 4, 8, 16, 32, 64]
    for name, alpha, bandwidth in networks:
        print(f"\n{name}: efficiency E = C / (C + T) without accumulation; N = the --accumulate reaching "
              f"{args.target:.0%} at 64 nodes")
        print("| hidden | k | C (s) | bytes | " + " | ".join(f"R={r}" for r in ranks) + " | N for 64 |")
        print("|---:|---:|---:|---:|" + "---:|" * len(ranks) + "---:|")
        for h, k, c in compute:
            cells = []
            for r in ranks:
                t = allreduce_seconds(r, nbytes[h], alpha, bandwidth)
                cells.append(f"{c / (c + t):.0%}")
            t64 = allreduce_seconds(64, nbytes[h], alpha, bandwidth)
            n = 1
            while n * c / (n * c + t64) < args.target and n < 1024:
                n *= 2
            print(f"| {h} | {k} | {c:.3f} | {nbytes[h]:.3g} | " + " | ".join(cells) + f" | {n} |")


if __name__ == "__main__":
    main()
