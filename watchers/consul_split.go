package watchers

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// consulSpan is the byte range of one element of an answer's array.
type consulSpan struct{ start, end int }

// consulPrior is what a body shares with the last body split without
// error: its first prefix bytes are that body's first, its last suffix
// bytes that body's last (lower bounds will do), and spans are that body's
// spans, length its length.
type consulPrior struct {
	length, prefix, suffix int
	spans                  []consulSpan
}

// consulReuse says which spans of a split are the prior's: the first
// prefix spans are its first ones, and the spans from index at on are its
// from index from on, shifted by the difference of the lengths. The spans
// between were found in the body.
type consulReuse struct{ prefix, at, from int }

// consulSplit returns, in spans' storage, the byte ranges of the objects
// of the JSON array body. It checks the array's structure (brackets,
// commas, whitespace, strings and nesting up to each object's end), not
// the objects' contents: the decoder checks those of the objects it
// decodes, and the others are byte for byte objects it decoded before. A
// body of null is an empty array, as encoding/json reads it.
//
// Where body has the bytes of the prior body (nil: none), the prior's
// spans are taken rather than scanned again, so that an answer that
// differs in one check costs the scan of that check.
func consulSplit(body []byte, spans []consulSpan, prior *consulPrior) ([]consulSpan, consulReuse, error) {
	spans = spans[:0]
	var (
		r        consulReuse
		oldSpans []consulSpan
		delta    int
		// From suffix on, body's bytes are the prior's at the same
		// distance from the end.
		suffix = len(body) + 1
		i      int
	)
	if prior != nil {
		oldSpans, delta = prior.spans, len(body)-prior.length
		suffix = len(body) - prior.suffix
		r.prefix = sort.Search(len(oldSpans), func(k int) bool { return oldSpans[k].end > prior.prefix })
	}
	if r.prefix > 0 {
		// The bytes up to the end of the prior's span prefix-1 are the
		// prior's: its scan went through the same states up to there.
		spans = append(spans, oldSpans[:r.prefix]...)
		i = oldSpans[r.prefix-1].end
	} else {
		i = consulSkipSpace(body, 0)
		if i == len(body) {
			return spans, r, errors.New("empty body, want a JSON array of checks")
		}
		if bytes.HasPrefix(body[i:], []byte("null")) {
			if j := consulSkipSpace(body, i+4); j < len(body) {
				return spans, r, fmt.Errorf("unexpected %s after null at byte %d", consulQuoteByte(body[j]), j)
			}
			r.at, r.from = 0, len(oldSpans)
			return spans, r, nil
		}
		if body[i] != '[' {
			return spans, r, fmt.Errorf("unexpected %s at byte %d, want a JSON array of checks", consulQuoteByte(body[i]), i)
		}
		i = consulSkipSpace(body, i+1)
		if i < len(body) && body[i] == ']' {
			return spans, r, consulSplitEnd(body, i+1, spans, len(oldSpans), &r)
		}
		var err error
		if i, spans, err = consulSplitElement(body, i, spans); err != nil {
			return spans, r, err
		}
	}
	for {
		// After an element: a comma and the next, or the end.
		i = consulSkipSpace(body, i)
		if i == len(body) {
			return spans, r, fmt.Errorf("truncated after %d checks: the array is not closed", len(spans))
		}
		if body[i] == ']' {
			return spans, r, consulSplitEnd(body, i+1, spans, len(oldSpans), &r)
		}
		if body[i] != ',' {
			return spans, r, fmt.Errorf("unexpected %s at byte %d after check %d, want , or ]", consulQuoteByte(body[i]), i, len(spans)-1)
		}
		i = consulSkipSpace(body, i+1)
		if i >= suffix {
			// The rest is the prior's from here: if an element of the
			// prior started here, it was read from the same state (an
			// element expected), so the rest splits as the prior's did.
			k, ok := slices.BinarySearchFunc(oldSpans, i-delta, func(s consulSpan, start int) int { return cmp.Compare(s.start, start) })
			if ok {
				r.at, r.from = len(spans), k
				for _, s := range oldSpans[k:] {
					spans = append(spans, consulSpan{s.start + delta, s.end + delta})
				}
				return spans, r, nil
			}
		}
		var err error
		if i, spans, err = consulSplitElement(body, i, spans); err != nil {
			return spans, r, err
		}
	}
}

// consulSplitElement appends the span of the object at body[i] and returns
// the index after it.
func consulSplitElement(body []byte, i int, spans []consulSpan) (int, []consulSpan, error) {
	switch {
	case i == len(body):
		return 0, spans, fmt.Errorf("truncated after %d checks: the array is not closed", len(spans))
	case body[i] != '{':
		return 0, spans, fmt.Errorf("unexpected %s at byte %d: check %d is not a JSON object", consulQuoteByte(body[i]), i, len(spans))
	}
	end, err := consulObjectEnd(body, i)
	if err != nil {
		return 0, spans, fmt.Errorf("check %d (from byte %d): %w", len(spans), i, err)
	}
	return end, append(spans, consulSpan{i, end}), nil
}

// consulSplitEnd checks that nothing but whitespace follows the array.
func consulSplitEnd(body []byte, i int, spans []consulSpan, old int, r *consulReuse) error {
	r.at, r.from = len(spans), old
	if j := consulSkipSpace(body, i); j < len(body) {
		return fmt.Errorf("unexpected %s at byte %d after the array", consulQuoteByte(body[j]), j)
	}
	return nil
}

// consulObjectEnd returns the index after the object that starts at
// body[i]: where its brackets balance, outside strings.
func consulObjectEnd(body []byte, i int) (int, error) {
	var buf [16]byte
	open := buf[:0] // the brackets open, innermost last
	for ; i < len(body); i++ {
		switch c := body[i]; c {
		case '{', '[':
			open = append(open, c)
		case '}', ']':
			if want := open[len(open)-1] + 2; c != want { // '{'+2 is '}', '['+2 is ']'
				return 0, fmt.Errorf("unbalanced: %s at byte %d, want %s", consulQuoteByte(c), i, consulQuoteByte(want))
			}
			if open = open[:len(open)-1]; len(open) == 0 {
				return i + 1, nil
			}
		case '"':
			end := consulStringEnd(body, i+1)
			if end < 0 {
				return 0, fmt.Errorf("truncated in a string from byte %d", i)
			}
			i = end - 1 // the loop's i++ steps past the closing quote
		}
	}
	return 0, errors.New("truncated: the object is not closed")
}

// consulStringEnd returns the index after the closing quote of a string
// whose contents start at body[i], or -1 if it does not end.
func consulStringEnd(body []byte, i int) int {
	for {
		q := bytes.IndexByte(body[i:], '"')
		if q < 0 {
			return -1
		}
		q += i
		// The quote is escaped if an odd number of backslashes precede
		// it: each pair is an escaped backslash.
		b := q
		for b > i && body[b-1] == '\\' {
			b--
		}
		if (q-b)%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
}

func consulSkipSpace(body []byte, i int) int {
	for i < len(body) {
		switch body[i] {
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
