"""The storage contract: one suite, run identically on local disk and on the S3 server
(the ``lake`` fixture), plus the few behaviours that only one backend has."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from condvest.errors import ConfigError, CorruptFileError, NotFoundError, StorageError
from condvest.storage import LocalStorage, Storage, open_storage
from conftest import Lake


def _keys(storage: Storage, prefix: str) -> list[str]:
    return [o.key for o in storage.list_objects(prefix)]


# -- listing ------------------------------------------------------------------------------------
def test_list_objects_is_recursive_sorted_and_relative_to_the_root(lake: Lake) -> None:
    st = lake.storage
    for key in ("a/b/2", "a/b/c/1", "a/bc/3", "a/x", "z", "a/b/1"):
        st.write_bytes(key, key.encode())
    assert _keys(st, "a/b/") == ["a/b/1", "a/b/2", "a/b/c/1"]
    assert _keys(st, "") == ["a/b/1", "a/b/2", "a/b/c/1", "a/bc/3", "a/x", "z"]
    assert _keys(st, "a/b/c/") == ["a/b/c/1"]
    assert _keys(st, "missing/") == []
    assert _keys(st, "z/") == []  # a file, not a "directory"
    infos = st.list_objects("a/b/")
    assert [o.size for o in infos] == [5, 5, 7]
    for info in infos:
        assert info.mtime.tzinfo is not None
        assert abs((datetime.now(UTC) - info.mtime).total_seconds()) < 300
        assert info.version


def test_list_objects_prefix_is_a_string_prefix_on_both_backends(lake: Lake) -> None:
    """``a/b/`` is a directory; ``a/b`` is a key prefix (S3 semantics) — identical everywhere,
    so a caller never sees one backend list a sibling the other hides."""
    st = lake.storage
    for key in ("a/b/1", "a/bc/2", "a/b.json", "a/ab/3"):
        st.write_bytes(key, b"x")
    assert _keys(st, "a/b/") == ["a/b/1"]
    assert _keys(st, "a/b") == ["a/b.json", "a/b/1", "a/bc/2"]
    assert _keys(st, "a/bc") == ["a/bc/2"]


def test_list_dirs(lake: Lake) -> None:
    st = lake.storage
    for key in ("d/one/x", "d/two/deep/y", "d/file", "d/onex/z", "top"):
        st.write_bytes(key, b"1")
    assert st.list_dirs("d/") == ["one", "onex", "two"]
    assert st.list_dirs("d") == ["one", "onex", "two"]
    assert st.list_dirs("") == ["d"]
    assert st.list_dirs("d/two/") == ["deep"]
    assert st.list_dirs("nothing/") == []


# -- bytes, parquet, JSON -----------------------------------------------------------------------
def test_read_write_bytes(lake: Lake) -> None:
    st = lake.storage
    payload = bytes(range(256)) * 10
    st.write_bytes("bin/blob", payload)
    st.write_bytes("bin/empty", b"")
    assert st.read_bytes("bin/blob") == payload
    assert st.read_bytes("bin/empty") == b""
    data, version = st.read_versioned("bin/blob")
    assert data == payload
    stat = st.stat("bin/blob")
    assert stat is not None and stat.version == version and stat.size == len(payload)
    assert st.exists("bin/blob") and not st.exists("bin/nope")


def test_parquet_round_trip(lake: Lake) -> None:
    table = pa.table(
        {
            "symbol": pa.array(["AAPL", "BRK.A", "INF"]),
            "date": pa.array([date(2025, 1, 2), date(2025, 1, 3), None], pa.date32()),
            "close": pa.array([1.5, 2.25, None], pa.float64()),
            "transactions": pa.array([1, None, 3], pa.int64()),
            "fetched_at": pa.array(
                [datetime(2025, 1, 2, 21, tzinfo=UTC)] * 3, pa.timestamp("ms", tz="UTC")
            ),
        }
    )
    written = lake.storage.write_parquet("p/data.parquet", table)
    stat = lake.storage.stat("p/data.parquet")
    assert stat is not None and stat.size == written
    back = lake.storage.read_parquet("p/data.parquet")
    assert back.schema.equals(table.schema)
    assert back.equals(table)
    subset = lake.storage.read_parquet("p/data.parquet", columns=["symbol", "date"])
    assert subset.column_names == ["symbol", "date"]
    assert subset.column("symbol").to_pylist() == ["AAPL", "BRK.A", "INF"]


def test_json_round_trip(lake: Lake) -> None:
    lake.storage.write_json("j/state.json", {"b": [1, 2], "a": "x", "when": date(2025, 1, 2)})
    assert lake.storage.read_json("j/state.json") == {"a": "x", "b": [1, 2], "when": "2025-01-02"}
    seen = lake.storage.read_json_versioned("j/state.json")
    assert seen is not None and seen[0]["a"] == "x"
    assert lake.storage.read_json_versioned("j/absent.json") is None


def test_write_bytes_atomically_replaces(lake: Lake) -> None:
    st = lake.storage
    st.write_bytes("r/k", b"old content")
    before = st.stat("r/k")
    st.write_bytes("r/k", b"new")
    after = st.stat("r/k")
    assert st.read_bytes("r/k") == b"new"
    assert before is not None and after is not None
    assert after.size == 3 and after.version != before.version
    assert _keys(st, "r/") == ["r/k"]  # no temporary sibling left behind


def test_create_if_absent(lake: Lake) -> None:
    st = lake.storage
    assert st.create("c/k", b"first") is True
    assert st.create("c/k", b"second") is False
    assert st.read_bytes("c/k") == b"first"
    assert _keys(st, "c/") == ["c/k"]


def test_replace_if_unchanged(lake: Lake) -> None:
    st = lake.storage
    st.write_bytes("cas/k", b"v1")
    _, v1 = st.read_versioned("cas/k")
    assert st.replace("cas/k", b"v2", v1) is True
    assert st.read_bytes("cas/k") == b"v2"
    # v1 is stale now: the replace must be refused and the content left alone
    assert st.replace("cas/k", b"v3-stale", v1) is False
    assert st.read_bytes("cas/k") == b"v2"
    _, v2 = st.read_versioned("cas/k")
    assert v2 != v1
    assert st.replace("cas/k", b"v3", v2) is True
    assert st.read_bytes("cas/k") == b"v3"
    # a missing key has no version that can match
    assert st.replace("cas/missing", b"x", v2) is False
    assert st.stat("cas/missing") is None
    # the version from stat() and list_objects() is the same token read_versioned() returns
    _, v3 = st.read_versioned("cas/k")
    stat = st.stat("cas/k")
    assert stat is not None and stat.version == v3
    assert st.list_objects("cas/")[0].version == v3
    assert _keys(st, "cas/") == ["cas/k"]


def test_delete_many(lake: Lake) -> None:
    st = lake.storage
    for key in ("del/a", "del/b", "del/c", "keep/a"):
        st.write_bytes(key, b"1")
    assert st.delete_many(["del/a", "del/absent", "del/c", "nowhere/x"]) == 4
    assert _keys(st, "") == ["del/b", "keep/a"]
    assert st.delete_many([]) == 0
    st.delete("del/b")
    st.delete("del/b")  # absent is fine
    assert _keys(st, "") == ["keep/a"]


def test_delete_unchanged_keeps_what_was_rewritten(lake: Lake) -> None:
    """Deleting what was listed (and verified) must not delete a newer write of the same key:
    vacuum and consolidate's cleanup delete old date files while fetch may land a correction."""
    st = lake.storage
    for key in ("cd/a", "cd/b", "cd/c", "cd/d"):
        st.write_bytes(key, b"old " + key.encode())
    listed = {o.key: o for o in st.list_objects("cd/")}
    assert all(o.version for o in listed.values())
    st.write_bytes("cd/b", b"corrected")  # rewritten after the listing
    st.delete("cd/c")  # gone already
    unversioned = dataclasses.replace(listed["cd/d"], version=None)
    kept = st.delete_unchanged([listed["cd/a"], listed["cd/b"], listed["cd/c"], unversioned])
    assert kept == ["cd/b"]
    assert _keys(st, "") == ["cd/b"]
    assert st.read_bytes("cd/b") == b"corrected"
    assert st.delete_unchanged([]) == []
    with pytest.raises(StorageError, match="relative segment"):
        st.delete_unchanged([dataclasses.replace(listed["cd/a"], key="cd/../x")])


def _seed_empty_objects(lake: Lake, keys: list[str]) -> None:
    """Create many empty objects quickly. On S3 they go straight into the in-process moto
    server's store (~7 ms per PUT over HTTP would make 1000 objects take seconds)."""
    if lake.kind == "local":  # plain files: write_bytes would fsync each one
        for key in keys:
            path = lake.storage.local_path(key)
            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        return
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from condvest.storage.s3 import S3Storage

    assert isinstance(lake.storage, S3Storage)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        backend.put_object(lake.storage.bucket, f"{lake.storage.prefix}/{key}", b"")


def test_delete_many_more_than_one_s3_batch(lake: Lake) -> None:
    """S3's DeleteObjects takes at most 1000 keys; 1003 keys need two batches."""
    st = lake.storage
    keys = [f"many/{i:04d}" for i in range(1003)]
    _seed_empty_objects(lake, keys)
    st.write_bytes("other/keep", b"1")
    assert len(st.list_objects("many/")) == 1003  # listing pages past 1000 too
    # a generator, as callers pass one; absent keys mixed in
    assert st.delete_many(k for k in [*keys, "many/absent"]) == 1004
    assert _keys(st, "") == ["other/keep"]


def test_stat(lake: Lake) -> None:
    st = lake.storage
    assert st.stat("s/absent") is None
    st.write_bytes("s/k", b"12345")
    info = st.stat("s/k")
    assert info is not None
    assert info.key == "s/k" and info.size == 5 and info.version
    assert info.mtime.tzinfo is not None
    assert abs((datetime.now(UTC) - info.mtime).total_seconds()) < 300
    assert st.stat("s") is None  # a "directory" is not an object
    # a key "under" an object is simply absent, on both backends
    assert st.stat("s/k/below") is None
    with pytest.raises(NotFoundError):
        st.read_bytes("s/k/below")
    assert st.list_objects("s/k/") == []


# -- errors -------------------------------------------------------------------------------------
def test_missing_reads_raise_not_found(lake: Lake) -> None:
    st = lake.storage
    for read in (st.read_bytes, st.read_versioned, st.read_parquet, st.read_json):
        with pytest.raises(NotFoundError, match="does not exist") as info:
            read("no/such/key")
        assert "no/such/key" in str(info.value)


def test_corrupt_files_raise_corrupt_file_error_not_absent(lake: Lake) -> None:
    st = lake.storage
    st.write_bytes("bad/data.parquet", b"this is not parquet")
    with pytest.raises(CorruptFileError, match="not a readable parquet file") as info:
        st.read_parquet("bad/data.parquet")
    assert "bad/data.parquet" in str(info.value)
    st.write_bytes("bad/state.json", b"{not json")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        st.read_json("bad/state.json")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        st.read_json_versioned("bad/state.json")
    assert st.read_bytes("bad/data.parquet") == b"this is not parquet"  # nothing lost


def test_relative_segments_are_refused(lake: Lake) -> None:
    st = lake.storage
    operations: list[Callable[[str], Any]] = [
        lambda k: st.write_bytes(k, b"x"),
        lambda k: st.create(k, b"x"),
        lambda k: st.replace(k, b"x", "v"),
        lambda k: st.read_bytes(k),
        lambda k: st.stat(k),
        lambda k: st.delete_many(["fine", k]),
        lambda k: st.list_objects(k),
        lambda k: st.url(k),
    ]
    st.write_bytes("fine", b"kept")
    for key in ("../escape", "a/../../escape", "a/./b", "a/..", "/../escape"):
        for operation in operations:
            with pytest.raises(StorageError, match="relative segment"):
                operation(key)
    # the batch with a bad key deleted nothing
    assert st.read_bytes("fine") == b"kept"
    st.delete("fine")
    assert _keys(st, "") == []
    if lake.kind == "local":
        assert isinstance(st, LocalStorage)
        assert not (st.root.parent / "escape").exists()


# -- concurrency --------------------------------------------------------------------------------
def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def start(i: int) -> Any:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(start, range(n)))


def test_racing_creates_have_exactly_one_winner(lake: Lake) -> None:
    st = lake.storage
    for round_ in range(3):
        key = f"race/lock-{round_}"
        results = _race(8, lambda i, key=key: st.create(key, f"writer-{i}".encode()))
        assert results.count(True) == 1
        winner = results.index(True)
        assert st.read_bytes(key) == f"writer-{winner}".encode()


def test_cas_counter_loses_no_update(lake: Lake) -> None:
    st = lake.storage
    key = "race/counter.json"
    st.write_json(key, {"n": 0})
    threads, per_thread = 4, 8

    def increment(i: int) -> None:
        for _ in range(per_thread):
            while True:
                seen = st.read_json_versioned(key)
                assert seen is not None
                body, version = seen
                if st.replace(key, json.dumps({"n": body["n"] + 1}).encode(), version):
                    break

    _race(threads, increment)
    assert st.read_json(key) == {"n": threads * per_thread}


# -- local disk only ----------------------------------------------------------------------------
def test_local_lake_that_is_a_file(tmp_path: Any) -> None:
    target = tmp_path / "lake"
    target.write_text("I am a file")
    with pytest.raises(StorageError, match="is a file, not a directory") as info:
        open_storage(str(target))
    assert str(target) in str(info.value)
    assert target.read_text() == "I am a file"


def test_local_lake_under_a_file(tmp_path: Any) -> None:
    (tmp_path / "file").write_text("x")
    st = open_storage(str(tmp_path / "file" / "lake"))
    with pytest.raises(StorageError, match="cannot write") as info:
        st.write_bytes("k", b"1")
    assert str(tmp_path / "file") in str(info.value)
    assert st.list_objects("") == []
    assert st.stat("k") is None


def _make_read_only(path: Any) -> Callable[[], None]:
    """Make ``path`` unwritable; returns the undo. Skips when this process can write anyway."""
    import os
    import subprocess

    path.chmod(0o555)
    if not os.access(path, os.W_OK):
        return lambda: path.chmod(0o755)
    path.chmod(0o755)
    # root ignores permission bits (os.access says writable); the immutable attribute binds
    # root too, where the filesystem and our capabilities allow it
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(
            "running as root: chmod does not stop root writing (os.access says writable) and "
            f"chattr +i is unavailable here ({done.stderr.decode().strip()})"
        )
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_local_read_only_lake(local_lake: Lake) -> None:
    st = local_lake.storage
    assert isinstance(st, LocalStorage)
    st.write_bytes("bronze/k", b"kept")
    undo = _make_read_only(st.root / "bronze")
    try:
        for call in (
            lambda: st.write_bytes("bronze/k", b"new"),
            lambda: st.create("bronze/other", b"new"),
        ):
            with pytest.raises(StorageError, match="cannot write") as info:
                call()
            assert str(st.root / "bronze") in str(info.value)
            assert "permissions" in str(info.value)
        assert st.read_bytes("bronze/k") == b"kept"
        assert _keys(st, "") == ["bronze/k"]
    finally:
        undo()


def test_local_temp_files_use_the_marker_and_are_removed(local_lake: Lake) -> None:
    import fcntl
    import os

    from condvest.core.layout import TEMP_MARKER, is_temp_key

    st = local_lake.storage
    assert isinstance(st, LocalStorage)
    st.write_bytes("t/k", b"1")
    assert st.create("t/k", b"2") is False
    assert st.create("t/new", b"2") is True
    _, version = st.read_versioned("t/k")
    assert st.replace("t/k", b"3", "stale") is False
    assert st.replace("t/k", b"3", version) is True
    st.write_parquet("t/p.parquet", pa.table({"a": [1]}))
    assert _keys(st, "") == ["t/k", "t/new", "t/p.parquet"]

    # hold the directory lock replace() takes, so its temp file is visible mid-write
    fd = os.open(st.root / "t", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _, version = st.read_versioned("t/k")
    worker = threading.Thread(target=lambda: st.replace("t/k", b"4", version))
    worker.start()
    try:
        for _ in range(1000):
            temps = [k for k in _keys(st, "t/") if is_temp_key(k)]
            if temps:
                break
            threading.Event().wait(0.01)
        assert len(temps) == 1 and temps[0].startswith(f"t/{TEMP_MARKER}")
        assert temps[0].endswith("-k")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        worker.join()
    assert st.read_bytes("t/k") == b"4"
    assert not [p for p in st.root.rglob("*") if TEMP_MARKER in p.name]


def test_local_delete_unchanged_never_loses_a_racing_write(local_lake: Lake) -> None:
    """Whichever comes first, the delete of the listed version or a writer's new version, the
    new version is what remains (a plain delete after the write would lose it). Local disk
    only: on S3 the atomicity is the server's (If-Match), and moto does not promise it."""
    st = local_lake.storage
    rounds = 20
    keys = [f"racew/{i:02d}" for i in range(rounds)]
    for key in keys:
        st.write_bytes(key, b"v0")
    listed = {o.key: o for o in st.list_objects("racew/")}
    for key in keys:
        _race(
            2,
            lambda i, key=key: (
                st.delete_unchanged([listed[key]]) if i == 0 else st.write_bytes(key, b"v1")
            ),
        )
        assert st.read_bytes(key) == b"v1", key
    assert _keys(st, "racew/") == keys  # and no temporary name left behind


def test_local_failed_write_leaves_no_temp_file(local_lake: Lake) -> None:
    st = local_lake.storage
    assert isinstance(st, LocalStorage)
    st.write_bytes("dir/inside/x", b"1")
    with pytest.raises(StorageError, match="cannot write"):
        st.write_bytes("dir/inside", b"a file over a directory")
    assert _keys(st, "") == ["dir/inside/x"]


# -- S3 only ------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_s3_unreachable_endpoint_fails_fast_with_the_endpoint_named() -> None:
    from condvest.storage.s3 import S3Storage

    st = S3Storage(
        "s3://condvest-test/lake",
        endpoint_url="http://127.0.0.1:1",
        max_attempts=1,
        connect_timeout_s=2,
    )
    for call in (
        lambda: st.list_objects(""),
        lambda: st.read_bytes("k"),
        lambda: st.write_bytes("k", b"1"),
        lambda: st.stat("k"),
    ):
        with pytest.raises(StorageError, match=r"cannot reach http://127\.0\.0\.1:1") as info:
            call()
        assert not isinstance(info.value, NotFoundError)
        assert "s3.endpoint_url" in str(info.value)


def test_s3_missing_bucket_is_a_clear_error_not_an_empty_lake(s3_lake: Lake) -> None:
    from condvest.storage.s3 import S3Storage

    assert s3_lake.endpoint_url is not None
    st = S3Storage("s3://no-such-bucket-here/lake", endpoint_url=s3_lake.endpoint_url)
    for call in (
        lambda: st.list_objects(""),
        lambda: st.list_dirs(""),
        lambda: st.read_bytes("k"),
        lambda: st.write_bytes("k", b"1"),
        lambda: st.create("k", b"1"),
        lambda: st.delete_many(["k"]),
    ):
        with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist") as e:
            call()
        assert not isinstance(e.value, NotFoundError)


def test_open_storage_selects_by_scheme(tmp_path: Any, s3_lake: Lake) -> None:
    from condvest.storage.s3 import S3Storage

    local = open_storage(str(tmp_path / "l1"))
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "l1"
    via_file = open_storage(f"file://{tmp_path}/l2")
    assert isinstance(via_file, LocalStorage) and via_file.root == tmp_path / "l2"
    s3 = open_storage(s3_lake.uri, s3_lake.settings)
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == (
        "condvest-test",
        "lake",
        s3_lake.endpoint_url,
    )
    s3.write_bytes("k", b"1")
    assert s3.url("k") == "s3://condvest-test/lake/k"
    assert s3_lake.storage.read_bytes("k") == b"1"
    bare = open_storage("s3://condvest-test", s3_lake.settings)
    assert isinstance(bare, S3Storage) and bare.prefix == ""
    assert bare.read_bytes("lake/k") == b"1"
    for bad, match in (
        ("gs://bucket/lake", "scheme 'gs'"),
        ("", "empty"),
        ("   ", "empty"),
        ("s3://", "names no bucket"),
        ("file://otherhost/lake", "must be local"),
    ):
        with pytest.raises(ConfigError, match=match) as info:
            open_storage(bad)
        assert info.value.exit_code == 2


def test_s3_keys_that_start_with_the_bucket_name_keep_it(s3_lake: Lake) -> None:
    """Listing returns keys as stored: a key whose first segment happens to equal the bucket's
    name is not mistaken for a bucket-qualified path."""
    bare = open_storage("s3://condvest-test", s3_lake.settings)
    bare.write_bytes("condvest-test/x", b"1")
    bare.write_bytes("y", b"2")
    assert _keys(bare, "") == ["condvest-test/x", "y"]
    assert bare.list_dirs("") == ["condvest-test"]


def test_s3_other_writers_are_visible_at_once(s3_lake: Lake) -> None:
    """s3fs caches listings; a lake shared with other writers (shards, the fetch Lambda) must
    see their writes on the next call."""
    first = s3_lake.storage
    second = open_storage(s3_lake.uri, s3_lake.settings)
    assert first is not second
    assert first.list_objects("shared/") == []
    assert first.list_dirs("shared/") == []
    second.write_bytes("shared/sub/k", b"from second")
    assert _keys(first, "shared/") == ["shared/sub/k"]
    assert first.list_dirs("shared/") == ["sub"]
    assert first.read_bytes("shared/sub/k") == b"from second"
    second.delete("shared/sub/k")
    assert first.list_objects("shared/") == []
    assert first.stat("shared/sub/k") is None


def test_parquet_encoding_profile() -> None:
    """Strings are dictionary-encoded, floats are not; statistics exist on what readers filter
    on (dates, strings, integers) and not on float prices; the rows read back equal."""
    import io

    import pyarrow.parquet as pq

    from condvest.storage import parquet_bytes

    table = pa.table(
        {
            "symbol": pa.array(["AAA", "AAA", "BBB"]),
            "start_date": pa.array([date(2024, 1, 2), date(2024, 1, 5), date(2024, 1, 2)]),
            "close": pa.array([1.5, 2.25, 3.125]),
            "transactions": pa.array([10, None, 30], pa.int64()),
        }
    )
    data = parquet_bytes(table)
    assert pq.read_table(io.BytesIO(data)).equals(table)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    chunks = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in chunks["symbol"].encodings
    assert not any("DICTIONARY" in e for e in chunks["close"].encodings)
    assert chunks["close"].statistics is None
    stats = chunks["start_date"].statistics
    assert (stats.min, stats.max) == (date(2024, 1, 2), date(2024, 1, 5))
    assert chunks["symbol"].statistics.max == "BBB"
    assert chunks["transactions"].statistics.null_count == 1


def test_compact_json_reads_back(tmp_path: Any) -> None:
    from condvest.storage import json_bytes

    body = {"b": [1, 2.5, None], "a": {"z": "x", "y": date(2024, 1, 2)}}
    compact = json_bytes(body, compact=True)
    assert b" " not in compact and compact.endswith(b"\n")
    assert json.loads(compact) == json.loads(json_bytes(body))


def test_list_objects_agrees_with_stat(lake: Lake) -> None:
    st = lake.storage
    for key in ("s/a/1", "s/a/2", "s/b", "s/c/d/e"):
        st.write_bytes(key, key.encode() * 3)
    listed = st.list_objects("s/")
    assert [o.key for o in listed] == ["s/a/1", "s/a/2", "s/b", "s/c/d/e"]
    for info in listed:
        assert info == st.stat(info.key)


def test_local_failed_sync_leaves_no_temp_file_and_the_old_bytes(
    local_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose bytes cannot be made durable is never renamed into place."""
    import errno

    from condvest.storage import local

    st = local_lake.storage
    st.write_bytes("d/k", b"old")
    _, version = st.read_versioned("d/k")

    def broken_sync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(local.os, "fdatasync", broken_sync)
    with pytest.raises(StorageError, match=r"cannot write .*Input/output error"):
        st.replace("d/k", b"new", version)
    with pytest.raises(StorageError, match="cannot write"):
        st.create("d/other", b"new")
    monkeypatch.undo()
    assert st.read_bytes("d/k") == b"old"
    assert _keys(st, "d/") == ["d/k"]
