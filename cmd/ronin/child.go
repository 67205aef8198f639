//go:build unix

package main

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// child is one run of the command, in its own process group.
type child struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed once the command has exited and was reaped
	code     int           // exit code (128+signal if killed); valid after done
	stopping atomic.Bool   // stop was called: the exit is not the command's own
	stopOnce sync.Once
}

// startChild starts argv with env, stdin, stdout and stderr passed through,
// in a new process group that dies with this process where the system
// allows it (Linux: Pdeathsig).
func startChild(argv, env []string) (*child, error) {
	c := &child{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child ends, not
		// the process: hold this thread until the child is reaped so that
		// the Go runtime cannot retire it under a running child.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = sysProcAttr()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.cmd = cmd
		started <- nil
		_ = cmd.Wait() // the exit status is in ProcessState
		c.code = exitCode(cmd.ProcessState)
		// Whatever the command left in its group must not outlive it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// pid is the command's process ID, also its process group ID.
func (c *child) pid() int { return c.cmd.Process.Pid }

// stop ends the command: SIGTERM to its process group, SIGKILL after grace
// if it still runs. It returns once the command has been reaped. It may be
// called any number of times, concurrently.
func (c *child) stop(grace time.Duration) {
	c.stopOnce.Do(func() {
		select {
		case <-c.done:
			return // exited by itself
		default:
		}
		c.stopping.Store(true)
		c.signal(syscall.SIGTERM)
		t := time.AfterFunc(grace, func() { c.signal(syscall.SIGKILL) })
		go func() { <-c.done; t.Stop() }()
	})
	<-c.done
}

// signal sends sig to the command's process group unless it was reaped.
func (c *child) signal(sig syscall.Signal) {
	select {
	case <-c.done:
	default:
		_ = syscall.Kill(-c.pid(), sig)
	}
}

// exitCode is the shell's view of how a process ended: its exit status, or
// 128+N if signal N killed it.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return exitError
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
