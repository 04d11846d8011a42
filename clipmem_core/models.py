"""Model factory: open_clip architectures by name, with clipmem's small CPU configs registered.

Models are always built with ``pretrained=None``: nothing is downloaded. Fine-tuning starts from a
local checkpoint file instead (``init_checkpoint``).
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import open_clip
import torch

from .config import BUNDLED_MODELS, CONFIG_DIR
from .errors import ClipmemError
from .formatting import fmt_count
from .transforms import eval_transform, train_transform

open_clip.add_model_config(CONFIG_DIR)


@dataclass
class ClipBundle:
    """A model with the tokenizer and transforms that belong to it."""

    name: str
    model: torch.nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    train_transform: Callable[[Any], torch.Tensor]
    eval_transform: Callable[[Any], torch.Tensor]
    image_size: int


def registered_name(model: str) -> str:
    """The open_clip name for ``model``: a name as given, or a JSON config file registered under its stem.

    Why: a user tries an architecture of their own (a sweep, a smaller ViT) without editing the package,
    the way open_clip's factory reads its own JSON configs.
    """
    if not str(model).endswith(".json"):
        return model
    path = Path(model).resolve()
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClipmemError(f"cannot read model config {model}: {_first_line(exc)}") from exc
    if not isinstance(config, dict) or not all(key in config for key in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ClipmemError(f"{model} is not an open_clip model config: it needs embed_dim, vision_cfg and text_cfg")
    if open_clip.get_model_config(path.stem) != config:
        open_clip.add_model_config(path)
    return path.stem


def image_size_of(model_name: str) -> int:
    config = _config(model_name)
    size = config["vision_cfg"].get("image_size", 224)
    return int(size if isinstance(size, int) else size[0])


def _config(model_name: str) -> dict:
    config = open_clip.get_model_config(registered_name(model_name))
    if config is None:
        raise ClipmemError(
            f"unknown model {model_name!r}: use a bundled config ({', '.join(BUNDLED_MODELS)}) "
            "or an open_clip architecture name such as ViT-B-32"
        )
    return config


CAPTIONS_CHECKED = 20_000  # captions tokenized to tell how many the text encoder cuts: a bounded cost


def cut_captions_note(bundle: ClipBundle, captions: Sequence[Sequence[str]]) -> str | None:
    """How many captions are longer than the model's text encoder reads, or None when none are: only their
    start is trained on and scored, and a 25,000-character caption went in without a word. At most
    ``CAPTIONS_CHECKED`` captions are tokenized (the first ones; a caption shorter than the context in
    characters cannot be cut, so it is not tokenized at all)."""
    context = int(getattr(bundle.tokenizer, "context_length", 0) or 0)
    if not context:
        return None
    flat = [caption for sample in captions for caption in sample]
    checked = flat[:CAPTIONS_CHECKED]
    long = [caption for caption in checked if len(caption) > context - 2]
    if not long:
        return None
    tokens = bundle.tokenizer(long, context_length=context + 1)  # one more place: filled only by a cut caption
    cut = int((tokens[:, -1] != 0).sum())
    if not cut:
        return None
    of = f"{len(checked):,} captions" + (" checked" if len(checked) < len(flat) else "")
    return (
        f"{cut:,} of {of} are longer than {bundle.name}'s text encoder reads ({context} tokens): only their "
        "start is trained on and scored"
    )


def create_clip(
    model_name: str, *, init_checkpoint: str | Path | None = None, device: str | torch.device = "cpu"
) -> ClipBundle:
    """Build a randomly initialised model (seed the RNG first), or load a local checkpoint into it."""
    name = registered_name(model_name)
    _config(name)
    logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights load: that is the intent
    try:
        model = open_clip.create_model(name, pretrained=None, device=device)
    finally:
        logging.disable(logging.NOTSET)
    if init_checkpoint is not None:
        load_weights(model, init_checkpoint)
    size = image_size_of(model_name)
    preprocess = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
    mean, std = preprocess.get("mean"), preprocess.get("std")
    return ClipBundle(
        name=model_name,
        model=model,
        tokenizer=open_clip.get_tokenizer(name),
        train_transform=train_transform(size, mean=mean, std=std),
        eval_transform=eval_transform(size, mean=mean, std=std),
        image_size=size,
    )


def read_checkpoint(path: str | Path) -> Any:
    """A checkpoint's contents, read with ``weights_only=True``: tensors and plain values, never code.

    A pickle that names any other object (a tampered file whose ``__reduce__`` would run a command)
    is refused before anything in it is called. Every problem is a one-line ClipmemError.
    """
    path = Path(path)
    if path.is_dir():  # was "does not exist", which sent the user looking for a missing path
        raise ClipmemError(f"checkpoint {path} is a folder; give the checkpoint file")
    if not path.is_file():
        raise ClipmemError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4 …": torch's guess, said before it failed
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        foreign = _not_torch(path)
        if foreign:
            raise ClipmemError(f"checkpoint {path} is unreadable: {foreign}") from None
        if "global" in str(exc).lower():  # torch's restricted unpickler met a class or function: refused
            raise ClipmemError(
                f"checkpoint {path} holds more than tensors and plain values (pickled objects or code); "
                "clipmem does not load such files"
            ) from None
        detail = str(exc).partition("WeightsUnpickler error:")[2].strip() or "not a PyTorch checkpoint"
        raise ClipmemError(f"checkpoint {path} is unreadable: {_first_line(detail)}") from None
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        raise ClipmemError(f"checkpoint {path} is unreadable: {_not_torch(path) or _first_line(exc)}") from None


def _not_torch(path: Path) -> str | None:
    """Said of a file that is no checkpoint at all, where torch's own words named its parser's state:
    "Unsupported operand 105" (a CSV), "Unsupported operand 149" (a plain pickle),
    "[enforce fail at inline_container.cc:180]" (a zip of other files). torch.save writes a zip archive
    holding ``<name>/data.pkl``, and older torch (or ``_use_new_zipfile_serialization=False``) a pickle
    stream that starts with torch's magic number. None where the file is of a checkpoint's kind: torch's
    detail then says more."""
    with path.open("rb") as fh:
        start = fh.read(4)
        if start.startswith(b"PK"):
            fh.seek(0)
            return _not_torch_zip(fh)
        if start[:1] == b"\x80":
            fh.seek(0)
            return _not_torch_pickle(fh)
    return "it is not a PyTorch checkpoint (torch.save writes a zip archive or a pickle; this file is neither)"


def _not_torch_zip(fh: BinaryIO) -> str | None:
    try:
        names = zipfile.ZipFile(fh).namelist()
    except (zipfile.BadZipFile, OSError, ValueError):  # torch said "[Errno 22] Invalid argument" of a cut-off one
        return "it is a damaged or cut-off zip archive (a copy or download that did not finish?)"
    if any(name.count("/") == 1 and name.endswith("/data.pkl") for name in names):
        return None
    return "it is a zip archive that is not a PyTorch checkpoint (torch.save writes one holding <name>/data.pkl)"


def _not_torch_pickle(fh: BinaryIO) -> str | None:
    """A pickle whose first value is not torch's magic number (``pickle.dump`` of anything) is not a
    checkpoint; its opcodes are only parsed here (pickletools), never run."""
    try:  # the magic number opens the stream (PROTO, FRAME at protocol 4): 64 bytes hold it
        for count, (opcode, arg, _) in enumerate(pickletools.genops(io.BytesIO(fh.read(64)))):
            if opcode.name in ("LONG1", "LONG4"):
                return None if arg == torch.serialization.MAGIC_NUMBER else _PLAIN_PICKLE
            if opcode.name not in ("PROTO", "FRAME") or count >= 2:
                break
    except Exception:  # a cut-off or garbled stream: not what torch.save writes either
        pass
    return _PLAIN_PICKLE


_PLAIN_PICKLE = (
    "it is a pickle that is not a PyTorch checkpoint torch.load can read (pickle.dump writes such files; "
    "torch.save writes checkpoints)"
)


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_weights(model: torch.nn.Module, checkpoint: str | Path) -> None:
    """Load an open_clip checkpoint, or one written by clipmem's trainer ({'model': state_dict, ...}),
    such as a run's own ``checkpoints/h0_last.pt``."""
    path = Path(checkpoint)
    state = read_checkpoint(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ClipmemError(f"checkpoint {path} holds no model weights (a mapping of names to tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    if not expected.keys() & state.keys():  # was "62 tensors missing … made for another model": it is no model's
        raise ClipmemError(f"checkpoint {path} holds no weights of this model: {_no_weights(expected, state)}")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        why = _misfit(expected, state) or _first_line(exc)
        raise ClipmemError(f"checkpoint {path} does not fit this model: {why}") from None


def _no_weights(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """Why a mapping that shares no name with the model's weights is refused, with its first names."""
    if not found:
        return "it is an empty mapping"
    names = [repr(name if len(name) <= 60 else name[:57] + "...") for name in list(found)[:3]]
    shown = ", ".join(names) + (f" and {len(found) - 3:,} more" if len(found) > 3 else "")
    which = f"its only name, {shown}, is not" if len(found) == 1 else f"none of its {len(found):,} names ({shown}) is"
    return (
        f"{which} one of the model's {len(expected):,} tensors, so it is not a CLIP checkpoint of clipmem or open_clip"
    )


def _misfit(expected: dict[str, Any], found: dict[str, Any]) -> str | None:
    """How a checkpoint's tensors differ from the model's, in words: torch's own message ended at "Error(s)
    in loading state_dict for CLIP:", its detail on the lines after, which a one-line error left out."""

    def shape(value: Any) -> str:
        return "×".join(str(d) for d in getattr(value, "shape", ())) or "a scalar"

    misshapen = [k for k in expected if k in found and getattr(found[k], "shape", None) != expected[k].shape]
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    parts = []
    if misshapen:
        first = misshapen[0]
        parts.append(
            f"{fmt_count(len(misshapen), 'tensor')} of another shape (first {first}: {shape(found[first])} in "
            f"the file, {shape(expected[first])} here)"
        )
    if missing:
        parts.append(f"{fmt_count(len(missing), 'tensor')} missing (first {missing[0]})")
    if extra:
        parts.append(f"{fmt_count(len(extra), 'tensor')} this model does not have (first {extra[0]})")
    if not parts:
        return None
    return "; ".join(parts) + ". It was made for another model: give the --model (or --preset) it was trained with"
