package snaparchive_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/internal/snaparchive"
)

func TestRealArchives(t *testing.T) {
	for name, c := range map[string]struct {
		archive []byte
		index   uint64
	}{"consul": {fakeconsul.Snapshot(), fakeconsul.SnapshotIndex}, "nomad": {fakenomad.Snapshot(), 12}} {
		sum, err := snaparchive.Check(bytes.NewReader(c.archive))
		if err != nil || strings.Join(sum.Members, ",") != "meta.json,state.bin" || sum.Index != c.index || sum.Size != sum.StateBytes {
			t.Errorf("%s: %+v %v", name, sum, err)
		}
	}
}

// Damage is found wherever it is.
func TestDamagedArchives(t *testing.T) {
	good := fakeconsul.Snapshot()
	for _, at := range []int{0, 10, len(good) / 3, len(good) / 2, len(good) - 40, len(good) - 5} {
		bad := bytes.Clone(good)
		bad[at] ^= 0xff
		if _, err := snaparchive.Check(bytes.NewReader(bad)); err == nil {
			t.Errorf("a flipped byte at %d of %d passed", at, len(good))
		}
	}
	if _, err := snaparchive.Check(bytes.NewReader(good[:len(good)-20])); err == nil {
		t.Error("a truncated archive passed")
	}
}

// Snapshot archives come from the servers and from S3: any bytes give a
// verdict, never a panic.
func FuzzCheck(f *testing.F) {
	f.Add(fakeconsul.Snapshot())
	f.Add(fakenomad.Snapshot())
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = snaparchive.Check(bytes.NewReader(data))
	})
}
