package snaparchive

import (
	"encoding/hex"
	"strings"
	"testing"
)

func FuzzParseSums(f *testing.F) {
	f.Add(strings.Repeat("ab", 32) + "  meta.json\n" + strings.Repeat("cd", 32) + " *state.bin\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		sums, err := parseSums(strings.NewReader(s))
		if err != nil {
			return
		}
		for name, sum := range sums {
			if _, err := hex.DecodeString(sum); name == "" || len(sum) != 64 || err != nil {
				t.Fatalf("accepted %q → %q", name, sum)
			}
		}
	})
}
