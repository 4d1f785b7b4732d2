"""Train V2 trainers minus default callbacks (``pipelines.train_callbacks``)."""

from __future__ import annotations

import pytest

from pipelines.train_callbacks import callback_types, without_default_callbacks

pytestmark = pytest.mark.unit


def _loop(config: dict) -> None:  # pragma: no cover - never run: only the callback list is built
    pass


def _default_types(trainer_cls: type) -> set[str]:
    from ray.train import ScalingConfig

    trainer = trainer_cls(_loop, train_loop_config={}, scaling_config=ScalingConfig(num_workers=1))
    return {type(cb).__name__ for cb in trainer._create_default_callbacks()}


def test_dropped_callbacks_are_gone_and_the_rest_stay() -> None:
    from ray.train.torch import TorchTrainer

    drop = callback_types("datasets", "placement_group_cleaner")
    assert [c.__name__ for c in drop] == ["DatasetsCallback", "PlacementGroupCleanerCallback"]
    base = _default_types(TorchTrainer)
    trimmed_cls = without_default_callbacks(TorchTrainer, drop)
    trimmed = _default_types(trimmed_cls)
    assert {"DatasetsCallback", "PlacementGroupCleanerCallback"} <= base
    assert trimmed == base - {"DatasetsCallback", "PlacementGroupCleanerCallback"}
    assert issubclass(trimmed_cls, TorchTrainer) and trimmed_cls.__name__ == "TorchTrainer"


def test_nothing_to_drop_returns_the_trainer_itself() -> None:
    from ray.train.torch import TorchTrainer

    assert without_default_callbacks(TorchTrainer, ()) is TorchTrainer


def test_unknown_callback_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown Train callback 'metrics'"):
        callback_types("metrics")
