package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rlfs/rlfs/meter"
)

// reportsFromMount reads every meter of the rlfs mount at mnt.
func reportsFromMount(mnt string) ([]meter.Report, error) {
	es, err := os.ReadDir(mnt)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w; is rlfs mounted there?", mnt, err)
	}
	var out []meter.Report
	for _, e := range es {
		r, err := readReport(mnt, e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// readReport reads the status.json of meter name in the mount at mnt.
func readReport(mnt, name string) (meter.Report, error) {
	var r meter.Report
	b, err := os.ReadFile(filepath.Join(mnt, name, "status.json"))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(mnt, name, "status")); serr == nil {
			return r, fmt.Errorf("the rlfs daemon serving %s is older than this rlfs status (meter %q has no status.json); restart it with this version, or read its status files: cat %s",
				mnt, name, filepath.Join(mnt, "*", "status"))
		}
		return r, err
	}
	if err != nil {
		return r, fmt.Errorf("read status of meter %q: %w", name, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("status.json of meter %q: %w", name, err)
	}
	return r, nil
}
