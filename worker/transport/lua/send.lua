#!lua
-- Flags: none, so Redis 7 refuses the script under maxmemory with noeviction (an OOM error
-- reply), exactly as it refuses the layer's own ZADD: a new message is what fills Redis, and
-- nothing is written before the refusal.
-- channels-redis's send in one round trip: refuse at capacity (counting every priority level
-- of the channel), add the member scored by its send time, drop expired members, refresh the
-- key's expiry. Priority 0 goes to the channel key exactly as channels-redis's send; another
-- level to its own key (levels.lua), recorded in the index. A queued message's level is the key
-- it is in: nothing else records it, so nothing outlives it when the layer's expiry drops it.
-- A task's send also stores its result record (store_record, result_record.lua) when the channel
-- has room, so enqueue() is one command and a refused send leaves no result behind.
-- KEYS: channel key, levels index; for a task, then result, recent index, progress. ARGV:
-- expired cutoff, capacity, member, score, expiry, level, level key prefix; for a task, then
-- record, ttl seconds, result id, time, index bound. Returns 1 when sent, 0 when full.
-- The counts come first and the first write (SET or ZADD) grows memory: Redis 6, which runs
-- this without its shebang, checks maxmemory only at a script's first write, and only for a
-- write that can grow memory.
-- Uses keep_for (lifetime.lua), level_key (levels.lua), store_record (result_record.lua) and
-- wrong_type (key_types.lua), prepended when loaded.
local cutoff, level = ARGV[1], tonumber(ARGV[6])
local function live(key)
    return redis.call('ZCARD', key) - redis.call('ZCOUNT', key, 0, cutoff)
end
local count = live(KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
    for _, other in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
        count = count + live(ARGV[7] .. other)
    end
end
if count >= tonumber(ARGV[2]) then return 0 end
local key = level_key(KEYS[1], ARGV[7], level)
if KEYS[3] then
    -- The record is written first: every key written after it must take its write.
    local refused = wrong_type({key, 'zset', KEYS[2], 'zset', KEYS[4], 'zset'})
    if refused then return redis.error_reply(refused) end
    store_record(KEYS[3], KEYS[4], KEYS[5], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
end
redis.call('ZADD', key, ARGV[4], ARGV[3])
if level ~= 0 then
    redis.call('ZADD', KEYS[2], level, level)
    keep_for(KEYS[2], tonumber(ARGV[5]))
end
redis.call('ZREMRANGEBYSCORE', key, 0, cutoff)
redis.call('EXPIRE', key, ARGV[5])
return 1
