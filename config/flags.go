package config

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// AddFlags registers a flag for every setting that has one. Flags have no
// defaults of their own: an unset flag leaves the lower layers in force.
func AddFlags(fs *pflag.FlagSet) {
	for _, s := range settings {
		if s.flag == "" {
			continue
		}
		usage := fmt.Sprintf("%s (%s", s.usage, s.key)
		if s.env != "" {
			usage += ", env " + s.env
		}
		if s.def != "" {
			usage += ", default " + s.def
		}
		usage += ")"
		switch s.kind {
		case kindBool:
			fs.Bool(s.flag, false, usage)
		case kindInt:
			fs.Int(s.flag, 0, usage)
		case kindStrings, kindPaths:
			fs.StringSlice(s.flag, nil, usage)
		case kindDuration:
			fs.Var(new(durationText), s.flag, usage)
		default:
			fs.String(s.flag, "", usage)
		}
	}
}

// durationText is a duration flag that keeps the text as written, so
// `config show` reports "60s" rather than "1m0s".
type durationText string

func (d *durationText) String() string { return string(*d) }
func (d *durationText) Type() string   { return "duration" }
func (d *durationText) Set(s string) error {
	if _, err := parseDuration(s); err != nil {
		return err
	}
	*d = durationText(strings.TrimSpace(s))
	return nil
}
