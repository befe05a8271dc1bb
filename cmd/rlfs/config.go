package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/rlfs/rlfs/meter"
)

// fileConfig is the TOML config file of `rlfs mount --config`. Command-line
// flags override its settings.
//
//	db = "/var/lib/rlfs/meters.db"
//	sync = "normal"
//	allow_other = true
//	metrics = "127.0.0.1:9187"
//	history = "7d"
//	store = "redis://10.0.0.5:6379"    # a fleet's shared store; then also
//	host = "web1"                      # host, lease, store_prefix and journal
//
//	[meters]
//	email = "1/s,75/h"                 # a SPEC string, as --meter takes
//
//	[meters.api]                       # or a table of the same items
//	limits = ["10/s", "1000/h"]
//	concurrency = 4
//	max_wait = "30s"
type fileConfig struct {
	DB         string `toml:"db"`
	Sync       string `toml:"sync"`
	AllowOther *bool  `toml:"allow_other"`
	Metrics    string `toml:"metrics"`
	History    string `toml:"history"`
	// The fleet's shared store (see rlfs mount --store).
	Store       string         `toml:"store"`
	Host        string         `toml:"host"`
	Lease       string         `toml:"lease"`
	StorePrefix string         `toml:"store_prefix"`
	Journal     string         `toml:"journal"`
	Meters      map[string]any `toml:"meters"`
}

// itemKeys are the keys a meter table may hold besides limits.
var itemKeys = []string{"concurrency", "rate", "burst", "count", "max_wait", "max_hold", "max_waiters", "max_pause"}

func loadConfig(path string) (fileConfig, []declared, error) {
	var fc fileConfig
	md, err := toml.DecodeFile(path, &fc)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fc, nil, fmt.Errorf("config %s does not exist; create it or drop --config", path)
		}
		return fc, nil, fmt.Errorf("config %s: %v; fix the file (TOML)", path, err)
	}
	var keys []string
	if und := md.Undecoded(); len(und) > 0 {
		for _, k := range und {
			if len(k) == 0 || k[0] != "meters" { // meter tables are checked below
				keys = append(keys, k.String())
			}
		}
	}
	if len(keys) > 0 {
		return fc, nil, fmt.Errorf("config %s: unknown key %s; known keys are db, sync, allow_other, metrics, history, store, host, lease, store_prefix, journal and [meters]", path, strings.Join(keys, ", "))
	}
	names := make([]string, 0, len(fc.Meters))
	for n := range fc.Meters {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []declared
	for _, name := range names {
		text, err := specText(fc.Meters[name])
		if err == nil {
			err = meter.ValidName(name)
		}
		var spec meter.Spec
		if err == nil {
			spec, err = meter.ParseSpec(text)
		}
		if err != nil {
			return fc, nil, fmt.Errorf("config %s: meter %q: %v", path, name, err)
		}
		out = append(out, declared{name: name, spec: spec})
	}
	return fc, out, nil
}

// specText turns a meter's config value into SPEC text.
func specText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case map[string]any:
		var items []string
		switch l := v["limits"].(type) {
		case nil:
		case string:
			items = append(items, l)
		case []any:
			for _, x := range l {
				s, ok := x.(string)
				if !ok {
					return "", fmt.Errorf("limits must be strings such as \"10/s\", got %v", x)
				}
				items = append(items, s)
			}
		default:
			return "", fmt.Errorf("limits must be a string or a list of strings such as [\"1/s\", \"75/h\"]")
		}
		for k := range v {
			if k != "limits" && !contains(itemKeys, k) {
				return "", fmt.Errorf("unknown key %q (want limits, %s)", k, strings.Join(itemKeys, ", "))
			}
		}
		for _, k := range itemKeys {
			if x, ok := v[k]; ok {
				items = append(items, fmt.Sprintf("%s=%v", k, x))
			}
		}
		return strings.Join(items, ","), nil
	}
	return "", fmt.Errorf("want a SPEC string such as \"1/s,75/h\" or a table of items, got %T", v)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
