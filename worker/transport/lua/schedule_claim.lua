#!lua
-- Flags: none, so Redis 7 refuses it under maxmemory with noeviction: it adds a record.
-- Claim one tick of a schedule for one worker. The claim is a lease: a worker that dies before
-- it marks the tick fired (schedule_fired.lua) leaves a claim that another worker takes over
-- once the lease has run out, so the tick is not lost. Times come from the caller's clock.
-- KEYS: tick, state. ARGV: worker id, now (epoch s), lease (s), keep (s).
-- Returns {verdict, holder}: 'claimed' (by this worker), 'held' (by another, lease running)
-- or 'fired' (done already; holder fired it).
local refused = wrong_type({KEYS[1], 'string', KEYS[2], 'hash'})
if refused then return redis.error_reply(refused) end
local current = redis.call('GET', KEYS[1])
if current then
  local kind, until_s, holder = string.match(current, '^(%a+) (%S+) (.*)$')
  if kind == 'fired' then return {'fired', holder} end
  if kind == 'claimed' and tonumber(until_s) > tonumber(ARGV[2]) then
    return {'held', holder}
  end
end
local until_s = string.format('%.3f', tonumber(ARGV[2]) + tonumber(ARGV[3]))
redis.call('SET', KEYS[1], 'claimed ' .. until_s .. ' ' .. ARGV[1], 'EX', ARGV[4])
return {'claimed', ARGV[1]}
