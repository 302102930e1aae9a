package testenv

import (
	"os"
	"strings"
)

// testSettings are the variables that steer the test harness itself.
var testSettings = []string{"VIGIE_INTEGRATION", "VIGIE_TOOLS_DIR", "VIGIE_PG_BIN"}

// IsolateEnv unsets every variable through which Vigie, Nomad's and
// Consul's tooling would reach an operator's real clusters or secrets
// (NOMAD_*, CONSUL_*, VIGIE_* but the harness's own), so that a test run
// from a shell set up for production talks only to its own servers. Call
// it from TestMain, before any test: tests set what they need with
// t.Setenv or cmd.Env. It returns the names it unset.
func IsolateEnv() []string {
	var unset []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !operatorSetting(name) {
			continue
		}
		os.Unsetenv(name)
		unset = append(unset, name)
	}
	return unset
}

func operatorSetting(name string) bool {
	for _, s := range testSettings {
		if name == s {
			return false
		}
	}
	for _, prefix := range []string{"NOMAD_", "CONSUL_", "VIGIE_"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}
