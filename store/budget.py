"""Per-campaign budget and spend in Redis, changed only by Lua scripts (atomic, idempotent).

Amounts are whole numbers in the campaign's minor price unit (iPinYou: CPM fen), so the
cap check is exact. A bid's life:

1. ``reserve(campaign, bid_id, amount)`` at bid time: if ``spent + reserved + amount <=
   budget`` the amount is held (``reserved += amount``) and the bid may go out; otherwise it
   is refused, or with ``partial=True`` cut to what is left (the replay's "bid at most the
   remaining budget"). Because the check and the hold are one script, replicas racing for
   the last of a budget can never hold more than the budget together.
2. ``win(campaign, bid_id, price)`` on the exchange's win notice: the hold is released and
   the paid (second) price, which is at most the bid, is added to ``spent``.
3. ``lose(campaign, bid_id)`` on a loss notice: the hold is released.
4. ``observe(campaign, seen, budget, expire_at_ms)`` by each serving replica every few tens
   of milliseconds: adds the requests it saw since its last call to ``seen`` (the strategies'
   auctions-left forecast), creates the budget when the campaign has none yet (a new pacing
   period: ``HSETNX``, so a budget set by an operator is never overwritten), sets the keys'
   expiry, and returns the state, all in one round trip.
5. A hold whose deadline (``hold_ms``) passes without a notice is released by the next
   reserve on that campaign (exchanges often send no loss notice). A win that arrives after
   its hold expired (``late``), for a bid never held (``unheld``) or at a price above its
   hold (``over_hold``) is still counted, since the money was spent, and counted again in
   ``late_wins``: these are the only ways past the cap. Pick ``hold_ms`` above the exchange's
   notice delay and hold the full bid (a second price never exceeds it) so none occurs.

Every call is idempotent per bid id: a repeated reserve returns the first answer, a
repeated win or loss changes nothing. Bid records expire after ``record_ttl_s``.

Keys, under the tenant like every ``store.keys`` key, and hash-tagged so that one
campaign's keys share a cluster slot (the scripts touch the bid records they sweep)::

    tandem:{tenant}:budget:{<campaign>}          hash: budget, spent, reserved, late_wins, seen
    tandem:{tenant}:pending:{<campaign>}         zset: bid id -> hold deadline (ms)
    tandem:{tenant}:bid:{<campaign>}:<bid id>    hash: state (held|won|lost|expired), amount, paid
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from store.keys import DEFAULT_TENANT, PREFIX

logger = logging.getLogger(__name__)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: budget hash, pending zset, bid record. ARGV: amount, partial(0/1), hold_ms, record_ttl_s,
# bid id, bid-record key prefix (for expired holds), sweep limit.
RESERVE_LUA = _NOW + """
local state = redis.call('HGET', KEYS[3], 'state')
if state then
  return {'duplicate', tonumber(redis.call('HGET', KEYS[3], 'amount')) or 0, state}
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
for _, id in ipairs(expired) do
  local rk = ARGV[6] .. id
  if redis.call('HGET', rk, 'state') == 'held' then
    redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(redis.call('HGET', rk, 'amount')))
    redis.call('HSET', rk, 'state', 'expired')
  end
  redis.call('ZREM', KEYS[2], id)
end
local budget = redis.call('HGET', KEYS[1], 'budget')
if not budget then return {'no_budget', 0, ''} end
local free = tonumber(budget) - tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
             - tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local amount = tonumber(ARGV[1])
if amount > free then
  if ARGV[2] == '1' and free > 0 then amount = free else return {'refused', math.max(free, 0), ''} end
end
redis.call('HINCRBY', KEYS[1], 'reserved', amount)
redis.call('HSET', KEYS[3], 'state', 'held', 'amount', amount)
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[5])
return {'held', amount, ''}
"""

# KEYS: budget hash, pending zset, bid record. ARGV: price, record_ttl_s, bid id.
WIN_LUA = """
local state = redis.call('HGET', KEYS[3], 'state')
if state == 'won' then return {'duplicate', tonumber(redis.call('HGET', KEYS[3], 'paid'))} end
local price = tonumber(ARGV[1])
local status = 'won'
if state == 'held' then
  local held = tonumber(redis.call('HGET', KEYS[3], 'amount'))
  redis.call('HINCRBY', KEYS[1], 'reserved', -held)
  redis.call('ZREM', KEYS[2], ARGV[3])
  if price > held then status = 'over_hold' end
else
  status = state and 'late' or 'unheld'
end
if status ~= 'won' then redis.call('HINCRBY', KEYS[1], 'late_wins', 1) end
redis.call('HINCRBY', KEYS[1], 'spent', price)
redis.call('HSET', KEYS[3], 'state', 'won', 'paid', price)
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[2]))
return {status, price}
"""

# KEYS: budget hash, pending zset, bid record. ARGV: bid id.
LOSE_LUA = """
local state = redis.call('HGET', KEYS[3], 'state')
if state ~= 'held' then return {'duplicate', 0} end
local amount = tonumber(redis.call('HGET', KEYS[3], 'amount'))
redis.call('HINCRBY', KEYS[1], 'reserved', -amount)
redis.call('HSET', KEYS[3], 'state', 'lost')
redis.call('ZREM', KEYS[2], ARGV[1])
return {'lost', amount}
"""

# KEYS: budget hash. ARGV: budget, reset (0/1).
SET_BUDGET_LUA = """
redis.call('HSET', KEYS[1], 'budget', tonumber(ARGV[1]))
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'spent', 0, 'late_wins', 0, 'seen', 0) end
redis.call('HSETNX', KEYS[1], 'spent', 0)
redis.call('HSETNX', KEYS[1], 'reserved', 0)
return 1
"""

# KEYS: budget hash, pending zset. ARGV: requests seen since the last call, the period's budget (set
# when the hash has none), expiry of both keys (Unix ms). Returns budget, spent, reserved, late_wins, seen.
OBSERVE_LUA = """
if redis.call('HSETNX', KEYS[1], 'budget', tonumber(ARGV[2])) == 1 then
  redis.call('HSETNX', KEYS[1], 'spent', 0)
  redis.call('HSETNX', KEYS[1], 'reserved', 0)
end
local seen = redis.call('HINCRBY', KEYS[1], 'seen', tonumber(ARGV[1]))
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[3]))
redis.call('PEXPIREAT', KEYS[2], tonumber(ARGV[3]))
local v = redis.call('HMGET', KEYS[1], 'budget', 'spent', 'reserved', 'late_wins')
return {tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0, seen}
"""


_SAFE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True)
class BudgetKeys:
    """The key layout of one campaign (pure; see the module docstring)."""

    campaign: str
    tenant: str = DEFAULT_TENANT

    def __post_init__(self) -> None:
        for name, value in (("tenant", self.tenant), ("campaign", self.campaign)):
            if not _SAFE.match(value):
                raise ValueError(f"{name} {value!r} must be 1-64 characters of letters, digits, '_', '.', '-'")

    def _key(self, kind: str) -> str:
        return f"{PREFIX}:{self.tenant}:{kind}:{{{self.campaign}}}"

    @property
    def budget(self) -> str:
        return self._key("budget")

    @property
    def pending(self) -> str:
        return self._key("pending")

    @property
    def bid_prefix(self) -> str:
        return self._key("bid") + ":"

    def bid(self, bid_id: str) -> str:
        if not bid_id or len(bid_id) > 128 or any(ch.isspace() for ch in bid_id):
            raise ValueError(f"bid_id must be 1-128 characters without spaces: {bid_id!r}")
        return self.bid_prefix + bid_id


@dataclass(frozen=True)
class BudgetState:
    budget: int
    spent: int
    reserved: int
    late_wins: int = 0
    seen: int = 0

    @property
    def remaining(self) -> int:
        """What may still be held: budget - spent - reserved."""
        return self.budget - self.spent - self.reserved


@dataclass(frozen=True)
class Reservation:
    """``status``: held, refused (over budget), no_budget (campaign unknown) or duplicate."""

    status: str
    amount: int
    previous_state: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "held" or (self.status == "duplicate" and self.previous_state == "held")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _amount(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0 in the minor price unit, got {value!r}")
    return value


def _state(raw: dict[Any, Any]) -> BudgetState | None:
    if not raw:
        return None
    d = {_text(k): int(_text(v)) for k, v in raw.items()}
    return BudgetState(d.get("budget", 0), d.get("spent", 0), d.get("reserved", 0), d.get("late_wins", 0),
                       d.get("seen", 0))


class _Base:
    def __init__(self, client: Any, tenant: str = DEFAULT_TENANT, hold_ms: int = 2000,
                 record_ttl_s: int = 86400, sweep_limit: int = 32):
        if hold_ms < 1 or record_ttl_s < 1 or sweep_limit < 1:
            raise ValueError("hold_ms, record_ttl_s and sweep_limit must be >= 1")
        self.client = client
        self.tenant = tenant
        self.hold_ms = hold_ms
        self.record_ttl_s = record_ttl_s
        self.sweep_limit = sweep_limit
        self._reserve = client.register_script(RESERVE_LUA)
        self._win = client.register_script(WIN_LUA)
        self._lose = client.register_script(LOSE_LUA)
        self._set = client.register_script(SET_BUDGET_LUA)
        self._observe = client.register_script(OBSERVE_LUA)

    def keys(self, campaign: str) -> BudgetKeys:
        return BudgetKeys(campaign, self.tenant)

    def _reserve_args(self, campaign: str, bid_id: str, amount: int, partial: bool
                      ) -> tuple[list[str], list[Any]]:
        k = self.keys(campaign)
        return ([k.budget, k.pending, k.bid(bid_id)],
                [_amount(amount, "amount"), int(partial), self.hold_ms, self.record_ttl_s, bid_id,
                 k.bid_prefix, self.sweep_limit])

    def _win_args(self, campaign: str, bid_id: str, price: int) -> tuple[list[str], list[Any]]:
        k = self.keys(campaign)
        return [k.budget, k.pending, k.bid(bid_id)], [_amount(price, "price"), self.record_ttl_s, bid_id]

    def _lose_args(self, campaign: str, bid_id: str) -> tuple[list[str], list[Any]]:
        k = self.keys(campaign)
        return [k.budget, k.pending, k.bid(bid_id)], [bid_id]

    def _observe_args(self, campaign: str, seen: int, budget: int, expire_at_ms: int
                      ) -> tuple[list[str], list[Any]]:
        k = self.keys(campaign)
        return [k.budget, k.pending], [_amount(seen, "seen"), _amount(budget, "budget"),
                                       _amount(expire_at_ms, "expire_at_ms")]


class BudgetStore(_Base):
    """Synchronous client (``redis.Redis``): budget admin, tests and jobs."""

    def set_budget(self, campaign: str, budget: int, reset_spend: bool = False) -> None:
        self._set(keys=[self.keys(campaign).budget], args=[_amount(budget, "budget"), int(reset_spend)])

    def state(self, campaign: str) -> BudgetState | None:
        return _state(self.client.hgetall(self.keys(campaign).budget))

    def reserve(self, campaign: str, bid_id: str, amount: int, partial: bool = False) -> Reservation:
        keys, args = self._reserve_args(campaign, bid_id, amount, partial)
        status, held, prev = self._reserve(keys=keys, args=args)
        return Reservation(_text(status), int(held), _text(prev))

    def win(self, campaign: str, bid_id: str, price: int) -> str:
        keys, args = self._win_args(campaign, bid_id, price)
        return _text(self._win(keys=keys, args=args)[0])

    def lose(self, campaign: str, bid_id: str) -> str:
        keys, args = self._lose_args(campaign, bid_id)
        return _text(self._lose(keys=keys, args=args)[0])

    def observe(self, campaign: str, seen: int, budget: int, expire_at_ms: int) -> BudgetState:
        """Count ``seen`` more requests, create the budget at ``budget`` if it has none, and read it."""
        keys, args = self._observe_args(campaign, seen, budget, expire_at_ms)
        return BudgetState(*(int(v) for v in self._observe(keys=keys, args=args)))

    def notices(self, items: list[tuple[str, str, int | None]]) -> list[str]:
        """Win (price given) or loss (price None) notices ``(campaign, bid id, price)`` in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for campaign, bid_id, price in items:
            if price is None:
                keys, args = self._lose_args(campaign, bid_id)
                self._lose(keys=keys, args=args, client=pipe)
            else:
                keys, args = self._win_args(campaign, bid_id, price)
                self._win(keys=keys, args=args, client=pipe)
        return [_text(r[0]) for r in pipe.execute()]


class AsyncBudgetStore(_Base):
    """Asynchronous client (``redis.asyncio.Redis``) for Serve replicas."""

    async def set_budget(self, campaign: str, budget: int, reset_spend: bool = False) -> None:
        await self._set(keys=[self.keys(campaign).budget], args=[_amount(budget, "budget"), int(reset_spend)])

    async def state(self, campaign: str) -> BudgetState | None:
        return _state(await self.client.hgetall(self.keys(campaign).budget))

    async def reserve(self, campaign: str, bid_id: str, amount: int, partial: bool = False) -> Reservation:
        keys, args = self._reserve_args(campaign, bid_id, amount, partial)
        status, held, prev = await self._reserve(keys=keys, args=args)
        return Reservation(_text(status), int(held), _text(prev))

    async def win(self, campaign: str, bid_id: str, price: int) -> str:
        keys, args = self._win_args(campaign, bid_id, price)
        return _text((await self._win(keys=keys, args=args))[0])

    async def lose(self, campaign: str, bid_id: str) -> str:
        keys, args = self._lose_args(campaign, bid_id)
        return _text((await self._lose(keys=keys, args=args))[0])

    async def observe(self, campaign: str, seen: int, budget: int, expire_at_ms: int) -> BudgetState:
        """Count ``seen`` more requests, create the budget at ``budget`` if it has none, and read it."""
        keys, args = self._observe_args(campaign, seen, budget, expire_at_ms)
        return BudgetState(*(int(v) for v in await self._observe(keys=keys, args=args)))

    async def notices(self, items: list[tuple[str, str, int | None]]) -> list[str]:
        """Win (price given) or loss (price None) notices ``(campaign, bid id, price)`` in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for campaign, bid_id, price in items:
            if price is None:
                keys, args = self._lose_args(campaign, bid_id)
                await self._lose(keys=keys, args=args, client=pipe)
            else:
                keys, args = self._win_args(campaign, bid_id, price)
                await self._win(keys=keys, args=args, client=pipe)
        return [_text(r[0]) for r in await pipe.execute()]
