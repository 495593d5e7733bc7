package device

import (
	"os"
	"path/filepath"
	"strconv"
)

// hsWriteSeed writes msg as a Go fuzzing corpus entry at path.
func hsWriteSeed(path string, msg []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(msg))+")\n"), 0o644)
}
