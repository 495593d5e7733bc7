package keys

import (
	"fmt"
	"io/fs"
)

// AccessError is a key file refused for its mode or owner. Its message is
// one line naming the file and the command that fixes it.
type AccessError struct {
	Path  string
	Mode  fs.FileMode // permission bits of the file
	Owner int         // uid owning the file
	EUID  int         // uid of this process
	Err   error       // ErrWorldReadable or ErrKeyFileOwner
}

func (e *AccessError) Error() string {
	if e.Err == ErrKeyFileOwner {
		if e.EUID == 0 {
			return fmt.Sprintf("key file %s is owned by uid %d, not by root, which anyguard runs as: run chown 0 %s", e.Path, e.Owner, e.Path)
		}
		return fmt.Sprintf("key file %s is owned by uid %d, neither by uid %d, which anyguard runs as, nor by root: run chown %d %s", e.Path, e.Owner, e.EUID, e.EUID, e.Path)
	}
	if e.Owner == 0 && e.EUID != 0 {
		return fmt.Sprintf("key file %s has mode %04o: a key file owned by root may be read by its group at most: run chmod 640 %s", e.Path, uint32(e.Mode), e.Path)
	}
	return fmt.Sprintf("key file %s has mode %04o, open to group or others: run chmod 600 %s", e.Path, uint32(e.Mode), e.Path)
}

func (e *AccessError) Unwrap() error { return e.Err }

// checkAccess is the rule for key files, given the file's permission bits,
// its owner's uid (-1 where the platform has no Unix owners: no check) and the uid this
// process runs as:
//
//   - owned by this process's user: no access for group or others (0600,
//     0400), as ssh demands of a private key;
//   - owned by root while this process runs as another user: group read
//     at most (0640, 0440), as PostgreSQL allows for its key file, so that
//     a root-owned secret can be granted to the service through its group
//     (Kubernetes' fsGroup does exactly that); root can read any file
//     anyway, so trusting it costs nothing;
//   - owned by anyone else: refused, whatever the mode, since that user
//     holds the key and can replace it.
//
// World-readable files are refused in every case, even root's 0444
// container secrets: other users of the host or the container could read
// the key. docs/security.md says how to mount secrets with mode 0400.
func checkAccess(path string, mode fs.FileMode, owner, euid int) error {
	mode = mode.Perm()
	var open fs.FileMode
	switch {
	case owner < 0:
		// No Unix owners on this platform, and no meaningful mode either
		// (Windows reports 0666 for every writable file): nothing to judge.
		return nil
	case owner == euid:
		open = mode & 0o077
	case owner == 0:
		open = mode & 0o037 // group read allowed
	default:
		return &AccessError{Path: path, Mode: mode, Owner: owner, EUID: euid, Err: ErrKeyFileOwner}
	}
	if open != 0 {
		return &AccessError{Path: path, Mode: mode, Owner: owner, EUID: euid, Err: ErrWorldReadable}
	}
	return nil
}
