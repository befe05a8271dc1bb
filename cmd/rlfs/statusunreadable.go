package main

import (
	"fmt"
	"io"
	"os"
)

// unreadableMeter is a meter of a mount that rlfs status lists but whose
// status this user may not read (the meter's mode is its access control):
// a row of the table that says so, and an entry of the "unreadable" list
// of --json.
type unreadableMeter struct {
	Name  string `json:"meter"`
	Error string `json:"error"`
}

// notReadable is meter name, unreadable by this user.
func notReadable(name string) unreadableMeter {
	return unreadableMeter{Name: name, Error: notReadableText() + ": permission denied"}
}

// notReadableText says who may not read: this user, by uid.
func notReadableText() string {
	return fmt.Sprintf("not readable by this user (uid %d)", os.Getuid())
}

// row prints u as a table row: its name, and in place of the figures it
// cannot show, why.
func (u unreadableMeter) row(w io.Writer) {
	fmt.Fprintf(w, "%s\t-\t-\t-\t-\t%s\n", shorten(u.Name, nameColumn), u.Error)
}
