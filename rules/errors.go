package rules

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a config, at Path (`rules[2].ports[0]`).
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// ValidationError lists every problem found in a config, in file order.
// Its message is the first one, so a CLI prints one clear line.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 0 {
		return "invalid config"
	}
	msg := e.Problems[0].Error()
	if n := len(e.Problems) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more %s)", n, plural(n, "problem", "problems"))
	}
	return msg
}

// SyntaxError is malformed JSON, located by line and column (1-based).
type SyntaxError struct {
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// newSyntaxError locates the byte at 1-based position pos (encoding/json's
// Offset counts the offending byte; pos past the end points just after it).
func newSyntaxError(data []byte, pos int64, msg string) *SyntaxError {
	if pos < 1 {
		pos = 1
	}
	before := data[:min(pos-1, int64(len(data)))]
	line := 1 + strings.Count(string(before), "\n")
	col := len(before) - strings.LastIndexByte(string(before), '\n')
	return &SyntaxError{Line: line, Column: col, Msg: msg}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
