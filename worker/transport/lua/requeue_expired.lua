#!lua flags=allow-oom
-- Flags: allow-oom. The messages of a dead worker's leases move back to the channel, adding
-- only an attempt count; refused under maxmemory they would be stranded while Redis is full.
-- Leases that ran out belong to a worker that died (or stalled): count the attempt and put the
-- message back at the head of its priority level. KEYS: queue, inflight, attempts,
-- first_attempt, levels index, member levels. ARGV: now, expiry, limit, level key prefix.
-- Returns the members put back.
-- Uses wrong_type (key_types.lua), keep_for (lifetime.lua) and requeue_by_level (levels.lua),
-- prepended when loaded.
local refused = wrong_type({
    KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'hash', KEYS[4], 'hash', KEYS[5], 'zset',
    KEYS[6], 'hash',
})
if refused then return redis.error_reply(refused) end
local now, expiry = tonumber(ARGV[1]), tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(expired) do
    redis.call('ZREM', KEYS[2], member)
    redis.call('HINCRBY', KEYS[3], member, 1)
    redis.call('HSETNX', KEYS[4], member, now)
end
if #expired > 0 then
    -- Back on the channel, a message lives at most `expiry` unless a worker takes it, and
    -- taking it refreshes these (pop.lua).
    keep_for(KEYS[3], expiry)
    keep_for(KEYS[4], expiry)
end
requeue_by_level({KEYS[1], KEYS[5], KEYS[6], ARGV[4]}, expired, now, expiry)
return expired
