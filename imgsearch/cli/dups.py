"""`imgsearch dups`: find copies, act on them (journaled); `imgsearch dups undo` puts the last action back."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer._click.core import Context  # the click typer runs on (its own copy)

from imgsearch.cli.app import (HELP, LibraryOpt, ModelOpt, PretrainedOpt, TqdmProgress, app, err, flag_for, handled,
                               model_spec, open_library)
from imgsearch.config import DupOptions, DupThresholds, Tier
from imgsearch.errors import UsageError
from imgsearch.errors import render as render_params

DEFAULTS = DupThresholds()  # the near-exact bars the help names


# dups' own spelling of library parameters that other commands spell differently


class DupsGroup(TyperGroup):
    """`imgsearch dups [OPTIONS] [FOLDERS]...` finds copies; `imgsearch dups undo` is a subcommand. The first
    word that is neither an option nor an option's value decides which one is meant."""

    allow_interspersed_args = True  # options may follow the folders, as everywhere else

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        takes_value = {name for p in self.params if p.param_type_name == "option"
                       and not getattr(p, "is_flag", False) and not getattr(p, "count", False)
                       for name in p.opts + p.secondary_opts}
        n = 0
        while n < len(args) and args[n] != "--":
            word = args[n]
            if word.startswith("-") and len(word) > 1:
                n += 2 if word in takes_value else 1
                continue
            if word in self.commands:
                super(TyperGroup, self).parse_args(ctx, [])  # the group's own options keep their defaults
                ctx._protected_args, ctx.args = [word], args[:n] + args[n + 1:]
                return ctx.args
            break
        return super().parse_args(ctx, args)


dups_app = typer.Typer(cls=DupsGroup, invoke_without_command=True, no_args_is_help=False, **HELP,
                       help="Find exact and near-exact copies; move them aside or link them. Never deletes a photo.")
app.add_typer(dups_app, name="dups")


@dups_app.callback()
def dups(
    ctx: typer.Context,
    paths: Annotated[Optional[list[Path]], typer.Argument(metavar="PATH",
        help="Only photos inside these folders (default: the whole library).", show_default=False)] = None,
    tier: Annotated[Optional[list[str]], typer.Option(
        help="Groups of this tier: exact, near or similar (repeatable; default: exact and near). Similar "
             "(burst shots, the same scene) is only as good as the model: look before acting on it.")] = None,
    near_hamming: Annotated[Optional[int], typer.Option(
        help=f"Near-exact: coarse pHash bits (of 64) that may differ [default: the model's, else "
             f"{DEFAULTS.near_hamming}].")] = None,
    near_fine: Annotated[Optional[int], typer.Option(
        help=f"Near-exact: fine pHash bits (of 256) that may differ for the same pixels [default: "
             f"{DEFAULTS.near_fine}].")] = None,
    near_crop: Annotated[Optional[int], typer.Option(
        help=f"Near-exact: fine bits (of 256) that may differ between a trimmed copy (up to 10% off each side) and an "
             f"inner crop of its original [default: {DEFAULTS.near_crop}].")] = None,
    near_cosine: Annotated[Optional[float], typer.Option(
        help="Near-exact: an embedding cosine pairs must also reach [default: none: the pixels decide].")] = None,
    edited_cosine: Annotated[Optional[float], typer.Option(
        help="Candidates: pairs at this embedding cosine are checked too, hashes or not [default: 0.98].")] = None,
    similar: Annotated[Optional[float], typer.Option(
        "--similar", help="Similar: minimum embedding cosine (default: calibrated on this library, at least 0.95). "
                          "Thresholds given are remembered for the model.")] = None,
    within: Annotated[Optional[str], typer.Option(
        help="Similar: only photos taken this close in time (30s, 10m, 2h).")] = None,
    max_group: Annotated[int, typer.Option(help="Largest group: stops chains of look-alikes.")] = DupOptions.max_group,
    neighbours: Annotated[int, typer.Option(help="Candidates searched per photo.")] = DupOptions.neighbours,
    keep: Annotated[Optional[list[Path]], typer.Option(
        help="Keep this photo in its group, overriding the suggestion (repeatable: one per group).")] = None,
    prefer_dir: Annotated[Optional[list[Path]], typer.Option(
        help="Take keepers from this folder when a group has a photo in it (repeatable).", file_okay=False)] = None,
    move_to: Annotated[Optional[Path], typer.Option(
        help="Move every non-keeper here, keeping its path relative to its indexed folder (with --apply).")] = None,
    link: Annotated[Optional[str], typer.Option(
        help="Replace byte-identical copies by hard or symbolic links to the keeper (with --apply).")] = None,
    do_apply: Annotated[bool, typer.Option("--apply", help="Act; without it, --move-to/--link only show the plan.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Apply even when the groups hold an unusually large share "
                                                     "(over 5%) of the library.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per group.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="One CSV row per photo.")] = False,
    rescan: Annotated[bool, typer.Option("--rescan", help="Search every photo again, not only new ones.")] = False,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
) -> None:
    """Find exact and near-exact copies (similar ones when asked); move them aside or link them. Never deletes a
    photo.

    \b
    Examples:
      imgsearch dups                             # list the groups
      imgsearch dups --move-to ~/dups --apply    # move the copies aside (undo: imgsearch dups undo)
    """
    if ctx.invoked_subcommand is not None:
        return
    from imgsearch import DupOptions, parse_duration
    from imgsearch.cli import render as output
    from imgsearch.config import DEFAULT_DUP_TIERS, DUP_TIERS

    with handled():
        if as_json and as_csv:
            raise UsageError("--json and --csv cannot be combined.")
        for folder in paths or []:
            if not folder.expanduser().is_dir():
                raise UsageError(f"{folder} is not a folder (to reverse the last action: imgsearch dups undo).")
        options = DupOptions(
            tiers=tuple(tier) if tier else DEFAULT_DUP_TIERS, near_hamming=near_hamming, near_fine=near_fine, near_crop=near_crop,
            near_cosine=near_cosine, edited_cosine=edited_cosine, similar_cosine=similar,
            within_s=parse_duration(within) if within else None, max_group=max_group,
            neighbours=neighbours, folders=tuple(os.path.abspath(p.expanduser()) for p in paths or ()),
            keep=tuple(os.path.abspath(p.expanduser()) for p in keep or ()), rescan=rescan,
            prefer_dirs=tuple(os.path.abspath(p.expanduser()) for p in prefer_dir or ()))
        with open_library(library) as lib:
            found = lib.duplicates(options, model_spec(model, pretrained), TqdmProgress())
            action = None
            if move_to is not None or link is not None:
                action = lib.act_on_duplicates(found.groups, move_to, link, do_apply, yes)
            elif do_apply:
                raise UsageError("--apply needs an action: --move-to DIR or --link hard|symbolic.")
    groups = found.groups
    sys.stdout.write(output.dup_json(groups) if as_json else output.dup_csv(groups) if as_csv else output.dup_table(groups))
    copies = sum(len(g.duplicates) for g in groups)
    tiers = ", ".join(f"{sum(g.tier == t for g in groups)} {t}" for t in DUP_TIERS if any(g.tier == t for g in groups))
    spare = sum(m.photo.size for g in groups for m in g.duplicates)
    t = found.thresholds
    err(f"{len(groups)} group(s){f' ({tiers})' if tiers else ''}: {copies} copies, {output.human_bytes(spare)} besides "
        f"the keepers. "
        + (f"{found.hashed} file(s) fingerprinted (indexed without one), " if found.hashed else "")
        + f"{found.rescanned} photo(s) searched, {found.elapsed_s:.1f} s. "
        f"Thresholds: near pHash <= {t.near_hamming}/64 (fine {t.near_fine}/256, crop {t.near_crop}/256), "
        f"confirmed on the pixels" + (f" and cos >= {t.near_cosine}" if t.near_cosine > -1 else "")
        + (f", similar cos >= {t.similar_cosine}" if Tier.SIMILAR in options.tiers else "")
        + (f" (calibrated on this library: 99.9% of pairs of its photos score below {c['pairs_p99_9']})"
           if Tier.SIMILAR in options.tiers and (c := found.calibration) and c["similar_cosine"] == t.similar_cosine
           else "") + ".")
    for warning in found.warnings:
        err("Warning: " + render_params(warning, flag_for))
    if found.unreadable:
        err(f"{len(found.unreadable)} photo(s) could not be read now (gone or changed? run imgsearch index): "
            + "; ".join(f"{p}: {r}" for p, r in found.unreadable[:5]))
    if found.refused_by_cap or found.refused_as_chain:
        err(f"Not merged: {found.refused_by_cap} link(s) past --max-group, {found.refused_as_chain} chain link(s) "
            "between dissimilar photos.")
    if action is not None:
        _report_action(action)


@dups_app.command("undo")
def undo(library: LibraryOpt = None) -> None:
    """Put the last applied action back exactly: files, contents, permissions, times, search entries."""
    with handled():
        with open_library(library) as lib:
            report = lib.undo_duplicates()
    _report_action(report)


def _report_action(report) -> None:  # ActionReport; imported lazily
    from imgsearch.cli.render import human_bytes

    for note in report.settled:
        err(f"  settled from an interrupted run: {note}")
    verb = {"move": "move", "hardlink": "hard-link", "symlink": "symlink"}.get(report.kind.removeprefix("undo-"))
    for path, reason in report.refused:
        err(f"  left alone: {path}: {reason}")
    for path, reason in report.problems:
        err(f"  failed: {path}: {reason}")
    if not report.applied:
        for step in report.done:
            err(f"  would {verb}: {step.src} -> {step.dest}")
        err(f"Dry run: would {verb} {len(report.done)} file(s) ({human_bytes(report.bytes)}). "
            "Nothing was changed: add --apply to do it (undo with: imgsearch dups undo).")
    elif report.kind.startswith("undo-"):
        err(f"Undone: {len(report.done)} file(s) restored"
            + (f", {len(report.problems)} left as they are (see above); run `imgsearch dups undo` again once fixed."
               if report.problems else "."))
    else:
        err(f"Done: {verb} {len(report.done)} file(s) ({human_bytes(report.bytes)})"
            + (f", {len(report.problems)} failed (left where they were)" if report.problems else "")
            + (f", {len(report.refused)} left alone" if report.refused else "")
            + (". Undo with: imgsearch dups undo" if report.done else ": nothing was changed, nothing to undo."))
    if report.applied and report.problems:
        raise typer.Exit(1)
