package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/doctor"
)

// doctorOptions are the flags of "vigie doctor".
type doctorOptions struct {
	json    bool
	timeout time.Duration
	user    string
}

// doctorFlags adds the flags of "vigie doctor" to fs.
func doctorFlags(fs *flag.FlagSet) *doctorOptions {
	o := &doctorOptions{}
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of a table")
	fs.DurationVar(&o.timeout, "timeout", doctor.DefaultTimeout, "how long each check may take")
	fs.StringVar(&o.user, "user", "", "Matrix user whose LDAP entry and groups are checked (default: the first user found)")
	return o
}

// runDoctor connects to everything cfg names and prints one line per
// check; it returns 1 when something Vigie needs is broken.
func runDoctor(ctx context.Context, cfg *config.Config, o *doctorOptions, stdout, stderr io.Writer) int {
	nomadTLS, consulTLS, err := serverTLS(cfg)
	if err != nil {
		// The config line reports it; the servers are tried with the
		// system's roots meanwhile.
		nomadTLS, consulTLS = nil, nil
	}
	s3TLS, err := cfg.S3.TLS.Client()
	if err != nil {
		s3TLS = nil
	}
	plan := doctor.Checks(cfg, doctor.Env{
		NomadTLS: nomadTLS, ConsulTLS: consulTLS, S3TLS: s3TLS,
		Stolon:         newStolon(cfg, clock.System, nil, consulTLS).Clusters(),
		ConfigProblems: func() []config.Problem { return doctorConfigProblems(cfg) },
		User:           o.user,
	})
	defer plan.Close(context.WithoutCancel(ctx))

	opts := doctor.Options{Timeout: o.timeout, Secrets: doctor.Secrets(cfg)}
	var outcomes []doctor.Outcome
	if o.json {
		outcomes = doctor.Run(ctx, plan.Checks, opts, nil)
		if err := doctor.WriteJSON(stdout, outcomes); err != nil {
			fmt.Fprintf(stderr, "vigie doctor: %v\n", err)
			return 1
		}
	} else {
		table := doctor.NewTable(stdout, plan.Checks)
		outcomes = doctor.Run(ctx, plan.Checks, opts, table.Row)
		fmt.Fprintf(stdout, "\n%s\n", doctor.Summary(outcomes))
	}
	if ctx.Err() != nil {
		return 1 // interrupted: the results are not a verdict
	}
	return doctor.ExitCode(outcomes)
}

// doctorConfigProblems are what "vigie check-config" finds in a
// configuration that loaded, short of contacting pg_dump's servers (the
// doctor does that itself).
func doctorConfigProblems(cfg *config.Config) []config.Problem {
	ps := append(alertProblems(cfg), policyProblems(cfg)...)
	if cfg.Matrix.Homeserver != "" || cfg.Matrix.UserID != "" {
		ps = append(ps, cfg.MatrixProblems()...)
	}
	if len(ps) == 0 {
		ps = buildProblems(cfg)
	}
	return ps
}
