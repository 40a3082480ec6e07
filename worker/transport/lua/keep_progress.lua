#!lua
-- Flags: none, so Redis 7 refuses it under maxmemory with noeviction: it adds a record.
-- Keep a task's last progress report for as long as its result lives; a task whose result is
-- gone (expired, or never stored) keeps nothing. Returns 1 when kept, 0 when not.
-- KEYS: result, progress. ARGV: the report as JSON.
local refused = wrong_type({KEYS[2], 'string'})
if refused then return redis.error_reply(refused) end
local ttl_ms = redis.call('PTTL', KEYS[1])
if ttl_ms <= 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl_ms)
return 1
