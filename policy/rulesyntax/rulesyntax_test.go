package rulesyntax

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestParseResource(t *testing.T) {
	good := map[string]Resource{
		"pods":                                {Resource: "pods", Group: "*"},
		"pods/log":                            {Resource: "pods", Group: "*", Subresource: "log"},
		"pods/*":                              {Resource: "pods", Group: "*", Subresource: "*"},
		"*":                                   {Resource: "*", Group: "*"},
		"*/scale":                             {Resource: "*", Group: "*", Subresource: "scale"},
		"*/*":                                 {Resource: "*", Group: "*", Subresource: "*"},
		"deployments.apps":                    {Resource: "deployments", Group: "apps"},
		"deployments.apps/scale":              {Resource: "deployments", Group: "apps", Subresource: "scale"},
		"*.apps":                              {Resource: "*", Group: "apps"},
		"deployments.*":                       {Resource: "deployments", Group: "*"},
		"ingresses.networking.k8s.io":         {Resource: "ingresses", Group: "networking.k8s.io"},
		"clusters.postgresql.cnpg.io":         {Resource: "clusters", Group: "postgresql.cnpg.io"},
		"certificatesigningrequests/approval": {Resource: "certificatesigningrequests", Group: "*", Subresource: "approval"},
		"pods/exec":                           {Resource: "pods", Group: "*", Subresource: "exec"},
	}
	for s, want := range good {
		got, err := ParseResource(s)
		if err != nil || got != want {
			t.Errorf("ParseResource(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	bad := map[string]string{
		"":                 "empty resource",
		"pods log":         "white space",
		"Pods":             `lowercase plurals`,
		"pod":              `"pods"`,
		"po/log":           `"pods"`,
		"deploy.apps":      `"deployments"`,
		"apps/deployments": `"deployments.apps"`,
		"pod*":             `whole part`,
		"*pods":            `whole part`,
		"pods/lo?":         `whole part`,
		"pods/log/x":       `at most one "/"`,
		"pods/":            `empty subresource`,
		"/log":             `empty resource name`,
		".apps":            `empty resource name`,
		"pods.":            `empty API group`,
		"pods.apps..io":    `write a whole group name`,
		"pods.*.io":        `write a whole group name`,
		"pods_x":           `only a-z, 0-9 and -`,
	}
	for s, want := range bad {
		if _, err := ParseResource(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseResource(%q) = %v, want an error containing %q", s, err, want)
		}
	}
}

func TestCheckVerb(t *testing.T) {
	for _, v := range append(Verbs(), "*") {
		if err := CheckVerb(v); err != nil {
			t.Errorf("CheckVerb(%q) = %v", v, err)
		}
	}
	for v, want := range map[string]string{
		"Get": `verbs are lowercase: "get"`, "read": `"get", "list" and "watch"`, "write": `"create"`,
		"exec": `resources = ["pods/exec"]`, "proxy": `pods/proxy`, "escalate": `unknown verb "escalate"`, "": `unknown verb ""`,
	} {
		if err := CheckVerb(v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckVerb(%q) = %v, want an error containing %q", v, err, want)
		}
	}
}

func TestCheckGlobAndName(t *testing.T) {
	for _, g := range []string{"", "*", "team-*", "?*", "[a-c]"} {
		if err := CheckGlob(g); err != nil {
			t.Errorf("CheckGlob(%q) = %v", g, err)
		}
	}
	if err := CheckGlob("[x"); !errors.Is(err, path.ErrBadPattern) {
		t.Errorf("CheckGlob([x) = %v, want path.ErrBadPattern", err)
	}
	for _, n := range append(Reserved(), "", " ", "rules[0]") {
		if CheckName(n) == nil {
			t.Errorf("CheckName(%q) accepted it", n)
		}
	}
	if err := CheckName("evictions on staging"); err != nil {
		t.Error(err)
	}
}

func TestIsConnect(t *testing.T) {
	for _, s := range ConnectSubresources() {
		if !IsConnect(s) {
			t.Errorf("IsConnect(%q) = false", s)
		}
	}
	for _, s := range []string{"", "log", "status", "scale", "eviction", "Exec"} {
		if IsConnect(s) {
			t.Errorf("IsConnect(%q) = true", s)
		}
	}
}
