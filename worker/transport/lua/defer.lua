#!lua
-- Flags: none, so Redis 7 refuses it under maxmemory with noeviction, like send.lua: a deferred
-- send adds a new message.
-- Park a message in the channel's delayed set until it is due; workers move it to the channel
-- then (promote_due.lua). KEYS: delayed. ARGV: member, due time, lifetime in seconds (from now
-- until the due time plus the layer's expiry).
local refused = wrong_type({KEYS[1], 'zset'})
if refused then return redis.error_reply(refused) end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
keep_for(KEYS[1], tonumber(ARGV[3]))
return 1
