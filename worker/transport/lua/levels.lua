-- Priority levels: a message of priority 0 is queued in the channel key itself, in
-- channels-redis's format; one of priority n (not 0) in `prefix .. n`, a sorted set in the same
-- format on the same host. The index set lists the levels that may hold messages (level ->
-- level), and the member-levels hash the level of every such message while it is leased or
-- delayed (out of its level's key), so a message given back, redelivered or retried returns to
-- its level. A queued message has no entry: the key it is in says its level, and the layer's
-- expiry, which drops queued messages without telling anyone, leaves no entry behind.
local function level_key(queue, prefix, level)
    if level == 0 then return queue end
    return prefix .. level
end
-- The level of each member, in order (0 for members the hash does not know).
local function levels_of(member_levels, members)
    local levels = {}
    local known = #members > 0 and redis.call('EXISTS', member_levels) == 1
    for i, member in ipairs(members) do
        levels[i] = known and tonumber(redis.call('HGET', member_levels, member) or 0) or 0
    end
    return levels
end
-- Put members back at the head of their own levels, keeping their order within each level.
-- keys: {queue, index, member_levels, level prefix}.
local function requeue_by_level(keys, members, now, expiry)
    local levels = levels_of(keys[3], members)
    local groups, order = {}, {}
    for i, member in ipairs(members) do
        local level = levels[i]
        if not groups[level] then
            groups[level] = {}
            order[#order + 1] = level
        end
        table.insert(groups[level], member)
    end
    for _, level in ipairs(order) do
        requeue_at_head(level_key(keys[1], keys[4], level), groups[level], now, expiry)
        if level ~= 0 then
            redis.call('ZADD', keys[2], level, level)
            keep_for(keys[2], expiry)
            -- Queued again: its level is its key's (the next leased pop records it anew).
            for _, member in ipairs(groups[level]) do redis.call('HDEL', keys[3], member) end
        end
    end
    return #members
end
