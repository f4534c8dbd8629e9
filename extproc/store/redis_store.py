"""The shared store for many replicas: Redis, with each reserve and settle one Lua script.

A counter is one hash: `spent`, `held` (what live reservations hold), `swept`, plus
one `r:<request>` field per live reservation holding "amount|lease_expiry". Scripts
run atomically, so replicas can never jointly overshoot a budget. All keys share one hash tag ({llmgw}), so the
multi-key scripts also work on Redis Cluster.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .base import ROOM_FACTOR, Admission, CounterRow, CutEntry, Exchange, Granted, StoreUnavailable
from .limits import Charge

PREFIX = "{llmgw}:c:"
SENT_PREFIX = "{llmgw}:sent:"          # a cut stream's entry, "status bytes first_event_at_us"
RECORD_PREFIX = "{llmgw}:r:"           # small records: "<kind>:<name>" -> value
CHANNEL_PREFIX = "{llmgw}:ch:"         # pub/sub channels (a run's taint marked: run_taint.py)

# A counter's hash keeps `held`, the sum of its live reservations, so a check reads
# three fields however many requests are in flight. At most once a second per counter
# (`swept`) held is recomputed from the reservations themselves, dropping expired
# leases (a crashed worker's); that also sets it for counters written before `held`.
# An expired reservation leaves a mark, `x:<request>` (when it was swept), so a settle
# retried after an outage can tell a reservation swept (its spend still to add) from one
# settled already (its reply lost); marks go after TOMBSTONE_S.
TOMBSTONE_S = 2 * 86400
_USED = """
local function used(key, now)
  local v = redis.call('HMGET', key, 'spent', 'held', 'swept')
  local spent, held = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if now - (tonumber(v[3]) or 0) >= 1 then
    held = 0
    local fields = redis.call('HGETALL', key)
    for j = 1, #fields, 2 do
      local f, r = fields[j], fields[j + 1]
      local kind = string.sub(f, 1, 2)
      if kind == 'r:' then
        local sep = string.find(r, '|', 1, true)
        if tonumber(string.sub(r, sep + 1)) > now then
          held = held + tonumber(string.sub(r, 1, sep - 1))
        else
          redis.call('HDEL', key, f)
          redis.call('HSET', key, 'x:' .. string.sub(f, 3), tostring(now))
        end
      elseif kind == 'x:' and now - (tonumber(r) or 0) > """ + str(TOMBSTONE_S) + """ then
        redis.call('HDEL', key, f)
      end
    end
    redis.call('HSET', key, 'held', tostring(held), 'swept', tostring(now))
  end
  return spent, held
end
"""

# ARGV: rid, now, lease_until, then per key: limit, reserve, count_now, expire_at
_RESERVE = _USED + """
local rid, now, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local remaining = {}
for i, key in ipairs(KEYS) do
  local b = 3 + (i - 1) * 4
  local limit, reserve, count_now = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local spent, held = used(key, now)
  local after = spent + held + reserve + count_now
  if after > limit + 1e-9 then
    return {0, i, tostring(limit - spent - held)}
  end
  remaining[i] = tostring(limit - after)
end
for i, key in ipairs(KEYS) do
  local b = 3 + (i - 1) * 4
  local reserve, count_now = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  if count_now > 0 then redis.call('HINCRBYFLOAT', key, 'spent', count_now) end
  if reserve > 0 then
    redis.call('HSET', key, 'r:' .. rid, ARGV[b + 2] .. '|' .. lease)
    redis.call('HINCRBYFLOAT', key, 'held', ARGV[b + 2])
  end
  redis.call('EXPIREAT', key, math.floor(tonumber(ARGV[b + 4])))
end
return {1, 0, unpack(remaining)}
"""

# Ends a live reservation ("amount|lease_expiry"): its amount leaves `held`. One already
# swept (its lease ran out) is no longer in `held`, and is left alone.
_RELEASE = """
local function release(key, field)
  local r = redis.call('HGET', key, field)
  if r then
    redis.call('HDEL', key, field)
    local held = (tonumber(redis.call('HGET', key, 'held')) or 0)
                 - tonumber(string.sub(r, 1, string.find(r, '|', 1, true) - 1))
    redis.call('HSET', key, 'held', tostring(held < 1e-9 and 0 or held))
  end
end
"""

# ARGV: rid, then per key: amount. A reservation already swept only adds the spend
# (and its mark goes: this settle is done). A settle whose reservation is neither live
# nor marked was applied already (the same script sent again after its reply was lost):
# it adds nothing.
_SETTLE = _RELEASE + """
local spent = {}
for i, key in ipairs(KEYS) do
  local live = redis.call('HEXISTS', key, 'r:' .. ARGV[1]) == 1
  if live then release(key, 'r:' .. ARGV[1]) end
  local due = live or redis.call('HDEL', key, 'x:' .. ARGV[1]) == 1
  local amount = tonumber(ARGV[i + 1])
  if due and amount > 0 then
    spent[i] = redis.call('HINCRBYFLOAT', key, 'spent', ARGV[i + 1])
  else
    spent[i] = redis.call('HGET', key, 'spent') or '0'
  end
end
return spent
"""

# A worker's allotments (allotments.py). ARGV: holder, now, lease_until, room factor,
# then per key: limit, total, keep, want, expire_at, n, then n settles (rid, amount).
# The spend comes as the holder's running total, `t:<holder>` keeping what was already
# added: a script that ran but whose reply was lost (a timeout) is retried without
# counting its spend twice. A settle that failed earlier is applied only while its
# reservation is live or marked swept (`x:`): one whose reply was lost left neither.
_EXCHANGE = _USED + _RELEASE + """
local holder, now, lease, factor = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local out = {}
local b = 4
for i, key in ipairs(KEYS) do
  local limit, total, total_arg = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), ARGV[b + 2]
  local keep, want = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local expire_at, settles = math.floor(tonumber(ARGV[b + 5])), tonumber(ARGV[b + 6])
  b = b + 6
  for s = 1, settles do
    local rid, amount = ARGV[b + 1], ARGV[b + 2]
    b = b + 2
    local live = redis.call('HEXISTS', key, 'r:' .. rid) == 1
    if live then release(key, 'r:' .. rid) end
    if live or redis.call('HDEL', key, 'x:' .. rid) == 1 then
      if tonumber(amount) > 0 then redis.call('HINCRBYFLOAT', key, 'spent', amount) end
    end
  end
  local added = tonumber(redis.call('HGET', key, 't:' .. holder)) or 0
  if total > added then
    redis.call('HINCRBYFLOAT', key, 'spent', tostring(total - added))
    redis.call('HSET', key, 't:' .. holder, total_arg)
  end
  release(key, 'r:' .. holder)
  redis.call('HDEL', key, 'x:' .. holder)
  local spent, held = used(key, now)
  local room = limit - spent - held
  local grant = keep
  if want > 0 and room - keep >= want * factor then grant = keep + want end
  if grant > 0 then
    redis.call('HSET', key, 'r:' .. holder, tostring(grant) .. '|' .. lease)
    redis.call('HINCRBYFLOAT', key, 'held', tostring(grant))
  end
  redis.call('EXPIREAT', key, expire_at)
  out[i] = {tostring(grant), tostring(room), tostring(spent)}
end
return out
"""

_RETENTION = 40 * 86400


# KEYS: the record; ARGV: value, ttl (s). The live value, else the one given, kept.
_FIRST_RECORD = """
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        self.url = url
        # One retry, at once, of a command whose connection failed (a pooled connection to a
        # Redis that restarted); none after a timeout, and no backoff: redis-py's default
        # (10 tries, backing off up to 1 s) would hold a call for seconds while Redis is down,
        # and would send a script again that may have run.
        self._redis = aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                              health_check_interval=30,
                                              retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)
        self._exchange = self._redis.register_script(_EXCHANGE)
        self._first_record = self._redis.register_script(_FIRST_RECORD)

    async def reserve(self, rid: str, charges: list[Charge], now: float, lease_until: float) -> Admission:
        args: list = [rid, repr(now), repr(lease_until)]
        for charge in charges:
            args += [repr(charge.limit.limit), repr(charge.reserve), repr(charge.count_now),
                     repr(charge.window_end + _RETENTION)]
        try:
            result = await self._reserve(keys=[PREFIX + c.counter for c in charges], args=args)
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        if int(result[0]) == 0:
            refused = charges[int(result[1]) - 1]
            return Admission(False, refused, {refused.counter: float(result[2])})
        return Admission(True, None, {c.counter: float(v) for c, v in zip(charges, result[2:])})

    async def spent(self, counters: list[str]) -> dict[str, float]:
        """What each counter has spent (one round trip): the budget precheck's look at a
        caller's counters before its request is scanned."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for counter in counters:
                    pipe.hget(PREFIX + counter, "spent")
                values = await pipe.execute()
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        return {counter: float(value) for counter, value in zip(counters, values) if value is not None}

    async def settle(self, rid: str, charges: list[Charge], amounts: list[float]) -> dict[str, float]:
        try:
            result = await self._settle(keys=[PREFIX + c.counter for c in charges],
                                        args=[rid, *(repr(float(a)) for a in amounts)])
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        return {c.counter: float(v) for c, v in zip(charges, result)}

    async def exchange(self, holder: str, items: list[Exchange], now: float,
                       lease_until: float) -> list[Granted]:
        """A worker's allotments, all in one script (see _EXCHANGE)."""
        args: list = [holder, repr(now), repr(lease_until), repr(ROOM_FACTOR)]
        for item in items:
            args += [repr(item.limit), repr(item.total), repr(item.keep), repr(item.want),
                     repr(item.window_end + _RETENTION), len(item.settles)]
            for rid, amount in item.settles:
                args += [rid, repr(float(amount))]
        try:
            result = await self._exchange(keys=[PREFIX + item.counter for item in items], args=args)
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        return [Granted(*map(float, row)) for row in result]

    async def put_cut_entry(self, cut_id: str, entry: CutEntry, expires: float) -> None:
        """A cut stream's entry for the worker that waits for it (store/cut_streams.py)."""
        try:
            await self._redis.set(SENT_PREFIX + cut_id, " ".join(map(str, entry)),
                                  ex=max(1, int(expires - time.time())))
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error

    async def take_cut_entry(self, cut_id: str) -> CutEntry | None:
        try:
            found = await self._redis.getdel(SENT_PREFIX + cut_id)
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        if found is None:
            return None
        status, size, first, *usage = found.decode().split(" ", 3)     # the usage: JSON, no spaces
        return CutEntry(int(status), int(size), int(first), usage[0] if usage else "")

    async def put_record(self, kind: str, name: str, value: str, expires: float | None) -> None:
        """A small record (a stored response's owner, a key): `value` under (kind, name)."""
        ttl = None if expires is None else int(expires - time.time())
        try:
            if ttl is not None and ttl <= 0:               # already over: nothing to keep
                await self._redis.delete(f"{RECORD_PREFIX}{kind}:{name}")
                return
            await self._redis.set(f"{RECORD_PREFIX}{kind}:{name}", value, ex=ttl)
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error

    async def first_record(self, kind: str, name: str, value: str, expires: float) -> str:
        """The live record under (kind, name); when there is none, `value` is kept (until
        `expires`) and returned. One script: callers racing for a fresh record agree on one."""
        try:
            found = await self._first_record(keys=[f"{RECORD_PREFIX}{kind}:{name}"],
                                             args=[value, max(1, int(expires - time.time() + 0.999))])
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        return found.decode() if isinstance(found, bytes) else str(found)

    async def publish(self, channel: str, message: str) -> None:
        """`message` to every worker listening on `channel` (Redis pub/sub: at most once)."""
        try:
            await self._redis.publish(CHANNEL_PREFIX + channel, message)
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error

    async def listen(self, channel: str, on_message, on_state) -> None:
        """Calls `on_message(text)` for each message on `channel` until cancelled, and
        `on_state(True)` once subscribed, `on_state(False)` when the subscription is lost
        (a missed message is then possible: the caller forgets what it relied on), trying
        again every second. Its own connection, with no read timeout (it waits)."""
        import asyncio
        while True:
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1.0)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL_PREFIX + channel)
                    on_state(True)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            on_message(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError):
                pass
            finally:
                on_state(False)
                await client.aclose()
            await asyncio.sleep(1.0)

    async def get_record(self, kind: str, name: str) -> str | None:
        try:
            found = await self._redis.get(f"{RECORD_PREFIX}{kind}:{name}")
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        return found.decode() if found is not None else None

    async def get_records(self, kind: str, names: list[str]) -> dict[str, str]:
        """The live records of `names` under `kind` (those that have one), in one MGET."""
        if not names:
            return {}
        try:
            values = await self._redis.mget([f"{RECORD_PREFIX}{kind}:{name}" for name in names])
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        return {name: value.decode() for name, value in zip(names, values) if value is not None}

    async def put_records(self, kind: str, items: list[tuple[str, str]], expires: float | None) -> None:
        """Several records under `kind` at once, in one pipeline."""
        ttl = None if expires is None else int(expires - time.time())
        if ttl is not None and ttl <= 0:                   # already over: nothing to keep
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, value in items:
                    pipe.set(f"{RECORD_PREFIX}{kind}:{name}", value, ex=ttl)
                await pipe.execute()
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error

    async def delete_record(self, kind: str, name: str) -> None:
        try:
            await self._redis.delete(f"{RECORD_PREFIX}{kind}:{name}")
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error

    async def records(self, kind: str) -> list[tuple[str, str]]:
        prefix = f"{RECORD_PREFIX}{kind}:"
        try:
            names = [key async for key in self._redis.scan_iter(match=prefix + "*", count=500)]
            values = await self._redis.mget(names) if names else []
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        return sorted((key.decode()[len(prefix):], value.decode()) for key, value in zip(names, values)
                      if value is not None)

    async def rows(self, now: float | None = None) -> list[CounterRow]:
        now = now or time.time()
        rows = []
        async for key in self._redis.scan_iter(match=PREFIX + "*", count=500):
            spent, held = await self._redis.hmget(key, "spent", "held")
            spent, held = float(spent or 0), float(held or 0)
            ttl = await self._redis.ttl(key)
            rows.append(CounterRow(key.decode()[len(PREFIX):], spent, held, now + max(ttl, 0) - _RETENTION))
        return sorted(rows, key=lambda r: r.counter)

    async def close(self) -> None:
        await self._redis.aclose()
