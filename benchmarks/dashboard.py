"""Manager dashboards at plant scale: a year of inspections in PostgreSQL, rollups built from
the verdicts, then every dashboard chart timed through the real API (Django test client:
session auth, access check, selectors, JSON or CSV rendering).

    .venv/bin/python benchmarks/dashboard.py                  # 10,000,000 inspections
    .venv/bin/python benchmarks/dashboard.py --inspections 1000000 --reuse

DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) names the server only: the
data lives in its own database, loupe_dashboard_bench (--database), dropped and created
afresh unless --reuse finds it already holding that many inspections. The suite's test and
test_test databases are never touched.

Data: 4 lines x 3 stations, 6 SKUs, 6 defect classes, captured_at spread over the 365 days
up to today (UTC); ~4 % failed (more on line 4, shift C and SKU-6), 10 % decided by people,
a fifth of those audit samples (2 % of parts) with escapes and false rejects; 300 parts
waiting in the review queue. Generated in the database (INSERT ... SELECT generate_series),
in batches of --batch parts, with progress printed.

Prints one table (p50/p95 per query over --repeats runs with sliding date windows) and ends
with one JSON line: {"inspections", "p95_ms_max"}; the same text goes to
benchmarks/results/dashboard-latest.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROTECTED_DATABASES = {"test", "test_test", "postgres", "template0", "template1"}
LINES, STATIONS_PER_LINE, SKUS = 4, 3, 6
DEFECTS = ["scratch", "pit", "crack", "dent", "stain", "burr"]


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def server_url(url: str, database: str) -> str:
    return urlparse(url)._replace(path=f"/{database}").geturl()


def existing_inspections(url: str) -> int | None:
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            # The generated parts only ('B' serials), not the review backlog added after them.
            row = conn.execute("SELECT count(*) FROM inspection_part WHERE serial LIKE 'B%'").fetchone()
            return int(row[0]) if row else None
    except psycopg.Error:
        return None


def fresh_database(url: str, name: str) -> None:
    import psycopg

    if name in PROTECTED_DATABASES:
        raise SystemExit(f"refusing to drop the {name!r} database")
    with psycopg.connect(server_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inspections", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=1_000_000, help="parts generated per statement")
    parser.add_argument("--repeats", type=int, default=40, help="timed runs per query")
    parser.add_argument("--database", default="loupe_dashboard_bench")
    parser.add_argument("--reuse", action="store_true", help="keep the data if the database already holds it")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "dashboard-latest.txt")
    args = parser.parse_args(argv)

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    if not base_url.startswith("postgres"):
        raise SystemExit("this benchmark needs PostgreSQL: set DATABASE_URL=postgres://...")
    if args.database in PROTECTED_DATABASES:
        raise SystemExit(f"--database {args.database!r} is reserved")
    bench_url = server_url(base_url, args.database)
    reuse = args.reuse and existing_inspections(bench_url) == args.inspections
    if not reuse:
        fresh_database(base_url, args.database)
    var = Path(tempfile.mkdtemp(prefix="loupe-dashboard-"))
    os.environ.update(
        {
            "DATABASE_URL": bench_url,
            "LOUPE_VAR_DIR": str(var),
            "DJANGO_SETTINGS_MODULE": "loupe.settings",
            "ALLOWED_HOSTS": "testserver,localhost",
        }
    )
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")  # nothing here uses it

    import django

    django.setup()
    from django.core.management import call_command

    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    call_command("migrate", verbosity=0)
    log(f"Dashboard benchmark: {args.inspections:,} inspections, PostgreSQL database {args.database}, "
        f"{os.cpu_count()} CPUs")  # fmt: skip
    table: list[tuple[str, str, str, str]] = []
    if reuse:
        log("reusing the generated data (--reuse)")
        project, manager = plant_of()
    else:
        started = time.perf_counter()
        project, manager = generate(args.inspections, args.batch, log)
        seconds = time.perf_counter() - started
        table.append(("generate inspections, parts, verdicts", "", f"{seconds:.1f} s", ""))
        started = time.perf_counter()
        written = rebuild(project, log)
        table.append(
            (f"rollups_rebuild ({written['yield_rows']:,} + {written['defect_rows']:,} rows)", "",
             f"{time.perf_counter() - started:.1f} s", "")
        )  # fmt: skip

    upsert = time_upserts(project)
    table.append(("rollup upserts per verdict (x200, rolled back)", "", f"{upsert[0]:.2f}", f"{upsert[1]:.2f}"))
    recut_seconds, recut_rows = time_time_zone_change(project)
    table.append((f"new time zone: re-cut days and shifts ({recut_rows:,} rows)", "", f"{recut_seconds:.1f} s", ""))
    results = time_charts(project, manager, args.repeats, log)
    for name, rows, p50, p95 in results:
        table.append((name, str(rows), f"{p50:.1f}", f"{p95:.1f}"))

    log("")
    log(f"{'query':<62}{'rows':>7}{'p50 ms':>10}{'p95 ms':>10}")
    for name, rows_text, p50_text, p95_text in table:
        log(f"{name:<62}{rows_text:>7}{p50_text:>10}{p95_text:>10}")
    headline = {"inspections": args.inspections, "p95_ms_max": round(max(p95 for _, _, _, p95 in results), 1)}
    log(json.dumps(headline))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


def plant_of() -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model

    from inspection.models import Project

    return Project.objects.get(name="Bench"), get_user_model().objects.get(username="bench-manager")


def generate(total: int, batch: int, log: Callable[[str], None]) -> tuple[Any, Any]:
    """The plant's rows through the ORM, the year of parts through server-side SQL."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from inspection.models import DefectClass, Image, Line, Membership, Project, Station

    users = get_user_model()
    with transaction.atomic():
        project = Project.objects.create(name="Bench")
        manager = users.objects.create(username="bench-manager")
        Membership.objects.create(user=manager, project=project, role="manager")
        reviewers = [users.objects.create(username=f"bench-reviewer-{n}") for n in range(3)]
        for reviewer in reviewers:
            Membership.objects.create(user=reviewer, project=project, role="reviewer")
        stations = []
        for line_index in range(LINES):
            line = Line.objects.create(project=project, name=f"Line {line_index + 1}")
            for station_index in range(STATIONS_PER_LINE):
                stations.append(Station.objects.create(project=project, line=line, name=f"Cam {station_index + 1}"))
        classes = [DefectClass.objects.create(project=project, name=name) for name in DEFECTS]
        images = [
            Image.objects.create(sha256=f"{n:064x}", file=f"images/bench/{n}.png", format="PNG", width=512,
                                 height=512, bytes=40_000)
            for n in range(1000)
        ]  # fmt: skip

    station_ids = "ARRAY[" + ",".join(str(s.pk) for s in stations) + "]::bigint[]"
    class_ids = "ARRAY[" + ",".join(str(c.pk) for c in classes) + "]::bigint[]"
    reviewer_ids = "ARRAY[" + ",".join(str(r.pk) for r in reviewers) + "]::bigint[]"
    first_image = images[0].pk
    end = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC)
    start = end - timedelta(days=365)
    seconds_per_part = 365 * 86400 / total
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SELECT setseed(0.42)")
        deferred = _drop_secondary_indexes(cursor, BULK_TABLES)
        done, started = 0, time.perf_counter()
        while done < total:
            size = min(batch, total - done)
            part_floor = _max_id(cursor, "inspection_part")
            inspection_floor = _max_id(cursor, "inspection_inspection")
            verdict_floor = _max_id(cursor, "inspection_verdict")
            with transaction.atomic():
                # Parts: serials in order; SKU at random; created when photographed.
                cursor.execute(
                    f"""
                    INSERT INTO inspection_part (project_id, serial, sku, lot, created_at)
                    SELECT %s, 'B' || lpad(i::text, 9, '0'), 'SKU-' || (1 + floor(random() * {SKUS}))::int, '',
                           %s::timestamptz + make_interval(secs => (i - 1) * %s)
                    FROM generate_series(%s, %s) AS i
                    """,  # noqa: S608  (only our own ids and constants are formatted in)
                    [project.pk, start, seconds_per_part, done + 1, done + size],
                )
                # One inspection per part, at a random station, captured when the part was made.
                cursor.execute(
                    f"""
                    INSERT INTO inspection_inspection (project_id, part_id, station_id, image_id, captured_at,
                        received_at, status, attempts, deliveries, model_version, scores, latency_ms, error,
                        finished_at, heatmap_file, mask_file)
                    SELECT p.project_id, p.id, ({station_ids})[1 + floor(random() * {LINES * STATIONS_PER_LINE})::int],
                           %s + (p.id %% 1000), p.created_at, p.created_at, 'done', 1, 1, 'bench', '{{}}', '{{}}', '',
                           p.created_at + interval '40 milliseconds', '', ''
                    FROM inspection_part p
                    WHERE p.id > %s
                    """,  # noqa: S608  (only our own ids and constants are formatted in)
                    [first_image, part_floor],
                )
                # Final verdicts: fail odds by line, shift and SKU; 10 % by people; defect
                # classes skewed (a Pareto worth drawing); 5 % of model fails name no class.
                cursor.execute(
                    f"""
                    INSERT INTO inspection_verdict (project_id, part_id, outcome, defect_class_id, source, is_final,
                        inspection_id, decided_by_id, model_version, created_at)
                    SELECT project_id, part_id, outcome,
                           CASE WHEN outcome = 'fail' AND NOT (source = 'model' AND r3 < 0.05)
                                THEN ({class_ids})[1 + floor(power(r4, 2.5) * {len(DEFECTS)})::int] END,
                           source, true, inspection_id,
                           CASE WHEN source = 'human' THEN ({reviewer_ids})[1 + floor(r3 * 3)::int] END,
                           'bench', captured_at + interval '1 second'
                    FROM (
                        SELECT i.project_id, i.part_id, i.id AS inspection_id, i.captured_at,
                               CASE WHEN r1 < 0.025
                                    + CASE WHEN s.line_idx = {LINES - 1} THEN 0.03 ELSE 0 END
                                    + CASE WHEN extract(hour FROM i.captured_at AT TIME ZONE 'UTC') >= 22
                                             OR extract(hour FROM i.captured_at AT TIME ZONE 'UTC') < 6
                                           THEN 0.02 ELSE 0 END
                                    + CASE WHEN p.sku = 'SKU-{SKUS}' THEN 0.02 ELSE 0 END
                                    THEN 'fail' ELSE 'pass' END AS outcome,
                               CASE WHEN r2 < 0.10 THEN 'human' ELSE 'model' END AS source, r3, r4
                        FROM (SELECT *, random() AS r1, random() AS r2, random() AS r3, random() AS r4
                              FROM inspection_inspection WHERE id > %s) i
                        JOIN inspection_part p ON p.id = i.part_id AND p.id > %s
                        JOIN (SELECT id, array_position({station_ids}, id) - 1 AS idx,
                                     (array_position({station_ids}, id) - 1) / {STATIONS_PER_LINE} AS line_idx
                              FROM inspection_station) s ON s.id = i.station_id
                    ) decided
                    """,  # noqa: S608  (only our own ids and constants are formatted in)
                    [inspection_floor, part_floor],
                )
                # Review items of the parts people decided; a fifth are audit samples of what
                # the models would have done (30 % of audited fails were model passes: escapes;
                # 2 % of audited passes were model fails: false rejects).
                cursor.execute(
                    """
                    INSERT INTO review_reviewitem (project_id, part_id, inspection_id, status, reason, model_version,
                        model_decision, decided_outcome, created_at, decided_by_id, decided_at)
                    SELECT v.project_id, v.part_id, v.inspection_id, 'decided',
                           CASE WHEN v.part_id %% 5 = 0 THEN 'audit_sample' ELSE 'uncertain' END, 'bench',
                           CASE WHEN v.part_id %% 5 <> 0 THEN ''
                                WHEN v.outcome = 'fail' THEN CASE WHEN random() < 0.3 THEN 'pass' ELSE 'fail' END
                                ELSE CASE WHEN random() < 0.02 THEN 'fail' ELSE 'pass' END END,
                           v.outcome, v.created_at, v.decided_by_id, v.created_at + interval '20 seconds'
                    FROM inspection_verdict v
                    WHERE v.source = 'human' AND v.id > %s
                    """,
                    [verdict_floor],
                )
            done += size
            elapsed = time.perf_counter() - started
            log(f"  generated {done:>12,} / {total:,} inspections ({elapsed:6.1f} s, "
                f"{done / elapsed:,.0f} per s)")  # fmt: skip
        # The review backlog: parts photographed in the last hours, waiting for a person.
        cursor.execute(
            """
            WITH waiting AS (
                INSERT INTO inspection_part (project_id, serial, sku, lot, created_at)
                SELECT %s, 'W' || i, 'SKU-1', '', now() - make_interval(mins => i) FROM generate_series(1, 300) i
                RETURNING id, created_at
            ), viewed AS (
                INSERT INTO inspection_inspection (project_id, part_id, station_id, image_id, captured_at,
                    received_at, status, attempts, deliveries, model_version, scores, latency_ms, error,
                    heatmap_file, mask_file)
                SELECT %s, id, %s, %s, created_at, created_at, 'done', 1, 1, 'bench', '{}', '{}', '', '', ''
                FROM waiting
                RETURNING id, part_id, received_at
            )
            INSERT INTO review_reviewitem (project_id, part_id, inspection_id, status, reason, model_version,
                model_decision, decided_outcome, created_at)
            SELECT %s, part_id, id, 'open', 'uncertain', 'bench', '', '', received_at FROM viewed
            """,
            [project.pk, project.pk, stations[0].pk, first_image, project.pk],
        )
        log(f"  recreating {len(deferred)} secondary indexes dropped for the load")
        for definition in deferred:
            cursor.execute(definition)
        log(f"  analysing tables ({time.perf_counter() - started:.1f} s)")
        cursor.execute("ANALYZE")
    return project, manager


BULK_TABLES = ("inspection_part", "inspection_inspection", "inspection_verdict", "review_reviewitem")


def _drop_secondary_indexes(cursor: Any, tables: Sequence[str]) -> list[str]:
    """Drop the non-unique indexes of ``tables`` for the bulk load (building them once at
    the end is several times faster than maintaining them row by row); returns their
    definitions, to run again. Primary keys and unique indexes stay: they keep the data honest."""
    cursor.execute(
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relname = ANY(%s) AND NOT i.indisunique AND NOT i.indisprimary
        """,
        [list(tables)],
    )
    found = cursor.fetchall()
    for name, _ in found:
        cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in found]


def _max_id(cursor: Any, table: str) -> int:
    """The highest id in ``table``: rows above it are the next batch's."""
    cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608  (fixed table names)
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def rebuild(project: Any, log: Callable[[str], None]) -> dict[str, int]:
    from django.db import connection

    from inspection.services.rollups import rollups_rebuild

    log("  building rollups from the verdicts (rollups_rebuild)")
    with connection.cursor() as cursor:
        # A bigger sort/hash budget for this one maintenance session (default 4 MB).
        cursor.execute("SET work_mem = '256MB'")
        written = rollups_rebuild(project=project)
        cursor.execute("RESET work_mem")
        cursor.execute("ANALYZE inspection_yieldrollup")
        cursor.execute("ANALYZE inspection_defectrollup")
    log(f"  rollups: {written}")
    return written


def time_upserts(project: Any) -> tuple[float, float]:
    """The cost a verdict pays to keep the dashboards current: the rollup upserts of 200
    verdicts of existing parts, each in its own savepoint, all rolled back."""
    from django.db import transaction

    from inspection.models import Verdict
    from inspection.services.rollups import rollup_record_verdict

    verdicts = list(
        Verdict.objects.filter(project=project, defect_class__isnull=False).select_related("part", "inspection")[:200]
    )
    timings = []
    with transaction.atomic():
        for verdict in verdicts:
            started = time.perf_counter()
            with transaction.atomic():
                rollup_record_verdict(verdict=verdict)
            timings.append((time.perf_counter() - started) * 1000)
        transaction.set_rollback(True)
    return percentile(timings, 50), percentile(timings, 95)


def time_time_zone_change(project: Any) -> tuple[float, int]:
    """What a manager's change of the plant's time zone costs (the PATCH re-cuts every day and
    shift row from the hour rows), rolled back so the charts below read the UTC data."""
    from django.db import transaction

    from inspection.models import Period, YieldRollup
    from inspection.services.projects import project_update

    with transaction.atomic():
        started = time.perf_counter()
        project_update(project=project, time_zone="Europe/Berlin")
        seconds = time.perf_counter() - started
        rows = YieldRollup.objects.filter(project=project, period__in=[Period.DAY, Period.SHIFT]).count()
        transaction.set_rollback(True)
    project.refresh_from_db()
    return seconds, rows


def time_charts(
    project: Any, manager: Any, repeats: int, log: Callable[[str], None]
) -> list[tuple[str, int, float, float]]:
    """Each chart through the API, ``repeats`` times, the window sliding over the year."""
    from django.test import Client

    from inspection.models import Line, Station

    client = Client()
    client.force_login(manager)
    line = Line.objects.filter(project=project).order_by("id").last()
    station = Station.objects.filter(project=project).order_by("id").first()
    assert line is not None and station is not None
    today = datetime.now(UTC).date()
    rng = random.Random(7)
    cases: list[tuple[str, str, int, str]] = [
        ("summary, 30 days", "summary", 30, ""),
        ("yield by line, 30 days", "yield", 30, "group_by=line"),
        ("yield by station, 90 days", "yield", 90, "group_by=station"),
        ("yield by SKU, 365 days", "yield", 365, "group_by=sku"),
        ("yield by shift, 365 days", "yield", 365, "group_by=shift"),
        ("yield by shift, 90 days, one line", "yield", 90, f"group_by=shift&line={line.pk}"),
        ("yield by station, 2 days, hourly", "yield", 2, "group_by=station"),
        ("yield by station, 31 days, hourly", "yield", 31, "group_by=station&interval=hour"),
        ("throughput by line, 365 days", "throughput", 365, "group_by=line"),
        ("automation, 90 days, one SKU", "automation", 90, "sku=SKU-3"),
        ("audits by line, 365 days", "audits", 365, "group_by=line"),
        ("pareto, 30 days", "pareto", 30, ""),
        ("pareto, 365 days", "pareto", 365, ""),
        ("pareto, 365 days, one station", "pareto", 365, f"station={station.pk}"),
        ("yield by station, 365 days, CSV", "yield", 365, "group_by=station&format=csv"),
        ("summary, 365 days", "summary", 365, ""),
    ]
    results = []
    for name, chart, days, extra in cases:
        timings, rows = [], 0
        for run in range(repeats + 2):  # two warm-up runs, not counted
            span_end = today - timedelta(days=0 if days == 365 else rng.randrange(0, 365 - days))
            span_start = span_end - timedelta(days=days - 1)
            url = f"/api/v1/projects/{project.pk}/dashboard/{chart}?from={span_start}&to={span_end}"
            started = time.perf_counter()
            response = client.get(url + (f"&{extra}" if extra else ""))
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (url, response.status_code, response.content[:300])
            if run >= 2:
                timings.append(elapsed)
                rows = _rows(response)
        results.append((name, rows, percentile(timings, 50), percentile(timings, 95)))
        log(f"  {name}: p50 {results[-1][2]:.1f} ms, p95 {results[-1][3]:.1f} ms")
    return results


def _rows(response: Any) -> int:
    if response["Content-Type"].startswith("text/csv"):
        return len(response.content.decode().splitlines()) - 1
    return len(response.json()["rows"])


if __name__ == "__main__":
    raise SystemExit(main())
