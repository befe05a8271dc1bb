#!lua name=rlfs1
-- rlfs's fleet store: the admission rule, the FIFO queue, releases,
-- settlements and host leases of one meter, run atomically by Redis.
--
-- Every function takes the keys of one meter (they share one hash tag, so
-- the library works on Redis Cluster):
--   KEYS[1] m  hash: spec fields, owner, counters, time high-water mark, history,
--              quiet (nothing is granted before it: a meter put back after the
--              store lost its data waits for every live host to put back its calls),
--              and the run id of the server that served the meter last (run)
--   KEYS[2] c  hash: call id -> call record (in progress, or still counting)
--   KEYS[3] q  sorted set: the queue, score and member = arrival number (seq)
--   KEYS[4] w  hash: seq -> waiter record
--   KEYS[5] h  hash: host -> "lease expiry,incarnation,waiters"
--   KEYS[6] d  hash: data file name -> content (rmdir deletes it)
--   KEYS[7] t  hash: "host:inc:ticket" -> seq of a queued waiter
--   KEYS[8] dm hash: data file name -> "size,mtime" (µs)
--   KEYS[9] p  sorted set: the history, one group of retired calls per
--              member "seq:n:first:granted:done:units" of score seq, oldest
--              first (a sorted set rather than a list: the ACL of
--              docs/fleet.md allows its commands already)
-- and ARGV[1] = the channel prefix, ARGV[2] = "" (the server's TIME) or an
-- instant in microseconds (tests only: the store sends one only when it was
-- given a test clock). All times are microseconds since the Unix epoch.
--
-- Records (fields separated by commas):
--   call:   granted,done,expired,ticket,cost,actual,host,inc,pid,uid,gid,held
--           done 0 = in progress; actual -1 = not settled (the cost stands);
--           held (0: none) = when max_hold ended the call in progress, fixed
--           when a limits write changes max_hold (meter.Meter.SetSpec
--           expires the holds first, too); done 0 with expired 1 = ended by
--           max_hold and retired into the history (past) like any completed
--           call (as meter.State.Retire does), the record kept only to show
--           the holder until it releases: the rule skips it
--   waiter: host,inc,ticket,since,cost,pid,uid,gid
--   past:   n:first:granted:done:units  (a group of n retired calls, kept in
--           p; the meter hash held them as one string "g;g;..." before,
--           which open moves to p)
-- The rule mirrors meter.Admit, meter.State.Retire and meter.Meter's queue;
-- meter/redis's differential test keeps the two equal.

local function split(s, sep)
  local out, i = {}, 1
  while true do
    local j = string.find(s, sep, i, true)
    if not j then out[#out + 1] = string.sub(s, i); return out end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local function num(x) return tonumber(x) or 0 end

-- int prints a number as an integer: Lua's own conversion writes large ones
-- (microseconds since the epoch) in exponent notation.
local function int(n) return string.format('%.0f', n) end

-- Spec ---------------------------------------------------------------------

-- spec reads the rule's fields of the meter hash (written by rlfs1_create
-- and rlfs1_setspec): windows "n:per:units;...", conc, bucket rn/rper/burst,
-- units bucket un/uper/uburst, bygrant, mhold, mwaiters.
local function spec_of(f)
  local s = {conc = num(f.conc), bygrant = f.bygrant == '1', mhold = num(f.mhold),
             mwaiters = num(f.mwaiters), windows = {}}
  if f.win and f.win ~= '' then
    for _, it in ipairs(split(f.win, ';')) do
      local p = split(it, ':')
      s.windows[#s.windows + 1] = {n = num(p[1]), per = num(p[2]), units = p[3] == '1'}
    end
  end
  if num(f.rn) > 0 then
    s.bucket = {interval = math.ceil(num(f.rper) / num(f.rn)), burst = num(f.burst)}
  end
  if num(f.un) > 0 then
    s.ubucket = {interval = math.ceil(num(f.uper) / num(f.un)), burst = num(f.uburst)}
  end
  return s
end

-- State --------------------------------------------------------------------

local function parse_call(id, v)
  local p = split(v, ',')
  return {id = tonumber(id), g = num(p[1]), d = num(p[2]), e = p[3] == '1', ticket = p[4],
          cost = num(p[5]), actual = num(p[6]), host = p[7], inc = p[8],
          pid = p[9], uid = p[10], gid = p[11], x = num(p[12]), ab = num(p[13])}
end

local function call_string(c)
  return table.concat({int(c.g), int(c.d), c.e and 1 or 0, c.ticket, int(c.cost), int(c.actual), c.host, c.inc,
                       c.pid, c.uid, c.gid, int(c.x or 0), int(c.ab or 0)}, ',')
end

-- units of a call: its settled cost if settled, else its estimate.
local function units(c)
  if c.actual >= 0 then return c.actual end
  return c.cost
end

-- max_cost: the largest cost the spec's units items can ever admit, or -1
-- if none limits it (meter.Spec.MaxCost).
local function max_cost(S)
  local m = -1
  for _, w in ipairs(S.windows) do
    if w.units and (m < 0 or w.n < m) then m = w.n end
  end
  if S.ubucket and (m < 0 or S.ubucket.burst < m) then m = S.ubucket.burst end
  return m
end

local function fits(S, cost)
  local m = max_cost(S)
  return m < 0 or cost <= m
end

-- Bounds (meter/bounds.go): usage saturates at MAXUSAGE, where doubles are
-- still exact.
local MAXUSAGE = 9007199254740992
local function weight_in(w, calls, u)
  if not w.units then return calls end
  return u
end
local function add_sat(a, b) return math.min(a + b, MAXUSAGE) end

-- bucket_cap: the latest TAT a bucket may have at now, one full period of
-- debt beyond empty (meter.bucketCap).
local function bucket_cap(b, now) return now + 2 * b.interval * b.burst end

-- charge: a bucket's TAT moved by delta tokens of a call granted at g, of
-- which ab were absorbed already (meter.chargeBucket). Returns tat, ab.
local function charge(b, tat, g, now, ab, delta)
  if delta >= 0 then
    local base = math.max(tat, g)
    local room = math.max(0, math.floor((bucket_cap(b, now) - base) / b.interval))
    local take = math.min(delta, room)
    if take == 0 then return tat, ab + delta end
    return base + b.interval * take, ab + delta - take
  end
  local back = math.min(-delta, ab)
  local refund = -delta - back
  if refund > 0 and tat ~= 0 then tat = tat - b.interval * refund end
  return tat, ab - back
end

-- rejudge: a bucket's TAT after a limits write, its debt owed in tokens
-- under the new bucket, at most its capacity (meter.rejudgeTAT).
local function rejudge(old, nu, tat, now)
  if not nu then return 0 end
  if tat <= now then return tat end
  if old and old.interval ~= nu.interval then
    local tokens = math.ceil((tat - now) / old.interval)
    return math.min(now + tokens * nu.interval, bucket_cap(nu, now))
  end
  return math.min(tat, bucket_cap(nu, now))
end

local function load_calls(K)
  local raw = redis.call('HGETALL', K[2])
  local calls = {}
  for i = 1, #raw, 2 do calls[#calls + 1] = parse_call(raw[i], raw[i + 1]) end
  table.sort(calls, function(a, b) return a.id < b.id end)
  return calls
end

local function parse_past(s)
  local out = {}
  if not s or s == '' then return out end
  for _, it in ipairs(split(s, ';')) do
    local p = split(it, ':')
    out[#out + 1] = {n = num(p[1]), first = num(p[2]), g = num(p[3]), d = num(p[4]), u = num(p[5])}
  end
  return out
end

-- The history is parsed only when needed: by a meter with windows, or
-- when retire must drop, compact or insert out of order. A retirement that
-- only appends (the usual case: calls complete in order) adds to p, so
-- that a call's cost does not grow with the history kept (up to 256
-- groups within the horizon). Bringing the history into Lua as one string
-- cost ~12 µs per copy (Lua's collector pays for the allocation).

-- parse_member parses a member of p: its group and its seq.
local function parse_member(it)
  local p = split(it, ':')
  return {n = num(p[2]), first = num(p[3]), g = num(p[4]), d = num(p[5]), u = num(p[6])}, num(p[1])
end

local function group_string(p)
  return table.concat({int(p.n), int(p.first), int(p.g), int(p.d), int(p.u)}, ':')
end

local function get_past(st)
  if not st.past then
    st.past = {}
    for _, it in ipairs(redis.call('ZRANGE', st.K[9], 0, -1)) do st.past[#st.past + 1] = parse_member(it) end
  end
  return st.past
end

-- push_groups adds groups to p after its last member, of seq last.
local function push_groups(K, groups, last)
  local args = {}
  for _, p in ipairs(groups) do
    last = last + 1
    args[#args + 1] = int(last)
    args[#args + 1] = int(last) .. ':' .. group_string(p)
    if #args == 2000 then redis.call('ZADD', K[9], unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('ZADD', K[9], unpack(args)) end
end

-- past_text is the history as one string, "g;g;...", for the view.
local function past_text(K)
  local out = {}
  for _, it in ipairs(redis.call('ZRANGE', K[9], 0, -1)) do
    out[#out + 1] = string.sub(it, (string.find(it, ':', 1, true) or 0) + 1)
  end
  return table.concat(out, ';')
end

-- The rule -----------------------------------------------------------------

-- in_past: the call ended by max_hold, still open, counts in the history.
local function in_past(c) return c.d == 0 and c.e end

-- done_at: when the call completed, or would by max_hold (0: unknown).
local function done_at(S, c)
  if c.d > 0 then return c.d end
  if (c.x or 0) > 0 then return c.x end
  if S.mhold > 0 then return c.g + S.mhold end
  return 0
end

local function counts_until(S, c, per)
  if S.bygrant then return c.g + per end
  local d = done_at(S, c)
  if d == 0 then return 0 end
  return d + per
end

-- kth: the end at which the weight counted before it exceeds k (0-based);
-- unknown ends (0) sort last.
local function kth(ends, k)
  table.sort(ends, function(a, b)
    if a[1] == 0 then return false end
    if b[1] == 0 then return true end
    return a[1] < b[1]
  end)
  for _, e in ipairs(ends) do
    if k < e[2] then return e[1] end
    k = k - e[2]
  end
  return 0
end

-- window_ends: the ends of what counts against window w at now, and the
-- weight counting (calls, or units for a units window).
local function window_ends(S, w, calls, past, now)
  local ends, n = {}, 0
  for _, p in ipairs(past) do
    if p.d > now - w.per then
      local u = (S.bygrant and p.g or p.d) + w.per
      if u > now then
        local wt = weight_in(w, p.n, p.u)
        if wt > 0 then ends[#ends + 1] = {u, wt}; n = add_sat(n, wt) end
      end
    end
  end
  for _, c in ipairs(calls) do
    local u = counts_until(S, c, w.per)
    if not in_past(c) and (u == 0 or u > now) then
      local wt = weight_in(w, 1, units(c))
      if wt > 0 then ends[#ends + 1] = {u, wt}; n = add_sat(n, wt) end
    end
  end
  return ends, n
end

-- admit applies the rule to a call of cost `cost` at now: concurrency,
-- every window and both buckets. It returns ok, and when not ok the
-- earliest instant it could be admitted (0: only after a release).
local function admit(S, st, now, cost)
  local at, blocked = now, false
  local function later(t)
    if t == 0 then blocked = true elseif t > at then at = t end
  end
  if S.conc > 0 then
    local ends = {}
    for _, c in ipairs(st.calls) do
      local d = done_at(S, c)
      if not in_past(c) and (d == 0 or d > now) then ends[#ends + 1] = {d, 1} end
    end
    if #ends >= S.conc then later(kth(ends, #ends - S.conc)) end
  end
  for _, w in ipairs(S.windows) do
    local ends, n = window_ends(S, w, st.calls, get_past(st), now)
    local need = weight_in(w, 1, cost)
    if n + need > w.n then later(kth(ends, n + need - w.n - 1)) end
  end
  if S.bucket then
    local e = st.tat - S.bucket.interval * (S.bucket.burst - 1)
    if e > now then later(e) end
  end
  if S.ubucket and cost > 0 then
    local e = st.utat - S.ubucket.interval * (S.ubucket.burst - cost)
    if e > now then later(e) end
  end
  if blocked then return false, 0 end
  if at > now then return false, at end
  return true, 0
end

-- Retirement (meter.State.Retire) --------------------------------------------

local PASTDIV, MAXPAST = 16, 256

local function merge_past(past, now, div)
  local out = {}
  local cur = past[#past]
  cur = {n = cur.n, first = cur.first, g = cur.g, d = cur.d, u = cur.u}
  for i = #past - 1, 1, -1 do
    local p = past[i]
    -- integer division as Go's time.Duration / time.Duration truncates
    if div == 0 or cur.d - p.first <= math.floor((now - cur.d) / div) then
      cur.n, cur.u, cur.first = cur.n + p.n, add_sat(cur.u, p.u), p.first
      if p.g > cur.g then cur.g = p.g end
    else
      out[#out + 1] = cur
      cur = {n = p.n, first = p.first, g = p.g, d = p.d, u = p.u}
    end
  end
  out[#out + 1] = cur
  local rev = {}
  for i = #out, 1, -1 do rev[#rev + 1] = out[i] end
  return rev
end

local function compact_past(past, now)
  local div = PASTDIV
  while true do
    local out = merge_past(past, now, div)
    if #out <= MAXPAST / 2 or div <= 1 then
      if #out > MAXPAST / 2 then out = merge_past(out, now, 0) end
      return out
    end
    div = math.floor(div / 2)
  end
end

local function longest(S)
  local l = 0
  for _, w in ipairs(S.windows) do if w.per > l then l = w.per end end
  return l
end

-- append_past pushes the retired groups (sorted by completion) to the
-- history when that is all retire has to do: none completed before the
-- history's last group, nothing is older than the horizon (drop) and no
-- compaction is due. It reports whether it did.
local function append_past(st, retired, dropBefore)
  local n, last = redis.call('ZCARD', st.K[9]), 0
  if n > 0 then
    if parse_member(redis.call('ZRANGE', st.K[9], 0, 0)[1]).d <= dropBefore then return false end
    if #retired == 0 then return true end
    if n + #retired > MAXPAST then return false end
    local lg
    lg, last = parse_member(redis.call('ZRANGE', st.K[9], -1, -1)[1])
    if lg.d > retired[1].d then return false end
  elseif #retired > MAXPAST then
    return false
  end
  for _, r in ipairs(retired) do
    if r.d <= dropBefore then return false end
  end
  push_groups(st.K, retired, last)
  return true
end

-- retire moves completed calls that count against no window into the
-- history, drops history older than the horizon and compacts it; it
-- reports whether anything changed. A call that max_hold ended counts as
-- completed then (meter.State.Expire): it is retired too, and its record
-- stays, out of the rule (in_past), until it is released.
local function retire(S, st, now, horizon)
  local cutoff = now - longest(S)
  local keep, retired = {}, {}
  for _, c in ipairs(st.calls) do
    local d = c.d
    if d == 0 and not c.e then
      d = done_at(S, c)
      if d > now then d = 0 end
    end
    local at = S.bygrant and c.g or d
    if d > 0 and at <= cutoff then
      retired[#retired + 1] = {n = 1, first = d, g = c.g, d = d, u = units(c), id = c.id, open = c.d == 0 and c}
      if c.d == 0 then keep[#keep + 1] = c end
    else
      keep[#keep + 1] = c
    end
  end
  local changed = #retired > 0
  if changed then
    table.sort(retired, function(a, b) if a.d ~= b.d then return a.d < b.d end return a.id < b.id end)
    for _, r in ipairs(retired) do
      if r.open then
        r.open.x, r.open.e = r.d, true
        redis.call('HSET', st.K[2], r.id, call_string(r.open))
      else
        redis.call('HDEL', st.K[2], r.id)
      end
      r.id, r.open = nil, nil
    end
    st.calls = keep
  end
  local h = horizon
  if longest(S) > h then h = longest(S) end
  if not st.past and append_past(st, retired, now - h) then return changed end
  local past = get_past(st)
  for _, r in ipairs(retired) do
    local i = #past
    -- keep the history ordered by completion (count=grant may retire out of order)
    while i > 0 and past[i].d > r.d do i = i - 1 end
    table.insert(past, i + 1, r)
  end
  local drop = 0
  while drop < #past and past[drop + 1].d <= now - h do drop = drop + 1 end
  if drop > 0 then
    local rest = {}
    for i = drop + 1, #past do rest[#rest + 1] = past[i] end
    st.past = rest
    changed = true
  end
  if #st.past > MAXPAST then st.past = compact_past(st.past, now) end
  if changed then
    redis.call('DEL', st.K[9])
    push_groups(st.K, st.past, 0)
  end
  return changed
end

-- Context --------------------------------------------------------------------

local ctx = {}

local function open(K, A)
  local f = {}
  local raw = redis.call('HGETALL', K[1])
  if #raw == 0 then return nil end
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if A[2] ~= '' then now = tonumber(A[2]) end
  local hwm = num(f.hwm)
  if now < hwm then now = hwm elseif now > hwm then redis.call('HSET', K[1], 'hwm', int(now)) end
  -- ops orders what each call tells hosts about the queue: a host applies
  -- a wake instant only if no later call told it another.
  local ops = redis.call('HINCRBY', K[1], 'ops', 1)
  local st = {K = K, f = f, S = spec_of(f), now = now, prev = hwm, prefix = A[1], name = f.name, ops = ops,
              tat = num(f.tat), utat = num(f.utat),
              horizon = num(f.horizon), quiet = num(f.quiet)}
  if f.past then -- a meter of an earlier library: its history moves to p
    redis.call('DEL', K[9])
    push_groups(K, parse_past(f.past), 0)
    redis.call('HDEL', K[1], 'past', 'pastn')
    f.past, f.pastn = nil, nil
  end
  st.calls = load_calls(K)
  return st
end

local function publish_host(st, host, msg)
  redis.call('PUBLISH', st.prefix .. ':h:' .. host, msg)
end

local function host_entry(st, host)
  local v = redis.call('HGET', st.K[5], host)
  if not v then return nil end
  local p = split(v, ',')
  return {exp = num(p[1]), inc = p[2], waiters = num(p[3])}
end

local function set_host(st, host, e)
  redis.call('HSET', st.K[5], host, int(e.exp) .. ',' .. e.inc .. ',' .. int(e.waiters))
end

-- renew extends host's lease on this meter to now+lease, for incarnation inc.
local function renew(st, host, inc, lease)
  local e = host_entry(st, host) or {exp = 0, inc = inc, waiters = 0}
  if e.inc ~= inc then e.inc, e.waiters = inc, 0 end
  e.exp = st.now + lease
  set_host(st, host, e)
end

local function waiters_delta(st, host, d)
  local e = host_entry(st, host)
  if e then e.waiters = math.max(0, e.waiters + d); set_host(st, host, e) end
end

local function parse_waiter(seq, v)
  local p = split(v, ',')
  return {seq = tonumber(seq), host = p[1], inc = p[2], ticket = p[3], since = num(p[4]),
          cost = num(p[5]), pid = p[6], uid = p[7], gid = p[8]}
end

local function tkey(host, inc, ticket) return host .. ':' .. inc .. ':' .. ticket end

local function forget_waiter(st, wt)
  redis.call('ZREM', st.K[3], wt.seq)
  redis.call('HDEL', st.K[4], wt.seq)
  redis.call('HDEL', st.K[7], tkey(wt.host, wt.inc, wt.ticket))
end

local function remove_waiter(st, wt)
  forget_waiter(st, wt)
  waiters_delta(st, wt.host, -1)
end

-- complete marks call c done at t (counted at grant+max_hold, or when
-- max_hold ended it, if that is earlier). A call in the history already
-- (in_past) just loses its record.
local function complete(st, c, t)
  if c.d > 0 then return false end
  if in_past(c) then
    redis.call('HDEL', st.K[2], c.id)
    local rest = {}
    for _, x in ipairs(st.calls) do if x.id ~= c.id then rest[#rest + 1] = x end end
    st.calls = rest
    return true
  end
  local e = false
  local held = done_at(st.S, c)
  if held > 0 and held <= t then t, e = held, true end
  if t < c.g then t = c.g end
  c.d, c.e = t, e
  redis.call('HSET', st.K[2], c.id, call_string(c))
  return true
end

-- resume keeps the store's own downtime out of the leases. A lease counts
-- the time the server serves: when a call finds that the server restarted
-- (or a replica took over) since the meter's previous call, every lease is
-- extended by the time since that call, so that no live host's calls end,
-- and none of its waiters leave, because the store was down (a host that
-- died meanwhile lapses a lease later than it would have). The server's
-- run id tells; reading it (INFO) costs a few µs, so it is read only after
-- the meter was left alone for RESUME_CHECK, which any restart takes. A
-- server that refuses INFO (an ACL without it) leaves leases as they are.
local RESUME_CHECK = 100000
local function resume(st)
  if st.f.run and st.now - st.prev < RESUME_CHECK then return end
  local info = redis.pcall('INFO', 'server')
  local run = type(info) == 'string' and string.match(info, 'run_id:(%x+)')
  if not run or run == st.f.run then return end
  redis.call('HSET', st.K[1], 'run', run)
  if not st.f.run or st.prev == 0 then return end
  local gap = st.now - st.prev
  local raw = redis.call('HGETALL', st.K[5])
  for i = 1, #raw, 2 do
    local e = host_entry(st, raw[i])
    e.exp = e.exp + gap
    set_host(st, raw[i], e)
  end
end

-- lapse ends the leases that ran out: their hosts' calls in progress count
-- as completed at the lapse, their waiters leave the queue.
local function lapse(st)
  resume(st)
  local raw = redis.call('HGETALL', st.K[5])
  for i = 1, #raw, 2 do
    local host = raw[i]
    local p = split(raw[i + 1], ',')
    local exp, inc = num(p[1]), p[2]
    if exp <= st.now then
      for _, c in ipairs(st.calls) do
        if c.host == host and c.inc == inc and c.d == 0 then complete(st, c, exp) end
      end
      if num(p[3]) > 0 then
        local ws = redis.call('HGETALL', st.K[4])
        for j = 1, #ws, 2 do
          local wt = parse_waiter(ws[j], ws[j + 1])
          if wt.host == host and wt.inc == inc then forget_waiter(st, wt) end
        end
      end
      redis.call('HDEL', st.K[5], host)
      redis.call('HINCRBY', st.K[1], 'lapses', 1)
    end
  end
end

-- grant makes a call for waiter (or caller) wt at now and stores it.
local function grant(st, wt)
  local id = redis.call('HINCRBY', st.K[1], 'next_id', 1) - 1
  local c = {id = id, g = st.now, d = 0, e = false, ticket = wt.ticket, cost = wt.cost, actual = -1,
             host = wt.host, inc = wt.inc, pid = wt.pid, uid = wt.uid, gid = wt.gid}
  redis.call('HSET', st.K[2], id, call_string(c))
  st.calls[#st.calls + 1] = c
  redis.call('HINCRBY', st.K[1], 'grants', 1)
  if st.S.bucket then
    st.tat = math.max(st.tat, st.now) + st.S.bucket.interval
    redis.call('HSET', st.K[1], 'tat', int(st.tat))
  end
  if st.S.ubucket and c.cost > 0 then
    st.utat = math.max(st.utat, st.now) + st.S.ubucket.interval * c.cost
    redis.call('HSET', st.K[1], 'utat', int(st.utat))
  end
  return c
end

-- wake is when the head should be tried again: the rule's instant or, when
-- only a release can admit it, the earliest lease lapse of a host holding a
-- call (0: none).
local function wake(st, at)
  if at ~= 0 then return at end
  local raw = redis.call('HGETALL', st.K[5])
  local best = 0
  for i = 1, #raw, 2 do
    local exp = num(split(raw[i + 1], ',')[1])
    if best == 0 or exp < best then best = exp end
  end
  return best
end

local function head(st)
  local h = redis.call('ZRANGE', st.K[3], 0, 0)
  if #h == 0 then return nil end
  local v = redis.call('HGET', st.K[4], h[1])
  if not v then redis.call('ZREM', st.K[3], h[1]); return head(st) end
  return parse_waiter(h[1], v)
end

-- next_at is when to try the head of the queue (of cost `cost`) again:
-- the end of the quiet time, else the rule's instant (wake).
local function next_at(st, cost)
  if st.now < st.quiet then return st.quiet end
  local _, a = admit(st.S, st, st.now, cost)
  return wake(st, a)
end

-- notify_next tells every host with waiters when to try the head again.
local function notify_next(st, at, hd)
  local raw = redis.call('HGETALL', st.K[5])
  local msg = 'n,' .. int(at) .. ',' .. int(st.now) .. ',' .. (hd and hd.host or '') .. ',' .. int(st.ops) .. ',' .. st.name
  for i = 1, #raw, 2 do
    if num(split(raw[i + 1], ',')[3]) > 0 then publish_host(st, raw[i], msg) end
  end
end

-- dispatch grants the head of the queue while the rule admits it, telling
-- each waiter's host, and returns when to try the next head (0: no waiter
-- or only a release).
local function dispatch(st)
  local granted = false
  while true do
    local hd = head(st)
    if not hd then
      if granted then notify_next(st, 0, nil) end
      return 0
    end
    while not fits(st.S, hd.cost) do
      -- a limits write shrank a units item below its cost: it can never
      -- be admitted (E2BIG on its host, as meter.Meter's dispatch does)
      remove_waiter(st, hd)
      publish_host(st, hd.host, 'r,' .. hd.ticket .. ',0,0,' .. int(st.now) .. ',' .. st.name)
      hd = head(st)
      if not hd then
        notify_next(st, 0, nil)
        return 0
      end
    end
    local ok, at = admit(st.S, st, st.now, hd.cost)
    if st.now < st.quiet then ok, at = false, st.quiet end
    if not ok then
      local w = wake(st, at)
      notify_next(st, w, hd)
      return w
    end
    remove_waiter(st, hd)
    local c = grant(st, hd)
    granted = true
    publish_host(st, hd.host, 'g,' .. hd.ticket .. ',' .. int(c.id) .. ',' .. int(c.g) .. ',' .. int(st.now) .. ',' .. st.name)
  end
end

local function find_call(st, id)
  for _, c in ipairs(st.calls) do if c.id == id then return c end end
  return nil
end

-- reply_next: {wake, now, host of the head waiter ('' none), ops}.
local function reply_next(st, at)
  local hd = head(st)
  return {at, st.now, hd and hd.host or '', st.ops}
end

local function missing() return redis.error_reply('RLFS_NOMETER no such meter') end

-- Functions ------------------------------------------------------------------

-- rlfs1_acquire: ARGV 3 host, 4 inc, 5 lease, 6 ticket, 7 cost, 8 nonblock,
-- 9 pid, 10 uid, 11 gid. Replies {1, id, granted, now} for a grant,
-- {0, why, 0, now} for a refusal (why 1 busy, 2 max_waiters, 3 a cost no
-- units item can ever admit), or
-- {2, seq, wake, now, head host, ops} when queued. A ticket that is queued
-- already (asked again after an outage) keeps its place.
local function acquire(K, A)
  local st = open(K, A)
  if not st then return missing() end
  local host, inc, cost = A[3], A[4], num(A[7])
  lapse(st)
  renew(st, host, inc, num(A[5]))
  dispatch(st)
  local seq = redis.call('HGET', K[7], tkey(host, inc, A[6]))
  if seq then
    local hd = head(st)
    return {2, tonumber(seq), next_at(st, hd.cost), st.now, hd.host, st.ops}
  end
  for _, c in ipairs(st.calls) do
    if c.host == host and c.inc == inc and c.ticket == A[6] and c.d == 0 then return {1, c.id, c.g, st.now} end
  end
  if not fits(st.S, cost) then return {0, 3, 0, st.now} end
  local me = {host = host, inc = inc, ticket = A[6], cost = cost, pid = A[9], uid = A[10], gid = A[11], since = st.now}
  local empty = redis.call('ZCARD', st.K[3]) == 0
  if empty and st.now >= st.quiet and admit(st.S, st, st.now, cost) then
    local c = grant(st, me)
    return {1, c.id, c.g, st.now}
  end
  if A[8] == '1' then return {0, 1, 0, st.now} end
  if st.S.mwaiters > 0 and redis.call('ZCARD', st.K[3]) >= st.S.mwaiters then return {0, 2, 0, st.now} end
  seq = redis.call('HINCRBY', st.K[1], 'seq', 1)
  redis.call('ZADD', st.K[3], seq, seq)
  redis.call('HSET', st.K[4], seq, table.concat({host, inc, me.ticket, int(st.now), int(cost), me.pid, me.uid, me.gid}, ','))
  redis.call('HSET', st.K[7], tkey(host, inc, me.ticket), seq)
  waiters_delta(st, host, 1)
  local hd = head(st)
  return {2, seq, next_at(st, hd.cost), st.now, hd.host, st.ops}
end

-- rlfs1_cancel: ARGV 3 host, 4 inc, 5 lease, 6 seq, 7 ticket. Takes the
-- waiter out of the queue. Replies {0, 0, wake, now, head host, ops} if it was waiting,
-- {1, id, granted, now} if it had been granted (the host then releases or
-- revokes the call), {2, 0, 0, now} if it is gone.
local function cancel(K, A)
  local st = open(K, A)
  if not st then return missing() end
  local host, inc = A[3], A[4]
  lapse(st)
  renew(st, host, inc, num(A[5]))
  local v = redis.call('HGET', st.K[4], A[6])
  if v then
    local wt = parse_waiter(A[6], v)
    if wt.host == host and wt.inc == inc then
      local hd = head(st)
      remove_waiter(st, wt)
      local at = 0
      if hd and hd.seq == wt.seq then at = dispatch(st) end
      local nh = head(st)
      return {0, 0, at, st.now, nh and nh.host or '', st.ops}
    end
  end
  for _, c in ipairs(st.calls) do
    if c.host == host and c.inc == inc and c.ticket == A[7] then return {1, c.id, c.g, st.now} end
  end
  return {2, 0, 0, st.now}
end

-- rlfs1_release: ARGV 3 host, 4 inc, 5 lease, 6 id, 7 done (0: now; else
-- when a late delivery says it completed, at most now). Replies {wake, now}.
local function release(K, A)
  local st = open(K, A)
  if not st then return missing() end
  lapse(st)
  renew(st, A[3], A[4], num(A[5]))
  local c = find_call(st, tonumber(A[6]))
  if c then
    local t = num(A[7])
    if t == 0 or t > st.now then t = st.now end
    complete(st, c, t)
  end
  retire(st.S, st, st.now, st.horizon)
  return reply_next(st, dispatch(st))
end

-- rlfs1_revoke: ARGV 3 host, 4 inc, 5 lease, 6 id. The call's open failed:
-- nothing of it counts. Replies {wake, now}.
local function revoke(K, A)
  local st = open(K, A)
  if not st then return missing() end
  lapse(st)
  renew(st, A[3], A[4], num(A[5]))
  local c = find_call(st, tonumber(A[6]))
  -- a call that max_hold ended counts as completed already: it stays
  local dl = c and done_at(st.S, c)
  if c and c.d == 0 and (dl == 0 or dl > st.now) then
    redis.call('HDEL', st.K[2], c.id)
    for i, x in ipairs(st.calls) do if x.id == c.id then table.remove(st.calls, i) break end end
    redis.call('HINCRBY', st.K[1], 'grants', -1)
    redis.call('HINCRBY', st.K[1], 'revoked', 1)
    if st.S.bucket then
      st.tat = st.tat - st.S.bucket.interval
      redis.call('HSET', st.K[1], 'tat', int(st.tat))
    end
    if st.S.ubucket and units(c) - (c.ab or 0) > 0 and st.utat ~= 0 then
      st.utat = st.utat - st.S.ubucket.interval * (units(c) - (c.ab or 0))
      redis.call('HSET', st.K[1], 'utat', int(st.utat))
    end
  end
  return reply_next(st, dispatch(st))
end

-- rlfs1_settle: ARGV 3 host, 4 inc, 5 lease, 6 id, 7 actual cost. Replies
-- {wake, now}; an error if the call is not in progress.
local function settle(K, A)
  local st = open(K, A)
  if not st then return missing() end
  lapse(st)
  renew(st, A[3], A[4], num(A[5]))
  local c = find_call(st, tonumber(A[6]))
  if not c or c.d > 0 then return redis.error_reply('RLFS_NOCALL call not in progress') end
  local old = units(c)
  c.actual = num(A[7])
  if st.S.ubucket then
    st.utat, c.ab = charge(st.S.ubucket, st.utat, c.g, st.now, c.ab or 0, c.actual - old)
    redis.call('HSET', st.K[1], 'utat', int(st.utat))
  end
  redis.call('HSET', st.K[2], c.id, call_string(c))
  return reply_next(st, dispatch(st))
end

-- rlfs1_dispatch: ARGV 3 host (or ''), 4 inc, 5 lease. Grants what the rule
-- admits now; renews the host's lease when given. Replies {wake, now}.
local function dispatch_fn(K, A)
  local st = open(K, A)
  if not st then return missing() end
  lapse(st)
  if A[3] ~= '' then renew(st, A[3], A[4], num(A[5])) end
  return reply_next(st, dispatch(st))
end

-- rlfs1_renew: ARGV 3 host, 4 inc, 5 lease. Extends the host's lease and
-- replies {wake, now, head host, ops, id1, ticket1, granted1, ...}: the host's
-- calls in progress, so that it can pick up a grant whose message it missed.
local function renew_fn(K, A)
  local st = open(K, A)
  if not st then return missing() end
  lapse(st)
  renew(st, A[3], A[4], num(A[5]))
  local out = reply_next(st, dispatch(st))
  for _, c in ipairs(st.calls) do
    if c.host == A[3] and c.inc == A[4] and c.d == 0 then
      out[#out + 1] = c.id; out[#out + 1] = c.ticket; out[#out + 1] = c.g
    end
  end
  return out
end

-- rlfs1_start: ARGV 3 host, 4 inc. A host's daemon (re)started: the calls
-- in progress and the waiters of its earlier incarnations end now.
-- Replies {wake, now, head host, ops, ended}.
local function start(K, A)
  local st = open(K, A)
  if not st then return missing() end
  lapse(st)
  local host, inc, ended = A[3], A[4], 0
  for _, c in ipairs(st.calls) do
    if c.host == host and c.inc ~= inc and c.d == 0 then complete(st, c, st.now); ended = ended + 1 end
  end
  local ws = redis.call('HGETALL', st.K[4])
  for j = 1, #ws, 2 do
    local wt = parse_waiter(ws[j], ws[j + 1])
    if wt.host == host and wt.inc ~= inc then forget_waiter(st, wt) end
  end
  local e = host_entry(st, host)
  if e and e.inc ~= inc then redis.call('HDEL', st.K[5], host) end
  retire(st.S, st, st.now, st.horizon)
  local r = reply_next(st, dispatch(st))
  r[5] = ended
  return r
end

-- spec_fields: ARGV from 4 on are field, value pairs of the spec (and, at
-- creation, of the owner).
local function set_fields(K, A, from)
  for i = from, #A, 2 do redis.call('HSET', K[1], A[i], A[i + 1]) end
end

-- rlfs1_create: ARGV 3 name, then field, value pairs (quiet_for: see
-- below). Replies 1, or 0 if the meter exists. The host then lists it in the set of meters and tells
-- the others ("c,NAME" on the event channel), in that order, so that a host
-- that subscribes meanwhile finds it in one or the other.
-- bump sets the meter's version, which orders its definitions for the
-- hosts that reload it: the server's time (µs), always increasing (the
-- test clock does not move between changes, so it is not used here).
local function bump(K)
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local old = num(redis.call('HGET', K[1], 'version'))
  if v <= old then v = old + 1 end
  redis.call('HSET', K[1], 'version', int(v))
end

local function create(K, A)
  if redis.call('EXISTS', K[1]) == 1 then return 0 end
  redis.call('DEL', K[2], K[3], K[4], K[5], K[6], K[7], K[8], K[9])
  redis.call('HSET', K[1], 'name', A[3], 'next_id', 1, 'grants', 0, 'seq', 0, 'tat', 0, 'utat', 0)
  set_fields(K, A, 4)
  -- quiet_for (µs): a host putting the meter back after the store lost its
  -- data; nothing is granted for that long (quiet, an instant).
  local q = num(redis.call('HGET', K[1], 'quiet_for'))
  if q > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    if A[2] ~= '' then now = tonumber(A[2]) end
    redis.call('HSET', K[1], 'quiet', int(now + q))
    redis.call('HDEL', K[1], 'quiet_for')
  end
  bump(K)
  return 1
end

-- rlfs1_setspec: ARGV 3 name, then field, value pairs. Replies {wake, now}.
local function setspec(K, A)
  local old = open(K, A)
  if not old then return missing() end
  lapse(old)
  -- a hold that max_hold ended counts as completed then, whatever the new
  -- limits say: its end is fixed (held)
  for _, c in ipairs(old.calls) do
    local held = done_at(old.S, c)
    if c.d == 0 and (c.x or 0) == 0 and held > 0 and held <= old.now then
      c.x = held
      redis.call('HSET', K[2], c.id, call_string(c))
    end
  end
  set_fields(K, A, 4)
  bump(K)
  local st = open(K, A)
  -- the buckets' debt, owed in tokens under the new limits (meter.rejudgeTAT)
  st.tat = rejudge(old.S.bucket, st.S.bucket, old.tat, st.now)
  st.utat = rejudge(old.S.ubucket, st.S.ubucket, old.utat, st.now)
  redis.call('HSET', K[1], 'tat', int(st.tat), 'utat', int(st.utat))
  redis.call('PUBLISH', A[1] .. ':ev', 's,' .. A[3])
  return reply_next(st, dispatch(st))
end

-- rlfs1_setattr: ARGV 3 name, then mode, uid, gid pairs. Replies 1.
local function setattr(K, A)
  if redis.call('EXISTS', K[1]) == 0 then return missing() end
  set_fields(K, A, 4)
  bump(K)
  redis.call('PUBLISH', A[1] .. ':ev', 'a,' .. A[3])
  return 1
end

-- rlfs1_delete: ARGV 3 name. Removes an idle meter with its history and
-- data. Replies 1, or 0 while it has holders or waiters. The host then
-- unlists it and tells the others ("d,NAME").
local function delete(K, A)
  local st = open(K, A)
  if not st then return missing() end
  lapse(st)
  if redis.call('ZCARD', K[3]) > 0 then return 0 end
  -- busy while a call is open, even one that max_hold ended (as
  -- meter.Registry.Remove: EBUSY with "expired holds still open")
  for _, c in ipairs(st.calls) do
    if c.d == 0 then return 0 end
  end
  redis.call('DEL', K[1], K[2], K[3], K[4], K[5], K[6], K[7], K[8], K[9])
  return 1
end

-- rlfs1_view: ARGV 3 lists ('1': holders and waiters too). A read of the
-- meter after lapses: {now, fields..., '|calls', call records..., '|waiters',
-- waiter records..., '|usage', used per window..., '|next', ok, at}.
local function view(K, A)
  local st = open(K, A)
  if not st then return missing() end
  lapse(st)
  local out = {st.now}
  local raw = redis.call('HGETALL', K[1])
  for i = 1, #raw do out[#out + 1] = raw[i] end
  out[#out + 1] = 'past'
  out[#out + 1] = past_text(K)
  out[#out + 1] = '|calls'
  for _, c in ipairs(st.calls) do
    if c.d == 0 or A[3] == '1' then out[#out + 1] = int(c.id) .. ',' .. call_string(c) end
  end
  out[#out + 1] = '|waiters'
  out[#out + 1] = redis.call('ZCARD', K[3])
  if A[3] == '1' then
    local seqs = redis.call('ZRANGE', K[3], 0, -1)
    for _, s in ipairs(seqs) do
      local v = redis.call('HGET', K[4], s)
      if v then out[#out + 1] = s .. ',' .. v end
    end
  end
  out[#out + 1] = '|usage'
  for _, w in ipairs(st.S.windows) do
    local _, n = window_ends(st.S, w, st.calls, get_past(st), st.now)
    out[#out + 1] = n
  end
  out[#out + 1] = '|next'
  local hd = head(st)
  local ok, at = admit(st.S, st, st.now, hd and hd.cost or 1)
  if hd and ok then ok, at = false, st.now end
  if st.now < st.quiet then ok, at = false, st.quiet end
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = at
  out[#out + 1] = wake(st, at)
  local hosts = redis.call('HGETALL', K[5])
  out[#out + 1] = '|hosts'
  for i = 1, #hosts do out[#out + 1] = hosts[i] end
  return out
end

-- rlfs1_reassert: ARGV 3 host, 4 inc, 5 lease, then call records of the
-- host (id,granted,done,cost,actual,ticket,pid,uid,gid) that still count.
-- After the store lost its data, a host puts its calls back; a call whose id
-- is taken gets a new one. Replies {wake, now, head host, ops, old1, new1, ...}.
local function reassert(K, A)
  local st = open(K, A)
  if not st then return missing() end
  lapse(st)
  renew(st, A[3], A[4], num(A[5]))
  local out = {0, st.now, '', 0}
  for i = 6, #A do
    local p = split(A[i], ',')
    local id = tonumber(p[1])
    local cur = redis.call('HGET', K[2], id)
    local mine = cur and parse_call(id, cur)
    if not (mine and mine.host == A[3] and mine.inc == A[4] and mine.ticket == p[6]) then
      if cur then
        id = redis.call('HINCRBY', K[1], 'next_id', 1) - 1 -- taken by another call since the loss
      elseif id >= num(redis.call('HGET', K[1], 'next_id')) then
        redis.call('HSET', K[1], 'next_id', int(id + 1))
      end
      local c = {id = id, g = num(p[2]), d = num(p[3]), e = false, ticket = p[6], cost = num(p[4]),
                 actual = num(p[5]), host = A[3], inc = A[4], pid = p[7], uid = p[8], gid = p[9]}
      redis.call('HSET', K[2], id, call_string(c))
      redis.call('HINCRBY', K[1], 'grants', 1)
    end
    out[#out + 1] = tonumber(p[1]); out[#out + 1] = id
  end
  st.calls = load_calls(K)
  local r = reply_next(st, dispatch(st))
  out[1], out[3], out[4] = r[1], r[3], r[4]
  return out
end

-- rlfs1_admit (tests): the rule alone, on state given as arguments:
-- ARGV 1 win, 2 conc, 3 rn, 4 rper, 5 burst, 6 bygrant, 7 mhold, 8 tat,
-- 9 now, 10 cost, 11 past, 12 un, 13 uper, 14 uburst, 15 utat, then call
-- records "id,granted,done,cost,actual". Replies {ok, at}.
local function admit_fn(K, A)
  local S = spec_of({win = A[1], conc = A[2], rn = A[3], rper = A[4], burst = A[5], bygrant = A[6],
                     mhold = A[7], un = A[12], uper = A[13], uburst = A[14]})
  local st = {calls = {}, past = parse_past(A[11]), tat = num(A[8]), utat = num(A[15])}
  for i = 16, #A do
    local p = split(A[i], ',')
    st.calls[#st.calls + 1] = {id = num(p[1]), g = num(p[2]), d = num(p[3]), cost = num(p[4]), actual = num(p[5])}
  end
  local ok, at = admit(S, st, num(A[9]), num(A[10]))
  return {ok and 1 or 0, at}
end

-- Data files ---------------------------------------------------------------

-- data_totals: the files and bytes of the meter's data other than name,
-- and whether name exists.
local function data_totals(K, name)
  local raw = redis.call('HGETALL', K[8])
  local files, bytes, exists = 0, 0, false
  for i = 1, #raw, 2 do
    if raw[i] == name then
      exists = true
    else
      files = files + 1
      bytes = bytes + num(split(raw[i + 1], ',')[1])
    end
  end
  return files, bytes, exists
end

-- rlfs1_data_write: ARGV 3 name, 4 content, 5 mtime, 6 max files, 7 max
-- bytes. Replaces a data file whole, within the meter's bounds. Replies 1,
-- or an RLFS_NOSPACE error (nothing changed).
local function data_write(K, A)
  if redis.call('EXISTS', K[1]) == 0 then return missing() end
  local files, bytes, exists = data_totals(K, A[3])
  if not exists and files + 1 > num(A[6]) then
    return redis.error_reply('RLFS_NOSPACE the meter has ' .. files .. ' data files')
  end
  if bytes + #A[4] > num(A[7]) then
    return redis.error_reply('RLFS_NOSPACE the meter would hold ' .. int(bytes + #A[4]) .. ' bytes of data')
  end
  redis.call('HSET', K[6], A[3], A[4])
  redis.call('HSET', K[8], A[3], int(#A[4]) .. ',' .. A[5])
  return 1
end

-- rlfs1_data_read: ARGV 3 name. Replies {content, "size,mtime"}, or {}.
local function data_read(K, A)
  local c = redis.call('HGET', K[6], A[3])
  if not c then return {} end
  return {c, redis.call('HGET', K[8], A[3]) or ''}
end

-- rlfs1_data_rename: ARGV 3 from, 4 to, 5 mtime. Replies 1, or 0 if from
-- does not exist.
local function data_rename(K, A)
  local c = redis.call('HGET', K[6], A[3])
  if not c then return 0 end
  if A[3] ~= A[4] then
    redis.call('HDEL', K[6], A[3])
    redis.call('HDEL', K[8], A[3])
  end
  redis.call('HSET', K[6], A[4], c)
  redis.call('HSET', K[8], A[4], int(#c) .. ',' .. A[5])
  return 1
end

-- rlfs1_data_delete: ARGV 3 name. Replies 1, or 0 if it does not exist.
local function data_delete(K, A)
  redis.call('HDEL', K[8], A[3])
  return redis.call('HDEL', K[6], A[3])
end

-- meter_fn adapts a function to callers that pass 8 keys, without p: the
-- daemons of the previous library, which one daemon's FUNCTION LOAD
-- REPLACE can leave calling this one during a rolling upgrade. p is then
-- derived from m (same hash tag, so the same Cluster slot).
local function meter_fn(f)
  return function(K, A)
    if not K[9] and K[1] then
      local k = {}
      for i = 1, 8 do k[i] = K[i] end
      k[9] = string.sub(K[1], 1, -2) .. 'p'
      K = k
    end
    return f(K, A)
  end
end

redis.register_function('rlfs1_acquire', meter_fn(acquire))
redis.register_function('rlfs1_cancel', meter_fn(cancel))
redis.register_function('rlfs1_release', meter_fn(release))
redis.register_function('rlfs1_revoke', meter_fn(revoke))
redis.register_function('rlfs1_settle', meter_fn(settle))
redis.register_function('rlfs1_dispatch', meter_fn(dispatch_fn))
redis.register_function('rlfs1_renew', meter_fn(renew_fn))
redis.register_function('rlfs1_start', meter_fn(start))
redis.register_function('rlfs1_create', meter_fn(create))
redis.register_function('rlfs1_setspec', meter_fn(setspec))
redis.register_function('rlfs1_setattr', meter_fn(setattr))
redis.register_function('rlfs1_delete', meter_fn(delete))
redis.register_function('rlfs1_view', meter_fn(view))
redis.register_function('rlfs1_reassert', meter_fn(reassert))
redis.register_function{function_name = 'rlfs1_admit', callback = admit_fn, flags = {'no-writes'}}
redis.register_function('rlfs1_data_write', data_write)
redis.register_function{function_name = 'rlfs1_data_read', callback = data_read, flags = {'no-writes'}}
redis.register_function('rlfs1_data_rename', data_rename)
redis.register_function('rlfs1_data_delete', data_delete)
