package config

import _ "embed"

// Example is the text of examples/anyguard.yaml: a complete configuration
// documenting every field and its default. A test keeps the two copies
// identical.
//
//go:embed example.yaml
var Example string
