package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpProxyDialTimeout bounds the connection to the target. On loopback a
// dial is answered at once; the bound only matters for odd targets.
const tcpProxyDialTimeout = 5 * time.Second

// TCPProxy forwards TCP connections on a free loopback port to a target
// that can change, the way stolon-proxy sits in front of a PostgreSQL
// cluster: when the target changes every connection it forwards is
// closed, so that clients reconnect to the new one, and while there is no
// target it accepts connections and closes them at once (stolon-proxy
// with no master).
type TCPProxy struct {
	Addr string // "127.0.0.1:PORT"
	Port int

	ln net.Listener
	wg sync.WaitGroup // the accept loop and one per connection

	mu     sync.Mutex
	target string
	gen    uint64 // counts target changes, so a dial that raced one is dropped
	conns  map[*proxiedConn]struct{}
	closed bool
}

// proxiedConn is a client connection and its connection to the target.
type proxiedConn struct {
	client, upstream net.Conn
	done             chan struct{} // closed once both are closed and forgotten
}

func (c *proxiedConn) close() {
	_ = c.client.Close()
	_ = c.upstream.Close()
}

// StartTCPProxy starts a proxy to target ("host:port"; "" to refuse
// connections until SetTarget), closed at the end of the test.
func StartTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TCPProxy{
		Addr:   ln.Addr().String(),
		Port:   ln.Addr().(*net.TCPAddr).Port,
		ln:     ln,
		target: target,
		conns:  make(map[*proxiedConn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.Close)
	return p
}

// Target returns where new connections go, "" when they are refused.
func (p *TCPProxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// SetTarget sends new connections to target, or refuses them if target is
// "". If target differs from the current one, every connection forwarded
// so far is closed (both ends) before SetTarget returns; setting the same
// target again changes nothing.
func (p *TCPProxy) SetTarget(target string) {
	p.mu.Lock()
	if target == p.target {
		p.mu.Unlock()
		return
	}
	p.target = target
	p.gen++
	done := p.closeConnsLocked()
	p.mu.Unlock()
	for _, d := range done {
		<-d
	}
}

// Conns returns how many connections the proxy forwards now.
func (p *TCPProxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every forwarded connection and waits for
// the proxy's goroutines to end. Safe to call more than once; also called
// at cleanup.
func (p *TCPProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.closeConnsLocked()
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// closeConnsLocked closes every forwarded connection and returns channels
// closed once each is forgotten. Their goroutines remove them from
// p.conns.
func (p *TCPProxy) closeConnsLocked() []chan struct{} {
	var done []chan struct{}
	for c := range p.conns {
		c.close()
		done = append(done, c.done)
	}
	return done
}

func (p *TCPProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			// Close closed the listener; a loopback listener fails for
			// nothing else worth retrying.
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(client)
		}()
	}
}

// forward connects client to the current target and copies both ways
// until either side or the proxy closes the connection.
func (p *TCPProxy) forward(client net.Conn) {
	p.mu.Lock()
	target, gen, closed := p.target, p.gen, p.closed
	p.mu.Unlock()
	if target == "" || closed {
		_ = client.Close()
		return
	}
	upstream, err := net.DialTimeout("tcp", target, tcpProxyDialTimeout)
	if err != nil {
		// As stolon-proxy: the client sees its connection closed.
		_ = client.Close()
		return
	}
	c := &proxiedConn{client: client, upstream: upstream, done: make(chan struct{})}
	p.mu.Lock()
	if p.gen != gen || p.closed {
		// The target changed, or the proxy closed, during the dial.
		p.mu.Unlock()
		c.close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	copied := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(upstream, client)
		copied <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(client, upstream)
		copied <- struct{}{}
	}()
	<-copied
	// One side ended: end the other, as a server that went away would.
	c.close()
	<-copied
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	close(c.done)
}
