package bot

import "testing"

// Messages a replay queues again take the room's events of their key in
// the order they were sent; one more than the room holds is new.
func TestAdoptedTakesOldestFirstOnce(t *testing.T) {
	a := &adopted{events: map[string][]string{
		roomKey("!r", "thread/k/1"): {"$first", "$second"},
		roomKey("!r", "incident/k"): {"$root"},
	}}
	for _, want := range []string{"$first", "$second"} {
		if got, ok := a.take("!r", "thread/k/1"); !ok || got != want {
			t.Fatalf("take = %q, %v; want %q", got, ok, want)
		}
	}
	if got, ok := a.take("!r", "thread/k/1"); ok {
		t.Fatalf("a third line of the same text is new, got %q", got)
	}
	if _, ok := a.take("!other", "incident/k"); ok {
		t.Fatal("a key is adopted only in its own room")
	}
	if got, ok := a.take("!r", "incident/k"); !ok || got != "$root" {
		t.Fatalf("root: %q, %v", got, ok)
	}
}
