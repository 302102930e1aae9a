package stolon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/internal/ctxutil"
	"github.com/vigie/vigie/internal/pgserver"
	"github.com/vigie/vigie/internal/suggest"
)

// Service holds the configured clusters, runs their failovers one at a
// time each, and lifts the fences a crash left.
type Service struct {
	clusters []*Cluster
	fences   FenceStore
	clk      clock.Clock

	mu      sync.Mutex
	running map[string]bool
	changed chan struct{} // closed when a failover starts or ends
}

// NewService builds the service of clusters.
func NewService(clusters []*Cluster, fences FenceStore, clk clock.Clock) *Service {
	return &Service{clusters: clusters, fences: fences, clk: clock.OrSystem(clk), running: map[string]bool{}, changed: make(chan struct{})}
}

// Clusters lists the configured clusters.
func (s *Service) Clusters() []*Cluster { return s.clusters }

// UnknownClusterError names a cluster that is not configured.
type UnknownClusterError struct {
	Name  string
	Known []string
}

func (e *UnknownClusterError) Error() string {
	if len(e.Known) == 0 {
		return "no Stolon cluster is configured ([[stolon.clusters]])"
	}
	msg := fmt.Sprintf("unknown Stolon cluster %q", e.Name)
	if near, ok := suggest.Closest(e.Name, e.Known); ok {
		msg += fmt.Sprintf(" (did you mean %q?)", near)
	}
	return msg + "; configured: " + strings.Join(e.Known, ", ")
}

// Cluster finds a cluster by name; "" is the only one configured.
func (s *Service) Cluster(name string) (*Cluster, error) {
	var known []string
	for _, c := range s.clusters {
		if c.Name == name || (name == "" && len(s.clusters) == 1) {
			return c, nil
		}
		known = append(known, c.Name)
	}
	if name == "" && len(s.clusters) > 1 {
		return nil, fmt.Errorf("several Stolon clusters are configured: name one of %s", strings.Join(known, ", "))
	}
	return nil, &UnknownClusterError{Name: name, Known: known}
}

// Running: a failover of the cluster is under way in this process.
func (s *Service) Running(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[name]
}

// Changed is closed when a failover starts or ends.
func (s *Service) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Service) begin(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[name] {
		return false
	}
	s.running[name] = true
	s.wakeLocked()
	return true
}

func (s *Service) end(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, name)
	s.wakeLocked()
}

func (s *Service) wakeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// FenceLeft is the fence recorded for a cluster whose failover is not
// running, nil if none.
func (s *Service) FenceLeft(ctx context.Context, name string) (*Fence, error) {
	if s.Running(name) {
		return nil, nil
	}
	return LoadFence(ctx, s.fences, name)
}

// recoverInterval spaces the attempts to lift a fence left by a crash.
const recoverInterval = 30 * time.Second

// Recover lifts the fences a crash of Vigie left in the middle of a
// failover, retrying until each is lifted or ctx is done: on the current
// master (which replayed it, if it was the candidate), and on the old
// master unless it is a standby now. Each left fence is logged, and
// FenceLeft shows it to the alerts meanwhile.
func (s *Service) Recover(ctx context.Context) {
	log := zerolog.Ctx(ctx)
	for {
		left := 0
		for _, c := range s.clusters {
			if s.Running(c.Name) {
				continue
			}
			f, err := LoadFence(ctx, s.fences, c.Name)
			if err != nil {
				log.Error().Err(err).Str("stolon_cluster", c.Name).Msg("Reading the recorded fence")
				left++
				continue
			}
			if f == nil {
				continue
			}
			if err := s.liftLeft(ctx, c, f); err != nil {
				left++
				log.Error().Err(err).Str("stolon_cluster", c.Name).Stringer("fence", f).Msg("A fence Vigie set in a failover is still there; retrying")
				continue
			}
			log.Warn().Str("stolon_cluster", c.Name).Stringer("fence", f).Msg("Lifted the fence a failover interrupted by a crash had left")
		}
		if left == 0 || ctxutil.Sleep(ctx, recoverInterval) != nil {
			return
		}
	}
}

// liftLeft lifts a recorded fence and forgets it.
func (s *Service) liftLeft(ctx context.Context, c *Cluster, f *Fence) error {
	st, err := c.Read(ctx, true)
	if err != nil {
		return err
	}
	var errs []error
	if m := st.Data.MasterDB(); m != nil && m.Address() != f.Address {
		errs = append(errs, c.liftAt(ctx, m.Address(), f.Databases))
	}
	errs = append(errs, c.liftAt(ctx, f.Address, f.Databases))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.fences.DeleteValue(ctx, fenceKey(c.Name))
}

// liftAt lifts the fence on the server at address; one in recovery has
// none of its own.
func (c *Cluster) liftAt(ctx context.Context, address string, dbs []string) error {
	srv, err := addressed(c.Postgres, address)
	if err != nil {
		return err
	}
	conn, err := c.connect(ctx, srv)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := lift(ctx, conn, dbs); err != nil && !errors.Is(err, errInRecovery) {
		return fmt.Errorf("%s: %w", address, err)
	}
	return nil
}

// addressed is srv at another host:port.
func addressed(srv pgserver.Server, address string) (pgserver.Server, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return srv, fmt.Errorf("address %q: %w", address, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return srv, fmt.Errorf("address %q: bad port", address)
	}
	srv.Host, srv.Port = host, p
	return srv, nil
}

// Preflight checks a failover of the named cluster ("" for the only one).
func (s *Service) Preflight(ctx context.Context, name string) (*Plan, error) {
	c, err := s.Cluster(name)
	if err != nil {
		return nil, err
	}
	if s.Running(c.Name) {
		return nil, fmt.Errorf("a failover of %s is already running", c.Name)
	}
	return c.Preflight(ctx)
}

// Status reads the named cluster's keys ("" for the only one).
func (s *Service) Status(ctx context.Context, name string) (*State, error) {
	c, err := s.Cluster(name)
	if err != nil {
		return nil, err
	}
	return c.Read(ctx, false)
}
