#!lua
-- Flags: none, so Redis 7 refuses it under maxmemory with noeviction, like send.lua: a deferred
-- send adds a new message.
-- Park a message in the channel's delayed set until it is due; workers move it to the channel
-- then (promote_due.lua), at its priority level. KEYS: delayed, member levels; for a task, then
-- result, recent index, progress. ARGV: member, due time, lifetime in seconds (from now until
-- the due time plus the layer's expiry), level; for a task, then its result record as in
-- send.lua, stored first (store_record, result_record.lua).
local refused = wrong_type({KEYS[1], 'zset', KEYS[2], 'hash', KEYS[4] or KEYS[1], 'zset'})
if refused then return redis.error_reply(refused) end
if KEYS[3] then
    store_record(KEYS[3], KEYS[4], KEYS[5], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
keep_for(KEYS[1], tonumber(ARGV[3]))
if tonumber(ARGV[4]) ~= 0 then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
    keep_for(KEYS[2], tonumber(ARGV[3]))
end
return 1
