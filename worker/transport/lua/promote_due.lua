#!lua flags=allow-oom
-- Flags: allow-oom. Due retries and deferred sends move from the delayed set to the channel,
-- adding nothing; refused under maxmemory they would wait until memory is freed.
-- KEYS: queue, delayed. ARGV: now, expiry, limit.
-- Uses wrong_type (key_types.lua) and requeue_at_head (requeue_at_head.lua), prepended when
-- loaded.
local refused = wrong_type({KEYS[1], 'zset', KEYS[2], 'zset'})
if refused then return redis.error_reply(refused) end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZREM', KEYS[2], member) end
return requeue_at_head(KEYS[1], due, tonumber(ARGV[1]), tonumber(ARGV[2]))
