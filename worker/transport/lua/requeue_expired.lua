-- Leases that ran out belong to a worker that died (or stalled): count the attempt and put the
-- message back at the head. KEYS: queue, inflight, attempts, first_attempt.
-- ARGV: now, expiry, limit. Returns the members put back.
-- Uses requeue_at_head (requeue_at_head.lua), prepended when loaded.
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(expired) do
    redis.call('ZREM', KEYS[2], member)
    redis.call('HINCRBY', KEYS[3], member, 1)
    redis.call('HSETNX', KEYS[4], member, now)
end
requeue_at_head(KEYS[1], expired, now, tonumber(ARGV[2]))
return expired
