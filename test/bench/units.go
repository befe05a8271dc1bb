package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
)

// Weighted calls (acquire@N, design §7): the idle cycle of a call of cost
// N, and of one that also writes its actual cost, against a plain acquire
// on the same meter, round by round (rows u1 and u2; step "units").

// unitsSpec is the meter of the units step: always grants, and admits
// weighted calls through a units bucket, whose check does not grow with the
// calls made (1e9 units a second never run out at 10 units a cycle).
const unitsSpec = "tokens=concurrency=0,units:rate=1000000000/1s"

// unitsVariants are the cycles measured: key suffix, API, file.
var unitsVariants = []struct{ key, api, file string }{
	{"plain", "raw", "acquire"},
	{"cost", "raw", "acquire@10"},
	{"settle", "settle", "acquire@10"},
}

// units measures the idle cycles of unitsVariants on a daemon of its own
// (and on one of -rlfs-before), cfg.rounds times, in an order that rotates
// from round to round.
func (b *bench) units() error {
	b.progress("weighted calls: idle cycles of acquire@N")
	type daemon struct{ dir, key string }
	var ds []daemon
	for _, bin := range b.binaries() {
		name := "units" + strings.ReplaceAll(bin[0], ".", "-")
		p, _, err := b.d.startRlfs("rlfs-"+name, bin[1], filepath.Join(b.work, name+".db"), filepath.Join(b.work, "mnt-"+name), b.work, nil,
			"--meter", unitsSpec)
		if err != nil {
			return err
		}
		defer b.stopDaemon(p)
		ds = append(ds, daemon{filepath.Join(p.mnt, "tokens"), bin[0]})
	}
	n := len(unitsVariants) * len(ds)
	for r := range b.cfg.rounds {
		for i := range n {
			k := (i + r) % n
			v, d := unitsVariants[k%len(unitsVariants)], ds[k/len(unitsVariants)]
			us, err := b.cycle(v.api, filepath.Join(d.dir, v.file))
			if err != nil {
				return fmt.Errorf("idle cycle of %s (%s): %w", v.file, v.api, err)
			}
			b.s.add("u."+v.key+d.key, us)
		}
	}
	return nil
}

// unitsRows are rows u1 and u2, against plain acquire on the same meter.
func (b *bench) unitsRows() []row {
	s := b.s
	if len(s["u.plain"]) == 0 {
		return nil
	}
	plain := fmt.Sprintf(" (acquire: %s)", us(s.med("u.plain")))
	return []row{
		{id: "u1", what: "idle cycle, acquire@10 (Go syscall.Open+Close), units bucket meter", rlfs: us(s.med("u.cost")) + plain,
			ratio: x(s.ratio("u.cost", "u.plain")) + " acquire"},
		{id: "u2", what: "idle cycle, acquire@10 O_RDWR + settlement write + Close", rlfs: us(s.med("u.settle")) + plain,
			ratio: x(s.ratio("u.settle", "u.plain")) + " acquire"},
	}
}

// unitsDoc describes rows u1 and u2 in the report.
func (b *bench) unitsDoc(p func(string, ...any)) {
	p("- **u** weighted calls: one client process opens and closes `acquire@10` of `%s`", unitsSpec)
	p("  in a loop (u1), or opens it `O_RDWR`, writes its actual cost (`5\\n`, one write) and closes it (u2),")
	p("  against plain `acquire` of the same meter in the same round: %d timed cycles after %d warm-up.", b.cfg.cycles, b.cfg.cycles/10)
}

// settleCycle is one cycle of a weighted call that settles: open O_RDWR
// (retrying and counting EINTR), write "5\n", close.
func settleCycle(path string, errs *errCount) func() error {
	five := []byte("5\n")
	return func() error {
		for {
			fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
			if err == syscall.EINTR {
				errs.add(err)
				continue
			}
			if err != nil {
				return err
			}
			if _, err := syscall.Write(fd, five); err != nil {
				syscall.Close(fd)
				return err
			}
			return syscall.Close(fd)
		}
	}
}
