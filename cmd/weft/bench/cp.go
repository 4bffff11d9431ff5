package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/testenv"
)

// controlPlane is the cp binary under test, a child process: its CPU time
// and memory are read from /proc/<pid> and are its own, not the load
// generator's.
type controlPlane struct {
	bin, kubeconfig, logPath string
	xdsAddr, adminAddr       string
	args                     []string

	// mu guards the current process: a restart replaces it while the
	// memory guard reads it.
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func (c *controlPlane) proc() (*exec.Cmd, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd, c.exited
}

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// fixed at 100 by Linux's user-space ABI whatever the kernel's HZ.
const userHZ = 100

func newControlPlane(bin, kubeconfig, logPath string, extraArgs []string) (*controlPlane, error) {
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return nil, err
	}
	return &controlPlane{
		bin: bin, kubeconfig: kubeconfig, logPath: logPath, args: extraArgs,
		xdsAddr:   "127.0.0.1:" + strconv.Itoa(ports[0]),
		adminAddr: "127.0.0.1:" + strconv.Itoa(ports[1]),
	}, nil
}

// start runs the binary (again, on the same addresses after a kill) and
// waits until /readyz says its caches are synced. adminUp, if set, runs
// once the admin port first answers, before the caches are synced: what
// profiles a start-up starts there.
func (c *controlPlane) start(ctx context.Context, adminUp func()) error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening the control plane log: %w", err)
	}
	args := append([]string{"--kubeconfig", c.kubeconfig, "--xds-addr", c.xdsAddr, "--admin-addr", c.adminAddr,
		"--log-level", "warn", "--log-format", "text"}, c.args...)
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Dies with the load generator, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting the control plane %s: %w", c.bin, err)
	}
	exited := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return testenv.WaitFor(ctx, 3*time.Minute, "the control plane to be ready (log: "+c.logPath+")", func(ctx context.Context) (bool, error) {
		select {
		case <-exited:
			return false, testenv.Permanent(errors.New("the control plane exited while starting"))
		default:
		}
		ready, err := c.get(ctx, "/readyz")
		if err == nil && adminUp != nil {
			adminUp()
			adminUp = nil
		}
		return ready, err
	})
}

func (c *controlPlane) get(ctx context.Context, path string) (bool, error) {
	return c.fetch(ctx, path, io.Discard, 30*time.Second)
}

// fetch GETs an admin path into w; ok is whether it answered 200.
func (c *controlPlane) fetch(ctx context.Context, path string, w io.Writer, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.adminAddr+path, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	return resp.StatusCode == http.StatusOK, nil
}

// gc makes the control plane collect garbage (pprof's heap profile does
// with gc=1), so an RSS read after it is live memory plus what the runtime
// keeps, not garbage awaiting collection. The heap profile is written to
// path when path is not empty.
func (c *controlPlane) gc(ctx context.Context, path string) error {
	if path == "" {
		_, err := c.get(ctx, "/debug/pprof/heap?gc=1")
		return err
	}
	return c.profile(ctx, "/debug/pprof/heap?gc=1", path, 30*time.Second)
}

// profile saves a pprof endpoint's answer to path.
func (c *controlPlane) profile(ctx context.Context, endpoint, path string, timeout time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("saving a profile: %w", err)
	}
	defer f.Close()
	ok, err := c.fetch(ctx, endpoint, f, timeout)
	if err == nil && !ok {
		err = fmt.Errorf("GET %s: not 200", endpoint)
	}
	if err != nil {
		return fmt.Errorf("profiling the control plane (%s): %w", endpoint, err)
	}
	return f.Close()
}

func (c *controlPlane) pid() int {
	cmd, _ := c.proc()
	return cmd.Process.Pid
}

// cpu is the process's user plus system time so far.
func (c *controlPlane) cpu() (time.Duration, error) {
	return procCPU(strconv.Itoa(c.pid()))
}

// procCPU reads the CPU time of /proc/<pid> ("self" for this process).
func procCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading CPU time: %w", err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces, so
// fields are counted after its closing parenthesis.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// memory is the process's resident set now and at its peak (VmRSS, VmHWM).
func (c *controlPlane) memory() (rss, peak int64, err error) {
	return procMemory(strconv.Itoa(c.pid()))
}

// procMemory reads VmRSS and VmHWM of /proc/<pid> ("self" for this process).
func procMemory(pid string) (rss, peak int64, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("reading memory use: %w", err)
	}
	return parseStatusMemory(string(b))
}

func parseStatusMemory(status string) (rss, peak int64, err error) {
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		b, err := parseKB(v)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status %s: %w", k, err)
		}
		if k == "VmRSS" {
			rss = b
		} else {
			peak = b
		}
	}
	if rss == 0 || peak == 0 {
		return 0, 0, errors.New("/proc status: no VmRSS or VmHWM")
	}
	return rss, peak, nil
}

// parseKB reads a /proc value such as "  102400 kB" as bytes.
func parseKB(v string) (int64, error) {
	kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
	return kb << 10, err
}

// kill ends the process at once, as a crash or an OOM kill would.
func (c *controlPlane) kill() {
	cmd, exited := c.proc()
	_ = cmd.Process.Kill()
	<-exited
}

// stop asks the process to end and kills it after a grace period.
func (c *controlPlane) stop() {
	cmd, exited := c.proc()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		c.kill()
	}
}
