package bot

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/outbox"
)

func TestCommandText(t *testing.T) {
	b := &Bot{cfg: Config{CommandPrefix: "!vigie"}}
	cases := map[string]struct {
		text string
		ok   bool
	}{
		"!vigie ping":           {"ping", true},
		"  !Vigie   help  ping": {"help  ping", true},
		"!vigie":                {"", true},
		"!vigie\tping":          {"ping", true},
		"!vigies ping":          {"", false},
		"vigie ping":            {"", false},
		"hello !vigie ping":     {"", false},
		"!vi":                   {"", false},
		"!vigie\u00a0ping":      {"ping", true},
	}
	for in, want := range cases {
		text, ok := b.commandText(in)
		if text != want.text || ok != want.ok {
			t.Errorf("commandText(%q) = %q, %v; want %q, %v", in, text, ok, want.text, want.ok)
		}
	}
}

func TestInviterAllowed(t *testing.T) {
	allowed := []string{"@alice:example.org", ":ops.example.org"}
	cases := map[id.UserID]bool{
		"@alice:example.org":      true,
		"@bob:example.org":        false,
		"@carol:ops.example.org":  true,
		"@mallory:evil.org":       false,
		"@x:ops.example.org.evil": false,
		"@alice:example.org.evil": false,
		"not-a-user-id":           false,
	}
	for sender, want := range cases {
		if got := inviterAllowed(sender, allowed); got != want {
			t.Errorf("inviterAllowed(%s) = %v", sender, got)
		}
	}
	if inviterAllowed("@alice:example.org", nil) {
		t.Error("an empty allowlist must refuse everyone")
	}
}

func httpErr(code int, header http.Header, errcode string, extra map[string]any) error {
	return mautrix.HTTPError{
		Response:  &http.Response{StatusCode: code, Header: header},
		RespError: &mautrix.RespError{ErrCode: errcode, StatusCode: code, ExtraData: extra},
		Message:   "request failed",
	}
}

func TestClassify(t *testing.T) {
	rl := func(err error) time.Duration {
		var de *outbox.DeliveryError
		if !errors.As(err, &de) || de.Permanent {
			t.Fatalf("%v: not a rate limit", err)
		}
		return de.RetryAfter
	}
	if d := rl(classify(httpErr(429, http.Header{"Retry-After": {"3"}}, "M_LIMIT_EXCEEDED", nil))); d != 3*time.Second {
		t.Errorf("Retry-After seconds: %v", d)
	}
	date := time.Now().Add(10 * time.Second).UTC().Format(http.TimeFormat)
	if d := rl(classify(httpErr(429, http.Header{"Retry-After": {date}}, "M_LIMIT_EXCEEDED", nil))); d < 8*time.Second || d > 10*time.Second {
		t.Errorf("Retry-After date: %v", d)
	}
	if d := rl(classify(httpErr(429, http.Header{}, "M_LIMIT_EXCEEDED", map[string]any{"retry_after_ms": float64(1500)}))); d != 1500*time.Millisecond {
		t.Errorf("retry_after_ms: %v", d)
	}
	if d := rl(classify(httpErr(429, http.Header{}, "M_LIMIT_EXCEEDED", nil))); d != defaultRateLimitWait {
		t.Errorf("no delay given: %v", d)
	}

	var de *outbox.DeliveryError
	if err := classify(httpErr(403, nil, "M_FORBIDDEN", nil)); !errors.As(err, &de) || !de.Permanent {
		t.Errorf("403 should be permanent: %v", err)
	}
	for _, code := range []int{502, 503, 504, 408} {
		if err := classify(httpErr(code, nil, "M_UNKNOWN", nil)); errors.As(err, &de) {
			t.Errorf("%d should be transient with an unknown outcome: %v", code, err)
		}
	}
	for _, code := range []int{500, 401} {
		if err := classify(httpErr(code, nil, "M_UNKNOWN", nil)); !errors.As(err, &de) || de.Permanent || !de.Refused {
			t.Errorf("%d should be transient and refused: %v", code, err)
		}
	}
	network := mautrix.HTTPError{WrappedError: errors.New("connection refused"), Message: "failed to send request"}
	if err := classify(network); errors.As(err, &de) {
		t.Errorf("network error should be transient: %v", err)
	}
	if !unreachable(network) || !unreachable(httpErr(502, nil, "", nil)) || unreachable(httpErr(403, nil, "M_FORBIDDEN", nil)) {
		t.Error("unreachable() misclassifies")
	}
}
