#!lua
-- Flags: none, so Redis 7 refuses the script under maxmemory with noeviction (an OOM error
-- reply), exactly as it refuses the layer's own ZADD: a new message is what fills Redis, and
-- nothing is written before the refusal.
-- channels-redis's send in one round trip: refuse at capacity, add the member scored by its
-- send time, drop expired members, refresh the key's expiry. KEYS: channel key.
-- ARGV: expired cutoff, capacity, member, score, expiry. Returns 1 when sent, 0 when full.
-- The count comes first and the ZADD is the first write: Redis 6, which runs this without its
-- shebang, checks maxmemory only at a script's first write, and only for a write that can
-- grow memory.
local live = redis.call('ZCARD', KEYS[1]) - redis.call('ZCOUNT', KEYS[1], 0, ARGV[1])
if live >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
