"""Typed configs for every recommender; YAML is parsed into these (unknown keys are errors)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ModelType = Literal["pop", "itemknn", "vsknn", "vstan", "gru4rec", "sasrec", "hybrid"]
PartType = Literal["pop", "itemknn", "vsknn", "vstan", "gru4rec", "sasrec"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemKNNConfig(_Strict):
    alpha: float = Field(0.5, ge=0, le=1)
    lmbd: float = Field(20.0, ge=0)
    n_neighbors: int = Field(100, ge=1)


class VSKNNConfig(_Strict):
    k: int = Field(100, ge=1)
    sample_size: int = Field(500, ge=1)
    idf_weighting: float = Field(1.0, ge=0)


class VSTANConfig(_Strict):
    """Defaults: session-rec ``vstan`` (lambda_snh off: it is in sessions here, see models.session_rec.stan)."""

    k: int = Field(500, ge=1)
    sample_size: int = Field(5000, ge=1)
    lambda_spw: float | None = Field(1.02, gt=0)
    lambda_snh: float | None = Field(None, gt=0, description="neighbour recency, in training sessions")
    lambda_inh: float | None = Field(2.05, gt=0)
    lambda_ipw: float | None = Field(1.02, gt=0)
    lambda_idf: float | None = Field(5.0, ge=0)


class GRU4RecConfig(_Strict):
    """Defaults: official ``paramfiles/rsc15_xe_shared_100_best.py`` (Hidasi & Czapp 2023)."""

    loss: Literal["cross-entropy", "bpr-max"] = "cross-entropy"
    layers: list[int] = Field(default_factory=lambda: [100])
    n_epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    dropout_p_embed: float = Field(0.0, ge=0, lt=1)
    dropout_p_hidden: float = Field(0.4, ge=0, lt=1)
    learning_rate: float = Field(0.2, gt=0)
    momentum: float = Field(0.2, ge=0, lt=1)
    n_sample: int = Field(2048, ge=0)
    sample_alpha: float = Field(0.5, ge=0, le=1)
    bpreg: float = Field(0.0, ge=0)
    elu_param: float = Field(0.0, ge=0)
    logq: float = Field(1.0, ge=0)
    constrained_embedding: Literal[True] = True


class SASRecConfig(_Strict):
    hidden: int = Field(64, ge=8)
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    max_len: int = Field(50, ge=2)
    dropout: float = Field(0.2, ge=0, lt=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    n_epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    n_sample: int = Field(0, ge=0, description="0 = full softmax over the catalogue")


NEURAL_PARTS = ("gru4rec", "sasrec")  # parts whose scores are logits (softmaxed in a hybrid)


def check_temperatures(parts: Sequence[str], temperatures: Sequence[float]) -> None:
    """One softmax temperature per hybrid part: > 0, and 1 for the parts that are not neural."""
    if len(temperatures) != len(parts):
        raise ValueError(f"{len(parts)} parts but {len(temperatures)} temperatures")
    for part, t in zip(parts, temperatures, strict=True):
        if t <= 0 or (t != 1.0 and part not in NEURAL_PARTS):
            raise ValueError(f"temperature {t} for {part!r}: must be > 0, and 1 for non-neural parts")


class HybridConfig(_Strict):
    """Parts are trained with their own sections of this config; weights from a validation split."""

    parts: list[PartType] = Field(default_factory=lambda: ["sasrec", "vsknn"], min_length=1)  # type: ignore[arg-type]
    weights: list[float] = Field(default_factory=lambda: [0.5, 0.5])
    temperatures: list[float] | None = Field(
        None, description="per part: a neural part's softmax(scores / T) before mixing; None = all 1 (plain "
                          "softmax); must be 1 for kNN/pop parts")

    @model_validator(mode="after")
    def _check_temperatures(self) -> HybridConfig:
        if self.temperatures is not None:
            check_temperatures(self.parts, self.temperatures)
        return self


class RecommenderConfig(_Strict):
    model: ModelType = "gru4rec"
    seed: int = 42
    workers: int = Field(1, ge=1, description="Ray Train data-parallel workers for torch models")
    use_gpu: bool | None = Field(None, description="None = use a GPU when the cluster has one")
    tie: Literal["conservative", "standard", "median"] = "conservative"
    eval_batch_size: int = Field(512, ge=1)
    itemknn: ItemKNNConfig = Field(default_factory=ItemKNNConfig)
    vsknn: VSKNNConfig = Field(default_factory=VSKNNConfig)
    vstan: VSTANConfig = Field(default_factory=VSTANConfig)
    gru4rec: GRU4RecConfig = Field(default_factory=GRU4RecConfig)
    sasrec: SASRecConfig = Field(default_factory=SASRecConfig)
    hybrid: HybridConfig = Field(default_factory=HybridConfig)

    def model_params(self) -> dict[str, object]:
        if self.model == "pop":
            return {}
        result: dict[str, object] = getattr(self, self.model).model_dump()
        return result


def load_config(path: str | Path | None, **overrides: object) -> RecommenderConfig:
    """YAML file (optional) plus CLI overrides; errors name the file and field."""
    import yaml

    raw: dict[str, object] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"{p}: config file not found")
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{p}: top level must be a mapping, got {type(loaded).__name__}")
        raw.update(loaded)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RecommenderConfig.model_validate(raw)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{where}invalid recommender config: {fields}") from exc
