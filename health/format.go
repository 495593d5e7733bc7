package health

import "strconv"

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// formatFloat prints f with at most one decimal.
func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
