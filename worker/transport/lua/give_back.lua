#!lua flags=allow-oom
-- Flags: allow-oom. Giving messages back moves them from their leases to the channel, adding
-- nothing; refused under maxmemory, a stopping worker's messages would wait for their leases
-- to run out and count an attempt they never had.
-- KEYS: queue, inflight. ARGV: now, expiry, members in delivery order.
-- Uses wrong_type (key_types.lua) and requeue_at_head (requeue_at_head.lua), prepended when
-- loaded.
local refused = wrong_type({KEYS[1], 'zset', KEYS[2], 'zset'})
if refused then return redis.error_reply(refused) end
local members = {}
for i = 3, #ARGV do
    members[#members + 1] = ARGV[i]
    redis.call('ZREM', KEYS[2], ARGV[i])
end
return requeue_at_head(KEYS[1], members, tonumber(ARGV[1]), tonumber(ARGV[2]))
