package incidents

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("consul-service-empty", func() Rule { return ConsulServiceEmpty{Severity: Critical} })
}

// ConsulServiceEmpty fires when a Consul service has no passing instance
// left: no single check says that. A service whose every instance is
// deregistered is gone on purpose (a job stopped, a service removed):
// that resolves it.
//
// An instance passes as Consul's ?passing filter (and DNS) sees it: when
// all its checks and all its node's checks pass. The node checks matter
// most: when a node dies its agent stops updating the service checks,
// which stay passing, and only serfHealth turns critical.
type ConsulServiceEmpty struct {
	Severity Severity
}

func (ConsulServiceEmpty) Name() string { return "consul-service-empty" }

// Evaluate sees single checks, which tell nothing about a whole service.
func (ConsulServiceEmpty) Evaluate(*watchers.Event) []Signal { return nil }

// consulHealth sums up the checks of a service instance, or of a node.
type consulHealth struct {
	worst       int // 0 passing, 1 warning, 2 critical
	maintenance bool
	failing     []string // the checks that do not pass, for the thread
}

func (h *consulHealth) add(c *watchers.Check) {
	if c.Maintenance != "" || maintenanceCheck(c) {
		h.maintenance = true
		return
	}
	rank := 2 // critical, and any status Consul may add
	switch c.Status {
	case "passing":
		return
	case "warning":
		rank = 1
	}
	h.worst = max(h.worst, rank)
	h.failing = append(h.failing, fmt.Sprintf("%s on %s (%s)", c.Name, c.Node, c.Status))
}

// consulInstance tells instances apart: a service ID is unique per agent only.
type consulInstance struct{ node, serviceID string }

func (r ConsulServiceEmpty) EvaluateSnapshot(checks []*watchers.Event, known []string) ([]Signal, []string) {
	nodes := map[string]*consulHealth{}
	services := map[string]map[consulInstance]*consulHealth{}
	for _, ev := range checks {
		c := ev.Check
		if c == nil {
			continue
		}
		if c.ServiceName == "" {
			consulHealthOf(nodes, c.Node).add(c)
			continue
		}
		if services[c.ServiceName] == nil {
			services[c.ServiceName] = map[consulInstance]*consulHealth{}
		}
		consulHealthOf(services[c.ServiceName], consulInstance{c.Node, c.ServiceID}).add(c)
	}

	current := slices.Sorted(maps.Keys(services))
	sigs := make([]Signal, 0, len(current))
	for _, name := range current {
		sigs = append(sigs, r.judge(name, services[name], nodes))
	}
	for _, name := range known {
		if _, ok := services[name]; !ok {
			sig := r.signal(name)
			sig.Status, sig.Reason = Resolved, "deregistered from Consul"
			sigs = append(sigs, sig)
		}
	}
	slices.SortFunc(sigs, func(a, b Signal) int { return cmp.Compare(a.Key, b.Key) })
	return sigs, current
}

func consulHealthOf[K comparable](m map[K]*consulHealth, k K) *consulHealth {
	if m[k] == nil {
		m[k] = &consulHealth{}
	}
	return m[k]
}

// judge counts the instances of a present service.
func (r ConsulServiceEmpty) judge(name string, instances map[consulInstance]*consulHealth, nodes map[string]*consulHealth) Signal {
	var passing, critical, active int
	failing := map[string]bool{}
	for id, h := range instances {
		node := nodes[id.node]
		if node == nil {
			node = &consulHealth{}
		}
		if h.maintenance || node.maintenance {
			continue
		}
		active++
		switch max(h.worst, node.worst) {
		case 0:
			passing++
			continue
		case 2:
			critical++
		}
		for _, f := range slices.Concat(h.failing, node.failing) {
			failing[f] = true
		}
	}
	sig := r.signal(name)
	switch {
	case active == 0:
		sig.Status, sig.Reason = Resolved, "all instances under maintenance"
		return sig
	case passing > 0:
		sig.Status, sig.Reason = Resolved, fmt.Sprintf("%d of %d instances passing", passing, active)
		return sig
	case active == 1 && critical == 1:
		sig.Reason = "its only instance is critical"
	case active == 1:
		sig.Reason = "its only instance is warning"
	case critical == active:
		sig.Reason = fmt.Sprintf("all %d instances critical", active)
	default:
		sig.Reason = fmt.Sprintf("none of %d instances passing (%d critical)", active, critical)
	}
	sig.Status = Firing
	sig.Detail = &Detail{Text: "failing checks: " + strings.Join(slices.Sorted(maps.Keys(failing)), ", ")}
	return sig
}

func (r ConsulServiceEmpty) signal(name string) Signal {
	return Signal{
		Rule: r.Name(), Key: signalKey("service", name), Severity: r.Severity,
		Title: "service " + name + ": no healthy instance", Labels: Labels{Service: name},
	}
}
