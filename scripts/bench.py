#!/usr/bin/env python3
"""`make bench`: Sluice against its peers (pyarrow, duckdb, polars), side by
side, on the same generated files, in one run.

Every measured run is a whole process started by this driver and measured the
same way: wall time, the child's peak RSS (os.wait4 ru_maxrss) and the bytes
it wrote. Runs are interleaved (A, B, C, A, B, C, ...) for BENCH_REPEATS
repeats; the table shows the median wall time and the largest peak RSS. Two
modes: one core (taskset -c 0, every tool's own thread setting at 1) and two
(taskset -c 0,1, at 2). All conversions write zstd level 1 Parquet with
128 Ki rows per row group, as Sluice's ingest does.

Knobs (environment): BENCH_SMALL=1 (100 MB files, 1 repeat), BENCH_REPEATS
(default 3), BENCH_DATA (default bench-data), SLUICE_BIN (default
target/release/sluice), BENCH_TIMEOUT (seconds per run, default 1800).

Stdlib only: the peers run in .venv/bench, which this script creates and
fills with the pinned versions (scripts/bench_peers.py holds their code).
Benchmarks measure; nothing here asserts a time."""

from __future__ import annotations

import datetime
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINS = {"pyarrow": "26.0.1", "duckdb": "2.0.1", "polars": "2.1.0"}
VENV = ROOT / ".venv" / "bench"
VENV_PY = VENV / "bin" / "python"
PEERS_PY = ROOT / "scripts" / "bench_peers.py"
ROW_GROUP = 128 * 1024
ROWS_100MB = 920_000  # ~109 bytes per CSV row
ROWS_1GB = 9_200_000
PEERS = ("pyarrow", "duckdb", "polars")
MODES = {"1T": ("0", 1), "2T": ("0,1", 2)}
# AWS Lambda x86 on-demand duration price, per GB-second (us-east-1).
LAMBDA_PRICE = 0.0000166667
LAMBDA_MB = 1769
RSS_TARGET_MB = 64


def env_flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0")


SMALL = env_flag("BENCH_SMALL")
REPEATS = int(os.environ.get("BENCH_REPEATS") or (1 if SMALL else 3))
DATA = Path(os.environ.get("BENCH_DATA") or "bench-data")
if not DATA.is_absolute():
    DATA = ROOT / DATA
SLUICE = Path(os.environ.get("SLUICE_BIN") or ROOT / "target" / "release" / "sluice")
if not SLUICE.is_absolute():
    SLUICE = Path.cwd() / SLUICE
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT") or 1800)
# LocalStack for the S3 row (bench.sh starts one unless BENCH_S3=0).
S3_ENDPOINT = os.environ.get("BENCH_S3_ENDPOINT", "")
SCRATCH = DATA / "scratch"


def say(msg: str) -> None:
    print(msg, flush=True)


# --- the peers' virtualenv -----------------------------------------------------


def installed_versions() -> dict[str, str]:
    if not VENV_PY.exists():
        return {}
    r = subprocess.run([str(VENV_PY), str(PEERS_PY), "versions"], capture_output=True, text=True)
    if r.returncode != 0:
        return {}
    return dict(kv.split("=", 1) for kv in r.stdout.split())


def ensure_venv() -> dict[str, str]:
    have = installed_versions()
    if have == PINS:
        say(f"== peers already installed in {VENV.relative_to(ROOT)}: " + ", ".join(f"{k} {v}" for k, v in have.items()))
        return have
    say(f"== installing the peers into {VENV.relative_to(ROOT)}: " + ", ".join(f"{k}=={v}" for k, v in PINS.items()))
    if not VENV_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV_PY), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + [f"{k}=={v}" for k, v in PINS.items()],
        check=True,
    )
    have = installed_versions()
    if have != PINS:
        raise SystemExit(f"bench: {VENV} holds {have}, not the pinned {PINS}")
    return have


# --- the files ---------------------------------------------------------------------


@dataclass
class Input:
    key: str  # short name in the table
    path: Path
    rows: int
    gen: list[str] | None  # `sluice generate` arguments, or None for the Parquet conversion
    note: str = ""
    tools: tuple[str, ...] = ("sluice",) + PEERS

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def inputs() -> list[Input]:
    big = ROWS_100MB if SMALL else ROWS_1GB
    tag = "100mb" if SMALL else "1gb"
    valid = ["--bad-ratio", "0"]
    csv = DATA / f"trips-{tag}-valid.csv"
    return [
        Input("CSV", csv, big, valid, f"{big:,} rows, all valid, 31 days"),
        Input("CSV gzip", DATA / "trips-100mb-valid.csv.gz", ROWS_100MB, valid,
              f"the {ROWS_100MB:,} rows of the 100 MB CSV, gzipped"),
        Input("JSONL", DATA / "trips-100mb-valid.jsonl", ROWS_100MB, valid,
              f"the {ROWS_100MB:,} rows of the 100 MB CSV, as JSON Lines"),
        Input("Parquet", DATA / f"trips-{tag}-valid.parquet", big, None,
              f"the CSV's rows as zstd-1 Parquet (converted by pyarrow)"),
        Input("CSV 365 days", DATA / f"trips-{tag}-365d.csv", big, valid + ["--days", "365"],
              f"{big:,} rows over 365 daily partitions, local store"),
        Input("CSV 1% bad", DATA / f"trips-{tag}-bad1pct.csv", big, ["--bad-ratio", "0.01"],
              f"{big:,} rows, 1% with one defect each"),
    ]


def generate(inp: Input, csv: Input) -> None:
    """Generate (or reuse) a file; a sidecar records how it was made, so a
    cached file made with other arguments is made again."""
    if inp.gen is None:
        recipe = f"to-parquet {csv.path.name} row-group {ROW_GROUP} pyarrow {PINS['pyarrow']}"
    else:
        recipe = " ".join(["generate trips --rows", str(inp.rows), "--seed 7"] + inp.gen)
    stamp = inp.path.with_name(inp.path.name + ".recipe")
    if inp.path.exists() and stamp.exists() and stamp.read_text() == recipe:
        return
    say(f"   making {inp.path.name}: {recipe}")
    inp.path.unlink(missing_ok=True)
    if inp.gen is None:
        tmp = inp.path.with_name(inp.path.name + ".tmp")
        subprocess.run([str(VENV_PY), str(PEERS_PY), "to-parquet", str(csv.path), str(tmp),
                        "--row-group", str(ROW_GROUP)], check=True)
        tmp.rename(inp.path)
    else:
        subprocess.run([str(SLUICE), "generate", "trips", "--rows", str(inp.rows), "--seed", "7",
                        *inp.gen, "--out", str(inp.path)], check=True, stdout=subprocess.DEVNULL)
    stamp.write_text(recipe)


# --- measuring one process ------------------------------------------------------


@dataclass
class Run:
    wall: float
    rss: int  # bytes
    rc: int
    out_bytes: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def error_line(self, width: int = 110) -> str:
        """The first line of the error: a Python traceback's exception line
        (the first unindented line after the last frame), else the first line."""
        lines = [ln for ln in (self.stderr or self.stdout).splitlines() if ln.strip()]
        if not lines:
            return "(no message)"
        line = lines[0]
        if line.startswith("Traceback"):
            frames = [i for i, ln in enumerate(lines) if ln.startswith("  File ")]
            after = lines[frames[-1] + 1:] if frames else lines[1:]
            line = next((ln for ln in after if not ln.startswith(" ")), lines[-1])
        line = line.strip()
        return line if len(line) <= width else line[: width - 3] + "..."


def dir_bytes(d: Path, keep=lambda p: True) -> int:
    total = 0
    for p in d.rglob("*"):
        if p.is_file() and keep(p):
            total += p.stat().st_size
    return total


def run_process(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int, str, str]:
    """Start `cmd`, wait for it with wait4: (wall s, peak RSS bytes, exit code, stdout, stderr)."""
    out_f = io.open(SCRATCH / "run.stdout", "w+b")
    err_f = io.open(SCRATCH / "run.stderr", "w+b")
    with out_f, err_f:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env, cwd=ROOT)
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode(errors="replace")
        stderr = err_f.read().decode(errors="replace")
    rc = proc.returncode
    if rc == -9 and wall >= TIMEOUT:
        stderr = f"killed after the {TIMEOUT:.0f} s timeout (BENCH_TIMEOUT)\n" + stderr
    return wall, usage.ru_maxrss * 1024, rc, stdout, stderr


def taskset(mode: str) -> list[str]:
    return ["taskset", "-c", MODES[mode][0]]


def peer_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["POLARS_MAX_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_peer(sub: list[str], inp: str, mode: str) -> Run:
    out = SCRATCH / "peer"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    threads = MODES[mode][1]
    cmd = taskset(mode) + [str(VENV_PY), str(PEERS_PY), *sub, inp, str(out),
                           "--threads", str(threads)]
    if sub[0] != "duckdb-profile":
        cmd += ["--row-group", str(ROW_GROUP)]
    wall, rss, rc, so, se = run_process(cmd, peer_env(threads))
    r = Run(wall, rss, rc, dir_bytes(out), so, se)
    shutil.rmtree(out, ignore_errors=True)
    return r


def run_sluice_ingest(inp: Input, mode: str, sizes: dict[str, int], s3: bool = False) -> Run:
    scratch = SCRATCH / "sluice"
    cmd = taskset(mode) + [str(SLUICE), "bench-ingest", str(inp.path), "--scratch", str(scratch)]
    env = None
    if s3:
        # The file is uploaded first; the wall time below includes that
        # upload (bench-ingest prints ingest's own), the peak RSS does not.
        cmd.append("--s3")
        # LocalStack's dummy credentials.
        env = dict(os.environ, AWS_ENDPOINT_URL=S3_ENDPOINT, AWS_ACCESS_KEY_ID="test",
                   AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")  # pragma: allowlist secret
    wall, rss, rc, so, se = run_process(cmd, env)
    if s3 and rc == 0:
        # bench-ingest's own line: ingest's wall time, without the upload.
        m = re.search(r"([\d.]+) MB/s", so)
        if m:
            wall = inp.size / 1e6 / float(m.group(1))
    # bench-ingest removes its scratch directory when done: the output size is
    # that of the untimed layout run (see sluice_layout_run).
    return Run(wall, rss, rc, sizes.get(inp.key, 0), so, se)


# --- Sluice's local layout (output sizes; curate and profile inputs) -----------


def s3_event(bucket: str, objects: list[tuple[str, int]]) -> dict:
    """An S3 ObjectCreated notification, one record per (key, size), made
    from the sample events/s3-put.json (keys are URL-encoded in S3 events)."""
    template = json.loads((ROOT / "events" / "s3-put.json").read_text())["Records"][0]
    records = []
    for key, size in objects:
        rec = json.loads(json.dumps(template))
        rec["s3"]["bucket"]["name"] = bucket
        rec["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        obj = rec["s3"]["object"]
        obj["key"] = urllib.parse.quote_plus(key, safe="/")
        obj["size"] = size
        for k in ("eTag", "sequencer"):
            obj.pop(k, None)
        records.append(rec)
    return {"Records": records}


def is_internal(p: Path, root: Path) -> bool:
    """Claims, manifests, markers (under _sluice/) and quarantine (_quarantine/)."""
    return any(part.startswith("_") for part in p.relative_to(root).parts)


def data_bytes(bucket_dir: Path, suffix: str) -> int:
    return dir_bytes(bucket_dir, lambda p: p.name.endswith(suffix) and not is_internal(p, bucket_dir))


def invoke(stage: str, local: Path, bucket: str, keys: list[str], mode: str = "1T") -> Run:
    ev = SCRATCH / f"event-{stage}.json"
    objects = [(k, (local / bucket / k).stat().st_size) for k in keys]
    ev.write_text(json.dumps(s3_event(bucket, objects)))
    cmd = taskset(mode) + [str(SLUICE), "invoke", stage, "--event", str(ev), "--local", str(local)]
    wall, rss, rc, so, se = run_process(cmd)
    return Run(wall, rss, rc, 0, so, se)


def manifests(local: Path, bucket: str, stage: str) -> list[str]:
    """The keys of `stage`'s commits (manifests) in `bucket`: an event naming
    them delivers every output they commit, as on AWS."""
    d = local / bucket / "_sluice" / "manifests" / stage
    found = sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []
    return [str(p.relative_to(local / bucket)) for p in found]


def sluice_layout_run(inp: Input, local: Path) -> Run:
    """One untimed ingest with `sluice invoke` into a kept directory: its
    Parquet bytes are Sluice's output size, and it warms the page cache."""
    shutil.rmtree(local, ignore_errors=True)
    landing = local / "landing" / "raw" / "trips"
    landing.mkdir(parents=True)
    try:
        os.link(inp.path, landing / inp.path.name)
    except OSError:
        shutil.copy(inp.path, landing / inp.path.name)
    r = invoke("ingest", local, "landing", [f"raw/trips/{inp.path.name}"])
    r.out_bytes = data_bytes(local / "validated", ".parquet") if (local / "validated").exists() else 0
    return r


def reset_stage(local: Path, stage: str) -> None:
    out = {"curate": ["curated"], "profile": ["profiles", "alerts"]}[stage]
    for d in out:
        shutil.rmtree(local / d, ignore_errors=True)
    (local / "dlq" / f"{stage}.jsonl").unlink(missing_ok=True)


# --- results ------------------------------------------------------------------------


@dataclass
class Cell:
    tool: str
    file: str
    mode: str
    in_bytes: int
    rows: int
    runs: list[Run] = field(default_factory=list)
    note: str = ""
    mark: str = ""  # footnote mark after the tool's name

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def rss_mb(self) -> float:
        return max(r.rss for r in self.runs) / 1e6

    @property
    def out_mb(self) -> float:
        return statistics.median(r.out_bytes for r in self.runs) / 1e6

    def failure(self) -> str:
        bad = next((r for r in self.runs if not r.ok), None)
        if bad is None:
            return "not run"
        return f"fails (exit {bad.rc}): {bad.error_line()}"


def fastest_peer(cells: list[Cell], c: Cell) -> Cell | None:
    peers = [p for p in cells if p.file == c.file and p.mode == c.mode and p.tool != "sluice"
             and p.tool != c.tool and p.ok]
    return min(peers, key=lambda p: p.wall, default=None)


def interleaved(cells: list[Cell], runners: dict[str, callable]) -> None:
    for rep in range(REPEATS):
        for c in cells:
            r = runners[c.tool]()
            c.runs.append(r)
            status = f"{r.wall:7.2f} s  {r.rss / 1e6:6.0f} MB" if r.ok else r.error_line()
            say(f"   [{rep + 1}/{REPEATS}] {c.tool:<8} {c.file:<14} {c.mode}  {status}")


def fmt_row(c: Cell, cells: list[Cell]) -> list[str]:
    head = [c.tool + c.mark, c.file, c.mode]
    if not c.runs:
        return head + ["", "", "", "", "", c.note or "not measured"]
    if not c.ok:
        return head + ["", "", "", "", "", c.failure()]
    mbs = c.in_bytes / 1e6 / c.wall
    mrows = c.rows / 1e6 / c.wall
    ratio = ""
    if c.tool.startswith("sluice"):
        p = fastest_peer(cells, c)
        ratio = f"{p.wall / c.wall:.2f}x {p.tool}" if p else "no peer finished"
    return head + [f"{mbs:.1f}", f"{mrows:.2f}", f"{c.rss_mb:.0f}", f"{c.out_mb:.1f}", ratio, ""]


HEAD = ["tool", "file", "mode", "MB/s", "M rows/s", "peak RSS MB", "output MB", "Sluice vs fastest peer", "note"]


def text_table(rows: list[list[str]]) -> str:
    w = [max(len(r[i]) for r in [HEAD] + rows) for i in range(len(HEAD))]
    line = lambda r: "  ".join(v.ljust(w[i]) if i < 3 or i == len(HEAD) - 1 else v.rjust(w[i])
                               for i, v in enumerate(r)).rstrip()
    return "\n".join([line(HEAD), line(["-" * x for x in w])] + [line(r) for r in rows])


def md_table(rows: list[list[str]]) -> str:
    esc = lambda v: v.replace("|", "\\|")
    out = ["| " + " | ".join(HEAD) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 5 + ["---"]) + "|"]
    out += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


# --- the bench -------------------------------------------------------------------


def main() -> int:
    if not SLUICE.exists():
        raise SystemExit(f"bench: no Sluice binary at {SLUICE} (build it, or set SLUICE_BIN)")
    DATA.mkdir(parents=True, exist_ok=True)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    versions = ensure_venv()
    sluice_version = subprocess.run([str(SLUICE), "--version"], capture_output=True, text=True).stdout.strip()

    say(f"== generating data (cached in {DATA}; ~109 bytes per CSV row)")
    files = inputs()
    csv = files[0]
    for f in files:
        generate(f, csv)

    cells: list[Cell] = []
    sizes: dict[str, int] = {}
    sluice_lines: list[str] = []
    local_csv = SCRATCH / "local-csv"
    say(f"== ingest: {REPEATS} interleaved repeat(s) per file and mode")
    for f in files:
        local = local_csv if f is csv else SCRATCH / "local"
        # The untimed layout run: Sluice's output size (and a warm page cache).
        # If it fails, so will bench-ingest, whose error the table shows.
        lr = sluice_layout_run(f, local)
        if lr.ok:
            sizes[f.key] = lr.out_bytes
        group: list[Cell] = []
        for mode in MODES:
            row = [Cell(t, f.key, mode, f.size, f.rows) for t in f.tools]
            if f.key == "JSONL":
                row[1].mark = "*"
            group += row
        runners: dict = {}
        # Runners per mode, interleaved A, B, C, ... per repeat within each mode.
        for mode in MODES:
            mode_cells = [c for c in group if c.mode == mode]
            runners = {"sluice": (lambda m=mode: run_sluice_ingest(f, m, sizes))}
            for p in PEERS:
                runners[p] = (lambda p=p, m=mode: run_peer(["convert", p], str(f.path), m))
            interleaved(mode_cells, runners)
            for c in [c for c in group if c.mode == mode and c.tool == "sluice" and c.ok]:
                last = c.runs[-1].stdout.strip().splitlines()
                if last:
                    sluice_lines.append(f"{mode}  {last[-1]}")
        cells += group
        if f.key == "CSV 365 days":
            s3 = Cell("sluice", "CSV 365 days, S3 (LocalStack)", "1T", f.size, f.rows)
            if S3_ENDPOINT:
                interleaved([s3], {"sluice": lambda: run_sluice_ingest(f, "1T", sizes, s3=True)})
            else:
                s3.note = "not measured: BENCH_S3=0"
            cells.append(s3)
        if local is not local_csv:
            shutil.rmtree(local, ignore_errors=True)

    # curate and profile, on the ingest output of the CSV file: the event
    # names the upstream's commits (manifests), which deliver every output.
    say("== curate and profile (on Sluice's ingest output of the CSV file)")
    stage_notes: list[str] = []
    for stage, up, src_bucket, out_bucket, suffix in (
        ("curate", "ingest", "validated", "curated", ".parquet"),
        ("profile", "curate", "curated", "profiles", ".json"),
    ):
        src_dir = local_csv / src_bucket
        keys = manifests(local_csv, src_bucket, up)
        in_bytes = data_bytes(src_dir, ".parquet") if keys else 0
        if keys:
            stage_notes.append(f"{stage} reads {in_bytes / 1e6:.1f} MB of {src_bucket} Parquet "
                               f"({csv.rows:,} rows, {len(keys)} {up} commit(s))")

        def sluice_stage(mode: str, stage=stage, keys=keys, bucket=src_bucket, out=out_bucket, suffix=suffix) -> Run:
            reset_stage(local_csv, stage)
            r = invoke(stage, local_csv, bucket, keys, mode)
            r.out_bytes = data_bytes(local_csv / out, suffix) if (local_csv / out).exists() else 0
            # `invoke` exits 0 also when it finds nothing to do: say so.
            if r.ok and r.out_bytes == 0:
                r.rc, r.stderr = 1, "wrote nothing: " + (r.stdout.strip().splitlines() or [""])[0]
            return r

        for mode in MODES:
            sc = Cell(f"sluice {stage}", f"{stage}: CSV output", mode, in_bytes, csv.rows)
            dc = Cell(f"duckdb {stage}", f"{stage}: CSV output", mode, in_bytes, csv.rows)
            cells += [sc, dc]
            if not keys:
                sc.note = dc.note = f"not measured: no {up} commit (manifest) under {src_dir}"
                continue
            peer = "duckdb-curate" if stage == "curate" else "duckdb-profile"
            runners = {sc.tool: (lambda m=mode: sluice_stage(m)),
                       dc.tool: (lambda m=mode, pc=peer: run_peer([pc], str(src_dir / "trips"), m))}
            interleaved([sc, dc], runners)

    # cold start and zipped sizes, as before.
    bin_dir = SLUICE.parent
    stage_bins = {s: bin_dir / f"sluice-{s}" for s in ("ingest", "curate", "profile")}
    present = {s: p for s, p in stage_bins.items() if p.exists()}
    cold = ""
    if present:
        say("== cold start (process start -> first Runtime API request)")
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "coldstart.py")]
                           + [f"{s}={p}" for s, p in present.items()], capture_output=True, text=True, cwd=ROOT)
        cold = (r.stdout + (r.stderr if r.returncode else "")).strip()
    missing = sorted(set(stage_bins) - set(present))
    if missing:
        cold += ("\n" if cold else "") + f"not measured: no {', '.join(f'sluice-{s}' for s in missing)} in {bin_dir}"
    zips = []
    for s, p in present.items():
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(p, "bootstrap")
        zips.append(f"zip {s:<8} {len(buf.getvalue()) / 1e6:5.1f} MB  (binary {p.stat().st_size / 1e6:.1f} MB)")

    report(cells, files, versions, sluice_version, sluice_lines, cold, zips, stage_notes)
    shutil.rmtree(local_csv, ignore_errors=True)
    return 0


def target_lines(cells: list[Cell]) -> list[str]:
    def get(tool, file, mode="1T"):
        return next((c for c in cells if c.tool == tool and c.file == file and c.mode == mode), None)

    def verdict(name: str, x: float | None, need: float, why: str = "") -> str:
        if x is None:
            return f"{name}: not measured{(' (' + why + ')') if why else ''}"
        return f"{name}: {'met' if x >= need else 'not met'} ({x:.2f}x)"

    def vs_fastest(file: str, tool: str = "sluice"):
        s = get(tool, file)
        if not (s and s.ok):
            return None, "Sluice did not finish"
        p = fastest_peer(cells, s)
        if p is None:
            return None, "no peer finished"
        return p.wall / s.wall, ""

    out = []
    x, why = vs_fastest("CSV")
    out.append(verdict("CSV 1T >= 1.5x fastest peer", x, 1.5, why))
    x, why = vs_fastest("JSONL")
    out.append(verdict("JSONL 1T >= 1.5x fastest peer rows/s", x, 1.5, why))
    s, p = get("sluice", "CSV gzip"), get("pyarrow", "CSV gzip")
    out.append(verdict("gzip CSV 1T >= 1.5x pyarrow", p.wall / s.wall if s and p and s.ok and p.ok else None, 1.5))
    s1, s2 = get("sluice", "CSV"), get("sluice", "CSV", "2T")
    out.append(verdict("Sluice 2T >= 1.8x Sluice 1T (CSV)", s1.wall / s2.wall if s1 and s2 and s1.ok and s2.ok else None, 1.8))
    mine = [c for c in cells if c.tool.startswith("sluice") and c.ok and c.runs]
    if mine:
        worst = max(mine, key=lambda c: c.rss_mb)
        verdict_rss = "met" if worst.rss_mb <= RSS_TARGET_MB else "not met"
        ingest = [c for c in mine if c.tool == "sluice"]
        worst_ingest = max(ingest, key=lambda c: c.rss_mb) if ingest else None
        also = (f"; ingest's largest {worst_ingest.rss_mb:.0f} MB: {worst_ingest.file}, {worst_ingest.mode}"
                if worst_ingest and worst_ingest is not worst else "")
        out.append(f"Sluice peak RSS <= {RSS_TARGET_MB} MB everywhere: {verdict_rss} "
                   f"(largest {worst.rss_mb:.0f} MB: {worst.tool}, {worst.file}, {worst.mode}{also})")
    for stage in ("curate", "profile"):
        s, d = get(f"sluice {stage}", f"{stage}: CSV output"), get(f"duckdb {stage}", f"{stage}: CSV output")
        x = d.wall / s.wall if s and d and s.ok and d.ok else None
        why = "" if x is not None else ((s.note or s.failure()) if s else "")
        out.append(verdict(f"{stage} 1T >= 1.5x duckdb", x, 1.5, why))
    return out


def report(cells, files, versions, sluice_version, sluice_lines, cold, zips, stage_notes) -> None:
    rows = [fmt_row(c, cells) for c in cells]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"Sluice bench, {when}: {sluice_version} ({SLUICE}) vs "
              + ", ".join(f"{k} {v}" for k, v in versions.items())
              + f"; {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()} (peers); "
              + f"median of {REPEATS} interleaved run(s); {'BENCH_SMALL' if SMALL else 'full'} set")
    file_lines = [f"- {f.key}: {f.path.name}, {f.size / 1e6:.1f} MB, {f.note}" for f in files]
    notes = [
        "MB/s is input bytes (on disk: compressed for gzip) per wall second; M rows/s is input rows per wall second.",
        "Wall time is the median over the repeats, of the whole process (for the peers, Python's start and the "
        "imports included; for Sluice, bench-ingest's setup and clean-up of its scratch directory); peak RSS is the "
        "largest (os.wait4 ru_maxrss; the interpreter and its libraries included for the peers).",
        "Output MB: all files the peer wrote; for Sluice, the data files under its output bucket (claims, manifests, "
        "markers under _sluice/ and quarantine under _quarantine/ excluded), from one untimed `sluice invoke` run "
        "(`bench-ingest` removes its scratch directory).",
        "Every conversion writes zstd level 1 Parquet, 131072 rows per row group, with the contract's types "
        "(int64, float64, utf8, decimal128(10,2), µs timestamps: naive for the peers, UTC for Sluice). The peers do not "
        "validate rows, compute record ids, add lineage columns or partition by day; Sluice does all of that.",
        "1T: taskset -c 0, pyarrow set_cpu_count(1)/set_io_thread_count(1)/use_threads=False, duckdb SET threads=1, "
        "POLARS_MAX_THREADS=1. 2T: taskset -c 0,1 and 2 threads; Sluice uses the cores it may run on (with two, Parquet encoding runs on a thread of its own, the partition split on whichever thread is less busy, and the last row groups on both).",
        "* pyarrow JSONL: pyarrow.json.read_json has no streaming reader; the whole table is in memory.",
        "polars reads the .gz with scan_csv itself; duckdb's read_csv decompresses it natively; pyarrow reads it "
        "through pyarrow.input_stream(path, compression='gzip').",
        "polars JSONL: its JSON reader will not read a number into a Decimal, so decimals are read as Float64 and cast.",
        "duckdb's ROW_GROUP_SIZE is a target: its row groups come out at about 132k rows.",
        "Ratio: the fastest peer's median wall time over Sluice's, same file and mode (>1: Sluice is faster).",
        "curate vs duckdb: dedup by _record_id within each file (first by _line kept), trip_duration_min, avg_speed_mph, "
        "tip_pct, two left joins with contracts/reference/taxi_zones.csv, zstd level 3 (as curate writes); duckdb writes "
        "one file, curate one per day partition.",
        "profile vs duckdb: SUMMARIZE (count, nulls, min, max, mean, stddev, approx distinct, q25/q50/q75) plus "
        "approx_quantile p01/p99 over curate's output; Sluice's profile also builds 20-bin histograms and top-10 values "
        "(two passes), per day partition, and runs its quality checks.",
        "S3 (LocalStack): ingest through the S3 store against a local LocalStack, one core; its MB/s is ingest's "
        "own (bench-ingest uploads the file first) and its peak RSS is reset after that upload.",
    ] + stage_notes
    wall = next((c.wall for c in cells if c.tool == "sluice" and c.file == "CSV" and c.mode == "1T" and c.ok), None)
    cost = ""
    if wall:
        gb = files[0].size / 1e9
        cost = (f"Projected Lambda cost per GB ingested: ${wall / gb * LAMBDA_MB / 1024 * LAMBDA_PRICE:.6f} "
                f"({wall / gb:.1f} s per GB at 1T, {LAMBDA_MB} MB = {LAMBDA_MB / 1024:.3f} GB, "
                f"${LAMBDA_PRICE:.10f} per GB-second, x86, duration only: requests and S3 not included)")
    targets = target_lines(cells)
    failures = []
    for c in cells:
        bad = next((r for r in c.runs if not r.ok), None)
        if bad is not None:
            failures.append(f"{c.tool}, {c.file}, {c.mode}: exit {bad.rc}: {bad.error_line(400)}")

    out = [header, "", text_table(rows), ""]
    out += ["Files:"] + file_lines + ["", "Notes:"] + [f"- {n}" for n in notes] + [""]
    if failures:
        out += ["Failures (first line of each error):"] + [f"- {f}" for f in failures] + [""]
    if sluice_lines:
        out += ["Sluice's own figures (bench-ingest, last run):"] + [f"  {s}" for s in sluice_lines] + [""]
    out += ["Targets: " + "; ".join(targets), ""]
    if cost:
        out += [cost, ""]
    out += ["Cold start (process start -> first Runtime API request):", cold or "not measured", ""]
    out += ["Zipped bootstrap sizes:"] + (zips or ["not measured: no stage binaries"])
    say("")
    say("\n".join(out))

    md = [f"_{header}_", "", md_table(rows), "", "Files:", ""] + file_lines + ["", "Notes:", ""]
    md += [f"- {n}" for n in notes] + [""]
    if failures:
        md += ["Failures (first line of each error):", ""] + [f"- {f}" for f in failures] + [""]
    md += ["Targets:", ""] + [f"- {t}" for t in targets] + [""]
    if cost:
        md += [cost, ""]
    md += ["Cold start:", "", "```", cold or "not measured", "```", "", "Zipped bootstrap sizes:", "", "```"]
    md += (zips or ["not measured"]) + ["```", ""]
    (DATA / "bench.md").write_text("\n".join(md))
    say(f"\n(written as Markdown to {DATA / 'bench.md'})")


if __name__ == "__main__":
    sys.exit(main())
