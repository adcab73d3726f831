package main

import (
	"fmt"
	"io"
	"strings"
)

// Marks of the checklist. They are plain ASCII so that they survive any
// terminal, log file and e-mail.
const (
	markOK   = "[ok]"
	markFail = "[FAIL]"
	markSkip = "[skip]"
)

// Layout of a checklist line: two spaces, the mark padded to 7 columns,
// the check's name padded to 11, then the summary. Details and hints start
// under the summary and wrap at hintWidth columns.
const (
	detailIndent = "                    "
	hintWidth    = 80
)

// check is one line of the checklist with the lines under it.
type check struct {
	name    string
	summary string
	// details are "label: value" lines that show what was found.
	details []string
	// hints are the plain-language steps that fix a failure.
	hints []string
}

// report prints a cluster's checklist as the checks finish, so that a slow
// step shows where it waits.
type report struct {
	w       io.Writer
	passed  int
	failed  int
	skipped int
}

func (r *report) ok(c check) {
	r.passed++
	r.print(markOK, c)
}

func (r *report) fail(c check) {
	r.failed++
	r.print(markFail, c)
}

// skip prints a check that did not run, and why.
func (r *report) skip(name, reason string) {
	r.skipWithHints(check{name: name, summary: reason})
}

// skipWithHints prints a check that did not run, with what to do to run it.
func (r *report) skipWithHints(c check) {
	r.skipped++
	r.print(markSkip, c)
}

// info prints a line that is not a check, such as the URL being checked.
func (r *report) info(format string, args ...any) {
	fmt.Fprintf(r.w, "  "+format+"\n", args...)
}

func (r *report) print(mark string, c check) {
	writeWrapped(r.w, fmt.Sprintf("  %-6s %-10s ", mark, c.name), detailIndent, c.summary)
	for _, line := range c.details {
		writeWrapped(r.w, detailIndent, detailIndent+"  ", line)
	}
	for _, hint := range c.hints {
		writeWrapped(r.w, detailIndent+"hint: ", detailIndent+"      ", hint)
	}
}

func (r *report) summary(cluster string) {
	total := r.passed + r.failed
	skipped := ""
	if r.skipped > 0 {
		skipped = fmt.Sprintf(", %d skipped", r.skipped)
	}
	if r.failed == 0 {
		fmt.Fprintf(r.w, "cluster %s: all %d checks passed%s\n", cluster, total, skipped)
		return
	}
	fmt.Fprintf(r.w, "cluster %s: %d of %d checks failed%s\n", cluster, r.failed, total, skipped)
}

// writeWrapped writes text in lines of at most hintWidth columns, where
// the words allow it: the first line after first, the others after rest.
// A label, a word that ends in a colon, stays on the line of the word
// after it.
func writeWrapped(w io.Writer, first, rest, text string) {
	line := first
	previous := ""
	for _, word := range strings.Fields(text) {
		if previous != "" && !strings.HasSuffix(previous, ":") && len(line)+1+len(word) > hintWidth {
			fmt.Fprintln(w, line)
			line, previous = rest, ""
		}
		if previous != "" {
			line += " "
		}
		line += word
		previous = word
	}
	fmt.Fprintln(w, line)
}
