package backups

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/vigie/vigie/config"
)

// Triggers of runs Vigie starts by itself.
const (
	TriggerSchedule = "schedule"
	TriggerCatchUp  = "catch-up"
)

// Next returns when a schedule fires next after now; zero for none.
func Next(spec string, now time.Time) time.Time {
	if spec == "" {
		return time.Time{}
	}
	s, err := config.CronParser.Parse(spec)
	if err != nil {
		return time.Time{}
	}
	return s.Next(now)
}

// missed says whether a schedule fired between last and now: a run due
// while Vigie was down. Without a last run nothing was missed.
func missed(spec string, last, now time.Time) bool {
	if spec == "" || last.IsZero() {
		return false
	}
	next := Next(spec, last)
	return !next.IsZero() && !next.After(now)
}

// Scheduler runs backups, verifications and the report on their cron
// schedules (UTC unless a spec says CRON_TZ=), never two of one job at a
// time, and catches up at start on what was due while Vigie was down:
// once, not once per missed slot.
type Scheduler struct {
	svc    *Service
	report Job // nil: no report
}

// Job is the report, run on its schedule; LastRun tells the catch-up
// when it last ran.
type Job struct {
	Spec    string
	Run     func(ctx context.Context) error
	LastRun func(ctx context.Context) (time.Time, error)
}

// NewScheduler schedules svc's targets, and report if its Spec is set.
func NewScheduler(svc *Service, report Job) *Scheduler {
	return &Scheduler{svc: svc, report: report}
}

// Run schedules until ctx is done, then waits for the runs in progress
// (cancelled with ctx) to end.
func (sc *Scheduler) Run(ctx context.Context) error {
	log := zerolog.Ctx(ctx)
	c := cron.New(cron.WithParser(config.CronParser), cron.WithLocation(time.UTC), cron.WithLogger(cronLogger{log}),
		cron.WithChain(cron.Recover(cronLogger{log}), cron.SkipIfStillRunning(cronLogger{log})))
	var catchUp []func()
	add := func(spec, what string, run func(trigger string), last func() (time.Time, error)) error {
		if spec == "" {
			return nil
		}
		if _, err := c.AddFunc(spec, func() { run(TriggerSchedule) }); err != nil {
			return fmt.Errorf("%s: schedule %q: %w", what, spec, err)
		}
		l, err := last()
		if err != nil {
			log.Warn().Err(err).Str("job", what).Msg("Cannot tell whether a run was missed; waiting for the schedule")
			return nil
		}
		if missed(spec, l, sc.svc.clock.Now()) {
			log.Info().Str("job", what).Time("last", l).Msg("A scheduled run was missed while Vigie was down: running it now")
			catchUp = append(catchUp, func() { run(TriggerCatchUp) })
		}
		return nil
	}
	for _, t := range sc.svc.Targets() {
		name := t.Name
		if err := add(t.Schedule, "backup of "+name, func(trigger string) { sc.backup(ctx, name, trigger) },
			func() (time.Time, error) { return sc.lastRun(ctx, name, ActionBackup) }); err != nil {
			return err
		}
		if err := add(t.VerifySchedule, "verification of "+name, func(trigger string) { sc.verify(ctx, name, trigger) },
			func() (time.Time, error) { return sc.lastRun(ctx, name, ActionVerify) }); err != nil {
			return err
		}
	}
	if sc.report.Spec != "" {
		if err := add(sc.report.Spec, "backup report", func(string) {
			if err := sc.report.Run(ctx); err != nil {
				log.Error().Err(err).Msg("Cannot post the backup report")
			}
		}, func() (time.Time, error) { return sc.report.LastRun(ctx) }); err != nil {
			return err
		}
	}
	c.Start()
	var catching sync.WaitGroup
	for _, run := range catchUp {
		catching.Go(run) // as cron runs its jobs; each target's lock keeps them apart
	}
	<-ctx.Done()
	<-c.Stop().Done()
	catching.Wait()
	return nil
}

// lastRun is when a target's action last ran by itself or was asked, or,
// with no record (a fresh data directory), when its newest backup or
// verification in S3 started.
func (sc *Scheduler) lastRun(ctx context.Context, target, action string) (time.Time, error) {
	runs, err := sc.svc.store.LastBackupRuns(ctx, target, action, 1)
	if err != nil {
		return time.Time{}, err
	}
	if len(runs) > 0 {
		return runs[0].Started, nil
	}
	backups, _, err := sc.svc.catalog.list(ctx, target)
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	for _, b := range backups {
		at := b.started()
		if action == ActionVerify {
			at = time.Time{}
			if b.Verification != nil {
				at = b.Verification.At
			}
		}
		if at.After(last) {
			last = at
		}
	}
	return last, nil
}

// backup runs a backup, then applies the retention.
func (sc *Scheduler) backup(ctx context.Context, target, trigger string) {
	log := zerolog.Ctx(ctx).With().Str("target", target).Str("trigger", trigger).Logger()
	if _, err := sc.svc.Backup(ctx, target, trigger, nil); err != nil {
		if errors.Is(err, errBusy) {
			log.Info().Err(err).Msg("Scheduled backup skipped")
		}
		return // the run is recorded; the incident says the rest
	}
	plan, err := sc.svc.PlanPrune(ctx, target)
	if err == nil {
		_, err = sc.svc.Prune(ctx, plan, trigger)
	}
	if err != nil {
		log.Error().Err(err).Msg("Cannot apply the retention")
	}
}

func (sc *Scheduler) verify(ctx context.Context, target, trigger string) {
	if _, err := sc.svc.Verify(ctx, target, "", trigger, nil); errors.Is(err, errBusy) {
		zerolog.Ctx(ctx).Info().Err(err).Str("target", target).Msg("Scheduled verification skipped")
	}
}

// cronLogger hands cron's messages to zerolog.
type cronLogger struct{ log *zerolog.Logger }

func (l cronLogger) Info(msg string, kv ...any) {
	l.log.Debug().Fields(kv).Msg("cron: " + msg)
}

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error().Err(err).Fields(kv).Msg("cron: " + msg)
}
