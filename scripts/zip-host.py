#!/usr/bin/env python3
"""Package host-built stage binaries as Lambda deployment zips.

    scripts/zip-host.py [--profile debug|release] [--out target/lambda] [--no-strip] [STAGE ...]

For every stage (default: ingest curate profile) it zips
target/<profile>/sluice-<stage> as `bootstrap` (mode 0755) into
<out>/<stage>/bootstrap.zip, the layout infra/envs/local expects. These zips
are for LocalStack's host-mode process executor, which runs the binary on this
machine; for real Lambda, build with `cargo lambda build --release
--output-format zip` instead.

Debug binaries are ~200 MB, mostly DWARF, which would blow Lambda's 50 MB
upload limit: a copy is stripped of debug info first (symbols stay, so panics
still show function names), unless --no-strip. The zip is deterministic (fixed
timestamps), so the same binary gives the same source_code_hash and Terraform
does not redeploy unchanged code.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("ingest", "curate", "profile")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def package(binary: Path, dest: Path, strip: bool) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = binary
        if strip and shutil.which("strip"):
            src = Path(tmp) / "bootstrap"
            subprocess.run(["strip", "--strip-debug", "-o", str(src), str(binary)], check=True)
        info = zipfile.ZipInfo("bootstrap", date_time=FIXED_TIME)
        info.external_attr = (0o100755 << 16)  # regular file, rwxr-xr-x
        info.create_system = 3  # Unix, so the mode is honoured
        info.compress_type = zipfile.ZIP_DEFLATED
        part = dest.with_suffix(".zip.part")
        with zipfile.ZipFile(part, "w") as z, open(src, "rb") as f:
            with z.open(info, "w") as out:
                shutil.copyfileobj(f, out, 1 << 20)
        os.replace(part, dest)
    return dest.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="debug", help="cargo profile folder under target/ (debug or release)")
    ap.add_argument("--target-dir", default=str(REPO / "target"))
    ap.add_argument("--out", default=None, help="default: <target-dir>/lambda")
    ap.add_argument("--no-strip", action="store_true", help="keep debug info (bigger than Lambda accepts)")
    ap.add_argument("stages", nargs="*", default=list(STAGES))
    args = ap.parse_args()

    target = Path(args.target_dir)
    out = Path(args.out) if args.out else target / "lambda"
    missing = []
    for stage in args.stages:
        if stage not in STAGES:
            print(f"zip-host: unknown stage {stage!r} (want one of {', '.join(STAGES)})", file=sys.stderr)
            return 2
        binary = target / args.profile / f"sluice-{stage}"
        if not binary.is_file():
            missing.append(str(binary))
            continue
        dest = out / stage / "bootstrap.zip"
        size = package(binary, dest, strip=not args.no_strip)
        print(f"zip-host: {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}  {size / 1e6:.1f} MB  (from {binary.name}, {binary.stat().st_size / 1e6:.0f} MB)")
    if missing:
        print("zip-host: missing binaries (build them first, e.g. cargo build -p sluice-ingest -p sluice-curate -p sluice-profile):", file=sys.stderr)
        for m in missing:
            print(f"  {m}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
