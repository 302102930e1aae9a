package config

import (
	"fmt"
	"math"
	"strconv"
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

// Size is a number of bytes, written in TOML as an integer (bytes) or as a
// string with a unit: "123B", "500kB", "10MB", "1GB", "1TB" (powers of
// 1000) or "512KiB", "16MiB", "1GiB", "1TiB" (powers of 1024). Units are
// case-insensitive and may follow a space; the number is a whole one.
type Size int64

// sizeUnits are the units a Size accepts, by lowercase name.
var sizeUnits = map[string]int64{
	"b":  1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// sizeForms is how errors tell the accepted forms.
const sizeForms = `a number of bytes, or a whole number with a unit such as "512KiB", "16MiB", "1GiB" (powers of 1024) or "500kB", "10MB" (powers of 1000)`

// UnmarshalText parses a size with its unit, refusing negative values.
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	if strings.HasPrefix(str, "-") {
		return fmt.Errorf("must not be negative, got %q", b)
	}
	i := strings.IndexFunc(str, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(str) // "1024" in quotes is bytes, as the integer 1024 is
	}
	num, unit := str[:i], strings.ToLower(strings.TrimLeft(str[i:], " "))
	mult, ok := sizeUnits[unit]
	if unit == "" {
		mult, ok = 1, true
	}
	if !ok || num == "" {
		return fmt.Errorf("invalid size %q: write %s", b, sizeForms)
	}
	n, err := strconv.ParseInt(num, 10, 64) // only digits: fails only on range
	if err != nil || n > math.MaxInt64/mult {
		return fmt.Errorf("size %q is too large", b)
	}
	*s = Size(n * mult)
	return nil
}

// MarshalText writes the size back in a form UnmarshalText accepts.
func (s Size) MarshalText() ([]byte, error) {
	return []byte(s.String()), nil
}

// String writes the size as the smallest whole number of a unit: "16 MiB",
// "10 MB", "123 B".
func (s Size) String() string {
	n, unit := int64(s), "B"
	if n != 0 {
		best := n
		for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "kB", "MB", "GB", "TB"} {
			if m := sizeUnits[strings.ToLower(u)]; n%m == 0 && n/m < best {
				best, unit = n/m, u
			}
		}
		n = best
	}
	return strconv.FormatInt(n, 10) + " " + unit
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
