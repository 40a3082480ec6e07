#!lua flags=allow-oom
-- Flags: allow-oom. A dead letter moves back to its channel and its record is deleted, which
-- frees memory rather than taking it.
-- Put a dead letter back on its channel with fresh attempts.
-- KEYS: queue, dead, dead_records, dead_members, attempts, first_attempt. ARGV: id, now, expiry.
-- Uses wrong_type (key_types.lua), prepended when loaded.
local refused = wrong_type({
    KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'hash', KEYS[4], 'hash', KEYS[5], 'hash',
    KEYS[6], 'hash',
})
if refused then return redis.error_reply(refused) end
local member = redis.call('HGET', KEYS[4], ARGV[1])
if not member then return 0 end
-- The ZREM is the first write: Redis 6 (no shebang) checks maxmemory only at the first write
-- and never refuses a ZREM, so this runs there too.
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], member)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], member)
redis.call('HDEL', KEYS[6], member)
return 1
