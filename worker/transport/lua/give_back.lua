-- KEYS: queue, inflight. ARGV: now, expiry, members in delivery order.
-- Uses requeue_at_head (requeue_at_head.lua), prepended when loaded.
local members = {}
for i = 3, #ARGV do
    members[#members + 1] = ARGV[i]
    redis.call('ZREM', KEYS[2], ARGV[i])
end
return requeue_at_head(KEYS[1], members, tonumber(ARGV[1]), tonumber(ARGV[2]))
