#!lua name=rlfs2
-- rlfs's fleet store, layout 2: the admission rule, the FIFO queue, the
-- ends of calls, the history and the hosts' leases of one meter, run
-- atomically by Redis. docs/engine.md is the model (the ledger); this file
-- keeps it in Redis keys, and meter/redis's tests hold it to the Go rule.
--
-- Keys: every function takes one key, the meter hash TAG..'m' (so that a
-- Cluster routes it), and derives the others from its hash tag (they share
-- it: one slot), in the order of keysOf (keys.go):
--   K[1]  m   hash: the definition (see The meter)
--   K[2]  c   hash: call id -> record of a call in progress or held
--   K[3]  o   zset: calls in progress, score = grant instant (with max_hold:
--             expiry and the ends of calls in progress need their order)
--   K[4]  l   zset: the ledger, score = count time (see "The ledger")
--   K[5]  q   zset: the queue, score = member = arrival number (seq)
--   K[6]  w   hash: seq -> waiter record
--   K[7]  t   hash: host:inc:ticket -> seq (queued) or "c"..id (granted)
--   K[8]  h   hash: host -> "lease expiry,incarnation"
--   K[9]  p   string: the history, groups of retired calls (see The history)
--   K[10] d   hash: data file name -> content
--   K[11] dm  hash: data file name -> "size,mtime"
--   K[12] lo  zset: count=grant: calls in progress that count in no window
--   K[13] lg  zset: history groups put back into the ledger, score = first
--   K[14] nl  zset: scratch of a rebuild
--   K[15] s   string: the hot state (see The meter)
-- and, derived from the tag, per host: TAG..'oh:'..HOST (zset of its call
-- ids, score = grant) and TAG..'wh:'..HOST (zset of its waiters' seqs).
-- ARGV[1] is the channel prefix; ARGV[2] is '' (the server's TIME) or an
-- instant in microseconds (tests: the store sends one only with a test
-- clock). All instants are microseconds since the Unix epoch.
--
-- Records:
--   call:   byte 1, then struct '<ddddddssss': granted, cost, actual,
--           absorbed, held, tix, ticket, host, inc, "pid,uid,gid" (binary:
--           no number is printed or parsed on the fast paths). actual -1:
--           not settled; held 0: in progress, else the instant max_hold
--           ended it (it counts as completed then; the record stays until
--           its host releases it); tix 1: t maps its ticket to it
--   lease:  expiry,incarnation
--   waiter: host,inc,ticket,since,cost,pid,uid,gid
--   ledger: "id:units:granted:done" (done 0: in progress, count=grant) or
--           "gSEQ:n:first:granted:done:units" (a history group put back)
--   past:   "SEQ:n:first:granted:done:units" (SEQ zero-padded: insertion)
--
-- Bounded steps: no function reads more than a bounded number of entries.
-- The work a function must do before it decides (a rebuild, a migration,
-- ageing, expiry, a lapse) is done in steps; when a step's budget is spent
-- the function replies MORE (a status) having changed nothing else, and the
-- store sends it again.

local LAYOUT = '2'
-- A step's budgets, so that no FCALL runs longer than a few hundred µs
-- whatever the meter's size (docs/engine.md has the measured times):
local AGE = 96        -- ledger entries one step walks to age a window (a call window moves by rank: no walk)
local HOLD = 8        -- an expired hold costs as much of that budget as eight aged entries
local RETIRE = 32     -- ledger entries one release retires (meter.MaxRetire: the same)
local LAPSE = 12      -- calls (and waiters) of a lapsed or restarted host one step ends
local REBUILD = 64    -- entries one rebuild or migration step reads
local MAXWALK = 256   -- entries the k-th end walks (meter.MaxWalk)
local DISPATCH = 8    -- grants one dispatch makes (then it asks for another at once)
local RELEASES = 16   -- releases one rlfs2_release takes (releases.go: maxReleases)
local LIST = 96       -- records one list step returns
local MAXPAST, PASTDIV = 256, 16
local HCHUNK = 8 -- groups a late group's merge reads at a time (The history)

-- Numbers and records -------------------------------------------------------

local function num(x) return tonumber(x) or 0 end

-- int prints a number as an integer: Lua's own conversion writes large ones
-- (microseconds since the epoch) in exponent notation.
local function int(n) return string.format('%d', n) end

-- INST is what the library's instance found out once, by its first step
-- (resume): run, the server's run id (false: INFO refused).
local INST = {}

-- minpos is the earlier of two instants, where 0 means none.
local function minpos(a, b)
  if a == 0 then return b end
  if b == 0 or a <= b then return a end
  return b
end

local function split(s, sep)
  local out, i = {}, 1
  while true do
    local j = string.find(s, sep, i, true)
    if not j then out[#out + 1] = string.sub(s, i); return out end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

-- Sums are exact: two limbs, hi·2^32 + lo (meter.Units128), so that no
-- sum of costs loses exactness in Lua's doubles. A sum's value saturates at
-- 2^53 (meter.MaxUsage): every limit is at most 2^50.
local LIMB, MAXUSAGE, SATHI = 4294967296, 9007199254740992, 2097152

local function limbs(x)
  local h = math.floor(x / LIMB)
  return h, x - h * LIMB
end

local function add2(h, l, x)
  local xh, xl = limbs(x)
  h, l = h + xh, l + xl
  if l >= LIMB then h, l = h + 1, l - LIMB end
  return h, l
end

local function sub2(h, l, x)
  local xh, xl = limbs(x)
  h, l = h - xh, l - xl
  if l < 0 then h, l = h - 1, l + LIMB end
  return h, l
end

local function val2(h, l)
  if h >= SATHI then return MAXUSAGE end
  return h * LIMB + l
end

local function add_sat(a, b) return math.min(a + b, MAXUSAGE) end

local function tkey(host, inc, ticket) return host .. ':' .. inc .. ':' .. ticket end

local CALL, CALLB = '<ddddddssss', '<Bddddddssss'

-- Allocations are what a step costs most (a small table or a new string
-- costs more than a command): the fast paths make few. call_of fills one
-- scratch table (a call is used before the next is read), and records are
-- written from values.
local CALLC = {}

-- a call: its id (and sid, as a string: the field of its record), grant
-- g, ticket, cost, actual, absorbed ab, held done, tix, host, incarnation
-- inc and who ("pid,uid,gid"). The table is call_of's scratch: valid until
-- the next call_of (copy what must outlive it).
local function call_of(sid, s)
  local c = CALLC
  c.g, c.cost, c.actual, c.ab, c.done, c.tix, c.ticket, c.host, c.inc, c.who = struct.unpack(CALL, s, 2)
  c.id, c.sid, c.tix = tonumber(sid), sid, c.tix == 1
  return c
end

-- record is a call's record, from its fields.
local function record(g, cost, actual, ab, done, tix, ticket, host, inc, who)
  return struct.pack(CALLB, 1, g, cost, actual, ab, done, tix and 1 or 0, ticket, host, inc, who)
end

local function call_text(c)
  return record(c.g, c.cost, c.actual, c.ab, c.done, c.tix, c.ticket, c.host, c.inc, c.who)
end

local function lease_text(exp, inc) return string.format('%d,%s', exp, inc) end

-- lease_of_text is a lease entry's expiry and incarnation.
local function lease_of_text(s)
  local i = string.find(s, ',', 1, true)
  return tonumber(string.sub(s, 1, i - 1)), string.sub(s, i + 1)
end


-- units of a call: its settled cost if settled, else its estimate.
local function units(c)
  if c.actual >= 0 then return c.actual end
  return c.cost
end


local function waiter_of(seq, s)
  local host, inc, ticket, since, cost, who = string.match(s, '^([^,]*),([^,]*),([^,]*),(%d+),(%d+),(.*)$')
  return {seq = seq, host = host, inc = inc, ticket = ticket, since = tonumber(since), cost = tonumber(cost), who = who}
end

-- entry_of parses a ledger member: n calls of u units, the latest grant g
-- and completion d (0: in progress), the earliest completion first.
local function entry_of(m)
  if string.byte(m, 1) == 103 then -- 'g': a history group put back
    local seq, n, first, g, d, u = string.match(m, '^g(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)$')
    return {group = true, seq = seq, n = tonumber(n), first = tonumber(first), g = tonumber(g), d = tonumber(d), u = tonumber(u)}
  end
  local id, u, g, d = string.match(m, '^(%d+):(%d+):(%d+):(%d+)$')
  d = tonumber(d)
  return {id = id, n = 1, u = tonumber(u), g = tonumber(g), d = d, first = d}
end

-- units_of is the units of ledger member m, a call's (not a group's),
-- read without parsing the rest: the walks read it for every entry.
local function units_of(m)
  local i = string.find(m, ':', 1, true)
  return tonumber(string.sub(m, i + 1, string.find(m, ':', i + 1, true) - 1))
end

local function call_entry(id, u, g, d) return string.format('%d:%d:%d:%d', id, u, g, d) end

-- group_text is a group "n:first:granted:done:units" (the tail of a past
-- member and of a ledger group).
local function group_text(e)
  return table.concat({int(e.n), int(e.first), int(e.g), int(e.d), int(e.u)}, ':')
end

local function group_of(s)
  local seq, n, first, g, d, u = string.match(s, '^g?(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)$')
  return {seq = seq, n = tonumber(n), first = tonumber(first), g = tonumber(g), d = tonumber(d), u = tonumber(u)}
end

-- Keys ---------------------------------------------------------------------------

local NAMES = {'m', 'c', 'o', 'l', 'q', 'w', 't', 'h', 'p', 'd', 'dm', 'lo', 'lg', 'nl', 's'}

-- keysets caches each meter's keys by its first key (read-only).
local keysets, nkeysets = {}, 0

local function keys_of(m)
  local K = keysets[m]
  if K then return K end
  local tag = string.sub(m, 1, -2)
  K = {tag = tag, hosts = {}}
  for i, n in ipairs(NAMES) do K[i] = tag .. n end
  if nkeysets >= 4096 then keysets, nkeysets = {}, 0 end
  keysets[m], nkeysets = K, nkeysets + 1
  return K
end

-- keyed adapts f(K, A) to the one key a function is given.
local function keyed(f)
  return function(K1, A) return f(keys_of(K1[1]), A) end
end

-- The meter ---------------------------------------------------------------------
--
-- A meter's definition is its hash m (spec fields written by create and
-- setspec from specFields, owner, name, version, the run id of the server
-- that served it last, and while a rebuild runs its phase); its hot state
-- is the string s: the numbers every step reads and writes, packed as
-- little-endian doubles (struct; exact up to 2^53), read with one GET and
-- written with one SET. The parsed spec is cached by the library, by the
-- meter's tag and its spec's version and signature (sver, sig in s).
--
-- s holds, in order (FIELDS): sver, sig, its layout (3: the history a
-- string; 2: a sorted set, converted by the first step), flags (bit 1: a
-- rebuild or migration under way, see m's rb; bit 2: the ledger may hold
-- entries though the meter has no window, which a release retires: see
-- retire), next_id, grants, revoked,
-- lapses, seq (the last arrival number), ops, hwm (the time high-water
-- mark), on and ouh:oul (the open set's count and units), held (calls held
-- after max_hold), nx (the next instant something leaves a window or a
-- hold ends; 0 none), minexp (the earliest lease expiry), tat, utat (the
-- buckets), gate (nothing is granted before it: the later of the quiet
-- time's end and the pause's, so that the fast path checks both with one
-- comparison), pn (the history's groups), pseq (their last insertion
-- number), pfd (a lower bound of their oldest completion), qn (waiters),
-- qend (the end of the quiet time of a meter put back after the store lost
-- its data), pld (the newest group's completion in the history); then for
-- each window i: wp (its start: how many ledger
-- entries it left behind), wh:wl (the sum of what it counts in the
-- ledger). The pause itself (until, by whom, from where) is in m: pu, pby,
-- pfrom (see Pause).

local FIELDS = {'sver', 'sig', 'layout', 'flags', 'next_id', 'grants', 'revoked', 'lapses', 'seq', 'ops', 'hwm',
                'on', 'ouh', 'oul', 'held', 'nx', 'minexp', 'tat', 'utat', 'quiet', 'pn', 'pseq', 'pfd', 'qn',
                'qend', 'pld'}
local SVER, SIG, LAYOUT_I, FLAGS, NEXT_ID, GRANTS, REVOKED, LAPSES, SEQ, OPS, HWM = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
local ON, OUH, OUL, HELD, NX, MINEXP, TAT, UTAT, GATE, PN, PSEQ, PFD, QN, QEND, PLD = 12, 13, 14, 15, 16, 17, 18, 19,
  20, 21, 22, 23, 24, 25, 26
local BASE = 26
local SLAYOUT = 3 -- the hot state's layout (v[LAYOUT_I])

local formats = {}
local function format_of(nwin)
  local f = formats[nwin]
  if not f then
    f = '<' .. string.rep('d', BASE + 3 * nwin)
    formats[nwin] = f
  end
  return f
end

-- The hot state is an array v in the order of FIELDS, then each window's
-- start and sum (at the indices w.p, w.h, w.l of spec_of). A state of
-- layout 2 (24 or 25 numbers before the windows': its length tells) gets
-- qend and pld (its history is converted by upkeep).
local function state_of(blob)
  local n = #blob / 8
  if (n - BASE) % 3 ~= 0 then
    local v = {struct.unpack('<' .. string.rep('d', n), blob)}
    v[#v] = nil
    if (n - 24) % 3 == 0 then table.insert(v, QEND, v[GATE]) end
    table.insert(v, PLD, 0)
    if v[FLAGS] % 4 < 2 then v[FLAGS] = v[FLAGS] + 2 end
    return v
  end
  local v = {struct.unpack(format_of((n - BASE) / 3), blob)}
  v[#v] = nil -- struct.unpack's next position
  if v[FLAGS] % 4 < 2 then v[FLAGS] = v[FLAGS] + 2 end -- written by another library, maybe: look once
  return v
end

local function blob_of(v, nwin)
  return struct.pack(format_of(nwin), unpack(v, 1, BASE + 3 * nwin))
end

-- blobs and states cache each meter's hot state, by its tag, as this
-- library last wrote it: the blob, and its numbers (v). A step whose GET
-- returns that blob (Lua interns strings: one comparison) takes v instead
-- of decoding it; blobs[tag] is false while a step has it (a step that
-- fails half-way leaves nothing changed behind). Anything that writes s
-- otherwise (another server, a test) writes another blob, decoded anew.
local blobs, states, nblobs = {}, {}, 0

-- cached_state is the hot state of meter tag as stored in blob.
local function cached_state(tag, blob)
  if blobs[tag] == blob then
    blobs[tag] = false
    return states[tag]
  end
  return state_of(blob)
end

-- cache_state remembers v as meter tag's hot state, stored as blob.
local function cache_state(tag, blob, v)
  if blobs[tag] == nil then
    if nblobs >= 4096 then blobs, states, nblobs = {}, {}, 0 end
    nblobs = nblobs + 1
  end
  blobs[tag], states[tag] = blob, v
end

-- sig_of is a checksum of a spec's text: with sver, it tells the cached
-- spec of a meter from another's.
local function sig_of(text)
  local h = 0
  for i = 1, #text do h = (h * 31 + string.byte(text, i)) % 2147483647 end
  return h
end

-- spec_of reads the rule's fields of the meter hash: windows
-- "n:per:units;...", conc, bucket rn/rper/burst, units bucket
-- un/uper/uburst, bygrant, mhold, mwaiters, horizon. lmode is how the
-- ledger is ordered: 'g' (count=grant with a window: every call enters at
-- its grant) or 'c' (at its end).
local function spec_of(f)
  local S = {conc = num(f.conc), bygrant = f.bygrant == '1', mhold = num(f.mhold), mwaiters = num(f.mwaiters),
             horizon = num(f.horizon), windows = {}, name = f.name, text = f.spec or ''}
  local i = 0
  for n, per, u in string.gmatch(f.win or '', '(%d+):(%d+):(%d)') do
    i = i + 1
    S.windows[i] = {i = i, n = tonumber(n), per = tonumber(per), units = u == '1', p = BASE + 3 * i - 2,
                    h = BASE + 3 * i - 1, l = BASE + 3 * i}
  end
  local byper = {}
  for j, w in ipairs(S.windows) do byper[j] = w end
  table.sort(byper, function(a, b) return a.per < b.per end)
  S.byper, S.longest = byper, byper[#byper]
  S.lmode = (S.bygrant and i > 0) and 'g' or 'c'
  if num(f.rn) > 0 then S.bucket = {interval = math.ceil(num(f.rper) / num(f.rn)), burst = num(f.burst)} end
  if num(f.un) > 0 then S.ubucket = {interval = math.ceil(num(f.uper) / num(f.un)), burst = num(f.uburst)} end
  -- the largest cost the units items can ever admit, -1: none limits it
  local m = -1
  for _, w in ipairs(S.windows) do
    if w.units and (m < 0 or w.n < m) then m = w.n end
  end
  if S.ubucket and (m < 0 or S.ubucket.burst < m) then m = S.ubucket.burst end
  S.maxcost = m
  return S
end

local function fields_of(K)
  local raw = redis.call('HGETALL', K[1])
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  return f
end

-- specs caches parsed specs by meter tag (read-only once cached).
local specs, nspecs = {}, 0

local function spec_for(K, tag, v)
  local S = specs[tag]
  if S and S.sver == v[SVER] and S.sig == v[SIG] then return S end
  S = spec_of(fields_of(K))
  S.sver, S.sig = v[SVER], v[SIG]
  if nspecs >= 4096 then specs, nspecs = {}, 0 end
  if not specs[tag] then nspecs = nspecs + 1 end
  specs[tag] = S
  return S
end

local function clock(A)
  if A[2] ~= '' then return tonumber(A[2]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- fresh_state is the hot state of a new meter of spec text at version.
local function fresh_state(version, text, nwin)
  local v = {}
  for i = 1, BASE + 3 * nwin do v[i] = 0 end
  v[SVER], v[SIG], v[LAYOUT_I], v[NEXT_ID] = version, sig_of(text), SLAYOUT, 1
  return v
end

-- legacy_state reads a meter of layout 1 (library rlfs1: no s): its
-- counters, and a migration to run first (phase mp, see Migration).
local function legacy_state(K)
  local f = fields_of(K)
  local v = fresh_state(num(f.version), f.spec or '', #spec_of(f).windows)
  for i, k in ipairs(FIELDS) do
    if k ~= 'sver' and k ~= 'sig' and k ~= 'layout' and f[k] then v[i] = num(f[k]) end
  end
  v[NEXT_ID], v[FLAGS], v[QEND] = math.max(v[NEXT_ID], 1), 3, v[GATE]
  redis.call('HSET', K[1], 'rb', 'mp', 'rbc', '0')
  return v
end

-- open reads the meter's hot state, its spec and the clock (never behind
-- the meter's high-water mark) into st (ST, the one scratch table of a
-- step: a function opens one meter). nil: no such meter.
local ST = {}
local function open(K, A)
  local blob = redis.call('GET', K[15])
  local v
  if blob then
    v = cached_state(K.tag, blob)
  elseif redis.call('EXISTS', K[1]) == 1 then
    v = legacy_state(K)
  else
    return nil
  end
  local tag = K.tag
  local S = spec_for(K, tag, v)
  local now = clock(A)
  local prev = v[HWM]
  if now < prev then now = prev else v[HWM] = now end
  -- one scratch table: a function opens one meter, once
  local st = ST
  st.K, st.tag, st.S, st.v, st.now, st.prev, st.prefix, st.name, st.work = K, tag, S, v, now, prev, A[1], S.name, 0
  st.gone, st.opsd, st.f = nil, nil, nil
  return st
end

-- flush writes the hot state back.
local function flush(st)
  if st.gone then return end
  local blob = blob_of(st.v, #st.S.windows)
  redis.call('SET', st.K[15], blob)
  cache_state(st.tag, blob, st.v)
end

-- ops orders what functions tell hosts about the queue: a host applies a
-- wake instant only if no later one told it another (meter.Admission.Order).
local function ops(st)
  if not st.opsd then st.v[OPS], st.opsd = st.v[OPS] + 1, true end
  return st.v[OPS]
end

local function get_call(st, sid)
  local s = redis.call('HGET', st.K[2], sid)
  if not s then return nil end
  return call_of(sid, s)
end

-- oh and wh are a host's keys, cached with the meter's (K.hosts).
local function oh(st, host)
  local H = st.K.hosts[host]
  if not H then
    H = {st.tag .. 'oh:' .. host, st.tag .. 'wh:' .. host}
    st.K.hosts[host] = H
  end
  return H[1]
end

local function wh(st, host)
  oh(st, host)
  return st.K.hosts[host][2]
end

local MORE = {ok = 'MORE'}
local function missing() return redis.error_reply('RLFS_NOMETER no such meter') end

-- The ledger -----------------------------------------------------------------
--
-- l holds what still counts, or may count again, against a window: with
-- lmode 'c' the ended calls (released, lapsed, or held after max_hold) at
-- their end; with lmode 'g' every call at its grant. Window i counts the
-- entries from rank wp<i> on, whose sum is wh<i>:wl<i>; those before it have
-- a count time at or before now - PER (they left it). After upkeep the
-- starts are exact at now, so an entry added or removed is behind window i
-- exactly when its count time is at or before now - PER_i: no rank is read.

local function weight(w, e)
  if w.units then return e.u end
  return e.n
end

-- weight_of is weight(w, entry_of(m)) for ledger member m: a call weighs 1
-- in a call window, its units in a units window.
local function weight_of(w, m)
  if string.byte(m, 1) == 103 then return weight(w, entry_of(m)) end
  if w.units then return units_of(m) end
  return 1
end

-- ledger_add adds entry e (member m) at count time x. With lmode 'g', a
-- call in progress behind every window waits in lo, out of the ledger's
-- front (retirement reads it). An entry already there is not added twice.
local function ledger_add(st, x, m, e)
  local S, v, now = st.S, st.v, st.now
  local L = S.longest
  if S.lmode == 'g' and e.d == 0 and not e.group and L and x <= now - L.per then
    redis.call('ZADD', st.K[12], x, m)
    return
  end
  if redis.call('ZADD', st.K[4], int(x), m) == 0 then return end
  if not L and v[FLAGS] % 4 < 2 then v[FLAGS] = v[FLAGS] + 2 end
  for _, w in ipairs(S.windows) do
    if x <= now - w.per then
      v[w.p] = v[w.p] + 1
    else
      v[w.h], v[w.l] = add2(v[w.h], v[w.l], weight(w, e))
      v[NX] = minpos(v[NX], x + w.per)
    end
  end
  if e.group then redis.call('ZADD', st.K[13], e.first, m) end
end

-- ledger_del removes entry e (member m, count time x); false if it was in
-- neither the ledger nor lo (a call the history holds already).
local function ledger_del(st, x, m, e)
  if redis.call('ZREM', st.K[4], m) == 0 then
    return redis.call('ZREM', st.K[12], m) == 1
  end
  local v, now = st.v, st.now
  for _, w in ipairs(st.S.windows) do
    if x <= now - w.per then
      v[w.p] = v[w.p] - 1
    else
      v[w.h], v[w.l] = sub2(v[w.h], v[w.l], weight(w, e))
    end
  end
  if e.group then redis.call('ZREM', st.K[13], m) end
  return true
end

-- ledger_swap replaces a call's entry (its units or end changed).
local function ledger_swap(st, x, old, nu)
  if ledger_del(st, x, call_entry(old.id, old.u, old.g, old.d), old) then
    ledger_add(st, x, call_entry(nu.id, nu.u, nu.g, nu.d), nu)
  end
end

-- count_time is when an entry starts counting: its grant with lmode 'g',
-- else its end.
local function count_time(S, e)
  if S.lmode == 'g' then return e.g end
  return e.d
end

-- The history -------------------------------------------------------------------
--
-- The history (p) is one string of groups, five little-endian doubles each
-- (n, first, granted, done, units), ordered by done, then by insertion (as
-- meter.State's Past); PN counts them, PFD is the oldest's done, PLD the
-- newest's. Groups that come in order are appended (APPEND); late ones
-- (another host's release came first) rewrite only the newest groups from
-- the oldest late one on (GETRANGE, SETRANGE); anything else (dropping old
-- groups, compaction, a widening that puts groups back) reads and writes it
-- whole: at most MAXPAST + RETIRE groups, a few KB, decoded and encoded by
-- struct in one call each.

local dformats = {}
local function dformat(k)
  local f = dformats[k]
  if not f then
    f = '<' .. string.rep('d', k)
    if k <= 5 * (MAXPAST + RETIRE) then dformats[k] = f end
  end
  return f
end

-- hist_read is the history as one flat array: n, first, g, d, u of each
-- group in turn.
local function hist_read(st)
  local b = redis.call('GET', st.K[9])
  if not b or #b < 40 then return {} end
  local H = {struct.unpack(dformat(#b / 8), b)}
  H[#H] = nil
  return H
end

-- hist_write stores the history H (flat) whole, and its counters.
local function hist_write(st, H)
  local v, k = st.v, #H
  if k == 0 then
    redis.call('DEL', st.K[9])
    v[PN], v[PFD], v[PLD] = 0, 0, 0
    return
  end
  redis.call('SET', st.K[9], struct.pack(dformat(k), unpack(H)))
  v[PN], v[PFD], v[PLD] = k / 5, H[4], H[k - 1]
end

-- hist_add adds groups G (flat, in the order they came) to the history:
-- sorted by done, stably, then appended if none is older than the newest
-- there, else merged in after the groups of the same done (meter's
-- addPast). With late (the releases of a meter without windows), a group
-- older than the newest there takes the newest's done instead (its first
-- stays its own completion), and all are appended: such a group came late
-- because another host's release, completed a little later, came first;
-- it counts that much longer should a window widen over it, never shorter,
-- and no release reads and rewrites the history's tail.
local function hist_add(st, G, late)
  local v, k = st.v, #G
  if k == 0 then return end
  local sorted = true
  for i = 9, k, 5 do
    if G[i] < G[i - 5] then sorted = false end
  end
  if not sorted then
    local idx = {}
    for i = 1, k / 5 do idx[i] = i end
    table.sort(idx, function(a, b)
      local da, db = G[5 * a - 1], G[5 * b - 1]
      if da ~= db then return da < db end
      return a < b
    end)
    local S2 = {}
    for _, i in ipairs(idx) do
      for j = 5 * i - 4, 5 * i do S2[#S2 + 1] = G[j] end
    end
    G = S2
  end
  if late and v[PN] > 0 then
    for i = 4, k, 5 do
      if G[i] >= v[PLD] then break end
      G[i] = v[PLD]
    end
  end
  if v[PN] == 0 or G[4] >= v[PLD] then
    redis.call('APPEND', st.K[9], struct.pack(dformat(k), unpack(G)))
    if v[PN] == 0 then v[PFD] = G[4] end
    v[PN], v[PLD] = v[PN] + k / 5, G[k - 1]
    return
  end
  -- Late groups (a release journaled before another host's, which came
  -- first) belong among the newest: only the groups done after G's oldest
  -- are read (GETRANGE, from the end, HCHUNK at a time) and written back
  -- with G merged in (SETRANGE), where the whole history's merge would
  -- put them. Groups are 40 bytes.
  local key, total, from, H = st.K[9], v[PN], v[PN], {}
  repeat
    local take = math.min(HCHUNK, from)
    from = from - take
    local C = {struct.unpack(dformat(take * 5), redis.call('GETRANGE', key, from * 40, (from + take) * 40 - 1))}
    C[#C] = nil
    for x = 1, #H do C[#C + 1] = H[x] end
    H = C
  until from == 0 or H[4] <= G[4]
  local M, i, j = {}, 1, 1
  while i <= #H or j <= k do
    local src
    if j > k or (i <= #H and H[i + 3] <= G[j + 3]) then
      src, i = H, i + 5
      for x = i - 5, i - 1 do M[#M + 1] = src[x] end
    else
      src, j = G, j + 5
      for x = j - 5, j - 1 do M[#M + 1] = src[x] end
    end
  end
  redis.call('SETRANGE', key, from * 40, struct.pack(dformat(#M), unpack(M)))
  v[PN], v[PLD] = total + k / 5, M[#M - 1]
  if from == 0 then v[PFD] = M[4] end
end

-- hist_drop drops the groups that completed at or before keep (the oldest).
local function hist_drop(st, keep)
  local v = st.v
  if v[PFD] == 0 or v[PFD] > keep then return end
  local H = hist_read(st)
  local i = 1
  while i <= #H and H[i + 3] <= keep do i = i + 5 end
  local R = {}
  for x = i, #H do R[#R + 1] = H[x] end
  hist_write(st, R)
end

-- The open set ----------------------------------------------------------------

-- close_open takes call c out of the open set and its sums.
local function close_open(st, c)
  local v = st.v
  if st.S.mhold > 0 then redis.call('ZREM', st.K[3], c.sid) end
  v[ON] = v[ON] - 1
  v[OUH], v[OUL] = sub2(v[OUH], v[OUL], units(c))
end

-- end_call completes call c at t (a release, a lapse, a restart): it stops
-- holding and enters the ledger at its end (lmode 'c'), or its entry there
-- learns its end (lmode 'g'). A held call only loses its record. With
-- direct (a release on a meter without windows, where it counts nowhere
-- at once: a table), its group is added to direct, which the caller adds
-- to the history (hist_add: one write for the releases of a step), as
-- retirement would.
local function end_call(st, c, t, direct)
  local K, v = st.K, st.v
  redis.call('HDEL', K[2], c.sid)
  redis.call('ZREM', oh(st, c.host), c.sid)
  if c.tix then redis.call('HDEL', K[7], tkey(c.host, c.inc, c.ticket)) end
  if c.done > 0 then
    v[HELD] = v[HELD] - 1
    return
  end
  close_open(st, c)
  if t < c.g then t = c.g end
  local u = units(c)
  if direct and not st.S.longest then
    local k = #direct
    direct[k + 1], direct[k + 2], direct[k + 3], direct[k + 4], direct[k + 5] = 1, t, c.g, t, u
    return
  end
  local e = {id = c.id, n = 1, u = u, g = c.g, d = t, first = t}
  if st.S.lmode == 'c' then
    ledger_add(st, t, call_entry(c.id, u, c.g, t), e)
  else
    ledger_swap(st, c.g, {id = c.id, n = 1, u = u, g = c.g, d = 0}, e)
  end
end

-- hold_ended: max_hold ended call c (in progress) at t. It counts as
-- completed then; its record stays, held, until its host releases it.
local function hold_ended(st, c, t)
  local v = st.v
  close_open(st, c)
  c.done = t
  redis.call('HSET', st.K[2], c.sid, call_text(c))
  v[HELD] = v[HELD] + 1
  local u = units(c)
  local e = {id = c.id, n = 1, u = u, g = c.g, d = t, first = t}
  if st.S.lmode == 'c' then
    ledger_add(st, t, call_entry(c.id, u, c.g, t), e)
  else
    ledger_swap(st, c.g, {id = c.id, n = 1, u = u, g = c.g, d = 0}, e)
  end
end

-- The rule -------------------------------------------------------------------

-- used_in is what counts against window w: its ledger sum, and with lmode
-- 'c' the calls in progress (their end is unknown, or max_hold away).
local function used_in(st, w)
  local v = st.v
  local n = val2(v[w.h], v[w.l])
  if st.S.lmode == 'c' then
    if w.units then n = add_sat(n, val2(v[OUH], v[OUL])) else n = add_sat(n, v[ON]) end
  end
  return n
end

-- walk_ledger: the end (count time + PER) at which the weight counted in
-- window w from its start exceeds k, walking at most MAXWALK entries; past
-- them, the end of the last one walked (the meter looks again then).
local function walk_ledger(st, w, k)
  local pos, walked, last = st.v[w.p], 0, nil
  while walked < MAXWALK do
    local e = redis.call('ZRANGE', st.K[4], pos, pos + 63, 'WITHSCORES')
    if #e == 0 then break end
    for j = 1, #e, 2 do
      local wt = weight_of(w, e[j])
      last = e[j + 1] -- its count time, read when it is the answer
      walked = walked + 1
      if k < wt or walked == MAXWALK then return tonumber(last) + w.per end
      k = k - wt
    end
    pos = pos + #e / 2
  end
  if last then return tonumber(last) + w.per end
  return 0
end

-- walk_open is walk_ledger over the calls in progress, in grant order,
-- each ending at grant + max_hold + PER.
local function walk_open(st, w, k)
  local pos, walked, last = 0, 0, 0
  while walked < MAXWALK do
    local e = redis.call('ZRANGE', st.K[3], pos, pos + 63, 'WITHSCORES')
    if #e == 0 then break end
    local ids = {}
    for j = 1, #e, 2 do ids[#ids + 1] = e[j] end
    local recs = redis.call('HMGET', st.K[2], unpack(ids))
    for j = 1, #ids do
      local wt = recs[j] and units(call_of(ids[j], recs[j])) or 0
      last = tonumber(e[2 * j]) + st.S.mhold + w.per
      walked = walked + 1
      if k < wt then return last end
      k = k - wt
      if walked == MAXWALK then return last end
    end
    pos = pos + #ids
  end
  return last
end

-- kth is when window w, over its limit, may admit: the end of the k-th
-- (0-based) unit or call counting, in count order: the ledger's entries
-- from the window's start, then (lmode 'c') the calls in progress, whose
-- ends come later (0: only a release, without max_hold). A call window
-- finds it by rank, unless history groups (of n calls each) are in the
-- ledger; a units window walks (walk_ledger).
local function kth(st, w, k)
  local S, v = st.S, st.v
  local s = val2(v[w.h], v[w.l])
  if k < s then
    if w.units or redis.call('ZCARD', st.K[13]) > 0 then return walk_ledger(st, w, k) end
    local e = redis.call('ZRANGE', st.K[4], v[w.p] + k, v[w.p] + k, 'WITHSCORES')
    return tonumber(e[2]) + w.per
  end
  if S.mhold <= 0 then return 0 end
  k = k - s
  if w.units then return walk_open(st, w, k) end
  local e = redis.call('ZRANGE', st.K[3], k, k, 'WITHSCORES')
  if #e == 0 then return 0 end
  return tonumber(e[2]) + S.mhold + w.per
end

-- admit applies the rule (meter.AdmitCost) to a call of cost at now:
-- concurrency, every window and both buckets, on counters. It returns ok,
-- and when not ok the earliest instant it could be admitted (0: only after
-- a release, or never for a cost no units item can admit).
local function admit(st, cost)
  local S, v, now = st.S, st.v, st.now
  if S.maxcost >= 0 and cost > S.maxcost then return false, 0 end
  local at, blocked = now, false
  if S.conc > 0 and v[ON] >= S.conc then
    if S.mhold > 0 then
      local e = redis.call('ZRANGE', st.K[3], v[ON] - S.conc, v[ON] - S.conc, 'WITHSCORES')
      at = math.max(at, tonumber(e[2]) + S.mhold)
    else
      blocked = true
    end
  end
  for _, w in ipairs(S.windows) do
    local need = 1
    if w.units then need = cost end
    local used = used_in(st, w)
    if used + need > w.n then
      local t = kth(st, w, used + need - w.n - 1)
      if t == 0 then blocked = true elseif t > at then at = t end
    end
  end
  if S.bucket then at = math.max(at, v[TAT] - S.bucket.interval * (S.bucket.burst - 1)) end
  if S.ubucket and cost > 0 then at = math.max(at, v[UTAT] - S.ubucket.interval * (S.ubucket.burst - cost)) end
  if blocked then return false, 0 end
  if at > now then return false, at end
  return true, 0
end

-- Buckets (meter/bounds.go) ----------------------------------------------------

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

-- Ageing and expiry ------------------------------------------------------------

-- age moves each window's start past the ledger entries that stopped
-- counting against it (count time at or before now - PER), subtracting them:
-- each entry leaves each window once. Windows go from the shortest to the
-- longest: behind the longest, an entry counts nowhere, and with lmode 'g'
-- a call still in progress moves to lo. It returns false when its budget
-- is spent (the starts so far are kept), and the next instant an entry
-- leaves a window.
local function age(st)
  local S, v, K = st.S, st.v, st.K
  local nxa = 0
  local plain = nil -- no history group in the ledger: every entry weighs 1 in a call window
  for _, w in ipairs(S.byper) do
    local cut, pos = st.now - w.per, v[w.p]
    local done = false
    if not w.units and not (w == S.longest and S.lmode == 'g') then
      if plain == nil then plain = redis.call('ZCARD', K[13]) == 0 end
      if plain then
        -- a call window's start is the rank of the first entry that counts
        local np = redis.call('ZCOUNT', K[4], '-inf', int(cut))
        if np > pos then
          v[w.h], v[w.l] = sub2(v[w.h], v[w.l], np - pos)
          pos = np
        end
        local e = redis.call('ZRANGE', K[4], pos, pos, 'WITHSCORES')
        if #e > 0 then nxa = minpos(nxa, tonumber(e[2]) + w.per) end
        done = true
      end
    end
    while not done do
      if st.work >= AGE then
        v[w.p] = pos
        return false, nxa
      end
      local e = redis.call('ZRANGE', K[4], pos, pos + 15, 'WITHSCORES')
      for j = 1, #e, 2 do
        local x = tonumber(e[j + 1])
        if x > cut then
          nxa = minpos(nxa, x + w.per)
          done = true
          break
        end
        st.work = st.work + 1
        local en = nil -- parsed only as far as needed: whole with count=grant
        if S.lmode == 'g' then en = entry_of(e[j]) end
        v[w.h], v[w.l] = sub2(v[w.h], v[w.l], weight_of(w, e[j]))
        if w == S.longest and en and en.d == 0 and not en.group then
          redis.call('ZREM', K[4], e[j])
          redis.call('ZADD', K[12], e[j + 1], e[j])
          for _, o in ipairs(S.windows) do
            if o ~= w then v[o.p] = v[o.p] - 1 end
          end
        else
          pos = pos + 1
        end
      end
      if #e < 32 then done = true end
    end
    v[w.p] = pos
  end
  return true, nxa
end

-- expire ends the holds max_hold ended, oldest first (hold_ended).
local function expire(st)
  local S = st.S
  if S.mhold <= 0 then return true end
  while true do
    if st.work >= AGE then return false end
    local e = redis.call('ZRANGE', st.K[3], 0, 7, 'WITHSCORES')
    for j = 1, #e, 2 do
      local g = tonumber(e[j + 1])
      if g + S.mhold > st.now then
        st.v[NX] = minpos(st.v[NX], g + S.mhold)
        return true
      end
      local c = get_call(st, e[j])
      if c then hold_ended(st, c, g + S.mhold) else redis.call('ZREM', st.K[3], e[j]) end
      st.work = st.work + HOLD
    end
    if #e < 16 then return true end
  end
end

-- Leases ----------------------------------------------------------------------

-- host_lease is host's lease entry: its expiry (nil: none), and whether
-- it is of incarnation inc.
local function host_lease(st, host, inc)
  local s = redis.call('HGET', st.K[8], host)
  if not s then return nil, false end
  local i = string.find(s, ',', 1, true) -- "expiry,incarnation", read without making strings
  return tonumber(string.sub(s, 1, i - 1)), #s - i == #inc and string.find(s, inc, i + 1, true) == i + 1
end

-- earliest recomputes minexp from every host's lease (few: one per host
-- that uses the meter).
local function earliest(st)
  local raw = redis.call('HGETALL', st.K[8])
  local m = 0
  for i = 2, #raw, 2 do m = minpos(m, (lease_of_text(raw[i]))) end
  st.v[MINEXP] = m
end

-- touch_lease is a step's look at the host's lease: it creates the entry,
-- replaces one of another incarnation, and renews one that was not renewed
-- for a third of the lease (always, with force: the renewal loop). A lease
-- is never shortened (resume may have extended it). It returns the
-- lease's expiry: the host's proof that its lease holds until then.
local function touch_lease(st, host, inc, lease, force)
  local was, same = host_lease(st, host, inc)
  if same and not force and was - st.now >= lease * 2 / 3 then return was end
  local exp = st.now + lease
  if same and was > exp then exp = was end
  redis.call('HSET', st.K[8], host, lease_text(exp, inc))
  if was and was <= st.v[MINEXP] then earliest(st) else st.v[MINEXP] = minpos(st.v[MINEXP], exp) end
  return exp
end

-- resume keeps the store's own downtime out of the leases. A lease counts
-- the time the server serves: when a call finds that the server restarted
-- (or a replica took over) since the meter's previous call, every lease is
-- extended by the time since that call, so that no live host's calls end,
-- and none of its waiters leave, because the store was down (a host that
-- died meanwhile lapses a lease later than it would have). The server's
-- run id tells (INFO, read once by this library's instance: INST.run). A
-- restarted server (or another one) runs a new instance of the library:
-- a meter is looked at once per instance (seen), by the first step on it.
-- A server that refuses INFO (an ACL without it) leaves leases as they
-- are. A meter served before by another server is also unsettled
-- (unsettle): it may have lost its last writes.
local seen, nseen = {}, 0

-- RC holds what notices and reconciles a meter that lost its last writes
-- (one table: Lua allows 200 top-level locals).
local RC = {LH = {}, nlh = 0}

-- run_id is the server's run id, read once by this library's instance
-- (false: INFO refused).
function RC.run_id()
  if INST.run == nil then
    local info = redis.pcall('INFO', 'server')
    INST.run = type(info) == 'string' and string.match(info, 'run_id:(%x+)') or false
  end
  return INST.run
end

-- unsure reports whether the server may have lost more than the last
-- second of writes: unless it keeps an AOF and was not promoted from a
-- replica (INFO persistence and replication: a second replication id says
-- a failover), read once by this library's instance (a server that refuses
-- INFO is unsure).
function RC.unsure()
  if INST.unsure == nil then
    local p, r = redis.pcall('INFO', 'persistence'), redis.pcall('INFO', 'replication')
    INST.unsure = not (type(p) == 'string' and string.find(p, 'aof_enabled:1', 1, true) and type(r) == 'string' and
      string.match(r, 'second_repl_offset:(%-?%d+)') == '-1')
  end
  return INST.unsure
end

-- DEFLEASE is the quiet time (µs) of a meter unsettled before any host
-- told its lease (meter/redis.DefaultLease).
RC.DEFLEASE = 10000000

-- unsettle: the meter is served by another server than its last step's (a
-- replica took over, or the server restarted from its AOF or RDB): the
-- writes of the last moments before may be lost, and only the hosts know
-- them. Its generation moves (gen in m: rlfs2_renew replies it, and every
-- host with a part in the meter reconciles it, see rlfs2_mine), the id
-- counter the server had then is kept (rcid: a call of a host with an id
-- at least that was granted on the lost writes, or after), the calls put
-- back for the previous one are forgotten (ra), and nothing is granted for
-- the longest lease a host told (lh; DEFLEASE if none): until rcq (the
-- quiet time, as after a put-back: every live host renews within a third
-- of its lease, and reconciles). After a failover, or a restart from an
-- RDB, the quiet time lasts (rch '*'): a host whose lease was among the
-- lost writes is unknown to this server. After a restart from an AOF it
-- ends once every host with a lease on the meter reconciled (rch: those
-- not yet; rlfs2_settled), at once if none has one: an AOF loses the last
-- second at most, and only to a crash of the machine.
function RC.unsettle(st)
  local K, v = st.K, st.v
  local q = num(redis.call('HGET', K[1], 'lh'))
  if q <= 0 then q = RC.DEFLEASE end
  local qend, rch = st.now + q, '*'
  if not RC.unsure() then
    rch = table.concat(redis.call('HKEYS', K[8]), ',')
    if rch == '' then qend = st.now end
  end
  redis.call('HINCRBY', K[1], 'gen', 1)
  redis.call('HSET', K[1], 'rcid', int(math.max(v[NEXT_ID], 1)), 'rcq', int(qend), 'rch', rch)
  redis.call('UNLINK', K.tag .. 'ra')
  if qend > v[QEND] then v[QEND] = qend end
  if v[QEND] > v[GATE] then v[GATE] = v[QEND] end
end

local function resume(st)
  if seen[st.tag] then return end
  if nseen >= 4096 then seen, nseen = {}, 0 end
  seen[st.tag], nseen = true, nseen + 1
  local run = RC.run_id()
  if not run then return end
  local was = redis.call('HGET', st.K[1], 'run')
  if run == was then return end
  redis.call('HSET', st.K[1], 'run', run)
  if not was then return end
  RC.unsettle(st)
  if st.prev == 0 then return end
  local gap = st.now - st.prev
  local raw = redis.call('HGETALL', st.K[8])
  for i = 1, #raw, 2 do
    local exp, inc = lease_of_text(raw[i + 1])
    redis.call('HSET', st.K[8], raw[i], lease_text(exp + gap, inc))
  end
  if st.v[MINEXP] ~= 0 then st.v[MINEXP] = st.v[MINEXP] + gap end
end

local function forget_waiter(st, wt)
  if redis.call('ZREM', st.K[5], wt.seq) == 1 then st.v[QN] = st.v[QN] - 1 end
  redis.call('HDEL', st.K[6], wt.seq)
  redis.call('HDEL', st.K[7], tkey(wt.host, wt.inc, wt.ticket))
  redis.call('ZREM', wh(st, wt.host), wt.seq)
end

-- end_host ends host's calls at t and takes its waiters out of the queue,
-- at most LAPSE of each per call; with keep (a restart), only those of
-- other incarnations than keep (older: they come first). It returns
-- whether it is done, and how many calls it ended.
local function end_host(st, host, t, keep)
  local n = 0
  local ids = redis.call('ZRANGE', oh(st, host), 0, LAPSE - 1)
  for _, id in ipairs(ids) do
    local c = get_call(st, id)
    if c and keep and c.inc == keep then break end
    if c then end_call(st, c, t) else redis.call('ZREM', oh(st, host), id) end
    n = n + 1
  end
  if n == LAPSE then return false, n end
  local seqs = redis.call('ZRANGE', wh(st, host), 0, LAPSE - 1)
  local m = 0
  for _, seq in ipairs(seqs) do
    local s = redis.call('HGET', st.K[6], seq)
    local wt = s and waiter_of(seq, s)
    if wt and keep and wt.inc == keep then break end
    if wt then forget_waiter(st, wt) else redis.call('ZREM', wh(st, host), seq) end
    m = m + 1
  end
  return m < LAPSE, n
end

-- lapse ends the leases that ran out: their hosts' calls in progress count
-- as completed at the lapse, their waiters leave the queue.
local function lapse(st)
  local raw = redis.call('HGETALL', st.K[8])
  local m = 0
  for i = 1, #raw, 2 do
    local exp = lease_of_text(raw[i + 1])
    if exp <= st.now then
      if not end_host(st, raw[i], exp, nil) then return false end
      redis.call('HDEL', st.K[8], raw[i])
      st.v[LAPSES] = st.v[LAPSES] + 1
    else
      m = minpos(m, exp)
    end
  end
  st.v[MINEXP] = m
  return true
end

-- Retirement (meter.State.Retire) ----------------------------------------------
--
-- At a release, the ledger's entries that count against no window (count
-- time at or before now - longest: the longest window's start) move into
-- the history, one group each (at most RETIRE a step: the rest at the next
-- release); groups older than the horizon are dropped, and past MAXPAST
-- groups the history is compacted.
--
-- convert_history turns a history of layout 2 (a sorted set, score done,
-- members "SEQ:n:first:granted:done:units") into this layout's string.
local function convert_history(st)
  local K, v = st.K, st.v
  local t = redis.call('TYPE', K[9])
  if t.ok == 'zset' then
    local G = {}
    for _, m in ipairs(redis.call('ZRANGE', K[9], 0, -1)) do
      local g = group_of(m)
      G[#G + 1], G[#G + 2], G[#G + 3], G[#G + 4], G[#G + 5] = g.n, g.first, g.g, g.d, g.u
    end
    hist_write(st, G)
  end
  v[LAYOUT_I] = SLAYOUT
end

-- merge_past is one pass of meter's mergePast over H (flat): from the
-- newest back, a group joins the newer one after it while that one's done
-- is within (its age)/div of the group's first (div 0: all). The groups
-- are written newest first, then put back in order in place (explicit
-- counters: a compaction runs up to six passes over MAXPAST groups).
local function merge_past(H, now, div)
  local floor = math.floor
  local out, o = {}, 0
  local k = #H
  local n, first, g, d, u = H[k - 4], H[k - 3], H[k - 2], H[k - 1], H[k]
  -- integer division as Go's time.Duration / time.Duration truncates
  local lim = div ~= 0 and floor((now - d) / div) or 0
  for i = k - 9, 1, -5 do
    if div == 0 or d - H[i + 1] <= lim then
      n, u, first = n + H[i], add_sat(u, H[i + 4]), H[i + 1]
      if H[i + 2] > g then g = H[i + 2] end
    else
      out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = n, first, g, d, u
      o = o + 5
      n, first, g, d, u = H[i], H[i + 1], H[i + 2], H[i + 3], H[i + 4]
      if div ~= 0 then lim = floor((now - d) / div) end
    end
  end
  out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = n, first, g, d, u
  o = o + 5
  local a, b = 1, o - 4
  while a < b do
    for x = 0, 4 do out[a + x], out[b + x] = out[b + x], out[a + x] end
    a, b = a + 5, b - 5
  end
  return out
end

-- compact merges the history into at most MAXPAST/2 groups (meter.compactPast).
--
-- meter's compactPast takes the first of div = 16, 8, 4, 2, 1 (PASTDIV on)
-- whose pass leaves at most MAXPAST/2 groups, else one group of them all.
-- A pass's count only shrinks as div does (the history is ordered by done,
-- and an older run head reaches at least as far back as a newer one:
-- meter/rule's TestMergePastCountShrinksWithDiv), so after div 16 the
-- largest div that fits is found by bisection: at most four passes
-- instead of five, and a burst of recent releases, which fits none, takes
-- three (16, 2, 1), then one group of all, which is what merging a pass's
-- result wholly gives. The result is meter's exactly.
local function compact(st)
  local past, half = hist_read(st), 5 * MAXPAST / 2
  local function fits(div)
    local out = merge_past(past, st.now, div)
    if #out <= half then return out end
    return nil
  end
  local out = fits(PASTDIV) -- 16
  if not out then
    out = fits(PASTDIV / 8) -- 2
    if out then
      out = fits(PASTDIV / 2) or fits(PASTDIV / 4) or out -- 8, 4
    else
      out = fits(PASTDIV / 16) or merge_past(past, st.now, 0) -- 1, all
    end
  end
  hist_write(st, out)
end

local function longest(S)
  if S.longest then return S.longest.per end
  return 0
end

local function retire(st)
  local S, v, K, now = st.S, st.v, st.K, st.now
  local n = 0
  if S.longest then
    n = v[S.longest.p]
  elseif v[FLAGS] % 4 >= 2 then
    n = redis.call('ZCARD', K[4])
    if n == 0 then v[FLAGS] = v[FLAGS] - 2 end
  end
  n = math.min(n, RETIRE)
  if n > 0 then
    local e = redis.call('ZRANGE', K[4], 0, n - 1)
    local G = {}
    for _, m in ipairs(e) do
      local g = entry_of(m)
      G[#G + 1], G[#G + 2], G[#G + 3], G[#G + 4], G[#G + 5] = g.n, g.first, g.g, g.d, g.u
      if g.group then redis.call('ZREM', K[13], m) end
    end
    redis.call('ZREMRANGEBYRANK', K[4], 0, n - 1)
    for _, w in ipairs(S.windows) do v[w.p] = v[w.p] - n end
    hist_add(st, G)
  end
  hist_drop(st, now - math.max(S.horizon, longest(S)))
  if v[PN] > MAXPAST then compact(st) end
end

-- The queue ----------------------------------------------------------------------

local function head(st)
  while true do
    local h = redis.call('ZRANGE', st.K[5], 0, 0)
    if #h == 0 then return nil end
    local s = redis.call('HGET', st.K[6], h[1])
    if s then return waiter_of(h[1], s) end
    redis.call('ZREM', st.K[5], h[1])
    st.v[QN] = st.v[QN] - 1
  end
end

-- enqueue queues waiter wt. The first waiter of an empty queue is told to
-- every other host with a lease on the meter ("q,QN,0,0,NOW,METER" on its
-- channel): a host that holds calls then sends its releases at once
-- instead of waiting for an acquire to carry them (releases.go).
local function enqueue(st, wt)
  local v = st.v
  if v[QN] == 0 then
    local raw = redis.call('HKEYS', st.K[8])
    local msg = 'q,1,0,0,' .. int(st.now) .. ',' .. st.name
    for _, h in ipairs(raw) do
      if h ~= wt.host then redis.call('PUBLISH', st.prefix .. ':h:' .. h, msg) end
    end
  end
  v[SEQ], v[QN] = v[SEQ] + 1, v[QN] + 1
  local seq = int(v[SEQ])
  redis.call('ZADD', st.K[5], v[SEQ], seq)
  redis.call('HSET', st.K[6], seq, string.format('%s,%s,%s,%d,%d,%s', wt.host, wt.inc, wt.ticket, st.now, wt.cost, wt.who))
  redis.call('HSET', st.K[7], tkey(wt.host, wt.inc, wt.ticket), seq)
  redis.call('ZADD', wh(st, wt.host), v[SEQ], seq)
  return v[SEQ]
end

-- grant makes a call of cost for ticket of host (incarnation inc, process
-- who) at now and stores it; with indexed (a waiter granted by dispatch), t
-- maps its ticket to it. It returns the call's id.
local function grant(st, host, inc, ticket, cost, who, indexed)
  local S, v, K, now = st.S, st.v, st.K, st.now
  local id = math.max(v[NEXT_ID], 1)
  v[NEXT_ID], v[GRANTS] = id + 1, v[GRANTS] + 1
  local sid, snow = int(id), int(now)
  redis.call('HSET', K[2], sid, record(now, cost, -1, 0, 0, indexed, ticket, host, inc, who))
  if S.mhold > 0 then redis.call('ZADD', K[3], snow, sid) end
  redis.call('ZADD', oh(st, host), snow, sid)
  if indexed then redis.call('HSET', K[7], tkey(host, inc, ticket), 'c' .. int(id)) end
  v[ON] = v[ON] + 1
  v[OUH], v[OUL] = add2(v[OUH], v[OUL], cost)
  if S.lmode == 'g' then ledger_add(st, now, call_entry(id, cost, now, 0), {n = 1, u = cost, g = now, d = 0}) end
  if S.mhold > 0 then v[NX] = minpos(v[NX], now + S.mhold) end
  if S.bucket then v[TAT] = math.max(v[TAT], now) + S.bucket.interval end
  if S.ubucket and cost > 0 then v[UTAT] = math.max(v[UTAT], now) + S.ubucket.interval * cost end
  return id
end

-- wake is when the head should be tried again: the rule's instant or, when
-- only a release can admit it, the earliest lease lapse (0: none).
local function wake(st, at)
  if at ~= 0 then return at end
  return st.v[MINEXP]
end

-- next_at is when to try the head of the queue (of cost `cost`) again: the
-- end of the gate (a pause, the quiet time), else the rule's instant (wake).
local function next_at(st, cost)
  if st.now < st.v[GATE] then return st.v[GATE] end
  local _, a = admit(st, cost)
  return wake(st, a)
end

-- notify tells every host with waiters when to try the head again.
local function notify(st, at, hd)
  local raw = redis.call('HGETALL', st.K[8])
  local msg = 'n,' .. int(at) .. ',' .. int(st.now) .. ',' .. (hd and hd.host or '') .. ',' .. int(ops(st)) .. ',' .. st.name
  for i = 1, #raw, 2 do
    if redis.call('ZCARD', wh(st, raw[i])) > 0 then redis.call('PUBLISH', st.prefix .. ':h:' .. raw[i], msg) end
  end
end

-- lease_of is host's lease expiry for incarnation inc (0: none).
local function lease_of(st, host, inc)
  local exp, same = host_lease(st, host, inc)
  if same then return exp end
  return 0
end

-- dispatch grants the head of the queue while the rule admits it (at most
-- DISPATCH; then it asks for a dispatch at once), telling each waiter's
-- host, and returns when to try the next head (0: no waiter, or only a
-- release).
local function dispatch(st)
  local granted = 0
  while true do
    local hd = head(st)
    if not hd then
      if granted > 0 then notify(st, 0, nil) end
      return 0
    end
    if st.S.maxcost >= 0 and hd.cost > st.S.maxcost then
      -- a limits write shrank a units item below its cost: it can never
      -- be admitted (E2BIG on its host)
      forget_waiter(st, hd)
      redis.call('PUBLISH', st.prefix .. ':h:' .. hd.host, 'r,' .. hd.ticket .. ',0,0,' .. int(st.now) .. ',' .. st.name)
    else
      local ok, at = false, st.v[GATE]
      if st.now >= st.v[GATE] then ok, at = admit(st, hd.cost) end
      if ok and granted >= DISPATCH then ok, at = false, st.now end
      if not ok then
        local w = wake(st, at)
        notify(st, w, hd)
        return w
      end
      forget_waiter(st, hd)
      local id = grant(st, hd.host, hd.inc, hd.ticket, hd.cost, hd.who, true)
      granted = granted + 1
      redis.call('PUBLISH', st.prefix .. ':h:' .. hd.host, table.concat({'g', hd.ticket, int(id), int(st.now), int(st.now),
        int(lease_of(st, hd.host, hd.inc)), st.name}, ','))
    end
  end
end

-- step_reply dispatches if anyone waits and replies {wake, now, head host, ops}.
local function step_reply(st)
  if st.v[QN] == 0 then return {0, st.now, '', ops(st)} end
  local at = dispatch(st)
  local hd = head(st)
  return {at, st.now, hd and hd.host or '', ops(st)}
end

-- Rebuild (a limits write) and migration ----------------------------------------
--
-- A limits write (setspec) changes the spec at once and leaves the ledger
-- to a rebuild, run in steps of REBUILD entries by whichever function
-- comes next (the writing host drives it with rlfs2_rebuild); nothing is
-- decided until it is done. Its phases (field rb; rbc a cursor, rbnow the
-- instant it judges at):
--   a   re-key the ledger into nl by the new order (lmode changed)
--   o   add the calls in progress to nl (lmode 'g' now)
--   r   nl becomes the ledger; lo empties
--   lo  lmode 'g' kept: the calls waiting in lo go back to the ledger
--   p   put back the history groups a window of the new spec counts
--   mo  make the open set o (max_hold set: it needs the calls' order)
--   b   walk the ledger: every window's start and sum; with lmode 'g', the
--       calls in progress behind every window go to lo
-- A meter of layout 1 (library rlfs1, no layout field) is migrated the same
-- way first (phases mp, mc, mw, mh; field mig), then rebuilt from b.

local function set_phase(st, ph, cursor)
  st.f.rb, st.f.rbc, st.v[FLAGS] = ph, cursor, 3
  redis.call('HSET', st.K[1], 'rb', ph, 'rbc', cursor)
end

-- rekey copies REBUILD ledger entries into nl with the new count times.
local function rekey(st)
  local S, K = st.S, st.K
  local c0 = num(st.f.rbc)
  local e = redis.call('ZRANGE', K[4], c0, c0 + REBUILD - 1)
  local args = {}
  for _, m in ipairs(e) do
    local en = entry_of(m)
    if en.group or en.d > 0 or S.lmode == 'g' then
      args[#args + 1] = count_time(S, en)
      args[#args + 1] = m
    end
  end
  if #args > 0 then redis.call('ZADD', K[14], unpack(args)) end
  st.work = st.work + #e
  if #e < REBUILD then
    if S.lmode == 'g' then set_phase(st, 'o', 0) else set_phase(st, 'r', 0) end
  else
    set_phase(st, 'a', c0 + REBUILD)
  end
end

-- scan_calls calls each(id, call) for the calls of REBUILD records of c
-- (HSCAN from the cursor rbc: a call may come twice) and returns the next
-- cursor ('0': done).
local function scan_calls(st, each)
  local r = redis.call('HSCAN', st.K[2], st.f.rbc, 'COUNT', REBUILD)
  for i = 1, #r[2], 2 do each(r[2][i], call_of(r[2][i], r[2][i + 1])) end
  st.work = st.work + #r[2] / 2
  return r[1]
end

-- add_open puts calls in progress into nl, at their grant.
local function add_open(st)
  local args = {}
  local next = scan_calls(st, function(id, c)
    if c.done == 0 then
      args[#args + 1] = c.g
      args[#args + 1] = call_entry(id, units(c), c.g, 0)
    end
  end)
  if #args > 0 then redis.call('ZADD', st.K[14], unpack(args)) end
  if next == '0' then set_phase(st, 'r', 0) else set_phase(st, 'o', next) end
end

-- make_open fills the open set, which max_hold needs (a limits write set
-- it): the calls in progress, by grant.
local function make_open(st)
  local args = {}
  local next = scan_calls(st, function(id, c)
    if c.done == 0 then
      args[#args + 1] = c.g
      args[#args + 1] = id
    end
  end)
  if #args > 0 then redis.call('ZADD', st.K[3], unpack(args)) end
  if next == '0' then
    redis.call('HDEL', st.K[1], 'rbmo')
    set_phase(st, 'b', 0)
  else
    set_phase(st, 'mo', next)
  end
end

local function swap_ledger(st)
  local K = st.K
  if redis.call('EXISTS', K[14]) == 1 then redis.call('RENAME', K[14], K[4]) else redis.call('DEL', K[4]) end
  redis.call('DEL', K[12])
  set_phase(st, 'p', 0)
end

-- unpark moves REBUILD calls from lo back into the ledger.
local function unpark(st)
  local K = st.K
  local e = redis.call('ZRANGE', K[12], 0, REBUILD - 1, 'WITHSCORES')
  if #e > 0 then
    local args = {}
    for j = 1, #e, 2 do args[#args + 1] = e[j + 1]; args[#args + 1] = e[j] end
    redis.call('ZADD', K[4], unpack(args))
    redis.call('ZREMRANGEBYRANK', K[12], 0, #e / 2 - 1)
  end
  st.work = st.work + #e / 2
  if #e / 2 < REBUILD then set_phase(st, 'p', 0) end
end

-- put_back moves the history groups that a window of the spec counts at
-- rbnow into the ledger (the history holds at most a few hundred groups).
local function put_back(st)
  local S, K, v = st.S, st.K, st.v
  local now = num(st.f.rbnow)
  if S.longest then
    local cut = now - S.longest.per
    local H, kept, moved = hist_read(st), {}, false
    for i = 1, #H, 5 do
      local g = {n = H[i], first = H[i + 1], g = H[i + 2], d = H[i + 3], u = H[i + 4]}
      local x = count_time(S, g)
      if g.d > cut and x > cut then
        v[PSEQ] = v[PSEQ] + 1
        local lm = 'g' .. string.format('%012.0f', v[PSEQ]) .. ':' .. group_text(g)
        redis.call('ZADD', K[4], x, lm)
        redis.call('ZADD', K[13], g.first, lm)
        moved = true
      else
        for j = i, i + 4 do kept[#kept + 1] = H[j] end
      end
    end
    if moved then hist_write(st, kept) end
  end
  for _, w in ipairs(S.windows) do v[w.p], v[w.h], v[w.l] = 0, 0, 0 end
  if st.f.rbmo then set_phase(st, 'mo', '0') else set_phase(st, 'b', 0) end
end

-- next_event is the next instant something leaves a window or a hold ends
-- (0: none), read from the ledger at every window's start and the open set.
local function next_event(st)
  local S, v, K = st.S, st.v, st.K
  local nx = 0
  for _, w in ipairs(S.windows) do
    local e = redis.call('ZRANGE', K[4], v[w.p], v[w.p], 'WITHSCORES')
    if #e > 0 then nx = minpos(nx, tonumber(e[2]) + w.per) end
  end
  if S.mhold > 0 then
    local e = redis.call('ZRANGE', K[3], 0, 0, 'WITHSCORES')
    if #e > 0 then nx = minpos(nx, tonumber(e[2]) + S.mhold) end
  end
  return nx
end

-- measure walks REBUILD ledger entries: each window's start and sum at rbnow.
local function measure(st)
  local S, v, K = st.S, st.v, st.K
  local now, c0 = num(st.f.rbnow), num(st.f.rbc)
  local L = S.longest
  local e = redis.call('ZRANGE', K[4], c0, c0 + REBUILD - 1, 'WITHSCORES')
  local kept = 0
  for j = 1, #e, 2 do
    local x, en = tonumber(e[j + 1]), entry_of(e[j])
    if S.lmode == 'g' and en.d == 0 and not en.group and L and x <= now - L.per then
      redis.call('ZREM', K[4], e[j])
      redis.call('ZADD', K[12], x, e[j])
    else
      kept = kept + 1
      for _, w in ipairs(S.windows) do
        if x <= now - w.per then
          v[w.p] = v[w.p] + 1
        else
          v[w.h], v[w.l] = add2(v[w.h], v[w.l], weight(w, en))
        end
      end
    end
  end
  st.work = st.work + #e / 2
  if #e / 2 < REBUILD then
    v[NX] = next_event(st)
    redis.call('HDEL', K[1], 'rb', 'rbc', 'rbnow')
    st.f.rb, v[FLAGS] = nil, 2 -- the new spec may have no window: the next release looks
  else
    set_phase(st, 'b', c0 + kept)
  end
end

-- The migration of a layout 1 meter: its calls (in c, in progress or
-- completed), its waiters and leases take the forms above.

local function migrate_call(st, id, s)
  if string.byte(s, 1) == 1 then return end -- converted already (HSCAN may return it twice)
  local p = split(s, ',')
  local S, K, v = st.S, st.K, st.v
  local g, d, ended, held = num(p[1]), num(p[2]), p[3] == '1', num(p[12])
  local c = {id = tonumber(id), g = g, ticket = p[4], cost = num(p[5]), actual = num(p[6]), ab = num(p[13]),
             host = p[7], inc = p[8], who = p[9] .. ',' .. p[10] .. ',' .. p[11], done = 0}
  local u = units(c)
  if d > 0 then
    redis.call('HDEL', K[2], id)
    redis.call('ZADD', K[4], count_time(S, {g = g, d = d}), call_entry(id, u, g, d))
    return
  end
  redis.call('ZADD', oh(st, c.host), g, id)
  redis.call('HSET', K[7], tkey(c.host, c.inc, c.ticket), 'c' .. id)
  c.tix = true
  if ended or held > 0 then -- max_hold ended it; ended: in the history already
    if held > 0 then c.done = held else c.done = g + S.mhold end
    v[HELD] = v[HELD] + 1
    if not ended then redis.call('ZADD', K[4], count_time(S, {g = g, d = c.done}), call_entry(id, u, g, c.done)) end
  else
    v[ON] = v[ON] + 1
    v[OUH], v[OUL] = add2(v[OUH], v[OUL], u)
    if S.mhold > 0 then redis.call('ZADD', K[3], g, id) end
    if S.lmode == 'g' then redis.call('ZADD', K[4], g, call_entry(id, u, g, 0)) end
  end
  redis.call('HSET', K[2], id, call_text(c))
end

local function migrate_past(st)
  local K, v = st.K, st.v
  local groups = {}
  for _, it in ipairs(split(redis.call('HGET', K[1], 'past') or '', ';')) do
    if it ~= '' then groups[#groups + 1] = group_of('0:' .. it) end
  end
  for _, m in ipairs(redis.call('ZRANGE', K[9], 0, -1)) do groups[#groups + 1] = group_of(m) end
  redis.call('DEL', K[9])
  redis.call('HDEL', K[1], 'past', 'pastn')
  v[PN], v[PFD], v[PLD] = 0, 0, 0
  local G = {}
  for _, g in ipairs(groups) do
    G[#G + 1], G[#G + 2], G[#G + 3], G[#G + 4], G[#G + 5] = g.n, g.first, g.g, g.d, g.u
  end
  hist_add(st, G)
  set_phase(st, 'mc', '0')
end

local function migrate_scan(st, key, ph, nextph, each)
  local r = redis.call('HSCAN', key, st.f.rbc, 'COUNT', LIST)
  for i = 1, #r[2], 2 do each(r[2][i], r[2][i + 1]) end
  st.work = st.work + #r[2] / 2
  if r[1] == '0' then set_phase(st, nextph, '0') else set_phase(st, ph, r[1]) end
end

local function migrate_hosts(st)
  local raw = redis.call('HGETALL', st.K[8])
  for i = 1, #raw, 2 do
    local exp, inc = string.match(raw[i + 1], '^(%d+),([^,]*)')
    redis.call('HSET', st.K[8], raw[i], lease_text(tonumber(exp), inc))
  end
  earliest(st)
  for _, w in ipairs(st.S.windows) do st.v[w.p], st.v[w.h], st.v[w.l] = 0, 0, 0 end
  st.v[QN] = redis.call('ZCARD', st.K[5])
  st.f.rbnow = int(st.now)
  redis.call('HSET', st.K[1], 'layout', LAYOUT, 'rbnow', st.f.rbnow)
  set_phase(st, 'b', 0)
end

local function migrate(st)
  local ph = st.f.rb
  if ph == 'mc' then
    migrate_scan(st, st.K[2], 'mc', 'mw', function(id, s) migrate_call(st, id, s) end)
  elseif ph == 'mw' then
    migrate_scan(st, st.K[6], 'mw', 'mh', function(seq, s)
      redis.call('ZADD', wh(st, split(s, ',')[1]), seq, seq)
    end)
  elseif ph == 'mh' then
    migrate_hosts(st)
  else
    migrate_past(st)
  end
end

-- rebuild runs steps until the rebuild is done (true) or the step's budget
-- is spent (false: the function replies MORE).
local PHASES = {a = rekey, o = add_open, r = swap_ledger, lo = unpark, p = put_back, mo = make_open, b = measure}

local function rebuild(st)
  while st.f.rb do
    if st.work >= REBUILD then return false end
    local f = PHASES[st.f.rb]
    if f then f(st) else migrate(st) end
  end
  return true
end

-- upkeep is what every step does before it decides: a rebuild (or
-- migration) under way, the store's own downtime (resume), then, when due,
-- ageing, expiry and lapses. false: its budget is spent (reply MORE).
local function upkeep(st)
  if st.v[LAYOUT_I] < SLAYOUT then convert_history(st) end
  if st.v[FLAGS] % 2 == 1 then
    local r = redis.call('HMGET', st.K[1], 'rb', 'rbc', 'rbnow', 'rbmo')
    st.f = {rb = r[1] or nil, rbc = r[2] or '0', rbnow = r[3] or '0', rbmo = r[4] or nil}
    if not st.f.rb then st.v[FLAGS] = st.v[FLAGS] - 1 end -- nothing under way after all
    if not rebuild(st) then return false end
  end
  resume(st)
  local v = st.v
  if v[NX] ~= 0 and st.now >= v[NX] then
    local ok, nxa = age(st)
    if not ok then return false end
    local due = v[NX]
    v[NX] = nxa -- expiry lowers it (the next hold's end, the ledger's new entries)
    if not expire(st) then
      v[NX] = due -- still due: the next step goes on
      return false
    end
  end
  if v[MINEXP] ~= 0 and st.now >= v[MINEXP] then
    if not lapse(st) then return false end
  end
  return true
end

-- Steps of a call's life -------------------------------------------------------
--
-- Each step opens the meter, does its upkeep (MORE while that is not
-- done), does its work and writes the counters back in one HSET.

local function step(body)
  return function(K, A)
    local st = open(K, A)
    if not st then return missing() end
    if not upkeep(st) then
      flush(st)
      return MORE
    end
    local r = body(st, A)
    flush(st)
    return r
  end
end

-- Admission replies: {kind, a, b, now, head host, ops, lease} where kind is
--   1 granted: a = call id, b = its grant instant
--   0 refused: a = why (1 not now and nonblocking, 2 max_waiters, 3 a cost
--     no units item can ever admit)
--   2 queued: a = seq, b = when to dispatch (0: after a release)
--   3 left the queue (cancel): b = when to dispatch
--   4 gone (cancel): neither queued nor granted
-- and lease is the caller's lease expiry (its proof that it holds until).

local function queued_reply(st, seq, lexp)
  local hd = head(st)
  return {2, seq, next_at(st, hd.cost), st.now, hd.host, ops(st), lexp}
end

-- asked_before answers a ticket asked for again (after an outage): it keeps
-- its place in the queue, or gets its grant: one made by a dispatch (t
-- says), or one made at once whose reply was lost (among the host's calls
-- granted since, at most LIST).
local function asked_before(st, host, inc, ticket, since, lexp)
  local x = redis.call('HGET', st.K[7], tkey(host, inc, ticket))
  if x and string.byte(x, 1) ~= 99 then return queued_reply(st, tonumber(x), lexp) end
  if x then -- 'c'..id
    local c = get_call(st, string.sub(x, 2))
    if c then return {1, c.id, c.g, st.now, '', 0, lexp} end
    return nil
  end
  local ids = redis.call('ZRANGE', oh(st, host), since, '+inf', 'BYSCORE', 'LIMIT', 0, LIST)
  if #ids == 0 then return nil end
  local recs = redis.call('HMGET', st.K[2], unpack(ids))
  for j, r in ipairs(recs) do
    if r then
      local c = call_of(ids[j], r)
      if c.inc == inc and c.ticket == ticket then return {1, c.id, c.g, st.now, '', 0, lexp} end
    end
  end
  return nil
end

-- end_calls ends the calls of the pairs (id, done) in A from index from
-- on (at most RELEASES; done 0: now; else when the host's release
-- happened, at most now; a call no longer there is skipped), and retires
-- the ledger's front. It returns how many pairs it took. (REL holds what
-- ends calls for rlfs2_release and rlfs2_acquire: Lua allows 200 top-level
-- locals.)
local REL = {}
function REL.end_calls(st, A, from)
  local last = math.min(#A, from - 1 + 2 * RELEASES)
  if last < from then return 0 end
  local G = {}
  for i = from, last, 2 do
    local c = get_call(st, A[i])
    if c then
      local t = num(A[i + 1])
      if t == 0 or t > st.now then t = st.now end
      end_call(st, c, t, G)
    end
  end
  hist_add(st, G, true)
  retire(st)
  return math.floor((last - from + 2) / 2)
end

-- rlfs2_acquire: ARGV 3 host, 4 inc, 5 lease (µs), 6 ticket, 7 cost, 8 how
-- (letters: n nonblocking, f first: this ticket was never asked for), 9
-- who ("pid,uid,gid"), 10 asked (µs: the ticket was first asked for after
-- it; only without f). The fast path (nobody waits, nothing due): the hot state, the
-- host's lease entry and the clock are read, the rule is checked on
-- counters, and the grant is written (its record, the host's set, the
-- open set with max_hold, the hot state). Replies an admission.
--
-- Releases may ride along (ARGV 10 is then present, '' with f, and pairs
-- id, done follow from ARGV 11, as rlfs2_release's): the host's
-- completions that were waiting to be sent when it asked (releases.go). They end
-- first, as if rlfs2_release had come just before, and the reply's item 8
-- says how many pairs were taken (a library without this leaves it out:
-- the host sends them again), item 9 how many wait in the queue.
function REL.decide(st, A)
  local S, v, K = st.S, st.v, st.K
  local host, inc, ticket, cost, how = A[3], A[4], A[6], num(A[7]), A[8]
  local lexp = touch_lease(st, host, inc, num(A[5]), false)
  if v[QN] > 0 then dispatch(st) end
  local waiting = v[QN]
  if not string.find(how, 'f', 1, true) then
    local r = asked_before(st, host, inc, ticket, num(A[10]), lexp)
    if r then return r end
  end
  if S.maxcost >= 0 and cost > S.maxcost then return {0, 3, 0, st.now, '', 0, lexp} end
  if waiting == 0 and st.now >= v[GATE] and admit(st, cost) then
    return {1, grant(st, host, inc, ticket, cost, A[9]), st.now, st.now, '', 0, lexp}
  end
  if string.find(how, 'n', 1, true) then return {0, 1, 0, st.now, '', 0, lexp} end
  if S.mwaiters > 0 and waiting >= S.mwaiters then return {0, 2, 0, st.now, '', 0, lexp} end
  return queued_reply(st, enqueue(st, {host = host, inc = inc, ticket = ticket, cost = cost, who = A[9]}), lexp)
end

local function acquire(st, A)
  local rode = REL.end_calls(st, A, 11)
  local r = REL.decide(st, A)
  r[8], r[9] = rode, st.v[QN]
  return r
end

-- rlfs2_cancel: ARGV 3 host, 4 inc, 5 lease, 6 seq, 7 ticket. Takes the
-- waiter out of the queue (3), or replies its grant (1: the host releases
-- or revokes it), or 4.
local function cancel(st, A)
  local host, inc = A[3], A[4]
  local lexp = touch_lease(st, host, inc, num(A[5]), false)
  local s = redis.call('HGET', st.K[6], A[6])
  if s then
    local wt = waiter_of(A[6], s)
    if wt.host == host and wt.inc == inc then
      local hd = head(st)
      forget_waiter(st, wt)
      local at = 0
      if hd and hd.seq == wt.seq then at = dispatch(st) end
      local nh = head(st)
      return {3, 0, at, st.now, nh and nh.host or '', ops(st), lexp}
    end
  end
  local x = redis.call('HGET', st.K[7], tkey(host, inc, A[7]))
  if x and string.byte(x, 1) == 99 then
    local c = get_call(st, string.sub(x, 2))
    if c then return {1, c.id, c.g, st.now, '', 0, lexp} end
  end
  return {4, 0, 0, st.now, '', 0, lexp}
end

-- Step replies: {wake, now, head host, ops} (step_reply).

-- rlfs2_release: ARGV 3 id, 4 done (0: now; else when the host's release
-- happened, at most now), and more pairs (id, done) after them: the
-- releases a host sends together, at most RELEASES. Each call ends (one no
-- longer there is skipped), the ledger's front retires; the queue is
-- dispatched if anyone waits.
function REL.release(st, A)
  REL.end_calls(st, A, 3)
  return step_reply(st)
end

-- rlfs2_revoke: ARGV 3 id. The call's open failed: nothing of it counts. A
-- call that max_hold ended counts already: it stays, to be released, and
-- the reply is an error RLFS_HELD (as meter.Local's ErrNotExist); an error
-- RLFS_NOCALL if there is no such call.
local function revoke(st, A)
  local S, v, K = st.S, st.v, st.K
  local c = get_call(st, A[3])
  if not c then return redis.error_reply('RLFS_NOCALL call not in progress') end
  if c.done > 0 then return redis.error_reply('RLFS_HELD call ended by max_hold: it counts as completed') end
  local u = units(c)
  redis.call('HDEL', K[2], c.sid)
  redis.call('ZREM', oh(st, c.host), c.sid)
  if c.tix then redis.call('HDEL', K[7], tkey(c.host, c.inc, c.ticket)) end
  close_open(st, c)
  if S.lmode == 'g' then ledger_del(st, c.g, call_entry(c.id, u, c.g, 0), {n = 1, u = u, d = 0}) end
  v[GRANTS], v[REVOKED] = v[GRANTS] - 1, v[REVOKED] + 1
  if S.bucket then v[TAT] = v[TAT] - S.bucket.interval end
  if S.ubucket and u - c.ab > 0 and v[UTAT] ~= 0 then v[UTAT] = v[UTAT] - S.ubucket.interval * (u - c.ab) end
  return step_reply(st)
end

-- rlfs2_settle: ARGV 3 id, 4 actual cost. An error RLFS_NOCALL if the call
-- is neither in progress nor held, or held and retired into the history
-- already (its cost is part of a group: as meter.Meter.Settle).
local function settle(st, A)
  local S, v = st.S, st.v
  local c = get_call(st, A[3])
  if not c then return redis.error_reply('RLFS_NOCALL call not in progress') end
  local old, nu = units(c), num(A[4])
  if c.done > 0 or S.lmode == 'g' then
    local e = {id = c.id, n = 1, u = old, g = c.g, d = c.done, first = c.done}
    local x = count_time(S, e)
    if ledger_del(st, x, call_entry(c.id, old, c.g, c.done), e) then
      e.u = nu
      ledger_add(st, x, call_entry(c.id, nu, c.g, c.done), e)
    elseif c.done > 0 then
      return redis.error_reply('RLFS_NOCALL call ended by max_hold and retired')
    end
  end
  if c.done == 0 then
    v[OUH], v[OUL] = sub2(v[OUH], v[OUL], old)
    v[OUH], v[OUL] = add2(v[OUH], v[OUL], nu)
  end
  c.actual = nu
  if S.ubucket then v[UTAT], c.ab = charge(S.ubucket, v[UTAT], c.g, st.now, c.ab, nu - old) end
  redis.call('HSET', st.K[2], c.sid, call_text(c))
  return step_reply(st)
end

-- Pause ---------------------------------------------------------------------------
--
-- A pause (design §10) is kept in m: pu (until, µs), pby, pfrom; the gate
-- in s is the later of it and the quiet time's end, so that every grant
-- (the fast path, dispatch) checks one number. Waiters keep their places:
-- the queue's wake instant becomes the gate's end, and every host with
-- waiters is told (dispatch's notify); a lift dispatches at once.

-- rlfs2_pause: ARGV 3 for (µs: a pause that lasts that long from now;
-- 'lift' lifts the pause; 0 or less changes nothing), 4 by, 5 from. A later
-- pause replaces the one in force, an earlier one does not shorten it.
-- Replies {until (0: none), now, set (1: this pause is the one in force
-- now), by, from}.
local function pause(st, A)
  local K, v = st.K, st.v
  local r = redis.call('HMGET', K[1], 'pu', 'pby', 'pfrom')
  local pu, by, from, set = num(r[1]), r[2] or '', r[3] or '', 0
  local d = num(A[3])
  if A[3] == 'lift' then
    if pu ~= 0 then redis.call('HDEL', K[1], 'pu', 'pby', 'pfrom') end
    pu, by, from = 0, '', ''
  elseif d > 0 and st.now + d > pu then
    pu, by, from, set = st.now + d, A[4], A[5], 1
    redis.call('HSET', K[1], 'pu', int(pu), 'pby', by, 'pfrom', from)
  end
  v[GATE] = math.max(v[QEND], pu)
  step_reply(st)
  return {pu, st.now, set, by, from}
end

-- rlfs2_dispatch: ARGV 3 host (or ''), 4 inc, 5 lease. Grants what the rule
-- admits now. rlfs2_rebuild (no ARGV past 2) is the same step: the host
-- that wrote the limits sends it until the rebuild is done (until it
-- stops replying MORE).
local function dispatch_fn(st, A)
  if A[3] and A[3] ~= '' then touch_lease(st, A[3], A[4], num(A[5]), false) end
  return step_reply(st)
end

-- rlfs2_renew: ARGV 3 host, 4 inc, 5 lease, 6 since (µs; 0: none). The
-- renewal loop's step: extends the host's lease and replies {now, lease,
-- wake, head host, ops, complete, last, id1, ticket1, granted1, ..., gen,
-- rcq}: the host's calls in progress of this incarnation granted after
-- since, so that it can pick up a grant whose message it missed; at most
-- LIST are read: complete 0 says there may be more after instant last;
-- then the meter's generation and the end of its quiet time after it was
-- unsettled (0 0: never; a host reconciles a generation it did not before
-- while the quiet time lasts). It keeps in m the longest lease a host
-- renews with (lh): the quiet time of an unsettled meter.
local function renew(st, A)
  local host, inc, since = A[3], A[4], num(A[6])
  local lexp = touch_lease(st, host, inc, num(A[5]), true)
  if (RC.LH[st.tag] or 0) < num(A[5]) then -- RC.LH: the lease hint this instance wrote, by meter
    if num(redis.call('HGET', st.K[1], 'lh')) < num(A[5]) then redis.call('HSET', st.K[1], 'lh', A[5]) end
    if RC.nlh >= 4096 then RC.LH, RC.nlh = {}, 0 end
    if not RC.LH[st.tag] then RC.nlh = RC.nlh + 1 end
    RC.LH[st.tag] = num(A[5])
  end
  local r = step_reply(st)
  local out = {st.now, lexp, r[1], r[3], r[4], 1, 0}
  if since > 0 then
    local ids = redis.call('ZRANGE', oh(st, host), '(' .. int(since), '+inf', 'BYSCORE', 'LIMIT', 0, LIST, 'WITHSCORES')
    if #ids == 2 * LIST then out[6], out[7] = 0, tonumber(ids[#ids]) end
    for j = 1, #ids, 2 do
      local c = get_call(st, ids[j])
      if c and c.inc == inc and c.done == 0 then
        out[#out + 1] = c.id; out[#out + 1] = c.ticket; out[#out + 1] = c.g
      end
    end
  end
  local g = redis.call('HMGET', st.K[1], 'gen', 'rcq')
  out[#out + 1] = num(g[1]); out[#out + 1] = num(g[2])
  return out
end

-- rlfs2_start: ARGV 3 host, 4 inc. A host's daemon (re)started: the calls
-- in progress and the waiters of its earlier incarnations end now, LAPSE a
-- step. Replies {now, calls ended, more (1: send it again)}.
local function start(st, A)
  local host, inc = A[3], A[4]
  local done, n = end_host(st, host, st.now, inc)
  if done then
    local exp, same = host_lease(st, host, inc)
    if exp and not same then redis.call('HDEL', st.K[8], host) end
    step_reply(st)
  end
  return {st.now, n, done and 0 or 1}
end

-- Definitions ---------------------------------------------------------------------

local function set_fields(K, A, from)
  local args = {}
  for i = from, #A do args[#args + 1] = A[i] end
  if #args > 0 then redis.call('HSET', K[1], unpack(args)) end
end

-- bump sets the meter's version, which orders its definitions for the
-- hosts that reload it, and returns it: the server's time (µs), always
-- increasing (the test clock does not move between changes, so it is not
-- used here).
local function bump(K)
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local old = num(redis.call('HGET', K[1], 'version'))
  if v <= old then v = old + 1 end
  redis.call('HSET', K[1], 'version', int(v))
  return v
end

-- rlfs2_create: ARGV 3 name, then field, value pairs (quiet_for: a host
-- putting the meter back after the store lost its data; nothing is granted
-- for that long). Replies 1, or 0 if the meter exists. The host then lists
-- it in the set of meters and tells the others ("c,NAME" on the event
-- channel), in that order, so that a host that subscribes meanwhile finds
-- it in one or the other.
local function create(K, A)
  if redis.call('EXISTS', K[1]) == 1 then return 0 end
  redis.call('UNLINK', K[2], K[3], K[4], K[5], K[6], K[7], K[8], K[9], K[10], K[11], K[12], K[13], K[14], K[15], K.tag .. 'ra')
  redis.call('HSET', K[1], 'name', A[3], 'layout', LAYOUT)
  if RC.run_id() then redis.call('HSET', K[1], 'run', RC.run_id()) end
  set_fields(K, A, 4)
  local f = fields_of(K)
  local v = fresh_state(bump(K), f.spec or '', #spec_of(f).windows)
  local q = num(f.quiet_for)
  if q > 0 then
    v[QEND] = clock(A) + q
    v[GATE] = v[QEND]
    redis.call('HDEL', K[1], 'quiet_for')
  end
  redis.call('SET', K[15], blob_of(v, #spec_of(f).windows))
  return 1
end

-- rlfs2_setspec: ARGV 3 name, then field, value pairs. After the upkeep
-- under the old spec (the holds its max_hold ended count as completed
-- then), the spec changes, the buckets' debt is re-judged, and a rebuild
-- starts (see Rebuild): the host sends rlfs2_rebuild until it is done.
-- Replies 1.
local function setspec(K, A)
  local st = open(K, A)
  if not st then return missing() end
  if not upkeep(st) then
    flush(st)
    return MORE
  end
  local old, v = st.S, st.v
  set_fields(K, A, 4)
  local f = fields_of(K)
  local nu = spec_of(f)
  v[TAT] = rejudge(old.bucket, nu.bucket, v[TAT], st.now)
  v[UTAT] = rejudge(old.ubucket, nu.ubucket, v[UTAT], st.now)
  v[SVER], v[SIG], v[FLAGS] = bump(K), sig_of(f.spec or ''), 3
  for i = BASE + 1, BASE + 3 * #nu.windows do v[i] = 0 end
  local first = 'p'
  if old.lmode ~= nu.lmode then first = 'a' elseif nu.lmode == 'g' then first = 'lo' end
  redis.call('UNLINK', K[14])
  if nu.mhold == 0 then
    redis.call('UNLINK', K[3]) -- only max_hold needs the calls in progress in order
  elseif old.mhold == 0 then
    redis.call('HSET', K[1], 'rbmo', 1)
  end
  redis.call('HSET', K[1], 'rb', first, 'rbc', 0, 'rbnow', int(st.now))
  redis.call('SET', K[15], blob_of(v, #nu.windows))
  redis.call('PUBLISH', A[1] .. ':ev', 's,' .. A[3])
  return 1
end

-- rlfs2_setattr: ARGV 3 name, then mode, uid, gid pairs. Replies 1.
local function setattr(K, A)
  if redis.call('EXISTS', K[1]) == 0 then return missing() end
  set_fields(K, A, 4)
  bump(K)
  redis.call('PUBLISH', A[1] .. ':ev', 'a,' .. A[3])
  return 1
end

-- rlfs2_delete: ARGV 3 name. Removes an idle meter with its history and
-- data (UNLINK: Redis frees them in the background). Replies 1, or 0 while
-- it has holders (held ones too, as meter.Registry.Remove) or waiters. The
-- host then unlists it and tells the others ("d,NAME").
local function delete(st, A)
  local K, v = st.K, st.v
  if v[QN] > 0 or v[ON] > 0 or v[HELD] > 0 then return 0 end
  local hosts = redis.call('HKEYS', K[8])
  for _, h in ipairs(hosts) do redis.call('UNLINK', oh(st, h), wh(st, h)) end
  redis.call('UNLINK', K[1], K[2], K[3], K[4], K[5], K[6], K[7], K[8], K[9], K[10], K[11], K[12], K[13], K[14], K[15], K.tag .. 'ra')
  st.gone = true -- nothing to write back
  return 1
end

-- rlfs2_def: a meter's definition: {name, spec, mode, uid, gid, grants,
-- version}; an RLFS_NOMETER error if it does not exist.
local function def(K, A)
  local r = redis.call('HMGET', K[1], 'name', 'spec', 'mode', 'uid', 'gid', 'grants', 'version')
  if not r[1] then return missing() end
  local blob = redis.call('GET', K[15])
  if blob then r[6] = state_of(blob)[GRANTS] end
  for i = 1, #r do r[i] = r[i] or '' end
  return r
end

-- View ------------------------------------------------------------------------------

local function history_of_view(st)
  local past, first = 0, 0
  local H = hist_read(st)
  for i = 1, #H, 5 do
    past = past + H[i]
    first = minpos(first, H[i + 1])
  end
  local lg = redis.call('ZRANGE', st.K[13], 0, -1, 'WITHSCORES')
  for j = 1, #lg, 2 do
    past = past + group_of(lg[j]).n
    first = minpos(first, tonumber(lg[j + 1]))
  end
  return past, first
end

-- rlfs2_view: ARGV 3 call id ('' none), 4 seq ('' none). A picture of the
-- meter after its upkeep: {now, spec, mode, uid, gid, grants, version, tat,
-- utat, {used per window}, next ok, next at, wake, {hosts}, holders, held,
-- waiters, retired calls, their earliest completion, the call's record ('':
-- none), the waiter's record, the waiter's place (1-based; 0: none), the
-- pause (until, 0: none; by; from)}.
-- Lists of holders and waiters: rlfs2_list.
local function view(st, A)
  local S, v, K = st.S, st.v, st.K
  local d = redis.call('HMGET', K[1], 'spec', 'mode', 'uid', 'gid', 'version', 'pu', 'pby', 'pfrom')
  local usage = {}
  for i, w in ipairs(S.windows) do usage[i] = used_in(st, w) end
  local hd = head(st)
  local ok, at = admit(st, hd and hd.cost or 1)
  if hd and ok then ok, at = false, st.now end
  -- the gate (a pause) comes first, unless the rule's instant is later or
  -- only a release can admit (as meter.Local's view)
  if st.now < v[GATE] and (ok or (at ~= 0 and at < v[GATE])) then ok, at = false, v[GATE] end
  local past, first = history_of_view(st)
  local call, waiter, place = '', '', 0
  if A[3] and A[3] ~= '' then call = redis.call('HGET', K[2], A[3]) or '' end
  if A[4] and A[4] ~= '' then
    waiter = redis.call('HGET', K[6], A[4]) or ''
    if waiter ~= '' then place = (redis.call('ZRANK', K[5], A[4]) or -1) + 1 end
  end
  return {st.now, d[1] or '', d[2] or '', d[3] or '', d[4] or '', v[GRANTS], num(d[5]), v[TAT], v[UTAT],
          usage, ok and 1 or 0, at, wake(st, at), redis.call('HKEYS', K[8]), v[ON], v[HELD], v[QN],
          past, first, call, waiter, place, num(d[6]), d[7] or '', d[8] or ''}
end

-- rlfs2_list: ARGV 3 kind, 4 cursor. A chunk of the meter's records, at
-- most LIST: kind 'c', the calls in progress and held ({next cursor ('0':
-- done), id1, record1, ...}: HSCAN order, possibly twice); kind 'w', the
-- waiters after seq cursor ({last seq ('0': done), seq1, record1, ...}).
local function list(K, A)
  if A[3] == 'c' then
    local r = redis.call('HSCAN', K[2], A[4], 'COUNT', LIST)
    local out = {r[1]}
    for i = 1, #r[2] do out[#out + 1] = r[2][i] end
    return out
  end
  local seqs = redis.call('ZRANGE', K[5], '(' .. A[4], '+inf', 'BYSCORE', 'LIMIT', 0, LIST)
  if #seqs == 0 then return {'0'} end
  local recs = redis.call('HMGET', K[6], unpack(seqs))
  local out = {seqs[#seqs]}
  if #seqs < LIST then out[1] = '0' end
  for i, s in ipairs(seqs) do
    if recs[i] then out[#out + 1] = s; out[#out + 1] = recs[i] end
  end
  return out
end

-- Re-assert -------------------------------------------------------------------------

-- rlfs2_reassert: ARGV 3 host, 4 inc, 5 lease, then at most 256 records of
-- the host's calls that still count ("id,granted,done,cost,actual,ticket,
-- pid,uid,gid"). After the store lost its data, or some of it (a meter
-- unsettled), a host puts its calls back; a call whose id is taken gets a
-- new one, and the id counter moves past every id put back. A call is put
-- back once (ra: host:id -> the id it got, until the meter is unsettled
-- again or removed: one entry per call put back): a host that sends it
-- again (a retry, a restart) is answered the id it got. Replies {now, old1, new1, ...}.
local function reassert(st, A)
  local S, v, K = st.S, st.v, st.K
  local host, inc = A[3], A[4]
  touch_lease(st, host, inc, num(A[5]), true)
  local out = {st.now}
  local ra = K.tag .. 'ra'
  for i = 6, #A do
    local p = split(A[i], ',')
    local id = tonumber(p[1])
    local cur = get_call(st, p[1])
    local back = redis.call('HGET', ra, host .. ':' .. p[1])
    if back then
      id = tonumber(back)
    elseif not (cur and cur.host == host and cur.inc == inc and cur.ticket == p[6]) then
      if cur then
        id = math.max(v[NEXT_ID], 1)
        v[NEXT_ID] = id + 1
      elseif id >= v[NEXT_ID] then
        v[NEXT_ID] = id + 1
      end
      local c = {id = id, g = num(p[2]), ticket = p[6], cost = num(p[4]), actual = num(p[5]), ab = 0, host = host,
                 inc = inc, who = p[7] .. ',' .. p[8] .. ',' .. p[9], done = 0, tix = true}
      local d, u = num(p[3]), units(c)
      if d == 0 then
        local sid = int(id)
        redis.call('HSET', K[2], sid, call_text(c))
        if S.mhold > 0 then redis.call('ZADD', K[3], c.g, sid) end
        redis.call('ZADD', oh(st, host), c.g, sid)
        redis.call('HSET', K[7], tkey(host, inc, c.ticket), 'c' .. sid)
        v[ON] = v[ON] + 1
        v[OUH], v[OUL] = add2(v[OUH], v[OUL], u)
        if S.lmode == 'g' then ledger_add(st, c.g, call_entry(id, u, c.g, 0), {n = 1, u = u, g = c.g, d = 0}) end
        if S.mhold > 0 then v[NX] = minpos(v[NX], c.g + S.mhold) end
      else
        local e = {n = 1, u = u, g = c.g, d = d, first = d}
        ledger_add(st, count_time(S, e), call_entry(id, u, c.g, d), e)
      end
      v[GRANTS] = v[GRANTS] + 1
      redis.call('HSET', ra, host .. ':' .. p[1], int(id), host .. ':' .. int(id), int(id))
    end
    out[#out + 1] = tonumber(p[1])
    out[#out + 1] = id
  end
  return out
end

-- Reconcile ----------------------------------------------------------------------
--
-- A meter unsettled (see unsettle) may have lost its last writes; each
-- host with a part in it compares what the store shows of its own with
-- what it knows (meter/redis/reconcile.go), and puts right what differs:
-- its calls the store lacks are put back (rlfs2_reassert), its calls the
-- store shows in progress that it ended are released (rlfs2_release, at the
-- completion it journaled), its waiters the store shows that it no longer
-- has (granted or cancelled on the lost writes) leave the queue
-- (rlfs2_forget), and it asks again for those the store lacks.

-- rlfs2_mine: ARGV 3 host, 4 inc, 5 what ('c' its calls, 'w' its waiters),
-- 6 from (a ZRANGE BYSCORE start: calls by grant instant, waiters by seq).
-- Replies {now, gen, rcid, rcq, complete, last, ...}: the meter's
-- generation, the id counter when it was unsettled, the end of its quiet
-- time; then the host's calls in progress or held of incarnation inc, {id,
-- ticket, granted, held}, or its waiters, {seq, ticket}, at most LIST
-- read: complete 0 says there may be more from score last on.
function RC.mine(st, A)
  local host, inc, K = A[3], A[4], st.K
  local g = redis.call('HMGET', K[1], 'gen', 'rcid', 'rcq')
  local out = {st.now, num(g[1]), num(g[2]), num(g[3]), 1, 0}
  local key = A[5] == 'c' and oh(st, host) or wh(st, host)
  local r = redis.call('ZRANGE', key, A[6], '+inf', 'BYSCORE', 'LIMIT', 0, LIST, 'WITHSCORES')
  if #r == 2 * LIST then out[5], out[6] = 0, tonumber(r[#r]) end
  for j = 1, #r, 2 do
    if A[5] == 'c' then
      local c = get_call(st, r[j])
      if c and c.inc == inc then
        out[#out + 1] = c.id; out[#out + 1] = c.ticket; out[#out + 1] = c.g; out[#out + 1] = c.done
      end
    else
      local s = redis.call('HGET', K[6], r[j])
      local wt = s and waiter_of(r[j], s)
      if wt and wt.inc == inc then
        out[#out + 1] = tonumber(wt.seq); out[#out + 1] = wt.ticket
      end
    end
  end
  return out
end

-- rlfs2_forget: ARGV 3 host, 4 inc, then pairs seq, ticket (at most LIST):
-- the host's waiters that it no longer has leave the queue (one that is
-- not there, or another's, is skipped). Replies as a step.
function RC.forget(st, A)
  for i = 5, math.min(#A - 1, 4 + 2 * LIST), 2 do
    local s = redis.call('HGET', st.K[6], A[i])
    local wt = s and waiter_of(A[i], s)
    if wt and wt.host == A[3] and wt.inc == A[4] and wt.ticket == A[i + 1] then forget_waiter(st, wt) end
  end
  return step_reply(st)
end

-- rlfs2_settled: ARGV 3 host, 4 gen. The host reconciled the meter, of
-- generation gen; once every host the quiet time waits for did (rch, after
-- a restart), it ends. Replies as a step.
function RC.settled(st, A)
  local K, v = st.K, st.v
  local r = redis.call('HMGET', K[1], 'gen', 'rch', 'rcq', 'pu')
  if num(r[1]) ~= num(A[4]) or not r[2] or r[2] == '*' or r[2] == '' then return step_reply(st) end
  local left = {}
  for h in string.gmatch(r[2], '[^,]+') do
    if h ~= A[3] then left[#left + 1] = h end
  end
  redis.call('HSET', K[1], 'rch', table.concat(left, ','))
  if #left == 0 then
    redis.call('HSET', K[1], 'rcq', int(st.now)) -- a host that comes later takes note of the generation only
    if v[QEND] == num(r[3]) then v[QEND] = st.now end
    v[GATE] = math.max(v[QEND], num(r[4]))
  end
  return step_reply(st)
end

-- Data files ----------------------------------------------------------------------

-- data_totals: the files and bytes of the meter's data other than name,
-- and whether name exists (at most meter.MaxDataFiles entries).
local function data_totals(K, name)
  local raw = redis.call('HGETALL', K[11])
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

-- rlfs2_data_write: ARGV 3 name, 4 content, 5 mtime, 6 max files, 7 max
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
  redis.call('HSET', K[10], A[3], A[4])
  redis.call('HSET', K[11], A[3], int(#A[4]) .. ',' .. A[5])
  return 1
end

-- rlfs2_data_read: ARGV 3 name. Replies {content, "size,mtime"}, or {}.
local function data_read(K, A)
  local c = redis.call('HGET', K[10], A[3])
  if not c then return {} end
  return {c, redis.call('HGET', K[11], A[3]) or ''}
end

-- rlfs2_data_rename: ARGV 3 from, 4 to, 5 mtime. Replies 1, or 0 if from
-- does not exist.
local function data_rename(K, A)
  local c = redis.call('HGET', K[10], A[3])
  if not c then return 0 end
  if A[3] ~= A[4] then
    redis.call('HDEL', K[10], A[3])
    redis.call('HDEL', K[11], A[3])
  end
  redis.call('HSET', K[10], A[4], c)
  redis.call('HSET', K[11], A[4], int(#c) .. ',' .. A[5])
  return 1
end

-- rlfs2_data_delete: ARGV 3 name. Replies 1, or 0 if it does not exist.
local function data_delete(K, A)
  redis.call('HDEL', K[11], A[3])
  return redis.call('HDEL', K[10], A[3])
end

-- Test hooks --------------------------------------------------------------------------

-- rlfs2_peek: ARGV 3 cost. The rule's answer for a call of cost now, after
-- the upkeep, granting nothing: {ok, at} (meter/redis's tests compare it
-- with meter.AdmitCost).
local function peek(st, A)
  local ok, at = admit(st, num(A[3]))
  return {ok and 1 or 0, at}
end

-- rlfs2_ledger: the meter's ledger counters as the tests read them:
-- {now, on, open units, held, nx, {start, sum} per window, ledger size, lo
-- size, history size}.
local function ledger(st, A)
  local v, K = st.v, st.K
  local out = {st.now, v[ON], val2(v[OUH], v[OUL]), v[HELD], v[NX]}
  for _, w in ipairs(st.S.windows) do out[#out + 1] = {v[w.p], val2(v[w.h], v[w.l])} end
  out[#out + 1] = redis.call('ZCARD', K[4])
  out[#out + 1] = redis.call('ZCARD', K[12])
  out[#out + 1] = v[PN]
  return out
end

-- Registration ----------------------------------------------------------------------

redis.register_function('rlfs2_acquire', keyed(step(acquire)))
redis.register_function('rlfs2_cancel', keyed(step(cancel)))
redis.register_function('rlfs2_release', keyed(step(REL.release)))
redis.register_function('rlfs2_revoke', keyed(step(revoke)))
redis.register_function('rlfs2_settle', keyed(step(settle)))
redis.register_function('rlfs2_dispatch', keyed(step(dispatch_fn)))
redis.register_function('rlfs2_pause', keyed(step(pause)))
redis.register_function('rlfs2_rebuild', keyed(step(dispatch_fn)))
redis.register_function('rlfs2_renew', keyed(step(renew)))
redis.register_function('rlfs2_start', keyed(step(start)))
redis.register_function('rlfs2_reassert', keyed(step(reassert)))
redis.register_function('rlfs2_mine', keyed(step(RC.mine)))
redis.register_function('rlfs2_forget', keyed(step(RC.forget)))
redis.register_function('rlfs2_settled', keyed(step(RC.settled)))
redis.register_function('rlfs2_view', keyed(step(view)))
redis.register_function('rlfs2_delete', keyed(step(delete)))
redis.register_function('rlfs2_create', keyed(create))
redis.register_function('rlfs2_setspec', keyed(setspec))
redis.register_function('rlfs2_setattr', keyed(setattr))
redis.register_function{function_name = 'rlfs2_def', callback = keyed(def), flags = {'no-writes'}}
redis.register_function{function_name = 'rlfs2_list', callback = keyed(list), flags = {'no-writes'}}
redis.register_function('rlfs2_data_write', keyed(data_write))
redis.register_function{function_name = 'rlfs2_data_read', callback = keyed(data_read), flags = {'no-writes'}}
redis.register_function('rlfs2_data_rename', keyed(data_rename))
redis.register_function('rlfs2_data_delete', keyed(data_delete))
redis.register_function('rlfs2_peek', keyed(step(peek)))
redis.register_function('rlfs2_ledger', keyed(step(ledger)))
