package watchers

import "time"

// Batch is what a watcher hands to the sink at once: the events of the
// Nomad frames received together, or one Consul snapshot, and the cursor
// to persist with them.
type Batch struct {
	Cursor Cursor
	Events []Event
	// Snapshot marks a batch that holds the full current state of its
	// source (Consul health): what it does not mention is healthy.
	Snapshot bool
}

// Cursor is a watcher's position. Nomad can publish several frames with the
// same index, so the position is the index plus how many events at that
// index were consumed: resuming at Index and skipping Offset events repeats
// and loses nothing.
type Cursor struct {
	Name   string // the watcher's name, key of the cursor table
	Index  uint64
	Offset int
}

// behind reports whether a cluster whose latest index is index has not
// reached this position: a position with an offset has read events at its
// index, one without only expects events from its index on.
func (c Cursor) behind(index uint64) bool {
	if c.Offset > 0 {
		return index < c.Index
	}
	return index+1 < c.Index
}

// Event is one fact from a source, stripped of the source's API types so
// that the incident pipeline depends on nothing but this package. Exactly
// one of the pointer fields is set.
type Event struct {
	Source    string // "nomad", "consul"
	Topic     string // Nomad topic ("Allocation", "Node", ...), "Check", or TopicSight
	Type      string // Nomad event type ("AllocationUpdated", "NodeDrain", ...), the check status, or a Sight* type
	Index     uint64 // the source's index of this event
	Namespace string
	Time      time.Time // when the source says it happened; zero if unknown
	// Unchanged, in a snapshot: the same as in the last snapshot its
	// watcher delivered (so the pipeline has applied it already).
	Unchanged bool

	Alloc      *Alloc
	Deployment *Deployment
	Job        *Job
	Node       *Node
	Eval       *Eval
	Check      *Check
	Sight      *Sight
	Backup     *Backup
	Stolon     *Stolon
	Leader     *Leadership
}

// TopicSight is the topic of events about Vigie's own view of a source.
const TopicSight = "Sight"

// Sight event types.
const (
	SightBlind   = "blind"   // Vigie cannot read the source (down, refused, stuck) past the grace period
	SightSeeing  = "seeing"  // it reads the source again (or for the first time since it started)
	SightRewound = "rewound" // the source's history restarted below what Vigie had read
	SightPartial = "partial" // the source answers but leaves out part of what Vigie watches
	SightWhole   = "whole"   // it shows everything (again, or for the first time since it started)
)

// Sight is news about Vigie's watch of a source rather than about the
// infrastructure: it went blind, sees again, or the source's history
// restarted (a rebuilt cluster, a restored snapshot, a new dev agent).
type Sight struct {
	Source  string    // display name, e.g. "Nomad"
	Address string    // where Vigie reads it
	Since   time.Time // blind: when it stopped seeing; seeing: when it saw again
	Reason  string    // blind: why, e.g. "connection refused"; partial: what is left out, and why
	// Rewound: the position Vigie had read up to (From) and the source's
	// current index, where it resumes (To).
	From, To uint64
}

// TopicBackup is the topic of news about Vigie's own backups.
const TopicBackup = "Backup"

// Backup event types.
const (
	BackupRun   = "run"   // a backup or a verification ended
	BackupStale = "stale" // a target has had no good backup for longer than its max_age
	BackupFresh = "fresh" // it has a recent good backup (again, or since Vigie started)
)

// Backup is news of a backup target: a run that ended (Action, Outcome,
// Error) or its freshness (LastGood against MaxAge).
type Backup struct {
	Target   string
	Kind     string // postgres, consul, nomad
	Action   string // backup, verify
	Outcome  string // ok, failed, interrupted
	Trigger  string // schedule, catch-up, or who asked
	RunID    int64
	BackupID string
	Error    string
	Detail   string // a tool's standard error, for the thread
	LastGood time.Time
	MaxAge   time.Duration
}

// Alloc is a Nomad allocation.
type Alloc struct {
	ID                 string
	Name               string // e.g. "web.api[0]"
	Job                string
	Group              string
	NodeID             string
	NodeName           string
	ClientStatus       string // pending, running, complete, failed, lost, unknown
	ClientDescription  string
	DesiredStatus      string // run, stop, evict
	DesiredDescription string
	DeploymentID       string
	Healthy            *bool // deployment health, nil until known
	Canary             bool
	Tasks              []Task
	Rescheduled        bool // a reschedule attempt exists (FollowupEvalID or tracker)
}

// Task is the state of one task of an allocation.
type Task struct {
	Name     string
	State    string // pending, running, dead
	Failed   bool
	Restarts int
	Events   []TaskEvent // oldest first, as Nomad keeps them (the last 10)
	// StderrTail is the end of the task's stderr, fetched by the watcher
	// for failed tasks (empty if it could not be read).
	StderrTail string
}

// TaskEvent is one entry of a task's history.
type TaskEvent struct {
	Type      string // "Terminated", "Not Restarting", "Restarting", "Killed", "Driver Failure", ...
	Time      time.Time
	Message   string // Nomad's DisplayMessage
	ExitCode  int
	Signal    int
	OOMKilled bool
}

// Deployment is a Nomad deployment.
type Deployment struct {
	ID                string
	Job               string
	JobVersion        uint64
	Status            string // running, paused, failed, successful, cancelled, blocked, ...
	StatusDescription string
	Groups            []DeploymentGroup
	// RevertedAs is, for a deployment failed with an auto-revert, the
	// version the job was registered again as (the old spec under a new
	// version), when the same raft entry carried it; 0 otherwise.
	RevertedAs uint64
}

// DeploymentGroup is a task group's progress in a deployment.
type DeploymentGroup struct {
	Name            string
	Desired         int
	DesiredCanaries int
	Placed          int
	Healthy         int
	Unhealthy       int
	AutoRevert      bool
	Promoted        bool
}

// Job is a Nomad job.
type Job struct {
	ID       string
	Type     string // service, batch, system, sysbatch
	Status   string // pending, running, dead
	Stop     bool
	Version  uint64
	ParentID string // set on dispatched and periodic children
	// Purged: the event was a deregistration that carried no job, or the
	// job is gone from the server.
	Purged bool
}

// Node is a Nomad client node.
type Node struct {
	ID          string
	Name        string
	Status      string // initializing, ready, down, disconnected
	Eligibility string // eligible, ineligible
	Draining    bool   // a drain strategy is set
	LastEvent   string // the node's latest event message, e.g. "Node drain complete"
}

// Eval is a Nomad evaluation.
type Eval struct {
	ID                string
	Job               string
	Status            string // pending, complete, failed, blocked, canceled
	TriggeredBy       string
	StatusDescription string
	BlockedEval       string
	Failures          []PlacementFailure // per task group that could not be placed
}

// PlacementFailure says why a task group could not be placed.
type PlacementFailure struct {
	Group              string
	Unplaced           int // allocations not placed: Nomad coalesces the failures after the first
	NodesEvaluated     int
	NodesFiltered      int
	NodesExhausted     int
	NodesInPool        int
	DimensionExhausted map[string]int // e.g. {"memory": 3}
	ConstraintFiltered map[string]int
	ClassExhausted     map[string]int
	QuotaExhausted     []string
}

// Check is a Consul health check as seen in one snapshot.
type Check struct {
	Node        string
	CheckID     string
	Name        string
	Status      string // passing, warning, critical, maintenance
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Notes       string // for a maintenance check, the reason given
	// Maintenance says what maintenance covers the check in the same
	// snapshot: MaintenanceNode (_node_maintenance), MaintenanceService
	// (_service_maintenance:<service ID>), or "" for none.
	Maintenance string
}

// What maintenance covers a check.
const (
	MaintenanceNode    = "node"
	MaintenanceService = "service"
)

// TopicStolon is the topic of a Stolon cluster's state.
const TopicStolon = "Stolon"

// StolonState is the type of every Stolon event: the cluster's state
// changed, or a grace period ran out.
const StolonState = "state"

// Stolon is a Stolon cluster's whole state, as the rules judge it: each
// event carries all of it, so that every rule can fire or resolve.
type Stolon struct {
	Cluster string
	Phase   string // "normal", "initializing"
	// MasterKeeper and MasterDB are the current master ("" if unknown).
	MasterKeeper, MasterDB string
	// PreviousMasterKeeper and PreviousMasterDB are set on the event where
	// the master changed: who it was before.
	PreviousMasterKeeper, PreviousMasterDB string
	Timeline                               uint64 // the master's

	Keepers     []StolonKeeper
	GoneKeepers []string // keepers removed from the cluster since the previous event

	// SyncWanted is how many synchronous standbys the spec asks for (0:
	// synchronous replication is off); SyncStandbys are the keepers the
	// master reports synchronous.
	SyncWanted   int
	SyncStandbys []string

	Sentinels   []string // sentinels alive
	Leader      string   // the sentinel-leader key's value
	LeaderAlive bool     // the leader holds its key and is alive

	Proxies      []StolonProxy
	GoneProxies  []string  // proxies gone since the previous event
	NoProxySince time.Time // when the last proxy went away; zero while one is alive

	MaxLag uint64        // bytes of lag beyond which a standby is too far behind
	Grace  time.Duration // how long lag or a stray proxy lasts before it is an alert

	// Failover: Vigie is failing this cluster over; what it causes is told
	// by the failover's own message.
	Failover bool
	// FenceLeft describes a fence Vigie set and has not lifted (a crash in
	// the middle of a failover, a server it could not reach since); "" if none.
	FenceLeft string
}

// StolonKeeper is a keeper and its PostgreSQL.
type StolonKeeper struct {
	UID       string
	Healthy   bool   // as the sentinel judges it
	DB        string // its DB's UID, "" if it has none
	Role      string // master, standby
	Address   string // host:port of its PostgreSQL
	PGHealthy bool
	Timeline  uint64
	// Lag is how far the WAL it received is behind the master's, in bytes
	// (Stolon's view: received, not replayed); LagSince is when it went
	// above MaxLag, zero while it is within.
	Lag      uint64
	LagSince time.Time
}

// StolonProxy is a stolon-proxy alive.
type StolonProxy struct {
	UID string
	// BehindSince is when it stopped routing to the current master; zero
	// while it follows.
	BehindSince time.Time
}

// TopicLeader is the topic of events about Vigie's own leadership, when
// several instances run ([ha]).
const TopicLeader = "Leader"

// Leader event types.
const (
	LeaderTookOver  = "took-over"  // this instance leads, from the state it restored
	LeaderStateLost = "state-lost" // it leads without the last leader's state
)

// Leadership is news of a takeover: who leads, from what state.
type Leadership struct {
	Instance string
	Term     uint64    // the lock's index at acquisition
	At       time.Time // when the lock was taken
	// From says what state it leads from: a replica (its key, writer and
	// time) or the local data directory.
	From    string
	Refused []string // replicas refused, newest first, with why
	Lost    string   // LeaderStateLost: why the state could not be restored
}
