package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/rlfs/rlfs/meter"
)

// daemonSignals takes the signals rlfs mount handles besides SIGINT and
// SIGTERM (main's context): SIGHUP, which the returned channel delivers
// (the daemon reloads), and SIGPIPE, which it drops. Without that, Go exits
// on a write to a closed pipe on stdout or stderr (`rlfs mount … 2>&1 |
// head -1`), and SIGHUP (a closed terminal, `systemctl reload`) kills the
// daemon and leaves a dead mount. Writes to a stderr that is gone (a hung-up
// terminal gives EIO, a closed pipe EPIPE) then just fail, and slog ignores
// that. stop restores the default actions.
func daemonSignals() (hup <-chan os.Signal, stop func()) {
	h := make(chan os.Signal, 1)
	signal.Notify(h, syscall.SIGHUP)
	pipe := make(chan os.Signal, 1) // never read: a full channel drops the signal
	signal.Notify(pipe, syscall.SIGPIPE)
	return h, func() { signal.Stop(h); signal.Stop(pipe) }
}

// reloader is what SIGHUP does: re-read --config and declare its meters
// (and the --meter flags) under the source-of-truth rule, exactly as at
// start-up. A config that does not load is logged, and the daemon keeps
// serving what it had. Settings other than meters take effect at the next
// start; a change to one is logged.
type reloader struct {
	c   mountConfig
	reg *meter.Registry
	own *ownMount
	log *slog.Logger
}

func (r *reloader) reload() {
	if r.c.config == "" {
		r.log.Info("SIGHUP: nothing to reload (started without --config); still serving", "mountpoint", r.own.dir)
		return
	}
	r.log.Info("SIGHUP: reloading the meters of the config file", "config", r.c.config)
	sdReloading()
	defer sdNotify("READY=1")
	meters, err := r.read()
	if err == nil {
		err = declareMeters(r.reg, meters, r.c.reconfigure, r.log)
	}
	if err != nil {
		r.log.Error("SIGHUP: config not reloaded; still serving the meters as they were; fix the file and send SIGHUP again",
			"config", r.c.config, "err", err)
	}
}

// read loads the config file and adds the --meter flags to its meters.
func (r *reloader) read() ([]declared, error) {
	if r.own.holds(r.c.config) { // a symbolic link moved it into the mount
		return nil, fmt.Errorf("config %s now leads into the mount rlfs serves (%s); keep it outside the mountpoint", r.c.config, r.own.dir)
	}
	fc, ms, err := loadConfig(r.c.config)
	if err != nil {
		return nil, err
	}
	c := mountConfig{meters: ms}
	if err := addMeterFlags(&c, r.c.meterFlags); err != nil {
		return nil, err
	}
	r.settingsChanged(fc)
	return c.meters, nil
}

// settingsChanged logs the settings of fc that differ from the running
// ones (unless a flag set them): they take effect at the next start.
func (r *reloader) settingsChanged(fc fileConfig) {
	changed := func(key, flag, running, file string) {
		if !r.c.set[flag] && file != "" && file != running {
			r.log.Warn("SIGHUP: config setting changed; it takes effect when rlfs mount restarts",
				"config", r.c.config, "key", key, "running", running, "file", file)
		}
	}
	changed("db", "db", r.c.db, fc.DB)
	changed("sync", "sync", r.c.sync, fc.Sync)
	changed("metrics", "metrics", r.c.metrics, fc.Metrics)
	changed("journal", "journal", r.c.fleet.journal, fc.Journal)
	if fc.AllowOther != nil {
		changed("allow_other", "allow-other", fmt.Sprint(r.c.allowOther), fmt.Sprint(*fc.AllowOther))
	}
}

// sdReloading tells systemd that a reload began; READY=1 ends it.
func sdReloading() {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		sdNotify("RELOADING=1")
		return
	}
	sdNotify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000))
}
