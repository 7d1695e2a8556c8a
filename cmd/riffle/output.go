package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// output is where a command writes and how: tables sized to the
// terminal, colour only on a terminal, or JSON for scripts.
type output struct {
	// stdin is where produce reads records by default.
	stdin          io.Reader
	stdout, stderr io.Writer
	// tty is set when stdout is a terminal: perf draws progress, watch
	// redraws the screen.
	tty bool
	// color is set on a terminal unless NO_COLOR is set.
	color bool
	// width is the terminal's width in columns; tables wider are cut to
	// fit. 0 means no limit.
	width int
	// json is set by --output json.
	json bool
}

// defaultWidth is the width assumed on a terminal that does not report one.
const defaultWidth = 80

// newOutput writes to stdout and stderr, detecting whether stdout is a
// terminal. COLUMNS, when set, overrides the terminal's width; NO_COLOR,
// when set and not empty, turns colour off (https://no-color.org).
func newOutput(stdin io.Reader, stdout, stderr io.Writer) *output {
	o := &output{stdin: stdin, stdout: stdout, stderr: stderr}
	if f, ok := stdout.(*os.File); ok {
		if w, isTTY := terminal(f); isTTY {
			o.tty, o.width, o.color = true, cmp.Or(w, defaultWidth), colorWanted()
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 && o.tty {
		o.width = n
	}
	return o
}

// colorWanted reports whether a terminal gets colour: unless NO_COLOR is
// set to anything but the empty string.
func colorWanted() bool { return os.Getenv("NO_COLOR") == "" }

// emit writes v as indented JSON.
func (o *output) emit(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(o.stdout, "%s\n", b)
	return err
}

// bold wraps s in bold when colour is on.
func (o *output) bold(s string) string {
	if !o.color {
		return s
	}
	return "\x1b[1m" + s + "\x1b[0m"
}

// table is rows of cells under headers. Written as text it is aligned in
// columns and fits the terminal; as JSON it is a list of objects keyed by
// the headers in lower case.
type table struct {
	headers []string
	rows    [][]any
}

func newTable(headers ...string) *table { return &table{headers: headers} }

// row adds a row; nil cells print as "-".
func (t *table) row(cells ...any) { t.rows = append(t.rows, cells) }

// jsonKey turns a header such as REPLICATION-FACTOR into replication_factor.
func jsonKey(h string) string { return strings.ReplaceAll(strings.ToLower(h), "-", "_") }

// records returns the rows as JSON objects.
func (t *table) records() []map[string]any {
	out := make([]map[string]any, 0, len(t.rows))
	for _, r := range t.rows {
		m := make(map[string]any, len(t.headers))
		for i, h := range t.headers {
			if i < len(r) {
				m[jsonKey(h)] = r[i]
			}
		}
		out = append(out, m)
	}
	return out
}

// notable is a cell worth the reader's attention, such as a lag above
// zero: yellow on a terminal with colour, its value in JSON.
type notable struct{ v any }

// MarshalJSON encodes the value itself.
func (n notable) MarshalJSON() ([]byte, error) { return json.Marshal(n.v) }

// notableIf marks v notable when cond holds.
func notableIf(v any, cond bool) any {
	if cond {
		return notable{v}
	}
	return v
}

// cellText formats a cell for a text table.
func cellText(c any) string {
	switch v := c.(type) {
	case notable:
		return cellText(v.v)
	case nil:
		return "-"
	case string:
		return v
	case []int32:
		return ids(v)
	case float64:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return fmt.Sprint(c)
}

// minColumn is the narrowest a column is cut to when a table is too
// wide for the terminal.
const minColumn = 6

// write writes the table as aligned text, two spaces between columns,
// the header in bold on a terminal. When the table is wider than the
// terminal its widest columns are cut, their cells ending in "…".
func (t *table) write(o *output) error {
	cells := make([][]string, 0, len(t.rows)+1)
	cells = append(cells, t.headers)
	for _, r := range t.rows {
		line := make([]string, len(t.headers))
		for i := range line {
			if i < len(r) {
				line[i] = cellText(r[i])
			}
		}
		cells = append(cells, line)
	}
	widths := make([]int, len(t.headers))
	for _, line := range cells {
		for i, c := range line {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	fit(widths, o.width)
	var b strings.Builder
	for n, line := range cells {
		var l strings.Builder
		for i, c := range line {
			c = cut(c, widths[i])
			pad := ""
			if i < len(line)-1 {
				pad = strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2)
			}
			if n > 0 && o.color && i < len(t.rows[n-1]) {
				if _, ok := t.rows[n-1][i].(notable); ok {
					c = "\x1b[33m" + c + "\x1b[0m"
				}
			}
			l.WriteString(c + pad)
		}
		text := strings.TrimRight(l.String(), " ")
		if n == 0 {
			text = o.bold(text)
		}
		b.WriteString(text)
		b.WriteString("\n")
	}
	_, err := io.WriteString(o.stdout, b.String())
	return err
}

// fit narrows the widest columns until the row fits width (0: no limit),
// never below minColumn.
func fit(widths []int, width int) {
	if width <= 0 {
		return
	}
	total := 2 * (len(widths) - 1)
	for _, w := range widths {
		total += w
	}
	for total > width {
		widest := 0
		for i, w := range widths {
			if w >= widths[widest] {
				widest = i
			}
		}
		if widths[widest] <= minColumn {
			return
		}
		widths[widest]--
		total--
	}
}

// cut shortens s to n runes, marking the cut with "…".
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// print writes t as text, or as a JSON list with --output json.
func (o *output) print(t *table) error {
	if o.json {
		return o.emit(t.records())
	}
	return t.write(o)
}

// outcomes reports what a command did to each topic or group it names:
// a line on stdout for each success, on stderr for each failure, or with
// --output json a list of results on stdout.
type outcomes struct {
	o *output
	// kind is what the command acts on: topic or group.
	kind    string
	failed  int
	results []map[string]any
}

// fail reports a failure on name; detail, the broker's error message, is
// added unless err already says it.
func (r *outcomes) fail(name string, err error, detail string) {
	r.failed++
	msg := err.Error()
	if detail != "" && !strings.Contains(msg, detail) {
		msg += " (" + detail + ")"
	}
	fmt.Fprintf(r.o.stderr, "%s %s: %s\n", r.kind, name, msg)
	r.results = append(r.results, map[string]any{r.kind: name, "error": msg})
}

// done reports a success: line as text, result as JSON.
func (r *outcomes) done(line string, result map[string]any) {
	if r.o.json {
		r.results = append(r.results, result)
		return
	}
	fmt.Fprintln(r.o.stdout, line)
}

// result prints the JSON results and turns the failures into the
// command's error.
func (r *outcomes) result(verb string, total int) error {
	if r.o.json {
		if err := r.o.emit(r.results); err != nil {
			return err
		}
	}
	if r.failed == 0 {
		return nil
	}
	return fmt.Errorf("%s %s: %d of %d %ss failed", r.kind, verb, r.failed, total, r.kind)
}
