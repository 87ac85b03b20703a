"""Asset configs built from the dataclasses that hold their defaults, so that each field is written once.

``config_fields(Params)`` is a ``dg.Config`` base class with the fields of the dataclass ``Params`` (same names,
types and defaults; tuples become lists, which run config holds). ``dataclass_config(Params)`` adds ``params()``,
which builds the dataclass back, so that its own checks validate the run config; ``training_fields`` does the same
for the training loop's fields. An asset config subclasses one of them to add its docstring, its other fields and
its checks.
"""
from __future__ import annotations

import dataclasses
import typing

import dagster as dg
import pydantic
from pydantic import model_validator

from genrank_assets.ml.training import TrainConfig

# The fields of ml.training.TrainConfig that the training assets' configs expose (their defaults: each model's own
# TrainConfig, TIGER_TRAINING / RANKER_TRAINING).
TRAINING_FIELDS = ("epochs", "batch_size", "lr", "warmup_ratio", "weight_decay", "early_stopping_patience",
                   "max_train_seconds", "schedule", "checkpoint_every_steps", "seed")


def _run_config_type(tp):
    """tuple[T, ...] -> list[T] (run config has lists); anything else as it is."""
    if typing.get_origin(tp) is tuple:
        return list[typing.get_args(tp)[0]]
    return tp


def config_fields(params, *, names: typing.Iterable[str] | None = None, auto: typing.Iterable[str] = (),
                  base: type[dg.Config] = dg.Config) -> type[dg.Config]:
    """A ``base`` subclass with the fields of ``params`` (a dataclass, or an instance of one whose values are
    then the defaults): all of them, or ``names`` only. A field in ``auto`` is ``T | None = None``: unset, it
    takes the device default (``ComputeResource.for_step``)."""
    params_type = params if isinstance(params, type) else type(params)
    hints = typing.get_type_hints(params_type)
    wanted = None if names is None else set(names)
    chosen = [f for f in dataclasses.fields(params_type) if wanted is None or f.name in wanted]
    auto = set(auto)
    fields = {}
    for f in chosen:
        tp = _run_config_type(hints[f.name])
        if f.name in auto:
            fields[f.name] = (tp | None, None)
            continue
        default = getattr(params, f.name) if not isinstance(params, type) else f.default
        if default is dataclasses.MISSING:
            raise ValueError(f"{params_type.__name__}.{f.name} has no default: give an instance of it")
        fields[f.name] = (tp, list(default) if isinstance(default, tuple) else default)
    chosen_names = tuple(f.name for f in chosen)

    class Fields(base):
        def params_values(self) -> dict:
            """This config's values of the dataclass's fields (lists back to tuples)."""
            return {n: tuple(v) if isinstance(v := getattr(self, n), list) else v for n in chosen_names}

    return pydantic.create_model(f"{params_type.__name__}Fields", __base__=Fields, **fields)


def dataclass_config(params_type, base: type[dg.Config] = dg.Config) -> type[dg.Config]:
    """``config_fields(params_type)`` with ``params()`` -> the dataclass, whose checks validate the run config."""

    class Config(config_fields(params_type, base=base)):
        def params(self):
            return params_type(**self.params_values())

        @model_validator(mode="after")
        def _valid_params(self):
            self.params()  # the dataclass's own checks are the rules
            return self

    return Config


def training_fields(defaults: TrainConfig, auto: typing.Iterable[str] = (),
                    base: type[dg.Config] = dg.Config) -> type[dg.Config]:
    """``config_fields`` of the training loop (``TRAINING_FIELDS``, defaults from one model's ``TrainConfig``),
    checked by the loop's own rules on what is set, with ``train_config()`` -> the loop's ``TrainConfig``."""

    class Training(config_fields(defaults, names=TRAINING_FIELDS, auto=auto, base=base)):
        def train_config(self) -> TrainConfig:
            return TrainConfig.from_mapping(self.model_dump(), defaults)

        @model_validator(mode="after")
        def _trainable(self):
            # On what is set: a field left at None takes a device default, valid by construction.
            TrainConfig.from_mapping({k: v for k, v in self.model_dump().items() if v is not None}, defaults)
            return self

    return Training


def check_one_of(name: str, value, choices) -> None:
    """A ValueError naming the field when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
