#!lua flags=allow-oom
-- Flags: allow-oom. A lease heartbeat only moves deadlines; refused under maxmemory, the leases
-- of live workers would run out and their messages would be handled twice.
-- Push the leases of messages this worker still holds (ZADD XX: never re-creates a lease that
-- was settled meanwhile) and keep the keys that describe them alive as long as the leases.
-- KEYS: inflight, attempts, first_attempt, member levels. ARGV: lease deadline, lifetime in
-- seconds (the lease plus the layer's expiry), members.
-- Uses wrong_type (key_types.lua) and keep_for (lifetime.lua), prepended when loaded.
local refused = wrong_type({KEYS[1], 'zset', KEYS[2], 'hash', KEYS[3], 'hash', KEYS[4], 'hash'})
if refused then return redis.error_reply(refused) end
-- No leases at all: nothing to extend (and ZADD XX would be this script's first write).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local lifetime = tonumber(ARGV[2])
-- Before the ZADDs: its EXPIRE is the first write, which Redis 6 never refuses (lifetime.lua).
keep_for(KEYS[1], lifetime)
local with_records = false
for i = 3, #ARGV do
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
    if not with_records and redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
        with_records = true
    end
end
if with_records then
    keep_for(KEYS[2], lifetime)
    keep_for(KEYS[3], lifetime)
end
-- keep_for does nothing to a key that does not exist (no message of another priority).
keep_for(KEYS[4], lifetime)
return 1
