package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy/rulesyntax"
)

// loadFile applies a TOML file. Every key must be known and of the right
// type; errors name the file, the line and the key.
func (l *loader) loadFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("read config file: %w", err))
		return
	}
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			l.errs = append(l.errs, fmt.Errorf("%s:%d:%d: %v", path, row, col, de))
		} else {
			l.errs = append(l.errs, fmt.Errorf("%s: %w", path, err))
		}
		return
	}
	f := &fileWalk{l: l, path: path, lines: keyLines(data), seen: map[string]string{}}
	f.walk("", doc)
}

type fileWalk struct {
	l     *loader
	path  string
	lines map[string]int
	seen  map[string]string // canonical key -> the file key that set it
}

// origin is the file and line of key, or of the nearest table above it
// that has a line, such as plugins.rules[2] for plugins.rules[2].verbs.
func (f *fileWalk) origin(key string) string {
	for k := key; k != ""; k = k[:max(strings.LastIndexAny(k, ".["), 0)] {
		if line, ok := f.lines[k]; ok {
			return fmt.Sprintf("%s:%d", f.path, line)
		}
	}
	return f.path
}

func (f *fileWalk) walk(prefix string, table map[string]any) {
	keys := sortedKeys(table)
	// Report in file order, so the first error is the first in the file.
	sort.SliceStable(keys, func(i, j int) bool {
		return f.lines[join(prefix, keys[i])] < f.lines[join(prefix, keys[j])]
	})
	for _, k := range keys {
		key, raw := join(prefix, k), table[k]
		s := lookupSetting(key)
		if s == nil {
			s = lookupAlias(key)
		}
		switch {
		case s != nil:
			f.apply(s, key, raw)
		case isTable(key):
			sub, ok := raw.(map[string]any)
			if !ok {
				f.l.fail(f.origin(key), key, fmt.Errorf("want a table, got %s", tomlType(raw)))
				continue
			}
			f.walk(key, sub)
		default:
			err := fmt.Errorf("unknown key")
			if guess := suggest(key); guess != "" {
				err = fmt.Errorf("unknown key (did you mean %s?)", guess)
			}
			f.l.fail(f.origin(key), key, err)
		}
	}
}

func (f *fileWalk) apply(s *setting, key string, raw any) {
	origin := f.origin(key)
	if other, dup := f.seen[s.key]; dup {
		f.l.fail(origin, key, fmt.Errorf("set %s or %s, not both", other, key))
		return
	}
	f.seen[s.key] = key
	if s.kind == kindRules {
		f.applyRules(s, key, raw)
		return
	}
	v, disp, err := f.l.fromTOML(s, raw)
	if err != nil {
		f.l.fail(origin, key, err)
		return
	}
	if key != s.key {
		origin += " (" + key + ")"
	}
	f.l.set(s, v, disp, SourceFile, origin)
}

// ruleFields are the keys of one [[plugins.rules]] entry.
var ruleFields = []string{"name", "plugins", "clusters", "verbs", "resources", "namespaces"}

// applyRules reads [[plugins.rules]]: every entry is checked, and every
// problem reported with its own key (plugins.rules[2].verbs) and line.
func (f *fileWalk) applyRules(s *setting, key string, raw any) {
	list, ok := raw.([]any)
	if !ok {
		f.l.fail(f.origin(key), key, fmt.Errorf("want a list of tables, written [[%s]], got %s", key, tomlType(raw)))
		return
	}
	errs := len(f.l.errs)
	rules := make([]Rule, 0, len(list))
	names := map[string]string{}
	for i, item := range list {
		entry := fmt.Sprintf("%s[%d]", key, i)
		r, ok := f.rule(entry, item)
		if !ok {
			continue
		}
		if r.Name != "" {
			if other, dup := names[r.Name]; dup {
				f.l.fail(f.origin(entry+".name"), entry+".name", fmt.Errorf("%q is also the name of %s", r.Name, other))
			}
			names[r.Name] = entry
		}
		rules = append(rules, r)
	}
	if len(f.l.errs) > errs {
		return
	}
	f.l.set(s, rules, cloneRules(rules), SourceFile, f.origin(key))
}

// rule reads one entry of [[plugins.rules]], named entry (plugins.rules[2]).
func (f *fileWalk) rule(entry string, item any) (Rule, bool) {
	table, ok := item.(map[string]any)
	if !ok {
		f.l.fail(f.origin(entry), entry, fmt.Errorf("want a table, got %s", tomlType(item)))
		return Rule{}, false
	}
	errs := len(f.l.errs)
	fail := func(field string, err error) {
		f.l.fail(f.origin(entry+"."+field), entry+"."+field, err)
	}
	keys := sortedKeys(table)
	sort.SliceStable(keys, func(i, j int) bool {
		return f.lines[entry+"."+keys[i]] < f.lines[entry+"."+keys[j]]
	})
	var r Rule
	lists := map[string]*[]string{
		"plugins": &r.Plugins, "clusters": &r.Clusters, "verbs": &r.Verbs,
		"resources": &r.Resources, "namespaces": &r.Namespaces,
	}
	for _, k := range keys {
		v := table[k]
		if k == "name" {
			str, ok := v.(string)
			if !ok {
				fail(k, fmt.Errorf("want a string, got %s", tomlType(v)))
				continue
			}
			str, err := f.l.expandEnv(str)
			if err == nil {
				err = rulesyntax.CheckName(str)
			}
			if err != nil {
				fail(k, err)
				continue
			}
			r.Name = str
			continue
		}
		dst, known := lists[k]
		if !known {
			err := fmt.Errorf("unknown key (want %s)", strings.Join(ruleFields, ", "))
			if guess := suggestField(k); guess != "" {
				err = fmt.Errorf("unknown key (did you mean %s?)", guess)
			}
			fail(k, err)
			continue
		}
		items, err := f.l.stringList(v)
		if errors.Is(err, errNotStrings) {
			err = fmt.Errorf("want a list of strings, got %s", tomlType(v))
		}
		if err == nil && len(items) == 0 {
			err = fmt.Errorf("empty list; %s", ruleFieldHelp[k])
		}
		if err == nil {
			err = checkRuleField(k, items)
		}
		if err != nil {
			fail(k, err)
			continue
		}
		*dst = items
	}
	for _, k := range []string{"plugins", "verbs", "resources"} {
		if _, set := table[k]; !set {
			f.l.fail(f.origin(entry), entry+"."+k, fmt.Errorf("missing; %s", ruleFieldHelp[k]))
		}
	}
	if r.Clusters == nil {
		r.Clusters = []string{"*"}
	}
	if r.Namespaces == nil {
		r.Namespaces = []string{"*"}
	}
	return r, len(f.l.errs) == errs
}

var ruleFieldHelp = map[string]string{
	"plugins":    `name the plugins the rule is for, as globs (["evict", "drain*"], or ["*"] for all)`,
	"clusters":   `leave clusters out for every cluster`,
	"verbs":      `name the verbs it allows (get, list, watch, create, update, patch, delete, deletecollection, or "*")`,
	"resources":  `name the resources it allows ("pods", "pods/log", "deployments.apps", "*/scale", or "*")`,
	"namespaces": `leave namespaces out for every namespace and cluster-scoped requests, or write "" for cluster-scoped ones only`,
}

// checkRuleField checks the items of one list of a rule.
func checkRuleField(field string, items []string) error {
	for _, item := range items {
		var err error
		switch field {
		case "plugins":
			err = glob(item)
		case "clusters":
			if item == "" {
				err = fmt.Errorf("empty cluster name or pattern")
			} else {
				err = rulesyntax.CheckGlob(item)
			}
		case "namespaces":
			err = rulesyntax.CheckGlob(item)
		case "verbs":
			err = rulesyntax.CheckVerb(item)
		case "resources":
			_, err = rulesyntax.ParseResource(item)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// suggestField returns the rule key closest to a misspelt one.
func suggestField(key string) string {
	best, bestDist := "", 3
	for _, k := range ruleFields {
		if d := distance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// fromTOML converts a decoded TOML value, expanding ${VAR} in strings.
func (l *loader) fromTOML(s *setting, raw any) (any, any, error) {
	wrongType := fmt.Errorf("want a %s, got %s", s.kind, tomlType(raw))
	switch s.kind {
	case kindBool:
		b, ok := raw.(bool)
		if !ok {
			return nil, nil, wrongType
		}
		return b, b, nil
	case kindInt:
		n, ok := raw.(int64)
		if !ok {
			return nil, nil, wrongType
		}
		if int64(int(n)) != n {
			return nil, nil, fmt.Errorf("%d is out of range", n)
		}
		return int(n), int(n), nil
	case kindString, kindPath, kindDuration:
		str, ok := raw.(string)
		if !ok {
			if s.kind == kindDuration {
				return nil, nil, fmt.Errorf("want a duration string such as \"30s\", got %s", tomlType(raw))
			}
			return nil, nil, wrongType
		}
		str, err := l.expandEnv(str)
		if err != nil {
			return nil, nil, err
		}
		return l.parseText(s, str)
	case kindStrings, kindPaths:
		items, err := l.stringList(raw)
		if errors.Is(err, errNotStrings) {
			return nil, nil, wrongType
		}
		if err != nil {
			return nil, nil, err
		}
		return l.parseList(s, items)
	case kindStringsMap:
		table, ok := raw.(map[string]any)
		if !ok {
			return nil, nil, wrongType
		}
		m := map[string][]string{}
		for k, v := range table {
			items, err := l.stringList(v)
			if errors.Is(err, errNotStrings) {
				return nil, nil, fmt.Errorf("%q: want a list of strings, got %s", k, tomlType(v))
			}
			if err != nil {
				return nil, nil, fmt.Errorf("%q: %w", k, err)
			}
			m[k] = items
		}
		return m, m, nil
	case kindStringMap:
		table, ok := raw.(map[string]any)
		if !ok {
			return nil, nil, wrongType
		}
		m := map[string]string{}
		for k, v := range table {
			str, ok := v.(string)
			if !ok {
				return nil, nil, fmt.Errorf("%q: want a string, got %s", k, tomlType(v))
			}
			str, err := l.expandEnv(str)
			if err != nil {
				return nil, nil, fmt.Errorf("%q: %w", k, err)
			}
			m[k] = str
		}
		return m, m, nil
	}
	return nil, nil, fmt.Errorf("unknown kind %v", s.kind)
}

// errNotStrings is stringList's error for a value that is not a list of
// strings, as opposed to an unset variable in one of them.
var errNotStrings = errors.New("not a list of strings")

func (l *loader) stringList(raw any) ([]string, error) {
	list, ok := raw.([]any)
	if !ok {
		return nil, errNotStrings
	}
	out := make([]string, 0, len(list))
	for _, item := range list {
		str, ok := item.(string)
		if !ok {
			return nil, errNotStrings
		}
		str, err := l.expandEnv(str)
		if err != nil {
			return nil, err
		}
		out = append(out, str)
	}
	return out, nil
}

// expandEnv replaces ${VAR} and $VAR, and $$ with a literal $. An unset
// variable is an error: an empty token or path is a worse surprise than a
// refusal to start.
func (l *loader) expandEnv(s string) (string, error) {
	var b strings.Builder
	var missing []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		var name string
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
			continue
		case next == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ in %q (write $$ for a literal $)", s)
			}
			name, i = s[i+2:i+end], i+end
		default:
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || j > i+1 && s[j] >= '0' && s[j] <= '9') {
				j++
			}
			if j == i+1 {
				b.WriteByte('$')
				continue
			}
			name, i = s[i+1:j], j-1
		}
		v, ok := l.opts.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		b.WriteString(v)
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set (write $$ for a literal $)", strings.Join(missing, ", "))
	}
	return b.String(), nil
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date or time"
	}
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// keyLines maps each dotted key of a TOML document to the line it is
// first written on, for error messages. An entry of an array of tables is
// indexed: the second [[plugins.rules]] is plugins.rules[1], and its verbs
// plugins.rules[1].verbs; plugins.rules itself is the first entry's line.
// Inline tables in an array (rules = [{...}, {...}]) are indexed alike.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	last := map[string]int{} // array of tables -> index of its latest entry
	mark := func(key []string, n *unstable.Node) {
		dotted := strings.Join(key, ".")
		if _, ok := lines[dotted]; !ok {
			lines[dotted] = p.Shape(n.Raw).Start.Line
		}
	}
	// record appends the parts of a key to prefix. A part that names an
	// array of tables gets the index of its latest entry, or, as the last
	// part of an [[array]] header, the index of the entry it opens.
	record := func(prefix []string, it unstable.Iterator, header bool) []string {
		key := append([]string(nil), prefix...)
		for it.Next() {
			n := it.Node()
			key = append(key, string(n.Data))
			mark(key, n)
			dotted := strings.Join(key, ".")
			i, isArray := last[dotted]
			if header && it.IsLast() {
				if isArray {
					i++
				}
				last[dotted], isArray = i, true
			}
			if isArray {
				key[len(key)-1] += fmt.Sprintf("[%d]", i)
				mark(key, n)
			}
		}
		return key
	}
	var inline func(prefix []string, n *unstable.Node)
	var array func(key []string, n *unstable.Node)
	value := func(key []string, v *unstable.Node) {
		switch v.Kind {
		case unstable.InlineTable:
			inline(key, v)
		case unstable.Array:
			array(key, v)
		}
	}
	inline = func(prefix []string, n *unstable.Node) {
		for it := n.Children(); it.Next(); {
			kv := it.Node()
			if kv.Kind != unstable.KeyValue {
				continue
			}
			value(record(prefix, kv.Key(), false), kv.Value())
		}
	}
	array = func(key []string, n *unstable.Node) {
		i := 0
		for it := n.Children(); it.Next(); i++ {
			if v := it.Node(); v.Kind == unstable.InlineTable {
				entry := append([]string(nil), key...)
				entry[len(entry)-1] += fmt.Sprintf("[%d]", i)
				mark(entry, v)
				inline(entry, v)
			}
		}
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			table = record(nil, e.Key(), false)
		case unstable.ArrayTable:
			table = record(nil, e.Key(), true)
		case unstable.KeyValue:
			value(record(table, e.Key(), false), e.Value())
		}
	}
	return lines
}

// suggest returns the known key closest to a misspelt one.
func suggest(key string) string {
	best, bestDist := "", 4
	for _, s := range settings {
		for _, k := range []string{s.key, s.alias} {
			// Compare with the key and each table above it, so [plugin] finds plugins.
			for ; k != ""; k = k[:max(strings.LastIndex(k, "."), 0)] {
				if d := distance(key, k); d < bestDist {
					best, bestDist = k, d
				}
			}
		}
	}
	return best
}

// distance is the Levenshtein distance between two strings.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
