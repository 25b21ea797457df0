"""Results as text: tables, JSON lines, bare paths (NUL-separated), CSV, duplicate groups, an HTML contact sheet."""

from __future__ import annotations

import base64
import csv
import html as html_escape
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from imgsearch.config import Tier


if TYPE_CHECKING:
    from imgsearch import SearchResult
    from imgsearch.dups.grouping import Group, Member


def shown(text: str) -> str:
    """Text for a terminal: control characters (an escape sequence, a newline in a file name) written as
    backslash escapes, as JSON writes them, never sent raw."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def table(results: Sequence[SearchResult]) -> str:
    """Aligned rank / score / path columns."""
    if not results:
        return ""
    width = len(str(results[-1].rank))
    lines = [f"{'#':>{width}}  score   path"]
    lines += [f"{r.rank:>{width}}  {r.score:.4f}  {shown(r.path)}" + (f"  {r.at}" if r.at else "") for r in results]
    return "\n".join(lines) + "\n"


def json_lines(results: Sequence[SearchResult]) -> str:
    """One JSON object per result: path, score, rank, id; for a video, the best frame's time in seconds."""
    return "".join(json.dumps({"path": r.path, "score": round(r.score, 6), "rank": r.rank, "id": r.id}
                              | ({"time": r.time_ms / 1000} if r.time_ms is not None else {}),
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
        name = html_escape.escape(r.path) + (f" &middot; {r.at}" if r.at else "")
        link = Path(r.path).absolute().as_uri() + (f"#t={r.time_ms / 1000:g}" if r.time_ms is not None else "")
        cells.append(f'<figure><a href="{html_escape.escape(link)}">{img}</a>'
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


# --- duplicate groups --------------------------------------------------------------------------

def human_bytes(n: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as file managers show them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _evidence(m: "Member") -> str:
    if m.relation == "keeper":
        return "keep"
    parts = [m.relation]
    if m.cosine is not None:
        parts.append(f"cos {m.cosine:.3f}")
    if m.hamming is not None and m.relation != Tier.EXACT:
        turned = f" {m.transform}" if m.transform and m.transform != "same orientation" else ""
        parts.append(f"phash {m.hamming}/64 {m.fine}/256{turned} crop {m.crop}/256")
    if m.key_frames:
        parts.append(m.key_frames)
    return ", ".join(parts)


def dup_table(groups: Sequence["Group"]) -> str:
    """Per group: a header (tier, size), then the keeper and each copy with its evidence against the keeper."""
    lines = []
    for n, g in enumerate(groups, 1):
        lines.append(f"group {n}: {g.tier}, {len(g.members)} photos; keeper: {g.keeper_reason}")
        for m in g.members:
            p = m.photo
            lines.append(f"  {_evidence(m):<40} {p.width}x{p.height:<6} {human_bytes(p.size):>9}  {shown(p.path)}")
    return "\n".join(lines) + ("\n" if lines else "")


def _dup_rows(groups: Sequence["Group"]) -> list[dict]:
    return [{"group": n, "tier": g.tier, "role": "keeper" if m.relation == "keeper" else "duplicate",
             "relation": m.relation, "path": m.photo.path,
             "cosine": None if m.cosine is None else round(m.cosine, 6), "hamming": m.hamming, "fine": m.fine, "crop": m.crop,
             "transform": m.transform, "key_frames": m.key_frames, "width": m.photo.width, "height": m.photo.height,
             "bytes": m.photo.size,
             "keeper_reason": g.keeper_reason if m.relation == "keeper" else ""}
            for n, g in enumerate(groups, 1) for m in g.members]


def dup_json(groups: Sequence["Group"]) -> str:
    """One JSON object per group: tier, keeper, members with their evidence."""
    rows = _dup_rows(groups)
    out = []
    for n, g in enumerate(groups, 1):
        members = [{k: v for k, v in r.items() if k not in ("group", "tier", "keeper_reason")}
                   for r in rows if r["group"] == n]
        out.append(json.dumps({"group": n, "tier": g.tier, "keeper": g.keeper.path, "keeper_reason": g.keeper_reason,
                               "members": members}, ensure_ascii=False) + "\n")
    return "".join(out)


def dup_csv(groups: Sequence["Group"]) -> str:
    """One CSV row per photo: group, tier, role, relation, path, evidence, size."""
    rows = _dup_rows(groups)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else
                            ["group", "tier", "role", "relation", "path", "cosine", "hamming", "fine", "crop", "transform",
                             "key_frames", "width", "height", "bytes", "keeper_reason"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
