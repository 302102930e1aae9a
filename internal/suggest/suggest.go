// Package suggest finds the nearest valid word for a mistyped one, to power
// "did you mean ...?" hints for unknown config keys and chat commands.
package suggest

import "strings"

// minPrefix is the shortest word accepted as an abbreviation ("st" for
// "status"); a single letter is a prefix of too many words to mean anything.
const minPrefix = 2

// Closest returns the candidate nearest to word, compared case-insensitively,
// and whether it is close enough to be worth suggesting.
//
// A candidate is close enough when its optimal-string-alignment distance
// (Levenshtein plus adjacent transpositions) to word is at most
// max(1, len(word)/3), or when one is a prefix of the other ("pin" and
// "ping"). Among close candidates the smallest distance wins, ties going to
// the earliest in candidates.
func Closest(word string, candidates []string) (string, bool) {
	w := []rune(strings.ToLower(word))
	if len(w) == 0 {
		return "", false
	}
	limit := max(1, len(w)/3)

	best, bestDist := -1, 0
	for i, cand := range candidates {
		c := []rune(strings.ToLower(cand))
		d := distance(w, c)
		if d > limit && !isPrefixPair(w, c) {
			continue
		}
		if best < 0 || d < bestDist {
			best, bestDist = i, d
		}
	}
	if best < 0 {
		return "", false
	}
	return candidates[best], true
}

// isPrefixPair reports whether the shorter of a and b starts the longer one.
func isPrefixPair(a, b []rune) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	if len(a) < minPrefix {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// distance is the optimal string alignment distance: insertions, deletions,
// substitutions and transpositions of adjacent runes each cost 1. Swapped
// letters are the most common typo, hence OSA rather than plain Levenshtein.
func distance(a, b []rune) int {
	// Three rolling rows: the transposition case looks two rows back.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
