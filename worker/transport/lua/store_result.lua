#!lua
-- Flags: none, so Redis 7 refuses it under maxmemory with noeviction: a result is new data, as
-- a send is. The type check and the GET come first and the SET is the first write, so Redis 6
-- (no shebang) checks maxmemory at the SET.
-- Store a task's result record (store_record, result_record.lua).
-- KEYS: result, recent index, progress. ARGV: record (JSON), ttl seconds, result id, time of the
-- change, index bound, 1 to return the record replaced.
-- Returns the record replaced when asked (false when there was none), else false.
local refused = wrong_type({KEYS[2], 'zset'})
if refused then return redis.error_reply(refused) end
local replaced = false
if ARGV[6] == '1' then replaced = redis.call('GET', KEYS[1]) end
store_record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return replaced
