"""Mitigations as run options: text noise in training only, drop lists (--exclude), fewer captions, labels."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import clipmem_core.pipeline as pipeline_module
import clipmem_core.train as train_module
from clipmem_core.cache import load_run
from clipmem_core.cli import main
from clipmem_core.config import PRESETS, RunConfig
from clipmem_core.data import inject_miscaptions, load_image, read_dataset
from clipmem_core.droplist import apply_drop_list, read_drop_list, write_drop_list
from clipmem_core.errors import ClipmemError
from clipmem_core.models import create_clip
from clipmem_core.pipeline import compute_clipmem
from clipmem_core.review.export import write_table
from clipmem_core.scores import registry
from clipmem_core.synthetic import SHAPES, make_shapes_dataset
from clipmem_core.train import TrainConfig, add_text_noise, train_clip

ONE_EPOCH = dict(preset="tiny", epochs=1, batch_size=8, augmentations=2, warmup_steps=1, thumbnail_size=16)


@pytest.fixture(scope="module")
def numbered(tmp_path_factory) -> tuple:
    """32 shapes whose captions name their sample ("… number 7"), so a caption tells which sample it is."""
    folder = tmp_path_factory.mktemp("numbered")
    csv = make_shapes_dataset(folder, 32, seed=3)
    frame = pd.read_csv(csv)
    frame.insert(0, "id", [f"s{i:02d}" for i in range(len(frame))])
    frame["caption"] = [f"{c} number {i}" for i, c in enumerate(frame["caption"])]
    frame.to_csv(csv, index=False)
    return csv, frame


# -- text noise ------------------------------------------------------------------------------------


def test_add_text_noise_perturbs_each_coordinate_by_sigma_and_zero_is_the_identity():
    torch.manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(4096, 64), dim=1)
    assert add_text_noise(features, 0.0) is features
    noise = add_text_noise(features, 0.2) - features
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.005)
    assert float(noise.std()) == pytest.approx(0.2, rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_the_loss_sees_the_text_embeddings_plus_noise_of_std_sigma(numbered, tmp_path, monkeypatch, sigma):
    csv, _ = numbered
    dataset = read_dataset(csv, progress=False)
    images = [load_image(dataset.root, p) for p in dataset.samples["filepath"]]
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    encoded, seen = [], []
    encode_text = bundle.model.encode_text

    def recording_encode_text(*args, **kwargs):
        features = encode_text(*args, **kwargs)
        encoded.append(features.detach().clone())
        return features

    class RecordingLoss(train_module.ClipLoss):
        def forward(self, image_features, text_features, logit_scale, *rest, **kwargs):
            seen.append(text_features.detach().clone())
            return super().forward(image_features, text_features, logit_scale, *rest, **kwargs)

    monkeypatch.setattr(bundle.model, "encode_text", recording_encode_text)
    monkeypatch.setattr(train_module, "ClipLoss", RecordingLoss)
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-3, warmup_steps=1, seed=0, text_noise=sigma)
    captions = [list(c) for c in dataset.samples["captions"]]
    train_clip(bundle, images, captions, config, tmp_path / "m.pt", device=torch.device("cpu"))
    assert len(seen) == len(encoded) == 2
    differences = torch.cat([s - e for s, e in zip(seen, encoded)])
    if sigma == 0:
        assert torch.equal(differences, torch.zeros_like(differences))
    else:
        assert float(differences.std()) == pytest.approx(sigma, rel=0.1)


def _train_with_fixed_weights(monkeypatch, setting: str) -> list:
    """Stub out training (the weights stay as initialised); returns the list that each model's training
    config value of ``setting`` is appended to, to show what reached training."""
    given = []

    def fixed_weights(bundle, images, captions, config, checkpoint, **kwargs):
        given.append(getattr(config, setting))
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": bundle.model.state_dict()}, checkpoint)
        return train_module.TrainResult(epoch_losses=[0.0], pair_losses=train_module.PairLosses.empty(len(images)))

    monkeypatch.setattr(pipeline_module, "train_clip", fixed_weights)
    return given


@pytest.mark.slow
def test_scores_are_unchanged_by_sigma_for_fixed_weights(numbered, tmp_path, monkeypatch):
    """σ reaches training and nothing else: with training stubbed out (weights fixed), every score is equal."""
    csv, _ = numbered
    given = _train_with_fixed_weights(monkeypatch, "text_noise")
    runs = [
        compute_clipmem(RunConfig(data=str(csv), out=str(tmp_path / f"s{sigma}"), text_noise=sigma, **ONE_EPOCH))
        for sigma in (0.0, 0.3)
    ]
    assert given == [0.0, 0.0, 0.3, 0.3]
    assert [r.manifest.config["text_noise"] for r in runs] == [0.0, 0.3]
    columns = [c for c in runs[0].scores.columns if c in registry() or c.startswith("align")]
    assert "clipmem" in columns and "combined" in columns
    pd.testing.assert_frame_equal(runs[0].scores[columns], runs[1].scores[columns])
    np.testing.assert_array_equal(runs[0].image_embeddings, runs[1].image_embeddings)
    np.testing.assert_array_equal(runs[0].text_embeddings, runs[1].text_embeddings)


def test_text_noise_caption_dropout_and_max_captions_are_checked():
    bad_values = (
        {"text_noise": -0.1},
        {"text_noise": float("nan")},
        {"text_noise": 1e9},  # trained, to a loss of 1.7e10
        {"max_captions": 0},
        {"caption_dropout": 1.0},
        {"caption_dropout": -0.1},
        {"caption_dropout": float("nan")},
        {"caption_dropout": True},
    )
    for bad in bad_values:
        with pytest.raises(ClipmemError, match=r"--text-noise|--max-captions|--caption-dropout"):
            RunConfig(data="x.csv", out="cache/x", **bad).resolved()
    RunConfig(data="x.csv", out="cache/x", text_noise=1.0).resolved()  # the most: each cosine moves by N(0, 1)


def test_a_refused_number_is_quoted_as_the_user_typed_it():
    """The CLI parses ``--caption-dropout 2`` as 2.0; the error must not say "not 2.0"."""
    with pytest.raises(ClipmemError, match=r"not 2$"):
        RunConfig(data="x.csv", out="cache/x", caption_dropout=2.0).resolved()
    with pytest.raises(ClipmemError, match=r"not -0\.25$"):
        RunConfig(data="x.csv", out="cache/x", text_noise=-0.25).resolved()
    with pytest.raises(ClipmemError, match=r"not nan$"):
        RunConfig(data="x.csv", out="cache/x", lr=float("nan")).resolved()


# -- drop lists ------------------------------------------------------------------------------------


def test_drop_lists_read_from_every_export_format(tmp_path):
    ids = ["s01", "=s02", "s03"]
    frame = pd.DataFrame({"sample_id": ids})
    csv = write_table(frame, tmp_path / "drop.csv", "csv")  # drop lists are written verbatim, never escaped
    assert csv.read_text().splitlines() == ["sample_id", *ids]
    assert read_drop_list(csv) == set(ids)
    assert read_drop_list(write_table(frame, tmp_path / "drop.parquet", "parquet")) == set(ids)
    assert read_drop_list(write_table(frame, tmp_path / "drop.pq", "parquet")) == set(ids)  # was refused
    assert read_drop_list(write_table(frame, tmp_path / "drop.tsv", "csv")) == set(ids)
    (tmp_path / "drop.txt").write_text("s01\n\n=s02\ns03\n")
    assert read_drop_list(tmp_path / "drop.txt") == set(ids)
    assert read_drop_list(write_drop_list(tmp_path / "again.csv", ids)) == set(ids)
    (tmp_path / "excel.txt").write_bytes("s01\r\n=s02\r\ns03\r\n".encode("utf-16"))  # Excel's "Unicode Text"
    assert read_drop_list(tmp_path / "excel.txt") == set(ids)
    (tmp_path / "old.txt").write_text("sample_id\ns01\n=s02\ns03\n")  # an earlier export's .txt: a header
    assert read_drop_list(tmp_path / "old.txt") == set(ids)  # it was read as an id "the data does not hold"
    odd = ["a,b", 'say "hi"', "s03"]  # written as CSV, quoted: they came back as ids the data lacks
    txt = write_table(pd.DataFrame({"sample_id": odd}), tmp_path / "export.txt", "csv")
    assert txt.read_text().splitlines() == odd and read_drop_list(txt) == set(odd)
    (tmp_path / "empty.csv").write_text("")
    assert read_drop_list(tmp_path / "empty.csv") == set()
    with pytest.raises(ClipmemError, match="no 'sample_id' \\(or 'id'\\) column \\(columns: name\\)"):
        read_drop_list(write_table(pd.DataFrame({"name": ids}), tmp_path / "ids.parquet", "parquet"))
    for name, column in (("noisy.csv", "id"), ("upper.parquet", "ID")):  # as a dataset, or inject-miscaptions' copy
        frame = pd.DataFrame({"filepath": ["a.png", "b.png", "c.png"], column: ids})
        assert read_drop_list(write_table(frame, tmp_path / name, name.rsplit(".", 1)[1])) == set(ids)


@pytest.mark.parametrize(
    "content, name, message",
    [
        (None, "missing.csv", "does not exist"),
        ("name\ns1\n", "drop.csv", r"has no 'sample_id' \(or 'id'\) column \(columns: name\)"),
        ("s1", "drop.json", "expected a .csv"),
        ("sample_id;note\ns1;x\n", "drop.csv", "separates its columns with ';', not commas"),
        ("sample_id\tnote\ns1\tx\n", "drop.csv", "separates its columns with '\\\\t', not commas .*: name it .tsv"),
        (b"sample_id\ncaf\xe9\n", "drop.csv", "not UTF-8 text \\(line 2, byte 13\\); save it as UTF-8"),
        (b"caf\xe9\n", "drop.txt", "not UTF-8 text \\(line 1"),
        ('sample_id,note\ns1,"unclosed\ns2,x\n', "drop.csv", "line 2: .*A quoted field must close"),
        ("sample_id\ns1,b\n", "drop.csv", "line 2: row has 2 fields but the header has 1"),
    ],
)
def test_bad_drop_lists_are_refused_with_a_reason(tmp_path, content, name, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ClipmemError, match=message):
        read_drop_list(path)


def test_a_drop_list_that_matches_nothing_is_refused_and_an_empty_one_is_said(numbered, caplog):
    """A list of another dataset's ids trained the whole run as if no list were given, with one log line."""
    _, frame = numbered
    samples = pd.DataFrame({"sample_id": frame["id"]})
    with pytest.raises(
        ClipmemError, match=r"none of its 2 ids is in the data \(e.g. 'gone'; the data's ids look like 's00'\)"
    ):
        apply_drop_list(samples, frozenset({"nope", "gone"}), "--exclude other.csv")
    with pytest.raises(ClipmemError, match=r"other.csv: its one id is not in the data \(e.g. 'gone'"):
        apply_drop_list(samples, frozenset({"gone"}), "--exclude other.csv")
    kept, exclusion = apply_drop_list(samples, frozenset(), "--exclude empty.txt")
    assert len(kept) == 32 and exclusion.removed == 0
    assert "--exclude empty.txt is empty: nothing is excluded" in caplog.text


def test_unknown_ids_are_counted_and_excluding_everything_is_refused(numbered, caplog):
    _, frame = numbered
    samples = pd.DataFrame({"sample_id": frame["id"]})
    kept, exclusion = apply_drop_list(samples, frozenset({"s00", "s05", "nope", "gone"}))
    assert list(kept["sample_id"]) == [f"s{i:02d}" for i in range(32) if i not in (0, 5)]
    assert (exclusion.removed, exclusion.not_found) == (2, 2)
    assert "2 of 4 ids are not in the data" in caplog.text
    with pytest.raises(ClipmemError, match="excludes every one of the 32 samples"):
        apply_drop_list(samples, frozenset(samples["sample_id"]))


@pytest.mark.slow
def test_no_excluded_id_is_in_any_training_batch(numbered, tmp_path, monkeypatch):
    csv, frame = numbered
    excluded = {"s00", "s03", "s04", "s17", "s31"}
    drop = write_drop_list(tmp_path / "drop.csv", [*excluded, "not-in-the-data"])
    drawn: list[str] = []
    getitem = train_module.PairDataset.__getitem__

    def recording_getitem(self, i):
        drawn.extend(self.captions[i])
        return getitem(self, i)

    monkeypatch.setattr(train_module.PairDataset, "__getitem__", recording_getitem)
    whole_batches = ONE_EPOCH | {"batch_size": 32}  # one batch per model holding all its rows: none dropped
    monkeypatch.chdir(drop.parent)  # given as typed, relative: recorded absolute, as Compare shows it elsewhere
    run = compute_clipmem(RunConfig(data=str(csv), out=str(tmp_path / "run"), exclude=drop.name, **whole_batches))
    caption_of = dict(zip(frame["id"], frame["caption"]))
    drawn_ids = {sid for sid, caption in caption_of.items() if caption in set(drawn)}
    assert drawn_ids and not drawn_ids & excluded, sorted(drawn_ids & excluded)
    assert drawn_ids == set(caption_of) - excluded  # every other sample was trained on by some model
    assert not set(run.scores["sample_id"]) & excluded and len(run.scores) == 27
    assert (run.manifest.dataset.n_excluded, run.manifest.dataset.n_exclude_not_found) == (5, 1)
    assert run.manifest.config["exclude"] == str(drop)


def _stop_after_a_first_checkpoint(config: RunConfig, monkeypatch) -> None:
    """Start the run and stop it as a kill after its first checkpoint would: the folder holds an unfinished
    run; training is put back for the resume."""

    def stop(*args, **kwargs):
        checkpoints = Path(config.out) / "checkpoints"
        checkpoints.mkdir(exist_ok=True)
        (checkpoints / "h0_last.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_module, "train_clip", stop)
    with pytest.raises(KeyboardInterrupt):
        compute_clipmem(config)
    monkeypatch.undo()


def test_resuming_with_a_changed_drop_list_is_refused(numbered, tmp_path, monkeypatch):
    csv, _ = numbered
    drop = write_drop_list(tmp_path / "drop.csv", ["s01"])
    config = RunConfig(data=str(csv), out=str(tmp_path / "run"), exclude=str(drop), **ONE_EPOCH)
    _stop_after_a_first_checkpoint(config, monkeypatch)
    write_drop_list(drop, ["s01", "s02"])
    with pytest.raises(ClipmemError, match="other data, another --exclude list"):
        compute_clipmem(config, resume=True)


def test_resuming_with_another_checkpoint_under_the_same_path_is_refused(numbered, tmp_path, monkeypatch):
    """Compared by its path alone, a resumed run started its models not yet trained from the new weights."""
    csv, _ = numbered
    checkpoint = tmp_path / "start.pt"
    torch.save(create_clip("clipmem-tiny").model.state_dict(), checkpoint)
    config = RunConfig(data=str(csv), out=str(tmp_path / "run"), init_checkpoint=str(checkpoint), **ONE_EPOCH)
    _stop_after_a_first_checkpoint(config, monkeypatch)
    torch.save(create_clip("clipmem-tiny").model.state_dict(), checkpoint)  # other weights, the same name
    os.utime(checkpoint, ns=(1, 1))  # and never the same time
    with pytest.raises(ClipmemError, match="another --exclude list or --init-checkpoint file"):
        compute_clipmem(config, resume=True)


def test_run_with_a_missing_drop_list_is_one_clean_error(numbered, tmp_path, capsys):
    csv, _ = numbered
    code = main(["run", "--data", str(csv), "--out", str(tmp_path / "r"), "--exclude", str(tmp_path / "no.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("clipmem: error: drop list") and "does not exist" in err
    assert not (tmp_path / "r").exists()


def test_a_bad_drop_list_or_checkpoint_is_refused_before_the_data_is_read(numbered, tmp_path, monkeypatch, capsys):
    """Both were refused only after the whole dataset had been read, minutes into a large run."""
    csv, _ = numbered
    monkeypatch.setattr("clipmem_core.pipeline.read_dataset", lambda *a, **k: pytest.fail("read the data first"))
    (tmp_path / "drop.json").write_text("[]")
    (tmp_path / "model.pt").write_text("not a checkpoint")
    base = ["run", "--data", str(csv), "--out", str(tmp_path / "r")]
    assert main([*base, "--exclude", str(tmp_path / "drop.json")]) == 2
    assert "expected a .csv, .tsv, .parquet or .txt file" in capsys.readouterr().err
    assert main([*base, "--init-checkpoint", str(tmp_path / "model.pt")]) == 2
    assert "is unreadable: it is not a PyTorch checkpoint" in capsys.readouterr().err


# -- captions and labels ---------------------------------------------------------------------------


def test_max_captions_keeps_the_first_captions(tmp_path):
    coco = make_shapes_dataset(tmp_path, 12, seed=1, captions_per_image=3)
    dataset = read_dataset(coco, progress=False)
    assert [len(c) for c in dataset.samples["captions"]] == [3] * 12
    pipeline_module.select_samples(dataset, RunConfig(data=str(coco), out="x", max_captions=2).resolved(), None)
    assert [len(c) for c in dataset.samples["captions"]] == [2] * 12
    assert all(c[0] == first for c, first in zip(dataset.samples["captions"], dataset.samples["caption"]))


def test_shapes_carry_their_shape_as_label_through_ingest_and_injection(tmp_path):
    csv = make_shapes_dataset(tmp_path / "one", 30, seed=2)
    dataset = read_dataset(csv, progress=False)
    assert set(dataset.samples["label"]) <= set(SHAPES)
    assert all(label in caption for label, caption in zip(dataset.samples["label"], dataset.samples["caption"]))
    inject_miscaptions(csv, tmp_path / "noisy.csv", fraction=0.2, seed=0, progress=False)
    noisy = read_dataset(tmp_path / "noisy.csv", progress=False).samples
    assert noisy["label"].tolist() == dataset.samples["label"].tolist()
    assert noisy["is_miscaptioned"].sum() == 6
    coco = read_dataset(make_shapes_dataset(tmp_path / "many", 30, seed=2, captions_per_image=4), progress=False)
    assert coco.samples["label"].tolist() == dataset.samples["label"].tolist()
    assert coco.samples["caption"].tolist() == dataset.samples["caption"].tolist()
    assert {len(set(c)) for c in coco.samples["captions"]} == {4}


def test_a_label_column_changes_the_content_hash_and_reaches_the_samples(tmp_path):
    csv = make_shapes_dataset(tmp_path, 10, seed=0)
    with_label = read_dataset(csv, progress=False)
    pd.read_csv(csv).drop(columns="label").to_csv(tmp_path / "bare.csv", index=False)
    bare = read_dataset(tmp_path / "bare.csv", progress=False)
    assert "label" not in bare.samples and "label" in with_label.samples
    assert bare.content_hash != with_label.content_hash


def test_coco_images_may_carry_a_label(tmp_path):
    coco = make_shapes_dataset(tmp_path, 6, seed=0, captions_per_image=2)
    data = json.loads(coco.read_text())
    for image in data["images"][:3]:
        del image["label"]
    coco.write_text(json.dumps(data))
    labels = read_dataset(coco, progress=False).samples["label"].tolist()
    assert pd.isna(labels[:3]).all() and all(isinstance(label, str) for label in labels[3:])


@pytest.mark.parametrize("kwargs", [{"captions_per_image": 6}, {"captions_per_image": 2, "miscaption_fraction": 0.1}])
def test_shapes_refuse_impossible_caption_settings(tmp_path, kwargs):
    with pytest.raises(ClipmemError):
        make_shapes_dataset(tmp_path, 10, **kwargs)


@pytest.mark.slow
def test_a_run_keeps_the_label_column(tiny_run):
    assert "label" in tiny_run.scores.columns
    assert set(tiny_run.scores["label"]) <= set(SHAPES)
    assert load_run(tiny_run.path).scores["label"].notna().all()


def test_caption_dropout_comes_from_the_preset_unless_given_and_is_recorded(numbered, tmp_path, monkeypatch):
    assert RunConfig(data="x.csv", out="o", preset="tiny").resolved().caption_dropout == 0.0
    assert RunConfig(data="x.csv", out="o", preset="cpu").resolved().caption_dropout == 0.3
    assert RunConfig(data="x.csv", out="o", preset="cpu", caption_dropout=0).resolved().caption_dropout == 0
    assert RunConfig(data="x.csv", out="o", preset="paper").resolved().caption_dropout == 0.0  # the paper's recipe
    assert RunConfig(data="x.csv", out="o", preset="tiny", caption_dropout=0.4).resolved().caption_dropout == 0.4
    csv, _ = numbered
    given = _train_with_fixed_weights(monkeypatch, "caption_dropout")
    run = compute_clipmem(RunConfig(data=str(csv), out=str(tmp_path / "run"), caption_dropout=0.4, **ONE_EPOCH))
    assert given == [0.4, 0.4]  # both fold models
    assert run.manifest.config["caption_dropout"] == 0.4


def test_duplicate_caption_masking_comes_from_the_preset_unless_given_and_reaches_training(
    numbered, tmp_path, monkeypatch
):
    for preset in PRESETS:
        resolved = RunConfig(data="x.csv", out="o", preset=preset).resolved()
        assert resolved.mask_duplicate_captions is PRESETS[preset].mask_duplicate_captions
        flipped = not PRESETS[preset].mask_duplicate_captions
        given = RunConfig(data="x.csv", out="o", preset=preset, mask_duplicate_captions=flipped).resolved()
        assert given.mask_duplicate_captions is flipped
    with pytest.raises(ClipmemError, match="--mask-duplicate-captions must be true or false"):
        RunConfig(data="x.csv", out="o", mask_duplicate_captions="yes").resolved()
    csv, _ = numbered
    given = _train_with_fixed_weights(monkeypatch, "mask_duplicate_captions")
    run = compute_clipmem(
        RunConfig(data=str(csv), out=str(tmp_path / "run"), mask_duplicate_captions=True, **ONE_EPOCH)
    )
    assert given == [True, True]  # both fold models
    assert run.manifest.config["mask_duplicate_captions"] is True
