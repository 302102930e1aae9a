package doctor

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/stolon"
)

// Env is what the caller builds from the configuration as "vigie run"
// does, so that the doctor checks the same settings.
type Env struct {
	NomadTLS, ConsulTLS, S3TLS *tls.Config
	Stolon                     []*stolon.Cluster // the [[stolon.clusters]], built as the service builds them
	// ConfigProblems are what "vigie check-config" finds beyond loading
	// (unknown rule and command names, an LDAP or TLS setting refused).
	ConfigProblems func() []config.Problem
	// User is the Matrix user whose LDAP entry and groups are checked;
	// "" takes the first user under ldap.user_base_dn.
	User string
}

// Checks are the checks of a configuration, in the order of the report.
// The plan must be closed after running them (it logs out a temporary
// Matrix device, closes LDAP connections).
func Checks(cfg *config.Config, env Env) *Plan {
	p := &Plan{}
	vigieChecks(p, cfg, env)
	matrixChecks(p, cfg)
	nomadChecks(p, cfg, env.NomadTLS)
	consulChecks(p, cfg, env.ConsulTLS)
	stolonChecks(p, cfg, env.Stolon)
	ldapChecks(p, cfg, env.User)
	s3Checks(p, cfg, env.S3TLS)
	postgresChecks(p, cfg)
	return p
}

// Secrets are the configuration's secrets, for Options.Secrets.
func Secrets(cfg *config.Config) []string {
	all := []config.Secret{cfg.Matrix.AccessToken, cfg.Matrix.Password, cfg.Matrix.PickleKey,
		cfg.Nomad.Token, cfg.Consul.Token, cfg.LDAP.BindPassword,
		cfg.S3.AccessKeyID, cfg.S3.SecretAccessKey, cfg.Garage.AdminToken}
	for _, t := range cfg.Backups.Targets {
		all = append(all, t.Token, t.Postgres.Password, t.Verify.Password)
	}
	for _, c := range cfg.Stolon.Clusters {
		all = append(all, c.Token, c.Postgres.Password)
	}
	var out []string
	for _, s := range all {
		if s.IsSet() {
			out = append(out, s.Reveal())
		}
	}
	return out
}

// vigieChecks are Vigie's own: the configuration and the data directory.
func vigieChecks(p *Plan, cfg *config.Config, env Env) {
	const comp = "vigie"
	p.Add(Check{Component: comp, Name: "config", Run: func(context.Context) Result {
		file := cfg.File
		if file == "" {
			file = "built-in defaults"
		}
		if env.ConfigProblems == nil {
			return OK("%s loaded", file)
		}
		ps := env.ConfigProblems()
		if len(ps) == 0 {
			return OK("%s is valid", file)
		}
		var msgs []string
		for _, pr := range ps {
			msgs = append(msgs, pr.String())
		}
		return Fail("%d problem(s): %s (vigie check-config lists them)", len(ps), strings.Join(msgs, "; "))
	}})
	p.Add(Check{Component: comp, Name: "data dir", Run: func(context.Context) Result { return dataDirCheck(cfg.DataDir) }})
}

// dataDirCheck checks that the data directory can be written, or
// created, and is private (it holds the Matrix access token).
func dataDirCheck(dir string) Result {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		parent := filepath.Dir(dir)
		for {
			if _, err := os.Stat(parent); err == nil || parent == filepath.Dir(parent) {
				break
			}
			parent = filepath.Dir(parent)
		}
		if err := writable(parent); err != nil {
			return Fail("%s does not exist and cannot be created: %v", dir, err)
		}
		return OK("%s does not exist yet: it is created at the first start", dir)
	}
	if err != nil {
		return Fail("%v", err)
	}
	if !fi.IsDir() {
		return Fail("data_dir %s is not a directory", dir)
	}
	if err := writable(dir); err != nil {
		return Fail("%s cannot be written: %v (run Vigie as the directory's owner)", dir, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Warn("%s is open to other users (%s) while it holds the Matrix session: chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	return OK("%s is writable and private", dir)
}

// writable creates and removes a file in dir.
func writable(dir string) error {
	f, err := os.CreateTemp(dir, ".vigie-doctor-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
