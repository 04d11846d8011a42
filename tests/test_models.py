from __future__ import annotations

import json
import pickle
import zipfile

import pytest
import torch

from clipmem_core.config import PRESETS
from clipmem_core.errors import ClipmemError
from clipmem_core.models import BUNDLED_MODELS, CONFIG_DIR, create_clip, cut_captions_note, image_size_of


def test_bundled_configs_build_without_downloads():
    assert {"clipmem-tiny", "clipmem-cpu", "clipmem-cpu-patch8"} <= set(BUNDLED_MODELS)
    bundle = create_clip("clipmem-tiny")
    assert bundle.image_size == 32
    assert bundle.tokenizer(["a red circle"]).shape == (1, 32)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ClipmemError, match="unknown model 'ViT-Nope'"):
        create_clip("ViT-Nope")


def test_a_json_config_file_is_a_model_of_its_own(tmp_path):
    config = json.loads((CONFIG_DIR / "clipmem-tiny.json").read_text())
    config["vision_cfg"] |= {"image_size": 24, "patch_size": 4}
    path = tmp_path / "my-sweep-model.json"
    path.write_text(json.dumps(config))
    bundle = create_clip(str(path))
    assert bundle.image_size == image_size_of(str(path)) == 24
    assert bundle.model.visual.conv1.kernel_size == (4, 4)
    assert bundle.model(torch.zeros(2, 3, 24, 24), bundle.tokenizer(["a", "b"]))[0].shape == (2, 64)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read model config"),
        ("{not json", "cannot read model config"),
        ('{"embed_dim": 8}', "needs embed_dim"),
    ],
)
def test_a_bad_json_config_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "broken.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ClipmemError, match=message):
        create_clip(str(path))


def test_init_checkpoint_loads_a_local_file(tmp_path):
    torch.manual_seed(1)
    source = create_clip("clipmem-tiny").model
    torch.save({"model": source.state_dict()}, tmp_path / "trainer.pt")
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    for name in ("trainer.pt", "plain.pt"):
        torch.manual_seed(2)
        loaded = create_clip("clipmem-tiny", init_checkpoint=tmp_path / name).model
        for a, b in zip(source.state_dict().values(), loaded.state_dict().values()):
            torch.testing.assert_close(a, b)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(ClipmemError, match="does not exist"):
        create_clip("clipmem-tiny", init_checkpoint=tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ClipmemError, match="unreadable: it is not a PyTorch checkpoint"):  # "Unsupported operand"
        create_clip("clipmem-tiny", init_checkpoint=tmp_path / "junk.pt")
    torch.save(create_clip("clipmem-cpu").model.state_dict(), tmp_path / "other.pt")
    with pytest.raises(ClipmemError, match="does not fit this model") as refused:
        create_clip("clipmem-tiny", init_checkpoint=tmp_path / "other.pt")
    said = str(refused.value)  # torch's first line ended at "Error(s) in loading state_dict for CLIP:"
    assert "of another shape (first " in said and " in the file, " in said and "give the --model" in said


def test_files_that_are_no_checkpoint_are_named_for_what_they_are(tmp_path, recwarn):
    """A tester's findings: torch's parser state ("Unsupported operand 149", "[enforce fail at
    inline_container.cc:180]") was the message, a folder "did not exist", and a file of other names was
    "made for another model"."""
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps([1, 2]))  # protocol 4+: torch also warned of it
    (tmp_path / "plain2.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=2))  # "Invalid magic number"
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    torch.save(create_clip("clipmem-tiny").model.state_dict(), tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:5000])
    (tmp_path / "run").mkdir()
    torch.save({"a": 1}, tmp_path / "a.pt")
    torch.save({"model": {"encoder.weight": torch.zeros(1)}, "epoch": 3}, tmp_path / "foreign.pt")
    torch.save({name: torch.zeros(1) for name in "abcd"}, tmp_path / "four.pt")
    expected = {
        "plain.pkl": r"is unreadable: it is a pickle that is not a PyTorch checkpoint torch\.load can read",
        "plain2.pkl": r"is unreadable: it is a pickle that is not a PyTorch checkpoint torch\.load can read",
        "other.zip": r"is unreadable: it is a zip archive that is not a PyTorch checkpoint",
        "cut.pt": r"is unreadable: it is a damaged or cut-off zip archive",
        "run": r"run is a folder; give the checkpoint file$",
        "a.pt": r"holds no weights of this model: its only name, 'a', is not one of the model's \d+ tensors, so it "
        "is not a CLIP checkpoint of clipmem or open_clip$",
        "foreign.pt": r"holds no weights of this model: its only name, 'encoder\.weight', is not one",
        "four.pt": r"none of its 4 names \('a', 'b', 'c' and 1 more\) is one of the model's",
    }
    for name, message in expected.items():
        with pytest.raises(ClipmemError, match=message) as refused:
            create_clip("clipmem-tiny", init_checkpoint=tmp_path / name)
        said = str(refused.value)
        assert "\n" not in said and "Unsupported operand" not in said and "enforce fail" not in said, said
        assert "made for another model" not in said, said
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]
    # and a whole checkpoint of this model still loads
    create_clip("clipmem-tiny", init_checkpoint=tmp_path / "good.pt")


def test_paper_preset_names_an_open_clip_architecture():
    assert image_size_of(PRESETS["paper"].model) == 224


def test_cpu_preset_model_is_the_patch16_model_with_an_8x8_token_grid():
    """The switch measured in docs/detection.md changed the patch size and nothing else."""
    assert PRESETS["cpu"].model == "clipmem-cpu-patch8"
    patch8, patch16 = (
        json.loads((CONFIG_DIR / f"{name}.json").read_text()) for name in ("clipmem-cpu-patch8", "clipmem-cpu")
    )
    assert patch8["vision_cfg"].pop("patch_size") == 8 and patch16["vision_cfg"].pop("patch_size") == 16
    assert patch8 == patch16
    bundle = create_clip("clipmem-cpu-patch8")
    assert bundle.image_size == 64
    assert bundle.model.visual.grid_size == (8, 8)


def test_captions_longer_than_the_text_encoder_reads_are_counted_exactly():
    """A 25,000-character caption went in without a word that only its first tokens are read."""
    bundle = create_clip("clipmem-tiny")  # a context of 32 tokens: start, 30 words, end
    fits, exactly, cut = "word " * 29, "word " * 30, "word " * 31
    assert cut_captions_note(bundle, [["a red circle"], [fits], [exactly, "short"]]) is None
    assert cut_captions_note(bundle, [[exactly], [cut], ["x" * 25_000]]) == (
        "2 of 3 captions are longer than clipmem-tiny's text encoder reads (32 tokens): only their start is "
        "trained on and scored"
    )
