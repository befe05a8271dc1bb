package main

// The daemon's watchers: its database file (deleted or replaced while it
// runs) and its mountpoint (unmounted from outside).

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/sqlite"
)

// dbCheckEvery is how often the daemon checks that its database file is
// still there.
const dbCheckEvery = time.Second

// watchDB rewrites the database from memory when its file is deleted or
// replaced while the daemon runs. It returns a func that stops watching.
func watchDB(store *sqlite.Store, reg *meter.Registry, own *ownMount, log *slog.Logger) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(dbCheckEvery)
		defer tick.Stop()
		inside := false // logged that the database leads into the mount
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if !store.Missing() {
				inside = false
				continue
			}
			if own.holds(store.Path()) || own.holds(filepath.Dir(store.Path())) { // a symbolic link leads into the mount
				if !inside {
					log.Error("the database's path now leads into the mount rlfs serves; not rewriting it there (rlfs would wait on its own mount); point it back outside the mountpoint",
						"db", store.Path(), "mountpoint", own.dir)
				}
				inside = true
				continue
			}
			log.Warn("database file deleted or replaced while serving; rewriting it from memory", "db", store.Path())
			if err := reg.Rewrite(store.Recreate); err != nil {
				log.Error("rewriting the database failed; grants will fail with EIO until it is fixed", "db", store.Path(), "err", err)
				continue
			}
			log.Info("database rewritten with the full state", "db", store.Path(), "meters", len(reg.Names()))
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// mountCheckEvery is how often the daemon checks that its mount is still
// attached.
const mountCheckEvery = time.Second

// watchMount returns a channel closed when dir stops being the FUSE mount
// that is there now (umount -l detaches it even while files are open, and
// the FUSE connection then lives on for them), or never if ctx ends first.
func watchMount(ctx context.Context, dir string) <-chan struct{} {
	gone := make(chan struct{})
	fstype, ok := mountedFS(dir)
	if !ok {
		return gone
	}
	go func() {
		tick := time.NewTicker(mountCheckEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if t, ok := mountedFS(dir); !ok || t != fstype {
				close(gone)
				return
			}
		}
	}()
	return gone
}
