//go:build !linux

package health

// collectProcess adds nothing: the process series come from Linux's /proc.
func collectProcess(*exposition) {}
