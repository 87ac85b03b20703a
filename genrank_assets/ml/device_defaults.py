"""Defaults whose best value depends on the device that computes: one set for CPU, one for CUDA.

An asset config leaves these fields at ``None`` ("auto"); the asset fills them with the set of its resolved
device (``for_device``) before it uses them, and writes the values to its metadata and MLflow params. An explicit
value in the run config always wins (the presets set theirs, so their runs do not change).

The CUDA set is the package's defaults (``TIGER``, ``TIGER_TRAINING``, ``RANKER_DEFAULTS``, ``RANKER_TRAINING``),
read from where they are defined. The CPU set is sized for a person pointing GENRANK_DATA_DIR at a few hundred
to a few thousand playlists on a laptop: a 634-playlist run with the CUDA-sized values took over half an hour on 2
cores (the ranker alone ~26 min: 4 epochs with song text) and a served p50 of 528 ms. The
CPU values are the demo preset's, which keeps the whole graph within minutes and the served p50 near the 100 ms
goal: the ranker reads no song text (8x cheaper scoring; no gain measured, docs/findings.md), trains 2 epochs
at batch 128, and the generator decodes 30 beams, not 50.

TIGER's epochs on CPU are a ceiling, not a count: early stopping on val loss (``TIGER_TRAINING``'s patience)
decides, within a wall-time cap. A fixed 6 epochs stopped a 0.1x slice of mpd7k (707 playlists) while its val
loss was still falling (2.61; early-stopped at epoch 18 of a 40 ceiling: 2.21, generator-only val NDCG@10 0.035 →
0.062, ``benchmarks/results/experiments/early_stopping.json``). The cap, 170 s of the loop (training and
validation), is what mpd7k's ``tiger_model`` took at 8 epochs on 2 cores (192 s for the whole asset,
``benchmarks/results/end_to_end.json``): a catalogue that size stops at the cap, not later than before; a small one
at its best epoch. A run config's ``max_train_seconds: 0`` turns the cap off.
"""
from __future__ import annotations

from dataclasses import dataclass

from genrank_assets.ml.compute import check_device
from genrank_assets.ml.generator.model import TIGER
from genrank_assets.ml.generator.training import TIGER_TRAINING
from genrank_assets.ml.ranking.cross_encoder.model import RANKER_DEFAULTS
from genrank_assets.ml.ranking.cross_encoder.training import RANKER_TRAINING


@dataclass(frozen=True)
class TigerDeviceDefaults:
    """``tiger_model``: the training epochs' ceiling, the loop's time cap (seconds; None: none) and the beams the
    generator decodes (generation and serving)."""

    epochs: int
    max_train_seconds: float | None
    num_beams: int


@dataclass(frozen=True)
class RankerDatasetDeviceDefaults:
    """``ranker_dataset``: the generator's proposals per title that hard negatives come from, and their beams."""

    generator_candidates: int
    generator_beams: int


@dataclass(frozen=True)
class RankerDeviceDefaults:
    """``ranker_model``: whether the ranker reads song text, its epochs and batch size."""

    use_song_text: bool
    epochs: int
    batch_size: int


@dataclass(frozen=True)
class DeviceDefaults:
    """One device's defaults, by asset."""

    tiger_model: TigerDeviceDefaults
    ranker_dataset: RankerDatasetDeviceDefaults
    ranker_model: RankerDeviceDefaults


CUDA_DEFAULTS = DeviceDefaults(
    tiger_model=TigerDeviceDefaults(epochs=TIGER_TRAINING.epochs, max_train_seconds=TIGER_TRAINING.max_train_seconds,
                                    num_beams=TIGER.num_beams),
    ranker_dataset=RankerDatasetDeviceDefaults(generator_candidates=50, generator_beams=10),
    ranker_model=RankerDeviceDefaults(use_song_text=RANKER_DEFAULTS["use_song_text"], epochs=RANKER_TRAINING.epochs,
                                      batch_size=RANKER_TRAINING.batch_size),
)

CPU_DEFAULTS = DeviceDefaults(
    tiger_model=TigerDeviceDefaults(epochs=40, max_train_seconds=170.0, num_beams=30),
    ranker_dataset=RankerDatasetDeviceDefaults(generator_candidates=30, generator_beams=8),
    ranker_model=RankerDeviceDefaults(use_song_text=False, epochs=2, batch_size=128),
)


def for_device(device: str) -> DeviceDefaults:
    """The defaults for a resolved device (``cpu``, ``cuda``, ``cuda:N``)."""
    return CPU_DEFAULTS if check_device(device, require_available=False) == "cpu" else CUDA_DEFAULTS
