#!lua flags=allow-oom
-- Flags: allow-oom. Due retries and deferred sends move from the delayed set to the channel,
-- adding nothing; refused under maxmemory they would wait until memory is freed.
-- Each goes to the head of its own priority level.
-- KEYS: queue, delayed, levels index, member levels. ARGV: now, expiry, limit, level key prefix.
-- Returns how many moved and the due time of the earliest one left (false when none is left).
-- Uses wrong_type (key_types.lua) and requeue_by_level (levels.lua), prepended when loaded.
local refused = wrong_type({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'hash'})
if refused then return redis.error_reply(refused) end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZREM', KEYS[2], member) end
local keys = {KEYS[1], KEYS[3], KEYS[4], ARGV[4]}
local moved = requeue_by_level(keys, due, tonumber(ARGV[1]), tonumber(ARGV[2]))
local earliest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {moved, earliest[2] or false}
