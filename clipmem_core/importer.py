"""import-run: build a run from scores (and embeddings) computed elsewhere, e.g. on a cluster.

The scores parquet has a ``sample_id`` column and any registered score columns (``clipmem_core.scores``)
or the paper's per-model measurements (``align_f``, ``align_g``, ``clip_score_f``, ``clip_score_g``), from
which the registered scores are derived as a computed run would (CLIPMem from A(f) and A(g) on S_C and
S_I, or from ``align_train`` and ``align_heldout``, the sides a full-protocol run measures, and so on). An
optional ``split`` column uses the paper's split names or fold names (``fold0``…).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import cache
from .atomic import read_parquet, write_json
from .data import Dataset, read_dataset, write_skip_report
from .errors import ClipmemError
from .formatting import fmt_count
from .image_list import ImageList
from .scores import MEASUREMENTS, derive_missing, registry, run_scores
from .scores.combined import Combined, ranking_inputs
from .splits import CANDIDATE, FOLD_PREFIX, SPLITS
from .stopwatch import Stopwatch

PROTOCOL = "imported"
log = logging.getLogger("clipmem")


def _read_scores(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ClipmemError(f"scores file {path} does not exist")
    try:
        scores = read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a foreign file
        raise ClipmemError(f"scores file {path} is not readable parquet: {exc}") from None
    if "sample_id" not in scores.columns:
        raise ClipmemError(f"scores file {path} has no sample_id column (columns: {', '.join(scores.columns)})")
    known = [c for c in scores.columns if c in registry() or c in MEASUREMENTS]
    if not known:
        raise ClipmemError(
            f"scores file {path} has no score column; give any of {', '.join(registry())}, "
            "or align_f and align_g, or align_train and align_heldout (CLIPMem is derived from either pair)"
        )
    for column in known:
        values = pd.to_numeric(scores[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isinf(values).any():
            raise ClipmemError(f"scores file {path}: column {column} holds infinite values")
        not_numbers = np.isnan(values) & scores[column].notna().to_numpy()
        if not_numbers.any():
            raise ClipmemError(
                f"scores file {path}: column {column} holds values that are not numbers, e.g. "
                f"{scores[column][not_numbers].iloc[0]!r}"
            )
        scores[column] = values  # numbers, where text such as "0.5" was kept as text
    scores = scores.assign(sample_id=scores["sample_id"].astype(str))
    if scores["sample_id"].duplicated().any():
        raise ClipmemError(
            f"scores file {path} repeats sample_ids, e.g. "
            f"{scores['sample_id'][scores['sample_id'].duplicated()].iloc[0]!r}"
        )
    return scores


def _read_embeddings(path: str | None, rows: int, label: str) -> np.ndarray | None:
    if path is None:
        return None
    try:
        vectors = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        # numpy calls any file that is not an array "pickled data" and suggests loading it unsafely
        why = "it is not a numpy array file (np.save writes one)" if "pickle" in str(exc) else str(exc)
        raise ClipmemError(f"{label} {path} is not a readable .npy file: {why}") from None
    if not isinstance(vectors, np.ndarray):  # an .npz archive: several arrays, not one
        raise ClipmemError(f"{label} {path} holds several arrays (.npz); save the one (N, D) array with np.save")
    if vectors.ndim != 2 or vectors.shape[0] != rows or vectors.shape[1] < 1:
        raise ClipmemError(f"{label} {path} has shape {vectors.shape}; expected ({rows}, D), one row per score")
    vectors = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise ClipmemError(f"{label} {path} holds NaN or infinite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ClipmemError(f"{label} {path} has all-zero rows, which have no direction")
    return vectors / norms


def _rows_read(scores: pd.DataFrame, dataset: Dataset) -> np.ndarray:
    """Which rows of the scores to import: all but those of samples that reading the data skipped (a damaged
    image, an empty caption), which the run lists in skipped.csv. Scores made elsewhere for every row of the
    file named them, and the import was refused as "not in the dataset" for ids that were."""
    skipped = scores["sample_id"].isin(dataset.skipped_ids) & ~scores["sample_id"].isin(dataset.samples["sample_id"])
    count = int(skipped.sum())
    if count:
        what = "1 row of the scores is a sample" if count == 1 else f"{count:,} rows of the scores are samples"
        log.warning(
            "%s that reading the data skipped (skipped.csv says why): left out, with %s embedding rows",
            what,
            "its" if count == 1 else "their",
        )
    return ~skipped.to_numpy()


def _merge(dataset_samples: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    known = set(dataset_samples["sample_id"])
    unknown = [s for s in scores["sample_id"] if s not in known]
    if unknown:
        raise ClipmemError(f"{len(unknown)} sample_ids in the scores are not in the dataset, e.g. {unknown[0]!r}")
    own = [c for c in scores.columns if c == "sample_id" or c not in dataset_samples.columns]
    frame = scores[own].merge(dataset_samples, on="sample_id", how="left", validate="one_to_one")
    if "split" not in frame.columns:
        _note_every_sample_a_candidate(frame)
        frame["split"] = CANDIDATE
    frame["split"] = frame["split"].astype(str)
    bad = sorted(s for s in set(frame["split"]) if s not in SPLITS and not s.startswith(FOLD_PREFIX))
    if bad:
        raise ClipmemError(f"unknown split values {bad}; use {', '.join(SPLITS)} or fold0, fold1 …")
    return frame


def _note_every_sample_a_candidate(frame: pd.DataFrame) -> None:
    """Say that per-model columns without a ``split`` are read as if f alone trained on every sample: CLIPMem
    and the held-out and training-side scores are derived on that assumption, and nothing said so."""
    per_model = [c for c in ("align_f", "align_g", "clip_score_f", "clip_score_g") if c in frame.columns]
    if per_model:
        log.warning(
            "the scores have %s but no split column: every sample is taken as a candidate (S_C, trained on by f, "
            "not by g), so CLIPMem is A(f) − A(g) for all of them; add a split column (shared, candidate, "
            "independent, extra) for samples that both or neither model trained on, or that g alone did",
            " and ".join(per_model),
        )


def _report_blank_scores(frame: pd.DataFrame, given: set[str]) -> None:
    """Say how many samples each given score leaves blank: such a sample ranks last in that score's sort and
    queue, and a file with blank cells was taken without a word."""
    for name in sorted(given & set(run_scores(frame))):
        blank = int(frame[name].isna().sum())
        if blank:
            log.warning(
                "%s of %s have no %s (blank in the scores file): they rank last by it",
                fmt_count(blank, "sample"),
                fmt_count(len(frame), "sample"),
                name,
            )


def _with_unscored(dataset: Dataset, scored: set[str]) -> pd.DataFrame:
    """The skip report with the dataset's samples that the scores file has no row for: a run holds the scored
    ones only, and these went missing without a word (71 samples in, a run of 66 out)."""
    unscored = dataset.samples[~dataset.samples["sample_id"].isin(scored)]
    if unscored.empty:
        return dataset.skipped
    log.warning(
        "%s of the dataset have no row in the scores file and are left out of the run (listed in %s)",
        fmt_count(len(unscored), "sample"),
        cache.SKIPPED,
    )
    rows = pd.DataFrame(
        {
            "row": pd.NA,
            "line": pd.NA,
            "filepath": unscored["filepath"].to_numpy(),
            "caption": unscored["caption"].to_numpy(),
            "reason": [f"no row in the scores file for sample_id {sid!r}" for sid in unscored["sample_id"]],
        }
    )
    return pd.concat([dataset.skipped, rows], ignore_index=True)


def _ranking_note(frame: pd.DataFrame, given: set[str], with_images: bool) -> str:
    """What the import's "Likely mis-captioned" ranking is: the file's own, made here from which columns, or
    none. An import used to say nothing, and a user could not tell a ranking from a missing one."""
    label = Combined.label
    if Combined.name in given:
        return f"{label}: the scores file's own `{Combined.name}` column, kept as it is"
    if Combined.name not in frame.columns:
        return (
            f"{label}: not made, the scores have no column to rank by (registered scores: "
            f"{', '.join(registry())}); the gallery can only sort by what the file has"
        )
    relative = ", relative to the nearest images" if with_images else " (no embeddings: not relative to neighbours)"
    return f"{label}: made from {', '.join(ranking_inputs(frame))}{relative}"


def _check_out(out_dir: Path) -> None:
    """An import goes into a new or empty folder, or one an earlier import left unfinished (redone whole)."""
    if problem := cache.run_name_problem(out_dir):
        raise ClipmemError(f"--out {out_dir}: {problem}; choose another folder name")
    if out_dir.exists() and not out_dir.is_dir():
        raise ClipmemError(f"--out {out_dir} is a file, not a folder")
    blocking = next((parent for parent in out_dir.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise ClipmemError(f"--out {out_dir} cannot be made: {blocking} is a file, not a folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not (out_dir / cache.MANIFEST).exists() and cache.unfinished_import(out_dir):
        return
    raise ClipmemError(f"{out_dir} already exists and is not an empty folder; choose another --out")


def import_run(
    data: str,
    scores_path: str,
    out: str,
    *,
    image_embeddings: str | None = None,
    text_embeddings: str | None = None,
    img_key: str = "filepath",
    caption_key: str = "caption",
    on_error: str = "skip",
    allow_outside_root: bool = False,
    extract_shards: bool = False,
) -> cache.Run:
    """Join externally computed scores to a dataset and write a complete run.

    Returns:
        The written `Run`; registered scores that can be derived from the given columns are added.
    """
    out_dir = Path(out)
    _check_out(out_dir)
    if (image_embeddings is None) != (text_embeddings is None):
        raise ClipmemError("give both --image-embeddings and --text-embeddings, or neither")
    timer = Stopwatch()
    with timer.stage("ingest"):
        dataset = read_dataset(
            data,
            img_key=img_key,
            caption_key=caption_key,
            on_error=on_error,
            allow_outside_root=allow_outside_root,
            extract_shards=extract_shards,
        )
        scores = _read_scores(Path(scores_path))
        image_vectors = _read_embeddings(image_embeddings, len(scores), "--image-embeddings")
        text_vectors = _read_embeddings(text_embeddings, len(scores), "--text-embeddings")
        kept = _rows_read(scores, dataset)
        scores = scores[kept].reset_index(drop=True)
        image_vectors = None if image_vectors is None else image_vectors[kept]
        text_vectors = None if text_vectors is None else text_vectors[kept]
        if image_vectors is not None and image_vectors.shape[1] != text_vectors.shape[1]:
            raise ClipmemError(
                f"--image-embeddings have {image_vectors.shape[1]} dimensions and --text-embeddings "
                f"{text_vectors.shape[1]}: image and text vectors are compared with each other, so give both "
                "from one model's shared embedding space"
            )
        frame = derive_missing(_merge(dataset.samples, scores), reference_images=image_vectors)
        log.info("%s", _ranking_note(frame, given=set(scores.columns), with_images=image_vectors is not None))
        _report_blank_scores(frame, set(scores.columns))
        dataset.skipped = _with_unscored(dataset, set(scores["sample_id"]))
        images = ImageList(dataset.root, frame["filepath"], preload=False)  # each read once, for its thumbnail
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / cache.STATE_FILE, {"imported_from": str(scores_path)})
    write_skip_report(dataset, out_dir / cache.SKIPPED)
    config = {"data": data, "scores": scores_path, "image_embeddings": image_embeddings}
    config["text_embeddings"] = text_embeddings
    manifest = cache.Manifest(
        name=out_dir.name,
        protocol=PROTOCOL,
        config=config,
        dataset=cache.DatasetInfo(
            path=str(dataset.source),
            root=str(dataset.root),
            format=dataset.format,
            content_hash=dataset.content_hash,
            n_samples=len(frame),  # the samples with scores: `clipmem list` said 120 of a 50-row import
            n_skipped=len(dataset.skipped),
            warnings=list(dataset.warnings),
        ),
        timings=timer.seconds,
    )
    return cache.write_run(
        out_dir,
        frame,
        manifest,
        image_embeddings=image_vectors,
        text_embeddings=text_vectors,
        images=images,
        stage=timer.stage,
        imported_ranking=Combined.name in scores.columns,
    )
