package fakenomad

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/hashicorp/nomad/api"
)

// Diff types, as Nomad names them.
const (
	diffNone    = "None"
	diffAdded   = "Added"
	diffDeleted = "Deleted"
	diffEdited  = "Edited"
)

// jobDiff is Nomad's contextual Job.Diff (unchanged fields of a changed
// object are listed as None). Deviation: only these are itemized, the
// object's type accounting for any other change: the job's AllAtOnce,
// Dispatched, Name, NodePool, ParentID, Priority, Region, Stop and Type,
// its Datacenters and Meta; a group's Count and Meta; a task's Driver,
// KillSignal, KillTimeout, Leader and User, its Config (flattened as
// Nomad's flatmap does: args[0], labels[key]), Env, Meta and Resources.
func jobDiff(old, job *api.Job) *api.JobDiff {
	d := &api.JobDiff{Type: diffType(old != nil, true, old != nil && specChanged(old, job)), ID: *job.ID}
	d.Fields = fieldDiffs(jobFields(old), jobFields(job))
	var oldDCs, oldMeta map[string]string
	if old != nil {
		oldDCs, oldMeta = listMap(old.Datacenters), old.Meta
	}
	d.Objects = objectDiffs(objectDiff("Datacenters", oldDCs, listMap(job.Datacenters)), objectDiff("Meta", oldMeta, job.Meta))
	names := map[string]bool{}
	for _, j := range []*api.Job{old, job} {
		if j != nil {
			for _, g := range j.TaskGroups {
				names[*g.Name] = true
			}
		}
	}
	for _, name := range sortedKeys(names) {
		var o *api.TaskGroup
		if old != nil {
			o = findGroup(old, name)
		}
		d.TaskGroups = append(d.TaskGroups, groupDiff(o, findGroup(job, name)))
	}
	return d
}

func diffType(hadOld, hasNew, changed bool) string {
	switch {
	case !hadOld:
		return diffAdded
	case !hasNew:
		return diffDeleted
	case changed:
		return diffEdited
	}
	return diffNone
}

func jobFields(j *api.Job) map[string]string {
	if j == nil {
		return nil
	}
	return map[string]string{"AllAtOnce": fmt.Sprint(*j.AllAtOnce), "Dispatched": fmt.Sprint(j.Dispatched),
		"Name": *j.Name, "NodePool": *j.NodePool, "ParentID": *j.ParentID, "Priority": fmt.Sprint(*j.Priority),
		"Region": *j.Region, "Stop": fmt.Sprint(*j.Stop), "Type": *j.Type}
}

func groupDiff(o, n *api.TaskGroup) *api.TaskGroupDiff {
	g := n
	if g == nil {
		g = o
	}
	d := &api.TaskGroupDiff{Type: diffType(o != nil, n != nil, !equalJSON(o, n)), Name: *g.Name}
	var of, nf, om, nm map[string]string
	if o != nil {
		of, om = map[string]string{"Count": strconv.Itoa(*o.Count)}, o.Meta
	}
	if n != nil {
		nf, nm = map[string]string{"Count": strconv.Itoa(*n.Count)}, n.Meta
	}
	d.Fields = fieldDiffs(of, nf)
	d.Objects = objectDiffs(objectDiff("Meta", om, nm))
	names := map[string]*[2]*api.Task{}
	for i, tg := range []*api.TaskGroup{o, n} {
		if tg == nil {
			continue
		}
		for _, t := range tg.Tasks {
			if names[t.Name] == nil {
				names[t.Name] = &[2]*api.Task{}
			}
			names[t.Name][i] = t
		}
	}
	for _, name := range sortedKeys(names) {
		d.Tasks = append(d.Tasks, taskDiff(names[name][0], names[name][1]))
	}
	return d
}

func taskDiff(o, n *api.Task) *api.TaskDiff {
	t := n
	if t == nil {
		t = o
	}
	d := &api.TaskDiff{Type: diffType(o != nil, n != nil, !equalJSON(o, n)), Name: t.Name}
	d.Fields = fieldDiffs(taskFields(o), taskFields(n))
	var oc, nc, oe, ne, om, nm, or, nr map[string]string
	if o != nil {
		oc, oe, om, or = flatten(o.Config), o.Env, o.Meta, resourceFields(o.Resources)
	}
	if n != nil {
		nc, ne, nm, nr = flatten(n.Config), n.Env, n.Meta, resourceFields(n.Resources)
	}
	d.Objects = objectDiffs(objectDiff("Config", oc, nc), objectDiff("Env", oe, ne), objectDiff("Meta", om, nm),
		objectDiff("Resources", or, nr))
	return d
}

func taskFields(t *api.Task) map[string]string {
	if t == nil {
		return nil
	}
	f := map[string]string{"Driver": t.Driver, "KillSignal": t.KillSignal, "Leader": fmt.Sprint(t.Leader), "User": t.User}
	if t.KillTimeout != nil {
		f["KillTimeout"] = strconv.FormatInt(int64(*t.KillTimeout), 10)
	}
	return f
}

func resourceFields(r *api.Resources) map[string]string {
	if r == nil {
		return nil
	}
	f := map[string]string{}
	if r.CPU != nil {
		f["CPU"] = strconv.Itoa(*r.CPU)
	}
	if r.MemoryMB != nil {
		f["MemoryMB"] = strconv.Itoa(*r.MemoryMB)
	}
	if r.MemoryMaxMB != nil {
		f["MemoryMaxMB"] = strconv.Itoa(*r.MemoryMaxMB)
	}
	return f
}

func listMap(list []string) map[string]string {
	if list == nil {
		return nil
	}
	m := map[string]string{}
	for _, v := range list {
		m[v] = v
	}
	return m
}

// fieldDiffs diffs flat fields contextually, sorted by name.
func fieldDiffs(old, new map[string]string) []*api.FieldDiff {
	names := map[string]bool{}
	for k := range old {
		names[k] = true
	}
	for k := range new {
		names[k] = true
	}
	var out []*api.FieldDiff
	for _, k := range sortedKeys(names) {
		o, inOld := old[k]
		n, inNew := new[k]
		out = append(out, &api.FieldDiff{Type: diffType(inOld, inNew, o != n), Name: k, Old: o, New: n})
	}
	return out
}

// objectDiff is nil when nothing changed, as Nomad's primitive object
// diffs are.
func objectDiff(name string, old, new map[string]string) *api.ObjectDiff {
	if equalJSON(old, new) || len(old) == 0 && len(new) == 0 {
		return nil
	}
	return &api.ObjectDiff{Type: diffType(len(old) > 0, len(new) > 0, true), Name: name, Fields: fieldDiffs(old, new)}
}

func objectDiffs(diffs ...*api.ObjectDiff) []*api.ObjectDiff {
	var out []*api.ObjectDiff
	for _, d := range diffs {
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

// flatten flattens a task config as Nomad's flatmap.Flatten does.
func flatten(config map[string]any) map[string]string {
	if config == nil {
		return nil
	}
	// Round trip through JSON so that every value has a JSON type.
	b, _ := json.Marshal(config)
	var v any
	mustDecodeBytes(b, &v)
	out := map[string]string{}
	flattenInto("", v, out)
	return out
}

func flattenInto(prefix string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			key := k
			if prefix != "" {
				key = prefix + "[" + k + "]"
			}
			flattenInto(key, e, out)
		}
	case []any:
		for i, e := range v {
			flattenInto(fmt.Sprintf("%s[%d]", prefix, i), e, out)
		}
	case float64:
		out[prefix] = strconv.FormatFloat(v, 'f', -1, 64)
	case nil:
		out[prefix] = ""
	default:
		out[prefix] = fmt.Sprint(v)
	}
}

// Nomad's plan annotations (scheduler/annotate.go).
const (
	annotationForcesCreate      = "forces create"
	annotationForcesDestroy     = "forces destroy"
	annotationForcesInplace     = "forces in-place update"
	annotationForcesDestructive = "forces create/destroy update"
)

// annotate is Nomad's scheduler.Annotate: update counts on groups, count
// changes and whether a task change replaces the allocations or updates
// them in place, decided as the fake scheduler decides it.
func annotate(d *api.JobDiff, ann *api.PlanAnnotations, old, job *api.Job) {
	for _, g := range d.TaskGroups {
		if u, ok := ann.DesiredTGUpdates[g.Name]; ok {
			g.Updates = map[string]uint64{}
			for name, n := range map[string]uint64{"ignore": u.Ignore, "create": u.Place, "migrate": u.Migrate,
				"destroy": u.Stop, "canary": u.Canary, "in-place update": u.InPlaceUpdate,
				"create/destroy update": u.DestructiveUpdate} {
				if n != 0 {
					g.Updates[name] = n
				}
			}
		}
		for _, f := range g.Fields {
			if f.Name != "Count" {
				continue
			}
			o, _ := strconv.Atoi(f.Old)
			n, _ := strconv.Atoi(f.New)
			switch {
			case o < n:
				f.Annotations = append(f.Annotations, annotationForcesCreate)
			case n < o:
				f.Annotations = append(f.Annotations, annotationForcesDestroy)
			}
		}
		for _, t := range g.Tasks {
			switch {
			case t.Type == diffNone:
			case g.Type == diffAdded || t.Type == diffAdded:
				t.Annotations = append(t.Annotations, annotationForcesCreate)
			case g.Type == diffDeleted || t.Type == diffDeleted:
				t.Annotations = append(t.Annotations, annotationForcesDestroy)
			case taskDestructive(old, job, g.Name, t.Name):
				t.Annotations = append(t.Annotations, annotationForcesDestructive)
			default:
				t.Annotations = append(t.Annotations, annotationForcesInplace)
			}
		}
	}
}

// taskDestructive tells whether a change to a task present in both
// versions replaces its allocations (see groupDestructive).
func taskDestructive(old, job *api.Job, group, task string) bool {
	find := func(j *api.Job) *api.Task {
		for _, t := range findGroup(j, group).Tasks {
			if t.Name == task {
				return t
			}
		}
		return nil
	}
	return !equalJSON(old.Meta, job.Meta) || !equalJSON(taskSpec(find(old)), taskSpec(find(job)))
}
