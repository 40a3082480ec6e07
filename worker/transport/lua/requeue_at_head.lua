-- Put members at the head of the channel, ahead of everything queued, scored inside the layer's
-- unexpired window: senders trim scores <= floor(now) - expiry on every send, and the key expires
-- `expiry` seconds after the last write, so both are refreshed here.
local function requeue_at_head(queue, members, now, expiry)
    local count = #members
    if count == 0 then return 0 end
    local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
    local first = now
    if head[2] and tonumber(head[2]) < first then first = tonumber(head[2]) end
    local step = 0.00001
    local base = math.max(first - count * step, math.floor(now) - expiry + 1)
    for i = 1, count do
        redis.call('ZADD', queue, base + (i - 1) * step, members[i])
    end
    redis.call('EXPIRE', queue, expiry)
    return count
end
