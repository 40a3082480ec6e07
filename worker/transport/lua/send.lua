-- channels-redis's send in one round trip: drop expired members, refuse at capacity, add the
-- member scored by its send time, refresh the key's expiry. KEYS: channel key.
-- ARGV: expired cutoff, capacity, member, score, expiry. Returns 1 when sent, 0 when full.
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
if redis.call('ZCOUNT', KEYS[1], '-inf', '+inf') >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
