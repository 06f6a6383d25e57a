#!/usr/bin/env bash
# Check a `sluice report` page the way a browser shows it: headless Chromium
# renders it from file:// (no server, no network), and the rendered DOM and a
# screenshot are checked.
#
# Usage:
#   scripts/report-check.sh FILE.html [SCREENSHOT.png]
#       Check an existing report.
#   scripts/report-check.sh --local DIR [--dataset NAME] [SCREENSHOT.png]
#       Write DIR's report with target/debug/sluice (built first), then check
#       it. The page goes to $REPORT_OUT (default /tmp/sluice-report-<name of
#       DIR>.html); the datasets expected are the folders of DIR/landing/raw/
#       (or NAME).
#
# The screenshot defaults to the page's path with .png for .html.
#
# Checks (any failure exits non-zero with a message saying which):
#   DOM: a <title>; the section `summary`; for every expected dataset a
#   section `ds-<slug>` with its subsections volume, stages, breaches,
#   quarantine, dlq, nulls and distributions, each with content (a chart, a
#   table, or an explicit "none" note); at least $MIN_CHARTS (default 5)
#   `svg.chart` elements that draw something; no script, no external
#   resource.
#   Screenshot: a PNG of $WIDTH x $HEIGHT (default 1280 x 2400) that is not
#   blank (more than 16 distinct colours).
#
# Environment: EXPECT_DATASETS (comma-separated; default: those the page
# lists, or the --local ones), MIN_CHARTS, WIDTH, HEIGHT, CHROMIUM (the
# browser command, default chromium, installed from Debian's `chromium`
# package if missing), REPORT_OUT.
set -euo pipefail
ORIG=$PWD
cd "$(dirname "$0")/.."

die() {
    echo "report-check: FAIL: $*" >&2
    exit 1
}
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" "$1" "$2"; }

MIN_CHARTS=${MIN_CHARTS:-5}
WIDTH=${WIDTH:-1280}
HEIGHT=${HEIGHT:-2400}
CHROMIUM=${CHROMIUM:-chromium}
EXPECT_DATASETS=${EXPECT_DATASETS:-}
command -v python3 >/dev/null || die "python3 is needed for the checks"

# ---- arguments
LOCAL='' DATASET='' PAGE='' SHOT=''
while [ $# -gt 0 ]; do
    case "$1" in
        --local) LOCAL=${2:?--local needs a directory}; shift 2 ;;
        --dataset) DATASET=${2:?--dataset needs a name}; shift 2 ;;
        -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            if [ -z "$LOCAL" ] && [ -z "$PAGE" ]; then PAGE=$1
            elif [ -z "$SHOT" ]; then SHOT=$1
            else die "too many arguments (see --help)"; fi
            shift ;;
    esac
done
[ -n "$LOCAL" ] || [ -n "$PAGE" ] || die "say what to check: FILE.html, or --local DIR (see --help)"
# Paths are relative to where the script was called from.
abs() { case "$1" in /*) echo "$1" ;; *) echo "$ORIG/$1" ;; esac; }
[ -z "$LOCAL" ] || LOCAL=$(abs "$LOCAL")
[ -z "$PAGE" ] || PAGE=$(abs "$PAGE")
[ -z "$SHOT" ] || SHOT=$(abs "$SHOT")
[ -z "${REPORT_OUT:-}" ] || REPORT_OUT=$(abs "$REPORT_OUT")

T0=$(now)
# ---- the browser
INSTALL_TIME="0.0s (already installed)"
if ! command -v "$CHROMIUM" >/dev/null 2>&1; then
    [ "$CHROMIUM" = chromium ] || die "$CHROMIUM not found"
    echo "== installing Debian's chromium package"
    t=$(now)
    export DEBIAN_FRONTEND=noninteractive
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    if ! $SUDO apt-get install -y -q --no-install-recommends chromium >/tmp/report-check-apt.log 2>&1; then
        echo "   (install failed; running apt-get update first)"
        $SUDO apt-get update -q >>/tmp/report-check-apt.log 2>&1 || true
        $SUDO apt-get install -y -q --no-install-recommends chromium >>/tmp/report-check-apt.log 2>&1 \
            || { tail -n 20 /tmp/report-check-apt.log >&2; die "could not install chromium (log: /tmp/report-check-apt.log)"; }
    fi
    INSTALL_TIME=$(secs "$t" "$(now)")
    echo "   installed in $INSTALL_TIME"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BROWSER_FLAGS=(--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run
    --disable-extensions --force-device-scale-factor=1 --user-data-dir="$WORK/profile")

# ---- the page
GEN_TIME=
if [ -n "$LOCAL" ]; then
    [ -d "$LOCAL" ] || die "$LOCAL is not a directory"
    PAGE=${REPORT_OUT:-/tmp/sluice-report-$(basename "$(cd "$LOCAL" && pwd)").html}
    if [ -z "$EXPECT_DATASETS" ]; then
        if [ -n "$DATASET" ]; then
            EXPECT_DATASETS=$DATASET
        elif [ -d "$LOCAL/landing/raw" ]; then
            EXPECT_DATASETS=$(find "$LOCAL/landing/raw" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | paste -sd, -)
        fi
    fi
    echo "== building sluice and writing the report of $LOCAL"
    bash scripts/build-dev.sh
    t=$(now)
    ./target/debug/sluice report --local "$LOCAL" --out "$PAGE" ${DATASET:+--dataset "$DATASET"} \
        || die "sluice report failed"
    GEN_TIME=$(secs "$t" "$(now)")
fi
[ -f "$PAGE" ] || die "$PAGE does not exist"
ABS=$(cd "$(dirname "$PAGE")" && pwd)/$(basename "$PAGE")
URL="file://$ABS"
SHOT=${SHOT:-${ABS%.html}.png}

# ---- the rendered DOM
echo "== rendering $URL"
t=$(now)
timeout 120 "$CHROMIUM" "${BROWSER_FLAGS[@]}" --dump-dom "$URL" >"$WORK/dom.html" 2>"$WORK/chromium.log" \
    || { tail -n 20 "$WORK/chromium.log" >&2; die "chromium could not render $URL"; }
DOM_TIME=$(secs "$t" "$(now)")
[ -s "$WORK/dom.html" ] || { tail -n 20 "$WORK/chromium.log" >&2; die "chromium rendered an empty DOM"; }

python3 - "$WORK/dom.html" "$EXPECT_DATASETS" "$MIN_CHARTS" <<'PY' || die "the rendered DOM fails the checks above"
import sys
from html.parser import HTMLParser

path, expect, min_charts = sys.argv[1], sys.argv[2], int(sys.argv[3])
SUBSECTIONS = ["volume", "stages", "breaches", "quarantine", "dlq", "nulls", "distributions"]
MARKS = {"rect", "line", "path", "polyline", "polygon", "circle"}

class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.title, self.in_title = "", False
        self.ids = set()
        self.datasets = {}        # data-dataset -> section id
        self.main_datasets = None
        self.sections = []        # stack of open section ids
        self.content = {}         # section id -> {"table": n, "none": n, "chart": n, "warn": n}
        self.charts = []          # [kind, points, marks]
        self.chart_depth = 0
        self.in_none = 0
        self.none_text = {}
        self.bad = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "title" and not self.chart_depth:
            self.in_title = True
        if tag == "script":
            self.bad.append("a <script> element")
        if tag == "link" or (tag in ("img", "iframe", "embed", "object", "audio", "video", "source")
                             and any(k in a for k in ("src", "data"))):
            self.bad.append(f"an external resource <{tag} {attrs}>")
        if tag == "main":
            self.main_datasets = a.get("data-datasets", "")
        if tag == "section":
            sid = a.get("id", "")
            self.sections.append(sid)
            self.content.setdefault(sid, {"table": 0, "none": 0, "chart": 0, "warn": 0})
            if "dataset" in cls:
                self.datasets[a.get("data-dataset", "")] = sid
        for sid in self.sections:
            c = self.content[sid]
            if tag == "table":
                c["table"] += 1
            if tag == "p" and "none" in cls:
                c["none"] += 1
            if tag == "p" and "warn" in cls:
                c["warn"] += 1
            if tag == "svg" and "chart" in cls:
                c["chart"] += 1
        if tag == "svg" and "chart" in cls:
            self.chart_depth = 1
            self.charts.append([a.get("data-chart", "?"), int(a.get("data-points", "0") or 0), 0])
        elif self.chart_depth:
            if tag == "svg":
                self.chart_depth += 1
            if tag in MARKS:
                def num(k):
                    try:
                        return float(a.get(k, "1"))
                    except ValueError:
                        return 0.0
                if tag != "rect" or (num("width") > 0 and num("height") > 0):
                    self.charts[-1][2] += 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "svg" and self.chart_depth:
            self.chart_depth -= 1

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if tag == "section" and self.sections:
            self.sections.pop()
        if tag == "svg" and self.chart_depth:
            self.chart_depth -= 1

    def handle_data(self, data):
        if self.in_title:
            self.title += data

dom = Dom()
dom.feed(open(path, encoding="utf-8", errors="replace").read())
fails = []
if not dom.title.strip():
    fails.append("the page has no <title>")
elif "Sluice report" not in dom.title:
    fails.append(f"the title {dom.title!r} does not say 'Sluice report'")
if "summary" not in dom.ids:
    fails.append("no section id=summary")
if dom.main_datasets is None:
    fails.append("no <main data-datasets=...>")
fails += [f"{b}: the page must load nothing" for b in dom.bad]

expected = [d for d in expect.split(",") if d] if expect else list(dom.datasets)
for name in expected:
    sid = dom.datasets.get(name)
    if sid is None:
        fails.append(f"no section for the dataset {name!r} (sections: {sorted(dom.datasets)})")
        continue
    for sub in SUBSECTIONS:
        sub_id = f"{sid}-{sub}"
        if sub_id not in dom.ids:
            fails.append(f"{name}: no section id={sub_id}")
            continue
        c = dom.content.get(sub_id, {})
        if not any(c.values()):
            fails.append(f"{name}: section {sub_id} has no chart, table or 'none' note")
    for sub in ("dlq", "quarantine"):
        c = dom.content.get(f"{sid}-{sub}", {})
        if c and not (c["table"] or c["none"] or c["warn"]):
            fails.append(f"{name}: the {sub} section shows neither a table nor a 'none' note")

drawn = [c for c in dom.charts if c[1] > 0 and c[2] > 0]
empty = [c for c in dom.charts if not (c[1] > 0 and c[2] > 0)]
if len(drawn) < min_charts:
    fails.append(f"{len(drawn)} chart SVGs draw something; at least {min_charts} expected "
                 f"({len(dom.charts)} svg.chart in all)")

kinds = {}
for k, _, _ in drawn:
    kinds[k] = kinds.get(k, 0) + 1
print(f"   title: {dom.title.strip()!r}")
print(f"   datasets: {', '.join(dom.datasets) or 'none'} (expected: {', '.join(expected) or 'any'})")
print(f"   sections: summary + {len(SUBSECTIONS)} per dataset: "
      f"{'all present' if not any('section' in f for f in fails) else 'MISSING some'}")
print(f"   charts: {len(drawn)} drawn, {len(empty)} empty ("
      + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + ")")
for name in expected:
    sid = dom.datasets.get(name)
    if sid:
        dlq, q = dom.content.get(f"{sid}-dlq", {}), dom.content.get(f"{sid}-quarantine", {})
        print(f"   {name}: dlq {dlq.get('table', 0)} tables / {dlq.get('none', 0)} none notes; "
              f"quarantine {q.get('table', 0)} tables / {q.get('chart', 0)} charts / {q.get('none', 0)} none notes")
for f in fails:
    print(f"report-check: FAIL: {f}", file=sys.stderr)
sys.exit(1 if fails else 0)
PY
echo "   DOM checks passed ($DOM_TIME)"

# ---- the screenshot
echo "== screenshot ${WIDTH}x${HEIGHT} -> $SHOT"
rm -f "$SHOT"
mkdir -p "$(dirname "$SHOT")"
t=$(now)
timeout 120 "$CHROMIUM" "${BROWSER_FLAGS[@]}" --screenshot="$SHOT" --window-size="$WIDTH,$HEIGHT" "$URL" \
    >"$WORK/shot.log" 2>&1 || { tail -n 20 "$WORK/shot.log" >&2; die "chromium could not take the screenshot"; }
SHOT_TIME=$(secs "$t" "$(now)")
[ -s "$SHOT" ] || die "no screenshot at $SHOT"

python3 - "$SHOT" "$WIDTH" "$HEIGHT" <<'PY' || die "the screenshot fails the checks above"
import struct, sys, zlib

path, want_w, want_h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    print(f"report-check: FAIL: {path} is not a PNG", file=sys.stderr); sys.exit(1)
pos, idat, ihdr = 8, [], None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    pos += 12 + n
    if kind == b"IHDR":
        ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat.append(body)
    elif kind == b"IEND":
        break
w, h, depth, ctype, _, _, interlace = ihdr
fails = []
if (w, h) != (want_w, want_h):
    fails.append(f"the screenshot is {w}x{h}, not {want_w}x{want_h}")
channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
if depth != 8 or channels is None or interlace:
    fails.append(f"unexpected PNG format (bit depth {depth}, colour type {ctype}, interlace {interlace})")
else:
    raw = zlib.decompress(b"".join(idat))
    bpp, stride = channels, w * channels
    prev, colours, i = bytearray(stride), set(), 0
    for y in range(h):
        f, row = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        if f == 1:
            for x in range(bpp, stride):
                row[x] = (row[x] + row[x - bpp]) & 255
        elif f == 2:
            row = bytearray((a + b) & 255 for a, b in zip(row, prev))
        elif f == 3:
            for x in range(stride):
                row[x] = (row[x] + (((row[x - bpp] if x >= bpp else 0) + prev[x]) >> 1)) & 255
        elif f == 4:
            for x in range(stride):
                a = row[x - bpp] if x >= bpp else 0
                b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:
            for x in range(0, stride, bpp * 2):
                colours.add(bytes(row[x:x + bpp]))
        prev = row
    print(f"   screenshot: {w}x{h}, {len(data):,} bytes, {len(colours)} distinct colours (sampled)")
    if len(colours) <= 16:
        fails.append(f"the screenshot looks blank: {len(colours)} distinct colours")
for f in fails:
    print(f"report-check: FAIL: {f}", file=sys.stderr)
sys.exit(1 if fails else 0)
PY
echo "   screenshot checks passed ($SHOT_TIME)"

echo
echo "report-check: OK: $ABS"
echo "  screenshot: $SHOT"
echo "  timings: chromium install $INSTALL_TIME${GEN_TIME:+, report $GEN_TIME}, DOM $DOM_TIME, screenshot $SHOT_TIME, total $(secs "$T0" "$(now)")"
