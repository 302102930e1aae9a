// Command vigie is the Vigie ChatOps bot: it watches Nomad and Consul and
// runs operators' commands from a Matrix room, or from the terminal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `Vigie keeps watch over Nomad, Consul and friends from a Matrix room.

Usage:
  vigie run          [--config FILE]   connect to Matrix and serve the rooms
  vigie console      [--config FILE] [--as USER]
                                       the same commands over the terminal (stdin/stdout)
  vigie check-config [--config FILE]   validate the configuration, list every problem
  vigie doctor       [--config FILE] [--json] [--timeout 10s] [--user USER]
                                       connect to everything the configuration names,
                                       one line per check; exit 1 if something is broken
  vigie version                        print the version

Without --config (or VIGIE_CONFIG), built-in defaults apply: Nomad at
127.0.0.1:4646, Consul at 127.0.0.1:8500, state in ./vigie-data.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main with its world injected, for tests; it returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	clk := clock.System // the process's one clock
	started := clk.Now()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("vigie "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("VIGIE_CONFIG"), "configuration file (TOML); default: built-in defaults")
	as := ""
	if cmd == "console" {
		fs.StringVar(&as, "as", "", "Matrix user ID the commands come from (default: console.sender)")
	}
	var doctorOpts *doctorOptions
	if cmd == "doctor" {
		doctorOpts = doctorFlags(fs)
	}
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "vigie", versionString())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	case "run", "console", "check-config", "doctor":
	default:
		fmt.Fprintf(stderr, "vigie: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vigie %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}

	cfg, err := config.Load(*configPath)
	if cmd == "check-config" {
		return checkConfig(cfg, err, *configPath, clk.Now(), stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vigie: invalid configuration:\n%v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd == "doctor" {
		return runDoctor(ctx, cfg, doctorOpts, stdout, stderr)
	}
	switch cmd {
	case "run":
		err = runMatrix(ctx, cfg, clk, started, stderr)
	case "console":
		err = runConsole(ctx, cfg, clk, as, stdin, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vigie %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// checkConfig reports every problem of a configuration in one run: those
// of the file, the names it uses (rules, commands), and, when the file is
// otherwise sound, whatever building the objects "vigie run" builds from
// it would refuse (the directory, the policy, TLS), and a pg_dump older
// than the PostgreSQL server it backs up (the only server contacted; one
// out of reach is noted, not a problem). now dates the schedules' next
// runs.
func checkConfig(cfg *config.Config, err error, path string, now time.Time, stdout, stderr io.Writer) int {
	var problems *config.Errors
	var ps []config.Problem
	switch {
	case errors.As(err, &problems):
		ps = problems.Problems
	case err != nil:
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg != nil { // valid TOML
		ps = append(ps, alertProblems(cfg)...)
		ps = append(ps, policyProblems(cfg)...)
		// A file that configures Matrix must be complete enough for "vigie run".
		if cfg.Matrix.Homeserver != "" || cfg.Matrix.UserID != "" {
			ps = append(ps, cfg.MatrixProblems()...)
		}
		if len(ps) == 0 {
			ps = buildProblems(cfg)
		}
	}
	var notes []string
	if len(ps) == 0 {
		ps, notes = pgDumpProblems(context.Background(), cfg)
	}
	if len(ps) > 0 {
		fmt.Fprintf(stderr, "%s: %d problem(s):\n%v\n", displayPath(path), len(ps), &config.Errors{Problems: ps})
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n%s%s", displayPath(path), cfg.Summary(), cfg.BackupSummary(now))
	for _, n := range notes {
		fmt.Fprintln(stdout, "note: "+n)
	}
	return 0
}

func displayPath(path string) string {
	if path == "" {
		return "built-in defaults"
	}
	return path
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
