-- Put a dead letter back on its channel with fresh attempts.
-- KEYS: queue, dead, dead_records, dead_members, attempts, first_attempt. ARGV: id, now, expiry.
local member = redis.call('HGET', KEYS[4], ARGV[1])
if not member then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], member)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], member)
redis.call('HDEL', KEYS[6], member)
return 1
