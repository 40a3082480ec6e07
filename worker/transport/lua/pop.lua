#!lua flags=allow-oom
-- Flags: allow-oom. Taking messages moves them from the channel to their leases, which adds
-- next to nothing; refusing it under maxmemory would stop workers from draining the backlog
-- that fills Redis.
-- KEYS: queue, inflight, attempts, first_attempt, levels index, member levels.
-- ARGV: count, lease deadline (0: no lease), lifetime in seconds of the lease and attempt keys
-- (the lease plus the layer's expiry), level key prefix.
-- Takes the highest priority first: levels above 0 from the top, then the channel key
-- (priority 0), then levels below 0; within a level, the oldest first. Without an index (no
-- message of another priority) that is one ZPOPMIN of the channel key, as before levels.
-- Returns {member, score, member, score, ...} and, for the few members with attempt records,
-- {position (1-based pair), attempts so far, first attempt time ('' when none), ...}: fresh
-- messages cost two reply elements, not four. Then how many messages are left: that read of the
-- queue, after the pop, is also what makes a tracking connection hear of the next change to it
-- (see transport/pop_connection.py). Last, {position, level, ...} for members not at level 0.
-- Uses wrong_type (key_types.lua), keep_for (lifetime.lua) and level_key (levels.lua),
-- prepended when loaded.
local refused = wrong_type({
    KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'hash', KEYS[4], 'hash', KEYS[5], 'zset',
    KEYS[6], 'hash',
})
if refused then return redis.error_reply(refused) end
local wanted = tonumber(ARGV[1])
local popped, levels = {}, {}
local remaining = 0
local function take(level)
    local key = level_key(KEYS[1], ARGV[4], level)
    if #popped < wanted * 2 then
        local got = redis.call('ZPOPMIN', key, wanted - #popped / 2)
        for i = 1, #got, 2 do
            popped[#popped + 1] = got[i]
            popped[#popped + 1] = got[i + 1]
            if level ~= 0 then
                levels[#levels + 1] = #popped / 2
                levels[#levels + 1] = level
            end
        end
    end
    local left = redis.call('ZCARD', key)
    if left == 0 and level ~= 0 then redis.call('ZREM', KEYS[5], level) end
    remaining = remaining + left
end
if redis.call('EXISTS', KEYS[5]) == 0 then
    -- Priority 0 only: its reply as it comes, with no copy.
    popped = redis.call('ZPOPMIN', KEYS[1], wanted)
    remaining = redis.call('ZCARD', KEYS[1])
else
    local known = redis.call('ZREVRANGE', KEYS[5], 0, -1)
    local plain_done = false
    for _, level in ipairs(known) do
        level = tonumber(level)
        if level < 0 and not plain_done then
            take(0)
            plain_done = true
        end
        take(level)
    end
    if not plain_done then take(0) end
end
local deadline = tonumber(ARGV[2])
local lifetime = tonumber(ARGV[3])
local records = {}
for i = 1, #popped, 2 do
    local member = popped[i]
    if deadline > 0 then redis.call('ZADD', KEYS[2], deadline, member) end
    local attempts = redis.call('HGET', KEYS[3], member)
    if attempts then
        records[#records + 1] = (i + 1) / 2
        records[#records + 1] = attempts
        records[#records + 1] = redis.call('HGET', KEYS[4], member) or ''
    end
end
if deadline > 0 and #popped > 0 then keep_for(KEYS[2], lifetime) end
if #records > 0 then
    keep_for(KEYS[3], lifetime)
    keep_for(KEYS[4], lifetime)
end
-- A leased message's level is recorded while it is out of its level's key, so a give-back,
-- redelivery or retry returns it there; without a lease it is settled once taken.
if #levels > 0 and deadline > 0 then
    for i = 1, #levels, 2 do
        redis.call('HSET', KEYS[6], popped[levels[i] * 2 - 1], levels[i + 1])
    end
    keep_for(KEYS[6], lifetime)
end
return {popped, records, remaining, levels}
