package backups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/internal/pgserver"
	"github.com/vigie/vigie/store"
)

// Target kinds.
const (
	KindPostgres = "postgres"
	KindConsul   = "consul"
	KindNomad    = "nomad"
)

// Run actions, as recorded and reported.
const (
	ActionBackup  = "backup"
	ActionVerify  = "verify"
	ActionRestore = "restore"
	ActionPrune   = "prune"
)

// Target is one thing Vigie backs up.
type Target struct {
	Name           string
	Kind           string
	Schedule       string        // cron spec; "" only on demand
	VerifySchedule string        // cron spec; "" only on demand
	MaxAge         time.Duration // stale without a good backup this long; 0: never stale
	Retention      Retention

	// postgres
	Databases []string // names, or ["*"]
	Tools     Tools
	Postgres  pgserver.Server
	Verify    *pgserver.Server // where restores are verified; nil: checksums only

	// consul, nomad
	Cluster Cluster
}

// Config configures the service.
type Config struct {
	Targets []Target
	Storage *Storage
	Prefix  string        // of every key Vigie writes
	WorkDir string        // scratch space in the data directory, emptied at start
	Version string        // Vigie's, written in manifests
	Timeout time.Duration // longest one run may take
}

// RunStore records runs.
type RunStore interface {
	StartBackupRun(ctx context.Context, target, action, trigger, backupID string) (int64, error)
	SetBackupUpload(ctx context.Context, id int64, key string) error
	FinishBackupRun(ctx context.Context, r store.BackupRun) error
	InterruptRunning(ctx context.Context) ([]store.BackupRun, error)
	UploadsToAbort(ctx context.Context) ([]store.BackupRun, error)
	UploadAborted(ctx context.Context, id int64) error
	LastBackupRuns(ctx context.Context, target, action string, limit int) ([]store.BackupRun, error)
}

// Observer is told of each run's end, for the metrics.
type Observer interface {
	ObserveBackupRun(target, action, outcome string, took time.Duration)
	ObserveLastGoodBackup(target string, ended time.Time, took time.Duration, stored int64)
}

// Service runs backups, verifications, restores and prunes, one per
// target at a time, records them, and lists what S3 holds.
type Service struct {
	cfg      Config
	targets  map[string]*Target
	store    RunStore
	clock    clock.Clock
	layout   layout
	catalog  *catalog
	observer Observer
	started  time.Time // when this process began watching

	mu       sync.Mutex
	running  map[string]*activeRun
	lastID   map[string]string
	finished chan struct{} // wakes the event source when a run ends
}

// activeRun is a run in progress.
type activeRun struct {
	action, trigger string
	started         time.Time
	transfer        *transfer
	stage           string
}

// New builds the service; it contacts nothing.
func New(cfg Config, st RunStore, clk clock.Clock, obs Observer) (*Service, error) {
	s := &Service{
		cfg: cfg, targets: map[string]*Target{}, store: st, clock: clock.OrSystem(clk), observer: obs,
		layout: layout{prefix: cfg.Prefix}, running: map[string]*activeRun{}, lastID: map[string]string{},
		finished: make(chan struct{}, 1),
	}
	s.started = s.clock.Now()
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		if _, dup := s.targets[t.Name]; dup {
			return nil, fmt.Errorf("backup target %q is defined twice", t.Name)
		}
		s.targets[t.Name] = t
	}
	if len(cfg.Targets) > 0 && cfg.Storage == nil {
		return nil, errors.New("backup targets need a storage ([s3])")
	}
	s.catalog = newCatalog(cfg.Storage, s.layout)
	return s, nil
}

// Targets returns the targets, in configuration order.
func (s *Service) Targets() []Target { return s.cfg.Targets }

// Storage is where backups are kept; nil without targets.
func (s *Service) Storage() *Storage { return s.cfg.Storage }

// Target returns a target by name, or an error listing them.
func (s *Service) Target(name string) (*Target, error) {
	if t, ok := s.targets[name]; ok {
		return t, nil
	}
	names := make([]string, 0, len(s.cfg.Targets))
	for _, t := range s.cfg.Targets {
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return nil, errors.New("no backup target is configured ([[backups.targets]])")
	}
	return nil, &UnknownTargetError{Name: name, Known: names}
}

// UnknownTargetError names a target that is not configured.
type UnknownTargetError struct {
	Name  string
	Known []string
}

func (e *UnknownTargetError) Error() string {
	return fmt.Sprintf("no backup target %q (targets: %v)", e.Name, e.Known)
}

// BusyError says what already runs on a target.
type BusyError struct {
	Target, Action, Trigger string
	Since                   time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%s of %s is already running (started by %s, %s ago): one run per target at a time",
		e.Action, e.Target, e.Trigger, e.Since.Round(time.Second))
}

func (e *BusyError) Unwrap() error { return errBusy }

// begin claims a target for a run; end releases it.
func (s *Service) begin(target, action, trigger string) (*activeRun, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if r, busy := s.running[target]; busy {
		return nil, &BusyError{Target: target, Action: r.action, Trigger: r.trigger, Since: now.Sub(r.started)}
	}
	r := &activeRun{action: action, trigger: trigger, started: now, transfer: &transfer{}}
	s.running[target] = r
	return r, nil
}

func (s *Service) end(target string) {
	s.mu.Lock()
	delete(s.running, target)
	s.mu.Unlock()
	s.wake()
}

// wake tells the event source that runs ended.
func (s *Service) wake() {
	select {
	case s.finished <- struct{}{}:
	default:
	}
}

// Running says what runs on a target now, if anything.
func (s *Service) Running(target string) (action, trigger string, since time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.running[target]
	if !ok {
		return "", "", time.Time{}, false
	}
	return r.action, r.trigger, r.started, true
}

// Finished wakes whoever follows the runs when one ends.
func (s *Service) Finished() <-chan struct{} { return s.finished }

// Progress is how a run goes, for a live message.
type Progress struct {
	Target, Action string
	Stage          string // what it does now: "dumping app", "uploading", "restoring"
	Raw, Stored    int64  // bytes read from the source and stored so far
	Elapsed        time.Duration
}

// follow reports a run's progress every interval until stop is called.
func (s *Service) follow(target string, r *activeRun, report func(Progress), every time.Duration) (stop func()) {
	if report == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() { // owned by the run: stop waits for it
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				report(s.progress(target, r))
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (s *Service) progress(target string, r *activeRun) Progress {
	s.mu.Lock()
	stage := r.stage
	s.mu.Unlock()
	return Progress{Target: target, Action: r.action, Stage: stage, Raw: r.transfer.raw.n.Load(), Stored: r.transfer.stored.n.Load(),
		Elapsed: s.clock.Now().Sub(r.started)}
}

func (s *Service) setStage(r *activeRun, stage string) {
	s.mu.Lock()
	r.stage = stage
	s.mu.Unlock()
}

// progressEvery is how often a run reports its progress.
var progressEvery = 5 * time.Second

// Recover cleans up after a previous process: it ends the runs it left
// running as interrupted and aborts their uploads, aborts any upload of
// Vigie's prefix older than a day (a lost data directory), and empties
// the work directory.
func (s *Service) Recover(ctx context.Context) error {
	log := zerolog.Ctx(ctx)
	if err := os.RemoveAll(s.cfg.WorkDir); err != nil {
		return fmt.Errorf("empty the backup work directory: %w", err)
	}
	if err := os.MkdirAll(s.cfg.WorkDir, 0o700); err != nil {
		return fmt.Errorf("backup work directory: %w", err)
	}
	interrupted, err := s.store.InterruptRunning(ctx)
	if err != nil {
		return fmt.Errorf("record interrupted backup runs: %w", err)
	}
	for _, r := range interrupted {
		log.Warn().Str("target", r.Target).Str("action", r.Action).Time("started", r.Started).Msg("A backup run was interrupted when Vigie stopped")
	}
	if len(interrupted) > 0 {
		s.wake() // the event source tells the pipeline about them
	}
	err = s.AbortLeftUploads(ctx)
	stale, serr := s.cfg.Storage.AbortStale(ctx, s.cfg.Prefix+"/", s.clock.Now().Add(-24*time.Hour))
	for _, key := range stale {
		log.Info().Str("key", key).Msg("Aborted an upload older than a day")
	}
	return errors.Join(err, serr)
}

// AbortLeftUploads aborts the uploads that runs left behind: killed
// mid-upload, or failed while S3 could not take the abort either.
func (s *Service) AbortLeftUploads(ctx context.Context) error {
	runs, err := s.store.UploadsToAbort(ctx)
	if err != nil {
		return fmt.Errorf("read the uploads to abort: %w", err)
	}
	var errs []error
	for _, r := range runs {
		if err := s.cfg.Storage.AbortUploads(ctx, r.UploadKey); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.store.UploadAborted(ctx, r.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		zerolog.Ctx(ctx).Info().Str("key", r.UploadKey).Str("target", r.Target).Msg("Aborted the upload of a run that did not end it")
	}
	return errors.Join(errs...)
}

// runDir is a fresh scratch directory for one run, in the work directory.
func (s *Service) runDir(target, action string) (string, error) {
	if err := os.MkdirAll(s.cfg.WorkDir, 0o700); err != nil {
		return "", err
	}
	return os.MkdirTemp(s.cfg.WorkDir, target+"-"+action+"-")
}

// record finishes a run in the store and the metrics.
func (s *Service) record(ctx context.Context, run store.BackupRun, err error, took time.Duration) {
	run.Outcome = store.RunOK
	if err != nil {
		run.Outcome, run.Error = store.RunFailed, err.Error()
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			run.Outcome = store.RunInterrupted
		}
		var tool *ToolError
		if errors.As(err, &tool) {
			run.Detail = tool.Detail()
		}
		var pending *PendingUploadError
		if errors.As(err, &pending) {
			run.UploadKey = pending.Key
		}
	}
	if ferr := s.store.FinishBackupRun(context.WithoutCancel(ctx), run); ferr != nil {
		zerolog.Ctx(ctx).Error().Err(ferr).Str("target", run.Target).Msg("Cannot record the end of a backup run")
	}
	if s.observer != nil {
		s.observer.ObserveBackupRun(run.Target, run.Action, run.Outcome, took)
	}
}

// List returns a target's backups as S3 holds them, oldest first.
func (s *Service) List(ctx context.Context, target string) ([]*Backup, error) {
	if _, err := s.Target(target); err != nil {
		return nil, err
	}
	backups, _, err := s.catalog.list(ctx, target)
	return backups, err
}

// workPath is a file in a run's directory.
func workPath(dir, name string) string { return filepath.Join(dir, name) }
