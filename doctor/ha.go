package doctor

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigie/vigie/config"
)

// haChecks checks what an [ha] instance needs of Consul: read and write
// the lock key and its config key (without taking the lock), and create
// a session.
func haChecks(p *Plan, cfg *config.Config, tc *tls.Config) {
	if !cfg.HA.Enabled {
		return
	}
	var q url.Values
	if cfg.Consul.Datacenter != "" {
		q = url.Values{"dc": {cfg.Consul.Datacenter}}
	}
	h := &haProbe{cfg: cfg, api: newHTTPAPI("Consul", "consul", cfg.Consul.Address, tc, "X-Consul-Token", cfg.Consul.Token.Reveal(), q), token: cfg.Consul.Token.Reveal()}
	p.Add(Check{Component: "consul", Name: "ha lock " + cfg.HA.LockKey, Run: h.lockCheck})
	p.Add(Check{Component: "consul", Name: "ha session", Run: h.sessionCheck})
}

type haProbe struct {
	cfg   *config.Config
	api   *httpAPI
	token string
}

// kvEntry is one key of GET /v1/kv/<key>.
type kvEntry struct {
	Key         string
	Value       []byte
	Session     string
	ModifyIndex uint64
}

// readKey reads a key: nil when it does not exist.
func (h *haProbe) readKey(ctx context.Context, key string) (*kvEntry, error) {
	var entries []kvEntry
	status, body, err := h.api.getJSON(ctx, "/v1/kv/"+key, nil, h.token, &entries)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusNotFound:
		return nil, nil
	case status == http.StatusForbidden:
		return nil, fmt.Errorf("Consul refused to read %s (%s): the token needs key_prefix %q { policy = \"write\" }", key, body, h.cfg.HA.LockKey)
	case status != http.StatusOK:
		return nil, fmt.Errorf("Consul answered %d to GET /v1/kv/%s: %s", status, key, body)
	case len(entries) == 0:
		return nil, nil
	}
	return &entries[0], nil
}

// mayWrite tells whether the token may write key, without writing it.
func (h *haProbe) mayWrite(ctx context.Context, key string) error {
	return h.api.mayWriteKey(ctx, key, h.token, fmt.Sprintf("key_prefix %q { policy = \"write\" }", h.cfg.HA.LockKey))
}

func (h *haProbe) lockCheck(ctx context.Context) Result {
	key := h.cfg.HA.LockKey
	lock, err := h.readKey(ctx, key)
	if err != nil {
		return Fail("%v", err)
	}
	for _, k := range []string{key, key + "/config"} {
		if err := h.mayWrite(ctx, k); err != nil {
			return Fail("%v", err)
		}
	}
	if lock == nil || lock.Session == "" {
		return OK("the token may take the lock; nobody holds it now")
	}
	leader := string(lock.Value)
	cfgKey, err := h.readKey(ctx, key+"/config")
	if err != nil {
		return Fail("%v", err)
	}
	if leader == h.cfg.HA.Instance {
		return OK("the token may take the lock; this instance (%s) holds it", leader)
	}
	if cfgKey != nil && cfgKey.Session != "" {
		var lc struct {
			Instance    string            `json:"instance"`
			Fingerprint map[string]string `json:"fingerprint"`
		}
		if json.Unmarshal(cfgKey.Value, &lc) == nil {
			if keys := config.FingerprintDiff(lc.Fingerprint, h.cfg.Fingerprint()); len(keys) > 0 {
				return Fail("the leader %s is configured otherwise (%s): this instance refuses to stand by; give every instance the same configuration",
					lc.Instance, strings.Join(keys, ", "))
			}
		}
	}
	return OK("the token may take the lock; %s leads now, this instance (%s) would stand by", leader, h.cfg.HA.Instance)
}

// sessionCheck creates a session and destroys it at once: a lock needs
// one.
func (h *haProbe) sessionCheck(ctx context.Context) Result {
	body, _ := json.Marshal(map[string]any{"Name": "vigie doctor " + h.cfg.HA.Instance, "TTL": "10s", "LockDelay": "0s", "Behavior": "release"})
	status, resp, err := h.api.put(ctx, "/v1/session/create", nil, h.token, body)
	switch {
	case err != nil:
		return Fail("%v", err)
	case status == http.StatusForbidden:
		return Fail("Consul refused to create a session (%s): the token needs session_prefix \"\" { policy = \"write\" }", resp)
	case status != http.StatusOK:
		return Fail("Consul answered %d to PUT /v1/session/create: %s", status, resp)
	}
	var s struct{ ID string }
	if err := json.Unmarshal([]byte(resp), &s); err != nil || s.ID == "" {
		return Fail("Consul answered PUT /v1/session/create with %q", resp)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if status, resp, err := h.api.put(dctx, "/v1/session/destroy/"+s.ID, nil, h.token, nil); err != nil || status != http.StatusOK {
		return Warn("created a session but could not destroy it (%d %s %v): it expires within 20s", status, resp, err)
	}
	return OK("the token may create sessions (one was created and destroyed)")
}
