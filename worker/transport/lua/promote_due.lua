-- KEYS: queue, delayed. ARGV: now, expiry, limit.
-- Uses requeue_at_head (requeue_at_head.lua), prepended when loaded.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZREM', KEYS[2], member) end
return requeue_at_head(KEYS[1], due, tonumber(ARGV[1]), tonumber(ARGV[2]))
