// Package testenv starts a real Matrix homeserver (Dendrite) on loopback for
// integration tests, and drives test users against it with mautrix clients,
// optionally with end-to-end encryption.
//
// Integration policy: with VIGIE_INTEGRATION=require (what `make test` sets)
// any failure to install or start Dendrite fails the test. Otherwise a missing
// toolchain or a failed install skips the test loudly, so a plain
// `go test ./...` on a machine without network still passes. -short always
// skips.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// DendriteVersion is the pinned Dendrite release the harness runs.
const DendriteVersion = "v0.13.8"

const dendriteModule = "github.com/matrix-org/dendrite"

// ToolsDir is where test tools are installed: $VIGIE_TOOLS_DIR if set, else
// $HOME/.cache/vigie-tools/bin. It lives outside the repository and outside
// GOPATH/bin so that `make clean` and other projects leave it alone.
func ToolsDir() string {
	if dir := os.Getenv("VIGIE_TOOLS_DIR"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		// Without a home directory a temp-dir cache still works, it is just
		// not shared across reboots.
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "vigie-tools", "bin")
}

// integrationRequired reports whether the caller asked for integration tests
// to fail rather than skip when their environment is missing.
func integrationRequired() bool {
	return os.Getenv("VIGIE_INTEGRATION") == "require"
}

// unavailable fails (VIGIE_INTEGRATION=require) or skips the test because
// a server cannot be provided. The skip message is deliberately loud: a
// silently skipped integration suite looks exactly like a passing one.
func unavailable(t testing.TB, server, why string) {
	t.Helper()
	if integrationRequired() {
		t.Fatalf("%s unavailable (VIGIE_INTEGRATION=require): %s", server, why)
	}
	t.Skipf("SKIPPING integration test: %s unavailable: %s; run `make test` to run it", server, why)
}

// EnsureDendrite returns the paths of the dendrite and generate-keys
// binaries, installing them with `go install ...@DendriteVersion` into
// ToolsDir() when missing or of another version.
//
// go test runs packages in parallel processes, so the check and the install
// happen under an exclusive flock on ToolsDir()/.install.lock: the first
// process installs, the others wait and then find the binaries.
func EnsureDendrite(t testing.TB) (dendrite, generateKeys string) {
	t.Helper()
	dir := ToolsDir()
	dendrite = filepath.Join(dir, "dendrite")
	generateKeys = filepath.Join(dir, "generate-keys")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		unavailable(t, "Dendrite", fmt.Sprintf("create tools dir: %v", err))
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		unavailable(t, "Dendrite", fmt.Sprintf("open install lock: %v", err))
	}
	// Closing the file releases the flock, also when t.Skip/t.Fatal unwind.
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		unavailable(t, "Dendrite", fmt.Sprintf("lock %s: %v", lock.Name(), err))
	}

	if installed(dendrite, generateKeys) {
		return dendrite, generateKeys
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		unavailable(t, "Dendrite", "the go command is not on PATH, cannot install Dendrite")
	}
	t.Logf("installing Dendrite %s into %s (first run only, takes a few minutes)", DendriteVersion, dir)
	cmd := exec.Command(goBin, "install",
		dendriteModule+"/cmd/dendrite@"+DendriteVersion,
		dendriteModule+"/cmd/generate-keys@"+DendriteVersion)
	// Run outside the repository so neither go.mod nor go.work applies, and
	// drop the test environment's CGO_ENABLED=0 / GOFLAGS (tags, -race,
	// -mod): Dendrite builds with its cgo SQLite driver when a C compiler
	// exists and falls back to its pure-Go one otherwise.
	cmd.Dir = dir
	cmd.Env = append(withoutEnv(os.Environ(), "CGO_ENABLED", "GOFLAGS", "GOBIN"), "GOBIN="+dir, "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		unavailable(t, "Dendrite", fmt.Sprintf("go install failed: %v\n%s", err, tail(out, 20)))
	}
	if !installed(dendrite, generateKeys) {
		unavailable(t, "Dendrite", "go install succeeded but the binaries are missing or report another version")
	}
	return dendrite, generateKeys
}

// installed reports whether both binaries exist and dendrite is the pinned
// version, so bumping DendriteVersion reinstalls instead of silently testing
// against a stale binary.
func installed(dendrite, generateKeys string) bool {
	if _, err := os.Stat(generateKeys); err != nil {
		return false
	}
	out, err := exec.Command(dendrite, "--version").Output()
	if err != nil {
		return false
	}
	return strings.TrimSpace(string(out)) == strings.TrimPrefix(DendriteVersion, "v")
}

// withoutEnv returns env minus the given variables.
func withoutEnv(env []string, names ...string) []string {
	var kept []string
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); !slices.Contains(names, name) {
			kept = append(kept, kv)
		}
	}
	return kept
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
