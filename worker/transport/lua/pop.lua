-- KEYS: queue, inflight, attempts, first_attempt. ARGV: count, lease deadline (0: no lease).
-- Returns {member, score, member, score, ...} and, for the few members with attempt records,
-- {position (1-based pair), attempts so far, first attempt time ('' when none), ...}: fresh
-- messages cost two reply elements, not four. Then how many messages are left: that read of the
-- queue, after the pop, is also what makes a tracking connection hear of the next change to it
-- (see transport/pop_connection.py).
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local deadline = tonumber(ARGV[2])
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
return {popped, records, redis.call('ZCARD', KEYS[1])}
