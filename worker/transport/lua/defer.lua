#!lua
-- Flags: none, so Redis 7 refuses it under maxmemory with noeviction, like send.lua: a deferred
-- send adds a new message.
-- Park a message in the channel's delayed set until it is due; workers move it to the channel
-- then (promote_due.lua), at its priority level. KEYS: delayed, member levels. ARGV: member,
-- due time, lifetime in seconds (from now until the due time plus the layer's expiry), level.
local refused = wrong_type({KEYS[1], 'zset', KEYS[2], 'hash'})
if refused then return redis.error_reply(refused) end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
keep_for(KEYS[1], tonumber(ARGV[3]))
if tonumber(ARGV[4]) ~= 0 then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
    keep_for(KEYS[2], tonumber(ARGV[3]))
end
return 1
