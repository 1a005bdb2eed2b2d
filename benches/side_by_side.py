#!/usr/bin/env python3
"""README's side-by-side table: every figure from one sitting on one ensemble.

The machine this project grew up on is noisy (2 cores, shared), so figures from
two sittings do not compare; ratios from one do. This script starts one 5-node
ensemble (with the gateway), runs on it, back to back:

  zkmq 1 x 1 and 4 producers x 1/2/4/8 consumers (closed loop), REST 4 x 4
  through the gateway's multi extension and on the v1 interface alone (each --repeat times, interleaved, the median shown), open loop at 25/50/75%
  of the 4 x 4 and of the 1 x 1 maximum, 4 x 4 with --prefill messages
  waiting (and the same run shallow), and kazoo's LockingQueue 4 x 4 (benches/kazoo_queue.py),

prints a Markdown table, writes every raw result to --out as JSON, and removes
the ensemble. Only 127.0.0.1 addresses are used (the ports `zkmq cluster up`
publishes).

    cargo build --release
    python3 -m venv /tmp/kazoo && /tmp/kazoo/bin/pip install kazoo
    python3 benches/side_by_side.py                      # about 25 minutes
    python3 benches/side_by_side.py --prefill 100000 --repeat 1   # quicker
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, **kwargs):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, **kwargs).stdout


def bench(zkmq, connect, *flags):
    out = run([zkmq, "bench", "queue", "--connect", connect, "--raw-creates", "0", "--json", *flags])
    result = json.loads(out)
    print(f"  {result['messages_per_s']:.0f} msgs/s", file=sys.stderr, flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zkmq", default=os.path.join(HERE, "..", "target", "release", "zkmq"))
    parser.add_argument("--kazoo-python", default="/tmp/kazoo/bin/python",
                        help="a Python with kazoo installed (see above); skipped when missing")
    parser.add_argument("--messages", type=int, default=5000, help="per closed-loop zkmq run")
    parser.add_argument("--rest-messages", type=int, default=2000)
    parser.add_argument("--kazoo-messages", type=int, default=1000)
    parser.add_argument("--prefill", type=int, default=1_000_000)
    parser.add_argument("--heap", default="1g", help="per node; README's sizing rule for --prefill")
    parser.add_argument("--zk-version", default="3.8.0")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each closed-loop row, interleaved; the median is shown")
    parser.add_argument("--out", default="side-by-side.json")
    args = parser.parse_args()
    zkmq = os.path.abspath(args.zkmq)
    if not os.access(zkmq, os.X_OK):
        sys.exit(f"no zkmq binary at {zkmq}: run `cargo build --release` first, or pass --zkmq")

    run_id = f"bench-{int(time.time())}"
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "run_id": run_id,
               "heap": args.heap, "zk_version": args.zk_version}
    rows = []
    run([zkmq, "cluster", "up", "--run", run_id, "--heap", args.heap, "--zk-version", args.zk_version])
    try:
        status = json.loads(run([zkmq, "cluster", "status", "--run", run_id, "--json"]))
        connect, rest = status["connect_string"], status.get("rest_url")
        m = str(args.messages)

        # The closed-loop rows are run --repeat times, interleaved (each round runs
        # every one of them once), and the median run of each is shown: runs on
        # this machine vary by 15% from one to the next, more than the gaps the
        # consumer-scaling rows are read for. Every run is kept in --out.
        closed = [("zkmq 1 producer x 1 consumer", ["--producers", "1", "--consumers", "1", "--messages", m])]
        closed += [(f"zkmq 4 x {c}", ["--producers", "4", "--consumers", str(c), "--messages", m])
                   for c in (1, 2, 4, 8)]
        if rest:
            closed.append(("zkmq 4 x 4 through the REST gateway (multi extension)",
                           ["--rest", rest, "--producers", "4", "--consumers", "4", "--messages", m]))
            closed.append(("zkmq 4 x 4 through the REST gateway, v1 only (claims)",
                           ["--rest", rest, "--rest-v1", "--producers", "4", "--consumers", "4",
                            "--messages", str(args.rest_messages)]))
        runs = {name: [] for name, _ in closed}
        for round_ in range(args.repeat):
            print(f"round {round_ + 1} of {args.repeat}", file=sys.stderr, flush=True)
            for name, flags in closed:
                runs[name].append(bench(zkmq, connect, *flags))
        medians = {}
        for name, _ in closed:
            ordered = sorted(runs[name], key=lambda r: r["messages_per_s"])
            medians[name] = dict(ordered[len(ordered) // 2],
                                 runs_per_s=[round(r["messages_per_s"]) for r in runs[name]])
            rows.append((name, medians[name]))
        native = medians["zkmq 4 x 4"]
        one = medians["zkmq 1 producer x 1 consumer"]
        # Open loop at shares of each closed-loop maximum: with 4 x 4 every producer
        # sends a quarter of the rate, so its batches are a quarter as large and a
        # message costs ZooKeeper more requests than with 1 x 1 at the same rate.
        for label, top, flags in (("4 x 4", native, []),
                                  ("1 x 1", one, ["--producers", "1", "--consumers", "1"])):
            for share in (25, 50, 75):
                rate = round(top["messages_per_s"] * share / 100)
                messages = str(max(int(m), rate * 15))
                result = bench(zkmq, connect, "--rate", str(rate), "--messages", messages, *flags)
                rows.append((f"zkmq {label} open loop at {rate}/s ({share}% of {label})", result))
        if args.prefill:
            # Long enough that one listing of the deep queue per consumer is not
            # the whole run; the shallow run of the same length is its yardstick.
            n = str(4 * args.messages)
            rows.append(("zkmq 4 x 4, shallow (the yardstick for the next row)",
                         bench(zkmq, connect, "--messages", n)))
            deep = bench(zkmq, connect, "--prefill", str(args.prefill), "--max-depth",
                         str(args.prefill + 8 * args.messages), "--messages", n)
            rows.append((f"zkmq 4 x 4, {args.prefill:,} waiting throughout", deep))
        if os.access(args.kazoo_python, os.X_OK):
            out = run([args.kazoo_python, os.path.join(HERE, "kazoo_queue.py"), "--connect", connect,
                       "--producers", "4", "--consumers", "4", "--messages", str(args.kazoo_messages), "--json"])
            rows.append(("kazoo LockingQueue 4 x 4", json.loads(out)))
        else:
            print(f"no kazoo at {args.kazoo_python}: its row is left out", file=sys.stderr)
    finally:
        run([zkmq, "cluster", "down", "--run", run_id])

    results["rows"] = [{"run": name, **result} for name, result in rows]
    with open(args.out, "w") as out:
        json.dump(results, out, indent=2)
    print("| run | messages | msgs/s | latency p50 / p99 / p99.9 | rate held |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        latency = ""
        if "latency_p50_ms" in r and r.get("latency_samples"):
            latency = f"{r['latency_p50_ms']:.0f} / {r['latency_p99_ms']:.0f} / {r['latency_p999_ms']:.0f} ms"
        held = ""
        if r.get("rate"):
            held = "held" if r["rate"]["held"] else f"NOT held ({r['rate']['sent_per_s']:.0f}/s sent)"
        per_s = f"{r['messages_per_s']:,.0f}"
        if len(r.get("runs_per_s", [])) > 1:
            per_s += " (runs: " + ", ".join(f"{x:,}" for x in r["runs_per_s"]) + ")"
        print(f"| {name} | {r['messages']:,} | {per_s} | {latency} | {held} |")
    kazoo = next((r for name, r in rows if name.startswith("kazoo")), None)
    if kazoo and kazoo["messages_per_s"]:
        print(f"\nzkmq 4 x 4 / kazoo 4 x 4: {native['messages_per_s'] / kazoo['messages_per_s']:.1f}x")
    for name, r in rows:
        if "REST" in name:
            print(f"{name} / native 4 x 4: {100 * r['messages_per_s'] / native['messages_per_s']:.0f}%")
    print(f"raw results: {args.out}")


if __name__ == "__main__":
    main()
