// Package helpparse turns a command-line tool's --help text into a description and typed flag parameters.
package helpparse

import (
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Parameter is one flag a plugin accepts.
type Parameter struct {
	Name        string `json:"name"`            // long name without dashes, e.g. "namespace"; for short-only flags the letter
	Short       string `json:"short,omitempty"` // one-letter alias without dash
	Type        string `json:"type"`            // "string", "int", "bool", "duration", "float", "array"
	Required    bool   `json:"required"`
	Description string `json:"description,omitempty"`
	Default     string `json:"default,omitempty"`
	// OptionalValue is set for pflag's `--flag[="x"]`: the flag may be given without a value, meaning this.
	OptionalValue string `json:"optional_value,omitempty"`
	// ValueName is the placeholder as written (e.g. "string", "Level", "FILE"),
	// without <> and a trailing "...".
	ValueName string `json:"value_name,omitempty"`
}

// Help is what a plugin's --help says about it.
type Help struct {
	Description string      // short help: first meaningful line/sentence
	Usage       string      // the usage line(s), if any
	Layout      string      // "cobra", "urfave", "kingpin", "getopts" or "" when nothing was recognised
	Parameters  []Parameter // in the order the help lists them, de-duplicated by Name (first wins)
}

// Types a Parameter can have.
const (
	TypeString   = "string"
	TypeInt      = "int"
	TypeBool     = "bool"
	TypeDuration = "duration"
	TypeFloat    = "float"
	TypeArray    = "array"
)

// MaxInput caps the work: help texts are a few KiB, anything past this is
// not help (or not worth an agent's context) and is ignored.
const MaxInput = 256 << 10

// maxLine caps one line so a pathological line cannot dominate the work.
const maxLine = 4096

// Parse reads a --help text. It never fails: what it does not recognise is
// left out, and an empty Help comes back for text that is not help at all.
func Parse(text string) Help {
	if len(text) > MaxInput {
		text = text[:MaxInput]
		if i := strings.LastIndexByte(text, '\n'); i > 0 {
			text = text[:i]
		}
	}
	p := &parser{byName: map[string]int{}}
	p.run(normalize(text))
	return p.result()
}

type line struct {
	text   string // tabs expanded, right-trimmed
	indent int
}

var ansiRe = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// normalize strips colours and carriage returns and expands tabs. A tab after
// text is at least two spaces: it separates columns like a wide gap does.
func normalize(text string) []line {
	text = ansiRe.ReplaceAllString(text, "")
	raw := strings.Split(strings.ReplaceAll(text, "\r", ""), "\n")
	out := make([]line, 0, len(raw))
	var b strings.Builder
	for _, r := range raw {
		if len(r) > maxLine {
			r = r[:maxLine]
		}
		b.Reset()
		col, lead := 0, true
		for _, c := range r {
			switch {
			case c == '\t':
				n := 8 - col%8
				if !lead && n < 2 {
					n = 2
				}
				b.WriteString(strings.Repeat(" ", n))
				col += n
			case unicode.IsControl(c):
				// dropped: NULs, backspaces (man-style bold) and the like
			default:
				if c != ' ' {
					lead = false
				}
				b.WriteRune(c)
				col++
			}
		}
		t := strings.TrimRightFunc(b.String(), unicode.IsSpace)
		ind := len(t) - len(strings.TrimLeft(t, " "))
		out = append(out, line{text: t, indent: ind})
	}
	return out
}

type sectionKind int

const (
	secIntro       sectionKind = iota // before any header, or after an inline usage line
	secUsage                          // "Usage:" header
	secUsageInline                    // "Usage: prog ..." on one line
	secName                           // urfave's NAME:
	secDescription                    // DESCRIPTION:
	secCommands                       // subcommand lists: no flags there
	secExamples                       // examples: no flags there
	secFlags                          // Flags:, OPTIONS:, ...
	secOther
)

// flag styles seen, to tell layouts apart
const (
	stylePflag   = 1 << iota // --name string: a lower-case pflag type name
	styleUrfave              // --name value, -n value
	styleKingpin             // --name=PLACEHOLDER, --[no-]name
	styleKubectl             // --name='default':
	styleListing             // "prog -x : text" in a usage block
)

type param struct {
	Parameter
	desc      []string
	descCol   int
	indent    int
	quotedDef bool // the default was quoted, so it is a string
	generic   bool // placeholder says nothing about the type: infer it from the default
	long      bool // written with a long name
}

type parser struct {
	params []*param
	byName map[string]int

	cur *param

	section     sectionKind
	description string
	usage       []string
	usageForms  []string // usage lines that are a command form (not a listing)
	prog        string

	styles       int
	upperOptions bool // urfave's OPTIONS: / GLOBAL OPTIONS:
	cobraHeader  bool // Flags:, Global Flags:, Inherited Flags:, cobra's trailer
	contextHelp  bool // kingpin/kong's "Show context-sensitive help."
	lowerUsage   bool // kingpin's "usage: prog [<flags>]"
}

var (
	headerRe      = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9 ()_/,'-]{0,48}):$`)
	inlineUsageRe = regexp.MustCompile(`^(?i)(usage):\s+(\S.*)$`)
	cobraTrailer  = regexp.MustCompile(`^Use "[^"]+ --help" for more information`)
)

func (p *parser) run(lines []line) {
	for _, l := range lines {
		p.line(l)
	}
	p.endParam()
}

func (p *parser) line(l line) {
	t := strings.TrimSpace(l.text)
	if t == "" {
		p.endParam()
		if p.section == secUsageInline {
			p.section = secIntro
		}
		return
	}
	if strings.Contains(t, "context-sensitive help") {
		p.contextHelp = true
	}
	if cobraTrailer.MatchString(t) {
		p.cobraHeader = true
	}
	// A line inside the current flag's description.
	if c := p.cur; c != nil {
		if c.descCol > 0 && l.indent >= c.descCol {
			c.desc = append(c.desc, t)
			return
		}
		if l.indent > c.indent {
			if p.flagLine(l) {
				return
			}
			if c.descCol == 0 {
				c.descCol = l.indent
			}
			c.desc = append(c.desc, t)
			return
		}
		p.endParam()
	}
	if l.indent <= 1 {
		if m := inlineUsageRe.FindStringSubmatch(t); m != nil {
			p.section = secUsageInline
			p.lowerUsage = m[1] == "usage"
			p.usageLine(m[2], l.indent+strings.Index(t, m[2]))
			return
		}
		if m := headerRe.FindStringSubmatch(t); m != nil && len(strings.Fields(m[1])) <= 5 {
			p.header(m[1])
			return
		}
	}
	switch p.section {
	case secCommands, secExamples:
		return
	case secUsage, secUsageInline:
		if strings.HasPrefix(t, "-") && p.flagLine(l) {
			return
		}
		// Go's flag package prints "Usage of prog:" then the usage at column 0.
		if l.indent == 0 && !(p.section == secUsage && len(p.usage) == 0) {
			// a new paragraph, not a (wrapped) usage line
			if p.section == secUsage {
				p.section = secOther
			} else {
				p.section = secIntro
			}
			break
		}
		p.usageLine(t, l.indent)
		return
	case secName, secDescription:
		if p.description == "" {
			t = nameDashRe.ReplaceAllString(t, "")
			p.setDescription(t)
		}
		return
	}
	if strings.HasPrefix(t, "-") && p.flagLine(l) {
		return
	}
	if p.section == secIntro && p.description == "" {
		p.setDescription(t)
	}
}

var nameDashRe = regexp.MustCompile(`^\S+ - `)

func (p *parser) header(name string) {
	lower := strings.ToLower(name)
	switch {
	case lower == "usage" || lower == "synopsis" || strings.HasPrefix(lower, "usage of "):
		p.section = secUsage
	case lower == "name":
		p.section = secName
	case lower == "description":
		p.section = secDescription
	case strings.Contains(lower, "example"):
		p.section = secExamples
	case strings.Contains(lower, "command") || strings.Contains(lower, "topic"):
		p.section = secCommands
	case strings.Contains(lower, "flag") || strings.Contains(lower, "option"):
		p.section = secFlags
		if name == "OPTIONS" || name == "GLOBAL OPTIONS" {
			p.upperOptions = true
		}
		if name == "Flags" || name == "Global Flags" || name == "Inherited Flags" || name == "Local Flags" {
			p.cobraHeader = true
		}
	default:
		p.section = secOther
	}
}

var sentenceEndRe = regexp.MustCompile(`[.!?]\s+[A-Z("']`)

func (p *parser) setDescription(t string) {
	if strings.HasSuffix(t, ":") { // "For example:" introduces, it does not describe
		return
	}
	if loc := sentenceEndRe.FindStringIndex(t); loc != nil {
		t = t[:loc[0]+1]
	}
	p.description = t
}

// listingSepRe separates a flag (or a usage form) from its description: a
// wide gap, or kubectx-style " : ".
var listingSepRe = regexp.MustCompile(` {2,}:? *| +: +| +:$`)

// usageLine records a usage line t that starts at column col.
func (p *parser) usageLine(t string, col int) {
	p.usage = append(p.usage, t)
	words := strings.Fields(t)
	if p.prog == "" {
		p.prog = words[0]
	}
	loc := listingSepRe.FindStringIndex(t)
	if loc == nil {
		p.usageForms = append(p.usageForms, t)
		return
	}
	// "prog -c, --current   : show the current context" (kubectx): a
	// listing of modes, each with its flags.
	if words[0] != p.prog {
		return
	}
	spec := t[:loc[0]]
	desc := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t[loc[1]:]), ":"))
	sw := strings.Fields(spec)
	i := 1
	for i < len(sw) && i <= 2 && !strings.HasPrefix(sw[i], "-") {
		i++
	}
	if i >= len(sw) || !strings.HasPrefix(sw[i], "-") {
		return
	}
	sp, ok := parseSpec(strings.Join(sw[i:], " "))
	if !ok {
		return
	}
	pr := sp.param()
	pr.desc = []string{desc}
	pr.indent = col + strings.Index(t, sw[i])
	pr.descCol = col + loc[1]
	p.styles |= styleListing
	p.startParam(pr)
}

// kubectlRe is kubectl's own flag style: `-A, --all-namespaces=false:` with
// the description after the colon or on the following (tab-indented) lines.
var kubectlRe = regexp.MustCompile(`^(?:-([A-Za-z0-9]),\s*)?--([A-Za-z0-9][A-Za-z0-9_.-]*)=('(?:[^']|'')*'|\[[^\]]*\]|[^\s']*?):(?:\s+(.*))?$`)

// flagLine parses l as the start of a flag's entry; it returns false when l
// is not one.
func (p *parser) flagLine(l line) bool {
	t := strings.TrimSpace(l.text)
	if !strings.HasPrefix(t, "-") {
		return false
	}
	if m := kubectlRe.FindStringSubmatch(t); m != nil {
		pr := kubectlParam(m[1], m[2], m[3])
		pr.indent = l.indent
		if m[4] != "" {
			pr.desc = []string{m[4]}
			pr.descCol = l.indent + strings.Index(t, m[4])
		}
		p.styles |= styleKubectl
		p.startParam(pr)
		return true
	}
	spec, desc := t, ""
	descCol := 0
	if loc := listingSepRe.FindStringIndex(t); loc != nil {
		spec = t[:loc[0]]
		desc = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t[loc[1]:]), ":"))
		if desc != "" {
			descCol = l.indent + strings.Index(t[loc[0]:], desc) + loc[0]
		}
	}
	sp, ok := parseSpec(spec)
	if !ok {
		return false
	}
	pr := sp.param()
	if desc != "" {
		pr.desc = []string{desc}
	}
	pr.indent = l.indent
	pr.descCol = descCol
	p.styles |= sp.style
	p.startParam(pr)
	return true
}

func (p *parser) startParam(pr *param) {
	p.endParam()
	p.cur = pr
}

var helpNames = map[string]bool{"help": true, "help-long": true, "help-man": true}

func (p *parser) endParam() {
	pr := p.cur
	if pr == nil {
		return
	}
	p.cur = nil
	pr.finish()
	if helpNames[pr.Name] || (pr.Name == "h" && pr.Type == TypeBool) {
		return
	}
	if _, dup := p.byName[pr.Name]; dup {
		return
	}
	p.byName[pr.Name] = len(p.params)
	p.params = append(p.params, pr)
}

var (
	// urfave's "[$ENV]" and kong's "($ENV)" name the environment variables
	// that also set a flag: noise for a caller that passes flags.
	envSuffixRe  = regexp.MustCompile(`\s*(?:\[\$[A-Za-z_][A-Za-z0-9_]*(?:,\s*\$[A-Za-z_][A-Za-z0-9_]*)*\]|\(\$[A-Za-z_][A-Za-z0-9_]*(?:,\s*\$[A-Za-z_][A-Za-z0-9_]*)*\))(\.?)\s*$`)
	requiredRe   = regexp.MustCompile(`(?i)(?:^required(?:[.:,]|$)|[(\[]required[)\]]|(?:^|[.;:]\s+)required\.?$|\bis required\.?$)`)
	intRe        = regexp.MustCompile(`^[-+]?\d+$`)
	floatRe      = regexp.MustCompile(`^[-+]?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?[eE][-+]?\d+)$`)
	durationRe   = regexp.MustCompile(`^[-+]?(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$`)
	requiredText = regexp.MustCompile(`(?i)\s*\((?:required)\)`)
)

// finish turns the collected description into Description, Default and
// Required, and settles a type the placeholder left open.
func (pr *param) finish() {
	d := strings.Join(pr.desc, " ")
	d = envSuffixRe.ReplaceAllString(d, "$1")
	if i := strings.LastIndex(d, "(default"); i >= 0 && strings.HasSuffix(d, ")") {
		v := strings.TrimSpace(strings.TrimPrefix(d[i+len("(default"):len(d)-1], ":"))
		if v != "" {
			if pr.Default == "" {
				pr.Default, pr.quotedDef = unquote(v)
			}
			d = strings.TrimSpace(d[:i])
			d = envSuffixRe.ReplaceAllString(d, "$1")
		}
	}
	if requiredRe.MatchString(d) {
		pr.Required = true
		d = strings.TrimSpace(requiredText.ReplaceAllString(d, ""))
	}
	pr.Description = d
	if pr.generic && pr.Type != TypeArray && pr.Default != "" && !pr.quotedDef {
		pr.Type = typeOfValue(pr.Default, false)
	}
}

func unquote(v string) (string, bool) {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		if v[0] == '"' {
			if u, err := strconv.Unquote(v); err == nil {
				return u, true
			}
		}
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'"), true
	}
	return v, false
}

// typeOfValue guesses a type from a default value written unquoted.
func typeOfValue(v string, boolsToo bool) string {
	switch {
	case boolsToo && (v == "true" || v == "false"):
		return TypeBool
	case intRe.MatchString(v):
		return TypeInt
	case floatRe.MatchString(v):
		return TypeFloat
	case durationRe.MatchString(v):
		if _, err := time.ParseDuration(v); err == nil {
			return TypeDuration
		}
	case strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]"):
		return TypeArray
	}
	return TypeString
}

func kubectlParam(short, name, val string) *param {
	pr := &param{long: true}
	pr.Name, pr.Short = name, short
	v, quoted := unquote(val)
	switch {
	case quoted:
		pr.Type = TypeString
	default:
		pr.Type = typeOfValue(v, true)
	}
	if v != "[]" {
		pr.Default = v
	}
	return pr
}

// knownTypes maps the value names pflag, kong and friends print to a type.
var knownTypes = map[string]string{
	"string": TypeString, "str": TypeString, "ip": TypeString, "ipmask": TypeString, "ipnet": TypeString,
	"byteshex": TypeString, "bytesbase64": TypeString, "path": TypeString, "file": TypeString, "existingfile": TypeString,
	"int": TypeInt, "int8": TypeInt, "int16": TypeInt, "int32": TypeInt, "int64": TypeInt,
	"uint": TypeInt, "uint8": TypeInt, "uint16": TypeInt, "uint32": TypeInt, "uint64": TypeInt, "count": TypeInt,
	"float": TypeFloat, "float32": TypeFloat, "float64": TypeFloat,
	"duration": TypeDuration,
	"bool":     TypeBool,
	"strings":  TypeArray, "stringslice": TypeArray, "stringarray": TypeArray, "ints": TypeArray, "uints": TypeArray,
	"int32slice": TypeArray, "int64slice": TypeArray, "uintslice": TypeArray, "intslice": TypeArray,
	"float32slice": TypeArray, "float64slice": TypeArray, "bools": TypeArray, "boolslice": TypeArray,
	"durations": TypeArray, "durationslice": TypeArray, "ipslice": TypeArray, "ipnetslice": TypeArray,
	// key=value maps: given as repeated or comma-separated k=v items, so an array of "k=v" strings.
	"stringtostring": TypeArray, "stringtoint": TypeArray, "stringtoint64": TypeArray,
}

// genericNames are placeholders that say nothing about the type (urfave's
// "value"): the type then comes from an unquoted default, if one is shown.
// So do upper-case ones (FILE, PORT); a custom cobra name such as "Level"
// stays a string.
var genericNames = map[string]bool{"value": true, "val": true, "arg": true}

func typeOfName(vn string) (typ string, generic bool) {
	k := strings.ToLower(strings.ReplaceAll(vn, "-", ""))
	if t, ok := knownTypes[k]; ok {
		return t, false
	}
	return TypeString, genericNames[k] || upperPlaceholderRe.MatchString(vn)
}

// spec is the left column of a flag's entry: its names and value.
type spec struct {
	long, short []string
	value       string // placeholder word, or =VALUE
	eqValue     bool   // value came as --name=VALUE (kingpin/kong)
	optional    string
	hasOptional bool
	negatable   bool
	array       bool
	doubleDash  bool // a --long name (Go's flag package writes -long)
	style       int
}

var (
	flagTokRe    = regexp.MustCompile(`^(--?)(\[no-\])?([A-Za-z0-9][A-Za-z0-9_.:-]*?)((?:=|\[=).*)?$`)
	placeholder  = regexp.MustCompile(`^(?:[<{(]?[A-Za-z_][\w.\-/|,:<>{}()=*]*|"[^"]*"|'[^']*')(?:\[=.*\])?$`)
	spacedGroup  = regexp.MustCompile(`\s+\[[^\[\]]*\]`)
	commaFlagSep = regexp.MustCompile(`[,|](-)`)
)

// parseSpec reads "-n, --namespace string", "--name value, -n value",
// "-n, --name=NAME", "--[no-]color", "-d <NAME> [<NAME...>]", ...
func parseSpec(s string) (spec, bool) {
	var sp spec
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "-") || strings.HasPrefix(s, "---") {
		return sp, false
	}
	// Groups after a space repeat the flag (urfave's "[ --x value ]") or
	// its value ("[<NAME...>]"): they make it an array.
	s = spacedGroup.ReplaceAllStringFunc(s, func(g string) string {
		if strings.Contains(g, "...") || strings.HasPrefix(strings.TrimSpace(g), "[ -") || strings.HasPrefix(strings.TrimSpace(g), "[-") {
			sp.array = true
		}
		return ""
	})
	var words []string
	for _, w := range strings.Fields(s) {
		w = commaFlagSep.ReplaceAllString(w, " $1")
		for _, x := range strings.Fields(w) {
			x = strings.TrimSuffix(x, ",")
			if x != "" {
				words = append(words, x)
			}
		}
	}
	valuesForLast := 0
	lastWasLong := false
	for i, w := range words {
		if w == "..." || w == "…" {
			sp.array = true
			continue
		}
		if strings.HasPrefix(w, "-") {
			m := flagTokRe.FindStringSubmatch(w)
			if m == nil {
				return sp, false
			}
			name, rest := m[3], m[4]
			if m[2] != "" {
				sp.negatable = true
				sp.style |= styleKingpin
			}
			if m[1] == "-" && len(name) == 1 {
				if !isLetterOrDigit(name) {
					return sp, false
				}
				sp.short = append(sp.short, name)
				if i > 0 && lastWasLong {
					sp.style |= styleUrfave
				}
				lastWasLong = false
			} else {
				if m[1] == "-" && m[2] != "" {
					return sp, false
				}
				sp.long = append(sp.long, name)
				sp.doubleDash = sp.doubleDash || m[1] == "--"
				lastWasLong = true
			}
			valuesForLast = 0
			if rest != "" {
				if !sp.setValue(rest, true) {
					return sp, false
				}
				if strings.HasPrefix(rest, "=") {
					sp.style |= styleKingpin
				}
			}
			continue
		}
		if len(sp.long)+len(sp.short) == 0 || valuesForLast > 0 || !placeholder.MatchString(w) {
			return sp, false
		}
		valuesForLast++
		if sp.value == "" {
			sp.setValue(w, false)
		}
	}
	if len(sp.long)+len(sp.short) == 0 {
		return sp, false
	}
	if sp.style&(styleKingpin|styleUrfave) == 0 && sp.doubleDash && sp.value != "" && knownTypes[sp.value] != "" {
		sp.style |= stylePflag
	}
	return sp, true
}

// setValue records "=VALUE", "[=VALUE]" (attached to a name) or a
// placeholder word, possibly with pflag's "[=optional]" suffix.
func (sp *spec) setValue(v string, attached bool) bool {
	if i := strings.Index(v, "[="); i >= 0 && strings.HasSuffix(v, "]") {
		opt, _ := unquote(v[i+2 : len(v)-1])
		sp.optional, sp.hasOptional = opt, true
		v = v[:i]
	}
	if attached {
		if v == "" {
			return true
		}
		if !strings.HasPrefix(v, "=") {
			return false
		}
		v = v[1:]
		sp.eqValue = true
		if v == "" {
			return false
		}
	}
	if strings.HasSuffix(v, "...") {
		sp.array = true
		v = strings.TrimRight(strings.TrimSuffix(v, "..."), ",;:") // kong: TAGS,... KEY=VALUE;...
	}
	if len(v) > 2 && v[0] == '<' && v[len(v)-1] == '>' {
		v = v[1 : len(v)-1]
	}
	if sp.value == "" {
		sp.value = v
	}
	return true
}

func isLetterOrDigit(s string) bool {
	c := s[0]
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

var upperPlaceholderRe = regexp.MustCompile(`^[A-Z][A-Z0-9_-]*(?:=[A-Z][A-Z0-9_-]*)?$`)

// param settles names and type from the spec; finish adds what the
// description says.
func (sp spec) param() *param {
	pr := &param{}
	if len(sp.long) > 0 {
		pr.Name, pr.long = sp.long[0], true
	}
	if len(sp.short) > 0 {
		pr.Short = sp.short[0]
		if pr.Name == "" {
			pr.Name = pr.Short
		}
	}
	switch {
	case sp.value == "" && sp.hasOptional:
		// --flag[=x] without a type: a bool unless x says otherwise
		if sp.optional == "true" || sp.optional == "false" || strings.Contains(sp.optional, "|") {
			pr.Type = TypeBool
			if sp.optional == "false" {
				pr.OptionalValue = sp.optional
			}
		} else {
			pr.Type = TypeString
			pr.OptionalValue = sp.optional
		}
	case sp.value == "":
		pr.Type = TypeBool
	case sp.eqValue:
		// kingpin/kong: --name=PLACEHOLDER, or --name=default when it has one
		v, quoted := unquote(sp.value)
		switch {
		case quoted:
			pr.Type, pr.Default, pr.quotedDef = TypeString, v, true
		case upperPlaceholderRe.MatchString(v):
			pr.ValueName = v
			pr.Type, pr.generic = typeOfName(v)
			if strings.Contains(v, "=") { // KEY=VALUE
				pr.Type = TypeArray
			}
		default:
			pr.Default = v
			pr.Type = typeOfValue(v, false)
		}
	default:
		pr.ValueName = sp.value
		pr.Type, pr.generic = typeOfName(sp.value)
		if sp.hasOptional {
			pr.OptionalValue = sp.optional
		}
	}
	if sp.array {
		pr.Type = TypeArray
	}
	if sp.negatable {
		pr.Type = TypeBool
	}
	return pr
}

// usageFlags reads the flags a usage form names: those in brackets are
// optional, the others required.
func usageFlags(form string) (optional, required []spec) {
	depth := 0
	var cur strings.Builder
	var groups []string
	var top []string
	for _, c := range form {
		switch {
		case c == '[':
			if depth == 0 {
				cur.Reset()
			} else {
				cur.WriteRune(c)
			}
			depth++
		case c == ']' && depth > 0:
			depth--
			if depth == 0 {
				groups = append(groups, cur.String())
			} else {
				cur.WriteRune(c)
			}
		case depth > 0:
			cur.WriteRune(c)
		default:
			top = append(top, string(c))
		}
	}
	for _, g := range groups {
		for _, alt := range strings.Split(g, "|") {
			alt = strings.TrimSpace(alt)
			if sp, ok := parseSpec(alt); ok && !strings.ContainsAny(alt, "[](){}") {
				optional = append(optional, sp)
			}
		}
	}
	words := strings.Fields(strings.Join(top, ""))
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") || strings.ContainsAny(w, "()[]{}|") {
			continue
		}
		s := w
		if !strings.Contains(w, "=") && i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") && upperPlaceholderRe.MatchString(strings.Trim(words[i+1], "<>")) {
			s += " " + words[i+1]
			i++
		}
		if sp, ok := parseSpec(s); ok {
			required = append(required, sp)
		}
	}
	return optional, required
}

func (p *parser) result() Help {
	h := Help{Description: p.description, Usage: strings.Join(p.usage, "\n")}
	// The usage line: flags outside brackets are required (kong lists
	// required flags there, getopts scripts do too). With several forms
	// each is a mode of its own, so nothing is required across them.
	var usageOpt, usageReq []spec
	for _, f := range p.usageForms {
		o, r := usageFlags(f)
		usageOpt = append(usageOpt, o...)
		usageReq = append(usageReq, r...)
	}
	if len(p.usageForms) == 1 {
		for _, sp := range usageReq {
			if pr := p.find(sp); pr != nil {
				pr.Required = true
			}
		}
	}
	h.Layout = p.layout(len(usageOpt)+len(usageReq) > 0)
	// Getopts scripts may only name a flag in the usage line.
	if h.Layout == "getopts" {
		add := func(sp spec, req bool) {
			if p.find(sp) != nil {
				return
			}
			pr := sp.param()
			pr.Required = req && len(p.usageForms) == 1
			p.cur = pr
			p.endParam()
		}
		for _, sp := range usageOpt {
			add(sp, false)
		}
		for _, sp := range usageReq {
			add(sp, true)
		}
	}
	h.Parameters = make([]Parameter, 0, len(p.params))
	for _, pr := range p.params {
		h.Parameters = append(h.Parameters, pr.Parameter)
	}
	return h
}

func (p *parser) find(sp spec) *param {
	for _, n := range append(append([]string{}, sp.long...), sp.short...) {
		if i, ok := p.byName[n]; ok {
			return p.params[i]
		}
	}
	for _, s := range sp.short {
		for _, pr := range p.params {
			if pr.Short == s {
				return pr
			}
		}
	}
	return nil
}

func (p *parser) layout(usageHasFlags bool) string {
	hasLong := false
	for _, pr := range p.params {
		if pr.long {
			hasLong = true
		}
	}
	switch {
	case p.upperOptions || p.styles&styleUrfave != 0 && p.styles&styleKubectl == 0:
		return "urfave"
	case p.contextHelp || p.styles&styleKingpin != 0 || p.lowerUsage && len(p.params) > 0:
		return "kingpin"
	case (p.cobraHeader || p.styles&(styleKubectl|stylePflag) != 0) && (hasLong || len(p.params) == 0):
		return "cobra"
	case len(p.params) > 0 || usageHasFlags:
		return "getopts"
	}
	return ""
}
