"""Storage figures on this machine: per-operation latency on local disk and on the moto S3
server (127.0.0.1), and the CAS throughput of concurrent writers. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_storage.py [--objects 200] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from condvest.storage import Storage, open_storage
from condvest.storage.s3 import S3Storage


def _timed(label: str, n: int, work: Callable[[], object]) -> None:
    start = time.perf_counter()
    work()
    elapsed = time.perf_counter() - start
    print(f"  {label:<34} {n:>6} ops  {elapsed:7.3f} s  {1000 * elapsed / max(n, 1):8.2f} ms/op")


def _cas_increments(st: Storage, threads: int, per_thread: int) -> tuple[int, int]:
    """Run the counter; returns (final count, replaces that lost a race and retried)."""
    st.write_bytes("bench/counter.json", b'{"n": 0}')
    lost = [0] * threads

    def worker(i: int) -> None:
        for _ in range(per_thread):
            while True:
                data, version = st.read_versioned("bench/counter.json")
                body = json.dumps({"n": json.loads(data)["n"] + 1}).encode()
                if st.replace("bench/counter.json", body, version):
                    break
                lost[i] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return int(json.loads(st.read_bytes("bench/counter.json"))["n"]), sum(lost)


def bench(name: str, st: Storage, objects: int, threads: int) -> None:
    print(f"{name}: {st.uri}")
    keys = [f"bench/obj/{i:05d}" for i in range(objects)]
    payload = os.urandom(4096)
    _timed("write_bytes 4 KiB", objects, lambda: [st.write_bytes(k, payload) for k in keys])
    _timed("read_bytes 4 KiB", objects, lambda: [st.read_bytes(k) for k in keys])
    _timed("stat", objects, lambda: [st.stat(k) for k in keys])
    _timed(f"list_objects ({objects} objects)", 1, lambda: st.list_objects("bench/obj/"))
    _timed("create (already exists)", objects, lambda: [st.create(k, b"x") for k in keys])
    per_thread = max(objects // threads, 1)
    start = time.perf_counter()
    final, lost = _cas_increments(st, threads, per_thread)
    elapsed = time.perf_counter() - start
    total = threads * per_thread
    verdict = "exact" if final == total else f"WRONG: final count {final}"
    print(
        f"  CAS counter, {threads} threads: {total} increments in {elapsed:.3f} s "
        f"({total / elapsed:.0f}/s), {lost} lost races retried; {verdict}"
    )
    _timed("delete_many", objects, lambda: st.delete_many(keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("local", open_storage(tmp), args.objects, args.threads)
    from _common import moto_server  # bench/ is sys.path[0] when run as a script

    with moto_server("condvest-bench") as endpoint:
        st = S3Storage("s3://condvest-bench/lake", endpoint_url=endpoint)
        bench("moto S3 (in-process server)", st, args.objects, args.threads)


if __name__ == "__main__":
    main()
