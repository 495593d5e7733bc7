//go:build unix

package config

import (
	"os"
	"syscall"
)

// OwnLikeDir gives file to the owner of dir when root writes it: root
// running `anyguard client add` or `check` for a gateway that runs as
// another user must not leave it files it cannot read.
func OwnLikeDir(file, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys.Uid == 0 {
		return nil
	}
	return os.Chown(file, int(sys.Uid), int(sys.Gid))
}
