package redis

import "github.com/rlfs/rlfs/meter"

// engineOpen opens the engine on s. The engine still takes the seam of
// before meter.Decider, through Legacy; once meter.Open takes a
// meter.Decider this is engineOpen(s, opt), the one line to change.
func engineOpen(s *Store, opt meter.Options) (*meter.Registry, error) {
	return meter.Open(Legacy(s), opt)
}
