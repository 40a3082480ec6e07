#!lua
-- Flags: none, so Redis 7 refuses it under maxmemory with noeviction: a result is new data, as
-- a send is. The GET comes first and the SET is the first write, so Redis 6 (no shebang) checks
-- maxmemory at the SET.
-- Store a task's result record for ttl seconds, list it in the host's index of recently changed
-- results (trimmed to its bound only when over it, and living as long as the record written
-- last) and keep its last progress report, if any, as long as the result.
-- KEYS: result, recent index, progress. ARGV: record (JSON), ttl seconds, result id, time of the
-- change, index bound, 1 to return the record replaced.
-- Returns the record replaced when asked (false when there was none), else false.
local replaced = false
if ARGV[6] == '1' then replaced = redis.call('GET', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
local bound = tonumber(ARGV[5])
if redis.call('ZCARD', KEYS[2]) > bound then
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -bound - 1)
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return replaced
