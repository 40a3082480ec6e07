-- Store a dead letter and trim the store to its bounds; returns how many were trimmed.
-- KEYS: inflight, attempts, first_attempt, dead, dead_records, dead_members.
-- ARGV: member, id, now, record JSON, max count, max age in seconds.
local member, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], member)
redis.call('HDEL', KEYS[2], member)
redis.call('HDEL', KEYS[3], member)
redis.call('ZADD', KEYS[4], now, id)
redis.call('HSET', KEYS[5], id, ARGV[4])
redis.call('HSET', KEYS[6], id, member)
local trimmed = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - tonumber(ARGV[6])))
local excess = redis.call('ZCARD', KEYS[4]) - #trimmed - tonumber(ARGV[5])
if excess > 0 then
    local oldest = redis.call('ZRANGE', KEYS[4], #trimmed, #trimmed + excess - 1)
    for _, old in ipairs(oldest) do trimmed[#trimmed + 1] = old end
end
for _, old in ipairs(trimmed) do
    redis.call('ZREM', KEYS[4], old)
    redis.call('HDEL', KEYS[5], old)
    redis.call('HDEL', KEYS[6], old)
end
return #trimmed
