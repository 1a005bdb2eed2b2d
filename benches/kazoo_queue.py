#!/usr/bin/env python3
"""The peer zkmq is measured against: kazoo's LockingQueue, the ZooKeeper queue
recipe people use, on the same ensemble and with the same shape of run as
`zkmq bench queue` (P producers and C consumers, each with a session of its own,
100-byte payloads, a fresh path, until every message was put, got and consumed).

    python3 -m venv /tmp/kazoo && /tmp/kazoo/bin/pip install kazoo
    /tmp/kazoo/bin/python benches/kazoo_queue.py --connect "$(zkmq cluster status --json | jq -r .connect_string)"

Prints messages per second end to end and, with --json, one JSON object. Only
127.0.0.1 addresses are expected (the ports a `zkmq cluster up` publishes).
"""

import argparse
import json
import sys
import threading
import time
import uuid

try:
    from kazoo.client import KazooClient
    from kazoo.recipe.queue import LockingQueue
except ImportError:
    sys.exit("kazoo is not installed: python3 -m venv /tmp/kazoo && /tmp/kazoo/bin/pip install kazoo, "
             "then run this script with /tmp/kazoo/bin/python")


def client(connect):
    zk = KazooClient(hosts=connect, timeout=10.0)
    zk.start(timeout=30)
    return zk


def produce(connect, path, count, size, batch, errors):
    zk = client(connect)
    queue = LockingQueue(zk, path)
    payload = b"x" * size
    left = count
    try:
        while left > 0:
            n = min(batch, left)
            if n == 1:
                queue.put(payload)
            else:
                queue.put_all([payload] * n)
            left -= n
    except Exception as err:  # a bench reports, it does not retry
        errors.append(f"produce: {err!r}")
    finally:
        zk.stop()
        zk.close()


def consume(connect, path, total, consumed, lock, errors):
    zk = client(connect)
    queue = LockingQueue(zk, path)
    try:
        while True:
            with lock:
                if consumed[0] >= total:
                    return
            item = queue.get(timeout=0.5)
            if item is None:
                continue
            if queue.consume():
                with lock:
                    consumed[0] += 1
            else:
                errors.append("consume: the lock was lost")
    except Exception as err:
        errors.append(f"consume: {err!r}")
    finally:
        zk.stop()
        zk.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connect", required=True, help="ZooKeeper connect string (127.0.0.1:port,...)")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--messages", type=int, default=5000, help="messages in total")
    parser.add_argument("--size", type=int, default=100, help="payload bytes")
    parser.add_argument("--batch", type=int, default=1,
                        help="messages per put_all (1: put, as the recipe is mostly used)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.producers < 1 or args.consumers < 1 or args.messages < 1:
        parser.error("--producers, --consumers and --messages must be at least 1")

    path = f"/zkmq-bench-kazoo/{uuid.uuid4().hex[:8]}"
    errors, consumed, lock = [], [0], threading.Lock()
    started = time.monotonic()
    threads = []
    for index in range(args.producers):
        share = args.messages // args.producers + (1 if index < args.messages % args.producers else 0)
        threads.append(threading.Thread(target=produce,
                                        args=(args.connect, path, share, args.size, args.batch, errors)))
    for _ in range(args.consumers):
        threads.append(threading.Thread(target=consume,
                                        args=(args.connect, path, args.messages, consumed, lock, errors)))
    for thread in threads:
        thread.start()
    last, last_progress = 0, time.monotonic()
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.1)
        with lock:
            now = consumed[0]
        if now != last:
            last, last_progress = now, time.monotonic()
        elif time.monotonic() - last_progress > 30 and now < args.messages:
            sys.exit(f"kazoo bench stalled: {now} of {args.messages} consumed, none for 30 s; errors: {errors[:3]}")
    elapsed = time.monotonic() - started

    admin = client(args.connect)
    admin.delete(path, recursive=True)
    admin.stop()
    admin.close()

    result = {
        "recipe": "kazoo LockingQueue",
        "producers": args.producers,
        "consumers": args.consumers,
        "messages": consumed[0],
        "elapsed_s": elapsed,
        "messages_per_s": consumed[0] / elapsed,
        "errors": len(errors),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"kazoo LockingQueue {args.producers}P x {args.consumers}C: {consumed[0]} messages in "
              f"{elapsed:.2f} s = {result['messages_per_s']:.0f} msgs/s (put + get + consume); errors: {len(errors)}")
    if errors:
        print("first errors: " + "; ".join(errors[:3]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
