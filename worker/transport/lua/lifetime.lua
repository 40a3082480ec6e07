-- Every key the worker writes expires: it lives at least `seconds` more, never less than an
-- earlier write asked for (a retry due in an hour keeps the records of its message), and a key
-- nobody writes again goes away on its own (docs/delivery.md, "How long the worker's keys
-- last"). The EXPIRE is sent even when it changes nothing: on Redis 6, which runs the scripts
-- without their shebang, a script's first write decides whether maxmemory is checked, and
-- EXPIRE is a write it never refuses.
local function keep_for(key, seconds)
    local ttl = redis.call('TTL', key)
    if ttl ~= -2 then redis.call('EXPIRE', key, math.max(ttl, seconds)) end
end
