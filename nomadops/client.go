// Package nomadops is the Nomad operations layer of the chat commands:
// cluster and job status, task logs, image and jobspec deployments with a
// preview, rollbacks, scaling, rolling restarts and canary promotion, over
// the official API client. Results are small structs the commands render;
// the API's types stay inside.
//
// Every change has a preview step (PlanImage, PlanJobspec, PlanRollback,
// PlanScale) whose result is applied as previewed or not at all: the
// apply enforces the job's modify index or version, and a job changed
// meanwhile gives a *JobChangedError (errors.Is ErrJobChanged).
package nomadops

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/vigie/vigie/internal/suggest"
	"github.com/vigie/vigie/internal/tlserr"
)

// Config says which Nomad to talk to. Nothing is read from the NOMAD_*
// environment variables here: the config package resolves those.
type Config struct {
	Address   string // default http://127.0.0.1:4646
	Region    string
	Namespace string      // default: the server's default namespace
	Token     string      // ACL token; never logged nor shown
	TLS       *tls.Config // for https addresses; nil: the system's CAs, no client certificate
	// PollInterval paces retries after errors and waits on servers that
	// answer blocking queries at once. Default 1s.
	PollInterval time.Duration
}

// String describes the config without the token.
func (c Config) String() string {
	token := "no token"
	if c.Token != "" {
		token = "token set"
	}
	return fmt.Sprintf("nomad %s, region %q, namespace %q, %s", c.Address, c.Region, c.Namespace, token)
}

// Client runs Nomad operations. It is safe for concurrent use.
type Client struct {
	api  *api.Client
	addr string
	poll time.Duration
}

const defaultAddress = "http://127.0.0.1:4646"

// New makes a client; it does not contact Nomad.
func New(cfg Config) (*Client, error) {
	if cfg.Address == "" {
		cfg.Address = defaultAddress
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	u, err := url.Parse(cfg.Address)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("nomad address %q is not a URL like %s", cfg.Address, defaultAddress)
	}
	// Our own HTTP client: the API's default one would read NOMAD_CACERT and
	// friends, and NOMAD_SKIP_VERIFY, behind the config's back.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = cfg.TLS.Clone() // its own: HTTP/2 set-up writes into it
	c, err := api.NewClient(&api.Config{Address: cfg.Address, Region: cfg.Region, Namespace: cfg.Namespace, SecretID: cfg.Token,
		HttpClient: &http.Client{Transport: transport}})
	if err != nil {
		return nil, fmt.Errorf("nomad client for %s: %w", cfg.Address, err)
	}
	return &Client{api: c, addr: cfg.Address, poll: cfg.PollInterval}, nil
}

// Errors the operations return, to test with errors.Is.
var (
	// ErrNotFound: a job, group, task, allocation or version does not
	// exist; the error is a *NotFoundError.
	ErrNotFound = errors.New("not found")
	// ErrJobChanged: the job changed between a preview and its apply; the
	// error is a *JobChangedError.
	ErrJobChanged = errors.New("job changed since the preview")
	// ErrNoChange: the change asked for is already in place.
	ErrNoChange = errors.New("nothing to change")
	// ErrNoStableVersion: no stable version to roll back to.
	ErrNoStableVersion = errors.New("no stable version to roll back to")
	// ErrNothingToPromote: no running deployment waits for promotion.
	ErrNothingToPromote = errors.New("nothing to promote")
)

// NotFoundError names what was not found and the closest existing name.
type NotFoundError struct {
	Kind       string // "job", "task group", "task", "allocation", "version"
	Name       string
	Job        string // the job looked in, for groups, tasks and versions
	Suggestion string // the closest existing name, if one is close
	Known      []string
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("%s %q not found", e.Kind, e.Name)
	if e.Job != "" {
		msg = fmt.Sprintf("%s %q not found in job %s", e.Kind, e.Name, e.Job)
	}
	switch {
	case e.Suggestion != "":
		msg += fmt.Sprintf("; did you mean %q?", e.Suggestion)
	case len(e.Known) > 0 && len(e.Known) <= 10:
		msg += " (" + strings.Join(e.Known, ", ") + ")"
	}
	return msg
}

func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(kind, name, job string, known []string) *NotFoundError {
	e := &NotFoundError{Kind: kind, Name: name, Job: job, Known: known}
	e.Suggestion, _ = suggest.Closest(name, known)
	return e
}

// JobChangedError tells what changed between a preview and its apply.
type JobChangedError struct {
	JobID string
	What  string // "modify index" or "version"
	Was   uint64 // at the preview
	Now   uint64 // at the apply; 0 when Nomad did not say
}

func (e *JobChangedError) Error() string {
	now := "?"
	if e.Now != 0 {
		now = fmt.Sprint(e.Now)
	}
	return fmt.Sprintf("job %s changed since the preview (%s %d → %s); run the command again", e.JobID, e.What, e.Was, now)
}

func (e *JobChangedError) Is(target error) bool { return target == ErrJobChanged }

// ResponseError is an error answer from Nomad.
type ResponseError struct {
	Op      string // what was asked, e.g. "read job web"
	Status  int
	Message string // Nomad's text
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("nomad: %s: %d %s", e.Op, e.Status, e.Message)
}

// fail turns an API client error into one of ours: an answer becomes a
// *ResponseError, a transport failure names the address.
func (c *Client) fail(op string, err error) error {
	var ue api.UnexpectedResponseError
	switch {
	case errors.As(err, &ue) && ue.HasStatusCode():
		return &ResponseError{Op: op, Status: ue.StatusCode(), Message: strings.TrimSpace(ue.Body())}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("nomad: %s: %w", op, err)
	}
	return fmt.Errorf("Nomad at %s is unreachable (%s): %w", c.addr, op, tlserr.Explain(err, "nomad"))
}

func status(err error) int {
	var re *ResponseError
	if errors.As(err, &re) {
		return re.Status
	}
	return 0
}

func queryOpts(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

func writeOpts(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// readJob reads a job, a 404 becoming a *NotFoundError suggesting the
// closest job ID.
func (c *Client) readJob(ctx context.Context, id string) (*api.Job, error) {
	job, _, err := c.api.Jobs().Info(id, queryOpts(ctx))
	if err == nil {
		return job, nil
	}
	if err = c.fail("read job "+id, err); status(err) != 404 {
		return nil, err
	}
	return nil, c.jobNotFound(ctx, id)
}

// jobNotFound is the *NotFoundError for a job, suggesting the closest ID
// when the job list can be read.
func (c *Client) jobNotFound(ctx context.Context, id string) error {
	var ids []string
	if stubs, _, err := c.api.Jobs().List(queryOpts(ctx)); err == nil {
		for _, s := range stubs {
			ids = append(ids, s.ID)
		}
	}
	e := notFound("job", id, "", ids)
	e.Known = nil // a cluster's job list is too long to show
	return e
}

// findGroup finds a job's group, or a *NotFoundError listing them.
func findGroup(job *api.Job, name string) (*api.TaskGroup, error) {
	var names []string
	for _, g := range job.TaskGroups {
		if *g.Name == name {
			return g, nil
		}
		names = append(names, *g.Name)
	}
	return nil, notFound("task group", name, *job.ID, names)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func unixTime(ns *int64) time.Time {
	if ns == nil || *ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, *ns)
}
