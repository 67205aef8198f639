package main

import "syscall"

// sysProcAttr puts the command in its own process group, so that signals
// reach everything it started, and has the kernel SIGKILL it when ronin
// dies, even by SIGKILL.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
