// Package restartable serves an HTTP handler on a loopback port that tests
// can take down and bring back on the same address, as an agent that is
// stopped and started again: while down, connections are refused and the
// open ones are cut.
package restartable

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is an HTTP server on 127.0.0.1.
type Server struct {
	URL string // http://127.0.0.1:port, the same across restarts

	handler http.Handler
	addr    string

	mu  sync.Mutex
	srv *http.Server // nil while down
}

// Start serves h on a free loopback port.
func Start(h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{handler: h, addr: ln.Addr().String()}
	s.URL = "http://" + s.addr
	s.serve(ln)
	return s, nil
}

func (s *Server) serve(ln net.Listener) {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.srv = srv
	go srv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed at Stop
}

// Stop takes the server down: the listener closes and open connections,
// streams and blocked queries included, are cut.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close() //nolint:errcheck // closing listeners and connections
		s.srv = nil
	}
}

// Restart brings a stopped server back on its address. The port may have
// been taken meanwhile; it retries for a few seconds.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("restartable: server is running")
	}
	var err error
	for range 100 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			s.serve(ln)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}
