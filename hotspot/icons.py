"""Small inline SVG icons, drawn next to words for people who read little.

Each icon is a 24x24 stroke drawing of a few hundred bytes, inlined in the page (no extra
request, nothing from outside the hotspot). Taxonomy entries name an icon; an unknown name
gets the plain "file" icon.

    >>> svg("book")
    '<svg class="i" viewBox="0 0 24 24" aria-hidden="true">...</svg>'
"""

from __future__ import annotations

from functools import lru_cache

PATHS = {
    "book": "M4 4h7a2 2 0 0 1 2 2v14a2 2 0 0 0-2-2H4zM20 4h-7a2 2 0 0 0-2 2v14a2 2 0 0 1 2-2h7z",
    "tool": "M14 6a4 4 0 0 0 5 5l-9 9-3-3 9-9a4 4 0 0 0-2-2zM4 20l3-3",
    "chart": "M4 20V10M10 20V4M16 20v-8M22 20H2",
    "people": "M9 11a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM3 20a6 6 0 0 1 12 0M17 11a3 3 0 1 0-1-6M21 20a6 6 0 0 0-4-6",
    "template": "M5 3h10l4 4v14H5zM8 9h8M8 13h8M8 17h5",
    "video": "M3 6h12v12H3zM15 10l6-3v10l-6-3",
    "sound": "M4 9h4l5-4v14l-5-4H4zM16 9a4 4 0 0 1 0 6M19 6a8 8 0 0 1 0 12",
    "map": "M3 6l6-2 6 2 6-2v14l-6 2-6-2-6 2zM9 4v14M15 6v14",
    "radio": "M4 9h16v11H4zM7 9l10-5M8 14a2 2 0 1 0 0 .1M13 13h4M13 16h4",
    "walk": "M13 4a2 2 0 1 0 0 .1M10 21l2-6 3 3v3M12 15l-1-5 4 2 3 1M11 10l-4 2v3",
    "bell": "M6 17V11a6 6 0 0 1 12 0v6l2 2H4zM10 21h4",
    "handshake": "M2 12l4-4 4 2 3-2 4 1 5 3M6 8v6l5 5 2-1 2 1 4-4M9 15l2-2M12 17l2-2",
    "camera": "M3 8h4l2-3h6l2 3h4v12H3zM12 17a4 4 0 1 0 0-8 4 4 0 0 0 0 8z",
    "scale": "M12 3v18M7 21h10M4 7h16M4 7l-2 6a3 3 0 0 0 6 0zM20 7l-2 6a3 3 0 0 0 6 0z",
    "megaphone": "M3 10v4h3l8 5V5L6 10zM18 9a4 4 0 0 1 0 6M7 14l1 6h3l-1-5",
    "gear": "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM12 2v3M12 19v3M2 12h3M19 12h3M5 5l2 2M17 17l2 2M5 19l2-2M17 7l2-2",
    "lock": "M5 11h14v10H5zM8 11V7a4 4 0 0 1 8 0v4M12 15v2",
    "school": "M2 9l10-5 10 5-10 5zM6 11v5c3 3 9 3 12 0v-5M22 9v6",
    "search": "M10 17a7 7 0 1 0 0-14 7 7 0 0 0 0 14zM15 15l6 6",
    "download": "M12 3v12M7 10l5 5 5-5M4 20h16",
    "external": "M14 4h6v6M20 4l-9 9M18 14v6H4V6h6",
    "globe": "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM3 12h18M12 3c3 3 3 15 0 18M12 3c-3 3-3 15 0 18",
    "file": "M6 3h8l5 5v13H6zM14 3v5h5",
    "image": "M3 5h18v14H3zM3 16l5-5 4 4 3-3 6 6M16 9a1 1 0 1 0 0 .1",
    "home": "M3 11l9-8 9 8M5 10v10h5v-6h4v6h5V10",
    "info": "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 11v6M12 7v.1",
}


@lru_cache(maxsize=None)
def svg(name: str) -> str:
    path = PATHS.get(name) or PATHS["file"]
    return f'<svg class="i" viewBox="0 0 24 24" aria-hidden="true"><path d="{path}"/></svg>'


def for_file(kind: str) -> str:
    return svg({"audio": "sound", "video": "video", "image": "image", "pdf": "book",
                "text": "template"}.get(kind, "file"))
