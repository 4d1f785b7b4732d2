"""Typed requests and responses of ``POST /v1/bid`` and ``POST /v1/bid/notice``.

Strict like every tandem request: unknown fields, a bool or a string where a number goes,
NaN and infinities are 422s that name the field. The OpenAPI schema says exactly what is
accepted, cross-field rules included (``oneOf``: a bid sends ``pctr`` or ``features``, never
both, neither or a null; a win notice has a price, a loss none), so a client generated from it
(or a fuzzer) never sends a body that validates by the schema and is refused. Prices are whole numbers or decimals in the
campaign's price unit (iPinYou: CPM in fen; see ``models.bidding.campaign``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.bidding.campaign import CAMPAIGN_ID
from serve.schemas import ID_PATTERN, STRICT, BidSettings, Deadline, Int

__all__ = ["BidRequest", "BidResponse", "BidSettings", "Notice", "NoticeRequest", "NoticeResponse", "NoticeResult"]

FEATURE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_FEATURES = 100
MAX_NOTICES = 1000

BidId = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN,
                             description="the exchange's id of this bid request (OpenRTB BidRequest.id/imp.id); "
                                         "a retried request with the same id gets the same answer")]
CampaignId = Annotated[str, Field(pattern=CAMPAIGN_ID, description="one of the tenant's published campaigns")]
FeatureValue = Annotated[str, Field(max_length=256)] | Annotated[float, Field(allow_inf_nan=False)] | None
NoBidReason = Literal["unknown_campaign", "campaign_inactive", "no_pctr_model", "pctr_error", "deadline",
                      "budget_unavailable", "budget_exhausted", "below_floor", "zero_bid", "duplicate_bid", "error"]


def _bid_request_schema(schema: dict[str, Any]) -> None:
    props = schema["properties"]
    props["pctr"] = {**props["pctr"]["anyOf"][0], "description": props["pctr"]["description"]}
    features = props["features"]
    props["features"] = {**features["anyOf"][0], "additionalProperties": False,
                         "description": features["description"]}
    schema["oneOf"] = [{"required": ["pctr"]}, {"required": ["features"]}]


class BidRequest(BaseModel):
    """One impression offered by an exchange: either a pCTR or the features to compute it from."""

    model_config = ConfigDict(**STRICT, json_schema_extra=_bid_request_schema)

    campaign_id: CampaignId
    bid_id: BidId
    pctr: float | None = Field(None, ge=0, le=1, allow_inf_nan=False,
                               description="a precomputed click probability; or send features")
    features: dict[Annotated[str, Field(pattern=FEATURE_NAME)], FeatureValue] | None = Field(
        None, max_length=MAX_FEATURES, description="impression fields for the tenant's pctr model (categorical "
                                                   "values as strings, numbers as numbers, null for missing)")
    floor: float = Field(0.0, ge=0, le=1e9, allow_inf_nan=False,
                         description="the exchange's floor price (OpenRTB imp.bidfloor), in the campaign's unit")
    deadline_ms: Deadline = None  # a bid that would be late is a no-bid

    @model_validator(mode="after")
    def _one_source(self) -> BidRequest:
        sent = {"pctr", "features"} & self.model_fields_set
        if len(sent) != 1 or (self.pctr is None and self.features is None):
            raise ValueError("send exactly one of pctr (a number) and features (an object)")
        return self


class BidResponse(BaseModel):
    """A bid (``bid`` true, ``price`` > 0, held against the budget until its notice) or a no-bid."""

    bid_id: str
    campaign_id: str
    bid: bool
    price: int = Field(description="the bid, a whole number in the campaign's price unit (0: no bid)")
    reason: NoBidReason | None = Field(None, description="why there is no bid")
    strategy: str | None = None
    pctr: float | None = None
    pctr_source: Literal["request", "model", "prior"] | None = Field(
        None, description="request (sent), model (the tenant's pctr model on the features), or prior (the "
                          "campaign's pctr_prior: no model answered in time, see fallback_reason)")
    fallback_reason: str | None = Field(None, description="why the pctr model did not price this request")
    model_version: str | None = Field(None, description="the pctr model version, when the model priced it")
    campaign_version: str | None = Field(None, description="the version of the tenant's published campaigns")
    period: int | None = Field(None, description="the budget period the bid is held in; echo it in the notice")
    tenant: str


def _notice_schema(schema: dict[str, Any]) -> None:
    props = schema["properties"]
    whole = {"type": "integer", "minimum": 0, "maximum": 10**9}  # pydantic writes ge/le for an Annotated Int
    props["price"] = {**whole, "description": props["price"]["description"]}
    props["period"] = {"anyOf": [whole, {"type": "null"}], "default": None,
                       "description": props["period"]["description"]}
    schema["oneOf"] = [{"properties": {"outcome": {"const": "win"}}, "required": ["price"]},
                       {"properties": {"outcome": {"const": "loss"}}, "not": {"required": ["price"]}}]


Money = Annotated[Int, Field(ge=0, le=10**9)]


class Notice(BaseModel):
    """The outcome of one bid (OpenRTB win notice ``nurl`` with ${AUCTION_PRICE}, or a loss notice)."""

    model_config = ConfigDict(**STRICT, json_schema_extra=_notice_schema)

    campaign_id: CampaignId
    bid_id: BidId
    outcome: Literal["win", "loss"]
    price: Money | None = Field(None, description="win: the price paid (clearing price); a loss has none")
    period: Annotated[Int, Field(ge=0, le=10**9)] | None = Field(
        None, description="the bid's period (default: the current one)")

    @model_validator(mode="after")
    def _price(self) -> Notice:
        if self.outcome == "win" and self.price is None:
            raise ValueError("a win notice needs the price paid")
        if self.outcome == "loss" and "price" in self.model_fields_set:
            raise ValueError("a loss notice has no price")
        return self


class NoticeRequest(BaseModel):
    model_config = STRICT

    notices: list[Notice] = Field(min_length=1, max_length=MAX_NOTICES)


NoticeStatus = Literal["won", "lost", "duplicate", "late", "unheld", "over_hold", "unknown_campaign"]


class NoticeResult(BaseModel):
    bid_id: str
    status: NoticeStatus


class NoticeResponse(BaseModel):
    """200: every notice is stored (a retry of the same notices changes nothing); otherwise 503."""

    results: list[NoticeResult]
    tenant: str
