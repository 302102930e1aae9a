package config

import (
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a Go duration string
// ("30s", "5m", "1h30m"). A bare number is refused: "timeout = 5" could mean
// seconds or nanoseconds, so the unit must be spelled out.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string and refuses negative values.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf(`invalid duration %q: write a number with a unit, such as "30s", "5m" or "1h30m"`, b)
	}
	if v < 0 {
		return fmt.Errorf("must not be negative, got %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back in the form UnmarshalText accepts.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// String is time.Duration's form without the noise of trailing zero units
// ("5m" rather than "5m0s"), still parseable by time.ParseDuration.
func (d Duration) String() string {
	s := d.Duration.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
		if t, ok := strings.CutSuffix(s, "h0m"); ok {
			s = t + "h"
		}
	}
	return s
}

// redacted replaces a secret wherever it could be printed.
const redacted = "[redacted]"

// Secret holds a credential read from a file or the environment. Every way of
// printing or marshalling it yields "[redacted]", so passing a Config or a
// Secret to fmt, zerolog or encoding/json cannot leak it; only Reveal does.
type Secret struct {
	value string
	// Source says where the value came from, for log lines:
	// "file /run/secrets/matrix-token" or "env VIGIE_MATRIX_ACCESS_TOKEN".
	// Empty when the secret is not set.
	Source string
}

// NewSecret wraps a value, for callers that obtain secrets by other means
// (tests, interactive prompts).
func NewSecret(value, source string) Secret {
	return Secret{value: value, Source: source}
}

// Reveal returns the secret value. Call it only where the value is consumed.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether a non-empty value was provided.
func (s Secret) IsSet() bool { return s.value != "" }

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v) without revealing the value.
func (s Secret) GoString() string {
	return fmt.Sprintf("config.Secret{value:%s, Source:%q}", redacted, s.Source)
}

// MarshalText keeps encoding/json, TOML and zerolog from serialising the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
