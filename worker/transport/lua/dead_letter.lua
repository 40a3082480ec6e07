#!lua flags=allow-oom
-- Flags: allow-oom. A message moves from its lease to the dead-letter store, with a record of
-- bounded size, and the store is trimmed to its bounds; refused under maxmemory, the worker
-- could not settle the message and it would be handled again when its lease ran out.
-- Store a dead letter and trim the store to its bounds; returns how many were trimmed.
-- KEYS: inflight, attempts, first_attempt, dead, dead_records, dead_members, member levels,
-- dead levels (the priority level of a letter not from level 0, for requeue_dead.lua).
-- ARGV: member, 1 to keep the member (0: too large to keep, see dead_letters.py), id, now,
-- record JSON, max count, max age in seconds, its priority level (0: the one recorded under its
-- lease, if any; a message taken without a lease has no record).
-- Uses wrong_type (key_types.lua) and keep_for (lifetime.lua), prepended when loaded.
local refused = wrong_type({
    KEYS[1], 'zset', KEYS[2], 'hash', KEYS[3], 'hash', KEYS[4], 'zset', KEYS[5], 'hash',
    KEYS[6], 'hash', KEYS[7], 'hash', KEYS[8], 'hash',
})
if refused then return redis.error_reply(refused) end
local member, keep, id, now = ARGV[1], ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])
redis.call('ZREM', KEYS[1], member)
redis.call('HDEL', KEYS[2], member)
redis.call('HDEL', KEYS[3], member)
local level = redis.call('HGET', KEYS[7], member)
redis.call('HDEL', KEYS[7], member)
if tonumber(ARGV[8]) ~= 0 then level = ARGV[8] end
if level then redis.call('HSET', KEYS[8], id, level) end
redis.call('ZADD', KEYS[4], now, id)
redis.call('HSET', KEYS[5], id, ARGV[5])
if keep then redis.call('HSET', KEYS[6], id, member) end
local trimmed = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - tonumber(ARGV[7])))
local excess = redis.call('ZCARD', KEYS[4]) - #trimmed - tonumber(ARGV[6])
if excess > 0 then
    local oldest = redis.call('ZRANGE', KEYS[4], #trimmed, #trimmed + excess - 1)
    for _, old in ipairs(oldest) do trimmed[#trimmed + 1] = old end
end
for _, old in ipairs(trimmed) do
    redis.call('ZREM', KEYS[4], old)
    redis.call('HDEL', KEYS[5], old)
    redis.call('HDEL', KEYS[6], old)
    redis.call('HDEL', KEYS[8], old)
end
-- Trimming happens only when a letter is added: once none come, the whole store goes when
-- its newest letter reaches the max age.
local max_age = math.ceil(tonumber(ARGV[7]))
for i = 4, 6 do redis.call('EXPIRE', KEYS[i], max_age) end
keep_for(KEYS[8], max_age)
return #trimmed
