// Package nsqname is NSQ's rule for topic and channel names, for the
// packages that check names without talking to NSQ.
package nsqname

// Valid is NSQ's rule for topic and channel names.
func Valid(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '.' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
