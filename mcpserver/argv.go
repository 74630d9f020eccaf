package mcpserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/helpparse"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// Limits on what one tool call may hand a plugin. Linux refuses a single
// argv string over 128 KiB and a whole argv over a few MiB; these stay well
// below, and a value over them gets a clear error instead of an exec failure.
const (
	maxValueBytes = 64 << 10 // one value or positional argument
	maxArgvItems  = 1024     // elements of the built argv
	maxArgvBytes  = 1 << 20  // all elements together
)

// Property names of every plugin_* tool besides the plugin's own flags.
const (
	argsProperty    = "args"
	clusterProperty = "cluster"
	stdinProperty   = "stdin"
)

// propertyNamePattern is what MCP clients (and the models behind them)
// accept as an input property name.
var propertyNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)

// refusedFlag is why the runtime refuses a parameter's flag, or nil.
func refusedFlag(p helpparse.Parameter) error {
	if shortOnly(p) {
		return runtime.CheckFlag("", p.Short)
	}
	return runtime.CheckFlag(p.Name, "")
}

// shortOnly reports whether a parameter has no long name: helpparse then
// sets Name to the letter.
func shortOnly(p helpparse.Parameter) bool {
	return p.Short != "" && p.Name == p.Short
}

// exposedParams picks the parameters a plugin_* tool offers, in the order
// the help lists them, and says in words why each other one was left out.
func exposedParams(params []helpparse.Parameter) (kept []helpparse.Parameter, skipped []string) {
	seen := map[string]bool{}
	for _, p := range params {
		var why string
		switch {
		case !propertyNamePattern.MatchString(p.Name):
			why = "its name is not a valid property name"
		case p.Name == argsProperty || p.Name == clusterProperty || p.Name == stdinProperty:
			why = "its name is taken by the tool's own " + p.Name + " parameter"
		case refusedFlag(p) != nil:
			why = "the runtime refuses it in every call: " + refusedFlag(p).Error()
		case seen[p.Name]:
			why = "it is listed twice"
		}
		if why != "" {
			skipped = append(skipped, fmt.Sprintf("%q: %s", p.Name, why))
			continue
		}
		seen[p.Name] = true
		kept = append(kept, p)
	}
	return kept, skipped
}

// decodeArguments reads a tool call's arguments as a JSON object, keeping
// numbers exact (json.Number). Absent or null arguments are an empty object.
func decodeArguments(raw []byte) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("arguments are not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, errors.New("arguments hold more than one JSON value")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("arguments must be a JSON object, not %s", jsonKind(v))
	}
	return m, nil
}

// buildArgv turns a plugin_* tool's arguments into the plugin's argv:
// each flag as its own element (--name=value, or -x value for a flag that
// only has a short name), in the order the help lists them, then the
// positional args in the order given. Nothing is ever joined into a shell
// string. params must be what exposedParams kept; in must not hold the
// cluster (the caller takes it out).
func buildArgv(params []helpparse.Parameter, in map[string]any) ([]string, error) {
	byName := make(map[string]helpparse.Parameter, len(params))
	for _, p := range params {
		byName[p.Name] = p
	}
	var unknown []string
	for name := range in {
		if _, ok := byName[name]; !ok && name != argsProperty {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, unknownArgumentsError(unknown, params)
	}

	b := &argvBuilder{}
	for _, p := range params {
		v, given := in[p.Name]
		if !given || v == nil {
			if p.Required {
				return nil, fmt.Errorf("argument %q is required (%s)", p.Name, describeType(p))
			}
			continue
		}
		if err := b.addFlag(p, v); err != nil {
			return nil, err
		}
	}
	if v, ok := in[argsProperty]; ok && v != nil {
		list, ok := v.([]any)
		if !ok {
			if ss, isStrings := v.([]string); isStrings {
				list = make([]any, len(ss))
				for i, s := range ss {
					list[i] = s
				}
			} else {
				return nil, fmt.Errorf("argument %q must be an array of strings (the plugin's positional arguments), not %s", argsProperty, jsonKind(v))
			}
		}
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("argument %q: element %d must be a string, not %s", argsProperty, i+1, jsonKind(e))
			}
			what := fmt.Sprintf("argument %q element %d", argsProperty, i+1)
			if err := checkValue(what, s); err != nil {
				return nil, err
			}
			if err := b.add(what, s); err != nil {
				return nil, err
			}
		}
	}
	return b.argv, nil
}

type argvBuilder struct {
	argv  []string
	bytes int
}

// add appends one argv element, within the limits of one call. Values are
// checked by checkValue before they are placed into an element.
func (b *argvBuilder) add(what, s string) error {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s contains a NUL byte, which no program can receive as an argument", what)
	case len(b.argv) >= maxArgvItems:
		return fmt.Errorf("too many arguments: at most %d argv elements per call", maxArgvItems)
	case b.bytes+len(s) > maxArgvBytes:
		return fmt.Errorf("arguments too large: at most %d bytes per call in all", maxArgvBytes)
	}
	b.argv = append(b.argv, s)
	b.bytes += len(s)
	return nil
}

// checkValue refuses a value or positional argument no plugin should get.
func checkValue(what, s string) error {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s contains a NUL byte, which no program can receive as an argument", what)
	case len(s) > maxValueBytes:
		return fmt.Errorf("%s is %d bytes long; one value may be at most %d bytes", what, len(s), maxValueBytes)
	}
	return nil
}

// addFlag appends one parameter's flag element(s).
func (b *argvBuilder) addFlag(p helpparse.Parameter, v any) error {
	what := fmt.Sprintf("argument %q", p.Name)
	if p.Type == helpparse.TypeBool {
		on, ok := v.(bool)
		if !ok {
			return fmt.Errorf("%s must be a boolean (true or false), not %s", what, jsonKind(v))
		}
		switch {
		case on && shortOnly(p):
			return b.add(what, "-"+p.Short)
		case on:
			return b.add(what, "--"+p.Name)
		case shortOnly(p) && p.Default != "true":
			return nil // false is what leaving the flag out means
		case shortOnly(p):
			return b.add(what, "-"+p.Short+"=false")
		default:
			return b.add(what, "--"+p.Name+"=false")
		}
	}
	var values []string
	if p.Type == helpparse.TypeArray {
		list, ok := v.([]any)
		if !ok {
			if ss, isStrings := v.([]string); isStrings {
				for _, s := range ss {
					list = append(list, s)
				}
			} else {
				return fmt.Errorf("%s must be an array of strings (each element becomes its own flag), not %s", what, jsonKind(v))
			}
		}
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("%s: element %d must be a string, not %s", what, i+1, jsonKind(e))
			}
			values = append(values, s)
		}
	} else {
		s, err := scalarValue(p, v)
		if err != nil {
			return fmt.Errorf("%s %v", what, err)
		}
		values = []string{s}
	}
	for _, s := range values {
		if err := checkValue(what, s); err != nil {
			return err
		}
		if shortOnly(p) {
			// Two elements: getopt-style plugins and pflag alike read the
			// next element as the value, whatever it starts with.
			if err := b.add(what, "-"+p.Short); err != nil {
				return err
			}
			if err := b.add(what, s); err != nil {
				return err
			}
			continue
		}
		if err := b.add(what, "--"+p.Name+"="+s); err != nil {
			return err
		}
	}
	return nil
}

// scalarValue renders a string, duration, int or float value as the
// plugin reads it. Anything else is a type error, in words.
func scalarValue(p helpparse.Parameter, v any) (string, error) {
	switch p.Type {
	case helpparse.TypeInt:
		switch n := v.(type) {
		case json.Number:
			if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
				return strconv.FormatInt(i, 10), nil
			}
			f, err := n.Float64()
			if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				return "", fmt.Errorf("must be a whole number, not %s", n)
			}
			return strconv.FormatInt(int64(f), 10), nil
		case float64:
			if math.IsNaN(n) || math.IsInf(n, 0) || n != math.Trunc(n) || math.Abs(n) > 1<<53 {
				return "", fmt.Errorf("must be a whole number, not %v", n)
			}
			return strconv.FormatInt(int64(n), 10), nil
		case int:
			return strconv.Itoa(n), nil
		case int64:
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("must be an integer, not %s", jsonKind(v))
	case helpparse.TypeFloat:
		var f float64
		switch n := v.(type) {
		case json.Number:
			var err error
			if f, err = n.Float64(); err != nil {
				return "", fmt.Errorf("must be a number, not %s", n)
			}
		case float64:
			f = n
		case int:
			f = float64(n)
		case int64:
			f = float64(n)
		default:
			return "", fmt.Errorf("must be a number, not %s", jsonKind(v))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "", fmt.Errorf("must be a finite number")
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	default: // string, duration, and types helpparse may add later
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("must be a string, not %s", jsonKind(v))
		}
		return s, nil
	}
}

func unknownArgumentsError(unknown []string, params []helpparse.Parameter) error {
	valid := make([]string, 0, len(params)+2)
	norm := map[string]string{}
	for _, p := range params {
		valid = append(valid, p.Name)
		norm[strings.ReplaceAll(strings.ToLower(p.Name), "_", "-")] = p.Name
		if p.Short != "" && !shortOnly(p) {
			norm[p.Short] = p.Name
		}
	}
	valid = append(valid, argsProperty, clusterProperty, stdinProperty)
	var hints []string
	for _, u := range unknown {
		key := strings.ReplaceAll(strings.ToLower(strings.TrimLeft(u, "-")), "_", "-")
		if name, ok := norm[key]; ok {
			hints = append(hints, fmt.Sprintf("%q means %q", u, name))
		}
	}
	msg := fmt.Sprintf("unknown argument %s; valid arguments are: %s", quoteList(unknown), strings.Join(valid, ", "))
	if len(hints) > 0 {
		msg += " (did you mean: " + strings.Join(hints, "; ") + "?)"
	}
	msg += `. Flags the schema does not list can be passed verbatim in "args", e.g. ["--flag=value"]`
	return errors.New(msg)
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		if len(n) > 80 {
			n = n[:80] + "..."
		}
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// describeType says what JSON a parameter takes, for error messages.
func describeType(p helpparse.Parameter) string {
	switch p.Type {
	case helpparse.TypeBool:
		return "a boolean"
	case helpparse.TypeInt:
		return "an integer"
	case helpparse.TypeFloat:
		return "a number"
	case helpparse.TypeArray:
		return "an array of strings"
	case helpparse.TypeDuration:
		return "a duration string such as 30s or 5m"
	default:
		return "a string"
	}
}

// jsonKind names a decoded JSON value's type the way a JSON Schema does.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64, float32, int, int64:
		return "a number"
	case string:
		return "a string"
	case []any, []string:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
