package framework

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

type stopper interface{ Stop() error }

// running is everything started and not yet stopped, so that a signal can
// stop it all. It is the one piece of package state: a signal handler has
// no other way to find what the process started.
var running = struct {
	sync.Mutex
	order []stopper
}{}

func track(s stopper) {
	running.Lock()
	defer running.Unlock()
	for _, r := range running.order {
		if r == s {
			return
		}
	}
	running.order = append(running.order, s)
}

func untrack(s stopper) {
	running.Lock()
	defer running.Unlock()
	for i, r := range running.order {
		if r == s {
			running.order = append(running.order[:i], running.order[i+1:]...)
			return
		}
	}
}

// StopAll stops everything still running, newest first (controllers before
// the control planes they talk to).
func StopAll() {
	running.Lock()
	order := append([]stopper(nil), running.order...)
	running.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		if err := order[i].Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping %T: %v\n", order[i], err)
		}
	}
}

// StopAllOnSignal stops everything on SIGINT or SIGTERM and then exits 130.
// Test binaries call it from TestMain: t.Cleanup does not run when a test
// binary is interrupted.
func StopAllOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "\n%s: stopping control planes and controllers\n", sig)
		StopAll()
		os.Exit(130)
	}()
}
