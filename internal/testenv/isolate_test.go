package testenv

import (
	"os"
	"slices"
	"testing"
)

func TestIsolateEnvDropsOperatorSettingsOnly(t *testing.T) {
	for name, value := range map[string]string{
		"NOMAD_ADDR": "https://nomad.prod:4646", "NOMAD_TOKEN": "secret", "CONSUL_HTTP_ADDR": "consul.prod:8501",
		"CONSUL_CACERT": "/etc/ca.pem", "VIGIE_CONFIG": "/etc/vigie.toml", "VIGIE_LDAP_BIND_PASSWORD": "pw",
		"VIGIE_TOOLS_DIR": "/opt/tools", "VIGIE_INTEGRATION": "require", "NOMADIC": "kept", "HOME": "/root",
	} {
		t.Setenv(name, value)
	}
	unset := IsolateEnv()
	for _, name := range []string{"CONSUL_CACERT", "CONSUL_HTTP_ADDR", "NOMAD_ADDR", "NOMAD_TOKEN", "VIGIE_CONFIG", "VIGIE_LDAP_BIND_PASSWORD"} {
		if _, ok := os.LookupEnv(name); ok || !slices.Contains(unset, name) {
			t.Errorf("%s still set (unset: %v)", name, unset)
		}
	}
	for _, name := range []string{"VIGIE_TOOLS_DIR", "VIGIE_INTEGRATION", "NOMADIC", "HOME"} {
		if _, ok := os.LookupEnv(name); !ok || slices.Contains(unset, name) {
			t.Errorf("%s was dropped", name)
		}
	}
}
