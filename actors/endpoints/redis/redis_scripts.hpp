// The Lua scripts of the Redis endpoint, run with EVAL (redis_commands.cpp
// builds the calls, redis_replies.cpp reads their answers).
#pragma once

namespace hubflow::redis_scripts {

// Values live in a hash {data, version} (Dapr's Redis layout); the version is
// the etag. Each script checks everything before writing anything, so a
// refused bulk save leaves every key as it was.

// A save: every item is set, or (op 'del', a transaction's delete) removed.
inline constexpr const char* save_script = R"lua(
local n = #KEYS
for i = 1, n do
  local b = (i - 1) * 5
  local etag, mode, op = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local cur = redis.call('HGET', KEYS[i], 'version')
  if mode ~= 'last' then
    if etag ~= '' then
      if cur ~= etag then return {'mismatch', i} end
    elseif mode == 'first' and cur and op == 'set' then
      return {'exists', i}
    end
  end
end
for i = 1, n do
  local b = (i - 1) * 5
  if ARGV[b + 3] == 'del' then
    redis.call('DEL', KEYS[i])
  else
    redis.call('HSET', KEYS[i], 'data', ARGV[b + 4])
    redis.call('HINCRBY', KEYS[i], 'version', 1)
    local ttl = tonumber(ARGV[b + 5])
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[i], ttl)
    else
      redis.call('PERSIST', KEYS[i])
    end
  end
end
return {'ok'}
)lua";

inline constexpr const char* get_script = R"lua(
local r = {}
for i = 1, #KEYS do
  r[i] = redis.call('HMGET', KEYS[i], 'data', 'version')
end
return r
)lua";

inline constexpr const char* delete_script = R"lua(
local cur = redis.call('HGET', KEYS[1], 'version')
if ARGV[2] ~= 'last' and ARGV[1] ~= '' and cur ~= ARGV[1] then
  return {'mismatch', 1}
end
redis.call('DEL', KEYS[1])
return {'ok'}
)lua";

// A capped list: push and trim in one atomic step.
inline constexpr const char* capped_push_script = R"lua(
redis.call(ARGV[1], KEYS[1], ARGV[2])
local n = tonumber(ARGV[3])
if ARGV[1] == 'LPUSH' then
  redis.call('LTRIM', KEYS[1], 0, n - 1)
else
  redis.call('LTRIM', KEYS[1], -n, -1)
end
return 1
)lua";

} // namespace hubflow::redis_scripts
