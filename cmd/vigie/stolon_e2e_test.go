package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakeconsul"
)

// A Stolon cluster configured as the example says, its captured keys
// served by the fake Consul: db status reads it, a lost sentinel alerts,
// a failover without a directory to authorize it is refused.
func TestConsoleShowsStolon(t *testing.T) {
	t.Parallel()
	c := startAlertConsole(t, `
[[stolon.clusters]]
name = "main"
grace = "1s"
[stolon.clusters.postgres]
host = "127.0.0.1"
port = 1
user = "stolon"
`)
	if err := c.consul.LoadKV(fakeconsul.StolonState("normal")); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(c.stdin, "db status main")
	c.out.waitFor(t, 10*time.Second, "KEEPER", "LAG", "master", "standby", "phase normal")

	if err := c.consul.LoadKV(fakeconsul.StolonState("no-sentinel")); err != nil {
		t.Fatal(err)
	}
	c.out.waitFor(t, 20*time.Second, "no sentinel leader")
	fmt.Fprintln(c.stdin, "failover main")
	c.out.waitFor(t, 10*time.Second, "Not allowed: failover") // a change needs LDAP: closed without it
	fmt.Fprintln(c.stdin, "db status mian")
	c.out.waitFor(t, 10*time.Second, `did you mean "main"`)
	c.end(t)
}
