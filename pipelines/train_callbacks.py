"""Ray Train V2 trainers minus some of Train's default callbacks.

Train V2 (2.60) gives every run a fixed set of callbacks, some of which start an actor of
their own. Two of them are dead weight in the cases below; ``_create_default_callbacks`` is
Train's own hook, and if a later Ray drops it the defaults simply stay.

- ``DatasetsCallback`` starts a ``DatasetManager`` actor for every run, datasets or not: one
  more Python process (about 1.5 CPU-seconds of imports) next to the workers. A run whose
  data reaches the workers another way (object refs, the loop config) goes without.
- ``PlacementGroupCleanerCallback`` starts a detached actor that removes the run's placement
  group if the controller dies. It learns of the death through the state API, which the
  dashboard serves, so on a local Ray without a dashboard it cannot work: it logs a failed
  query every second and outlives the run. A job that started its own local Ray shuts the
  whole cluster down at exit, so nothing is left for it to clean.
"""

from __future__ import annotations

from typing import Any


def without_default_callbacks(base: Any, drop: tuple[type, ...]) -> Any:
    """A subclass of the Train trainer ``base`` whose default callbacks exclude the types in ``drop``."""
    if not drop or not hasattr(base, "_create_default_callbacks"):  # pragma: no cover - another Ray version
        return base

    class Trainer(base):  # type: ignore[misc, valid-type]
        def _create_default_callbacks(self) -> list[Any]:
            return [cb for cb in super()._create_default_callbacks() if not isinstance(cb, drop)]

    Trainer.__name__ = Trainer.__qualname__ = base.__name__
    return Trainer


def callback_types(*names: str) -> tuple[type, ...]:
    """Train's default callback classes by name (``"datasets"``, ``"placement_group_cleaner"``);
    the ones this Ray does not have are left out."""
    found: list[type] = []
    for name in names:
        cls: type
        try:
            if name == "datasets":
                from ray.train.v2._internal.callbacks.datasets import DatasetsCallback as cls  # type: ignore[assignment]
            elif name == "placement_group_cleaner":
                from ray.train.v2._internal.callbacks.placement_group_callback import (
                    PlacementGroupCleanerCallback as cls,  # type: ignore[assignment]
                )
            else:
                raise ValueError(f"unknown Train callback {name!r}")
        except ImportError:  # pragma: no cover - another Ray version
            continue
        found.append(cls)
    return tuple(found)
