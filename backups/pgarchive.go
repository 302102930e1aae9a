package backups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// A pg_dump custom-format archive (pg_backup_archiver.c, pg_backup_custom.c)
// streamed to a pipe is: a header, the table of contents, then one block
// per TOC entry with data. The rows of a table are its COPY text in a
// "TABLE DATA" block, one line each, ended by "\.\n\n\n". Counting them as
// the archive streams by gives the rows the dump holds without asking the
// server anything: what verification compares a restore with.

// Archive versions this reader knows: 1.12 (PostgreSQL 11) to 1.16 (17).
const (
	archiveMin         = 1<<16 | 12<<8
	archiveTableAM     = 1<<16 | 14<<8 // the table access method in each TOC entry
	archiveCompressAlg = 1<<16 | 15<<8 // the compression as an algorithm byte
	archiveRelkind     = 1<<16 | 16<<8 // the relkind in each TOC entry
	archiveMax         = 1<<16 | 16<<8 | 0xff
)

// Archive block types.
const (
	blockData  = 1
	blockBlobs = 3
)

// copyEnd ends the COPY data of a table in an archive.
var copyEnd = []byte("\\.\n\n\n")

// archiveRows counts the rows of an archive written to it, as the bytes
// pass, without holding them: the header and table of contents are kept
// until whole (small), then the data blocks are followed byte by byte.
type archiveRows struct {
	head    []byte // until the table of contents is read
	tried   int    // len(head) at the last attempt to read it
	version int
	ar      archiveReader
	tables  map[int64]TableCount
	order   []int64
	rows    map[int64]int64

	state  int
	intBuf []byte // an integer split between writes
	block  int64  // dump ID of the block being read
	kind   byte
	left   int64 // bytes left in the chunk
	lines  int64
	tail   []byte // the last bytes of the block's data
	err    error
}

// Where the reader is, after the table of contents.
const (
	stHead      = iota
	stBlockType // a block's type byte, or the end
	stBlockID   // its dump ID
	stChunkLen  // a data chunk's length, 0 ending the block
	stChunk     // inside a data chunk
	stBlobOID   // a large object's OID, 0 ending the block
	stBlobLen   // a large object chunk's length, 0 ending the object
	stBlobChunk // inside a large object chunk
)

func newArchiveRows() *archiveRows {
	return &archiveRows{rows: map[int64]int64{}}
}

// Write feeds the counter; it never fails the stream it watches: an
// archive it cannot read leaves its error for result.
func (a *archiveRows) Write(p []byte) (int, error) {
	if a.err == nil {
		a.err = a.feed(p)
	}
	return len(p), nil
}

func (a *archiveRows) feed(p []byte) error {
	if a.state == stHead {
		a.head = append(a.head, p...)
		if len(a.head) < 2*a.tried+4096 { // read the head again only once it doubled
			return nil
		}
		rest, err := a.readHead()
		if err != nil || a.state == stHead {
			return err
		}
		p = rest
	}
	for len(p) > 0 {
		switch a.state {
		case stBlockType:
			a.kind, p = p[0], p[1:]
			if a.kind != blockData && a.kind != blockBlobs {
				return fmt.Errorf("unknown block type %d", a.kind)
			}
			a.state = stBlockID
		case stChunk, stBlobChunk:
			n := min(int64(len(p)), a.left)
			if a.state == stChunk {
				a.count(p[:n])
			}
			p, a.left = p[n:], a.left-n
			if a.left == 0 {
				a.state--
			}
		default:
			v, rest, ok, err := a.int(p)
			if err != nil || !ok {
				return err
			}
			p = rest
			if err := a.next(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// readHead tries to read the header and the table of contents from what
// came so far; once they are whole it returns the bytes after them.
func (a *archiveRows) readHead() ([]byte, error) {
	a.tried = len(a.head)
	r := bytes.NewReader(a.head)
	a.ar = archiveReader{r: bufio.NewReader(r)}
	version, err := a.ar.head()
	if err == nil {
		a.version = version
		a.tables, a.order, err = a.ar.toc(version)
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, nil // not whole yet
	case err != nil:
		return nil, err
	}
	rest := a.head[len(a.head)-r.Len()-a.ar.r.Buffered():]
	a.head, a.state = nil, stBlockType
	return rest, nil
}

// int takes an integer from p, keeping a partial one for the next write.
func (a *archiveRows) int(p []byte) (int64, []byte, bool, error) {
	if size := 1 + a.ar.intSize; len(a.intBuf) == 0 && len(p) >= size { // the usual case: whole in p
		v, err := decodeInt(p[:size])
		return v, p[size:], true, err
	}
	need := 1 + a.ar.intSize - len(a.intBuf)
	if len(p) < need {
		a.intBuf = append(a.intBuf, p...)
		return 0, nil, false, nil
	}
	a.intBuf = append(a.intBuf, p[:need]...)
	v, err := decodeInt(a.intBuf)
	a.intBuf = a.intBuf[:0]
	return v, p[need:], true, err
}

// decodeInt reads a sign byte and the value's bytes, least significant
// first. Every COPY row is a chunk of its own: this runs once a row.
func decodeInt(b []byte) (int64, error) {
	var v uint64
	for i, c := range b[1:] {
		if i < 8 {
			v |= uint64(c) << (8 * i)
		}
	}
	if v > 1<<62 {
		return 0, errors.New("an integer out of range")
	}
	if b[0] != 0 {
		return -int64(v), nil
	}
	return int64(v), nil
}

// next moves on after an integer.
func (a *archiveRows) next(v int64) error {
	switch a.state {
	case stBlockID:
		a.block, a.lines, a.tail = v, 0, a.tail[:0]
		a.state = stChunkLen
		if a.kind == blockBlobs {
			a.state = stBlobOID
		}
	case stChunkLen:
		switch {
		case v < 0:
			return fmt.Errorf("data of entry %d: chunk length %d", a.block, v)
		case v > 0:
			a.left, a.state = v, stChunk
			return nil
		}
		if _, isTable := a.tables[a.block]; isTable {
			if !bytes.Equal(a.tail, copyEnd) {
				return fmt.Errorf("data of entry %d: the COPY data does not end with \\.", a.block)
			}
			a.rows[a.block] = a.lines - 3
		}
		a.state = stBlockType
	case stBlobOID:
		a.state = stBlobLen
		if v == 0 {
			a.state = stBlockType
		}
	case stBlobLen:
		switch {
		case v < 0:
			return fmt.Errorf("large object chunk length %d", v)
		case v == 0:
			a.state = stBlobOID
		default:
			a.left, a.state = v, stBlobChunk
		}
	}
	return nil
}

// count counts COPY lines and keeps the data's last bytes.
func (a *archiveRows) count(data []byte) {
	a.lines += int64(bytes.Count(data, []byte{'\n'}))
	if len(data) >= len(copyEnd) { // the usual case: no need for the older tail
		a.tail = append(a.tail[:0], data[len(data)-len(copyEnd):]...)
		return
	}
	a.tail = append(a.tail, data...)
	if len(a.tail) > len(copyEnd) {
		a.tail = append(a.tail[:0], a.tail[len(a.tail)-len(copyEnd):]...)
	}
}

// result ends the archive and returns the counts, table by table in
// archive order.
func (a *archiveRows) result() ([]TableCount, error) {
	if a.err == nil && a.state == stHead { // a small archive, under the retry size
		var rest []byte
		if rest, a.err = a.readHead(); a.err == nil && a.state != stHead {
			a.err = a.feed(rest)
		}
	}
	switch {
	case a.err != nil:
		return nil, a.err
	case a.state == stHead:
		return nil, errors.New("the archive ended in its header or table of contents")
	case a.state != stBlockType:
		return nil, errors.New("the archive ended in the middle of a block")
	}
	out := make([]TableCount, 0, len(a.order))
	for _, id := range a.order {
		n, ok := a.rows[id]
		t := a.tables[id]
		if !ok {
			return nil, fmt.Errorf("no data block for table %s.%s", t.Schema, t.Name)
		}
		t.Rows = n
		out = append(out, t)
	}
	return out, nil
}

// archiveReader reads the archive's integers and strings, whose width the
// header gives.
type archiveReader struct {
	r       *bufio.Reader
	intSize int
	offSize int
}

func (ar *archiveReader) byte() (byte, error) { return ar.r.ReadByte() }

// int reads a sign byte and intSize bytes, least significant first.
func (ar *archiveReader) int() (int64, error) {
	var b [17]byte
	if _, err := io.ReadFull(ar.r, b[:1+ar.intSize]); err != nil {
		return 0, err
	}
	return decodeInt(b[:1+ar.intSize])
}

// maxArchiveString bounds the strings kept; longer ones (function bodies)
// are skipped.
const maxArchiveString = 1 << 20

// str reads a string (a length, -1 for none); keep says whether it is
// wanted, else its bytes are skipped.
func (ar *archiveReader) str(keep bool) (s string, present bool, err error) {
	n, err := ar.int()
	if err != nil || n < 0 {
		return "", false, err
	}
	if !keep || n > maxArchiveString {
		_, err = ar.r.Discard(int(n))
		return "", true, err
	}
	b := make([]byte, n)
	_, err = io.ReadFull(ar.r, b)
	return string(b), true, err
}

func (ar *archiveReader) skipStrings(n int) error {
	for range n {
		if _, _, err := ar.str(false); err != nil {
			return err
		}
	}
	return nil
}

// countArchiveRows reads a whole custom-format archive and counts the
// rows of each table it holds data of.
func countArchiveRows(r io.Reader) ([]TableCount, error) {
	a := newArchiveRows()
	if _, err := io.Copy(a, r); err != nil {
		return nil, err
	}
	return a.result()
}

// head reads the header and returns the archive's version.
func (ar *archiveReader) head() (int, error) {
	magic := make([]byte, 5)
	if _, err := io.ReadFull(ar.r, magic); err != nil {
		return 0, err
	}
	if string(magic) != "PGDMP" {
		return 0, errors.New("not a pg_dump custom-format archive")
	}
	var v [6]byte
	if _, err := io.ReadFull(ar.r, v[:]); err != nil {
		return 0, err
	}
	version := int(v[0])<<16 | int(v[1])<<8 | int(v[2])
	if version < archiveMin || version > archiveMax {
		return 0, fmt.Errorf("archive version %d.%d.%d is not one this Vigie reads (1.12 to 1.16)", v[0], v[1], v[2])
	}
	ar.intSize, ar.offSize = int(v[3]), int(v[4])
	if ar.intSize < 1 || ar.intSize > 8 || ar.offSize < 1 || ar.offSize > 16 {
		return 0, fmt.Errorf("integer width %d, offset width %d", ar.intSize, ar.offSize)
	}
	if v[5] != 1 { // archCustom
		return 0, fmt.Errorf("archive format %d, not custom", v[5])
	}
	var compression int64
	if version >= archiveCompressAlg {
		b, err := ar.byte()
		if err != nil {
			return 0, err
		}
		compression = int64(b)
	} else {
		var err error
		if compression, err = ar.int(); err != nil {
			return 0, err
		}
	}
	if compression != 0 {
		return 0, errors.New("compressed archive (pg_dump runs with --compress 0)")
	}
	for range 7 { // the creation time
		if _, err := ar.int(); err != nil {
			return 0, err
		}
	}
	return version, ar.skipStrings(3) // database, server and pg_dump versions
}

// toc reads the table of contents: the TABLE DATA entries by dump ID, in
// archive order.
func (ar *archiveReader) toc(version int) (map[int64]TableCount, []int64, error) {
	count, err := ar.int()
	if err != nil {
		return nil, nil, err
	}
	tables := map[int64]TableCount{}
	var order []int64
	for range count {
		id, err := ar.int()
		if err != nil {
			return nil, nil, err
		}
		if _, err := ar.int(); err != nil { // had a data dumper
			return nil, nil, err
		}
		if err := ar.skipStrings(2); err != nil { // catalog table OID, OID
			return nil, nil, err
		}
		tag, _, err := ar.str(true)
		if err != nil {
			return nil, nil, err
		}
		desc, _, err := ar.str(true)
		if err != nil {
			return nil, nil, err
		}
		if _, err := ar.int(); err != nil { // section
			return nil, nil, err
		}
		if err := ar.skipStrings(3); err != nil { // definition, drop and copy statements
			return nil, nil, err
		}
		namespace, _, err := ar.str(true)
		if err != nil {
			return nil, nil, err
		}
		if err := ar.skipStrings(1); err != nil { // tablespace
			return nil, nil, err
		}
		if version >= archiveTableAM {
			if err := ar.skipStrings(1); err != nil {
				return nil, nil, err
			}
		}
		if version >= archiveRelkind {
			if _, err := ar.int(); err != nil {
				return nil, nil, err
			}
		}
		if err := ar.skipStrings(2); err != nil { // owner, "false" (with OIDs)
			return nil, nil, err
		}
		for { // dependencies, up to an absent string
			_, present, err := ar.str(false)
			if err != nil {
				return nil, nil, err
			}
			if !present {
				break
			}
		}
		if _, err := ar.r.Discard(1 + ar.offSize); err != nil { // the data's offset: unknown on a pipe
			return nil, nil, err
		}
		if desc == "TABLE DATA" {
			tables[id] = TableCount{Schema: namespace, Name: tag}
			order = append(order, id)
		}
	}
	return tables, order, nil
}
