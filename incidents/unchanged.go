package incidents

import "github.com/vigie/vigie/watchers"

// A snapshot source (Consul health) repeats every check in every answer,
// though few change: the engine evaluates only the checks that changed
// since the last snapshot it committed, and takes the incident keys the
// others gave then, so that what a snapshot does not mention is still
// told apart from what it repeats. Its cost follows the changes, not the
// size of the cluster.

// skipUnchanged reports whether a snapshot's event can be skipped: the
// watcher says it is unchanged, and the memo has the keys its Check gave
// in the last committed snapshot of source (an engine started afresh has
// not). Checks are known by pointer: the watcher hands an unchanged
// check's Check again, never changed (a watcher that did not would only
// have every check evaluated). The keys are counted as seen.
func (p *pass) skipUnchanged(source string, ev *watchers.Event) bool {
	if ev.Check == nil {
		return false
	}
	id := ev.Check
	if ev.Unchanged {
		if keys, ok := p.e.memo.snapshots[source][id]; ok {
			p.snapshotKeys[id] = keys
			for _, k := range keys {
				p.seen[k] = true
			}
			return true
		}
	}
	// Evaluated: apply records the keys it gives.
	p.eventKeys = id
	p.snapshotKeys[id] = nil
	return false
}

// keyGiven records a key an evaluated snapshot event gave.
func (p *pass) keyGiven(key string) {
	if p.eventKeys != nil {
		p.snapshotKeys[p.eventKeys] = append(p.snapshotKeys[p.eventKeys], key)
	}
}
