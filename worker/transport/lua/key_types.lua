-- Redis does not undo a script's earlier writes when a later command fails, so a script that
-- removed a message from one key and then failed to write it to another (a key of the wrong
-- type) would lose it. Every script checks the types of the keys it writes before its first
-- write, with this function, and refuses with an error naming the key instead.
-- expected: {key, type, key, type, ...}. Returns the error text, or nil when all are right.
local function wrong_type(expected)
    for i = 1, #expected, 2 do
        local key, wanted = expected[i], expected[i + 1]
        local actual = redis.call('TYPE', key)['ok']
        if actual ~= 'none' and actual ~= wanted then
            return 'WRONGTYPE key ' .. key .. ' holds a ' .. actual .. ', where channel-worker ' ..
                'keeps a ' .. wanted .. '; nothing was moved. Rename or delete that key ' ..
                '(something other than channel-worker wrote it)'
        end
    end
    return nil
end
