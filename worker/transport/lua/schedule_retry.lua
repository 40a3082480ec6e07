#!lua flags=allow-oom
-- Flags: allow-oom. A failed message moves from its lease to the delayed set, adding only its
-- attempt count; refused under maxmemory, the worker could not settle the failure and the
-- message would be handled again when its lease ran out.
-- KEYS: inflight, delayed, attempts, first_attempt, member levels. ARGV: member, due time,
-- first attempt time, lifetime in seconds (from now until the due time plus the layer's
-- expiry), its priority level. The level is recorded (a message taken without a lease has no
-- record yet), so promote_due.lua returns it to that level.
-- Uses wrong_type (key_types.lua) and keep_for (lifetime.lua), prepended when loaded.
local refused = wrong_type({
    KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'hash', KEYS[4], 'hash', KEYS[5], 'hash',
})
if refused then return redis.error_reply(refused) end
local lifetime = tonumber(ARGV[4])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[3])
if tonumber(ARGV[5]) ~= 0 then redis.call('HSET', KEYS[5], ARGV[1], ARGV[5]) end
keep_for(KEYS[2], lifetime)
keep_for(KEYS[3], lifetime)
keep_for(KEYS[4], lifetime)
keep_for(KEYS[5], lifetime)
return 1
