package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// browser runs headless Chromium against the test's status page, one
// process per page load, each with a fresh profile directory.
type browser struct {
	bin, dir, base string
	page           *timedPage

	mu sync.Mutex
	n  int

	procs sync.WaitGroup // Chromium processes, until they have exited
}

// pageSample is one page load.
type pageSample struct {
	load string
	// at is when the server rendered the page that was loaded.
	at time.Time
	// took is the time from Chromium's start to the whole DOM.
	took time.Duration
	dom  string
	err  error
}

func newBrowser(t *testing.T, bin string, page *timedPage, base string) *browser {
	dir, err := os.MkdirTemp("", "ronin-statuspage-")
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{bin: bin, dir: dir, base: base, page: page}
	t.Cleanup(func() {
		b.procs.Wait()
		// Chromium's helpers may still write to a profile for a moment
		// after the browser exited.
		for range 20 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("cannot remove Chromium's profiles: %v", err)
	})
	return b
}

// command is Chromium with the test's flags, a fresh profile and args.
func (b *browser) command(ctx context.Context, args ...string) *exec.Cmd {
	b.mu.Lock()
	b.n++
	n := b.n
	b.mu.Unlock()
	flags := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(b.dir, fmt.Sprintf("profile-%d", n)), "--window-size=1280,1600",
	}
	cmd := exec.CommandContext(ctx, b.bin, append(flags, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// dumpDOM loads the page with --dump-dom, as ?load=load. It returns as soon as the DOM
// is complete: Chromium takes a few seconds more to exit, which the
// browser waits for in the background.
func (b *browser) dumpDOM(load string) pageSample {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	cmd := b.command(ctx, "--dump-dom", b.base+"/?load="+load)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return pageSample{load: load, err: err}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return pageSample{load: load, err: fmt.Errorf("start chromium: %w", err)}
	}
	var dom strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		dom.WriteString(sc.Text())
		dom.WriteByte('\n')
		if strings.Contains(sc.Text(), "</html>") {
			break
		}
	}
	s := pageSample{load: load, took: time.Since(start), dom: dom.String()}
	exited := make(chan struct{})
	b.procs.Go(func() {
		defer close(exited)
		defer cancel()
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
	})
	at, ok := b.page.renderedAt(load)
	switch {
	case !strings.Contains(s.dom, "</html>"):
		<-exited
		s.err = fmt.Errorf("chromium --dump-dom printed no page (%v, %v); stderr: %s", sc.Err(), cmd.ProcessState, tail(stderr.String(), 1500))
	case !ok:
		s.err = fmt.Errorf("chromium printed a page the server did not serve: load %s", load)
	}
	s.at = at
	return s
}

// screenshot saves a PNG of the page to path.
func (b *browser) screenshot(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	_ = os.Remove(abs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := b.command(ctx, "--screenshot="+abs, b.base+"/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("chromium --screenshot: %w: %s", err, tail(string(out), 1500))
	}
	if st, err := os.Stat(abs); err != nil || st.Size() == 0 {
		return fmt.Errorf("chromium wrote no screenshot to %s: %v: %s", abs, err, tail(string(out), 1500))
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
