package rules

import (
	_ "embed"
	"fmt"
)

// defaultJSON is the config a first start writes: the ports worms and
// remote-access attacks use most blocked inbound, loopback whitelisted,
// everything else allowed, the contract's rate limit, and Feodo Tracker.
//
//go:embed default.json
var defaultJSON []byte

// DefaultJSON returns the embedded default config file.
func DefaultJSON() []byte { return append([]byte(nil), defaultJSON...) }

// Default returns the embedded default config, parsed.
func Default() *Config {
	c, err := Parse(defaultJSON)
	if err != nil {
		panic(fmt.Sprintf("rules: the embedded default config is invalid: %v", err))
	}
	return c
}
