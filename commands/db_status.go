package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/stolon"
)

// StolonReader is what db status needs.
type StolonReader interface {
	Status(ctx context.Context, cluster string) (*stolon.State, error)
}

// DBStatus shows a Stolon cluster as stolonctl status does, and more.
type DBStatus struct {
	Stolon StolonReader
}

// Spec implements Command.
func (d *DBStatus) Spec() Spec {
	return Spec{Name: "db status", Access: Read, Summary: "a Stolon cluster: master, standbys and their lag, sentinels, proxies", Usage: "[cluster]",
		Help: "Read from the cluster's keys in Consul (what the sentinel and keepers publish): per keeper its health and its PostgreSQL's, " +
			"the WAL it received behind the master's (Stolon's view: received, not replayed), its timeline, whether it is synchronous, " +
			"its generation wanted and applied, and whether Stolon would elect it; the sentinels and which leads; the proxies and whether " +
			"each routes to the master; the cluster's phase.",
		MaxArgs: 1}
}

// Run implements Handler.
func (d *DBStatus) Run(ctx context.Context, req *Request) (render.Node, error) {
	name := ""
	if len(req.Args) == 1 {
		name = req.Args[0]
	}
	st, err := d.Stolon.Status(ctx, name)
	if err != nil {
		return render.Node{}, stolonError(err)
	}
	return RenderStolonStatus(st), nil
}

// stolonError turns an unknown cluster into a usage error.
func stolonError(err error) error {
	var unknown *stolon.UnknownClusterError
	if errors.As(err, &unknown) {
		return Usagef("%s", unknown.Error())
	}
	return err
}

// RenderStolonStatus renders a cluster's state: a headline, one row per
// keeper (the master's first), then sentinels and proxies.
func RenderStolonStatus(st *stolon.State) render.Node {
	cd := st.Data
	master := cd.MasterDB()
	var out []render.Node
	head := fmt.Sprintf("Stolon %s: phase %s", st.Name, cd.Cluster.Status.Phase)
	if cd.Cluster.Status.Phase != "normal" {
		head = "⚠️ " + head
	}
	if master != nil {
		head += fmt.Sprintf(", master %s (db %s) on timeline %d", master.Spec.KeeperUID, master.UID, master.Status.TimelineID)
	} else {
		head = "⚠️ " + head + ", no master known"
	}
	spec := cd.Cluster.Spec
	sync := "off"
	if spec.SynchronousReplication {
		sync = fmt.Sprintf("on (%d wanted)", spec.MinSync())
	}
	head += fmt.Sprintf("; synchronous replication %s; maxStandbyLag %s.", sync, render.Bytes(int64(spec.MaxLag())))
	out = append(out, render.Line(render.Text(head)))

	electable := map[string]string{}
	for _, c := range st.Candidates() {
		electable[c.DB.UID] = "✅"
		if c.Reason != "" {
			electable[c.DB.UID] = "❌ " + c.Reason
		}
	}
	var syncDBs []string
	if master != nil {
		syncDBs = master.Status.SynchronousStandbys
	}
	var rows [][]string
	keepers := cd.KeeperUIDs()
	if master != nil { // the master's keeper first
		for i, k := range keepers {
			if k == master.Spec.KeeperUID {
				keepers = append(append([]string{k}, keepers[:i]...), keepers[i+1:]...)
				break
			}
		}
	}
	for _, uid := range keepers {
		k := cd.Keepers[uid]
		_, alive := st.KeepersInfo[uid]
		row := []string{uid, "—", mark(k.Status.Healthy), "—", "—", "—", "—", "—", "—", "—"}
		if !alive {
			row[2] += " (no info key)"
		}
		if k.Status.ForceFail {
			row[2] += " forceFail"
		}
		if db := cd.DBOf(uid); db != nil {
			row[1], row[3] = db.Spec.Role, mark(db.Status.Healthy)
			if a := db.Address(); a != "" {
				row[4] = a
			}
			if db.Spec.Role == "standby" {
				switch lag, known := st.Lag(db); {
				case !known:
					row[5] = "not reported"
				case lag > st.MaxLag:
					row[5] = render.Bytes(int64(lag)) + " ⚠️"
				default:
					row[5] = render.Bytes(int64(lag))
				}
				row[9] = electable[db.UID]
			}
			if db.Status.TimelineID != 0 {
				row[6] = strconv.FormatUint(db.Status.TimelineID, 10)
			}
			if slices.Contains(syncDBs, db.UID) {
				row[7] = "yes"
			} else if db.Spec.Role == "standby" {
				row[7] = "no"
			}
			row[8] = fmt.Sprintf("%d/%d", db.Generation, db.Status.CurrentGeneration)
		}
		rows = append(rows, row)
	}
	out = append(out, render.Table([]string{"KEEPER", "ROLE", "KEEPER OK", "PG OK", "ADDRESS", "LAG", "TL", "SYNC", "GEN", "ELECTABLE"}, rows...))

	var sentinels []string
	for _, s := range st.Sentinels {
		if s == st.Leader && st.LeaderAlive() {
			s += " (leader)"
		}
		sentinels = append(sentinels, s)
	}
	switch {
	case len(sentinels) == 0:
		out = append(out, render.Line(render.Text("⚠️ Sentinels: none alive; nobody would elect a new master.")))
	case !st.LeaderAlive():
		out = append(out, render.Line(render.Text("⚠️ Sentinels: "+strings.Join(sentinels, ", ")+"; none leads.")))
	default:
		out = append(out, render.Line(render.Text("Sentinels: "+strings.Join(sentinels, ", ")+".")))
	}
	var proxies []string
	stray := false
	for uid, p := range st.Proxies {
		if st.ProxyFollows(uid) {
			proxies = append(proxies, uid+" ✅")
		} else {
			stray = true
			proxies = append(proxies, fmt.Sprintf("%s ⚠️ not routing to the master (generation %d of %d)", uid, p.Generation, cd.Proxy.Generation))
		}
	}
	slices.Sort(proxies)
	switch {
	case len(proxies) == 0:
		out = append(out, render.Line(render.Text("⚠️ Proxies: none alive; clients cannot reach the master through a proxy.")))
	case stray:
		out = append(out, render.Line(render.Text("⚠️ Proxies: "+strings.Join(proxies, ", ")+".")))
	default:
		out = append(out, render.Line(render.Text("Proxies: "+strings.Join(proxies, ", ")+", routing to the master.")))
	}
	return render.Group(out...)
}

func mark(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}
