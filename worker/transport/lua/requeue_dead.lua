#!lua flags=allow-oom
-- Flags: allow-oom. A dead letter moves back to its channel and its record is deleted, which
-- frees memory rather than taking it.
-- Put a dead letter back on its channel, at its priority level, with fresh attempts.
-- KEYS: queue, dead, dead_records, dead_members, attempts, first_attempt, levels index,
-- member levels (cleared: queued, its level is its key's), dead levels.
-- ARGV: id, now, expiry, level key prefix.
-- Uses wrong_type (key_types.lua), keep_for (lifetime.lua) and level_key (levels.lua),
-- prepended when loaded.
local refused = wrong_type({
    KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'hash', KEYS[4], 'hash', KEYS[5], 'hash',
    KEYS[6], 'hash', KEYS[7], 'zset', KEYS[8], 'hash', KEYS[9], 'hash',
})
if refused then return redis.error_reply(refused) end
local member = redis.call('HGET', KEYS[4], ARGV[1])
if not member then return 0 end
-- The ZREM is the first write: Redis 6 (no shebang) checks maxmemory only at the first write
-- and never refuses a ZREM, so this runs there too.
redis.call('ZREM', KEYS[2], ARGV[1])
local level = tonumber(redis.call('HGET', KEYS[9], ARGV[1]) or 0)
local queue = level_key(KEYS[1], ARGV[4], level)
redis.call('ZADD', queue, ARGV[2], member)
redis.call('EXPIRE', queue, ARGV[3])
if level ~= 0 then
    redis.call('HDEL', KEYS[9], ARGV[1])
    redis.call('ZADD', KEYS[7], level, level)
    keep_for(KEYS[7], tonumber(ARGV[3]))
end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], member)
redis.call('HDEL', KEYS[6], member)
redis.call('HDEL', KEYS[8], member)
return 1
