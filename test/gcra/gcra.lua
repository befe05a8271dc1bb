#!lua name=rlfsbench
-- Yardsticks for the cost of a grant (issue 17): one GCRA decision, the
-- rule redis-cell and redis_rate run. Test-only: meter/redis's cost tests
-- and the bench's fleet step load this library beside rlfs's.

-- rlfsbench_gcra is the bare rule: the key holds the theoretical arrival
-- time (TAT), µs. ARGV 1 the emission interval, 2 the burst. Replies {1, 0}
-- if admitted, else {0, how long to wait}. Three commands, two numbers.
redis.register_function('rlfsbench_gcra', function(K, A)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local tat = tonumber(redis.call('GET', K[1]) or 0)
  local interval, burst = tonumber(A[1]), tonumber(A[2])
  if tat < now then tat = now end
  if tat - now > interval * (burst - 1) then return {0, tat - now} end
  redis.call('SET', K[1], tat + interval)
  return {1, 0}
end)

-- rlfsbench_gcra_rate is the same rule as a limiter library serves it
-- (the shape of redis_rate's allow_n, written here from its
-- description: the same work, not its code): ARGV 1 the burst, 2 the rate, 3 its period (s), 4 the
-- cost; the TAT in seconds; the key expires when the limiter would be
-- full again (an idle limiter leaves nothing behind); the reply says how
-- many were allowed, how many remain, and (as strings) when to retry (-1:
-- now) and when the limiter is full again, which a client turns into
-- RateLimit headers.
redis.register_function('rlfsbench_gcra_rate', function(K, A)
  local burst, rate, period, cost = tonumber(A[1]), tonumber(A[2]), tonumber(A[3]), tonumber(A[4])
  local interval = period / rate
  local t = redis.call('TIME')
  local now = (tonumber(t[1]) - 1700000000) + tonumber(t[2]) / 1000000
  local tat = tonumber(redis.call('GET', K[1]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - interval * burst
  local remaining = math.floor((now - allow_at) / interval + 0.5)
  if remaining < 0 then
    return {0, 0, tostring(allow_at - now + interval), tostring(tat - now)}
  end
  local reset = new_tat - now
  if reset > 0 then redis.call('SET', K[1], new_tat, 'EX', math.ceil(reset)) end
  return {cost, remaining, tostring(-1), tostring(reset)}
end)
