package backups

import (
	"bytes"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// testdata/pgdump-15.dump is pg_dump 15's custom-format archive (--compress
// 0) of the seed dataset plus an empty table, text with escaped newlines,
// tabs, backslashes and NULLs, and a large object.
func archiveFixture(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/pgdump-15.dump")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCountArchiveRows(t *testing.T) {
	got, err := countArchiveRows(bytes.NewReader(archiveFixture(t)))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, tc := range got {
		lines = append(lines, tc.Schema+"."+tc.Name+"="+itoa(tc.Rows))
	}
	slices.Sort(lines)
	want := []string{"audit.events=200", "public.customers=500", "public.empty_one=0", "public.measurements_2025=213",
		"public.measurements_2026=87", "public.notes=5", "public.orders=3000"}
	if !slices.Equal(lines, want) {
		t.Fatalf("rows %v\nwant %v", lines, want)
	}
}

// The counter sees the archive in whatever pieces the pipe gives, and a
// stream it cannot read never blocks the dump.
func TestArchiveRowsAsAStream(t *testing.T) {
	data := archiveFixture(t)
	a := newArchiveRows()
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+len(rest)%7919)
		if _, err := a.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	tables, err := a.result()
	if err != nil || len(tables) != 7 {
		t.Fatalf("%v %v", tables, err)
	}
	byByte := newArchiveRows()
	for i := range data {
		byByte.Write(data[i : i+1])
	}
	if again, err := byByte.result(); err != nil || !slices.Equal(again, tables) {
		t.Fatalf("byte by byte: %v %v", again, err)
	}
	bad := newArchiveRows()
	bad.Write([]byte("not an archive at all"))
	bad.Write(bytes.Repeat([]byte("x"), 1<<20)) // after the error: drained, not blocked
	if _, err := bad.result(); err == nil || !strings.Contains(err.Error(), "not a pg_dump custom-format archive") {
		t.Fatalf("garbage: %v", err)
	}
}

// Damage anywhere gives an error, never a panic nor a wrong count taken
// for a right one... and truncations say so.
func TestArchiveDamage(t *testing.T) {
	data := archiveFixture(t)
	for _, cut := range []int{3, 20, 200, len(data) / 2, len(data) - 1} {
		if _, err := countArchiveRows(io.LimitReader(bytes.NewReader(data), int64(cut))); err == nil {
			t.Errorf("archive cut at %d counted", cut)
		}
	}
	compressed := slices.Clone(data)
	compressed[12] = 6 // a compression level in the header
	if _, err := countArchiveRows(bytes.NewReader(compressed)); err == nil || !strings.Contains(err.Error(), "compressed archive") {
		t.Errorf("compressed: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func FuzzCountArchiveRows(f *testing.F) {
	f.Add(archiveFixture(f))
	f.Add([]byte("PGDMP\x01\x0e\x00\x04\x08\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tables, err := countArchiveRows(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, tc := range tables {
			if tc.Rows < 0 {
				t.Fatalf("negative rows %+v", tc)
			}
		}
	})
}
