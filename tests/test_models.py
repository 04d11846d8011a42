from __future__ import annotations

import json

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
