-- A task's result record: stored for ttl seconds, listed in its host's index of recently changed
-- results (trimmed to its bound only when over it, and living as long as the record written
-- last), its last progress report, if any, kept as long as the result.
local function store_record(result, recent, progress, record, ttl, id, now, bound)
    redis.call('SET', result, record, 'EX', ttl)
    redis.call('ZADD', recent, now, id)
    bound = tonumber(bound)
    if redis.call('ZCARD', recent) > bound then
        redis.call('ZREMRANGEBYRANK', recent, 0, -bound - 1)
    end
    redis.call('EXPIRE', recent, ttl)
    redis.call('EXPIRE', progress, ttl)
end
