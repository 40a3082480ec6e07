-- KEYS: inflight, delayed, attempts, first_attempt. ARGV: member, due time, first attempt time.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[3])
return 1
