package telemetry

import "github.com/prometheus/client_golang/prometheus"

// haRoleDesc: one series per role, 1 for the instance's current one, so
// that "no instance leads" is an alert rule: sum(vigie_ha_role{role="leader"}) < 1.
var haRoleDesc = prometheus.NewDesc("vigie_ha_role",
	"1 for this instance's role with [ha] (leader, candidate, or refusing: its configuration differs from the leader's), else 0.",
	[]string{"role"}, nil)

// HARoles are the roles vigie_ha_role reports.
var HARoles = []string{"leader", "candidate", "refusing"}

type roleCollector func() string

// RegisterRole exports, read at scrape time, the instance's [ha] role.
func (m *Metrics) RegisterRole(read func() string) {
	m.Registry.MustRegister(roleCollector(read))
}

func (roleCollector) Describe(ch chan<- *prometheus.Desc) { ch <- haRoleDesc }

func (read roleCollector) Collect(ch chan<- prometheus.Metric) {
	now := read()
	for _, r := range HARoles {
		v := 0.0
		if r == now {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(haRoleDesc, prometheus.GaugeValue, v, r)
	}
}
