#!/usr/bin/env python3
"""The peers `make bench` measures Sluice against (scripts/bench.py runs this
file with .venv/bench/bin/python, one whole process per measured run).

    bench_peers.py convert TOOL IN OUTDIR --threads N --row-group R
        IN -> OUTDIR/out.parquet with TOOL (pyarrow, duckdb, polars); the input
        format comes from the name (.csv, .csv.gz, .jsonl, .parquet).
    bench_peers.py duckdb-curate INDIR OUTDIR --threads N --row-group R
        What `sluice invoke curate` does to ingest's output (validated Parquet
        under INDIR), as one duckdb query.
    bench_peers.py duckdb-profile INDIR OUTDIR --threads N
        SUMMARIZE plus quantiles over curate's output under INDIR.
    bench_peers.py to-parquet IN.csv OUT.parquet --row-group R
        Untimed helper: the Parquet input file of the bench (pyarrow).
    bench_peers.py versions
        Print `name=version` of pyarrow, duckdb and polars.

Every conversion writes zstd level 1 Parquet with R rows per row group, as
Sluice's ingest does, with the column types of contracts/trips.toml (see
`types`), so the peers do comparable work. They do not validate rows, compute
record ids or partition by day (Sluice does all three)."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "contracts" / "trips.toml"
ZONES = ROOT / "contracts" / "reference" / "taxi_zones.csv"
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
ZSTD_LEVEL = 1
# curate writes zstd level 3 (functions/curate/src/transform.rs).
CURATE_ZSTD_LEVEL = 3


def fields() -> list[dict]:
    with open(CONTRACT, "rb") as f:
        return tomllib.load(f)["fields"]


def contract() -> dict:
    with open(CONTRACT, "rb") as f:
        return tomllib.load(f)


# --- pyarrow -----------------------------------------------------------------


def pa_types():
    import pyarrow as pa

    out = {}
    for f in fields():
        t = f["type"]
        if t == "int":
            out[f["name"]] = pa.int64()
        elif t == "float":
            out[f["name"]] = pa.float64()
        elif t == "string":
            out[f["name"]] = pa.string()
        elif t == "timestamp":
            # Naive µs: the CSV text has no zone, and pyarrow refuses to read
            # zone-less text into a zoned type (Sluice writes UTC-zoned µs).
            out[f["name"]] = pa.timestamp("us")
        elif t == "decimal":
            out[f["name"]] = pa.decimal128(f["precision"], f["scale"])
        else:
            raise SystemExit(f"{CONTRACT}: field {f['name']}: unknown type {t!r}")
    return out


def pa_setup(threads: int):
    import pyarrow as pa

    pa.set_cpu_count(threads)
    pa.set_io_thread_count(threads)
    return pa


def pyarrow_convert(src: str, out: str, threads: int, row_group: int) -> int:
    pa = pa_setup(threads)
    import pyarrow.parquet as pq

    use_threads = threads > 1
    types = pa_types()
    rows = 0

    def writer(schema):
        return pq.ParquetWriter(out, schema, compression="zstd", compression_level=ZSTD_LEVEL)

    if src.endswith(".parquet"):
        pf = pq.ParquetFile(src)
        w = writer(pf.schema_arrow)
        # One batch per row group: write_batch starts a row group per call.
        for batch in pf.iter_batches(batch_size=row_group, use_threads=use_threads):
            w.write_batch(batch, row_group_size=row_group)
            rows += batch.num_rows
        w.close()
        return rows
    if src.endswith(".jsonl"):
        import pyarrow.json as pj

        schema = pa.schema([(n, t) for n, t in types.items()])
        # pyarrow's JSON reader has no streaming API: the whole table is in memory.
        table = pj.read_json(
            src,
            read_options=pj.ReadOptions(use_threads=use_threads),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
        )
        pq.write_table(
            table, out, compression="zstd", compression_level=ZSTD_LEVEL, row_group_size=row_group
        )
        return table.num_rows
    import pyarrow.csv as pc

    stream = pa.input_stream(src, compression="gzip" if src.endswith(".gz") else None)
    reader = pc.open_csv(
        stream,
        read_options=pc.ReadOptions(use_threads=use_threads, block_size=1 << 20),
        convert_options=pc.ConvertOptions(column_types=types, timestamp_parsers=[TS_FORMAT]),
    )
    w = writer(reader.schema)
    # ParquetWriter.write_batch starts a row group per call at most
    # row_group_size rows: gather batches up to the row-group size first.
    pending, n = [], 0
    for batch in reader:
        pending.append(batch)
        n += batch.num_rows
        if n >= row_group:
            t = pa.Table.from_batches(pending)
            w.write_table(t.slice(0, row_group), row_group_size=row_group)
            rest = t.slice(row_group)
            pending, n = rest.to_batches(), rest.num_rows
            rows += row_group
    if n:
        w.write_table(pa.Table.from_batches(pending, schema=reader.schema), row_group_size=row_group)
        rows += n
    w.close()
    return rows


def to_parquet(src: str, out: str, row_group: int) -> None:
    """The bench's Parquet input: the CSV with the contract's types."""
    pyarrow_convert(src, out, os.cpu_count() or 1, row_group)


# --- duckdb ------------------------------------------------------------------


def duck_type(f: dict) -> str:
    return {
        "int": "BIGINT",
        "float": "DOUBLE",
        "string": "VARCHAR",
        # TIMESTAMP is naive µs; TIMESTAMPTZ would add a zone conversion.
        "timestamp": "TIMESTAMP",
    }.get(f["type"]) or f"DECIMAL({f.get('precision', 18)},{f.get('scale', 3)})"


def duck_columns() -> str:
    cols = ", ".join(f"'{f['name']}': '{duck_type(f)}'" for f in fields())
    return "{" + cols + "}"


def duck_connect(threads: int):
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads={threads}")
    con.execute("SET preserve_insertion_order=true")
    return con


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def duckdb_convert(src: str, out: str, threads: int, row_group: int) -> int:
    con = duck_connect(threads)
    if src.endswith(".parquet"):
        scan = f"read_parquet({sql_str(src)})"
    elif src.endswith(".jsonl"):
        scan = (
            f"read_json({sql_str(src)}, format='newline_delimited', columns={duck_columns()}, "
            f"timestampformat='{TS_FORMAT}')"
        )
    else:
        # read_csv recognises .gz by the name and decompresses natively.
        scan = (
            f"read_csv({sql_str(src)}, header=true, columns={duck_columns()}, "
            f"timestampformat='{TS_FORMAT}')"
        )
    con.execute(
        f"COPY (SELECT * FROM {scan}) TO {sql_str(out)} "
        f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {ZSTD_LEVEL}, ROW_GROUP_SIZE {row_group})"
    )
    return con.execute(f"SELECT count(*) FROM read_parquet({sql_str(out)})").fetchone()[0]


def curate_sql(src_glob: str, out: str, row_group: int) -> str:
    """functions/curate: drop rows whose _record_id repeats within a file (the
    first is kept), add the derived columns and the zone lookups of
    contracts/trips.toml [curate], write zstd (level 3, as curate does)."""
    cur = contract()["curate"]
    derived = []
    for d in cur["derived"]:
        if d["kind"] == "duration":
            div = {"seconds": 1e6, "minutes": 60e6, "hours": 3600e6}[d.get("unit", "minutes")]
            derived.append(
                f"(epoch_us({d['end']}) - epoch_us({d['start']})) / {div} AS {d['name']}"
            )
        elif d["kind"] == "ratio":
            num, den = d["numerator"], d["denominator"]
            # A derived operand refers to the expression before it.
            exprs = {x["name"]: x for x in cur["derived"]}
            if den in exprs and exprs[den]["kind"] == "duration":
                e = exprs[den]
                div = {"seconds": 1e6, "minutes": 60e6, "hours": 3600e6}[e.get("unit", "minutes")]
                den = f"((epoch_us({e['end']}) - epoch_us({e['start']})) / {div})"
            derived.append(
                f"CAST({num} AS DOUBLE) * {d.get('scale', 1.0)} / NULLIF(CAST({den} AS DOUBLE), 0) "
                f"AS {d['name']}"
            )
    joins, cols = [], []
    for i, j in enumerate(cur["joins"]):
        a = f"z{i}"
        joins.append(
            f"LEFT JOIN zones {a} ON {a}.{j['key']} = d.{j['on']}"
        )
        cols += [f"{a}.{c} AS {j.get('prefix', '')}{c}" for c in j["columns"]]
    return f"""
    COPY (
      WITH src AS (SELECT * FROM read_parquet({sql_str(src_glob)}, filename=true, hive_partitioning=false)),
      d AS (
        SELECT * EXCLUDE (filename) FROM src
        QUALIFY row_number() OVER (PARTITION BY filename, _record_id ORDER BY _line) = 1
      )
      SELECT d.*, {', '.join(derived)}, {', '.join(cols)}
      FROM d {' '.join(joins)}
    ) TO {sql_str(out)}
    (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {CURATE_ZSTD_LEVEL}, ROW_GROUP_SIZE {row_group})
    """


def duckdb_curate(src_dir: str, out: str, threads: int, row_group: int) -> int:
    con = duck_connect(threads)
    con.execute(
        f"CREATE TABLE zones AS SELECT * FROM read_csv({sql_str(str(ZONES))}, header=true, "
        "columns={'LocationID': 'BIGINT', 'Borough': 'VARCHAR', 'Zone': 'VARCHAR', 'service_zone': 'VARCHAR'})"
    )
    con.execute(curate_sql(f"{src_dir}/**/*.parquet", out, row_group))
    return con.execute(f"SELECT count(*) FROM read_parquet({sql_str(out)})").fetchone()[0]


def duckdb_profile(src_dir: str, out: str, threads: int) -> int:
    """functions/profile: per column count, nulls, min, max, mean, stddev,
    approximate distinct count, quantiles p01..p99 (SUMMARIZE gives all but
    p01/p99, added with approx_quantile); written as JSON."""
    import json

    con = duck_connect(threads)
    scan = f"read_parquet({sql_str(src_dir + '/**/*.parquet')}, hive_partitioning=false)"
    summary = con.execute(f"SUMMARIZE SELECT * EXCLUDE (_record_id, _line, _source) FROM {scan}").fetchall()
    names = [d[0] for d in con.description]
    numeric = [
        r[0]
        for r in summary
        if r[1].startswith(("BIGINT", "DOUBLE", "DECIMAL", "TIMESTAMP", "INTEGER"))
    ]
    qs = ", ".join(
        f"approx_quantile({c}, [0.01, 0.99]) AS \"{c}\"" for c in numeric
    )
    extra = con.execute(f"SELECT {qs} FROM {scan}").fetchone()
    report = {
        "columns": [dict(zip(names, map(str, r))) for r in summary],
        "p01_p99": {c: [str(v) for v in q] for c, q in zip(numeric, extra)},
    }
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    return int(summary[0][names.index("count")]) if summary else 0


# --- polars ------------------------------------------------------------------


def pl_schema():
    import polars as pl

    out = {}
    for f in fields():
        t = f["type"]
        out[f["name"]] = {
            "int": pl.Int64,
            "float": pl.Float64,
            "string": pl.Utf8,
            "timestamp": pl.Datetime("us"),
        }.get(t) or pl.Decimal(f["precision"], f["scale"])
    return out


def polars_convert(src: str, out: str, threads: int, row_group: int) -> int:
    # POLARS_MAX_THREADS must be set before polars is imported (bench.py sets it too).
    os.environ["POLARS_MAX_THREADS"] = str(threads)
    import polars as pl

    if src.endswith(".parquet"):
        lf = pl.scan_parquet(src)
    elif src.endswith(".jsonl"):
        # polars' JSON reader will not read a JSON number into a Decimal:
        # read decimals as Float64, then cast (rounding to the scale).
        schema = pl_schema()
        decimals = [n for n, t in schema.items() if isinstance(t, pl.Decimal)]
        lf = pl.scan_ndjson(src, schema={n: pl.Float64 if n in decimals else t for n, t in schema.items()})
        lf = lf.with_columns([pl.col(n).cast(schema[n]) for n in decimals])
    else:
        # .gz too: scan_csv decompresses gzip itself.
        lf = pl.scan_csv(src, schema=pl_schema())
    lf.sink_parquet(out, compression="zstd", compression_level=ZSTD_LEVEL, row_group_size=row_group)
    return pl.scan_parquet(out).select(pl.len()).collect().item()


# --- main --------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("tool", choices=["pyarrow", "duckdb", "polars"])
    for name in ("convert", "duckdb-curate", "duckdb-profile"):
        s = c if name == "convert" else sub.add_parser(name)
        s.add_argument("input")
        s.add_argument("outdir")
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--row-group", type=int, default=128 * 1024)
    t = sub.add_parser("to-parquet")
    t.add_argument("input")
    t.add_argument("output")
    t.add_argument("--row-group", type=int, default=128 * 1024)
    sub.add_parser("versions")
    a = p.parse_args()
    if a.cmd == "versions":
        from importlib.metadata import version

        print(" ".join(f"{n}={version(n)}" for n in ("pyarrow", "duckdb", "polars")))
        return 0
    if a.cmd == "to-parquet":
        to_parquet(a.input, a.output, a.row_group)
        return 0
    os.makedirs(a.outdir, exist_ok=True)
    if a.cmd == "duckdb-profile":
        rows = duckdb_profile(a.input, os.path.join(a.outdir, "profile.json"), a.threads)
    else:
        out = os.path.join(a.outdir, "out.parquet")
        if a.cmd == "duckdb-curate":
            rows = duckdb_curate(a.input, out, a.threads, a.row_group)
        else:
            fn = {"pyarrow": pyarrow_convert, "duckdb": duckdb_convert, "polars": polars_convert}[a.tool]
            rows = fn(a.input, out, a.threads, a.row_group)
    print(f"rows={rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
