#!lua flags=allow-oom
-- Flags: allow-oom: it settles a claim already stored, so a full Redis does not make a tick
-- that was sent look unsent.
-- Settle a claimed tick: mark it fired and record the run in the schedule's state, or, when
-- the send failed, give the claim up so another worker may try. Only the claim's holder may.
-- KEYS: tick, state. ARGV: worker id, tick (epoch s), now (epoch s), outcome, result id,
-- keep (s), state lifetime (s), 'fired' or 'failed'.
-- Returns 1 when settled, 0 when the claim was no longer this worker's.
local refused = wrong_type({KEYS[1], 'string', KEYS[2], 'hash'})
if refused then return redis.error_reply(refused) end
local current = redis.call('GET', KEYS[1])
if current then
  local kind, _, holder = string.match(current, '^(%a+) (%S+) (.*)$')
  if kind ~= 'claimed' or holder ~= ARGV[1] then return 0 end
end
if ARGV[8] == 'failed' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'last_error', ARGV[4], 'last_error_at', ARGV[3])
else
  redis.call('SET', KEYS[1], 'fired ' .. ARGV[3] .. ' ' .. ARGV[1], 'EX', ARGV[6])
  redis.call('HSET', KEYS[2], 'last_tick', ARGV[2], 'last_run_at', ARGV[3], 'last_worker',
    ARGV[1], 'last_outcome', ARGV[4], 'last_result_id', ARGV[5])
end
redis.call('EXPIRE', KEYS[2], ARGV[7])
return 1
