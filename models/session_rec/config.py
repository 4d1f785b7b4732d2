"""Typed configs for every recommender; YAML is parsed into these (unknown keys are errors)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ModelType = Literal["auto", "pop", "itemknn", "vsknn", "vstan", "gru4rec", "sasrec", "repeat", "hybrid"]
PartType = Literal["pop", "itemknn", "vsknn", "vstan", "gru4rec", "sasrec", "repeat", "category"]


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


class RepeatConfig(_Strict):
    """The repeat head (models.session_rec.repeat): recency decay of prefix occurrences, in steps."""

    tau: float = Field(1.0, gt=0)


class CategoryConfig(_Strict):
    """The category fallback (models.session_rec.cold); needs an item-category table."""

    alpha: float = Field(0.5, gt=0, description="smoothing count per item inside its category")
    tau: float = Field(1.0, gt=0, description="recency decay of the prefix's category votes, in steps")
    eps: float = Field(0.01, ge=0, le=1, description="share of the global category popularity")


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


PART_CONFIGS: dict[str, type[BaseModel]] = {"itemknn": ItemKNNConfig, "vsknn": VSKNNConfig, "vstan": VSTANConfig,
                                             "gru4rec": GRU4RecConfig, "sasrec": SASRecConfig,
                                             "repeat": RepeatConfig, "category": CategoryConfig}


class PartSpec(_Strict):
    """One candidate of ``--model auto``: a part type and its parameters (over that type's defaults)."""

    name: str = Field(min_length=1)
    model: PartType
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_params(self) -> PartSpec:
        cls = PART_CONFIGS.get(self.model)
        if cls is None and self.params:
            raise ValueError(f"{self.name}: {self.model} takes no params")
        if cls is not None:
            cls.model_validate(self.params)
        return self

    def resolved(self) -> dict[str, Any]:
        """All parameters: the type's defaults updated with ``params``."""
        cls = PART_CONFIGS.get(self.model)
        return cls.model_validate(self.params).model_dump() if cls is not None else {}


def _default_knn() -> list[PartSpec]:
    # V-STAN twice: session-rec's defaults, and the sequence-heavier setting chosen on a Diginetica validation
    # split (BENCHMARKS.md, issue 5); auto keeps whichever helps on the data at hand
    return [PartSpec(name="vsknn", model="vsknn"), PartSpec(name="vstan", model="vstan"),
            PartSpec(name="vstan_seq", model="vstan", params={"sample_size": 2000, "lambda_spw": 3.0,
                                                              "lambda_inh": 5.0, "lambda_ipw": 2.0})]


def _default_neural() -> list[PartSpec]:
    # the official GRU4Rec parameter files: RSC15 (cross-entropy, 100 units) and Diginetica (BPR-max, 512 units)
    return [PartSpec(name="gru4rec_xe", model="gru4rec"),
            PartSpec(name="gru4rec_bprmax", model="gru4rec", params={
                "loss": "bpr-max", "layers": [512], "batch_size": 128, "dropout_p_embed": 0.5,
                "dropout_p_hidden": 0.3, "learning_rate": 0.05, "momentum": 0.15, "n_sample": 2048,
                "sample_alpha": 0.3, "bpreg": 0.9, "elu_param": 1.0, "logq": 0.0})]


class AutoConfig(_Strict):
    """``--model auto``: every choice on a validation split carved from the end of train, within a budget."""

    time_budget_min: float = Field(90.0, gt=0, description="CPU minutes for the choice and the final fit (test "
                                                            "evaluation not included); models.session_rec.auto")
    valid_fraction: float = Field(0.1, gt=0, lt=0.5, description="last sessions of train held out")
    valid_pairs: int = Field(20000, ge=10, description="validation pairs scored for the blend (a seeded sample)")
    epoch_valid_pairs: int = Field(5000, ge=10, description="of those, scored after each neural epoch")
    knn: list[PartSpec] = Field(default_factory=_default_knn)
    neural: list[PartSpec] = Field(default_factory=_default_neural)
    repeat_taus: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0])
    patience: int = Field(2, ge=1, description="neural epochs without a validation gain before stopping")
    min_gain: float = Field(0.0005, ge=0, description="recall@20 + mrr@20 a part must add to join the blend")

    @model_validator(mode="after")
    def _check(self) -> AutoConfig:
        names = [p.name for p in [*self.knn, *self.neural]]
        if len(set(names)) != len(names):
            raise ValueError(f"auto candidate names must be unique: {names}")
        if any(p.model in NEURAL_PARTS for p in self.knn) or any(p.model not in NEURAL_PARTS for p in self.neural):
            raise ValueError(f"auto.knn takes non-neural parts, auto.neural {NEURAL_PARTS}")
        if any(p.model in ("category", "repeat") for p in self.knn):
            raise ValueError("auto.knn: the repeat head (repeat_taus) and the category fallback (an item-category "
                             "table) join the candidates by themselves")
        if any(t <= 0 for t in self.repeat_taus):
            raise ValueError("repeat_taus must be > 0")
        return self


class RecommenderConfig(_Strict):
    model: ModelType = "auto"
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
    repeat: RepeatConfig = Field(default_factory=RepeatConfig)
    hybrid: HybridConfig = Field(default_factory=HybridConfig)
    auto: AutoConfig = Field(default_factory=AutoConfig)

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
