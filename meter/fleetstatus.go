package meter

import (
	"strings"
	"time"
)

// storeBack is next_grant while the store is unreachable: nothing is
// granted anywhere until it answers again.
const storeBack = "when the store is back"

// fleetLines writes the status lines of a meter on a SharedStore: host,
// hosts and store. While the store is unreachable this host knows neither
// the other hosts nor when a call could go, so hosts says so, and store
// says since when and what waiters get meanwhile. Host names are escaped
// (a store may hold one an older daemon wrote).
func (s Snapshot) fleetLines(kv func(k, format string, args ...any)) {
	kv("host", "%s", Escape(s.Host))
	if s.StoreDown.IsZero() {
		hosts := make([]string, len(s.Hosts))
		for i, h := range s.Hosts {
			hosts[i] = Escape(h)
		}
		kv("hosts", "%s", strings.Join(hosts, ","))
		kv("store", "ok")
		return
	}
	kv("hosts", "unknown while the store is unreachable (this host: %s)", Escape(s.Host))
	kv("store", "unreachable since %s (%s ago); nothing is granted until it is back: waiters keep waiting (max_wait still applies), O_NONBLOCK opens get EAGAIN",
		FormatTime(s.StoreDown), s.Now.Sub(s.StoreDown).Round(time.Millisecond))
}
