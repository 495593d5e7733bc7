//go:build !unix

package config

// OwnLikeDir does nothing here: file ownership is Unix's.
func OwnLikeDir(file, dir string) error { return nil }
