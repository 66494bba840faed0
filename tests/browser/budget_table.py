"""The budget table of the browser suite, and the script that copies it into docs/performance.md.

The page tour (tests/browser/test_pages.py) writes ``artifacts/budgets.json`` and
``artifacts/budgets.md``; after a run, update the doc with:

    $ python tests/browser/budget_table.py            # replaces "## Pages in a real browser"

Only the text between the ``<!-- browser-pages -->`` markers is replaced; the rest of the
file is kept as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent.parent / "docs" / "performance.md"
START = "<!-- browser-pages: written by tests/browser/budget_table.py from the browser suite -->"
END = "<!-- /browser-pages -->"
LANGS = ("en", "es", "fr", "pt")
HOME_KB, PAGE_KB, HOME_MS = 14, 30, 2000


def render_table(rows: list[dict]) -> str:
    """Markdown: one line per page, transfer per UI language, LCP and load on the slow link."""
    pages: dict[str, dict] = {}
    for row in rows:
        page = pages.setdefault(row["page"], {"path": row["path"], "budget": row["budget_kb"]})
        page[row["lang"]] = row
    meta = rows[0]
    lines = [
        f"Measured by `pytest tests/browser` in headless Chromium {meta.get('browser', '')}, "
        f"360x640 touch screen, link throttled to 250 kbit/s down and 300 ms round trip "
        f"(DevTools `Network.emulateNetworkConditions`); date {meta.get('date', '')}.",
        "Transfer is what crossed the wire for the page and everything it loads except media "
        "(HTML, CSS, icon; gzip as sent, headers included: DevTools `encodedDataLength`). "
        "Every page is measured as a first visit, with the browser cache emptied before it. "
        "LCP (Largest Contentful Paint, from the DevTools timeline) and load (the `load` "
        "event) are in English, on the throttled link; the other languages' sizes are measured "
        "on an unthrottled link (bytes do not depend on it).",
        "",
        "| Page | Path | en KB | es KB | fr KB | pt KB | Budget KB | LCP ms | Load ms | Met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, page in pages.items():
        sizes = [page[lang]["transfer_kb"] for lang in LANGS if lang in page]
        timed = page.get("en", {})
        ok = all(size <= page["budget"] for size in sizes)
        if name == "home" and timed:
            ok = ok and timed["lcp_ms"] <= HOME_MS and timed["load_ms"] <= HOME_MS
        cells = [f"{page[lang]['transfer_kb']:.1f}" if lang in page else "-" for lang in LANGS]
        lines.append(f"| {name} | `{page['path']}` | " + " | ".join(cells) +
                     f" | {page['budget']} | {timed.get('lcp_ms', '-')} | {timed.get('load_ms', '-')}"
                     f" | {'yes' if ok else '**no**'} |")
    lines += ["", f"Budgets: home ≤ {HOME_KB} KB and LCP and load ≤ {HOME_MS} ms on that link; "
              f"every other page ≤ {PAGE_KB} KB before media. No request left the server's origin."]
    return "\n".join(lines) + "\n"


def update_doc(table: str, doc: Path = DOC) -> None:
    text = doc.read_text(encoding="utf-8")
    section = (f"## Pages in a real browser\n\n{START}\n{table.rstrip()}\n{END}\n")
    start = text.find("## Pages in a real browser")
    if start != -1:
        end = text.find(END, start)
        if end == -1:
            raise SystemExit(f"{doc}: section without its end marker {END}")
        text = text[:start] + section + "\n" + text[end + len(END):].lstrip("\n")
    else:
        # New section just before the hand-written analysis, so both benchmarks keep theirs.
        anchor = text.find("## Analysis")
        anchor = len(text) if anchor == -1 else anchor
        text = text[:anchor].rstrip("\n") + "\n\n" + section + "\n" + text[anchor:]
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=HERE / "artifacts" / "budgets.json",
                        help="rows written by the browser suite")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    if not args.json.exists():
        print(f"{args.json} not found: run `python -m pytest tests/browser` first", file=sys.stderr)
        return 1
    update_doc(render_table(json.loads(args.json.read_text())), args.doc)
    print(f"Updated {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
