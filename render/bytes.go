package render

import "fmt"

// Bytes prints a byte count in binary units, three significant digits.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n), 0
	for v >= unit && exp < 5 {
		v /= unit
		exp++
	}
	suffix := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[exp-1]
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, suffix)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, suffix)
	}
	return fmt.Sprintf("%.2f %s", v, suffix)
}
