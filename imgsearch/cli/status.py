"""`imgsearch status` and `imgsearch db`: what the library holds, and its database's maintenance."""

from __future__ import annotations

import json
import sys
from typing import Annotated
import typer
from imgsearch.cli.app import LibraryOpt, TqdmProgress, app, db_app, err, handled, open_library
from imgsearch.cli.render import human_bytes, shown


@app.command()
def status(
    library: LibraryOpt = None,
    skipped: Annotated[bool, typer.Option("--skipped", help="List files that could not be indexed, and why.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show roots, counts, models, index state and the last run.

    \b
    Examples:
      imgsearch status
      imgsearch status --skipped     # files that could not be indexed, and why
    """
    with handled():
        with open_library(library) as lib:
            if skipped:
                rows = lib.skipped()
                if as_json:
                    sys.stdout.write("".join(json.dumps({"path": p, "reason": r}, ensure_ascii=False) + "\n"
                                             for p, r in rows))
                else:
                    sys.stdout.write("".join(f"{shown(p)}\t{r}\n" for p, r in rows))
                    err(f"{len(rows)} skipped file(s).")
                return
            st = lib.status()
    if as_json:
        from dataclasses import asdict

        sys.stdout.write(json.dumps(asdict(st), default=str, indent=2) + "\n")
        return
    lines = [f"Library:  {st.path}", f"Database: {st.database}", f"Images:   {st.indexed} indexed, {st.skipped} skipped"
             + (" (imgsearch status --skipped)" if st.skipped else ""), "Roots:"]
    lines += [f"  {shown(path)}  ({n} images){'' if ok else '  [not reachable]'}"
              for path, n, ok in st.roots] or ["  (none)"]
    lines.append("Models:")
    for m in st.models:
        name = m.name + (f" ({m.pretrained})" if m.pretrained else "") + (
            f" [weights sha256 {m.checkpoint_sha256[:12]}]" if m.checkpoint_sha256 else "")
        tuned = "".join(f", {k} {v}" for k, v in sorted(m.index_params.items())
                        if m.index_spec != "IDMap2,Flat" and k in ("nprobe", "k_factor"))
        recall = f", recall@10 {m.index_recall_at_10:.3f}" if m.index_recall_at_10 is not None else ""
        state = "fresh" if m.index_fresh else "stale: updated on next search"
        size = f", {human_bytes(m.index_ram_bytes)} in RAM, {human_bytes(m.index_disk_bytes)} on disk"
        idx = (f"index {m.index_spec}{tuned}{recall}, {m.index_count} vectors{size}, {state}" if m.index_spec
               else "no index yet")
        lines.append(f"  {name}  dim {m.dim}, {m.vectors} vectors; {idx}")
        if m.exports:
            lines.append("    exported: " + ", ".join(f"{e['runtime']} ({human_bytes(e['bytes'])})" for e in m.exports))
    if not st.models:
        lines.append("  (none)")
    if st.set_aside or st.pending_undo:
        u = st.pending_undo
        lines.append(f"Dups:     {st.set_aside} photo(s) set aside"
                     + (f"; last action: {u['kind']} of {u['files']} file(s) at "
                        f"{u['created_at']:%Y-%m-%d %H:%M:%S} UTC (imgsearch dups undo)" if u else ""))
    if st.tags:
        lines.append("Tags:     " + ", ".join(f"{label} ({n})" for label, n in sorted(st.tags.items())))
    if st.last_run:
        r = st.last_run
        when = (r["finished_at"] or r["started_at"]).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"Last run: {r['status']} at {when} UTC: {r['new']} new, "
                     f"{r['changed']} changed, {r['moved']} moved, {r['unchanged']} unchanged, {r['removed']} removed, "
                     f"{r['skipped']} skipped" + (f"; on {r['executor']}" if r.get("executor") else ""))
    sys.stdout.write("\n".join(lines) + "\n")


@db_app.command("upgrade")
def db_upgrade(
    library: LibraryOpt = None,
    no_backup: Annotated[bool, typer.Option("--no-backup", help="Do not back the database up first (you did).")]
    = False,
) -> None:
    """Back up the library database, then migrate it to this version's schema."""
    from imgsearch import upgrade

    with handled():
        done = upgrade(library, make_backup=not no_backup)
    if done.before == done.after:
        err(f"{done.database} is already at schema {done.after}.")
        return
    if done.backup is not None:
        err(f"Backed up to {done.backup}")
    elif not done.backed_up:
        err("Warning: no backup was made: pg_dump is not installed here (apt-get install postgresql-client).")
    err(f"Upgraded {done.database}: schema {done.before or 'none'} -> {done.after}")


@db_app.command("copy")
def db_copy(
    to: Annotated[str, typer.Option("--to", help="The database to copy the library into: postgresql+psycopg://USER@HOST"
                                                 "/NAME, or sqlite:///PATH. It must be empty.", show_default=False)],
    library: LibraryOpt = None,
) -> None:
    """Copy the library's database to another one (SQLite to PostgreSQL, or back), check it, and use the copy. The
    source is left as it was."""
    with handled():
        with open_library(library) as lib:
            done = lib.copy_database(to, TqdmProgress())
    err(f"Copied {done.rows:,} rows of {done.tables} tables in {done.seconds:.1f} s; counts and the checksum of "
        f"{done.vectors:,} vectors match. The library now uses {done.target}; {done.source} is unchanged.")


@app.command()
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """What this install can read and run (decoders, runtimes, CUDA, models), and what to install for the rest.

    Example: imgsearch doctor
    """
    from dataclasses import asdict

    from imgsearch import diagnose

    checks = diagnose()
    if as_json:
        sys.stdout.write("".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in checks))
        return
    area = ""
    for c in checks:
        if c.area != area:
            area = c.area
            sys.stdout.write(f"{area}\n")
        sys.stdout.write(f"  {'ok' if c.ok else '--':<3} {c.name:<14} {c.detail}\n")
        if c.fix:
            sys.stdout.write(f"  {'':<3} {'':<14} fix: {c.fix}\n")
    missing = sum(not c.ok for c in checks)
    err(f"{len(checks) - missing} of {len(checks)} available" + (f"; {missing} with a fix above." if missing else "."))
