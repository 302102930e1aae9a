package testenv

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startGreeter starts a TCP server on loopback that greets each
// connection with name and a newline, then echoes lines back.
func startGreeter(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := io.WriteString(c, name+"\n"); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// greeterConn is a client connection to a greeter through a proxy.
type greeterConn struct {
	net.Conn
	r *bufio.Reader
}

func dialGreeter(t *testing.T, addr string) *greeterConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &greeterConn{Conn: c, r: bufio.NewReader(c)}
}

// line reads a line, "" and the error at EOF or on error.
func (c *greeterConn) line() (string, error) {
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(s, "\n"), nil
}

// echo sends msg and reads it back.
func (c *greeterConn) echo(msg string) (string, error) {
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	return c.line()
}

func TestTCPProxyFollowsTarget(t *testing.T) {
	a, b := startGreeter(t, "a"), startGreeter(t, "b")
	proxy := StartTCPProxy(t, a)
	if proxy.Addr != "127.0.0.1:"+strconv.Itoa(proxy.Port) || proxy.Port == 0 {
		t.Fatalf("Addr %q, Port %d", proxy.Addr, proxy.Port)
	}

	toA := dialGreeter(t, proxy.Addr)
	if got, err := toA.line(); got != "a" {
		t.Fatalf("greeting %q, %v", got, err)
	}
	if got, err := toA.echo("hello"); got != "hello" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if n := proxy.Conns(); n != 1 {
		t.Fatalf("Conns() = %d", n)
	}

	// The same target again changes nothing.
	proxy.SetTarget(a)
	if got, err := toA.echo("still"); got != "still" {
		t.Fatalf("after SetTarget(same): echo %q, %v", got, err)
	}

	// A new target: the old connection is closed, new ones go to b.
	proxy.SetTarget(b)
	if proxy.Target() != b {
		t.Fatalf("Target() = %q", proxy.Target())
	}
	if n := proxy.Conns(); n != 0 {
		t.Fatalf("Conns() = %d after SetTarget", n)
	}
	if got, err := toA.echo("lost"); err == nil {
		t.Fatalf("the connection to the old target survived: echo %q", got)
	}
	toB := dialGreeter(t, proxy.Addr)
	if got, err := toB.line(); got != "b" {
		t.Fatalf("greeting %q, %v", got, err)
	}

	// No target: connections are accepted and closed at once.
	proxy.SetTarget("")
	if _, err := toB.echo("lost"); err == nil {
		t.Fatal("a connection survived SetTarget(\"\")")
	}
	refused := dialGreeter(t, proxy.Addr)
	if got, err := refused.line(); !errors.Is(err, io.EOF) {
		t.Fatalf("with no target: read %q, %v, want EOF", got, err)
	}

	// A target that is down: the same.
	down := FreeLoopbackAddr(t)
	proxy.SetTarget(down)
	if got, err := dialGreeter(t, proxy.Addr).line(); err == nil {
		t.Fatalf("target down: read %q", got)
	}

	proxy.SetTarget(a)
	again := dialGreeter(t, proxy.Addr)
	if got, err := again.line(); got != "a" {
		t.Fatalf("greeting %q, %v", got, err)
	}
	proxy.Close()
	if _, err := again.echo("lost"); err == nil {
		t.Fatal("a connection survived Close")
	}
	if c, err := net.DialTimeout("tcp", proxy.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the proxy still listens after Close")
	}
	proxy.Close() // idempotent
}

func TestTCPProxyPostgresFailover(t *testing.T) {
	primary := StartPostgres(t)
	standby := StartStandby(t, primary)
	proxy := StartTCPProxy(t, primary.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	connect := func() (*pgx.Conn, error) {
		return pgx.Connect(ctx, primary.URLVia(proxy.Addr, "postgres"))
	}
	serverPort := func(conn *pgx.Conn) int {
		t.Helper()
		var port int
		if err := conn.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil {
			t.Fatal(err)
		}
		return port
	}

	conn, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if got := serverPort(conn); got != primary.Port {
		t.Fatalf("through the proxy: server port %d, want the primary's %d", got, primary.Port)
	}

	proxy.SetTarget(standby.Addr())
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a session through the proxy survived the change of target")
	}
	onStandby, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	defer onStandby.Close(ctx)
	if got := serverPort(onStandby); got != standby.Port {
		t.Fatalf("after SetTarget: server port %d, want the standby's %d", got, standby.Port)
	}

	proxy.SetTarget("")
	if err := onStandby.Ping(ctx); err == nil {
		t.Fatal("a session through the proxy survived SetTarget(\"\")")
	}
	if c, err := connect(); err == nil {
		c.Close(ctx)
		t.Fatal("connected through a proxy with no target")
	} else {
		t.Logf("with no target pgx gets: %v", err)
	}

	proxy.SetTarget(primary.Addr())
	back, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close(ctx)
	if got := serverPort(back); got != primary.Port {
		t.Fatalf("back on the primary: server port %d, want %d", got, primary.Port)
	}
}
