"""The PostgreSQL cache against a real server (each test in its own schema): schema and upgrade
path, bulk upserts that change nothing on a repeat, exact prices, one-transaction sessions,
a monotonic watermark under concurrency, retention, metadata, job runs, and clear errors."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pyarrow as pa
import pytest

from condvest.errors import DatabaseError
from condvest.logging import redact
from condvest.sinks import open_sink
from condvest.sinks.pg_schema import MIGRATIONS, V1, Migration, latest_version
from condvest.sinks.postgres import PostgresSink
from condvest.state.runs import RunRecord
from pg_helpers import bronze, password_refusing_server, pg_settings

pytestmark = pytest.mark.postgres

D1, D2, D3 = date(2026, 1, 2), date(2026, 1, 5), date(2026, 1, 6)


@pytest.fixture
def sink(pg_schema: tuple[str, str]) -> Iterator[PostgresSink]:
    dsn, schema = pg_schema
    with PostgresSink.from_settings(pg_settings(dsn, schema)) as opened:
        yield opened


def query(dsn: str, text: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(text, params).fetchall()  # type: ignore[arg-type]


def table_digest(dsn: str, schema: str) -> tuple[object, ...]:
    rows = query(
        dsn,
        "select count(*), md5(string_agg(t::text, '|' order by symbol, date)) "
        f'from "{schema}".raw_ohlcv t',
    )
    return rows[0]


# -- opening ----------------------------------------------------------------------------------
def test_postgres_off_never_imports_psycopg(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from condvest.settings import load_settings\n"
        "from condvest.sinks import open_sink\n"
        "from condvest.jobs.base import JobContext\n"
        "from condvest.jobs.status.job import run_status\n"
        "import condvest.cli.app\n"
        f"s = load_settings(env={{}}, overrides={{'lake': {{'uri': {str(tmp_path)!r}}}}})\n"
        "assert open_sink(s) is None\n"
        "result = run_status(JobContext.from_settings(s))\n"
        "assert result.database == {'enabled': False}, result.database\n"
        "assert 'psycopg' not in sys.modules, 'psycopg was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_schema_created_on_first_use_and_init_is_idempotent(
    sink: PostgresSink, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    assert sink.watermark() is None  # first use creates the tables
    tables = {
        r[0]
        for r in query(
            dsn,
            "select table_name from information_schema.tables where table_schema = %s",
            [schema],
        )
    }
    assert {"raw_ohlcv", "symbol_metadata", "watermarks", "job_runs", "dividends"} <= tables
    assert sink.init_schema() == (2, 2)
    assert sink.schema_version() == 2 == latest_version()
    types = dict(
        query(
            dsn,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = %s and table_name = 'raw_ohlcv'",
            [schema],
        )
    )
    assert {types[c] for c in ("open", "high", "low", "close")} == {"double precision"}


def test_upgrade_path_applies_the_next_migration_once(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    settings = pg_settings(dsn, schema)
    n = latest_version()
    nxt = Migration(
        n + 1, "test: a note column", ("alter table {schema}.raw_ohlcv add column note text",)
    )
    with PostgresSink(settings) as current:
        assert current.init_schema() == (0, n)

    # Two processes' worth of upgraders at once: the advisory lock lets exactly one apply it.
    outcomes: list[tuple[int, int]] = []

    def upgrade() -> None:
        with PostgresSink(settings, migrations=(*MIGRATIONS, nxt)) as upgrader:
            outcomes.append(upgrader.init_schema())

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [(n, n + 1)] + [(n + 1, n + 1)] * 3
    versions = query(dsn, f'select version from "{schema}".condvest_schema_version order by 1')
    assert versions == [(v,) for v in range(1, n + 2)]
    cols = query(
        dsn,
        "select column_name from information_schema.columns where table_schema = %s "
        "and table_name = 'raw_ohlcv' and column_name = 'note'",
        [schema],
    )
    assert cols == [("note",)]
    # An older condvest refuses a newer schema instead of writing into it.
    with PostgresSink(settings) as old, pytest.raises(DatabaseError, match="newer than"):
        old.upsert_rows(bronze(["AAA"], [D1]))
    # A failing migration rolls back whole: version and tables stay as they were.
    bad = Migration(n + 2, "broken", ("create table {schema}.half_done (x int)", "select 1/0"))
    with (
        PostgresSink(settings, migrations=(*MIGRATIONS, nxt, bad)) as broken,
        pytest.raises(DatabaseError),
    ):
        broken.init_schema()
    assert query(dsn, f'select max(version) from "{schema}".condvest_schema_version') == [(n + 1,)]
    assert query(dsn, "select to_regclass(%s)", [f'"{schema}".half_done']) == [(None,)]


# -- rows ---------------------------------------------------------------------------------------
def test_upsert_100k_rows_twice_changes_nothing_the_second_time(
    sink: PostgresSink, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    days = [D1 + timedelta(days=i) for i in range(20)]
    rows = bronze([f"S{i:04d}" for i in range(5000)], days)
    assert rows.num_rows == 100_000
    assert sink.upsert_rows(rows) == 100_000
    first = table_digest(dsn, schema)
    assert sink.upsert_rows(rows) == 0
    assert table_digest(dsn, schema) == first
    # A re-fetch of the same values at a later time is not a change either.
    one = rows.slice(1, 1)
    later = one.set_column(
        9, "fetched_at", pa.array([datetime(2026, 2, 1, tzinfo=UTC)], pa.timestamp("ms", tz="UTC"))
    )
    assert sink.upsert_rows(later) == 0
    # One changed price is one changed row.
    assert sink.upsert_rows(one.set_column(5, "close", pa.array([11.0]))) == 1
    assert query(
        dsn,
        f'select close from "{schema}".raw_ohlcv where symbol = %s and date = %s',
        ["S0001", D1],
    ) == [(11.0,)]


def test_prices_keep_full_precision(sink: PostgresSink, pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    prices = [0.0345, 1 / 3, 123456.78901234567, 1e-6]
    table = pa.concat_tables([bronze([f"P{i}"], [D1], close=p) for i, p in enumerate(prices)])
    sink.upsert_rows(table)
    got = dict(query(dsn, f'select symbol, close from "{schema}".raw_ohlcv'))
    assert [got[f"P{i}"] for i in range(len(prices))] == prices
    assert query(
        dsn, f'select close::text from "{schema}".raw_ohlcv where symbol = %s', ["P0"]
    ) == [("0.0345",)]


def test_duplicate_keys_in_one_batch_keep_the_newest_fetch(
    sink: PostgresSink, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    old = bronze(["DUP"], [D1], close=1.0, fetched=datetime(2026, 1, 2, tzinfo=UTC))
    new = bronze(["DUP"], [D1], close=2.0, fetched=datetime(2026, 1, 3, tzinfo=UTC))
    assert sink.upsert_rows(pa.concat_tables([new, old])) == 1
    assert query(dsn, f'select close from "{schema}".raw_ohlcv') == [(2.0,)]


def test_session_is_one_transaction_a_failure_leaves_neither_rows_nor_watermark(
    sink: PostgresSink, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    assert sink.upsert_session(D1, bronze(["AAA", "BBB"], [D1]), run_id="r1") == 2

    def boom() -> None:
        raise RuntimeError("injected between the row upsert and the watermark update")

    sink.after_rows_hook = boom
    with pytest.raises(RuntimeError, match="injected"):
        sink.upsert_session(D2, bronze(["AAA", "BBB"], [D2]), run_id="r2")
    sink.after_rows_hook = None
    assert query(dsn, f'select count(*) from "{schema}".raw_ohlcv where date = %s', [D2]) == [(0,)]
    assert sink.watermark() == D1
    # A row violating a constraint (NULL close) fails the whole session the same way.
    bad = bronze(["AAA", "BBB"], [D2])
    bad = bad.set_column(5, "close", pa.array([10.0, None], pa.float64()))
    with pytest.raises(DatabaseError, match="close") as err:
        sink.upsert_session(D2, bad, run_id="r3")
    assert "\n" not in str(err.value)
    assert query(dsn, f'select count(*) from "{schema}".raw_ohlcv') == [(2,)]
    assert sink.watermark() == D1
    # And the connection is still usable afterwards.
    assert sink.upsert_session(D2, bronze(["AAA", "BBB"], [D2]), run_id="r4") == 2
    assert sink.watermark() == D2


def test_watermark_never_moves_backwards_and_keeps_history(sink: PostgresSink) -> None:
    assert sink.advance_watermark(D2, run_id="a") == D2
    assert sink.advance_watermark(D1, run_id="b") == D2
    assert sink.upsert_session(D1, bronze(["AAA"], [D1]), run_id="c") == 1  # late backfill
    assert sink.watermark() == D2
    assert sink.advance_watermark(D3, run_id="d") == D3
    assert sink.watermark_history() == [(D2, False), (D3, True)]


def test_concurrent_sessions_keep_one_current_watermark_at_the_max(
    pg_schema: tuple[str, str],
) -> None:
    dsn, schema = pg_schema
    settings = pg_settings(dsn, schema)
    with PostgresSink(settings) as first:
        first.init_schema()
    days = [D1 + timedelta(days=i) for i in range(12)]
    order = days[::2] + days[1::2][::-1] + days[:4]  # out of order, with repeats
    barrier = threading.Barrier(len(order))
    errors: list[BaseException] = []

    def land(day: date) -> None:
        try:
            with PostgresSink(settings) as mine:
                barrier.wait(timeout=30)
                mine.upsert_session(day, bronze(["AAA", "BBB", "CCC"], [day]), run_id=str(day))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=land, args=(d,)) for d in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    current = query(dsn, f'select value from "{schema}".watermarks where is_current')
    assert current == [(max(days),)]
    values = [r[0] for r in query(dsn, f'select value from "{schema}".watermarks order by id')]
    assert values == sorted(values) and len(set(values)) == len(values)  # only ever forwards
    assert query(dsn, f'select count(*) from "{schema}".raw_ohlcv') == [(3 * len(days),)]


# -- dividends --------------------------------------------------------------------------------
def _dividends(amounts: dict[str, float], fetched: datetime) -> pa.Table:
    from condvest.core.schema import DIVIDEND_SCHEMA

    return pa.Table.from_pylist(
        [
            {
                "id": ident,
                "symbol": "KO",
                "ex_dividend_date": D1 + timedelta(days=i),
                "cash_amount": amount,
                "currency": "USD",
                "dividend_type": "CD",
                "frequency": 4 if i else None,
                "declaration_date": None,
                "record_date": D1,
                "pay_date": D3,
                "fetched_at": fetched,
                "source": "polygon",
            }
            for i, (ident, amount) in enumerate(sorted(amounts.items()))
        ],
        schema=DIVIDEND_SCHEMA,
    )


def test_dividends_upsert_on_id_is_idempotent_and_newest_wins(
    sink: PostgresSink, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    t0 = datetime(2026, 1, 5, 22, tzinfo=UTC)
    assert sink.upsert_dividends(_dividends({"a": 0.485, "b": 0.5}, t0)) == 2
    assert sink.upsert_dividends(_dividends({"a": 0.485, "b": 0.5}, t0 + timedelta(hours=1))) == 0
    assert sink.upsert_dividends(_dividends({"a": 0.49}, t0 + timedelta(hours=2))) == 1
    assert sink.upsert_dividends(_dividends({"a": 0.1}, t0)) == 0  # an older answer
    rows = query(
        dsn,
        "select id, cash_amount, frequency, record_date, fetched_at "
        f'from "{schema}".dividends order by id',
    )
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [("a", 0.49, None, D1), ("b", 0.5, 4, D1)]
    assert rows[0][4] == t0 + timedelta(hours=2)
    assert sink.upsert_dividends(_dividends({}, t0)) == 0


def test_a_v1_database_gains_the_dividends_table(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    settings = pg_settings(dsn, schema)
    with PostgresSink(settings, migrations=(V1,)) as old:
        old.upsert_rows(bronze(["AAA"], [D1]))
    with PostgresSink(settings) as new:
        assert new.init_schema() == (1, 2)
        assert new.upsert_dividends(_dividends({"x": 1.0}, datetime.now(UTC))) == 1
    assert query(dsn, f'select count(*) from "{schema}".raw_ohlcv') == [(1,)]


# -- metadata, runs, retention --------------------------------------------------------------------
def test_metadata_upsert_types_and_repeat(sink: PostgresSink, pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    meta = pa.table(
        {
            "symbol": ["AAPL", "OLD"],
            "name": ["Apple Inc.", "Gone Corp"],
            "active": [True, False],
            "list_date": ["1980-12-12", None],
            "delisted_utc": [None, "2024-03-01T00:00:00Z"],
            "market_cap": [3.4e12, None],
            "cik": ["0000320193", None],
            "sic_code": ["3571", None],
            "sic_description": ["ELECTRONIC COMPUTERS", None],
        }
    )
    assert sink.upsert_metadata(meta) == 2
    assert sink.upsert_metadata(meta) == 0
    rows = query(
        dsn,
        f'select symbol, active, list_date, industry, market_cap from "{schema}".symbol_metadata '
        "order by symbol",
    )
    assert rows == [
        ("AAPL", True, date(1980, 12, 12), "ELECTRONIC COMPUTERS", 3.4e12),
        ("OLD", False, None, None, None),
    ]
    changed = meta.set_column(2, "active", pa.array([True, True]))
    assert sink.upsert_metadata(changed) == 1


def test_record_run_inserts_then_updates(sink: PostgresSink) -> None:
    record = RunRecord(stage="fetch", run_id="run-1", started_at="2026-01-05T22:00:00+00:00")
    sink.record_run(record)
    assert sink.last_runs()["fetch"]["outcome"] == "running"
    done = record.finished("success", datetime(2026, 1, 5, 22, 5, tzinfo=UTC), {"rows": 5})
    sink.record_run(done)
    view = sink.last_runs()["fetch"]
    assert view["outcome"] == "success" and view["ended_at"].startswith("2026-01-05T22:05")


def test_retention_deletes_in_batches_and_dry_run_only_counts(
    sink: PostgresSink, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    days = [D1 + timedelta(days=i) for i in range(10)]
    sink.upsert_rows(bronze([f"R{i}" for i in range(50)], days))
    today = D1 + timedelta(days=10)
    assert sink.delete_older_than(5, dry_run=True, today=today) == 250
    assert query(dsn, f'select count(*) from "{schema}".raw_ohlcv') == [(500,)]
    assert sink.delete_older_than(5, today=today, batch_rows=100) == 250
    assert query(dsn, f'select min(date), count(*) from "{schema}".raw_ohlcv') == [
        (today - timedelta(days=5), 250)
    ]
    assert sink.delete_older_than(5, today=today) == 0


# -- credentials and errors ---------------------------------------------------------------------
def test_secret_arn_from_secrets_manager(moto_endpoint: str, pg_schema: tuple[str, str]) -> None:
    import json

    import botocore.session

    from conftest import PG_DB, PG_HOST, PG_PORT

    _, schema = pg_schema
    password = "s3cret-from-rds-9f2"
    client = botocore.session.get_session().create_client(
        "secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint
    )
    body = {
        "host": PG_HOST,
        "port": PG_PORT,
        "username": "postgres",
        "password": password,
        "dbname": PG_DB,
        "engine": "postgres",
    }
    arn = client.create_secret(Name=f"rds-{schema}", SecretString=json.dumps(body))["ARN"]
    from condvest.settings import load_settings

    settings = load_settings(
        env={
            "RDS_SECRET_ARN": arn,
            "CONDVEST_POSTGRES__SECRETS_ENDPOINT_URL": moto_endpoint,
            "CONDVEST_POSTGRES__SCHEMA_NAME": schema,
        },
    )
    opened = open_sink(settings)
    assert opened is not None
    try:
        assert opened.upsert_session(D1, bronze(["AAA"], [D1]), run_id="r") == 1
        assert opened.where == f"postgres@{PG_HOST}:{PG_PORT}/{PG_DB}"
    finally:
        opened.close()
    assert redact(f"dsn password={password} and {password}") == "dsn password=*** and ***"

    missing = load_settings(
        env={
            "RDS_SECRET_ARN": arn + "-nope",
            "CONDVEST_POSTGRES__SECRETS_ENDPOINT_URL": moto_endpoint,
        }
    )
    with pytest.raises(DatabaseError, match="ResourceNotFoundException"):
        PostgresSink.from_settings(missing).watermark()
    partial = client.create_secret(
        Name=f"partial-{schema}", SecretString=json.dumps({"host": "h", "username": "u"})
    )["ARN"]
    lacking = load_settings(
        env={"RDS_SECRET_ARN": partial, "CONDVEST_POSTGRES__SECRETS_ENDPOINT_URL": moto_endpoint}
    )
    with pytest.raises(DatabaseError, match="lacks password"):
        PostgresSink.from_settings(lacking).watermark()


PASSWORD = "hunter2-Zq9x"


def _one_clean_line(exc: DatabaseError) -> str:
    text = str(exc)
    assert "\n" not in text
    assert PASSWORD not in text
    return text


def test_unreachable_host_is_one_line_without_password() -> None:
    settings = pg_settings(f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test", "public")
    with pytest.raises(DatabaseError) as err:
        PostgresSink.from_settings(settings).watermark()
    text = _one_clean_line(err.value)
    assert "postgres@127.0.0.1:1/test" in text and "refused" in text


def test_bad_dsn_is_one_line_without_password() -> None:
    settings = pg_settings(f"host=127.0.0.1 password={PASSWORD} junk", "public")
    with pytest.raises(DatabaseError) as err:
        PostgresSink.from_settings(settings).watermark()
    assert "not a valid PostgreSQL connection string" in _one_clean_line(err.value)


def test_wrong_password_is_one_line_without_password() -> None:
    with password_refusing_server() as port:
        dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/test"
        with pytest.raises(DatabaseError) as err:
            PostgresSink.from_settings(pg_settings(dsn, "public")).watermark()
        assert "password authentication failed" in _one_clean_line(err.value)
