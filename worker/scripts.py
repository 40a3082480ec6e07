"""Lua scripts that move messages between a channel and the worker's keys atomically.

Members are channels-redis's serialised messages, moved byte for byte, so the layer's format,
prefix and encryption are untouched. Each script touches the keys of one channel on one host.
"""

from __future__ import annotations

# Put members at the head of the channel, ahead of everything queued, scored inside the layer's
# unexpired window: senders trim scores <= floor(now) - expiry on every send, and the key expires
# `expiry` seconds after the last write, so both are refreshed here.
_REQUEUE_AT_HEAD = """
local function requeue_at_head(queue, members, now, expiry)
    local count = #members
    if count == 0 then return 0 end
    local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
    local first = now
    if head[2] and tonumber(head[2]) < first then first = tonumber(head[2]) end
    local step = 0.00001
    local base = math.max(first - count * step, math.floor(now) - expiry + 1)
    for i = 1, count do
        redis.call('ZADD', queue, base + (i - 1) * step, members[i])
    end
    redis.call('EXPIRE', queue, expiry)
    return count
end
"""

# KEYS: queue, inflight, attempts, first_attempt. ARGV: count, lease deadline (0: no lease).
# Returns {member, score, member, score, ...} and, for the few members with attempt records,
# {position (1-based pair), attempts so far, first attempt time ('' when none), ...}: fresh
# messages cost two reply elements, not four. Then how many messages are left: that read of the
# queue, after the pop, is also what makes a tracking connection hear of the next change to it
# (see worker.pop_connection).
POP = """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local deadline = tonumber(ARGV[2])
local records = {}
for i = 1, #popped, 2 do
    local member = popped[i]
    if deadline > 0 then redis.call('ZADD', KEYS[2], deadline, member) end
    local attempts = redis.call('HGET', KEYS[3], member)
    if attempts then
        records[#records + 1] = (i + 1) / 2
        records[#records + 1] = attempts
        records[#records + 1] = redis.call('HGET', KEYS[4], member) or ''
    end
end
return {popped, records, redis.call('ZCARD', KEYS[1])}
"""

# KEYS: queue, inflight. ARGV: now, expiry, members in delivery order.
GIVE_BACK = (
    _REQUEUE_AT_HEAD
    + """
local members = {}
for i = 3, #ARGV do
    members[#members + 1] = ARGV[i]
    redis.call('ZREM', KEYS[2], ARGV[i])
end
return requeue_at_head(KEYS[1], members, tonumber(ARGV[1]), tonumber(ARGV[2]))
"""
)

# Leases that ran out belong to a worker that died (or stalled): count the attempt and put the
# message back at the head. KEYS: queue, inflight, attempts, first_attempt.
# ARGV: now, expiry, limit. Returns the members put back.
REQUEUE_EXPIRED = (
    _REQUEUE_AT_HEAD
    + """
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(expired) do
    redis.call('ZREM', KEYS[2], member)
    redis.call('HINCRBY', KEYS[3], member, 1)
    redis.call('HSETNX', KEYS[4], member, now)
end
requeue_at_head(KEYS[1], expired, now, tonumber(ARGV[2]))
return expired
"""
)

# KEYS: inflight, delayed, attempts, first_attempt. ARGV: member, due time, first attempt time.
SCHEDULE_RETRY = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[3])
return 1
"""

# KEYS: queue, delayed. ARGV: now, expiry, limit.
PROMOTE_DUE = (
    _REQUEUE_AT_HEAD
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZREM', KEYS[2], member) end
return requeue_at_head(KEYS[1], due, tonumber(ARGV[1]), tonumber(ARGV[2]))
"""
)

# Store a dead letter and trim the store to its bounds; returns how many were trimmed.
# KEYS: inflight, attempts, first_attempt, dead, dead_records, dead_members.
# ARGV: member, id, now, record JSON, max count, max age in seconds.
DEAD_LETTER = """
local member, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], member)
redis.call('HDEL', KEYS[2], member)
redis.call('HDEL', KEYS[3], member)
redis.call('ZADD', KEYS[4], now, id)
redis.call('HSET', KEYS[5], id, ARGV[4])
redis.call('HSET', KEYS[6], id, member)
local trimmed = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - tonumber(ARGV[6])))
local excess = redis.call('ZCARD', KEYS[4]) - #trimmed - tonumber(ARGV[5])
if excess > 0 then
    local oldest = redis.call('ZRANGE', KEYS[4], #trimmed, #trimmed + excess - 1)
    for _, old in ipairs(oldest) do trimmed[#trimmed + 1] = old end
end
for _, old in ipairs(trimmed) do
    redis.call('ZREM', KEYS[4], old)
    redis.call('HDEL', KEYS[5], old)
    redis.call('HDEL', KEYS[6], old)
end
return #trimmed
"""

# Put a dead letter back on its channel with fresh attempts.
# KEYS: queue, dead, dead_records, dead_members, attempts, first_attempt. ARGV: id, now, expiry.
REQUEUE_DEAD = """
local member = redis.call('HGET', KEYS[4], ARGV[1])
if not member then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], member)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], member)
redis.call('HDEL', KEYS[6], member)
return 1
"""
