package stolon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigie/vigie/internal/tlserr"
)

// KV reads and writes Consul KV over its HTTP API. Plain net/http, as the
// health watcher: the api client reads CONSUL_* variables behind the
// configuration's back and hides the status codes errors need.
type KV struct {
	Address    string // http(s)://host:port
	Token      string
	Datacenter string
	Client     *http.Client
}

// Pair is one KV entry.
type Pair struct {
	Key         string
	Value       []byte
	Flags       uint64
	ModifyIndex uint64
	Session     string
}

type wirePair struct {
	Key         string
	Value       []byte // base64 in JSON
	Flags       uint64
	ModifyIndex uint64
	Session     string
}

// KVError is a refusal or failure of the KV API, naming the key.
type KVError struct {
	Key    string
	Status int
	Msg    string
}

func (e *KVError) Error() string { return e.Msg }

// list reads every key under prefix. index > 0 blocks until the prefix
// changes past it or wait passes (Consul's blocking query); consistent
// asks the leader with a quorum check. It returns the index to block on
// next.
func (kv *KV) list(ctx context.Context, prefix string, index uint64, wait time.Duration, consistent bool) ([]Pair, uint64, error) {
	q := url.Values{"recurse": {""}}
	if index > 0 {
		q.Set("index", strconv.FormatUint(index, 10))
		q.Set("wait", wait.String())
	}
	if consistent {
		q.Set("consistent", "")
	}
	var pairs []wirePair
	idx, found, err := kv.get(ctx, prefix, q, &pairs)
	if err != nil || !found {
		return nil, idx, err
	}
	out := make([]Pair, len(pairs))
	for i, p := range pairs {
		out[i] = Pair(p)
	}
	return out, idx, nil
}

// get performs a GET on a key (or prefix): found is false on 404.
func (kv *KV) get(ctx context.Context, key string, q url.Values, into any) (uint64, bool, error) {
	if kv.Datacenter != "" {
		q.Set("dc", kv.Datacenter)
	}
	resp, err := kv.do(ctx, http.MethodGet, key, q, nil)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, false, fmt.Errorf("Consul at %s: read %s: %w", kv.Address, key, err)
	}
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	switch {
	case resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") == "true":
		// Consul leaves out of a listing the keys the token may not read
		// (404 when none is left): a refusal, not a missing cluster or
		// keepers and sentinels gone.
		return idx, false, kv.refusal(key, "read", http.StatusForbidden, []byte("it left out the keys the token may not read"))
	case resp.StatusCode == http.StatusNotFound:
		return idx, false, nil
	case resp.StatusCode != http.StatusOK:
		return idx, false, kv.refusal(key, "read", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return idx, false, fmt.Errorf("Consul at %s answered %s with what is not a KV list: %w", kv.Address, key, err)
	}
	return idx, true, nil
}

// cas writes value at key only if its ModifyIndex is still modifyIndex,
// with flags (libkv's, which Stolon's readers check); it reports whether
// the write happened.
func (kv *KV) cas(ctx context.Context, key string, value []byte, flags, modifyIndex uint64) (bool, error) {
	q := url.Values{"cas": {strconv.FormatUint(modifyIndex, 10)}, "flags": {strconv.FormatUint(flags, 10)}}
	if kv.Datacenter != "" {
		q.Set("dc", kv.Datacenter)
	}
	resp, err := kv.do(ctx, http.MethodPut, key, q, value)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return false, kv.refusal(key, "write", resp.StatusCode, body)
	}
	switch strings.TrimSpace(string(body)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("Consul at %s answered the write of %s with %q", kv.Address, key, body)
}

func (kv *KV) do(ctx context.Context, method, key string, q url.Values, body []byte) (*http.Response, error) {
	u := strings.TrimRight(kv.Address, "/") + "/v1/kv/" + escapeKey(key)
	if len(q) > 0 {
		u += "?" + q.Encode() // "recurse=": Consul looks at the presence of a flag only
	}
	var r io.Reader
	if body != nil {
		r = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, fmt.Errorf("Consul address %q: %w", kv.Address, err)
	}
	if kv.Token != "" {
		req.Header.Set("X-Consul-Token", kv.Token)
	}
	client := kv.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("Consul at %s is unreachable: %w", kv.Address, tlserr.Explain(err, "consul"))
	}
	return resp, nil
}

// escapeKey escapes each segment of a key for a URL path.
func escapeKey(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// refusal names the key and the policy a 403 wants.
func (kv *KV) refusal(key, op string, status int, body []byte) error {
	msg := fmt.Sprintf("Consul at %s refused to %s %s (%d): %s", kv.Address, op, key, status, strings.TrimSpace(string(body)))
	if status == http.StatusForbidden {
		policy := "read"
		if op == "write" {
			policy = "write"
		}
		prefix := key
		if i := strings.LastIndex(strings.TrimSuffix(key, "/"), "/clusterdata"); i > 0 {
			prefix = key[:i+1]
		}
		msg += fmt.Sprintf(" (the token needs key_prefix %q { policy = %q })", prefix, policy)
	}
	return &KVError{Key: key, Status: status, Msg: msg}
}
