package sighup

import (
	"os"
	"os/signal"
	"syscall"
)

// C receives the SIGHUPs that arrive from initialization on; one waiting
// stands for any number, as a reload reads the config as it is then.
var C = make(chan os.Signal, 1)

func init() { signal.Notify(C, syscall.SIGHUP) }
