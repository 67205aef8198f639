//go:build unix && !linux

package main

import "syscall"

// sysProcAttr puts the command in its own process group, so that signals
// reach everything it started. Outside Linux nothing kills the command when
// ronin dies by SIGKILL.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
