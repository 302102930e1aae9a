package suggest

import (
	"slices"
	"testing"
)

func TestClosest(t *testing.T) {
	keys := []string{"homeserver", "user_id", "access_token_file", "password_file", "device_name"}
	cmds := []string{"help", "ping", "status", "stop", "logs"}
	tests := []struct {
		name  string
		word  string
		cands []string
		want  string
		ok    bool
	}{
		{"missing letter", "homserver", keys, "homeserver", true},
		{"transposition", "hoemserver", keys, "homeserver", true},
		{"case-insensitive", "HomeServer", keys, "homeserver", true},
		{"exact", "user_id", keys, "user_id", true},
		{"secret name points to file key", "access_token", keys, "access_token_file", true},
		{"prefix of candidate", "pin", cmds, "ping", true},
		{"candidate is prefix", "statusx", cmds, "status", true},
		{"prefix ambiguity picks smallest distance", "st", cmds, "stop", true},
		{"short word one edit", "lgs", cmds, "logs", true},
		{"too far", "frobnicate", keys, "", false},
		{"single letter is not a prefix match", "h", []string{"homeserver"}, "", false},
		{"single letter within one edit", "x", []string{"y"}, "y", true},
		{"tie goes to first", "cat", []string{"bat", "hat"}, "bat", true},
		{"empty word", "", keys, "", false},
		{"no candidates", "help", nil, "", false},
		{"unicode", "élan", []string{"Elan", "ÉLAN"}, "ÉLAN", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Closest(tt.word, tt.cands)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Closest(%q) = %q, %v; want %q, %v", tt.word, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"", "abc", 3},
		{"kitten", "sitting", 3},
		{"ab", "ba", 1},
		{"ca", "abc", 3}, // OSA, not full Damerau (which gives 2)
		{"homeserver", "homserver", 1},
	}
	for _, tt := range tests {
		if got := distance([]rune(tt.a), []rune(tt.b)); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func FuzzClosest(f *testing.F) {
	f.Add("homserver", "homeserver", "user_id")
	f.Add("pin", "ping", "pong")
	f.Add("", "a", "")
	f.Add("\xff\xfe", "\xff", "İ")
	f.Fuzz(func(t *testing.T, word, c1, c2 string) {
		cands := []string{c1, c2}
		got, ok := Closest(word, cands)
		if !ok {
			if got != "" {
				t.Fatalf("not ok but returned %q", got)
			}
			return
		}
		if !slices.Contains(cands, got) {
			t.Fatalf("Closest(%q, %q) = %q, not a candidate", word, cands, got)
		}
	})
}
