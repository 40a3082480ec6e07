#!lua flags=allow-oom
-- Flags: allow-oom. Giving messages back moves them from their leases to the channel, adding
-- nothing; refused under maxmemory, a stopping worker's messages would wait for their leases
-- to run out and count an attempt they never had.
-- Each message goes back to the head of its own priority level.
-- KEYS: queue, inflight, levels index, member levels. ARGV: now, expiry, level key prefix,
-- members in delivery order.
-- Uses wrong_type (key_types.lua) and requeue_by_level (levels.lua), prepended when loaded.
local refused = wrong_type({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'hash'})
if refused then return redis.error_reply(refused) end
local members = {}
for i = 4, #ARGV do
    members[#members + 1] = ARGV[i]
    redis.call('ZREM', KEYS[2], ARGV[i])
end
local keys = {KEYS[1], KEYS[3], KEYS[4], ARGV[3]}
return requeue_by_level(keys, members, tonumber(ARGV[1]), tonumber(ARGV[2]))
