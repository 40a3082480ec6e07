"""Redis: key names, Lua scripts, channel queues, pop connections, arrival notices, layers."""
