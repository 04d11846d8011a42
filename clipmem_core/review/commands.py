"""The ``review`` sub-commands' names, options and help, and the words they share with the library: what an
export writes (``KINDS``) and in which formats (``FORMATS``), and how many random verdicts an estimate
needs (``MIN_AUDIT``).

Apart from ``review.cli`` (the commands themselves, imported when one runs) so that building the CLI's
parser stays light: every ``clipmem`` command, ``--help`` and ``--version`` included, spent 0.8 s importing
the review store, SQLAlchemy and pandas to list these options.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import import_module

from .verdicts import VERDICTS

FORMATS = ("csv", "parquet")
KINDS = ("verdicts", "resolutions", "cleaned", "droplist")
# Sure verdicts in the random sample before a number is offered. At 50 the 95 % interval is still about 1.7
# times the true count wide on the benchmark's openclipart runs with their top judged (3.4 times at 20);
# it narrows as more are judged (0.7 times at 200; docs/dashboard.md, "How many are mis-captioned").
MIN_AUDIT = 50


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """``review.cli``'s function ``name``, imported when the sub-command runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(import_module(".cli", __package__), name)(args)

    return run


def add_review_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``review`` and its sub-commands on the top-level CLI."""
    review = subparsers.add_parser(
        "review",
        help="team review: import verdicts, export cleaned data, agreement, estimate",
        description="Team review of a run. Database: $CLIPMEM_DB_URL, else <cache root>/review.sqlite.",
    )
    commands = review.add_subparsers(dest="review_command", required=True, metavar="SUBCOMMAND")

    imp = commands.add_parser(
        "import",
        help="add verdicts (or a lead's resolutions) from a CSV, TSV or parquet file (all rows or none)",
        description="Add verdicts from the columns sample_id,reviewer,verdict[,suggested_caption,note,created_at] "
        "of a CSV (UTF-8), TSV (.tsv) or parquet file, "
        "or a lead's resolutions from sample_id,resolved_by,verdict[,caption,note,created_at] (what `review "
        "export --what verdicts` / `resolutions` writes); a bad row imports nothing. A verdict is one of "
        f"{', '.join(VERDICTS)} (any case; 'miscaptioned' too). created_at keeps when each "
        "was given; a row the run's history already holds is not added twice.",
    )
    imp.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    imp.add_argument("--file", required=True, help="file of verdicts or resolutions: .csv, .tsv or .parquet")
    imp.add_argument(
        "--skip-unknown-samples",
        action="store_true",
        help="leave out rows of samples the run does not hold (verdicts carried to a re-run with --exclude) "
        "instead of importing nothing",
    )
    imp.set_defaults(func=_command("cmd_import"))

    ren = commands.add_parser(
        "rename-run",
        help="move the review data of a run's old name to its folder's name (after renaming the folder)",
        description="Review data is kept by run name: after a run folder is renamed, its verdicts, resolutions "
        "and review sessions stay under the old name. This moves them to the run's name now. A run that has "
        "verdicts of its own is refused.",
    )
    ren.add_argument("--run", required=True, help="the renamed run folder, e.g. cache/NEW")
    ren.add_argument("--from", dest="old_name", required=True, help="the run's name before, as the database has it")
    ren.add_argument("--by", help="who renames it, for the audit log (default: your login name)")
    ren.add_argument(
        "--force",
        action="store_true",
        help="move them even though a run folder of the old name still exists beside it (a copy keeps none)",
    )
    ren.set_defaults(func=_command("cmd_rename_run"))

    exp = commands.add_parser(
        "export",
        help="write verdicts, a cleaned dataset or a drop list",
        description="Write all verdicts (for spreadsheets: formula cells escaped), the cleaned dataset "
        "(filepath relative to the dataset root, caption, id, is_miscaptioned when known; cells verbatim) "
        "or a DataComp-style drop list of sample_ids. A sample's final label is the lead's resolution, else the "
        "reviewers' majority; cleaned and droplist refuse unresolved disagreements unless --allow-unresolved.",
    )
    exp.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    exp.add_argument(
        "--what",
        required=True,
        choices=KINDS,
        help="verdicts (every one given), resolutions (the lead's), cleaned (the dataset without its "
        "mis-captioned samples) or droplist (their sample_ids, for run --exclude)",
    )
    exp.add_argument(
        "--format",
        choices=FORMATS,
        help="csv (tab-separated when --out ends in .tsv) or parquet; default: from --out's suffix, else csv",
    )
    exp.add_argument(
        "--out",
        required=True,
        help="file to write (atomically; an existing one needs --force), or - for standard output (CSV unless "
        "--format parquet; messages go to standard error)",
    )
    exp.add_argument("--force", action="store_true", help="replace --out if it exists")
    exp.add_argument(
        "--allow-unresolved",
        action="store_true",
        help="cleaned/droplist: write even while reviewers disagree on samples no lead has resolved "
        "(the majority decides; a tie keeps the row)",
    )
    exp.add_argument(
        "--replace-with-suggestion",
        action="store_true",
        help="cleaned: replace mis-captioned captions by the accepted suggestion instead "
        "of dropping the row (rows without one are still dropped; a replaced row's is_miscaptioned becomes false)",
    )
    exp.set_defaults(func=_command("cmd_export"))

    agr = commands.add_parser(
        "agreement",
        help="percent agreement, Cohen's and Fleiss' kappa",
        description="Agreement between reviewers on their latest verdicts.",
    )
    agr.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    agr.add_argument("--session", type=int, help="only the samples of this review session")
    agr.add_argument("--json", action="store_true", help="print JSON instead of text")
    agr.set_defaults(func=_command("cmd_agreement"))

    est = commands.add_parser(
        "estimate",
        help="how many samples are mis-captioned, from the verdicts, with a 95%% interval",
        description="Estimate how many samples are mis-captioned: the mis-captioned samples of the default "
        "ranking's judged top are counted, and a random sample of the rest (the random order's judged start, "
        f"at least {MIN_AUDIT} sure verdicts) is scaled to the rest, with a Wilson interval.",
    )
    est.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    est.add_argument("--json", action="store_true", help="print JSON instead of text")
    est.set_defaults(func=_command("cmd_estimate"))

    rnd = commands.add_parser(
        "random-order",
        help="the random sample's sample ids, in the order to judge them (CSV on stdout)",
        description="The fixed random order that the estimate's random sample is drawn from (the Review "
        "page's random sample queue walks the same one). Judge from the top, with no gaps.",
    )
    rnd.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    rnd.add_argument("--limit", type=int, default=100, help="how many ids (default 100)")
    rnd.set_defaults(func=_command("cmd_random_order"))
