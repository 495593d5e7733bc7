package keys

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyguard/anyguard/internal/e2etest"
)

// TestCheckAccess is the key-file rule for every owner and mode that
// matters, with the message an operator reads.
func TestCheckAccess(t *testing.T) {
	const f = "/etc/anyguard/clients.key"
	for _, tc := range []struct {
		name        string
		mode        fs.FileMode
		owner, euid int
		want        error
		text        string
	}{
		{"own 0600", 0o600, 1000, 1000, nil, ""},
		{"own 0400", 0o400, 1000, 1000, nil, ""},
		{"own 0700", 0o700, 1000, 1000, nil, ""},
		{"own 0640", 0o640, 1000, 1000, ErrWorldReadable, "key file " + f + " has mode 0640, open to group or others: run chmod 600 " + f},
		{"own 0644", 0o644, 1000, 1000, ErrWorldReadable, "key file " + f + " has mode 0644, open to group or others: run chmod 600 " + f},
		{"own 0604", 0o604, 1000, 1000, ErrWorldReadable, "mode 0604"},
		{"own 0620 (group may replace it)", 0o620, 1000, 1000, ErrWorldReadable, "mode 0620"},
		{"own 0602", 0o602, 1000, 1000, ErrWorldReadable, "mode 0602"},
		{"root's own 0600", 0o600, 0, 0, nil, ""},
		{"root's own 0640", 0o640, 0, 0, ErrWorldReadable, "has mode 0640, open to group or others: run chmod 600 " + f},
		{"root-owned 0640 for a service user", 0o640, 0, 1000, nil, ""},
		{"root-owned 0440 (Kubernetes fsGroup)", 0o440, 0, 1000, nil, ""},
		{"root-owned 0400", 0o400, 0, 1000, nil, ""},
		{"root-owned 0444 (Docker secret default)", 0o444, 0, 1000, ErrWorldReadable,
			"key file " + f + " has mode 0444: a key file owned by root may be read by its group at most: run chmod 640 " + f},
		{"root-owned 0644", 0o644, 0, 1000, ErrWorldReadable, "mode 0644"},
		{"root-owned 0660 (group may replace it)", 0o660, 0, 1000, ErrWorldReadable, "mode 0660"},
		{"root-owned 0650", 0o650, 0, 1000, ErrWorldReadable, "mode 0650"},
		{"another user's 0600, run as a user", 0o600, 1001, 1000, ErrKeyFileOwner,
			"key file " + f + " is owned by uid 1001, neither by uid 1000, which anyguard runs as, nor by root: run chown 1000 " + f},
		{"another user's 0600, run as root", 0o600, 1001, 0, ErrKeyFileOwner,
			"key file " + f + " is owned by uid 1001, not by root, which anyguard runs as: run chown 0 " + f},
		{"no Unix owners", 0o666, -1, -1, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkAccess(f, tc.mode, tc.owner, tc.euid)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("checkAccess(%04o, owner %d, euid %d) = %v, want %v", tc.mode, tc.owner, tc.euid, err, tc.want)
			}
			if err == nil {
				return
			}
			if msg := err.Error(); !strings.Contains(msg, tc.text) || strings.Contains(msg, "\n") {
				t.Fatalf("message %q, want one line containing %q", msg, tc.text)
			}
			var ae *AccessError
			if !errors.As(err, &ae) || ae.Path != f {
				t.Fatalf("error %#v is no *AccessError naming the file", err)
			}
		})
	}
}

// TestReadFileAccess reads real files: the mode and owner of the file a
// path leads to decide, symbolic links included.
func TestReadFileAccess(t *testing.T) {
	dir := t.TempDir()
	k, _ := Generate()
	write := func(name string, mode fs.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(k.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	ok600 := write("ok600.key", 0o600)
	ok400 := write("ok400.key", 0o400)
	g640 := write("g640.key", 0o640)
	w644 := write("w644.key", 0o644)
	linkOK := filepath.Join(dir, "link-ok.key")
	linkBad := filepath.Join(dir, "link-bad.key")
	dangling := filepath.Join(dir, "dangling.key")
	for target, link := range map[string]string{ok600: linkOK, w644: linkBad, filepath.Join(dir, "gone"): dangling} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "dir.key"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       error
		text       string
	}{
		{"0600", ok600, nil, ""},
		{"0400", ok400, nil, ""},
		{"symlink to a 0600 file", linkOK, nil, ""},
		{"0640", g640, ErrWorldReadable, "key file " + g640 + " has mode 0640, open to group or others: run chmod 600 " + g640},
		{"0644", w644, ErrWorldReadable, "key file " + w644 + " has mode 0644, open to group or others: run chmod 600 " + w644},
		// The link's own mode (0777) means nothing; its target's does.
		{"symlink to a 0644 file", linkBad, ErrWorldReadable, "key file " + linkBad + " has mode 0644, open to group or others: run chmod 600 " + linkBad},
		{"dangling symlink", dangling, fs.ErrNotExist, "open " + dangling + ": no such file or directory"},
		{"missing", filepath.Join(dir, "missing.key"), fs.ErrNotExist, "open " + filepath.Join(dir, "missing.key") + ": no such file or directory"},
		{"directory", filepath.Join(dir, "dir.key"), nil, "read key " + filepath.Join(dir, "dir.key") + ": not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadFile(tc.path)
			if tc.text == "" {
				if err != nil || got != k {
					t.Fatalf("ReadFile = %v, %v; want the key", got, err)
				}
				return
			}
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || err.Error() != tc.text {
				t.Fatalf("ReadFile error %q, want %q (%v)", err, tc.text, tc.want)
			}
		})
	}
}

// TestReadFileOtherOwner: a 0600 key file that belongs to another user is
// refused even though this process (root) can read it: that user holds
// the key and may replace it.
func TestReadFileOtherOwner(t *testing.T) {
	e2etest.RequireRoot(t, "chown to create a file owned by another user")
	dir := t.TempDir()
	k, _ := Generate()
	p := filepath.Join(dir, "nobody.key")
	if err := os.WriteFile(p, []byte(k.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(p)
	want := "key file " + p + " is owned by uid 65534, not by root, which anyguard runs as: run chown 0 " + p
	if !errors.Is(err, ErrKeyFileOwner) || err.Error() != want {
		t.Fatalf("ReadFile = %v, want %q", err, want)
	}
	// Root's own file with the same mode is fine.
	if err := os.Chown(p, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(p); err != nil || got != k {
		t.Fatalf("after chown 0: ReadFile = %v, %v", got, err)
	}
}
