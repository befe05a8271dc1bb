#!lua name=rlfsbench
-- One GCRA decision (redis-cell's rule, as a yardstick for the cost of a
-- grant): the key holds the theoretical arrival time, µs. ARGV 1 the
-- emission interval, 2 the burst. Replies {1, 0} if admitted, else {0,
-- how long to wait}. Test-only: meter/redis's cost test loads it.
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
