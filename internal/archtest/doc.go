// Package archtest holds no code, only the test of the module's
// architecture: which packages each package may import (imports_test.go).
package archtest
