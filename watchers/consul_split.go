package watchers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
)

// consulWindow is how much of a body is read at a time; a check larger
// than the window widens it.
const consulWindow = 64 << 10

// consulSplitter splits the body of a health answer, a JSON array of
// objects, into the bytes of its objects as they arrive: it holds a window
// of a few checks, not the whole body (4.6 MB for 10,000 checks).
//
// It checks the array's structure (brackets, commas, whitespace, strings
// and nesting up to each object's end), not the objects' contents: the
// decoder checks those of the objects it decodes, and the others are byte
// for byte objects it decoded before. A body of null is an empty array,
// as encoding/json reads it.
type consulSplitter struct {
	r      io.Reader
	window []byte // window[at:] is read and not consumed yet
	at     int
	base   int  // the body's byte at window[0]
	ended  bool // the body is read to its end, or broke off
	opened bool // the array's opening bracket is read
	n      int  // elements begun
}

// next moves to the next element of the array and checks that it is an
// object, which the caller then consumes (object or skip). It returns
// false at the array's end, once the rest of the body is whitespace.
func (s *consulSplitter) next() (bool, error) {
	if !s.opened {
		return s.open()
	}
	// After an element: a comma and the next, or the end.
	if !s.space() {
		return false, fmt.Errorf("truncated after %d checks: the array is not closed", s.n)
	}
	switch c := s.window[s.at]; c {
	case ']':
		return false, s.close()
	case ',':
		s.at++
		return s.element()
	default:
		return false, fmt.Errorf("unexpected %s at byte %d after check %d, want , or ]", consulQuoteByte(c), s.pos(), s.n-1)
	}
}

// open reads the body up to its first element.
func (s *consulSplitter) open() (bool, error) {
	s.opened = true
	if !s.space() {
		return false, errors.New("empty body, want a JSON array of checks")
	}
	if s.fill(4); bytes.HasPrefix(s.window[s.at:], []byte("null")) {
		s.at += 4
		if s.space() {
			return false, fmt.Errorf("unexpected %s after null at byte %d", consulQuoteByte(s.window[s.at]), s.pos())
		}
		return false, nil
	}
	if c := s.window[s.at]; c != '[' {
		return false, fmt.Errorf("unexpected %s at byte %d, want a JSON array of checks", consulQuoteByte(c), s.pos())
	}
	s.at++
	if s.space() && s.window[s.at] == ']' {
		return false, s.close()
	}
	return s.element()
}

// element checks that an element starts here, and that it is an object.
func (s *consulSplitter) element() (bool, error) {
	switch {
	case !s.space():
		return false, fmt.Errorf("truncated after %d checks: the array is not closed", s.n)
	case s.window[s.at] != '{':
		return false, fmt.Errorf("unexpected %s at byte %d: check %d is not a JSON object", consulQuoteByte(s.window[s.at]), s.pos(), s.n)
	}
	s.n++
	return true, nil
}

// close reads the closing bracket: nothing but whitespace may follow.
func (s *consulSplitter) close() error {
	s.at++
	if s.space() {
		return fmt.Errorf("unexpected %s at byte %d after the array", consulQuoteByte(s.window[s.at]), s.pos())
	}
	return nil
}

// object consumes the object that starts here and returns its bytes,
// valid until the next read.
func (s *consulSplitter) object() ([]byte, error) {
	for {
		end, err := consulObjectEnd(s.window, s.at, s.base, s.ended)
		switch {
		case err != nil:
			return nil, err
		case end >= 0:
			obj := s.window[s.at:end]
			s.at = end
			return obj, nil
		}
		// The window ends in it: read as much again as it holds of it (a
		// large check is scanned a few times, not once per read).
		s.fill(2 * (len(s.window) - s.at))
	}
}

// peek returns the next n bytes, nil if the body ends first.
func (s *consulSplitter) peek(n int) []byte {
	if !s.fill(n) {
		return nil
	}
	return s.window[s.at : s.at+n]
}

// skip consumes n bytes: an object the caller knows by its bytes.
func (s *consulSplitter) skip(n int) { s.at += n }

// pos is the body's byte where the window is.
func (s *consulSplitter) pos() int { return s.base + s.at }

// fill reads until n bytes are unconsumed, or the body ends, and says
// whether they are.
func (s *consulSplitter) fill(n int) bool {
	for len(s.window)-s.at < n && !s.ended {
		if s.at > 0 { // what is consumed makes room
			k := copy(s.window, s.window[s.at:])
			s.base += s.at
			s.window, s.at = s.window[:k], 0
		}
		if len(s.window) == cap(s.window) {
			s.window = slices.Grow(s.window, max(consulWindow, cap(s.window)))
		}
		k, err := s.r.Read(s.window[len(s.window):cap(s.window)])
		s.window = s.window[:len(s.window)+k]
		s.ended = err != nil
	}
	return len(s.window)-s.at >= n
}

// space skips whitespace, and says whether anything follows it.
func (s *consulSplitter) space() bool {
	for s.fill(1) {
		if s.at = consulSkipSpace(s.window, s.at); s.at < len(s.window) {
			return true
		}
	}
	return false
}

// consulObjectEnd returns the index after the object that starts at b[i]:
// where its brackets balance, outside strings. base is the body's byte at
// b[0]; last says whether b holds the rest of the body: if not, an object
// b cuts short gives -1, for the caller to read on.
func consulObjectEnd(b []byte, i, base int, last bool) (int, error) {
	var buf [16]byte
	open := buf[:0] // the brackets open, innermost last
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '{', '[':
			open = append(open, c)
		case '}', ']':
			if want := open[len(open)-1] + 2; c != want { // '{'+2 is '}', '['+2 is ']'
				return 0, fmt.Errorf("unbalanced: %s at byte %d, want %s", consulQuoteByte(c), base+i, consulQuoteByte(want))
			}
			if open = open[:len(open)-1]; len(open) == 0 {
				return i + 1, nil
			}
		case '"':
			end := consulStringEnd(b, i+1)
			if end < 0 {
				if !last {
					return -1, nil
				}
				return 0, fmt.Errorf("truncated in a string from byte %d", base+i)
			}
			i = end - 1 // the loop's i++ steps past the closing quote
		}
	}
	if !last {
		return -1, nil
	}
	return 0, errors.New("truncated: the object is not closed")
}

// consulStringEnd returns the index after the closing quote of a string
// whose contents start at b[i], or -1 if it does not end.
func consulStringEnd(b []byte, i int) int {
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return -1
		}
		q += i
		// The quote is escaped if an odd number of backslashes precede
		// it: each pair is an escaped backslash.
		k := q
		for k > i && b[k-1] == '\\' {
			k--
		}
		if (q-k)%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
}

func consulSkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func consulQuoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
