"""Render results for a terminal or a pipe: table, JSON lines, bare paths (NUL-separated with -0)."""

from __future__ import annotations

import base64
import html as html_escape
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from imgsearch.search import SearchResult


def table(results: Sequence[SearchResult]) -> str:
    """Aligned rank / score / path columns."""
    if not results:
        return ""
    width = len(str(results[-1].rank))
    lines = [f"{'#':>{width}}  score   path"]
    lines += [f"{r.rank:>{width}}  {r.score:.4f}  {r.path}" for r in results]
    return "\n".join(lines) + "\n"


def json_lines(results: Sequence[SearchResult]) -> str:
    """One JSON object per result: path, score, rank, id."""
    return "".join(json.dumps({"path": r.path, "score": round(r.score, 6), "rank": r.rank, "id": r.id},
                              ensure_ascii=False) + "\n" for r in results)


def paths(results: Sequence[SearchResult], nul: bool = False) -> str:
    """Bare paths, one per line, or NUL-terminated for xargs -0."""
    end = "\0" if nul else "\n"
    return "".join(r.path + end for r in results)


def html(results: Sequence[SearchResult], thumbnails: Mapping[int, bytes | None], title: str) -> str:
    """A self-contained contact sheet: embedded thumbnails, score and path, each linking to the file."""
    cells = []
    for r in results:
        thumb = thumbnails.get(r.id)
        img = (f'<img src="data:image/jpeg;base64,{base64.b64encode(thumb).decode()}" alt="">' if thumb
               else '<div class="missing">unreadable</div>')
        name = html_escape.escape(r.path)
        cells.append(f'<figure><a href="{html_escape.escape(Path(r.path).absolute().as_uri())}">{img}</a>'
                     f'<figcaption>#{r.rank} &middot; {r.score:.4f}<br><span>{name}</span></figcaption></figure>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html_escape.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; background: #fafafa; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 1em; }}
figure {{ margin: 0; background: #fff; border: 1px solid #ddd; padding: .5em; }}
img, .missing {{ width: 100%; height: 200px; object-fit: contain; display: block; background: #eee; }}
.missing {{ line-height: 200px; text-align: center; color: #888; }}
figcaption span {{ color: #555; font-size: 12px; word-break: break-all; }}
</style></head>
<body><h1>{html_escape.escape(title)}</h1><p>{len(results)} results</p><main>
{chr(10).join(cells)}
</main></body></html>
"""
