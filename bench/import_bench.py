"""Import benchmark: `hotspot import` of a ~1 GB pack against `cp -r` + `sha256sum`, and a delta.

Generates a publisher's source folder (seeded random bytes: files from 64 KiB to 40 MiB under
common extensions, a few hundred resources in a CSV), builds a signed full pack with
``content_pack.build.build_pack`` (as ``content-pack build`` does), then, in the same run:

(a) imports it with ``hotspot.packs.import_pack`` (what ``hotspot import`` runs: verify,
    copy while hashing, fsync each file, switch the catalog) into an empty data directory;
(b) copies the pack's ``files/`` with ``cp -r`` to a fresh folder, runs ``sha256sum`` on the
    copies and ``sync`` (the import syncs what it writes, so the copy must too); (b2) the same
    with the copies hashed by Python's ``hashlib``, the import's own SHA-256 code;
(c) changes about 1 % of the files, builds a delta pack with ``--base`` (``build_pack(base=)``)
    and imports it on top of (a).

The page cache is dropped (``sync; echo 3 > /proc/sys/vm/drop_caches``, needs root) before
each timed step, so (a) and (b) both read the pack from disk; the report says whether that
worked. (a), (b) and (b2) run ``--repeat`` times (default 3), alternating; medians are shown. Work files go to ``--work-dir`` (default /var/tmp: on disk, not tmpfs) and are removed.

    $ python bench/import_bench.py --size-mb 100                # quick, ~10 s
    $ python bench/import_bench.py --out docs/performance.md    # ~1 GB, about 1 minute here

It prints a table (and with ``--out`` writes it into the section "Importing packs"), e.g.::

    | (a) hotspot import: verify, copy while hashing, fsync each file, switch | 1.57 | 1,024.0 | 651 | ...
    | (b) cp -r + sha256sum of the copies + sync | 3.27 | 1,024.0 | 313 | ...
    | (b2) cp -r + SHA-256 of the copies with the import's code (hashlib) + sync | 1.39 | 1,024.0 | 737 | ...
    | (c) hotspot import of a delta: 2 of 200 files changed | 0.06 | 1.7 | 27 | ...
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from content_pack.build import build_pack  # noqa: E402
from content_pack.signing import SecretKey  # noqa: E402
from hotspot.library import DataPaths  # noqa: E402
from hotspot.packs import import_pack  # noqa: E402

MB = 1_000_000
MiB = 1024 * 1024
MIN_FILE = 64 * 1024
MAX_FILE = 40 * MiB
EXTENSIONS = (".pdf", ".mp4", ".mp3", ".jpg", ".epub", ".zip")
SECTION_START = "<!-- import-bench: written by bench/import_bench.py -->"
SECTION_END = "<!-- /import-bench -->"
NOTES_START = "<!-- import-notes: kept when the benchmark rewrites this section -->"
NOTES_END = "<!-- /import-notes -->"


# -- the source folder ----------------------------------------------------------------------------

def file_sizes(total_bytes: int, count: int, rng: random.Random) -> list[int]:
    """``count`` sizes, log-uniform in [64 KiB, 40 MiB], scaled so they add up to ~total."""
    raw = [math.exp(rng.uniform(math.log(MIN_FILE), math.log(MAX_FILE))) for _ in range(count)]
    for _ in range(20):  # scale, clamp, repeat: clamping moves the sum a little
        factor = total_bytes / sum(raw)
        raw = [min(MAX_FILE, max(MIN_FILE, s * factor)) for s in raw]
    return [int(s) for s in raw]


def write_random(path: Path, size: int, rng: random.Random) -> None:
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 8 * MiB)
            out.write(rng.randbytes(n))
            left -= n


def make_source(source: Path, *, total_bytes: int, n_files: int, n_resources: int,
                seed: int) -> list[Path]:
    """A publisher's folder: files/, catalog.csv, taxonomy.json, library.json."""
    rng = random.Random(seed)
    files_dir = source / "files"
    files_dir.mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "example-pack" / "taxonomy.json", source / "taxonomy.json")
    taxonomy = json.loads((source / "taxonomy.json").read_text(encoding="utf-8"))
    ids = {k: [e["id"] for e in v] for k, v in taxonomy.items()}
    (source / "library.json").write_text(json.dumps(
        {"id": "import-bench", "title": {"en": "Import benchmark library"},
         "publisher": "bench/import_bench.py"}), encoding="utf-8")
    paths = []
    for i, size in enumerate(file_sizes(total_bytes, n_files, rng)):
        path = files_dir / f"file-{i:04d}{EXTENSIONS[i % len(EXTENSIONS)]}"
        write_random(path, size, rng)
        paths.append(path)
    with open(source / "catalog.csv", "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["id", "type", "themes", "strand", "languages", "title_en",
                         "summary_en", "added", "files", "link"])
        for r in range(n_resources):
            # Every file is in one resource; some resources share a file, some are links only.
            names = [f"files/{p.name}" for p in paths[r::n_resources]]
            if r % 5 == 4 and paths:
                names.append(f"files/{paths[(r * 7) % len(paths)].name}")
            names = list(dict.fromkeys(names))
            link = "" if names else f"https://example.org/resource/{r}"
            writer.writerow([f"resource-{r:04d}", ids["types"][r % len(ids["types"])],
                             ids["themes"][r % len(ids["themes"])],
                             ids["strands"][r % len(ids["strands"])], "en",
                             f"Benchmark resource {r}", "Random bytes for the import benchmark.",
                             "2026-11-24", ";".join(names), link])
    return paths


def change_files(paths: list[Path], fraction: float, seed: int) -> list[Path]:
    """Rewrite ``fraction`` of the files with new random bytes (same sizes)."""
    rng = random.Random(seed + 1)
    count = max(1, round(len(paths) * fraction))
    chosen = rng.sample(paths, count)
    for path in chosen:
        write_random(path, path.stat().st_size, rng)
    return chosen


# -- measuring ------------------------------------------------------------------------------------

def drop_caches() -> bool:
    """Write back and drop the page cache (root only); False when it is not possible."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


@dataclass
class Row:
    what: str
    seconds: float
    nbytes: int
    note: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / MB / self.seconds if self.seconds > 0 else float("inf")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench(work: Path, *, size_mb: int, n_files: int, n_resources: int, seed: int,
          delta_fraction: float, repeat: int) -> dict:
    secret = SecretKey.generate()
    public = secret.public_key()
    source = work / "source"
    paths = make_source(source, total_bytes=size_mb * MB, n_files=n_files,
                        n_resources=n_resources, seed=seed)
    total = sum(p.stat().st_size for p in paths)
    print(f"Source: {len(paths)} files, {total / MB:,.0f} MB, {n_resources} resources", flush=True)

    packs = work / "packs"
    pack = None

    def build_full():
        nonlocal pack
        pack = build_pack(source, catalog_csv=source / "catalog.csv", secret_key=secret,
                          out_dir=packs, version=1)
    build_s = timed(build_full)
    print(f"Built {pack.name} in {build_s:.1f} s", flush=True)
    pack_bytes = sum(p.stat().st_size for p in (pack / "files").iterdir())

    samples: dict[str, list[float]] = {"import": [], "cp": [], "sha256sum": [], "sync": [],
                                       "hashlib": [], "sync2": []}
    cold = True
    data = None
    result = None
    for attempt in range(repeat):
        # (a) the import, into an empty data directory each time (the last one is kept for (c)).
        if data is not None:
            shutil.rmtree(data.root)
        data = DataPaths(work / f"data-{attempt}")
        cold &= drop_caches()

        def do_import():
            nonlocal result
            result = import_pack(pack, data, [public], margin_bytes=0)
        samples["import"].append(timed(do_import))
        assert result.files_copied == len(paths)

        # (b) cp -r, then sha256sum of the copies, then sync.
        cold &= drop_caches()
        copy_dir = work / "copy"
        samples["cp"].append(timed(lambda: run(["cp", "-r", str(pack / "files"), str(copy_dir)])))
        copies = sorted(str(p) for p in copy_dir.iterdir())
        out = []
        samples["sha256sum"].append(timed(lambda: out.append(
            run(["sha256sum", *copies], capture_output=True, text=True).stdout)))
        assert all(line.split()[0] == Path(line.split(maxsplit=1)[1]).name
                   for line in out[0].splitlines())
        samples["sync"].append(timed(os.sync))
        shutil.rmtree(copy_dir)

        # (b2) the same, hashing with the import's SHA-256 code (Python hashlib, OpenSSL), so
        # the difference is one pass against two, not one SHA-256 implementation against another.
        cold &= drop_caches()
        started = time.perf_counter()
        run(["cp", "-r", str(pack / "files"), str(copy_dir)])
        for copy in copy_dir.iterdir():
            assert sha256_of(copy) == copy.name
        samples["hashlib"].append(time.perf_counter() - started)
        samples["sync2"].append(timed(os.sync))
        shutil.rmtree(copy_dir)
        print(f"run {attempt + 1}/{repeat}: import {samples['import'][-1]:.2f} s; cp "
              f"{samples['cp'][-1]:.2f} + sha256sum {samples['sha256sum'][-1]:.2f} + sync "
              f"{samples['sync'][-1]:.2f} s; cp + hashlib {samples['hashlib'][-1]:.2f} + sync "
              f"{samples['sync2'][-1]:.2f} s", flush=True)

    def spread(values: list[float]) -> str:
        return f"{repeat} runs, {min(values):.2f}-{max(values):.2f} s" if repeat > 1 else ""

    copy_hash = [c + h + y for c, h, y in zip(samples["cp"], samples["sha256sum"], samples["sync"])]
    copy_hashlib = [h + y for h, y in zip(samples["hashlib"], samples["sync2"])]
    rows: list[Row] = [
        Row("(a) hotspot import: verify, copy while hashing, fsync each file, switch",
            median(samples["import"]), pack_bytes, spread(samples["import"])),
        Row("(b) cp -r + sha256sum of the copies + sync", median(copy_hash), pack_bytes,
            f"{spread(copy_hash)}; medians: cp {median(samples['cp']):.2f} s, sha256sum "
            f"{median(samples['sha256sum']):.2f} s, sync {median(samples['sync']):.2f} s"),
        Row("(b2) cp -r + SHA-256 of the copies with the import's code (hashlib) + sync",
            median(copy_hashlib), pack_bytes, spread(copy_hashlib)),
    ]

    changed = change_files(paths, delta_fraction, seed)
    delta = None

    def build_delta():
        nonlocal delta
        delta = build_pack(source, catalog_csv=source / "catalog.csv", secret_key=secret,
                           out_dir=packs, base=pack)
    delta_build_s = timed(build_delta)
    delta_bytes = sum(p.stat().st_size for p in (delta / "files").iterdir())
    cold &= drop_caches()

    def do_delta():
        nonlocal result
        result = import_pack(delta, data, [public], margin_bytes=0)
    delta_s = timed(do_delta)
    assert result.kind == "delta" and result.files_copied == len(changed)
    rows.append(Row(f"(c) hotspot import of a delta: {len(changed)} of {len(paths)} files "
                    f"changed", delta_s, delta_bytes,
                    f"{result.files_copied} file(s) copied, the other files already on the hotspot"))
    print(f"(c) delta import: {delta_s:.2f} s ({delta_bytes / MB:.1f} MB)", flush=True)
    return {"rows": rows, "cold": cold, "repeat": repeat, "files": len(paths), "resources": n_resources,
            "total": total, "build_s": build_s, "delta_build_s": delta_build_s,
            "delta_files": len(changed)}


# -- report ---------------------------------------------------------------------------------------

def table(report: dict) -> list[str]:
    lines = ["| Step | Time s | MB | MB/s | Detail |", "| --- | ---: | ---: | ---: | --- |"]
    for row in report["rows"]:
        lines.append(f"| {row.what} | {row.seconds:.2f} | {row.nbytes / MB:,.1f} | "
                     f"{row.mb_per_s:,.0f} | {row.note or '-'} |")
    return lines


def verdict(report: dict) -> tuple[float, float, bool]:
    """(import / copy-then-sha256sum, import / copy-then-hashlib, target met)."""
    a, b, b2 = report["rows"][:3]
    ratio = a.mb_per_s / b.mb_per_s
    return ratio, a.mb_per_s / b2.mb_per_s, ratio >= 1.0


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def first_line(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "?"
    return {"CPUs (nproc)": str(os.cpu_count()), "CPU model": model,
            "Kernel": platform.release(), "Python": platform.python_version(),
            "cp": first_line(["cp", "--version"]),
            "sha256sum": first_line(["sha256sum", "--version"])}


def section(report: dict, command: str, work_dir: Path, notes: str) -> str:
    ratio, ratio_same_hash, met = verdict(report)
    fs = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "-T", str(work_dir)],
                        capture_output=True, text=True).stdout.split()
    fs = " on ".join(fs) if fs else "?"
    cache = ("dropped before each timed step (`sync; echo 3 > /proc/sys/vm/drop_caches`): "
             "every step reads the pack from disk" if report["cold"] else
             "NOT dropped (not root): the steps ran warm, the pack mostly in the page cache")
    info = machine()
    lines = [
        SECTION_START,
        "## Importing packs",
        "",
        "`hotspot import` copies each file of a pack into the media store while hashing it, in",
        "one pass, and fsyncs it; the issue's target is that this is no slower than what an",
        "operator would otherwise do, copy the files and then check them: `cp -r` followed by",
        "`sha256sum` of the copies (and `sync`, since the import's data is on disk when it",
        "returns). Written by `bench/import_bench.py`:",
        "",
        "```",
        command,
        "```",
        "",
        f"* Pack: {report['files']} files of random bytes from 64 KiB to 40 MiB (log-uniform, "
        f"seeded), {report['total'] / MB:,.0f} MB, {report['resources']} resources in a CSV; "
        f"built with `content_pack.build.build_pack` in {report['build_s']:.0f} s.",
        f"* Disk: {fs} under `{work_dir}`; the pack, the data directory and the copy are on it.",
        f"* Page cache: {cache}. (a), (b) and (b2) ran {report['repeat']} times, alternating; "
        "the table shows the median.",
        "* (b2) is (b) with the copies hashed by the same SHA-256 code as the import (Python's "
        "`hashlib`, i.e. OpenSSL) instead of coreutils' `sha256sum`, so that the comparison is "
        "one pass against two rather than one SHA-256 implementation against another.",
        f"* Delta: {report['delta_files']} files rewritten, built with `build_pack(base=...)` "
        f"(`content-pack build --base`) in {report['delta_build_s']:.0f} s, imported on top "
        "of (a).",
        f"* Machine: {info['CPUs (nproc)']} CPUs ({info['CPU model']}), kernel "
        f"{info['Kernel']}, Python {info['Python']}, {info['cp']}; date "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        *table(report),
        "",
        f"Target: single-pass import no slower than copy-then-hash. Import / (b) throughput: "
        f"{ratio:.2f}× — {'met' if met else '**not met**'}; import / (b2): "
        f"{ratio_same_hash:.2f}×.",
        "",
        NOTES_START,
        notes or "(Nobody has written notes on these numbers yet.)",
        NOTES_END,
        SECTION_END,
    ]
    return "\n".join(lines)


def kept(text: str, start: str, end: str) -> str:
    i, j = text.find(start), text.find(end)
    return text[i + len(start):j].strip() if i != -1 and j != -1 else ""


def write_section(out: Path, body: str) -> None:
    """Replace the import section of ``out``, or insert it before "## Analysis"."""
    text = out.read_text(encoding="utf-8") if out.exists() else "# Performance\n"
    i, j = text.find(SECTION_START), text.find(SECTION_END)
    if i != -1 and j != -1:
        text = text[:i] + body + text[j + len(SECTION_END):]
    elif "\n## Analysis" in text:
        k = text.index("\n## Analysis") + 1
        text = text[:k] + body + "\n\n" + text[k:]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    out.write_text(text, encoding="utf-8")
    print(f"Wrote the section 'Importing packs' of {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024,
                        help="total size of the pack's files in MB (default 1024)")
    parser.add_argument("--files", type=int,
                        help="number of files (default: 200 for 1 GB, fewer for smaller sizes)")
    parser.add_argument("--resources", type=int, default=300, help="resources (default 300)")
    parser.add_argument("--delta-percent", type=float, default=1.0,
                        help="percentage of files the delta changes (default 1)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of (a), (b) and (b2), alternating; the median is reported")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=Path("/var/tmp"),
                        help="where the work files go (use a disk, not tmpfs)")
    parser.add_argument("--out", type=Path, help="write the section 'Importing packs' into this "
                                                  "Markdown file (docs/performance.md)")
    args = parser.parse_args(argv)
    n_files = args.files or max(20, round(200 * args.size_mb / 1024))
    for tool in ("cp", "sha256sum", "findmnt"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(args.work_dir).free < 4.5 * args.size_mb * MB:
        parser.error(f"{args.work_dir} needs about {4.5 * args.size_mb:,.0f} MB free")
    work = Path(tempfile.mkdtemp(prefix="hotspot-import-bench-", dir=args.work_dir))
    started = time.monotonic()
    try:
        report = bench(work, size_mb=args.size_mb, n_files=n_files,
                       n_resources=args.resources, seed=args.seed,
                       delta_fraction=args.delta_percent / 100, repeat=args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nTotal time {time.monotonic() - started:.0f} s; page cache "
          f"{'dropped before each step' if report['cold'] else 'NOT dropped (warm runs)'}\n")
    print("\n".join(table(report)))
    ratio, ratio_same_hash, met = verdict(report)
    print(f"\nimport / (cp + sha256sum) throughput: {ratio:.2f}x, target >= 1.0: "
          f"{'met' if met else 'NOT met'}; import / (cp + hashlib): {ratio_same_hash:.2f}x")
    if args.out:
        command = (f"python bench/import_bench.py --size-mb {args.size_mb} --repeat {args.repeat}"
                   f" --out {args.out}")
        existing = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        write_section(args.out, section(report, command, args.work_dir,
                                        kept(existing, NOTES_START, NOTES_END)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
