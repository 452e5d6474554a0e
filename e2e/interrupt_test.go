//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relay-pki/relay-pki/e2e/framework"
)

// holdEnv turns this test binary into a fixture: it starts a control plane
// and cert-manager under the given folder, prints "READY" and waits to be
// interrupted or killed.
const holdEnv = "RELAY_PKI_E2E_HOLD_DIR"

func holdControlPlane(dir string) {
	cp, err := framework.StartControlPlane("held", dir, tools, tools.CertManagerCRDs)
	if err != nil {
		fmt.Println("FAILED:", err)
		os.Exit(1)
	}
	if _, err := framework.StartCertManager(cp, tools); err != nil {
		fmt.Println("FAILED:", err)
		os.Exit(1)
	}
	fmt.Println("READY")
	select {}
}

// A test run that is interrupted (Ctrl-C) or killed outright must leave no
// kube-apiserver, etcd or cert-manager process behind.
func TestInterruptedOrKilledRunLeavesNoProcesses(t *testing.T) {
	for name, sig := range map[string]syscall.Signal{
		"SIGINT, as Ctrl-C sends":                 syscall.SIGINT,
		"SIGKILL, which no cleanup code survives": syscall.SIGKILL,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), holdEnv+"="+dir)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(stdout)
			ready := false
			for lines.Scan() {
				if lines.Text() == "READY" {
					ready = true
					break
				}
				t.Log(lines.Text())
			}
			if !ready {
				_ = cmd.Process.Kill()
				t.Fatal("the fixture did not start")
			}
			// A process just started may not have exec'd yet (its
			// command line is still the parent's): look again briefly.
			before := processesUnder(dir)
			for wait := time.Now().Add(10 * time.Second); len(before) < 3 && time.Now().Before(wait); {
				time.Sleep(50 * time.Millisecond)
				before = processesUnder(dir)
			}
			if len(before) < 3 {
				t.Fatalf("expected kube-apiserver, etcd and cert-manager under %s, found %v", dir, before)
			}
			t.Logf("running before %s: %v", sig, before)

			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			deadline := time.Now().Add(20 * time.Second)
			left := processesUnder(dir)
			for len(left) > 0 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
				left = processesUnder(dir)
			}
			if len(left) > 0 {
				for _, p := range left {
					if pid, err := strconv.Atoi(strings.SplitN(p, ":", 2)[0]); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				t.Fatalf("after %s these processes were left behind: %v", sig, left)
			}
			t.Logf("after %s: 0 of %d processes left", sig, len(before))
		})
	}
}

// processesUnder lists "pid:name" of every process whose command line
// mentions dir (the control plane's binaries, data and kubeconfig live there).
func processesUnder(dir string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dir) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(stat), ") Z ") {
			continue // a zombie holds no resources and is reaped by init
		}
		found = append(found, e.Name()+":"+filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0]))
	}
	return found
}
