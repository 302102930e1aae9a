package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
)

// HA runs two or more instances of which one leads: it holds a Consul lock
// (the [consul] connection) and replicates its state to the [s3] bucket;
// the others wait, ready to restore that state and take over.
type HA struct {
	Enabled  bool   `toml:"enabled"`
	Instance string `toml:"instance"` // this instance's name; default: the host name
	LockKey  string `toml:"lock_key"` // Consul KV key of the lock
	// SessionTTL bounds how long a dead leader keeps the lock: Consul
	// invalidates its session between one and two TTLs after its last
	// renewal. LockDelay then keeps the key from everyone, so that a
	// leader cut off from Consul has stopped before another starts.
	SessionTTL        Duration `toml:"session_ttl"`
	LockDelay         Duration `toml:"lock_delay"`
	ReplicateInterval Duration `toml:"replicate_interval"` // how often the leader's state goes to S3
	RestoreTimeout    Duration `toml:"restore_timeout"`    // how long a new leader waits for S3 before starting with an empty state
}

// HA defaults. A kill -9 of the leader costs at most 2 TTLs (Consul's
// invalidation) plus the lock delay before another may lead: 25 s.
var haDefaults = HA{
	LockKey:           "vigie/leader",
	SessionTTL:        Duration{10 * time.Second},
	LockDelay:         Duration{5 * time.Second},
	ReplicateInterval: Duration{10 * time.Second},
	RestoreTimeout:    Duration{time.Minute},
}

// SessionDir holds the store of the bot's Matrix session (device, token,
// sync position): the data directory, or with [ha] a directory of this
// instance's own, which the replicated state never holds.
func (c *Config) SessionDir() string {
	if c.HA.Enabled {
		return filepath.Join(c.DataDir, "instance")
	}
	return c.DataDir
}

// ReplicaPrefix is the S3 key prefix the replica package puts its
// "ha/state/" objects under: [s3] prefix, with its trailing "/".
func (c *Config) ReplicaPrefix() string {
	return strings.TrimSuffix(c.S3.Prefix, "/") + "/"
}

func (c *Config) haDefaults(hostname func() (string, error)) {
	if c.HA.Instance == "" {
		if h, err := hostname(); err == nil {
			c.HA.Instance = h
		}
	}
}

func (c *Config) validateHA(d *decoder) {
	h := &c.HA
	if !h.Enabled {
		return
	}
	if h.Instance == "" {
		d.add("ha.instance", "must be set: the host name is unknown")
	} else if strings.ContainsFunc(h.Instance, func(r rune) bool { return unicode.IsSpace(r) || r == '/' }) {
		d.add("ha.instance", "must not hold spaces or \"/\", got %q", h.Instance)
	}
	if h.LockKey == "" || strings.HasPrefix(h.LockKey, "/") || strings.HasSuffix(h.LockKey, "/") {
		d.add("ha.lock_key", `must be a Consul KV key such as "vigie/leader" (no leading or trailing "/"), got %q`, h.LockKey)
	}
	// Consul refuses session TTLs outside 10s..24h.
	if ttl := h.SessionTTL.Duration; ttl < 10*time.Second || ttl > 24*time.Hour {
		d.add("ha.session_ttl", "must be between 10s and 24h (Consul's bounds), got %s", h.SessionTTL)
	}
	// 0 cannot be asked of Consul: it would mean its default, 15s.
	if ld := h.LockDelay.Duration; ld < time.Second || ld > time.Minute {
		d.add("ha.lock_delay", "must be between 1s and 60s (Consul's bound), got %s", h.LockDelay)
	}
	if h.ReplicateInterval.Duration < time.Second {
		d.add("ha.replicate_interval", "must be at least 1s, got %s", h.ReplicateInterval)
	}
	if h.RestoreTimeout.Duration <= 0 {
		d.add("ha.restore_timeout", "must be greater than 0")
	}
	if !c.Consul.Watch && c.Consul.Address == "" {
		d.add("ha.enabled", "needs [consul] (the lock lives in Consul KV)")
	}
	if c.S3.Endpoint == "" || c.S3.Bucket == "" {
		d.add("ha.enabled", "needs [s3] endpoint and bucket (the leader's state is replicated there)")
	}
}

// Fingerprint identifies, key by key, what the configuration makes Vigie
// do, so that two instances can tell whether they would lead alike. Secret
// values take part as hashes; what is specific to one instance (its name,
// data directory, listener, log, file paths) does not.
func (c *Config) Fingerprint() map[string]string {
	out := map[string]string{}
	fingerprint(reflect.ValueOf(c).Elem(), "", out)
	return out
}

// instanceKeys may differ between instances of one deployment.
var instanceKeys = []string{"ha.instance", "data_dir", "http.listen", "log.level", "log.format", "matrix.device_name"}

func fingerprint(v reflect.Value, prefix string, out map[string]string) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Tag.Get("toml")
		fv := v.Field(i)
		if name == "-" {
			if fv.Type() != reflect.TypeOf(Secret{}) {
				continue
			}
			name = snake(f.Name)
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if slices.Contains(instanceKeys, key) || strings.HasSuffix(key, "_file") || strings.HasSuffix(key, "_dir") {
			continue
		}
		switch {
		case fv.Type() == reflect.TypeOf(Secret{}):
			if s := fv.Interface().(Secret); s.IsSet() {
				out[key] = hashed("secret", s.Reveal())
			}
		case fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(Duration{}):
			fingerprint(fv, key, out)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			for j := range fv.Len() {
				fingerprint(fv.Index(j), fmt.Sprintf("%s[%d]", key, j), out)
			}
			out[key+".count"] = fmt.Sprint(fv.Len())
		default:
			out[key] = hashed("value", fmt.Sprint(fv.Interface()))
		}
	}
}

// hashed keeps values out of Consul KV while letting them be compared.
func hashed(kind, v string) string {
	sum := sha256.Sum256([]byte("vigie " + kind + "\x00" + v))
	return hex.EncodeToString(sum[:8])
}

// snake turns a Go field name into a TOML key: AccessToken → access_token.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// FingerprintDiff lists the keys whose values differ between two
// fingerprints, sorted.
func FingerprintDiff(a, b map[string]string) []string {
	var keys []string
	for k, v := range a {
		if b[k] != v {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
