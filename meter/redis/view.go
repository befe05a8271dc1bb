package redis

import (
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

// View pictures a meter across the fleet, after the leases that lapsed.
func (s *Store) v1View(name string, lists bool) (meter.View, error) {
	res, sent, err := s.fcall("rlfs1_view", name, boolStr(lists))
	if err != nil {
		return meter.View{}, err
	}
	at := sent // the store's now is read at least at sent (exact with a test clock)
	storeNow := intAt(res, 0)
	s.synced(storeNow, at)
	p := viewParser{res: res, i: 1, storeNow: storeNow, at: at}
	fields := p.fields()
	m, err := storedOf(name, fields)
	if err != nil {
		return meter.View{}, err
	}
	v := meter.View{Spec: m.Spec, Attr: m.Attr, Now: at, Grants: m.Grants}
	p.calls(&v, lists)
	p.waiters(&v, lists)
	p.usage(&v)
	p.next(&v)
	p.hosts(&v)
	tat, utat := atoi(fields["tat"]), atoi(fields["utat"])
	local := func(us int64) time.Time {
		if us == 0 {
			return time.Time{}
		}
		return p.local(us)
	}
	v.Buckets = meter.Buckets(v.Spec, local(tat), local(utat), v.Now)
	if past := fields["past"]; past != "" {
		v.Retired, v.RetiredSince = pastSummary(past, storeNow, at)
	}
	return v, nil
}

// viewParser walks the sections of an rlfs1_view reply.
type viewParser struct {
	res      []rueidis.RedisMessage
	i        int
	storeNow int64
	at       time.Time
}

// section returns the items up to the next "|..." marker, and skips it.
func (p *viewParser) section() []string {
	var out []string
	for ; p.i < len(p.res); p.i++ {
		str := strAt(p.res, p.i)
		if strings.HasPrefix(str, "|") {
			p.i++
			return out
		}
		out = append(out, str)
	}
	return out
}

func (p *viewParser) fields() map[string]string {
	kv := p.section()
	f := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i]] = kv[i+1]
	}
	return f
}

func (p *viewParser) local(us int64) time.Time { return localOf(us, p.storeNow, p.at) }

// calls reads "id,granted,done,expired,ticket,cost,actual,host,inc,pid,uid,gid,held".
func (p *viewParser) calls(v *meter.View, lists bool) {
	mhold := micros(v.Spec.MaxHold)
	for _, rec := range p.section() {
		f := strings.Split(rec, ",")
		if len(f) < 12 || f[2] != "0" {
			continue // completed: the rule's business, not a holder
		}
		g := atoi(f[1])
		c := meter.Call{ID: uint64(atoi(f[0])), GrantedAt: p.local(g), Holder: holderOf(f[7], f[9], f[10], f[11]), Cost: atoi(f[5])}
		if actual := atoi(f[6]); actual >= 0 {
			c.Actual, c.Settled = actual, true
		}
		held := int64(0) // when max_hold ended it, fixed by a limits write
		if len(f) > 12 {
			held = atoi(f[12])
		}
		if held == 0 && mhold > 0 {
			held = g + mhold
		}
		if held > 0 && held <= p.storeNow {
			c.Expired = true
			v.ExpiredN++
			if lists {
				v.Expired = append(v.Expired, c)
			}
			continue
		}
		v.HoldersN++
		if lists {
			v.Holders = append(v.Holders, c)
		}
	}
}

// waiters reads the count, then "seq,host,inc,ticket,since,cost,pid,uid,gid".
func (p *viewParser) waiters(v *meter.View, lists bool) {
	items := p.section()
	if len(items) == 0 {
		return
	}
	v.WaitersN = int(atoi(items[0]))
	if !lists {
		return
	}
	for _, rec := range items[1:] {
		f := strings.Split(rec, ",")
		if len(f) < 9 {
			continue
		}
		v.Waiters = append(v.Waiters, meter.Waiter{Seq: uint64(atoi(f[0])), Holder: holderOf(f[1], f[6], f[7], f[8]), Since: p.local(atoi(f[4])), Cost: atoi(f[5])})
	}
}

func (p *viewParser) usage(v *meter.View) {
	for i, n := range p.section() {
		if i < len(v.Spec.Windows) {
			v.Usage = append(v.Usage, meter.WindowUsage{Window: v.Spec.Windows[i], Used: int(atoi(n))})
		}
	}
}

// next reads ok, at, wake.
func (p *viewParser) next(v *meter.View) {
	items := p.section()
	if len(items) < 2 {
		return
	}
	switch at := atoi(items[1]); {
	case items[0] == "1":
		v.Next = meter.Decision{OK: true}
	case at == 0:
		v.Next = meter.Decision{}
	default:
		v.Next = meter.Decision{At: p.local(at)}
	}
}

func (p *viewParser) hosts(v *meter.View) {
	items := p.section()
	for i := 0; i+1 < len(items); i += 2 {
		v.Hosts = append(v.Hosts, items[i])
	}
}

func holderOf(host, pid, uid, gid string) meter.Holder {
	return meter.Holder{Host: host, PID: int(atoi(pid)), UID: uint32(atoi(uid)), GID: uint32(atoi(gid))}
}

// pastSummary counts the calls of a history string and its earliest completion.
func pastSummary(past string, storeNow int64, at time.Time) (int, time.Time) {
	n := 0
	var first time.Time
	for i, g := range strings.Split(past, ";") {
		f := strings.Split(g, ":")
		if len(f) < 4 {
			continue
		}
		n += int(atoi(f[0]))
		if i == 0 {
			first = localOf(atoi(f[1]), storeNow, at)
		}
	}
	return n, first
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
