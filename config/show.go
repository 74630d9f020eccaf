package config

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteJSON writes {"config_file": ..., "values": {"plugins.enabled": {"value": ..., "source": ...}}}.
func (c *Config) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		File   string           `json:"config_file"`
		Values map[string]Value `json:"values"`
	}{c.File, c.values})
}

// WriteTOML writes the effective configuration as a TOML file that loads
// back to the same values, each line commented with where it came from.
func (c *Config) WriteTOML(w io.Writer) error {
	var b strings.Builder
	file := c.File
	if file == "" {
		file = "none, embedded defaults"
	}
	fmt.Fprintf(&b, "# Effective configuration. Config file: %s.\n# Each value is followed by where it came from.\n", file)
	table := ""
	for _, s := range settings {
		v := c.values[s.key]
		dot := strings.LastIndex(s.key, ".")
		parent, name := s.key[:dot], s.key[dot+1:]
		comment := string(v.Source)
		if v.Origin != "" {
			comment += " " + v.Origin
		}
		if v.Note != "" {
			comment += "; " + v.Note
		}
		// Unused keys left alone need no line; a secret is never written, so
		// the output loads back without a literal "<redacted>".
		if s.unused != "" && v.Source == SourceDefault {
			continue
		}
		if s.secret && v.Source != SourceDefault {
			if parent != table {
				fmt.Fprintf(&b, "\n[%s]\n", parent)
				table = parent
			}
			fmt.Fprintf(&b, "# %s = <redacted> # %s\n", name, comment)
			continue
		}
		if rules, _ := v.Value.([]Rule); s.kind == kindRules && len(rules) > 0 {
			for i, r := range rules {
				fmt.Fprintf(&b, "\n[[%s]] # %s[%d]", s.key, s.key, i)
				if i == 0 {
					fmt.Fprintf(&b, "; %s", comment)
				}
				b.WriteByte('\n')
				if r.Name != "" {
					fmt.Fprintf(&b, "name = %s\n", tomlString(r.Name))
				}
				for _, f := range []struct {
					name  string
					items []string
				}{{"plugins", r.Plugins}, {"clusters", r.Clusters}, {"verbs", r.Verbs}, {"resources", r.Resources}, {"namespaces", r.Namespaces}} {
					fmt.Fprintf(&b, "%s = %s\n", f.name, tomlValue(f.items))
				}
			}
			table = s.key
			continue
		}
		if s.kind == kindStringsMap || s.kind == kindStringMap {
			fmt.Fprintf(&b, "\n[%s] # %s\n", s.key, comment)
			switch m := v.Value.(type) {
			case map[string][]string:
				for _, k := range sortedKeys(m) {
					fmt.Fprintf(&b, "%s = %s\n", tomlString(k), tomlValue(m[k]))
				}
			case map[string]string:
				for _, k := range sortedKeys(m) {
					fmt.Fprintf(&b, "%s = %s\n", tomlString(k), tomlValue(m[k]))
				}
			}
			table = s.key
			continue
		}
		if parent != table {
			fmt.Fprintf(&b, "\n[%s]\n", parent)
			table = parent
		}
		fmt.Fprintf(&b, "%s = %s # %s\n", name, tomlValue(v.Value), comment)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return tomlString(v)
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case []Rule: // none: the written form of some is [[tables]]
		return "[]"
	case []string:
		quoted := make([]string, len(v))
		for i, s := range v {
			quoted[i] = tomlString(s)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	return fmt.Sprintf("%q", fmt.Sprint(v))
}

// tomlString quotes s as a TOML basic string, with $ doubled so that
// loading it back does not expand variables a second time.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '$':
			b.WriteString("$$")
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
