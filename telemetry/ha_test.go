package telemetry

import "testing"

func TestRoleMetric(t *testing.T) {
	m := NewMetrics()
	role := "candidate"
	m.RegisterRole(func() string { return role })
	read := func() map[string]float64 {
		t.Helper()
		fams, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			if f.GetName() != "vigie_ha_role" {
				continue
			}
			for _, s := range f.GetMetric() {
				out[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
			}
		}
		return out
	}
	if got := read(); got["candidate"] != 1 || got["leader"] != 0 || got["refusing"] != 0 || len(got) != 3 {
		t.Fatalf("candidate: %v", got)
	}
	role = "leader"
	if got := read(); got["leader"] != 1 || got["candidate"] != 0 {
		t.Fatalf("leader: %v", got)
	}
}
