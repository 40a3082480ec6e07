#!lua flags=allow-oom
-- Flags: allow-oom. Taking messages moves them from the channel to their leases, which adds
-- next to nothing; refusing it under maxmemory would stop workers from draining the backlog
-- that fills Redis.
-- KEYS: queue, inflight, attempts, first_attempt. ARGV: count, lease deadline (0: no lease),
-- lifetime in seconds of the lease and attempt keys (the lease plus the layer's expiry).
-- Returns {member, score, member, score, ...} and, for the few members with attempt records,
-- {position (1-based pair), attempts so far, first attempt time ('' when none), ...}: fresh
-- messages cost two reply elements, not four. Then how many messages are left: that read of the
-- queue, after the pop, is also what makes a tracking connection hear of the next change to it
-- (see transport/pop_connection.py).
-- Uses wrong_type (key_types.lua) and keep_for (lifetime.lua), prepended when loaded.
local refused = wrong_type({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'hash', KEYS[4], 'hash'})
if refused then return redis.error_reply(refused) end
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local deadline = tonumber(ARGV[2])
local lifetime = tonumber(ARGV[3])
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
if deadline > 0 and #popped > 0 then keep_for(KEYS[2], lifetime) end
if #records > 0 then
    keep_for(KEYS[3], lifetime)
    keep_for(KEYS[4], lifetime)
end
return {popped, records, redis.call('ZCARD', KEYS[1])}
