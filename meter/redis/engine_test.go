package redis

import "github.com/rlfs/rlfs/meter"

// engineOpen opens the engine on s.
func engineOpen(s *Store, opt meter.Options) (*meter.Registry, error) { return meter.Open(s, opt) }
